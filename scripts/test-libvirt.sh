#!/usr/bin/env bash
# Real-libvirtd tests (dist/test/libvirt/): starts the private test libvirtd
# (scripts/libvirt/libvirtd-env.sh) unless it is already running, builds the tiny guest
# (scripts/libvirt/build-tiny-guest.sh), exports what test/libvirt/guest.ts reads, runs the tests
# one file at a time, and on exit - pass, fail or Ctrl-C - destroys and undefines leftover
# vh-test-* domains and stops the daemon when this script started it.
#
# Needs root (libvirtd-env.sh runs libvirtd in its own mount namespace) and a compiled dist/
# (`npm run build:ts`; scripts/test.sh does it through setup.sh). Guests run under QEMU TCG.
#
# Environment: VHDEV_LIBVIRT_DIR (the daemon's directory, default /tmp/vh-libvirtd), VHTEST_KEEP=1
# keeps the tests' run directories (serial logs), VHTEST_FILES="chaos vmi-e2e" runs only
# those files of dist/test/libvirt/. Extra arguments go to `node --test`
# (e.g. --test-name-pattern=lifecycle).
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "test-libvirt: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root (the test libvirtd needs a mount namespace and runs QEMU as root); try: sudo bash scripts/test-libvirt.sh"
[[ -d dist/test/libvirt ]] || die "dist/test/libvirt is missing: compile first (npm run build:ts)"

env_sh=$repo/scripts/libvirt/libvirtd-env.sh
export VHDEV_LIBVIRT_DIR=${VHDEV_LIBVIRT_DIR:-/tmp/vh-libvirtd}
uri=$("$env_sh" uri) # also validates VHDEV_LIBVIRT_DIR
# One run per daemon directory at a time: a second run would remove this one's vh-test-* domains
# and could stop the daemon under it.
command -v flock >/dev/null || die "flock not found (util-linux)"
exec {lock_fd}>"$VHDEV_LIBVIRT_DIR.test-lock"
flock -w 900 "$lock_fd" || die "another scripts/test-libvirt.sh holds $VHDEV_LIBVIRT_DIR.test-lock for over 900 s"
started=0

remove_leftovers() {
    local name
    "$env_sh" status >/dev/null 2>&1 || return 0
    while read -r name; do
        [[ $name == vh-test-* ]] || continue
        say "removing leftover domain $name"
        virsh -q -c "$uri" destroy -- "$name" >/dev/null 2>&1 || true
        virsh -q -c "$uri" undefine -- "$name" >/dev/null 2>&1 || true
    done < <(virsh -q -c "$uri" list --all --name 2>/dev/null || true)
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    remove_leftovers
    if ((started)); then
        "$env_sh" stop --destroy-domains || rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
mapfile -t guest < <(scripts/libvirt/build-tiny-guest.sh)
((${#guest[@]} == 2)) || die "build-tiny-guest.sh printed no kernel/initrd"

if "$env_sh" status >/dev/null 2>&1; then
    say "libvirtd already running in $VHDEV_LIBVIRT_DIR (left running afterwards)"
else
    started=1
    "$env_sh" start >/dev/null
fi
# Domains a crashed earlier run left behind would only confuse these tests.
remove_leftovers

export VHTEST_LIBVIRT_URI=$uri
export VHTEST_LIBVIRTD_ENV=$env_sh
export VHTEST_GUEST_KERNEL=${guest[0]}
export VHTEST_GUEST_INITRD=${guest[1]}
export VHTEST_LIBVIRT_DIR=$VHDEV_LIBVIRT_DIR

say "daemon $uri, guest ${guest[0]} + ${guest[1]} (ready after $((SECONDS - t0)) s)"
targets=(dist/test/libvirt/)
if [[ -n ${VHTEST_FILES:-} ]]; then
    targets=()
    for f in $VHTEST_FILES; do
        [[ $f =~ ^[a-z0-9-]+$ && -f dist/test/libvirt/$f.test.js ]] || die "VHTEST_FILES: no dist/test/libvirt/$f.test.js"
        targets+=("dist/test/libvirt/$f.test.js")
    done
fi
node --test --test-concurrency=1 "$@" "${targets[@]}"
say "passed in $((SECONDS - t0)) s"
