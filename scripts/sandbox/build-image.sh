#!/usr/bin/env bash
# Builds (once) and prints the directory of the sandbox's guest image: an uncompressed vmlinux
# and a base initramfs (busybox + the modules below + init.sh), made from Debian packages that are
# downloaded, never installed.
#
# Cache: ${VHDEV_CACHE_DIR:-$HOME/.cache/virt-handler}/sandbox/<kernel>-<inputs hash>/. A directory
# appears by rename only when complete, so an interrupted build never leaves a broken image, and
# builders serialise on a flock. The key covers the package versions and the files that shape
# the image, so any change to them builds a new image; images unused for 7 days are pruned.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VHDEV_CACHE_DIR:-${HOME:?set HOME or VHDEV_CACHE_DIR}/.cache/virt-handler}/sandbox

# Load order matters: the kernel package has no modules.dep, so dependencies come first.
modules=(
    virt/lib/irqbypass
    drivers/crypto/ccp/ccp
    arch/x86/kvm/kvm
    arch/x86/kvm/kvm-amd
    drivers/virtio/virtio_ring
    drivers/virtio/virtio
    drivers/virtio/virtio_pci_modern_dev
    drivers/virtio/virtio_pci_legacy_dev
    drivers/virtio/virtio_pci
    net/9p/9pnet
    net/9p/9pnet_virtio
    fs/netfs/netfs
    fs/fscache/fscache
    fs/9p/9p
    fs/overlayfs/overlay
)
# Shipped in /lib/modules of the initramfs but not loaded by init.sh: other guests built from
# this image (scripts/libvirt/build-tiny-guest.sh) load them.
extra_modules=(
    drivers/virtio/virtio_balloon
)

# shellcheck source=../lib/cache.sh
source "$here/../lib/cache.sh"

say() { echo "kvm-sandbox: $*" >&2; }
die() { say "$*"; exit 1; }

# Prints "<kernel package> <kernel version> <busybox-static version>": the kernel that the
# linux-image-amd64 metapackage points at (linux-image-6.1.0-NN-amd64) and the candidates.
resolve_packages() {
    local kernel versions
    kernel=${VHDEV_SANDBOX_KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)}
    [[ -n $kernel ]] || die "cannot resolve linux-image-amd64 to a kernel package (run apt-get update?)"
    versions=$(apt-cache policy "$kernel" busybox-static 2>/dev/null | awk '
        /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
        /^  Candidate:/ && $2 != "(none)" { version[pkg] = $2 }
        END { print version[k], version["busybox-static"] }' k="$kernel")
    [[ $versions =~ ^[^\ ]+\ [^\ ]+$ ]] || die "apt has no candidate for $kernel or busybox-static (run apt-get update?)"
    echo "$kernel $versions"
}

# apt-cache takes seconds when apt keeps no binary cache (Debian container images): reuse the
# last answer while the package lists and the override are unchanged.
resolve_packages_cached() {
    local fingerprint saved=$cache_root/packages
    fingerprint=$(
        {
            echo "${VHDEV_SANDBOX_KERNEL_PACKAGE:-}"
            stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /etc/apt/preferences* 2>/dev/null || true
        } | sha256sum | cut -c1-16
    )
    if [[ -f $saved ]] && [[ $(head -n 1 "$saved") == "$fingerprint" ]]; then
        sed -n 2p "$saved"
        return
    fi
    local resolved
    resolved=$(resolve_packages)
    mkdir -p "$cache_root"
    printf '%s\n%s\n' "$fingerprint" "$resolved" >"$saved.$$"
    mv -f "$saved.$$" "$saved"
    echo "$resolved"
}

# Downloads the packages into $1 and assembles the image there.
build_into() {
    local out=$1 work=$1/work
    mkdir -p "$work/kernel" "$work/initrd/bin" "$work/initrd/etc" "$work/initrd/lib/modules"
    (cd "$work" && apt-get download "$kernel_pkg=$kernel_version" "busybox-static=$busybox_version") \
        >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; die "apt-get download failed"; }

    local members=("./boot/vmlinuz-$kernel_release") module
    for module in "${modules[@]}" "${extra_modules[@]}"; do
        members+=("./lib/modules/$kernel_release/kernel/$module.ko")
    done
    dpkg-deb --fsys-tarfile "$work/${kernel_pkg}_"*.deb | tar -x -C "$work/kernel" "${members[@]}"
    python3 "$here/extract-vmlinux.py" "$work/kernel/boot/vmlinuz-$kernel_release" "$out/vmlinux"

    dpkg-deb --fsys-tarfile "$work"/busybox-static_*.deb | tar -x -C "$work" ./bin/busybox
    cp "$work/bin/busybox" "$work/initrd/bin/busybox"
    install -m 755 "$here/init.sh" "$work/initrd/init"
    for module in "${modules[@]}"; do
        cp "$work/kernel/lib/modules/$kernel_release/kernel/$module.ko" "$work/initrd/lib/modules/"
        echo "${module##*/}" >>"$work/initrd/etc/vh-modules"
    done
    for module in "${extra_modules[@]}"; do
        cp "$work/kernel/lib/modules/$kernel_release/kernel/$module.ko" "$work/initrd/lib/modules/"
    done
    (cd "$work/initrd" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -9 >"$out/initrd.gz"
    printf '%s\n' "$kernel_release" >"$out/kernel-release"
    rm -rf "$work"
}

read -r kernel_pkg kernel_version busybox_version < <(resolve_packages_cached)
kernel_release=${kernel_pkg#linux-image-}
key=$(
    {
        printf '%s\n' "$kernel_pkg=$kernel_version" "busybox-static=$busybox_version"
        cat "$here/build-image.sh" "$here/init.sh" "$here/extract-vmlinux.py"
    } | sha256sum | cut -c1-12
)
image=$cache_root/$kernel_release-$key

# Runs under the cache lock, only when the image is really being built.
build_logged() {
    say "building the guest image for $kernel_pkg $kernel_version (once; cached in $image)"
    build_into "$1"
}

started=$SECONDS
cache_build_once "$cache_root" "$image" build_logged
if [[ $CACHE_BUILT -eq 1 ]]; then
    say "guest image built in $((SECONDS - started)) s"
fi
echo "$image"
