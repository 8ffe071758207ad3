/**
 * virConnectGetAllDomainStats records decoded into a typed structure.
 *
 * Numbers: a value keeps the width libvirt gives it. Counters, byte/KiB sizes and nanosecond
 * times are ULLONG/LLONG in libvirt and are `bigint` here; states, reasons, counts and periods
 * are INT/UINT and are `number`. (If a driver ever sends a narrower type for a bigint field, it
 * is widened with BigInt(); never the other way round.)
 *
 * Missing fields stay `undefined`: drivers report different subsets (the test driver, a guest
 * without virtio-balloon, an interface without stats), and an invented 0 would look like a
 * measurement. `raw` always carries the full decoded record for anything not mapped here.
 */
import type { Handle } from './ffi';
import type { Lane } from './lane';
import { type TypedParamRecord, type TypedParamValue, decodeTypedParams, typedParamsToRecord } from './typed-params';

/** VIR_DOMAIN_STATS_* groups by the names virsh domstats uses. */
export const DOMAIN_STATS_GROUPS = {
  state: 1 << 0,
  'cpu-total': 1 << 1,
  balloon: 1 << 2,
  vcpu: 1 << 3,
  interface: 1 << 4,
  block: 1 << 5,
  perf: 1 << 6,
  iothread: 1 << 7,
  memory: 1 << 8,
  dirtyrate: 1 << 9,
  vm: 1 << 10,
} as const;
export type DomainStatsGroup = keyof typeof DOMAIN_STATS_GROUPS;

/** virConnectGetAllDomainStatsFlags. */
export const GET_ALL_DOMAIN_STATS_FLAGS = {
  active: 1 << 0,
  inactive: 1 << 1,
  persistent: 1 << 2,
  transient: 1 << 3,
  running: 1 << 4,
  paused: 1 << 5,
  shutoff: 1 << 6,
  other: 1 << 7,
  nowait: 1 << 29,
  backing: 1 << 30,
  /** 1 << 31: as an unsigned value (a JS `1 << 31` is negative). */
  enforceStats: 2 ** 31,
} as const;
export type GetAllDomainStatsFlag = keyof typeof GET_ALL_DOMAIN_STATS_FLAGS;

export interface VcpuStats {
  /** vcpu.<n>.state (virVcpuState: 0 offline, 1 running, 2 blocked). */
  state?: number;
  timeNs?: bigint;
  waitNs?: bigint;
  halted?: boolean;
  delayNs?: bigint;
}

export interface NetStats {
  name?: string;
  rxBytes?: bigint;
  rxPackets?: bigint;
  rxErrs?: bigint;
  rxDrop?: bigint;
  txBytes?: bigint;
  txPackets?: bigint;
  txErrs?: bigint;
  txDrop?: bigint;
}

export interface BlockStats {
  name?: string;
  path?: string;
  backingIndex?: number;
  rdReqs?: bigint;
  rdBytes?: bigint;
  rdTimesNs?: bigint;
  wrReqs?: bigint;
  wrBytes?: bigint;
  wrTimesNs?: bigint;
  flReqs?: bigint;
  flTimesNs?: bigint;
  errors?: bigint;
  allocation?: bigint;
  capacity?: bigint;
  physical?: bigint;
  threshold?: bigint;
}

export interface BalloonStats {
  currentKiB?: bigint;
  maximumKiB?: bigint;
  swapInKiB?: bigint;
  swapOutKiB?: bigint;
  majorFault?: bigint;
  minorFault?: bigint;
  unusedKiB?: bigint;
  availableKiB?: bigint;
  usableKiB?: bigint;
  rssKiB?: bigint;
  /** Seconds since the epoch of the guest's last balloon stats update. */
  lastUpdate?: bigint;
  diskCachesKiB?: bigint;
  hugetlbPgalloc?: bigint;
  hugetlbPgfail?: bigint;
}

