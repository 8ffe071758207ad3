#!/usr/bin/env bash
# `npm run demo`: set up what is missing, start virt-handler in the foreground on the embedded
# dev defaults (no root paths touched), show what it learned about this node, and stop cleanly
# on Ctrl-C. Any VH_* variable (see README "Configuration") still applies.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/setup.sh

# The dev profile keeps sockets and state under $XDG_RUNTIME_DIR or /tmp, even as root;
# vhctl resolves the same default from the same variable.
export VH_PROFILE="${VH_PROFILE:-dev}"
vhctl=(node dist/vhctl.cjs)

# Own session: a terminal Ctrl-C reaches only this script, which then sends exactly one SIGTERM
# (the daemon treats a second signal as "exit now, skip the drain").
setsid node dist/virt-handler.cjs &
pid=$!
stop() {
  trap - INT TERM
  if kill -0 "$pid" 2>/dev/null; then
    echo "demo: stopping virt-handler (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null || true
  fi
}
trap stop INT TERM

# Wait for readiness through the gRPC health service (SERVING only once the probe finished
# and every listener is bound).
ready=0
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if "${vhctl[@]}" health >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  echo "demo: virt-handler did not become ready (see its log above)" >&2
  stop
  wait "$pid" || exit $?
  exit 1
fi

config=$(node dist/virt-handler.cjs --print-config)
port=$(printf '%s\n' "$config" | sed -n 's/^ *port: *\([0-9]*\)$/\1/p' | head -n1)
http_sock=$(printf '%s\n' "$config" | awk '/^http:/{h=1} h && /^ *socket:/{print $2; exit}')

echo
"${vhctl[@]}" node
echo
echo "virt-handler is running (pid $pid). Try:"
echo "  curl http://127.0.0.1:${port:-8185}/readyz"
echo "  curl http://127.0.0.1:${port:-8185}/v1/node"
echo "  curl http://127.0.0.1:${port:-8185}/metrics"
echo "  curl --unix-socket ${http_sock} http://localhost/healthz"
echo "  VH_PROFILE=dev node dist/vhctl.cjs node -o json"
echo "Press Ctrl-C to stop."
status=0
wait "$pid" || status=$?
# A trapped signal interrupts `wait` (status > 128) before the daemon has drained: collect the
# daemon's own exit status (bash keeps it even if the daemon has already exited).
if [[ $status -gt 128 ]]; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
