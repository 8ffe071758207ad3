#!/bin/bash
# Runs inside the sandbox's chroot (the host's own bash, over 9p): restores the host command's
# environment, cwd and argument vector from the NUL-separated files the harness packed into the
# job, then execs the command. Nothing here is parsed as shell text, so any byte survives.
set -u
job=${BASH_SOURCE[0]%/*} # the job's files sit next to this script (/run/vh-job in the guest)

mapfile -d '' -t env_vars <"$job/env"
mapfile -d '' -t argv <"$job/argv"
IFS= read -r -d '' cwd <"$job/cwd" || true

for assignment in "${env_vars[@]}"; do
    export "${assignment?}"
done

if ! cd -- "$cwd"; then
    echo "kvm-sandbox: cannot enter $cwd inside the sandbox" >&2
    exit 126
fi
exec "${argv[@]}"