export interface DirtyRateStats {
  /** virDomainDirtyRateStatus: 0 unstarted, 1 measuring, 2 measured. */
  calcStatus?: number;
  /** Seconds since the epoch. */
  startTime?: bigint;
  periodS?: number;
  megabytesPerSecond?: bigint;
  /** 'page-sampling' | 'dirty-bitmap' | 'dirty-ring' (libvirt >= 8.1). */
  calcMode?: string;
  /** Per-vCPU rates (dirty-ring / dirty-bitmap modes), by vCPU index. */
  vcpuMegabytesPerSecond?: Record<number, bigint>;
}

/** One domain's statistics. Groups libvirt did not report are undefined. */
export interface DomainStats {
  name: string;
  uuid: string;
  state?: { state?: number; reason?: number };
  cpu?: { timeNs?: bigint; userNs?: bigint; systemNs?: bigint };
  balloon?: BalloonStats;
  vcpuCurrent?: number;
  vcpuMaximum?: number;
  vcpus?: VcpuStats[];
  net?: NetStats[];
  block?: BlockStats[];
  dirtyRate?: DirtyRateStats;
  /** Every field libvirt returned, decoded (typed-params.ts value mapping). */
  raw: TypedParamRecord;
}

/** The stats bitmask for group names; throws RangeError on an unknown name. */
export function statsMask(groups: readonly string[]): number {
  let mask = 0;
  for (const g of groups) {
    const bit = (DOMAIN_STATS_GROUPS as Record<string, number>)[g];
    if (bit === undefined) throw new RangeError(`unknown domain stats group '${g}' (known: ${Object.keys(DOMAIN_STATS_GROUPS).join(', ')})`);
    mask |= bit;
  }
  return mask;
}

function one(raw: TypedParamRecord, key: string): TypedParamValue | undefined {
  const v = raw[key];
  return Array.isArray(v) ? v[0] : v;
}
function big(raw: TypedParamRecord, key: string): bigint | undefined {
  const v = one(raw, key);
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return undefined;
}
function num(raw: TypedParamRecord, key: string): number | undefined {
  const v = one(raw, key);
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}
function str(raw: TypedParamRecord, key: string): string | undefined {
  const v = one(raw, key);
  return typeof v === 'string' ? v : undefined;
}
function bool(raw: TypedParamRecord, key: string): boolean | undefined {
  const v = one(raw, key);
  return typeof v === 'boolean' ? v : undefined;
}

/** Drops undefined members; returns undefined when nothing is left (group not reported). */
function compact<T extends object>(o: T): T | undefined {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return Object.keys(out).length > 0 ? (out as T) : undefined;
}

/** Indices N present as `<prefix>.N.<something>` (libvirt's per-device keys). */
function indices(raw: TypedParamRecord, prefix: string): number[] {
  const seen = new Set<number>();
  const re = new RegExp(`^${prefix.replace('.', '\\.')}\\.(\\d+)\\.`);
  for (const k of Object.keys(raw)) {
    const m = re.exec(k);
    if (m) seen.add(Number(m[1]));
  }
  return [...seen].sort((a, b) => a - b);
}

