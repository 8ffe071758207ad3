#!/usr/bin/env bash
# Builds (once) the tiny test guest and prints two lines: the kernel path and the initrd path.
#
# Kernel: the uncompressed vmlinux of the sandbox image (scripts/sandbox/build-image.sh, which
# downloads the Debian kernel + busybox-static). Initramfs: busybox and the virtio modules taken
# from that image's initrd, plus /init below, which loads virtio + virtio_balloon (memory stats),
# prints VH-GUEST-READY on ttyS0 and then "vh-guest: uptime <s>" every second; echoes console
# input lines back ("vh-guest: echo <line>") and powers off after N s with vh.poweroff=N.
#
# Cache: ${VHDEV_CACHE_DIR:-$HOME/.cache/virt-handler}/libvirt-guest/<key>/, published by rename
# when complete; the key covers the sandbox image and this script.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VHDEV_CACHE_DIR:-${HOME:?set HOME or VHDEV_CACHE_DIR}/.cache/virt-handler}/libvirt-guest

# shellcheck source=../lib/cache.sh
source "$here/../lib/cache.sh"

say() { echo "build-tiny-guest: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# Dependencies first: the kernel package carries no modules.dep.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon)

image=$("$here/../sandbox/build-image.sh") || die "could not build the sandbox image"
[[ -f $image/vmlinux && -f $image/initrd.gz ]] || die "incomplete sandbox image: $image"

key=$(
    {
        printf '%s\n' "$image"
        cat "$here/build-tiny-guest.sh"
    } | sha256sum | cut -c1-12
)
guest=$cache_root/$key

build_into() {
    local out=$1 base=$1/base root=$1/root module
    mkdir -p "$base" "$root/bin" "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev"
    (cd "$base" && gzip -dc "$image/initrd.gz" | cpio -id --quiet bin/busybox 'lib/modules/*.ko')
    cp "$base/bin/busybox" "$root/bin/busybox"
    for module in "${modules[@]}"; do
        [[ -f $base/lib/modules/$module.ko ]] || die "the sandbox image lacks $module.ko"
        cp "$base/lib/modules/$module.ko" "$root/lib/modules/"
        echo "$module" >>"$root/modules"
    done
    cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/null >/dev/ttyS0 2>&1
while read -r module; do
    insmod "/lib/modules/$module.ko" || echo "vh-guest: insmod $module failed"
done </modules
read -r up _ </proc/uptime
echo "VH-GUEST-READY uptime $up"
# Console input: every line typed on ttyS0 comes back as "vh-guest: echo <line>".
(while read -r line; do echo "vh-guest: echo $line"; done </dev/ttyS0) &
# vh.poweroff=N on the kernel command line: power off after N seconds (runStrategy tests).
off=
for arg in $(cat /proc/cmdline); do
    case $arg in vh.poweroff=*) off=${arg#vh.poweroff=} ;; esac
done
if [ -n "$off" ]; then
    (sleep "$off"; echo "vh-guest: powering off"; poweroff -f) &
fi
while :; do
    sleep 1
    read -r up _ </proc/uptime
    echo "vh-guest: uptime $up"
done
EOF
    chmod 755 "$root/init"
    (cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 >"$out/initrd.gz"
    # A hard link when the caches share a filesystem; the vmlinux is tens of MiB.
    ln -f "$image/vmlinux" "$out/vmlinux" 2>/dev/null || cp "$image/vmlinux" "$out/vmlinux"
    rm -rf "$base" "$root"
}

cache_build_once "$cache_root" "$guest" build_into
if [[ $CACHE_BUILT -eq 1 ]]; then
    say "tiny guest built in $guest"
fi
printf '%s\n' "$guest/vmlinux" "$guest/initrd.gz"
