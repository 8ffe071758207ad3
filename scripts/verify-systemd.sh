#!/usr/bin/env bash
# Lints systemd/virt-handler.service with `systemd-analyze verify` and fails on ANY diagnostic
# about the unit (verify itself exits 0 on "Unknown key ..., ignoring", which is exactly the
# kind of typo worth catching).
#
# Why a rewritten copy: verify insists that ExecStart's binary exists and is executable, and
# the unit names the installed paths (/usr/bin/node, /opt/virt-handler), which a development
# box or CI runner does not have. The copy points ExecStart/WorkingDirectory at this checkout
# and the node on PATH; every other line is verified byte-for-byte as shipped. What this does
# NOT prove: that /opt/virt-handler is installed, or that the sandbox lets the daemon start
# (run `systemctl start virt-handler && vhctl health` on a real host for that).
#
# Usage: scripts/verify-systemd.sh [UNIT_FILE]   (needs systemd-analyze: apt-get install systemd)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit="${1:-$repo/systemd/virt-handler.service}"
name="$(basename "$unit")"

if ! command -v systemd-analyze >/dev/null; then
  echo "verify-systemd: systemd-analyze not found; install it (Debian/Ubuntu: apt-get install systemd)" >&2
  exit 2
fi
node_bin="$(command -v node)" || { echo "verify-systemd: node not on PATH" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Rewrite only the two install-path lines; refuse if the unit no longer has the expected shape,
# so the rewrite can never silently verify something else.
if [ "$(grep -c '^ExecStart=/usr/bin/node /opt/virt-handler/' "$unit")" != 1 ]; then
  echo "verify-systemd: $unit: expected exactly one 'ExecStart=/usr/bin/node /opt/virt-handler/...' line" >&2
  exit 1
fi
sed -e "s#^ExecStart=/usr/bin/node /opt/virt-handler/#ExecStart=$node_bin $repo/#" \
    -e "s#^WorkingDirectory=/opt/virt-handler\$#WorkingDirectory=$repo#" \
    "$unit" > "$tmp/$name"

set +e
# --recursive-errors=no: judge this unit only, not the host's copies of its dependencies
# (network-online.target...), which vary between machines and containers.
out="$(systemd-analyze verify --man=no --generators=no --recursive-errors=no "$tmp/$name" 2>&1)"
rc=$?
set -e

about_unit="$(printf '%s\n' "$out" | grep -F "$name" || true)"
if [ -n "$out" ]; then printf '%s\n' "$out" | sed "s#$tmp/#systemd/#" >&2; fi
if [ $rc -ne 0 ] || [ -n "$about_unit" ]; then
  echo "verify-systemd: FAILED ($name: systemd-analyze exit $rc${about_unit:+, diagnostics above})" >&2
  exit 1
fi
echo "verify-systemd: $name OK ($(systemd-analyze --version | head -1))"