/** Decodes one record's typed parameters (already converted to a record) into DomainStats. */
export function decodeDomainStats(name: string, uuid: string, raw: TypedParamRecord): DomainStats {
  const out: DomainStats = { name, uuid, raw };
  const state = compact({ state: num(raw, 'state.state'), reason: num(raw, 'state.reason') });
  if (state) out.state = state;
  const cpu = compact({ timeNs: big(raw, 'cpu.time'), userNs: big(raw, 'cpu.user'), systemNs: big(raw, 'cpu.system') });
  if (cpu) out.cpu = cpu;
  const balloon = compact<BalloonStats>({
    currentKiB: big(raw, 'balloon.current'),
    maximumKiB: big(raw, 'balloon.maximum'),
    swapInKiB: big(raw, 'balloon.swap_in'),
    swapOutKiB: big(raw, 'balloon.swap_out'),
    majorFault: big(raw, 'balloon.major_fault'),
    minorFault: big(raw, 'balloon.minor_fault'),
    unusedKiB: big(raw, 'balloon.unused'),
    availableKiB: big(raw, 'balloon.available'),
    usableKiB: big(raw, 'balloon.usable'),
    rssKiB: big(raw, 'balloon.rss'),
    lastUpdate: big(raw, 'balloon.last-update'),
    diskCachesKiB: big(raw, 'balloon.disk_caches'),
    hugetlbPgalloc: big(raw, 'balloon.hugetlb_pgalloc'),
    hugetlbPgfail: big(raw, 'balloon.hugetlb_pgfail'),
  });
  if (balloon) out.balloon = balloon;

  const vcpuCurrent = num(raw, 'vcpu.current');
  const vcpuMaximum = num(raw, 'vcpu.maximum');
  if (vcpuCurrent !== undefined) out.vcpuCurrent = vcpuCurrent;
  if (vcpuMaximum !== undefined) out.vcpuMaximum = vcpuMaximum;
  const vcpuIdx = indices(raw, 'vcpu');
  if (vcpuIdx.length > 0) {
    const vcpus: VcpuStats[] = [];
    for (const i of vcpuIdx) {
      const p = `vcpu.${i}.`;
      vcpus[i] =
        compact<VcpuStats>({
          state: num(raw, `${p}state`),
          timeNs: big(raw, `${p}time`),
          waitNs: big(raw, `${p}wait`),
          halted: bool(raw, `${p}halted`),
          delayNs: big(raw, `${p}delay`),
        }) ?? {};
    }
    out.vcpus = vcpus;
  }

  const netCount = num(raw, 'net.count');
  if (netCount !== undefined) {
    out.net = Array.from({ length: netCount }, (_, i) => {
      const p = `net.${i}.`;
      return (
        compact<NetStats>({
          name: str(raw, `${p}name`),
          rxBytes: big(raw, `${p}rx.bytes`),
          rxPackets: big(raw, `${p}rx.pkts`),
          rxErrs: big(raw, `${p}rx.errs`),
          rxDrop: big(raw, `${p}rx.drop`),
          txBytes: big(raw, `${p}tx.bytes`),
          txPackets: big(raw, `${p}tx.pkts`),
          txErrs: big(raw, `${p}tx.errs`),
          txDrop: big(raw, `${p}tx.drop`),
        }) ?? {}
      );
    });
  }

  const blockCount = num(raw, 'block.count');
  if (blockCount !== undefined) {
    out.block = Array.from({ length: blockCount }, (_, i) => {
      const p = `block.${i}.`;
      return (
        compact<BlockStats>({
          name: str(raw, `${p}name`),
          path: str(raw, `${p}path`),
          backingIndex: num(raw, `${p}backingIndex`),
          rdReqs: big(raw, `${p}rd.reqs`),
          rdBytes: big(raw, `${p}rd.bytes`),
          rdTimesNs: big(raw, `${p}rd.times`),
          wrReqs: big(raw, `${p}wr.reqs`),
          wrBytes: big(raw, `${p}wr.bytes`),
          wrTimesNs: big(raw, `${p}wr.times`),
          flReqs: big(raw, `${p}fl.reqs`),
          flTimesNs: big(raw, `${p}fl.times`),
          errors: big(raw, `${p}errors`),
          allocation: big(raw, `${p}allocation`),
          capacity: big(raw, `${p}capacity`),
          physical: big(raw, `${p}physical`),
          threshold: big(raw, `${p}threshold`),
        }) ?? {}
      );
    });
  }

  const dirtyVcpu: Record<number, bigint> = {};
  for (const i of indices(raw, 'dirtyrate.vcpu')) {
    const v = big(raw, `dirtyrate.vcpu.${i}.megabytes_per_second`);
    if (v !== undefined) dirtyVcpu[i] = v;
  }
  const dirty = compact<DirtyRateStats>({
    calcStatus: num(raw, 'dirtyrate.calc_status'),
    startTime: big(raw, 'dirtyrate.calc_start_time'),
    periodS: num(raw, 'dirtyrate.calc_period'),
    megabytesPerSecond: big(raw, 'dirtyrate.megabytes_per_second'),
    calcMode: str(raw, 'dirtyrate.calc_mode'),
    vcpuMegabytesPerSecond: Object.keys(dirtyVcpu).length > 0 ? dirtyVcpu : undefined,
  });
  if (dirty) out.dirtyRate = dirty;
  return out;
}

