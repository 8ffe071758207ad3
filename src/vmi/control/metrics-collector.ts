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
 * What a launcher sends is its claim, not a trusted structure: parseStatsReport validates every
 * field (types, ranges, sizes, unique device names). A report that fails is counted as an
 * error and never reaches the metrics.
 */
import { ErrorCodes, VhError } from '../../errors';
import type { LauncherChannel } from './launcher-port';

/** One VMI to collect from; `stats` is null when its launcher is not connected. */
export interface StatsTarget {
  uid: string;
  namespace: string;
  name: string;
  stats: ((timeoutMs: number) => Promise<string>) | null;
}

export interface VcpuSample {
  id: number;
  /** virVcpuState: 0 offline, 1 running, 2 blocked. */
  state?: number;
  timeNs?: number;
  waitNs?: number;
  delayNs?: number;
}

export interface NetSample {
  name: string;
  rxBytes?: number;
  rxPackets?: number;
  rxErrs?: number;
  rxDrop?: number;
  txBytes?: number;
  txPackets?: number;
  txErrs?: number;
  txDrop?: number;
}

export interface BlockSample {
  name: string;
  rdReqs?: number;
  rdBytes?: number;
  rdTimesNs?: number;
  wrReqs?: number;
  wrBytes?: number;
  wrTimesNs?: number;
  flReqs?: number;
  flTimesNs?: number;
}

export interface BalloonSample {
  currentKiB?: number;
  maximumKiB?: number;
  swapInKiB?: number;
  swapOutKiB?: number;
  majorFault?: number;
  minorFault?: number;
  unusedKiB?: number;
  availableKiB?: number;
  usableKiB?: number;
  rssKiB?: number;
  diskCachesKiB?: number;
}

/**
 * A validated stats report. Every 64-bit libvirt value is a JS number here: converted from its
 * decimal string through BigInt, so a value above 2^53 loses precision (Prometheus stores
 * float64 anyway) but never magnitude. Fields libvirt did not report are absent.
 */
export interface VmiStatsReport {
  cpu: { timeNs?: number; userNs?: number; systemNs?: number };
  vcpus: VcpuSample[];
  balloon: BalloonSample;
  net: NetSample[];
  block: BlockSample[];
}

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
        const report = parseStatsReport(await (t.stats as NonNullable<StatsTarget['stats']>)(this.opts.perVmiTimeoutMs));
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

// ---------------------------------------------------------------------------------------------
// validation of what a launcher sends (src/launcher/messages.ts encodeStatsReport)
// ---------------------------------------------------------------------------------------------

const MAX_VCPUS = 4096;
const MAX_DEVICES = 512;
const U64_MAX = (1n << 64n) - 1n;
/** Device names become label values: printable ASCII, bounded. */
const DEVICE_NAME = /^[\x21-\x7e]{1,128}$/;

class ReportError extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An unsigned 64-bit counter: a decimal string (the wire form) or a non-negative safe integer. */
function u64(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return v;
  } else if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) {
    const b = BigInt(v);
    if (b <= U64_MAX) return Number(b);
  }
  throw new ReportError(`${where}: not an unsigned 64-bit integer`);
}

function smallInt(v: unknown, where: string, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max) return v;
  throw new ReportError(`${where}: not an integer in 0..${max}`);
}

function pick<K extends string>(o: Record<string, unknown>, keys: readonly K[], where: string): Partial<Record<K, number>> {
  const out: Partial<Record<K, number>> = {};
  for (const k of keys) {
    const v = u64(o[k], `${where}.${k}`);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function section(report: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = report[key];
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new ReportError(`${key}: not an object`);
  return v;
}

function list(report: Record<string, unknown>, key: string, max: number): Record<string, unknown>[] {
  const v = report[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ReportError(`${key}: not a list`);
  if (v.length > max) throw new ReportError(`${key}: more than ${max} entries`);
  return v.map((x, i) => {
    if (!isObject(x)) throw new ReportError(`${key}[${i}]: not an object`);
    return x;
  });
}

/** Named devices; a device without a name cannot be labelled and is left out. */
function devices<K extends string>(report: Record<string, unknown>, key: string, fields: readonly K[]): Array<{ name: string } & Partial<Record<K, number>>> {
  const seen = new Set<string>();
  const out: Array<{ name: string } & Partial<Record<K, number>>> = [];
  list(report, key, MAX_DEVICES).forEach((d, i) => {
    const where = `${key}[${i}]`;
    if (d.name === undefined) return;
    if (typeof d.name !== 'string' || !DEVICE_NAME.test(d.name)) throw new ReportError(`${where}.name: not a printable name of 1..128 characters`);
    if (seen.has(d.name)) throw new ReportError(`${where}.name: duplicate ${JSON.stringify(d.name)}`);
    seen.add(d.name);
    out.push({ name: d.name, ...pick(d, fields, where) });
  });
  return out;
}

/**
 * Parses and validates a launcher's stats JSON; throws VhError INVALID_ARGUMENT naming the
 * first bad field. Unknown fields are ignored (a newer launcher may send more).
 */
export function parseStatsReport(json: unknown): VmiStatsReport {
  try {
    if (typeof json !== 'string' || json === '') throw new ReportError('empty answer');
    let raw: unknown;
    try {
      raw = JSON.parse(json);
    } catch {
      throw new ReportError('not JSON');
    }
    if (!isObject(raw)) throw new ReportError('not an object');
    const cpu = pick(section(raw, 'cpu'), ['timeNs', 'userNs', 'systemNs'], 'cpu');
    const balloon = pick(
      section(raw, 'balloon'),
      ['currentKiB', 'maximumKiB', 'swapInKiB', 'swapOutKiB', 'majorFault', 'minorFault', 'unusedKiB', 'availableKiB', 'usableKiB', 'rssKiB', 'diskCachesKiB'],
      'balloon',
    );
    const ids = new Set<number>();
    const vcpus = list(raw, 'vcpus', MAX_VCPUS).map((v, i): VcpuSample => {
      const where = `vcpus[${i}]`;
      const id = smallInt(v.id, `${where}.id`, MAX_VCPUS - 1);
      if (id === undefined) throw new ReportError(`${where}.id: missing`);
      if (ids.has(id)) throw new ReportError(`${where}.id: duplicate ${id}`);
      ids.add(id);
      const state = smallInt(v.state, `${where}.state`, 16);
      return { id, ...(state === undefined ? {} : { state }), ...pick(v, ['timeNs', 'waitNs', 'delayNs'], where) };
    });
    const net = devices(raw, 'net', ['rxBytes', 'rxPackets', 'rxErrs', 'rxDrop', 'txBytes', 'txPackets', 'txErrs', 'txDrop']);
    const block = devices(raw, 'block', ['rdReqs', 'rdBytes', 'rdTimesNs', 'wrReqs', 'wrBytes', 'wrTimesNs', 'flReqs', 'flTimesNs']);
    return { cpu, vcpus, balloon, net, block };
  } catch (e) {
    if (e instanceof ReportError) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `launcher stats report: ${e.message}`);
    throw e;
  }
}
