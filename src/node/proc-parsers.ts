/**
 * Pure parsers for the /proc and /sys files the node probe reads.
 *
 * Every function here is total: any string (empty, truncated, binary garbage) yields a value,
 * never an exception, because a half-written or unexpected kernel file must degrade the probe,
 * not crash the agent (KubeVirt's labeller panicking at startup is issue #19017).
 */

import type { CpuInfo } from './types';

/** Upper bound on CPUs a cpulist may expand to; the kernel's NR_CPUS maximum is 8192. */
const MAX_CPUS = 8192;

/** Splits "key\t: value" lines; lines without a colon are ignored. */
function keyValueLines(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
  }
  return out;
}

/** A non-negative decimal integer, or null (rejects '', '12abc', '-1', NaN). */
export function parseNonNegativeInt(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,15}$/.test(t)) return null;
  return Number(t);
}

/** Splits /proc/cpuinfo into one key/value map per "processor" block (blank-line separated). */
function cpuinfoBlocks(text: string): Array<Map<string, string>> {
  const blocks: Array<Map<string, string>> = [];
  for (const chunk of text.split(/\n\s*\n/)) {
    const m = new Map<string, string>();
    for (const [k, v] of keyValueLines(chunk)) if (!m.has(k)) m.set(k, v);
    if (m.has('processor')) blocks.push(m);
  }
  return blocks;
}

/** 'GenuineIntel' -> 'intel', 'AuthenticAMD' -> 'amd'; anything else lowercased. */
export function shortVendor(vendor: string): string {
  switch (vendor) {
    case 'GenuineIntel': return 'intel';
    case 'AuthenticAMD': return 'amd';
    case 'HygonGenuine': return 'hygon';
    case 'CentaurHauls': return 'centaur';
    default: return vendor.toLowerCase();
  }
}

/**
 * /proc/cpuinfo -> CpuInfo. Topology prefers counting distinct 'physical id' / 'core id' pairs
 * (core ids are sparse on many Xeons, so 'max id + 1' would be wrong) and falls back to the
 * per-package 'siblings' / 'cpu cores' fields when ids are absent (some hypervisors omit them).
 * Unknown values are 0 (counts) or null (family/model/stepping), never guesses.
 */
export function parseCpuinfo(text: string): CpuInfo {
  const blocks = cpuinfoBlocks(text);
  const first = blocks[0] ?? new Map<string, string>();
  const vendor = first.get('vendor_id') ?? '';
  const flagsLine = first.get('flags') ?? first.get('Features') ?? '';
  const logicalCpus = blocks.length;

  const packages = new Set<string>();
  const cores = new Set<string>();
  for (const b of blocks) {
    const pkg = b.get('physical id');
    const core = b.get('core id');
    if (pkg !== undefined) packages.add(pkg);
    if (pkg !== undefined && core !== undefined) cores.add(`${pkg}/${core}`);
  }

  let sockets = 0;
  let coresPerSocket = 0;
  let threadsPerCore = 0;
  if (logicalCpus > 0) {
    sockets = Math.max(packages.size, 1);
    const declaredCores = parseNonNegativeInt(first.get('cpu cores') ?? '');
    const declaredSiblings = parseNonNegativeInt(first.get('siblings') ?? '');
    const totalCores = cores.size > 0
      ? cores.size
      : declaredCores !== null && declaredCores > 0 ? declaredCores * sockets : logicalCpus;
    coresPerSocket = Math.max(1, Math.round(totalCores / sockets));
    threadsPerCore = cores.size > 0
      ? Math.max(1, Math.round(logicalCpus / totalCores))
      : declaredSiblings !== null && declaredCores !== null && declaredCores > 0
        ? Math.max(1, Math.round(declaredSiblings / declaredCores))
        : 1;
  }

  return {
    vendor,
    vendorShort: shortVendor(vendor),
    modelName: first.get('model name') ?? '',
    family: parseNonNegativeInt(first.get('cpu family') ?? ''),
    model: parseNonNegativeInt(first.get('model') ?? ''),
    stepping: parseNonNegativeInt(first.get('stepping') ?? ''),
    flags: flagsLine.split(/\s+/).filter((f) => f.length > 0),
    logicalCpus,
    sockets,
    coresPerSocket,
    threadsPerCore,
  };
}

