#!/usr/bin/env bash
# `npm test`: everything that proves the project, in the order CI runs it.
#   unit (host) -> native against a real /dev/kvm (host and/or nested sandbox, see
#   scripts/test-native.sh) -> libvirt against a private libvirtd and a QEMU (TCG) guest
#   (scripts/test-libvirt.sh) -> integration (real daemon processes, real sockets) -> image store
#   (a real registry on loopback) -> systemd unit.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup.sh ${VHDEV_SETUP_ARGS:-}

section() { printf '\n==== %s ====\n' "$*"; }
start=$SECONDS

section "unit tests (host)"
# Layer rules first (a few seconds): no import cycles, lower layers never import upper ones.
npm run lint:deps
node --test --test-concurrency=2 dist/test/unit/

section "native tests (real /dev/kvm)"
bash scripts/test-native.sh

section "libvirt tests (real libvirtd + QEMU TCG)"
bash scripts/test-libvirt.sh

section "integration tests (real daemon processes)"
node --test --test-concurrency=1 dist/test/integration/

section "image store tests (loopback docker-registry + skopeo)"
node --test --test-concurrency=1 dist/test/images/

section "volume importer tests (loopback HTTP server + qemu-img)"
node --test --test-concurrency=1 dist/test/volumes/

section "systemd unit verification"
bash scripts/verify-systemd.sh

section "all suites passed in $((SECONDS - start)) s"
