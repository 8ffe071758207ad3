#!/usr/bin/env bash
# The native suite (dist/test/native/*.test.js) against a real /dev/kvm.
#
# VHTEST_NATIVE_TESTS picks where it runs:
#   auto     (default) on the host when its /dev/kvm works, and always once inside the nested-KVM
#            sandbox (scripts/kvm-sandbox.sh), so every machine, CI included, proves the suite
#            under a kernel it controls
#   host     on the host only; fails when the host's /dev/kvm is unusable
#   sandbox  inside the sandbox only
#   off      nothing, with a loud warning (a local opt-out; CI never sets it)
# Fails when a selected run fails or cannot run. Prints the mode and the timings.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
mode=${VHTEST_NATIVE_TESTS:-auto}
addon=build/Release/virt_handler_native.node

say() { echo "test-native: $*" >&2; }
fail() { say "$*"; exit 1; }
elapsed() { awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", t1 - t0 }'; }

if [[ ${VHDEV_IN_SANDBOX:-} == 1 && $mode == auto ]]; then
    mode=host # already inside scripts/kvm-sandbox.sh: its /dev/kvm is the one to test
fi

case $mode in
auto | host | sandbox) ;;
off)
    say "**************************************************************"
    say "WARNING: VHTEST_NATIVE_TESTS=off - the native KVM suite did NOT run."
    say "Nothing here proves the addon against a real /dev/kvm."
    say "**************************************************************"
    exit 0
    ;;
*) fail "VHTEST_NATIVE_TESTS must be auto, host, sandbox or off, got '$mode'" ;;
esac

shopt -s nullglob
tests=(dist/test/native/*.test.js)
shopt -u nullglob
((${#tests[@]})) || fail "no dist/test/native/*.test.js: run 'npm run build' first"
[[ -f $addon ]] || fail "$addon is missing: run 'npm run build:native' first"

# The real interpreter, not a pyenv-style shim: the sandbox runs kvm-check.py with it too.
python=${VHDEV_SANDBOX_PYTHON:-$(python3 -c 'import sys; print(sys.executable)')} || fail "python3 is required"
export VHDEV_SANDBOX_PYTHON=$python
results=()
failed=false

run_on_host() {
    local check started
    if ! check=$("$python" -S scripts/sandbox/kvm-check.py); then
        [[ $mode == host ]] && fail "host run requested but $check"
        say "host: $check; the suite runs in the sandbox only"
        return
    fi
    say "host: $check; running ${#tests[@]} test file(s)"
    started=$EPOCHREALTIME
    if node --test --test-concurrency=1 "${tests[@]}"; then
        results+=("host passed in $(elapsed "$started")")
    else
        results+=("host FAILED after $(elapsed "$started")")
        failed=true
    fi
}

run_in_sandbox() {
    local started status=0
    say "sandbox: booting the nested-KVM VM once for ${#tests[@]} test file(s)"
    started=$EPOCHREALTIME
    scripts/kvm-sandbox.sh --timings -- bash scripts/sandbox/native-job.sh "${tests[@]}" || status=$?
    case $status in
    0) results+=("sandbox passed in $(elapsed "$started")") ;;
    126) fail "the sandbox is unavailable (see above); VHTEST_NATIVE_TESTS=host runs on the host's /dev/kvm only" ;;
    *)
        results+=("sandbox FAILED (exit $status, see scripts/sandbox/README.md) after $(elapsed "$started")")
        failed=true
        ;;
    esac
}

[[ $mode == sandbox ]] || run_on_host
[[ $mode == host ]] || run_in_sandbox

summary=$(printf '; %s' "${results[@]}")
say "mode $mode: ${summary#; }"
if $failed; then
    exit 1
fi
