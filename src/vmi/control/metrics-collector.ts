/**
 * Per-VMI domain statistics for /metrics, asked of each launcher over its Connect stream (the
 * get_stats command), as KubeVirt's handler asks each virt-launcher over its command socket: it
 * works the same with the node libvirtd and with a launcher's embedded driver.
 *
 * One launcher must never hold a scrape:
 * - at most `concurrency` launchers are asked at once, each for at most `perVmiTimeoutMs`;
 * - the collection returns at `deadlineMs` with whatever is still outstanding left out;
 * - a VMI without a fresh answer is served its last good sample (with its age) for up to
 *   `maxStaleMs`, then it has no series until it answers again;
 * - a launcher still owing an answer is not asked again (commands never pile up on a stuck
 *   link); an answer that arrives late still becomes the VMI's last good sample.
 * Concurrent scrapes share one collection, and a finished one is reused for `cacheMs`.
 *
 * What a launcher sends is its claim, not a trusted structure: the transport checks every field
 * (src/launcher-protocol/validate.ts checkDomainStats: types, ranges, counts, unique device
 * names) before it reaches this collector; a report that fails is an error answer, counted here,
 * and never reaches the metrics. This file is the collection policy only.
 */
import { ErrorCodes, VhError } from '../../errors';
import type { StatsReport } from '../../launcher-protocol/messages';
import type { LauncherChannel } from './launcher-port';

/** One VMI to collect from; `stats` is null when its launcher is not connected. */
export interface StatsTarget {
  uid: string;
  namespace: string;
  name: string;
  stats: ((timeoutMs: number) => Promise<StatsReport>) | null;
}

/**
 * A launcher's stats answer, already checked by the transport (src/launcher-protocol/validate.ts
 * checkDomainStats): every value a number, fields libvirt did not report absent.
 */
export type VmiStatsReport = StatsReport;

export interface VmiStatsSample {
  uid: string;
  namespace: string;
  name: string;
  report: VmiStatsReport;
  /** When the handler received it (handler clock; the launcher's is not trusted). */
  receivedAt: number;
  /** False when this is an earlier sample served because the launcher did not answer now. */
  fresh: boolean;
}

export interface Collection {
  samples: VmiStatsSample[];
  /** When it finished (ms since epoch). */
  at: number;
  durationMs: number;
}

/** Running totals, for the collector's own metrics. */
export interface CollectorCounters {
  collections: number;
  /** Launchers that did not answer within perVmiTimeoutMs (or the deadline came first). */
  timeouts: number;
  /** Failed answers: launcher errors, disconnected launchers, reports that failed validation. */
  errors: number;
  /** Launchers skipped because they still owed the previous answer. */
  skipped: number;
  lastDurationMs: number;
}

export interface MetricsCollectorOptions {
  targets: () => StatsTarget[];
  concurrency?: number;
  perVmiTimeoutMs?: number;
  deadlineMs?: number;
  maxStaleMs?: number;
  cacheMs?: number;
  /** Called for each failed VMI (for a debug log); must not throw. */
  onError?: (target: StatsTarget, err: unknown) => void;
}

const DEFAULTS = { concurrency: 8, perVmiTimeoutMs: 1_000, deadlineMs: 3_000, maxStaleMs: 120_000, cacheMs: 1_000 };

const TIMED_OUT = Symbol('timed out');

export class MetricsCollector {
  private readonly opts: Required<Omit<MetricsCollectorOptions, 'onError'>> & Pick<MetricsCollectorOptions, 'onError'>;
  private readonly lastGood = new Map<string, VmiStatsSample>();
  /** uids whose launcher still owes an answer, and since when. */
  private readonly asking = new Map<string, number>();
  private running: Promise<Collection> | null = null;
  private last: Collection | null = null;
  private readonly totals: CollectorCounters = { collections: 0, timeouts: 0, errors: 0, skipped: 0, lastDurationMs: 0 };

  constructor(opts: MetricsCollectorOptions) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  counters(): CollectorCounters {
    return { ...this.totals };
  }

