#!/bin/busybox sh
# shellcheck shell=sh
# PID 1 of the sandbox guest (busybox ash, packed into the cached base initramfs).
#
# Loads KVM + virtio + 9p + overlay, builds a writable view of the host's / (read-only 9p share
# under a tmpfs overlay), runs the per-run job from /job in a chroot of it and reports on ttyS2.
# Serial ports: ttyS0 = console (a log file on the host), ttyS1 = the job's stdout+stderr (raw),
# ttyS2 = status lines for the host harness:
#   start <uptime>           the job is about to run
#   exit <status> <uptime>   the job finished with <status>
#   error <message>          the sandbox itself could not be set up
# The host treats a VM that stops without "exit" or "error" as having died.

/bin/busybox mkdir -p /proc /sys /dev /bin
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/null >/dev/ttyS0 2>&1

uptime_now() {
    read -r up _ </proc/uptime
    echo "$up"
}
echo "vh-init: started at $(uptime_now)s of guest uptime"

# Raw mode: no \n -> \r\n translation on the job's output. stty -F waits (TCSADRAIN) until the
# UART has sent what is queued, which is also how the output is flushed before power-off.
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo

report() {
    echo "$*" >/dev/ttyS2
    stty -F /dev/ttyS2 raw -echo
}

die() {
    echo "vh-init: $*"
    report "error $*"
    poweroff -f
}

# The .deb carries no modules.dep: /etc/vh-modules lists the modules in dependency order.
while read -r module; do
    insmod "/lib/modules/$module.ko" || die "insmod $module failed"
done </etc/vh-modules

echo "vh-init: modules loaded at $(uptime_now)s"
[ -c /dev/kvm ] || die "/dev/kvm missing after loading kvm-amd (the emulated CPU lacks SVM?)"
chmod 666 /dev/kvm

mkdir -p /host /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /host ||
    die "cannot mount the host's / over 9p"
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    die "cannot mount the overlay on the 9p share"

mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev || die "cannot mount devtmpfs in the new root"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm

# /tmp and /run stay on the overlay: the job's cwd may live there (a CI clone under mktemp -d).
mkdir -p /newroot/run/vh-job
cp /job/* /newroot/run/vh-job/ || die "the per-run job is missing from the initramfs"

echo "vh-init: starting the job"
report "start $(uptime_now)"
env -i chroot /newroot /bin/bash /run/vh-job/run.sh </dev/null >/dev/ttyS1 2>&1
status=$?
stty -F /dev/ttyS1 raw -echo
echo "vh-init: the job exited with status $status"
report "exit $status $(uptime_now)"
poweroff -f
