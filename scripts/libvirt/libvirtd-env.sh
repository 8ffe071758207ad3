#!/usr/bin/env bash
# A private libvirtd (QEMU driver, TCG when the host has no KVM) for tests and .ci/run, without
# systemd. Installs nothing: scripts/setup.sh provides libvirt-daemon, libvirt-daemon-driver-qemu,
# libvirt-clients, qemu-system-x86 and qemu-utils. Needs root (and a mount namespace).
#
#   scripts/libvirt/libvirtd-env.sh start     starts it unless running; prints the URI
#   scripts/libvirt/libvirtd-env.sh stop [--destroy-domains]
#                                             stops it (guests keep running unless asked)
#   scripts/libvirt/libvirtd-env.sh status    exit 0 and "running <pid> <uri>" when it answers
#   scripts/libvirt/libvirtd-env.sh uri       prints the URI
#
# Everything lives in ${VHDEV_LIBVIRT_DIR:-/tmp/vh-libvirtd}: the daemon runs in its own mount
# namespace where etc/, run/, lib/, cache/ and log/ of that directory are bind-mounted over
# /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt (the QEMU
# driver of a privileged daemon hard-codes those paths and reads /etc/libvirt/qemu.conf), so the
# host's libvirt files are never touched and several daemons (different VHDEV_LIBVIRT_DIR) can run
# side by side. The socket is sock/libvirt-sock; the daemon's log is libvirtd.log; QEMU's
# per-domain logs are log/qemu/<name>.log.
#
# Environment: VHDEV_LIBVIRT_DIR, VHDEV_LIBVIRT_START_TIMEOUT (s, default 60), VHDEV_LIBVIRT_LOG_LEVEL
# (1 debug .. 4 error, default 3).
set -euo pipefail

dir=${VHDEV_LIBVIRT_DIR:-/tmp/vh-libvirtd}
start_timeout=${VHDEV_LIBVIRT_START_TIMEOUT:-60}
log_level=${VHDEV_LIBVIRT_LOG_LEVEL:-3}
sock=$dir/sock/libvirt-sock
uri="qemu+unix:///system?socket=$sock"
pidfile=$dir/libvirtd.pid
# private dir -> the path the daemon sees it at
binds=(etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt)

say() { echo "libvirtd-env: $*" >&2; }
die() {
    say "$*"
    exit 1
}
usage() { die "usage: $0 start | stop [--destroy-domains] | status | uri"; }

