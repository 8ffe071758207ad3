/**
 * The raw shape of the C++ addon (build/Release/virt_handler_native.node).
 * This file only describes what native/addon.cc exports; the public, typed API lives in
 * src/kvm/. Keep the two in step: a field renamed here must be renamed in native/ too.
 */

/** One entry of KVM_GET_SUPPORTED_CPUID (struct kvm_cpuid_entry2). */
export interface NativeCpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** A /dev/kvm handle. Every method is a short synchronous ioctl. */
export interface NativeKvmSystem {
  /** KVM_GET_API_VERSION (12 on every supported kernel). */
  apiVersion(): number;
  /** KVM_CHECK_EXTENSION for a name from capabilityNames(); throws ERR_UNKNOWN_CAPABILITY otherwise. */
  checkExtension(name: string): number;
  /** KVM_CHECK_EXTENSION for every name in the table. */
  capabilities(): Record<string, number>;
  /** KVM_GET_VCPU_MMAP_SIZE. */
  vcpuMmapSize(): number;
  /** KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG. */
  supportedCpuid(): NativeCpuidEntry[];
  /** KVM_GET_MSR_INDEX_LIST. */
  msrIndexList(): number[];
  /** KVM_CREATE_VM (type 0), then the options in kernel order (identity map, TSS, irqchip, PIT2). */
  createVm(options?: NativeVmOptions): NativeVm;
  /** Closes the fd; further calls throw ERR_CLOSED. Idempotent. */
  close(): void;
  /** True once close() ran. */
  readonly closed: boolean;
}

/** Options of createVm(); addresses are Numbers (exact below 2^53) or BigInts. */
export interface NativeVmOptions {
  /** KVM_SET_TSS_ADDR: three pages below 4 GiB reserved for the Intel real-mode TSS. */
  tssAddr?: number | bigint;
  /** KVM_SET_IDENTITY_MAP_ADDR: one page below 4 GiB for Intel's real-mode identity map. */
  identityMapAddr?: number | bigint;
  /** KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and local APICs. */
  irqchip?: boolean;
  /** KVM_CREATE_PIT2 with a dummy speaker port; needs irqchip. */
  pit2?: boolean;
}

/** Where a guest memory region's pages come from. */
export type NativeMemoryBacking = 'anonymous' | 'memfd' | 'hugetlb2M' | 'hugetlb1G';

/** Arguments of addMemoryRegion(). */
export interface NativeMemoryRegionSpec {
  /** KVM slot id, below slotLimit; unique within the VM. */
  slot: number;
  /** Guest-physical start, host-page aligned. */
  guestPhysAddr: number | bigint;
  /** Bytes, a non-zero multiple of the host page size (of the huge page size for hugetlb). */
  size: number | bigint;
  /** KVM_MEM_LOG_DIRTY_PAGES. */
  logDirtyPages?: boolean;
  /** KVM_MEM_READONLY (needs KVM_CAP_READONLY_MEM); the VMM can still writeGuest() it. */
  readonly?: boolean;
  /** Default 'anonymous'. hugetlb needs reserved huge pages (ENOMEM otherwise). */
  backing?: NativeMemoryBacking;
  /** madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE); unset leaves the system default. Not for hugetlb. */
  transparentHugePages?: boolean;
}

/** A registered region as regions() reports it. */
export interface NativeMemoryRegion {
  slot: number;
  guestPhysAddr: number;
  size: number;
  backing: NativeMemoryBacking;
  logDirtyPages: boolean;
  readonly: boolean;
  transparentHugePages?: boolean;
}

/**
 * A VM fd and its native-owned guest memory. After close() every call throws ERR_CLOSED; the
 * mappings are gone, and no JS value ever held a host address.
 */
export interface NativeVm {
  /** KVM_CHECK_EXTENSION on the VM fd. */
  checkExtension(name: string): number;
  /** KVM_ENABLE_CAP on the VM fd with up to 4 args. */
  enableCap(name: string, args?: Array<number | bigint>): void;
  /** Maps and registers a slot (KVM_SET_USER_MEMORY_REGION). */
  addMemoryRegion(spec: NativeMemoryRegionSpec): NativeMemoryRegion;
  /** Unregisters (size 0) then unmaps a slot. */
  removeMemoryRegion(slot: number): void;
  /** Re-registers a slot with KVM_MEM_LOG_DIRTY_PAGES toggled. */
  setDirtyLogging(slot: number, on: boolean): void;
  /** A copy of guest bytes; the range must lie in one region (ERR_OUT_OF_RANGE otherwise). */
  readGuest(gpa: number | bigint, length: number): Buffer;
  /** Copies data into guest memory; same bounds rule as readGuest(). */
  writeGuest(gpa: number | bigint, data: Uint8Array): void;
  /** Registered regions by guest-physical address. */
  regions(): NativeMemoryRegion[];
  /** KVM_CAP_NR_MEMSLOTS for this VM. */
  readonly slotLimit: number;
  /** Closes the VM fd then unmaps all guest memory; idempotent. */
  close(): void;
  /** True once close() ran. */
  readonly closed: boolean;
}

