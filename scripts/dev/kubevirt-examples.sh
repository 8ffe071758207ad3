#!/usr/bin/env bash
# Acceptance run of KubeVirt's example manifests on this node (real libvirtd, QEMU TCG, a
# loopback registry): see scripts/dev/run-kubevirt-examples.ts. Usage:
#   git -C <kubevirt repo> archive HEAD examples | tar -x -C /tmp/kv
#   bash scripts/dev/kubevirt-examples.sh /tmp/kv/examples [--only RE] [--timeout-s N]
# Needs root and a compiled dist/ (npm run build:ts). Starts the private test libvirtd unless it
# runs, and stops it afterwards if it started it.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[[ $# -ge 1 ]] || { echo "usage: $0 <examples dir> [--only RE] [--timeout-s N]" >&2; exit 2; }
env_sh=$repo/scripts/libvirt/libvirtd-env.sh
export VHDEV_LIBVIRT_DIR=${VHDEV_LIBVIRT_DIR:-/tmp/vh-libvirtd}
mapfile -t guest < <(scripts/libvirt/build-tiny-guest.sh)
started=0
if ! "$env_sh" status >/dev/null 2>&1; then
    started=1
    "$env_sh" start >/dev/null
fi
stop() { if ((started)); then "$env_sh" stop --destroy-domains >/dev/null || true; fi; }
trap stop EXIT
VHTEST_LIBVIRT_URI=$("$env_sh" uri) VHTEST_GUEST_KERNEL=${guest[0]} VHTEST_GUEST_INITRD=${guest[1]} \
    node dist/scripts/dev/run-kubevirt-examples.js "$@"
