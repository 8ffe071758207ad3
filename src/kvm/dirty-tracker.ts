/**
 * Dirty-page tracking behind one interface. Every backend (KVM bitmap, manual-protect, dirty
 * ring, and the userspace tracker here) answers harvest() with the same shape: a bitmap of host
 * pages, the natively computed run list, the count and where the time went.
 *
 * The userspace backend tracks plain native-owned memory without KVM: userfaultfd async
 * write-protect + PAGEMAP_SCAN, which reports written pages and write-protects them again in a
 * single ioctl (see ../shared/recipes/dirty-tracking.md). Writes made by the kernel into the
 * region (read() into it) are tracked too. Needs Linux 6.7+.
 */
import type {
  NativeBinding,
  NativeDirtyHarvest,
  NativeUserspaceDirtyTracker,
  NativeUserspaceTrackerOptions,
} from '../native/binding';
import { loadNative } from '../native/loader';
import { toDirtyTrackerError } from './errors';

/** Where a harvest spent its time, in nanoseconds. */
export interface DirtyTimings {
  /** Collecting the dirty set (KVM_GET_DIRTY_LOG, ring walk, PAGEMAP_SCAN). */
  scanNs: number;
  /** Re-arming (KVM_CLEAR_DIRTY_LOG, ring reset); 0 when the scan re-arms in the same call. */
  clearNs: number;
  /** Counting and building the run list natively. */
  buildNs: number;
}

/** The pages written since the previous harvest. */
export interface DirtyHarvest {
  /** 1 bit per host page (bit i = page i), little-endian u64 words. */
  bitmap: Buffer;
  /** Flat [firstPage, count, firstPage, count, ...], ascending and maximal. */
  runs: Uint32Array;
  /** Number of set bits in `bitmap`. */
  dirtyPages: number;
  timings: DirtyTimings;
}

/** What every dirty-tracking backend offers. Pages are host pages (pageSize), never a fixed 4096. */
export interface DirtyTracker {
  /** Host page size in bytes (sysconf). */
  readonly pageSize: number;
  /** Pages tracked; the bitmap has at least this many bits. */
  readonly pageCount: number;
  /** Returns the pages dirtied since the last harvest and re-arms tracking for them. */
  harvest(): Promise<DirtyHarvest>;
  /** Releases the backend; further calls fail with a VhError. Idempotent. */
  close(): void;
}

/** Options of UserspaceDirtyTracker.create(). */
export interface UserspaceDirtyTrackerOptions extends NativeUserspaceTrackerOptions {
  /** The addon; defaults to loadNative(). */
  native?: NativeBinding;
}

/** Pages to dirty with fill(): explicit page indices or flat [first, count] runs. */
export type PageSelection = { pages: Uint32Array | readonly number[] } | { runs: Uint32Array | readonly number[] };

function toU32(values: Uint32Array | readonly number[]): Uint32Array {
  return values instanceof Uint32Array ? values : Uint32Array.from(values);
}

/**
 * Native-owned memory whose writes are tracked without KVM. Useful as a migration source for
 * plain memory, and as the host-side twin of the KVM backends in tests and benchmarks.
 */
export class UserspaceDirtyTracker implements DirtyTracker {
  private readonly handle: NativeUserspaceDirtyTracker;

  private constructor(handle: NativeUserspaceDirtyTracker) {
    this.handle = handle;
  }

  /** Maps `size` bytes (rounded up to the host page size) with every page clean and armed. */
  static create(size: number, opts: UserspaceDirtyTrackerOptions = {}): UserspaceDirtyTracker {
    const { native = loadNative(), ...nativeOpts } = opts;
    try {
      return new UserspaceDirtyTracker(new native.UserspaceDirtyTracker(size, nativeOpts));
    } catch (e) {
      throw toDirtyTrackerError(e);
    }
  }

  get pageSize(): number {
    return this.call(() => this.handle.pageSize);
  }

  get pageCount(): number {
    return this.call(() => this.handle.pageCount);
  }

  /** Bytes tracked (a multiple of pageSize). */
  get size(): number {
    return this.call(() => this.handle.size);
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.handle.closed;
  }

  /** The userfaultfd features in use (wpUnpopulated; userModeOnly when running unprivileged). */
  features(): { wpAsync: boolean; wpUnpopulated: boolean; userModeOnly: boolean } {
    return this.call(() => this.handle.features());
  }

  /** Copies `data` into the region at `offset`; INVALID_ARGUMENT when it does not fit. */
  write(offset: number, data: Uint8Array): void {
    this.call(() => this.handle.write(offset, data));
  }

  /** A copy of `length` bytes at `offset`. */
  read(offset: number, length: number): Buffer {
    return this.call(() => this.handle.read(offset, length));
  }

  /** Fills whole pages with `byte` natively (cheap way to dirty a chosen set). */
  fill(selection: PageSelection, byte: number): void {
    this.call(() =>
      'pages' in selection
        ? this.handle.fillPages(toU32(selection.pages), byte)
        : this.handle.fillRuns(toU32(selection.runs), byte),
    );
  }

  /** Reads from `fd` straight into the region (the kernel writes the pages); returns bytes read. */
  readFromFd(fd: number, offset: number, length: number, position?: number): number {
    return this.call(() => this.handle.readFromFd(fd, offset, length, position));
  }

  /**
   * Synchronous harvest: one PAGEMAP_SCAN walk collects and re-arms (about 0.3 ms for a clean
   * GiB, tens of ms for a fully dirty one), on the calling thread.
   */
  harvestSync(): DirtyHarvest {
    return this.call(() => fromNative(this.handle.harvest()));
  }

  /**
   * DirtyTracker.harvest(): the scan and the run list run on the libuv pool. One at a time per
   * tracker; a second concurrent call rejects (details.code 'ERR_BUSY').
   */
  async harvest(): Promise<DirtyHarvest> {
    try {
      return fromNative(await this.handle.harvestAsync());
    } catch (e) {
      throw toDirtyTrackerError(e);
    }
  }

  /** Unmaps the region and closes the fds; a running harvest() completes first. Idempotent. */
  close(): void {
    this.handle.close();
  }

  private call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw toDirtyTrackerError(e);
    }
  }
}

/** The public DirtyHarvest of a native harvest object (every backend returns that shape). */
export function fromNative(h: NativeDirtyHarvest): DirtyHarvest {
  return {
    bitmap: h.bitmap,
    runs: h.runs,
    dirtyPages: h.dirtyPages,
    timings: { scanNs: h.scanNs, clearNs: h.clearNs, buildNs: h.buildNs },
  };
}

/**
 * [firstBit, count] pairs of the set bits [0, nbits) of a little-endian bitmap (nbits defaults
 * to the whole buffer), computed natively a 64-bit word at a time. Works for KVM bitmaps too.
 */
export function bitmapToRuns(bitmap: Uint8Array, nbits?: number, native: NativeBinding = loadNative()): Uint32Array {
  try {
    return native.bitmapToRuns(bitmap, nbits);
  } catch (e) {
    throw toDirtyTrackerError(e);
  }
}

/** Number of set bits in [0, nbits) of a bitmap, computed natively. */
export function bitmapPopcount(bitmap: Uint8Array, nbits?: number, native: NativeBinding = loadNative()): number {
  try {
    return native.bitmapPopcount(bitmap, nbits);
  } catch (e) {
    throw toDirtyTrackerError(e);
  }
}
