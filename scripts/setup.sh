#!/usr/bin/env bash
# Idempotent set-up shared by `npm test`, `npm run demo` and .ci/run:
#   1. Debian packages the tests and the sandbox need (installed when running as root,
#      otherwise listed with the command to run);
#   2. npm dependencies (npm ci when node_modules is missing or older than the lockfile);
#   3. the native addon (node-gyp) and the TypeScript build (`npm run build:ts`: tsc -> dist/,
#      then the gRPC contracts compiled from proto/).
# Flags: --no-apt skips step 1 (e.g. on a dev box you manage yourself).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Every package a test, a script or the sandbox uses. Keep in step with README "Requirements".
apt_packages=(
  build-essential python3          # node-gyp toolchain
  qemu-system-x86 qemu-system-data # nested-KVM sandbox (TCG + qboot.rom)
  busybox-static cpio xz-utils     # sandbox initramfs
  systemd                          # systemd-analyze verify of the unit
  libvirt0                         # libvirt.so.0 for the koffi binding (test:///default tests)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-utils
                                   # real libvirtd + virsh for scripts/test-libvirt.sh
  libxml2-utils                    # xmllint, used by virt-xml-validate in the domain XML tests
  procps                           # ps/pgrep used by tests
  genisoimage                      # virt-launcher builds cloud-init NoCloud seed ISOs, config drives and
                                   # config-volume ISOs; its isoinfo reads them back in the tests
  skopeo                           # the image store's registry client (src/images/)
  docker-registry                  # a loopback registry for the image tests and bench:images
  curl                             # bench:images' curl + qemu-img baseline for the DataVolume importer
  ovmf                             # UEFI firmware for EFI and secure-boot guests (node probe: host-software.ts)
  swtpm swtpm-tools                # the emulated TPM libvirt starts for devices.tpm
)

want_apt=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) want_apt=0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ $want_apt -eq 1 ]]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  # The sandbox image build `apt-get download`s the current Debian kernel: it needs package
  # lists, and lists older than a day may name versions the mirror no longer has (404).
  lists_fresh=0
  if [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null) ]]; then
    lists_fresh=1
  fi
  if [[ $(id -u) -eq 0 && ( ${#missing[@]} -gt 0 || $lists_fresh -eq 0 ) ]]; then
    log "refreshing apt package lists"
    apt-get update -qq
  elif [[ $lists_fresh -eq 0 ]]; then
    log "apt package lists are missing or older than a day; run: sudo apt-get update"
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      log "installing Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "missing Debian packages: ${missing[*]}"
      log "install them with: sudo apt-get install -y ${missing[*]}"
      exit 1
    fi
  fi
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm dependencies (npm ci)"
  # npm ci also builds the addon through the package's install script.
  npm ci --no-audit --no-fund
fi

if [[ ! -f build/Release/virt_handler_native.node ]] || [[ -n $(find native binding.gyp -newer build/Release/virt_handler_native.node -print -quit) ]]; then
  log "building the native addon (node-gyp)"
  npx --no-install node-gyp rebuild >/dev/null
fi

log "compiling TypeScript and the gRPC contracts"
npm run --silent build:ts
log "ready"
