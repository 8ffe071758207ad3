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
  /** KVM_CREATE_VCPU(id) + kvm_run mmap + KVM_SET_CPUID2 (supported CPUID minus options.cpuid.disable). */
  createVcpu(id: number, options?: NativeVcpuOptions): NativeVcpu;
  /** True once close() ran. */
  readonly closed: boolean;
  /**
   * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: GET stops clearing, CLEAR re-protects. initiallySet
   * (default true, when offered) starts slots registered afterwards all-dirty.
   */
  enableManualDirtyProtect(options?: { initiallySet?: boolean }): { initiallySet: boolean };
  /**
   * KVM_CAP_DIRTY_LOG_RING_ACQ_REL (preferred unless acqRel is false) or DIRTY_LOG_RING with
   * `bytes` per vCPU ring (power of two, >= page size). Before any vCPU exists (EINVAL after).
   * Each vCPU created afterwards has its ring mapped at creation; with handleFull, its thread
   * drains all rings itself on KVM_EXIT_DIRTY_RING_FULL instead of reporting 'dirtyRingFull'.
   */
  enableDirtyRing(bytes: number, options?: { acqRel?: boolean; handleFull?: boolean }): { bytes: number; acqRel: boolean };
  /** Raw KVM_GET_DIRTY_LOG bitmap of a slot (ENOENT: logging off; ENXIO: ring VM). */
  getDirtyLog(slot: number): Buffer;
  /** KVM_CLEAR_DIRTY_LOG of every page in the range (manual mode; 64-page alignment rules). */
  clearDirtyLog(slot: number, firstPage: number, numPages: number): void;
  /** Dirty pages of a slot since the last harvest (KVM log or ring + VMM writes); re-arms them. */
  harvestDirty(slot: number): NativeDirtyHarvest;
  /** harvestDirty() on the libuv pool. */
  harvestDirtyAsync(slot: number): Promise<NativeDirtyHarvest>;
  /** How KVM reports dirty pages for this VM. */
  readonly dirtyLogMode: NativeDirtyLogMode;
}

/** Dirty logging mode of a VM: plain bitmap, manual-protect bitmap, or per-vCPU rings. */
export type NativeDirtyLogMode = 'bitmap' | 'manual' | 'ring';

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
  /** Re-arming time (KVM_CLEAR_DIRTY_LOG, KVM_RESET_DIRTY_RINGS); 0 for the userspace tracker, which re-arms inside the scan. */
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

/** Options of createVcpu(). */
export interface NativeVcpuOptions {
  /** Feature names (as in /proc/cpuinfo: 'avx2', 'x2apic', 'lm', ...) cleared from the supported CPUID. */
  cpuid?: { disable?: string[] };
}

/** One kvm_segment; base is a BigInt, the rest Numbers. */
export interface NativeSegment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** kvm_regs: general-purpose registers, rip and rflags. */
export interface NativeRegs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint; rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint; r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

/** kvm_sregs: segments, descriptor tables, control registers, EFER, APIC base, pending-IRQ bitmap. */
export interface NativeSregs {
  cs: NativeSegment; ds: NativeSegment; es: NativeSegment; fs: NativeSegment; gs: NativeSegment;
  ss: NativeSegment; tr: NativeSegment; ldt: NativeSegment;
  gdt: { base: bigint; limit: number };
  idt: { base: bigint; limit: number };
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
  /** 4 x 64 bits: interrupts pending injection (KVM_NR_INTERRUPTS = 256). */
  interruptBitmap: bigint[];
}

/** kvm_fpu: x87 stack (8 x 16 bytes), control/status, SSE registers (16 x 16 bytes). */
export interface NativeFpu {
  fpr: Buffer; fcw: number; fsw: number; ftwx: number; lastOpcode: number;
  lastIp: bigint; lastDp: bigint; xmm: Buffer; mxcsr: number;
}

/** kvm_vcpu_events: pending/injected exception, interrupt, NMI, SMI and triple fault. */
export interface NativeVcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  /** KVM_VCPUEVENT_VALID_* bits saying which fields are meaningful. */
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFault: { pending: number };
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}

/** One MSR value. */
export interface NativeMsr {
  index: number;
  data: bigint;
}

/**
 * What the vCPU thread reports. `seq` orders events of one vCPU. 'parked' follows pause(), a
 * HLT (policy 'park'), a system event or a full dirty ring; 'stopped' is always the last event.
 * For io 'in' and mmio 'read' the thread waits until complete(data) is called.
 */
