/**
 * A bounded queue for koffi `.async` calls. koffi throws "Too many asynchronous calls" past 256
 * calls running or queued at once, so every libvirt call goes through one CallQueue that never
 * has more than `concurrency` (hard cap MAX_CONCURRENCY) calls inside koffi; the rest wait here.
 *
 * The queue only bounds; it does not capture errors. libvirt's last error is thread-local and
 * koffi cannot run a second C call inside the same worker job, so errors are attributed per
 * connection lane instead (connection.ts explains the design).
 */
import type { ForeignFn } from './ffi';

/** Stays below koffi's max_async_calls (256), leaving room for the event loop's own call. */
export const MAX_CONCURRENCY = 240;

/** Counters a test or a metrics exporter can read. */
export interface QueueStats {
  inFlight: number;
  waiting: number;
  /** Highest `inFlight` ever observed (proves the cap holds). */
  maxInFlight: number;
  completed: number;
  concurrency: number;
}

/** A FIFO that runs at most `concurrency` koffi async calls at a time. */
export class CallQueue {
  readonly concurrency: number;
  private inFlight = 0;
  private maxInFlight = 0;
  private completed = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(concurrency = 64) {
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new RangeError(`libvirt call concurrency must be an integer in 1..${MAX_CONCURRENCY}, got ${concurrency}`);
    }
    this.concurrency = concurrency;
  }

  /** Runs `fn.async(...args)` on a worker thread once a slot is free; resolves with its result. */
  async call<T>(fn: ForeignFn, ...args: unknown[]): Promise<T> {
    await this.acquire();
    try {
      return await new Promise<T>((resolve, reject) => {
        fn.async(...args, (err: unknown, res: T) => (err ? reject(err) : resolve(res)));
      });
    } finally {
      this.release();
    }
  }

  /** Current counters. */
  stats(): QueueStats {
    return {
      inFlight: this.inFlight,
      waiting: this.waiters.length,
      maxInFlight: this.maxInFlight,
      completed: this.completed,
      concurrency: this.concurrency,
    };
  }

  private acquire(): Promise<void> | void {
    if (this.inFlight < this.concurrency) {
      this.take();
      return;
    }
    return new Promise<void>((resolve) => this.waiters.push(() => (this.take(), resolve())));
  }

  private take(): void {
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
  }

  private release(): void {
    this.inFlight--;
    this.completed++;
    const next = this.waiters.shift();
    if (next) next();
  }
}

/**
 * Raises the libuv threadpool (where koffi's async calls run) to at least `n` threads. libuv
 * reads UV_THREADPOOL_SIZE once, when the pool first starts (the first fs/dns/crypto/zlib or
 * koffi async job), so this must run at the very top of the process entry point, before any
 * import that does async I/O. An explicit, larger value from the environment is kept.
 * Returns the value in effect for a pool started from now on.
 */
export function ensureThreadpoolSize(n = 16): number {
  const current = Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10);
  if (Number.isInteger(current) && current >= n) return current;
  process.env.UV_THREADPOOL_SIZE = String(n);
  return n;
}
