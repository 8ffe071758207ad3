/**
 * A level-triggered work queue (client-go's workqueue, reduced to what the reconciler needs):
 * - a key is queued at most once; adding a key that is being processed marks it dirty, and it
 *   runs again right after (never two workers on one key);
 * - at most `workers` keys are processed at once;
 * - a failed run is retried after a jittered, capped, per-key exponential backoff; success
 *   resets the key's backoff; `addAfter` schedules a re-check (e.g. a timeout) without counting
 *   as a failure;
 * - counters for metrics: depth, in flight, adds, processed, failures, and histograms of the
 *   wait (queued -> started) and of the run duration.
 */
import { backoffDelay, type Backoff } from '../../util/backoff';
import { Histogram, type HistogramSnapshot } from '../../util/histogram';

export type Handler = (key: string) => Promise<void>;

export interface WorkQueueStats {
  depth: number;
  inFlight: number;
  processed: number;
  failures: number;
  /** Sum and count of run durations (ms), for an average. */
  runMsTotal: number;
  /** Keys queued (a key already queued or dirty does not count again), as client-go's adds. */
  adds: number;
  /** Seconds from queued to started (a dirty re-run: from the end of the previous run). */
  waitSeconds: HistogramSnapshot;
  /** Seconds a run took. */
  runSeconds: HistogramSnapshot;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly due = new Map<string, number>();
  private readonly failuresByKey = new Map<string, number>();
  private readonly idleWaiters: Array<() => void> = [];
  private stopped = false;
  private readonly counters = { processed: 0, failures: 0, runMsTotal: 0, adds: 0 };
  /** The keys in `queue`, with performance.now() when each was queued. */
  private readonly queuedAt = new Map<string, number>();
  private readonly waitHist = new Histogram();
  private readonly runHist = new Histogram();

  constructor(
    private readonly handler: Handler,
    private readonly workers: number,
    private readonly backoff: Backoff = { initialMs: 500, maxMs: 30_000, stableMs: 0 },
    private readonly onError: (key: string, err: unknown, retryInMs: number) => void = () => undefined,
  ) {}

  /** Queues `key` now (cancelling a pending delayed add). */
  add(key: string): void {
    if (this.stopped) return;
    const t = this.timers.get(key);
    if (t) {
      clearTimeout(t);
      this.timers.delete(key);
      this.due.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queuedAt.has(key)) return;
    this.queuedAt.set(key, performance.now());
    this.counters.adds++;
    this.queue.push(key);
    this.pump();
  }

  /** Queues `key` after `ms` unless it is added sooner; a sooner addAfter replaces a later one. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    const due = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing) {
      if ((this.due.get(key) ?? 0) <= due) return;
      clearTimeout(existing);
    }
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.due.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.timers.set(key, t);
    this.due.set(key, due);
  }

  /** Forgets `key`'s failure count and pending delayed add (after it was deleted). */
  forget(key: string): void {
    this.failuresByKey.delete(key);
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
    this.due.delete(key);
  }

  stats(): WorkQueueStats {
    return { depth: this.queue.length, inFlight: this.running.size, ...this.counters, waitSeconds: this.waitHist.snapshot(), runSeconds: this.runHist.snapshot() };
  }

  /** Resolves when nothing is queued or running (delayed adds do not count). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking work; resolves once running handlers finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.due.clear();
    this.queue.length = 0;
    this.queuedAt.clear();
    this.dirty.clear();
    if (this.running.size > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.workers && this.queue.length > 0) {
      const key = this.queue.shift() as string;
      const at = this.queuedAt.get(key) as number;
      this.queuedAt.delete(key);
      this.waitHist.observe((performance.now() - at) / 1000);
      this.running.add(key);
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const t0 = performance.now();
    let retryIn = -1;
    try {
      await this.handler(key);
      this.failuresByKey.delete(key);
    } catch (e) {
      const n = this.failuresByKey.get(key) ?? 0;
      this.failuresByKey.set(key, n + 1);
      this.counters.failures++;
      retryIn = backoffDelay(n, this.backoff);
      try {
        this.onError(key, e, retryIn);
      } catch {
        /* reporting must not break the queue */
      }
    } finally {
      this.counters.processed++;
      const ms = performance.now() - t0;
      this.counters.runMsTotal += ms;
      this.runHist.observe(ms / 1000);
      this.running.delete(key);
    }
    if (this.dirty.delete(key)) this.add(key);
    else if (retryIn >= 0) this.addAfter(key, retryIn);
    this.pump();
    if (this.queue.length === 0 && this.running.size === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
