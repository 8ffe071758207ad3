/**
 * Dirty-page tracking of a KVM memory slot, behind the same DirtyTracker interface as the
 * userspace backend (./dirty-tracker.ts). Three KVM mechanisms, one class each:
 *
 * - KvmBitmapTracker: KVM_GET_DIRTY_LOG returns the slot's bitmap and re-protects it in one call.
 * - KvmManualProtectTracker: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2; GET only reads, the harvest then
 *   re-protects exactly the reported pages with KVM_CLEAR_DIRTY_LOG in bounded chunks.
 *   With initially-set, the first harvest reports every page (nothing is write-protected yet).
 * - KvmRingTracker: KVM_CAP_DIRTY_LOG_RING(_ACQ_REL); each vCPU's ring is mapped when the vCPU
 *   is created, harvested, then recycled with KVM_RESET_DIRTY_RINGS.
 *
 * Every harvest also merges the pages the VMM itself wrote with Vm.writeGuest(), which KVM
 * cannot see, and clears them. KVM semantics worth knowing when reading results: the first
 * access of any kind to a page of a dirty-logged slot marks it dirty (the guest's code page
 * appears), long-mode page tables get dirtied by accessed/dirty-bit updates, and the ring may
 * report a page more than once (the bitmap hides that).
 */
import { ErrorCodes, VhError } from '../errors';
import type { NativeBinding, NativeDirtyLogMode } from '../native/binding';
import { loadNative } from '../native/loader';
import { fromNative, type DirtyHarvest, type DirtyTracker } from './dirty-tracker';
import type { Vm } from './vm';

/** How KVM reports dirty pages for a VM (see Vm.dirtyLogMode). */
export type DirtyLogMode = NativeDirtyLogMode;

/** Options shared by the KVM trackers. */
export interface KvmDirtyTrackerOptions {
  /** The addon (for the host page size); defaults to loadNative(). */
  native?: NativeBinding;
}

/** What the three KVM backends share: one dirty-logged slot of one Vm. */
abstract class KvmSlotTracker implements DirtyTracker {
  readonly pageSize: number;
  readonly pageCount: number;
  /** The tracked slot. */
  readonly slot: number;
  protected readonly vm: Vm;
  private closedFlag = false;

  protected constructor(vm: Vm, slot: number, mode: DirtyLogMode, opts: KvmDirtyTrackerOptions) {
    const region = vm.regions().find((r) => r.slot === slot);
    if (!region) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `slot ${slot} has no memory region`, { slot });
    }
    if (!region.logDirtyPages) {
      throw new VhError(
        ErrorCodes.INVALID_ARGUMENT,
        `slot ${slot} does not log dirty pages: register it with logDirtyPages or call setDirtyLogging()`,
        { slot, code: 'ERR_DIRTY_LOG_OFF' },
      );
    }
    if (vm.dirtyLogMode !== mode) {
      throw new VhError(
        ErrorCodes.INVALID_ARGUMENT,
        `this VM uses ${vm.dirtyLogMode} dirty logging, not ${mode}`,
        { slot, mode: vm.dirtyLogMode, code: 'ERR_DIRTY_LOG_MODE' },
      );
    }
    this.vm = vm;
    this.slot = slot;
    this.pageSize = (opts.native ?? loadNative()).hostPageSize();
    this.pageCount = region.size / this.pageSize;
  }

  /** Pages dirtied since the previous harvest (KVM + VMM writes); re-arms them. Runs on the libuv pool. */
  async harvest(): Promise<DirtyHarvest> {
    if (this.closedFlag) {
      throw new VhError(ErrorCodes.INTERNAL, `dirty tracker of slot ${this.slot} is closed`, { code: 'ERR_CLOSED' });
    }
    return fromNative(await this.vm.harvestDirty(this.slot));
  }

  /** Stops using the slot through this tracker; the Vm and its dirty logging stay as they are. */
  close(): void {
    this.closedFlag = true;
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.closedFlag;
  }
}

/** KVM_GET_DIRTY_LOG: each harvest reads and re-protects the slot in one ioctl. */
export class KvmBitmapTracker extends KvmSlotTracker {
  private constructor(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions) {
    super(vm, slot, 'bitmap', opts);
  }

  /** Tracks `slot` (registered with logDirtyPages) of a VM in plain bitmap mode. */
  static create(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions = {}): KvmBitmapTracker {
    return new KvmBitmapTracker(vm, slot, opts);
  }
}

/** Options of KvmManualProtectTracker.enable(). */
export interface ManualProtectOptions {
  /** Start newly registered slots all-dirty, nothing write-protected (default true, when offered). */
  initiallySet?: boolean;
}

/**
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: GET reads without clearing; the harvest re-protects only
 * the pages it reports, with KVM_CLEAR_DIRTY_LOG in chunks of at most 1 GiB of pages.
 */
export class KvmManualProtectTracker extends KvmSlotTracker {
  private constructor(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions) {
    super(vm, slot, 'manual', opts);
  }

  /**
   * Switches the VM to manual-protect mode; do it before registering the slots to track, since
   * initially-set applies to slots registered afterwards. Returns whether initially-set is on.
   */
  static enable(vm: Vm, opts: ManualProtectOptions = {}): { initiallySet: boolean } {
    return vm.enableManualDirtyProtect(opts);
  }

  /** Tracks `slot` of a VM already in manual mode (see enable()). */
  static create(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions = {}): KvmManualProtectTracker {
    return new KvmManualProtectTracker(vm, slot, opts);
  }
}

/** Options of KvmRingTracker.enable(). */
export interface DirtyRingOptions {
  /** Prefer KVM_CAP_DIRTY_LOG_RING_ACQ_REL (default true); the plain ring is the fallback. */
  acqRel?: boolean;
  /**
   * On KVM_EXIT_DIRTY_RING_FULL the vCPU thread drains every ring into the pending bitmaps and
   * re-enters the guest (default false: the vCPU reports 'dirtyRingFull' and parks until the
   * owner harvests and resume()s it).
   */
  handleFull?: boolean;
}

/**
 * KVM_CAP_DIRTY_LOG_RING: per-vCPU rings of dirty {slot, page} entries, mapped when each vCPU
 * is created. Entries for other slots are kept for their own trackers. A ring that reaches its
 * soft limit makes its vCPU exit with KVM_EXIT_DIRTY_RING_FULL: harvest, then resume() it
 * (or enable with handleFull).
 */
export class KvmRingTracker extends KvmSlotTracker {
  private constructor(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions) {
    super(vm, slot, 'ring', opts);
  }

  /**
   * Enables the ring on a VM with `bytes` per vCPU (a power of two, at least the page size);
   * only before any vCPU exists (INVALID_ARGUMENT afterwards, KVM_UNUSABLE where unsupported).
   */
  static enable(vm: Vm, bytes: number, opts: DirtyRingOptions = {}): { bytes: number; acqRel: boolean } {
    return vm.enableDirtyRing(bytes, opts);
  }

  /** Tracks `slot` of a VM in ring mode (see enable()). */
  static create(vm: Vm, slot: number, opts: KvmDirtyTrackerOptions = {}): KvmRingTracker {
    return new KvmRingTracker(vm, slot, opts);
  }
}
