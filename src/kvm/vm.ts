/**
 * The typed VM handle: a KVM VM fd plus guest memory the addon owns. JS addresses guest memory
 * only by guest-physical address; host mappings never leave native code, and after close()
 * every method throws instead of touching unmapped memory.
 *
 * Errors leave as VhError (mapped by toKvmError): caller mistakes - bad or unaligned fields
 * (native ERR_INVALID_ARG), ranges outside guest memory (ERR_OUT_OF_RANGE), overlapping slots
 * (EEXIST) - are INVALID_ARGUMENT; use after close is INTERNAL; other kernel failures are
 * KVM_UNUSABLE. `details.code` always keeps the native code.
 */
import type {
  NativeDirtyHarvest,
  NativeDirtyLogMode,
  NativeMemoryBacking,
  NativeMemoryRegion,
  NativeMemoryRegionSpec,
  NativeVm,
  NativeVmOptions,
} from '../native/binding';
import { callNative, toDirtyLogError } from './errors';
import { Vcpu, type VcpuOptions } from './vcpu';

/** Options of KvmSystem.createVm(): TSS/identity-map addresses, in-kernel irqchip and PIT2. */
export type VmOptions = NativeVmOptions;

/** Where a region's pages come from: anonymous, memfd (shareable), or reserved huge pages. */
export type MemoryBacking = NativeMemoryBacking;

/** What addMemoryRegion() maps and registers (see NativeMemoryRegionSpec for each field). */
export type MemoryRegionSpec = NativeMemoryRegionSpec;

/** A registered memory slot. */
export type MemoryRegion = NativeMemoryRegion;

/** A KVM VM. Created by KvmSystem.createVm(); close() it (the GC also does, eventually). */
export class Vm {
  /** The KVM device the VM was created from, for error messages. */
  readonly devicePath: string;
  private readonly handle: NativeVm;

  private constructor(handle: NativeVm, devicePath: string) {
    this.handle = handle;
    this.devicePath = devicePath;
  }

  /** Wraps a native VM; only KvmSystem.createVm() should call this. */
  static wrap(handle: NativeVm, devicePath: string): Vm {
    return new Vm(handle, devicePath);
  }

  /** KVM_CHECK_EXTENSION on the VM fd; per-VM answers can differ from the system's. */
  checkExtension(name: string): number {
    return this.call(() => this.handle.checkExtension(name));
  }

  /** KVM_ENABLE_CAP on the VM fd with up to four arguments. */
  enableCap(name: string, args?: Array<number | bigint>): void {
    this.call(() => this.handle.enableCap(name, args));
  }

  /** Allocates guest memory and registers it as a slot (KVM_SET_USER_MEMORY_REGION). */
  addMemoryRegion(spec: MemoryRegionSpec): MemoryRegion {
    return this.call(() => this.handle.addMemoryRegion(spec));
  }

  /** Unregisters a slot, then frees its memory. */
  removeMemoryRegion(slot: number): void {
    this.call(() => this.handle.removeMemoryRegion(slot));
  }

  /** Turns KVM dirty-page logging on or off for a live slot. */
  setDirtyLogging(slot: number, on: boolean): void {
    this.call(() => this.handle.setDirtyLogging(slot, on));
  }

  /** A copy of `length` guest bytes at `gpa`; the range must lie inside one region. */
  readGuest(gpa: number | bigint, length: number): Buffer {
    return this.call(() => this.handle.readGuest(gpa, length));
  }

  /** Copies `data` into guest memory at `gpa`; the range must lie inside one region. */
  writeGuest(gpa: number | bigint, data: Uint8Array): void {
    this.call(() => this.handle.writeGuest(gpa, data));
  }

  /** Registered regions, ordered by guest-physical address. */
  regions(): MemoryRegion[] {
    return this.call(() => this.handle.regions());
  }

  /** How many memory slots this VM accepts (KVM_CAP_NR_MEMSLOTS); slot ids are below it. */
  get slotLimit(): number {
    return this.handle.slotLimit;
  }

  /**
   * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (with initially-set unless false or not offered): dirty-log
   * reads stop clearing; applies initially-set to slots registered afterwards.
   */
  enableManualDirtyProtect(opts: { initiallySet?: boolean } = {}): { initiallySet: boolean } {
    return this.dirtyCall(() => this.handle.enableManualDirtyProtect(opts));
  }

  /** Switches the VM to per-vCPU dirty rings of `bytes` each; before any vCPU exists. */
  enableDirtyRing(bytes: number, opts: { acqRel?: boolean; handleFull?: boolean } = {}): { bytes: number; acqRel: boolean } {
    return this.dirtyCall(() => this.handle.enableDirtyRing(bytes, opts));
  }

  /** The raw KVM_GET_DIRTY_LOG bitmap of a slot (1 bit per host page); clears it unless in manual mode. */
  getDirtyLog(slot: number): Buffer {
    return this.dirtyCall(() => this.handle.getDirtyLog(slot));
  }

  /** KVM_CLEAR_DIRTY_LOG of pages [firstPage, firstPage + numPages) (manual mode; 64-page aligned). */
  clearDirtyLog(slot: number, firstPage: number, numPages: number): void {
    this.dirtyCall(() => this.handle.clearDirtyLog(slot, firstPage, numPages));
  }

  /** Dirty pages of a slot since the last harvest, VMM writes merged; re-arms them (libuv pool). */
  async harvestDirty(slot: number): Promise<NativeDirtyHarvest> {
    try {
      return await this.handle.harvestDirtyAsync(slot);
    } catch (e) {
      throw toDirtyLogError(e, this.devicePath);
    }
  }

  /** How KVM reports dirty pages for this VM: 'bitmap', 'manual' or 'ring'. */
  get dirtyLogMode(): NativeDirtyLogMode {
    return this.handle.dirtyLogMode;
  }

  /**
   * Creates vCPU `id` (KVM_CREATE_VCPU) with the supported CPUID minus options.cpuid.disable.
   * Closing the Vm stops and joins its vCPU threads first.
   */
  createVcpu(id: number, options?: VcpuOptions): Vcpu {
    return Vcpu.wrap(this.call(() => this.handle.createVcpu(id, options)), this.devicePath);
  }

  /** Closes the VM fd and frees all guest memory. Idempotent. */
  close(): void {
    this.handle.close();
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.handle.closed;
  }

  private dirtyCall<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw toDirtyLogError(e, this.devicePath);
    }
  }

  private call<T>(fn: () => T): T {
    return callNative(fn, this.devicePath, 'vm');
  }
}