  /** The samples to expose now (one collection shared by concurrent callers; cached for cacheMs). */
  collect(): Promise<Collection> {
    if (this.last && Date.now() - this.last.at < this.opts.cacheMs) return Promise.resolve(this.last);
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(): Promise<Collection> {
    const t0 = Date.now();
    const targets = this.opts.targets();
    const live = new Set(targets.map((t) => t.uid));
    // A deleted (or no longer Running) VMI's series disappear with its sample.
    for (const uid of this.lastGood.keys()) if (!live.has(uid)) this.lastGood.delete(uid);

    const fresh = new Map<string, VmiStatsSample>();
    let next = 0;
    let expired = false;
    const worker = async (): Promise<void> => {
      while (!expired && next < targets.length) {
        const t = targets[next++] as StatsTarget;
        const s = await this.ask(t);
        if (s && !expired) fresh.set(t.uid, s);
      }
    };
    const workers = Promise.all(Array.from({ length: Math.min(this.opts.concurrency, targets.length) }, worker));
    if ((await withTimeout(workers, this.opts.deadlineMs)) === TIMED_OUT) {
      expired = true;
      // The VMIs being asked when the deadline came count as timeouts; the unasked ones do not.
    }

    const now = Date.now();
    const samples: VmiStatsSample[] = [];
    for (const t of targets) {
      const f = fresh.get(t.uid);
      if (f) {
        samples.push(f);
        continue;
      }
      const old = this.lastGood.get(t.uid);
      if (old && now - old.receivedAt <= this.opts.maxStaleMs) samples.push({ ...old, fresh: false });
    }
    const c: Collection = { samples, at: now, durationMs: now - t0 };
    this.totals.collections++;
    this.totals.lastDurationMs = c.durationMs;
    this.last = c;
    return c;
  }

  /** Asks one launcher; returns its fresh sample or null (counted as timeout, error or skip). */
  private async ask(t: StatsTarget): Promise<VmiStatsSample | null> {
    if (!t.stats) {
      this.fail(t, new VhError(ErrorCodes.FAILED_PRECONDITION, 'launcher not connected'));
      return null;
    }
    const since = this.asking.get(t.uid);
    // A real link always settles (its own deadline, or the stream ending); the age bound only
    // guards against a stats function that never does.
    if (since !== undefined && Date.now() - since < Math.max(30_000, 10 * this.opts.perVmiTimeoutMs)) {
      this.totals.skipped++;
      return null;
    }
    const asked = Date.now();
    this.asking.set(t.uid, asked);
    let settled = false;
    let timedOut = false;
    const answer = (async (): Promise<VmiStatsSample | null> => {
      try {
        const report = await (t.stats as NonNullable<StatsTarget['stats']>)(this.opts.perVmiTimeoutMs);
        const sample: VmiStatsSample = { uid: t.uid, namespace: t.namespace, name: t.name, report, receivedAt: Date.now(), fresh: true };
        this.lastGood.set(t.uid, sample);
        return sample;
      } catch (e) {
        // The link's own deadline and ours are the same length: count it once, as a timeout.
        if (!timedOut && !(e instanceof VhError && e.code === ErrorCodes.DEADLINE_EXCEEDED)) this.fail(t, e);
        else if (!timedOut) this.totals.timeouts++;
        return null;
      } finally {
        settled = true;
        if (this.asking.get(t.uid) === asked) this.asking.delete(t.uid);
      }
    })();
    const r = await withTimeout(answer, this.opts.perVmiTimeoutMs);
    if (r === TIMED_OUT && !settled) {
      timedOut = true;
      this.totals.timeouts++;
      return null;
    }
    return r === TIMED_OUT ? null : r;
  }

  private fail(t: StatsTarget, err: unknown): void {
    this.totals.errors++;
    try {
      this.opts.onError?.(t, err);
    } catch {
      /* reporting must not break a scrape */
    }
  }
}

/** The collection targets among the manager's entries: Running VMIs. */
export function statsTargets(vmis: ReadonlyArray<{ uid: string; namespace: string; name: string; phase: string; channel: LauncherChannel | null }>): StatsTarget[] {
  const out: StatsTarget[] = [];
  for (const v of vmis) {
    if (v.phase !== 'Running') continue;
    const channel = v.channel;
    out.push({ uid: v.uid, namespace: v.namespace, name: v.name, stats: channel && channel.isOpen ? (ms) => channel.stats(ms) : null });
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMED_OUT>((r) => {
    timer = setTimeout(() => r(TIMED_OUT), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
