#!/usr/bin/env bash
# `npm run demo`: the main job on a fresh machine, on embedded defaults.
#   1. installs and builds what is missing (scripts/setup.sh);
#   2. starts a private libvirtd + QEMU (scripts/libvirt/libvirtd-env.sh) unless VH_LIBVIRT_URI
#      names one already, and builds the tiny guest (cached);
#   3. starts virt-handler on the dev profile (state and sockets under $XDG_RUNTIME_DIR or /tmp);
#   4. creates examples/tiny.yaml, shows the guest's console until its init marker, prints the
#      status URLs and what to try;
#   5. on Ctrl-C: deletes the VMI (graceful), stops the daemon with one SIGTERM, stops the
#      libvirtd it started. Exits with the daemon's status.
# Needs root for the private libvirtd (QEMU runs as root there).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "demo: $*" >&2; }

# VHDEV_DEMO_SKIP_SETUP=1: the caller built everything already (test/libvirt/demo.test.ts runs the
# demo from inside the test suite, where rebuilding dist/ under the running tests is wrong).
[[ -n ${VHDEV_DEMO_SKIP_SETUP:-} ]] || bash scripts/setup.sh

export VH_PROFILE="${VH_PROFILE:-dev}"
vhctl=(node dist/vhctl.cjs)
env_sh=scripts/libvirt/libvirtd-env.sh

started_libvirtd=0
if [[ -z ${VH_LIBVIRT_URI:-} ]]; then
  [[ $EUID -eq 0 ]] || { say "run as root (the demo starts a private libvirtd), or set VH_LIBVIRT_URI to a libvirtd you can use"; exit 1; }
  if ! "$env_sh" status >/dev/null 2>&1; then
    say "starting a private libvirtd (QEMU TCG guests)"
    "$env_sh" start >/dev/null
    started_libvirtd=1
  fi
  VH_LIBVIRT_URI=$("$env_sh" uri)
  export VH_LIBVIRT_URI
fi

say "building the tiny guest (cached after the first run)"
mapfile -t guest < <(scripts/libvirt/build-tiny-guest.sh)

# Where the dev profile keeps images: relative paths in examples/tiny.yaml resolve there.
config=$(node dist/virt-handler.cjs --print-config)
read -r image_root state_dir port http_sock < <(printf '%s' "$config" | node -e '
  const c = require("yaml").parse(require("fs").readFileSync(0, "utf8"));
  console.log([c.vmi.imageRoot, c.stateDir, c.http.tcp ? c.http.tcp.port : 0, c.http.socket].join(" "));')
mkdir -p "$image_root/tiny"
cp -f "${guest[0]}" "$image_root/tiny/vmlinux"
cp -f "${guest[1]}" "$image_root/tiny/initrd.gz"

# Own session: a terminal Ctrl-C reaches only this script, which then sends exactly one SIGTERM
# (the daemon treats a second signal as "exit now, skip the drain").
setsid node dist/virt-handler.cjs &
pid=$!
cleaned=0
cleanup() {
  trap - INT TERM
  ((cleaned)) && return
  cleaned=1
  echo
  if kill -0 "$pid" 2>/dev/null; then
    say "deleting the VMI (graceful shutdown first)"
    "${vhctl[@]}" delete tiny --wait --timeout 60s >/dev/null 2>&1 || say "delete did not finish; the daemon cleans up on its next start"
    say "stopping virt-handler (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
  fi
}
trap cleanup INT TERM

ready=0
for _ in $(seq 1 150); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if "${vhctl[@]}" health >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  say "virt-handler did not become ready (see its log above)"
  cleanup
  wait "$pid" || true
  ((started_libvirtd)) && "$env_sh" stop --destroy-domains
  exit 1
fi

say "creating examples/tiny.yaml"
"${vhctl[@]}" create -f examples/tiny.yaml
uid=$("${vhctl[@]}" get tiny -o json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).metadata.uid)')
[[ $uid =~ ^[0-9a-f-]{36}$ ]] || { say "could not read the VMI uid"; cleanup; wait "$pid" || true; exit 1; }
serial="$state_dir/vmis/$uid/serial.log"

say "waiting for the guest's console (TCG boots in a few seconds)"
# Print only complete lines, and test for the marker in what was printed: the guest keeps
# writing between our reads, so a marker found by a separate grep may not have been shown yet.
shown=0
ready=0
for _ in $(seq 1 1200); do
  if [[ -f $serial ]]; then
    lines=$(wc -l <"$serial")
    if ((lines > shown)); then
      chunk=$(sed -n "$((shown + 1)),${lines}p" "$serial")
      printf '%s\n' "$chunk" | sed 's/^/  console| /'
      shown=$lines
      [[ $chunk == *VH-GUEST-READY* ]] && { ready=1; break; }
    fi
  fi
  sleep 0.1
done
((ready)) || say "the guest's console marker did not appear within 120 s (see $serial)"
"${vhctl[@]}" get tiny || true

echo
echo "The tiny VMI is running under virt-handler (pid $pid). Try:"
echo "  curl --unix-socket ${http_sock} http://localhost/v1/vmis/default/tiny"
echo "  curl --unix-socket ${http_sock} http://localhost/v1/vmis"
echo "  curl http://127.0.0.1:${port}/readyz      (loopback TCP serves only /healthz, /readyz, /metrics)"
echo "  VH_PROFILE=dev node dist/vhctl.cjs console tiny      (type a line; Ctrl-] detaches)"
echo "  VH_PROFILE=dev node dist/vhctl.cjs pause tiny / unpause tiny / list"
echo "Press Ctrl-C to stop (the VMI is deleted, the daemon and libvirtd stopped)."
status=0
wait "$pid" || status=$?
# A trapped signal interrupts `wait` (status > 128) before the daemon has drained: collect the
# daemon's own exit status.
if [[ $status -gt 128 ]]; then
  status=0
  wait "$pid" || status=$?
fi
if ((started_libvirtd)); then
  say "stopping the private libvirtd"
  "$env_sh" stop --destroy-domains || true
fi
exit "$status"
