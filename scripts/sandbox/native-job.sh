#!/usr/bin/env bash
# The native suite's job inside the sandbox: one sanity line (kernel, node, /dev/kvm), then the
# suite itself. Usage (from scripts/test-native.sh): native-job.sh TEST_FILE...
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# Everything costs 10-30x under TCG: VHDEV_SANDBOX_PYTHON names the real interpreter (a pyenv-style
# shim forks dozens of times) and -S skips site-packages (kvm-check.py needs only the stdlib).
kvm=$("${VHDEV_SANDBOX_PYTHON:-python3}" -S "$here/kvm-check.py") || {
    echo "sandbox: $kvm" >&2
    exit 1
}
echo "sandbox: kernel $(uname -r), node $(node --version), $kvm"
exec node --test --test-concurrency=1 "$@"