/**
 * /proc/meminfo or /sys/devices/system/node/nodeN/meminfo -> field -> value.
 * 'kB' values become bytes; unit-less values (HugePages_Total) stay counts. The per-node file's
 * "Node 0 " prefix is stripped so both shapes share one parser.
 */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(?:Node\s+\d+\s+)?([A-Za-z0-9_()]+):\s+(\d{1,15})(?:\s+(kB))?\s*$/.exec(line.trim());
    if (m === null) continue;
    const value = Number(m[2]);
    out[m[1] as string] = m[3] === 'kB' ? value * 1024 : value;
  }
  return out;
}

/** MemTotal and MemAvailable in bytes; MemAvailable falls back to MemFree (pre-3.14 kernels). */
export function memorySummary(meminfo: Record<string, number>): { totalBytes: number; availableBytes: number } {
  return {
    totalBytes: meminfo.MemTotal ?? 0,
    availableBytes: meminfo.MemAvailable ?? meminfo.MemFree ?? 0,
  };
}

/**
 * The kernel's cpulist syntax ("0-3,8,10-11", also "0-15:2" strides from bitmap_parselist)
 * -> sorted unique CPU numbers. Malformed pieces are skipped; expansion stops at MAX_CPUS so a
 * corrupt "0-4294967295" cannot allocate gigabytes.
 */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const piece of text.trim().split(',')) {
    const m = /^(\d{1,6})(?:-(\d{1,6})(?::(\d{1,6}))?)?$/.exec(piece.trim());
    if (m === null) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    const stride = m[3] === undefined ? 1 : Number(m[3]);
    if (hi < lo || stride < 1) continue;
    for (let c = lo; c <= hi && c < MAX_CPUS; c += stride) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** "hugepages-2048kB" -> 2097152 (bytes); null for any other name. */
export function parseHugepageDirName(name: string): number | null {
  const m = /^hugepages-(\d{1,12})kB$/.exec(name);
  if (m === null) return null;
  const kb = Number(m[1]);
  return kb > 0 ? kb * 1024 : null;
}

/** "node12" -> 12; null for other /sys/devices/system/node entries (online, possible, ...). */
export function parseNumaNodeDirName(name: string): number | null {
  const m = /^node(\d{1,6})$/.exec(name);
  return m === null ? null : Number(m[1]);
}

/**
 * THP sysfs syntax "always [madvise] never" -> 'madvise'. Returns '' when no (or more than one)
 * bracketed choice exists, because a guess would be worse than an honest "unknown".
 */
export function parseBracketChoice(text: string): string {
  const picks = [...text.matchAll(/\[([A-Za-z0-9_+-]{1,32})\]/g)];
  return picks.length === 1 ? (picks[0] as RegExpMatchArray)[1] as string : '';
}

/** A one-line /proc/sys string (osrelease, version): trimmed, printable ASCII only, max 256 chars. */
export function parseSysctlString(text: string): string {
  const line = text.split('\n')[0] ?? '';
  // Strips control bytes so garbage cannot leak terminal escapes into logs or JSON consumers.
  return line.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 256);
}

/** /proc/sys/vm/unprivileged_userfaultfd: '1' -> true, '0' -> false, anything else -> null. */
export function parseZeroOne(text: string): boolean | null {
  const t = text.trim();
  if (t === '1') return true;
  if (t === '0') return false;
  return null;
}

/**
 * Module boolean parameters (/sys/module/kvm_intel/parameters/nested): 'Y'/'1' -> true,
 * 'N'/'0' -> false; anything else -> null. kvm_intel prints Y/N, older kvm_amd prints 1/0.
 */
export function parseModuleBool(text: string): boolean | null {
  const t = text.trim();
  if (t === 'Y' || t === 'y' || t === '1') return true;
  if (t === 'N' || t === 'n' || t === '0') return false;
  return null;
}

/** /sys/kernel/mm/ksm/run: 1 means merging; 0 (stopped) and 2 (unmerging) mean off; else null. */
export function parseKsmRun(text: string): boolean | null {
  const n = parseNonNegativeInt(text);
  if (n === null || n > 2) return null;
  return n === 1;
}