export type NativeVcpuExit =
  | { reason: 'io'; seq: number; port: number; size: number; count: number; direction: 'out'; data: Buffer }
  | { reason: 'io'; seq: number; port: number; size: number; count: number; direction: 'in' }
  | { reason: 'mmio'; seq: number; address: bigint; length: number; direction: 'write'; data: Buffer }
  | { reason: 'mmio'; seq: number; address: bigint; length: number; direction: 'read' }
  | { reason: 'hlt' | 'shutdown' | 'dirtyRingFull' | 'intr' | 'parked'; seq: number }
  | { reason: 'failEntry'; seq: number; hardwareEntryFailureReason: bigint; cpu: number }
  | { reason: 'internalError'; seq: number; suberror: number; data: bigint[] }
  | { reason: 'systemEvent'; seq: number; type: number; data: bigint[] }
  | { reason: 'unknown'; seq: number; exitReason: number }
  | { reason: 'error'; seq: number; code: string; errno: number; syscall: string }
  | { reason: 'stopped'; seq: number; cause: string };

/** Run state of a vCPU thread. */
export type NativeVcpuState = 'idle' | 'running' | 'waiting' | 'parked' | 'stopped' | 'closed';

/**
 * A vCPU fd, its kvm_run mapping and its dedicated KVM_RUN thread. State accessors throw
 * ERR_BUSY while the thread is inside KVM_RUN (pause first) and ERR_CLOSED once the Vm closed.
 */
export interface NativeVcpu {
  readonly id: number;
  readonly state: NativeVcpuState;
  readonly closed: boolean;
  getRegs(): NativeRegs;
  /** Fields left out keep their current value. */
  setRegs(regs: Partial<NativeRegs>): void;
  getSregs(): NativeSregs;
  setSregs(sregs: Partial<NativeSregs>): void;
  getFpu(): NativeFpu;
  setFpu(fpu: Partial<NativeFpu>): void;
  /** KVM_GET_MSRS; stops at the first MSR KVM cannot read (the result is then shorter). */
  getMsrs(indices: number[]): NativeMsr[];
  /** KVM_SET_MSRS; returns how many were set (in order). */
  setMsrs(msrs: NativeMsr[]): number;
  /** The 1 KiB local APIC page (needs irqchip). */
  getLapic(): Buffer;
  setLapic(regs: Uint8Array): void;
  /** KVM_MP_STATE_* number (0 runnable, 1 uninitialized, 2 init received, 3 halted, ...). */
  getMpState(): number;
  setMpState(state: number): void;
  getVcpuEvents(): NativeVcpuEvents;
  setVcpuEvents(events: Partial<NativeVcpuEvents>): void;
  /** Real mode at entry (< 1 MiB): cs = entry & 0xf0000, ip = entry & 0xffff, data segments 0. */
  setupRealMode(entry: number): void;
  /** Flat 32-bit protected mode (cs 0x08, data 0x10, 4 GiB limits, no GDT in memory). */
  setupProtectedMode(entry: number): void;
  /** 64-bit mode: 6 pages of identity tables (low 4 GiB, 2 MiB pages) at pageTableGpa, a GDT at gdtGpa. */
  setupLongMode(entry: number | bigint, layout: { pageTableGpa: number | bigint; gdtGpa: number | bigint }): void;
  /** Spawns the KVM_RUN thread; every exit goes to onExit. hlt: 'park' (default) or 'stop'. */
  start(onExit: (exit: NativeVcpuExit) => void, options?: { hlt?: 'park' | 'stop' }): void;
  /** Asks the thread to park; true when already parked/idle/stopped (no 'parked' event follows). */
  pause(): boolean;
  /** Un-parks; false when it was not parked. */
  resume(): boolean;
  /** Ends the loop and joins the thread ('stopped' is delivered afterwards). Idempotent. */
  stop(): void;
  /** Data for the pending io 'in' (size*count bytes) or mmio 'read' (length bytes). */
  complete(data: Uint8Array): void;
  /** Native handler for ports [first, first+count): 'sink' counts OUT bytes, 'console' also keeps up to capacity bytes. INs read 0xff. */
  claimPorts(first: number, count: number, kind?: 'sink' | 'console', capacity?: number): void;
  releasePorts(first: number): void;
  /** Bytes OUT-ed to the claim starting at `first` and the retained bytes (drain empties them). */
  readPorts(first: number, drain?: boolean): { total: number; data: Buffer };
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
