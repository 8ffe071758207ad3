#!/usr/bin/env bash
# Runs one command inside a throwaway VM that has a real /dev/kvm, on any x86_64 Linux host,
# with or without KVM: QEMU TCG emulates an AMD CPU with SVM, the guest kernel loads kvm_amd.
#
#   scripts/kvm-sandbox.sh [--timeout S] [--mem MiB] [--timings] -- CMD ARGS...
#
# The guest sees the host's / read-only through 9p under a tmpfs overlay (writes are discarded
# at the end), runs CMD as root in the same cwd with PATH, HOME, CI, VH_*, VHDEV_*, VHTEST_* and
# NODE_* passed through, and streams its stdout+stderr (merged, in order) to this script's stdout.
# See scripts/sandbox/README.md.
#
# Exit status: CMD's own status, or
#   124  timed out (the VM is killed)
#   125  the VM died without reporting a status (the console log tail is printed)
#   126  the sandbox is unavailable: usage error, QEMU missing, image build or guest setup failed
#   130/143  interrupted by SIGINT/SIGTERM (the VM is killed)
set -euo pipefail

readonly EXIT_TIMEOUT=124 EXIT_VM_DIED=125 EXIT_UNAVAILABLE=126

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
qemu=${VHDEV_SANDBOX_QEMU:-qemu-system-x86_64}
qboot=/usr/share/qemu/qboot.rom
timeout=${VHDEV_SANDBOX_TIMEOUT:-600}
mem=${VHDEV_SANDBOX_MEM:-2048}
timings=false
run_dir=
qemu_pid=
watchdog_pid=

say() { echo "kvm-sandbox: $*" >&2; }
unavailable() { say "$*"; exit "$EXIT_UNAVAILABLE"; }

usage() {
    echo "usage: $0 [--timeout S] [--mem MiB] [--timings] -- CMD ARGS..." >&2
    exit "$EXIT_UNAVAILABLE"
}