[[ $dir == /* && $dir != *[[:space:]\"]* ]] || die "VHDEV_LIBVIRT_DIR must be an absolute path without spaces or quotes: '$dir'"
[[ $start_timeout =~ ^[0-9]+$ ]] || die "VHDEV_LIBVIRT_START_TIMEOUT must be whole seconds"
[[ $log_level =~ ^[1-4]$ ]] || die "VHDEV_LIBVIRT_LOG_LEVEL must be 1..4"

# The daemon's pid when the pidfile names a live libvirtd, else nothing.
daemon_pid() {
    local pid stat
    [[ -f $pidfile ]] || return 0
    read -r pid <"$pidfile" || true
    [[ ${pid:-} =~ ^[0-9]+$ ]] || return 0
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    # "<pid> (<comm>) <state> ...": a killed daemon can linger as a zombie (no reaper here).
    [[ $stat == "$pid (libvirtd) "[^ZX]* ]] && echo "$pid"
    return 0
}

answers() { virsh -q -c "$uri" version >/dev/null 2>&1; }

ensure_user() {
    # libvirtd resolves its default QEMU user before it reads qemu.conf.
    getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
    getent passwd libvirt-qemu >/dev/null ||
        useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
}

write_config() {
    local b uuid
    for b in "${binds[@]}"; do
        mkdir -p "$dir/${b%%:*}" "${b#*:}"
    done
    mkdir -p "$dir/sock" "$dir/log/qemu"
    chmod 700 "$dir"
    if [[ ! -s $dir/host-uuid ]]; then
        cat /proc/sys/kernel/random/uuid >"$dir/host-uuid.tmp"
        mv -f "$dir/host-uuid.tmp" "$dir/host-uuid"
    fi
    read -r uuid <"$dir/host-uuid"
    cat >"$dir/etc/libvirtd.conf.tmp" <<EOF
# Written by scripts/libvirt/libvirtd-env.sh; rewritten on every start.
unix_sock_dir = "$dir/sock"
unix_sock_ro_perms = "0770"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$uuid"
log_outputs = "$log_level:file:$dir/libvirtd.log"
EOF
    cat >"$dir/etc/qemu.conf.tmp" <<'EOF'
# Written by scripts/libvirt/libvirtd-env.sh; rewritten on every start.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
EOF
    mv -f "$dir/etc/libvirtd.conf.tmp" "$dir/etc/libvirtd.conf"
    mv -f "$dir/etc/qemu.conf.tmp" "$dir/etc/qemu.conf"
}

# Removes the empty machine/ cgroup directories libvirt leaves behind (rmdir refuses the ones
# that still hold processes, so running guests keep theirs).
clean_cgroups() {
    [[ -d /sys/fs/cgroup ]] || return 0
    find /sys/fs/cgroup -mindepth 1 -depth -type d \( -name machine -o -path '*/machine/*' \) \
        -exec rmdir {} + 2>/dev/null || true
}

start() {
    local pid
    pid=$(daemon_pid)
    if [[ -n $pid ]] && answers; then
        echo "$uri"
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "must run as root"
    local bin
    for bin in libvirtd virsh unshare; do
        command -v "$bin" >/dev/null || die "$bin not found (run scripts/setup.sh)"
    done
    if [[ -z $pid ]]; then
        ensure_user
        write_config
        rm -f "$pidfile" "$sock" "$sock-ro" "$dir/sock/libvirt-admin-sock"
        local mounts=() b
        for b in "${binds[@]}"; do
            mounts+=("$dir/${b%%:*}" "${b#*:}")
        done
        # $0 of the inner shell is a label; its arguments are: pidfile, config, then the pairs.
        # shellcheck disable=SC2016
        unshare --mount --propagation private -- bash -euo pipefail -c '
            pidfile=$1 config=$2
            shift 2
            while (($#)); do
                mount --bind "$1" "$2"
                shift 2
            done
            exec libvirtd -d -p "$pidfile" --config "$config"
        ' vh-libvirtd "$pidfile" "$dir/etc/libvirtd.conf" "${mounts[@]}" ||
            die "libvirtd failed to start (see $dir/libvirtd.log)"
    fi
    local t0=$EPOCHREALTIME deadline=$((SECONDS + start_timeout))
    until answers; do
        if ((SECONDS >= deadline)); then
            die "libvirtd did not answer on $sock within ${start_timeout}s (see $dir/libvirtd.log)"
        fi
        # libvirtd writes its pidfile early: no live pid after 5 s means it died.
        if [[ -z $(daemon_pid) ]] && awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 5) }'; then
            tail -n 20 "$dir/libvirtd.log" >&2 2>/dev/null || true
            die "libvirtd exited during startup (see $dir/libvirtd.log)"
        fi
        sleep 0.1
    done
    say "libvirtd $(daemon_pid) answers after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s"
    echo "$uri"
}

stop() {
    local destroy=0
    case ${1:-} in
    "") ;;
    --destroy-domains) destroy=1 ;;
    *) usage ;;
    esac
    local pid name
    pid=$(daemon_pid)
    if [[ -n $pid ]]; then
        if ((destroy)) && answers; then
            while read -r name; do
                [[ -n $name ]] || continue
                virsh -q -c "$uri" destroy -- "$name" >/dev/null 2>&1 || true
            done < <(virsh -q -c "$uri" list --name 2>/dev/null || true)
        fi
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while [[ -e /proc/$pid ]]; do
            if ((SECONDS >= deadline)); then
                say "libvirtd $pid ignored SIGTERM for 30 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 10))
            fi
            sleep 0.1
        done
        say "libvirtd $pid stopped"
    fi
    rm -f "$pidfile"
    clean_cgroups
}

status() {
    local pid
    pid=$(daemon_pid)
    if [[ -n $pid ]] && answers; then
        echo "running $pid $uri"
    elif [[ -n $pid ]]; then
        echo "not answering $pid $uri"
        return 1
    else
        echo "stopped $uri"
        return 3
    fi
}

(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
start)
    (($# == 0)) || usage
    start
    ;;
stop) stop "$@" ;;
status)
    (($# == 0)) || usage
    status
    ;;
uri)
    (($# == 0)) || usage
    echo "$uri"
    ;;
*) usage ;;
esac