/** The flags bitmask for named flags (or a raw number); RangeError on an unknown name. */
export function statsFlagsMask(flags: number | readonly string[]): number {
  if (typeof flags === 'number') return flags >>> 0;
  let mask = 0;
  for (const f of flags) {
    const bit = (GET_ALL_DOMAIN_STATS_FLAGS as Record<string, number>)[f];
    if (bit === undefined) throw new RangeError(`unknown getAllDomainStats flag '${f}' (known: ${Object.keys(GET_ALL_DOMAIN_STATS_FLAGS).join(', ')})`);
    mask = (mask | bit) >>> 0;
  }
  return mask;
}

const VIR_UUID_STRING_BUFLEN = 37;

/**
 * virConnectGetAllDomainStats on `lane`, decoded. `groups` empty means every group the driver
 * supports (stats = 0).
 */
export async function fetchAllDomainStats(lane: Lane, groups: readonly string[], flags: number | readonly string[]): Promise<DomainStats[]> {
  const out: Handle[] = [null];
  const n = await lane.run<number>('virConnectGetAllDomainStats', lane.lv.fn.virConnectGetAllDomainStats, [lane.conn, statsMask(groups), out, statsFlagsMask(flags)], (r) => r < 0);
  return decodeStatsList(lane, out[0] ?? null, n);
}

/** The domain-list filters virDomainListGetStats rejects (it is given the domains). */
const LIST_FILTER_FLAGS = ['active', 'inactive', 'persistent', 'transient', 'running', 'paused', 'shutoff', 'other'];

/**
 * virDomainListGetStats for one domain: what a per-VMI launcher asks on every scrape, at the
 * cost of one domain instead of every domain on the node. null when libvirt returned no record.
 */
export async function fetchDomainStats(lane: Lane, dom: Handle, groups: readonly string[], flags: readonly string[], subject?: string): Promise<DomainStats | null> {
  const filter = flags.find((f) => LIST_FILTER_FLAGS.includes(f));
  if (filter) throw new RangeError(`flag '${filter}' filters a domain list; it cannot be used for one domain`);
  const lv = lane.lv;
  // The NULL-terminated virDomainPtr array: the domain's address, then NULL.
  const doms = Buffer.alloc(16);
  doms.writeBigUInt64LE(BigInt(lv.koffi.address(dom)), 0);
  const out: Handle[] = [null];
  const n = await lane.run<number>('virDomainListGetStats', lv.fn.virDomainListGetStats, [doms, statsMask(groups), out, statsFlagsMask(flags)], (r) => r < 0, subject);
  return (await decodeStatsList(lane, out[0] ?? null, n))[0] ?? null;
}

/**
 * A record list decoded into JS (records, their typed params and the domain references inside)
 * and then freed with virDomainStatsRecordListFree, on the lane like every other call, even when
 * decoding throws.
 */
async function decodeStatsList(lane: Lane, list: Handle, n: number): Promise<DomainStats[]> {
  if (!list) return [];
  const lv = lane.lv;
  try {
    const uuidBuf = Buffer.alloc(VIR_UUID_STRING_BUFLEN);
    return lv.decodePtrArray(list, n).map((recPtr) => {
      const rec = lv.decodeStatsRecord(recPtr);
      // Field reads on the record's own domain reference: no I/O, no connection error.
      const name = lv.fn.virDomainGetName(rec.dom) as string;
      uuidBuf.fill(0);
      lv.fn.virDomainGetUUIDString(rec.dom, uuidBuf);
      const nul = uuidBuf.indexOf(0);
      const uuid = uuidBuf.toString('latin1', 0, nul >= 0 ? nul : uuidBuf.length);
      const params = decodeTypedParams(lv.koffi, rec.params, rec.nparams);
      return decodeDomainStats(name, uuid, typedParamsToRecord(params));
    });
  } finally {
    await lane.run<void>('virDomainStatsRecordListFree', lv.fn.virDomainStatsRecordListFree, [list], () => false);
  }
}