/**
 * Errors thrown by the addon are plain Error objects carrying Node-style facts:
 * code ('ENOENT', 'EACCES', 'EEXIST', ... or 'ERR_*' for addon-level misuse),
 * errno (positive errno number, 0 for ERR_*), syscall ('open', 'KVM_CHECK_EXTENSION', ...),
 * and path where a path was involved.
 */
export interface NativeErrorFacts {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/** Options of `new UserspaceDirtyTracker(size, options)`. */
export interface NativeUserspaceTrackerOptions {
  /** 'anonymous' (MAP_PRIVATE, default) or 'memfd' (MAP_SHARED shmem). */
  backing?: 'anonymous' | 'memfd';
  /** madvise(MADV_HUGEPAGE) the region; tracking stays at host-page granularity. */
  transparentHugePages?: boolean;
  /** Size of the PAGEMAP_SCAN result vector (default: enough for the region, at most 65536). */
  regionsPerScan?: number;
}

/** One harvest of a UserspaceDirtyTracker; the pages it reports are write-protected again. */
export interface NativeDirtyHarvest {
  /** 1 bit per host page, little-endian u64 words (length a multiple of 8). */
  bitmap: Buffer;
  /** [firstPage, count] pairs, ascending, maximal. */
  runs: Uint32Array;
  dirtyPages: number;
  /** Time inside PAGEMAP_SCAN (collect + re-arm in one walk). */
  scanNs: number;
  /** Always 0: re-arming happens inside the scan. */
  clearNs: number;
  /** Time to count, build the run list and copy out the results. */
  buildNs: number;
}

/** Native-owned memory tracked by userfaultfd async write-protect + PAGEMAP_SCAN. */
export interface NativeUserspaceDirtyTracker {
  /** Copies data into the region at offset; ERR_OUT_OF_RANGE past the end. */
  write(offset: number, data: Uint8Array): void;
  /** A copy of [offset, offset + length). */
  read(offset: number, length: number): Buffer;
  /** Fills each listed page with byte (dirties it). */
  fillPages(pages: Uint32Array, byte: number): void;
  /** Fills each [first, count] run with byte. */
  fillRuns(runs: Uint32Array, byte: number): void;
  /** read()/pread() from fd straight into the region (a write made by the kernel); returns bytes read. */
  readFromFd(fd: number, offset: number, length: number, position?: number): number;
  /** Dirty pages since the last harvest (or creation); re-arms them. Throws ERR_BUSY during harvestAsync(). */
  harvest(): NativeDirtyHarvest;
  /** harvest() on the libuv pool; one at a time per tracker (ERR_BUSY otherwise). */
  harvestAsync(): Promise<NativeDirtyHarvest>;
  /** Unmaps and closes the fds (once a running harvestAsync() settles); idempotent. Other calls then throw ERR_CLOSED. */
  close(): void;
  /** The userfaultfd features in use. */
  features(): { wpAsync: boolean; wpUnpopulated: boolean; userModeOnly: boolean };
  readonly closed: boolean;
  /** Bytes mapped (size rounded up to the page size). */
  readonly size: number;
  readonly pageSize: number;
  readonly pageCount: number;
}

export interface NativeBinding {
  /** Opens the device (default '/dev/kvm') with O_RDWR|O_CLOEXEC. */
  KvmSystem: new (devicePath?: string) => NativeKvmSystem;
  /** Names accepted by checkExtension(), in table order. */
  capabilityNames(): string[];
  /** Decodes CPUID leaves into feature names (e.g. 'svm', 'avx2'); pure, needs no KVM. */
  decodeCpuidFeatures(entries: NativeCpuidEntry[]): string[];
  /**
   * Sends one sd_notify datagram. socketPath defaults to $NOTIFY_SOCKET; a leading '@' means an
   * abstract socket. Returns false when no socket is configured, true when sent; throws on error.
   */
  sdNotify(message: string, socketPath?: string): boolean;
  /** sysconf(_SC_PAGESIZE). */
  hostPageSize(): number;
  /** Maps `size` bytes and arms userspace dirty tracking on them (Linux 6.7+). */
  UserspaceDirtyTracker: new (size: number, options?: NativeUserspaceTrackerOptions) => NativeUserspaceDirtyTracker;
  /** [firstBit, count] pairs of the set bits [0, nbits) of a little-endian bitmap (nbits defaults to all). */
  bitmapToRuns(bitmap: Uint8Array, nbits?: number): Uint32Array;
  /** Number of set bits in [0, nbits). */
  bitmapPopcount(bitmap: Uint8Array, nbits?: number): number;
}
