#!/usr/bin/env bash
# End-to-end check of the test libvirtd: starts it (scripts/libvirt/libvirtd-env.sh), defines and
# starts the tiny guest (TCG), waits for its serial marker, reads the
# balloon stats, suspends, resumes, destroys and undefines it, and stops the daemon again when
# this script started it. Prints the timings. Exit 0 on success.
#
# Environment: VH_LIBVIRT_DIR (see libvirtd-env.sh), VH_SMOKE_BOOT_TIMEOUT (s, default 120),
# VH_SMOKE_VIRT_TYPE (qemu = TCG, the default, or kvm),
# VH_SMOKE_KEEP=1 keeps the run directory (serial log, domain XML).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
env_sh=$here/libvirtd-env.sh
boot_timeout=${VH_SMOKE_BOOT_TIMEOUT:-120}
[[ $boot_timeout =~ ^[0-9]+$ ]] || {
    echo "smoke: VH_SMOKE_BOOT_TIMEOUT must be whole seconds" >&2
    exit 2
}
marker=VH-GUEST-READY
name=vh-smoke-$$

say() { echo "smoke: $*" >&2; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
xml_escape() {
    local s=$1
    s=${s//&/&amp;}
    s=${s//</&lt;}
    s=${s//>/&gt;}
    s=${s//\"/&quot;}
    s=${s//\'/&apos;}
    printf '%s' "$s"
}

timings=()
started_daemon=0
defined=0
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/vh-smoke.XXXXXX")
chmod 755 "$run_dir"

cleanup() {
    local rc=$?
    if ((defined)); then
        virsh -q -c "$uri" destroy "$name" >/dev/null 2>&1 || true
        virsh -q -c "$uri" undefine "$name" >/dev/null 2>&1 || true
    fi
    if ((started_daemon)); then
        "$env_sh" stop || rc=1
    fi
    if ((rc != 0)); then
        say "FAILED; last lines of the serial console:"
        tail -n 15 "$run_dir/serial.log" >&2 2>/dev/null || true
    fi
    if [[ -n ${VH_SMOKE_KEEP:-} ]]; then
        say "kept $run_dir"
    else
        rm -rf "$run_dir"
    fi
    exit "$rc"
}
uri=$("$env_sh" uri)
trap cleanup EXIT

t=$(now)
mapfile -t guest < <("$here/build-tiny-guest.sh")
((${#guest[@]} == 2)) || {
    say "build-tiny-guest.sh printed no kernel/initrd"
    exit 1
}
timings+=("tiny guest ready: $(since "$t") s")

if ! "$env_sh" status >/dev/null 2>&1; then
    started_daemon=1
    t=$(now)
    "$env_sh" start >/dev/null
    timings+=("libvirtd start -> answers: $(since "$t") s")
else
    timings+=("libvirtd: already running")
fi

# TCG by default: a /dev/kvm that libvirt accepts may still fail to run guests (this machine's
# fails with "emulation failure"); VH_SMOKE_VIRT_TYPE=kvm opts in.
virt_type=${VH_SMOKE_VIRT_TYPE:-qemu}
[[ $virt_type == qemu || $virt_type == kvm ]] || {
    say "VH_SMOKE_VIRT_TYPE must be qemu or kvm"
    exit 1
}

serial=$run_dir/serial.log
cat >"$run_dir/domain.xml" <<EOF
<domain type='$virt_type'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$(xml_escape "${guest[0]}")</kernel>
    <initrd>$(xml_escape "${guest[1]}")</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='$(xml_escape "$serial")'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'><stats period='1'/></memballoon>
  </devices>
</domain>
EOF

virsh -q -c "$uri" define "$run_dir/domain.xml" >/dev/null
defined=1
t=$(now)
virsh -q -c "$uri" start "$name" >/dev/null
timings+=("domain start ($virt_type) -> running: $(since "$t") s")
deadline=$((SECONDS + boot_timeout))
until grep -q "$marker" "$serial" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        say "no $marker on the serial console within ${boot_timeout}s"
        exit 1
    fi
    state=$(virsh -q -c "$uri" domstate "$name" 2>/dev/null || true)
    [[ $state == running* ]] || {
        say "the domain is '$state' before the marker"
        exit 1
    }
    sleep 0.1
done
timings+=("domain start -> $marker: $(since "$t") s ($(grep -m1 "$marker" "$serial" | tr -d '\r'))")

# The balloon driver reports a few seconds after it loads (stats period 1 s).
stats=""
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
    stats=$(virsh -q -c "$uri" dommemstat "$name" 2>/dev/null || true)
    grep -q '^available' <<<"$stats" && break
    sleep 0.5
done
if grep -q '^available' <<<"$stats"; then
    timings+=("balloon stats: $(tr '\n' ' ' <<<"$stats")")
else
    say "no guest memory stats from the balloon (got: $(tr '\n' ' ' <<<"$stats"))"
    exit 1
fi

expect_state() {
    local state
    state=$(virsh -q -c "$uri" domstate "$name")
    [[ $state == "$1" ]] || {
        say "expected state '$1', got '$state'"
        exit 1
    }
}

t=$(now)
virsh -q -c "$uri" suspend "$name" >/dev/null
timings+=("suspend: $(since "$t") s")
expect_state paused
t=$(now)
virsh -q -c "$uri" resume "$name" >/dev/null
timings+=("resume: $(since "$t") s")
expect_state running
# The guest keeps counting after the resume.
lines=$(wc -l <"$serial")
sleep 2.5
(($(wc -l <"$serial") > lines)) || {
    say "the guest printed nothing after the resume"
    exit 1
}
t=$(now)
virsh -q -c "$uri" destroy "$name" >/dev/null
timings+=("destroy: $(since "$t") s")
expect_state "shut off"
virsh -q -c "$uri" undefine "$name" >/dev/null
defined=0
if ((started_daemon)); then
    t=$(now)
    "$env_sh" stop
    started_daemon=0
    timings+=("libvirtd stop: $(since "$t") s")
fi

say "OK"
printf 'smoke: %s\n' "${timings[@]}"