while (($#)); do
    case $1 in
    --timeout) (($# >= 2)) || usage; timeout=$2; shift 2 ;;
    --mem) (($# >= 2)) || usage; mem=$2; shift 2 ;;
    --timings) timings=true; shift ;;
    --) shift; break ;;
    *) usage ;;
    esac
done
(($#)) || usage
[[ $timeout =~ ^[1-9][0-9]*$ ]] || unavailable "--timeout wants whole seconds, got '$timeout'"
[[ $mem =~ ^[1-9][0-9]*$ ]] || unavailable "--mem wants MiB, got '$mem'"

((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501)) || unavailable "bash >= 5.1 is needed (wait -n -p)"
command -v "$qemu" >/dev/null || unavailable "$qemu not found: apt-get install qemu-system-x86 qemu-system-data"
[[ -f $qboot ]] || unavailable "$qboot not found: apt-get install qemu-system-data"
command -v cpio >/dev/null || unavailable "cpio not found: apt-get install cpio"

stop_vm() {
    if [[ -n $watchdog_pid ]]; then
        kill "$watchdog_pid" 2>/dev/null || true
    fi
    if [[ -n $qemu_pid ]]; then
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    qemu_pid='' watchdog_pid=''
}
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    stop_vm
    if [[ -n $run_dir && -z ${VHDEV_SANDBOX_KEEP:-} ]]; then
        rm -rf "$run_dir"
    fi
}
# shellcheck disable=SC2317 # runs from the signal traps
on_signal() {
    say "interrupted, stopping the VM"
    exit "$1" # the EXIT trap kills QEMU and removes the run dir
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# VHDEV_SANDBOX_IMAGE: a ready directory with vmlinux + initrd.gz (offline use, harness tests).
image=${VHDEV_SANDBOX_IMAGE:-}
if [[ -z $image ]]; then
    image=$("$here/sandbox/build-image.sh") || unavailable "could not build the guest image"
fi
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/vh-sandbox.XXXXXX")

# The job: argv, env and cwd as NUL-separated files, read back with mapfile by guest-run.sh.
write_job() {
    local job=$run_dir/job/job name
    mkdir -p "$job"
    printf '%s\0' "$@" >"$job/argv"
    printf '%s\0' "$PWD" >"$job/cwd"
    {
        for name in $(compgen -e); do
            case $name in
            # No network in the guest, and node parses this bundle at every start (~1.7 s under TCG).
            NODE_EXTRA_CA_CERTS) ;;
            VHDEV_IN_SANDBOX) ;;
            PATH | HOME | USER | LOGNAME | LANG | LC_* | TZ | CI | TMPDIR | VH_* | VHDEV_* | VHTEST_* | NODE_* | NO_COLOR | FORCE_COLOR)
                printf '%s=%s\0' "$name" "${!name}"
                ;;
            esac
        done
        # Lets scripts tell they already run in here (test-native.sh does not boot a nested one).
        printf '%s\0' VHDEV_IN_SANDBOX=1
        # The guest's stdout is a serial tty; keep colours out of logs when ours is not a tty.
        if [[ -t 1 ]]; then
            printf 'TERM=%s\0' "${TERM:-xterm}"
        else
            printf '%s\0' TERM=dumb NO_COLOR=1 NODE_DISABLE_COLORS=1
        fi
    } >"$job/env"
    cp "$here/sandbox/guest-run.sh" "$job/run.sh"
    (cd "$run_dir/job" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$run_dir/job.cpio.gz"
    # A second gzip'd cpio appended to the first is unpacked on top of it by the kernel.
    cat "$image/initrd.gz" "$run_dir/job.cpio.gz" >"$run_dir/initrd"
}
write_job "$@"

print_console_tail() {
    say "last lines of the guest console (keep the whole run dir with VHDEV_SANDBOX_KEEP=1):"
    tail -n 30 "$run_dir/console.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
    if [[ -s $run_dir/qemu.log ]]; then
        say "QEMU said:"
        sed 's/^/  | /' "$run_dir/qemu.log" >&2
    fi
}

qemu_args=(
    -accel tcg -cpu max -smp 1 -m "$mem"
    -nodefaults -no-user-config -display none -no-reboot
    -bios "$qboot"
    -kernel "$image/vmlinux" -initrd "$run_dir/initrd"
    -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off"
    -serial "file:$run_dir/console.log"
    -serial stdio
    -serial "file:$run_dir/status"
    -virtfs 'local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap,readonly=on'
)
: >"$run_dir/status" # exists even if QEMU fails before opening it
started=$EPOCHREALTIME
# pdeathsig: QEMU dies with us even when we are SIGKILLed and no trap runs.
setpriv --pdeathsig KILL -- "$qemu" "${qemu_args[@]}" </dev/null 2>"$run_dir/qemu.log" &
qemu_pid=$!
sleep "$timeout" &
watchdog_pid=$!

finished=
wait -n -p finished "$qemu_pid" "$watchdog_pid" 2>/dev/null || true
timed_out=false
if [[ $finished == "$watchdog_pid" ]]; then
    timed_out=true
    watchdog_pid=
fi
stop_vm
ended=$EPOCHREALTIME

# status lines: "start <uptime>", "exit <status> <uptime>" or "error <message>" (see init.sh).
start_uptime='' exit_line='' error_line=''
while read -r kind rest; do
    case $kind in
    start) start_uptime=$rest ;;
    exit) exit_line=$rest ;;
    error) error_line=$rest ;;
    esac
done <"$run_dir/status"

if [[ -n $error_line ]]; then
    print_console_tail
    unavailable "the guest could not set up the sandbox: $error_line"
fi
if [[ -z $exit_line ]]; then
    print_console_tail
    if $timed_out; then
        if [[ -n $start_uptime ]]; then
            say "timed out after ${timeout}s while the command was running; the VM was killed"
        else
            say "timed out after ${timeout}s before the command started; the VM was killed"
        fi
        exit "$EXIT_TIMEOUT"
    fi
    say "the VM stopped without reporting the command's status"
    exit "$EXIT_VM_DIED"
fi
read -r status end_uptime <<<"$exit_line"
$timed_out && say "warning: the command finished (status $status) but the VM did not power off before the timeout"

if $timings; then
    # The guest clock runs from kernel start; everything before the job counts as boot.
    awk -v t0="$started" -v t1="$ended" -v s="$start_uptime" -v e="$end_uptime" 'BEGIN {
        total = t1 - t0; job = e - s
        printf "kvm-sandbox: timings: boot->job %.1f s, job %.1f s, whole VM %.1f s\n", total - job, job, total
    }' >&2
fi
exit "$status"
