# shellcheck shell=bash
# Sourced by the image builders (scripts/sandbox/build-image.sh, scripts/libvirt/build-tiny-guest.sh).
#
# cache_build_once CACHE_ROOT ENTRY BUILD_FN
#   Makes sure ENTRY (a directory under CACHE_ROOT holding initrd.gz) exists: builds it at most
#   once across concurrent callers (flock on CACHE_ROOT/.lock), into a temp dir that is renamed
#   into place only when BUILD_FN succeeded, so an interrupted build never leaves a half entry.
#   Sets CACHE_BUILT=1 when it built the entry, 0 when it was already there (never signalled by
#   the exit status: a call inside `if` would switch off errexit for BUILD_FN). Touches ENTRY so
#   the pruning below (entries unused for 7 days) keeps what is in use.
cache_build_once() {
    local cache_root=$1 entry=$2 build_fn=$3 lock_fd tmp
    # shellcheck disable=SC2034 # read by the caller
    CACHE_BUILT=0
    if [[ ! -f $entry/initrd.gz ]]; then
        mkdir -p "$cache_root"
        exec {lock_fd}>"$cache_root/.lock"
        flock "$lock_fd"
        # Someone else may have built it while we waited for the lock.
        if [[ ! -f $entry/initrd.gz ]]; then
            # Holding the lock: whatever temp dirs exist belong to builders that died. Entries
            # nobody used for a week (an older kernel or older scripts) go too.
            rm -rf "$cache_root"/.build.*
            find "$cache_root" -mindepth 1 -maxdepth 1 -type d -mtime +7 -exec rm -rf {} +
            tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
            # shellcheck disable=SC2064 # expand $tmp now: the trap outlives this function's locals
            trap "rm -rf '$tmp'" EXIT
            "$build_fn" "$tmp"
            chmod 755 "$tmp"
            mv -T "$tmp" "$entry"
            trap - EXIT
            # shellcheck disable=SC2034
            CACHE_BUILT=1
        fi
        exec {lock_fd}>&-
    fi
    touch "$entry"
}
