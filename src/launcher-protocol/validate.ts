/**
 * Checks at both ends of launcher.proto, each turning a decoded message (a plain object, from
 * protobufjs on the handler's side or codec.ts on the launcher's) into a typed value, or throwing
 * ProtocolViolation naming the field by its proto name.
 *
 * The handler checks everything a launcher sends (checkRegister, checkStatus, checkResult,
 * checkDomainStats): a launcher runs the guest's disk tools and libvirt, so its messages are
 * claims, not trusted structures. The launcher checks the disk plan against its own VMI directory
 * (checkStartDomain) before it touches a file, whatever the handler meant.
 *
 * The checks do not rely on the decoder having produced the right JS types: anything may arrive
 * here (tests feed raw objects), so each field's type is checked too.
 */
import * as path from 'node:path';
import { isUuid } from '../vmi/spec/ids';
import * as L from './limits';
import type { DiskPrep, DomainStatus, IsoFile, Register, StartDomain, StatsReport, VcpuSample } from './messages';

/** A message that breaks the contract; `field` is its proto path, e.g. `register.token`. */
export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function object(v: unknown, field: string): Obj {
  if (!isObject(v)) throw new ProtocolViolation(field, 'must be a message');
  return v;
}

/** A string of at most `max` characters ('' when unset). */
function str(o: Obj, key: string, field: string, max: number): string {
  const v = o[key] ?? '';
  if (typeof v !== 'string') throw new ProtocolViolation(field, 'must be a string');
  if (v.length > max) throw new ProtocolViolation(field, `longer than ${max} characters`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// launcher -> handler

/** Register, the first message of every stream. A bad token is `register.token` (the handler answers UNAUTHENTICATED). */
export function checkRegister(raw: unknown): Register {
  const r = object(raw, 'register');
  const vmiUid = r.vmiUid;
  if (typeof vmiUid !== 'string' || !isUuid(vmiUid)) throw new ProtocolViolation('register.vmi_uid', 'must be a lower-case UUID');
  const token = r.token;
  if (typeof token !== 'string' || token.length === 0 || token.length > L.MAX_TOKEN) throw new ProtocolViolation('register.token', 'missing or malformed');
  const pid = r.pid;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) throw new ProtocolViolation('register.pid', 'must be a positive integer');
  return { vmiUid, token, pid, version: str(r, 'version', 'register.version', L.MAX_VERSION) };
}

/** DomainStatus, on every domain event and on request. */
export function checkStatus(raw: unknown): DomainStatus {
  const r = object(raw ?? {}, 'status');
  const s: DomainStatus = {
    state: str(r, 'state', 'status.state', L.MAX_STATE),
    reason: str(r, 'reason', 'status.reason', L.MAX_REASON),
    domainUuid: str(r, 'domainUuid', 'status.domain_uuid', L.MAX_DOMAIN_UUID),
    lastEvent: str(r, 'lastEvent', 'status.last_event', L.MAX_LAST_EVENT),
    error: str(r, 'error', 'status.error', L.MAX_ERROR),
    domainXml: str(r, 'domainXml', 'status.domain_xml', L.MAX_DOMAIN_XML),
  };
  if (!L.DOMAIN_STATES.has(s.state)) throw new ProtocolViolation('status.state', `unknown domain state ${JSON.stringify(s.state)}`);
  return s;
}

/**
 * CommandResult's own fields (the error text is cut to MAX_ERROR). `stats` is returned as sent:
 * a bad stats answer fails that one command (checkDomainStats), not the launcher's stream.
 */
export function checkResult(raw: unknown): { id: string; ok: boolean; error: string; stats: unknown } {
  const r = object(raw, 'result');
  const id = r.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > L.MAX_COMMAND_ID) throw new ProtocolViolation('result.id', `must be a command id of 1-${L.MAX_COMMAND_ID} characters`);
  if (typeof r.ok !== 'boolean') throw new ProtocolViolation('result.ok', 'must be a boolean');
  const error = r.error ?? '';
  if (typeof error !== 'string') throw new ProtocolViolation('result.error', 'must be a string');
  return { id, ok: r.ok, error: error.slice(0, L.MAX_ERROR), stats: r.stats ?? null };
}

const U64_LIMIT = 2 ** 64;

/** An unsigned 64-bit value as a number (bigint and number accepted; anything else refused). */
function u64(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U64_LIMIT) return v;
  if (typeof v === 'bigint' && v >= 0n && v < 1n << 64n) return Number(v);
  throw new ProtocolViolation(field, 'not an unsigned 64-bit integer');
}

function smallInt(v: unknown, field: string, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max) return v;
  throw new ProtocolViolation(field, `not an integer in 0..${max}`);
}

/** The unsigned counters `keys` of `o` (wire name -> report name), present ones only. */
function counters<K extends string>(o: Obj, keys: ReadonlyArray<readonly [wire: string, proto: string, report: K]>, field: string): Partial<Record<K, number>> {
  const out: Partial<Record<K, number>> = {};
  for (const [wire, proto, report] of keys) {
    const v = u64(o[wire], `${field}.${proto}`);
    if (v !== undefined) out[report] = v;
  }
  return out;
}

function group(raw: Obj, key: string): Obj {
  const v = raw[key];
  if (v === undefined || v === null) return {};
  return object(v, `stats.${key}`);
}

function list(raw: Obj, key: string, max: number): Obj[] {
  const v = raw[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtocolViolation(`stats.${key}`, 'not a list');
  if (v.length > max) throw new ProtocolViolation(`stats.${key}`, `more than ${max} entries`);
  return v.map((x, i) => object(x, `stats.${key}[${i}]`));
}

/** A counter table row: [decoded name, proto name, StatsReport name]. */
type Row<K extends string> = readonly [string, string, K];
const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const rows = <K extends string>(names: readonly K[]): Array<Row<K>> => names.map((n) => [n, snake(n), n] as const);

const CPU = rows(['timeNs', 'userNs', 'systemNs'] as const);
const VCPU = rows(['timeNs', 'waitNs', 'delayNs'] as const);
const NET = rows(['rxBytes', 'rxPackets', 'rxErrs', 'rxDrop', 'txBytes', 'txPackets', 'txErrs', 'txDrop'] as const);
const BLOCK = rows(['rdReqs', 'rdBytes', 'rdTimesNs', 'wrReqs', 'wrBytes', 'wrTimesNs', 'flReqs', 'flTimesNs'] as const);
/** protobufjs camel-cases current_kib as currentKib; the report keeps libvirt's KiB spelling. */
const BALLOON = (['currentKiB', 'maximumKiB', 'swapInKiB', 'swapOutKiB', 'majorFault', 'minorFault', 'unusedKiB', 'availableKiB', 'usableKiB', 'rssKiB', 'diskCachesKiB'] as const).map(
  (n) => [n.replace('KiB', 'Kib'), snake(n.replace('KiB', 'Kib')), n] as const,
);

/** Named devices; a device without a name cannot be labelled and is left out. */
function devices<K extends string>(raw: Obj, key: string, table: ReadonlyArray<Row<K>>): Array<{ name: string } & Partial<Record<K, number>>> {
  const seen = new Set<string>();
  const out: Array<{ name: string } & Partial<Record<K, number>>> = [];
  list(raw, key, L.MAX_STATS_DEVICES).forEach((d, i) => {
    const field = `stats.${key}[${i}]`;
    const name = d.name ?? '';
    if (name === '') return;
    if (typeof name !== 'string' || !L.DEVICE_NAME.test(name)) throw new ProtocolViolation(`${field}.name`, 'not a printable name of 1..128 characters');
    if (seen.has(name)) throw new ProtocolViolation(`${field}.name`, `duplicate ${JSON.stringify(name)}`);
    seen.add(name);
    out.push({ name, ...counters(d, table, field) });
  });
  return out;
}

/**
 * A launcher's get_stats answer (DomainStats) as a StatsReport: types, ranges, counts, unique
 * vCPU ids and device names checked; throws ProtocolViolation naming the first bad field.
 */
export function checkDomainStats(raw: unknown): StatsReport {
  if (raw === undefined || raw === null) throw new ProtocolViolation('result.stats', 'missing from a get_stats answer');
  const s = object(raw, 'stats');
  if (s.takenAtMs !== undefined) u64(s.takenAtMs, 'stats.taken_at_ms');
  const state = group(s, 'state');
  smallInt(state.state, 'stats.state.state', L.MAX_STATE_ENUM);
  smallInt(state.reason, 'stats.state.reason', L.MAX_STATE_ENUM);
  smallInt(s.vcpuCurrent, 'stats.vcpu_current', L.MAX_VCPUS);
  const ids = new Set<number>();
  const vcpus = list(s, 'vcpus', L.MAX_VCPUS).map((v, i): VcpuSample => {
    const field = `stats.vcpus[${i}]`;
    const id = smallInt(v.id ?? 0, `${field}.id`, L.MAX_VCPUS - 1) as number;
    if (ids.has(id)) throw new ProtocolViolation(`${field}.id`, `duplicate ${id}`);
    ids.add(id);
    const st = smallInt(v.state, `${field}.state`, L.MAX_STATE_ENUM);
    return { id, ...(st === undefined ? {} : { state: st }), ...counters(v, VCPU, field) };
  });
  return {
    cpu: counters(group(s, 'cpu'), CPU, 'stats.cpu'),
    vcpus,
    balloon: counters(group(s, 'balloon'), BALLOON, 'stats.balloon'),
    net: devices(s, 'net', NET),
    block: devices(s, 'block', BLOCK),
  };
}

// ---------------------------------------------------------------------------------------------
// handler -> launcher (checked by the launcher)

/** Whether `p` lies strictly inside `dir` (both absolute and normalised). */
export function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function absolute(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw new ProtocolViolation(field, 'must be a non-empty path');
  if (Buffer.byteLength(v) > L.MAX_PATH) throw new ProtocolViolation(field, `longer than ${L.MAX_PATH} bytes`);
  if (v.includes('\0') || !path.isAbsolute(v) || path.resolve(v) !== v) throw new ProtocolViolation(field, `'${v}' must be absolute and normalised`);
  return v;
}

function size(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new ProtocolViolation(field, 'must be a positive integer (bytes)');
  return v;
}

const KINDS = [
  ['overlay', 'overlay'],
  ['sparse', 'sparse'],
  ['hostDisk', 'host_disk'],
  ['cloudInit', 'cloud_init'],
  ['iso', 'iso'],
] as const;

/**
 * An IsoFile path: relative, '/'-separated, every component a plain name (not empty, '.' or
 * '..', no NUL, at most 255 bytes), so it can only name a file below the image's root.
 * Returns a reason, or null when it is fine.
 */
export function isoPathProblem(p: string): string | null {
  if (p === '') return 'is empty';
  if (Buffer.byteLength(p) > L.MAX_ISO_PATH) return `is longer than ${L.MAX_ISO_PATH} bytes`;
  if (p.includes('\0')) return 'contains NUL';
  if (p.startsWith('/')) return 'must be relative';
  for (const c of p.split('/')) {
    if (c === '' || c === '.' || c === '..') return `has a ${c === '' ? 'empty' : `'${c}'`} component`;
    if (Buffer.byteLength(c) > 255) return 'has a component longer than 255 bytes';
  }
  return null;
}

/** IsoDisk.files: bounded, paths plain, no path twice and none both a file and a directory. */
function checkIsoFiles(raw: unknown, f: string): IsoFile[] {
  if (!Array.isArray(raw)) throw new ProtocolViolation(`${f}.files`, 'must be a list of IsoFile');
  if (raw.length > L.MAX_ISO_FILES) throw new ProtocolViolation(`${f}.files`, `more than ${L.MAX_ISO_FILES} entries`);
  const files = new Set<string>();
  const dirs = new Set<string>();
  let total = 0;
  return raw.map((item: unknown, j): IsoFile => {
    const at = `${f}.files[${j}]`;
    const o = object(item, at);
    const p = o.path;
    if (typeof p !== 'string') throw new ProtocolViolation(`${at}.path`, 'must be a string');
    const problem = isoPathProblem(p);
    if (problem) throw new ProtocolViolation(`${at}.path`, `${JSON.stringify(p)} ${problem}`);
    if (files.has(p) || dirs.has(p)) throw new ProtocolViolation(`${at}.path`, `${JSON.stringify(p)} appears twice (or is also a directory)`);
    const parts = p.split('/');
    for (let k = 1; k < parts.length; k++) {
      const dir = parts.slice(0, k).join('/');
      if (files.has(dir)) throw new ProtocolViolation(`${at}.path`, `${JSON.stringify(p)} lies below the file ${JSON.stringify(dir)}`);
      dirs.add(dir);
    }
    files.add(p);
    const data = o.data ?? Buffer.alloc(0);
    if (!(data instanceof Uint8Array)) throw new ProtocolViolation(`${at}.data`, 'must be bytes');
    total += data.length;
    if (total > L.MAX_ISO_BYTES) throw new ProtocolViolation(`${f}.files`, `more than ${L.MAX_ISO_BYTES} bytes of data`);
    let mode: number | null = null;
    if (o.mode !== undefined && o.mode !== null) {
      if (typeof o.mode !== 'number' || !Number.isInteger(o.mode) || o.mode < 0 || o.mode > 0o777) throw new ProtocolViolation(`${at}.mode`, 'must be permission bits 0-0777');
      mode = o.mode;
    }
    return { path: p, data, mode };
  });
}

/**
 * StartDomain.disks as a DiskPrep[]: every path absolute and normalised, inside `vmiDir` (except
 * host disks, which the handler confined to the allowed host paths), no path twice, exactly one
 * kind each. Nothing is touched on disk.
 */
export function checkDiskPlan(raw: unknown, vmiDir: string): DiskPrep[] {
  if (!Array.isArray(raw)) throw new ProtocolViolation('disks', 'must be a list of DiskPrep');
  if (raw.length > L.MAX_DISKS) throw new ProtocolViolation('disks', `more than ${L.MAX_DISKS} entries`);
  const seen = new Set<string>();
  let isoBytes = 0;
  return raw.map((item: unknown, i): DiskPrep => {
    const at = `disks[${i}]`;
    const d = object(item, at);
    const disk = d.disk;
    if (typeof disk !== 'string' || disk === '' || disk.length > L.MAX_DISK_NAME) throw new ProtocolViolation(`${at}.disk`, `must be a name of 1-${L.MAX_DISK_NAME} characters`);
    const p = absolute(d.path, `${at}.path`);
    const kinds = KINDS.filter(([k]) => d[k] !== undefined && d[k] !== null);
    if (kinds.length !== 1) throw new ProtocolViolation(at, `must have exactly one kind of ${KINDS.map(([, proto]) => proto).join(', ')} (has ${kinds.length})`);
    const [kind, proto] = kinds[0] as (typeof KINDS)[number];
    if (kind !== 'hostDisk' && !isInside(vmiDir, p)) throw new ProtocolViolation(`${at}.path`, `'${p}' is outside the VMI directory ${vmiDir}`);
    if (seen.has(p)) throw new ProtocolViolation(`${at}.path`, `'${p}' appears twice`);
    seen.add(p);
    const k = object(d[kind], `${at}.${proto}`);
    const f = `${at}.${proto}`;
    switch (kind) {
      case 'overlay': {
        const backingFile = absolute(k.backingFile, `${f}.backing_file`);
        const backingFormat = k.backingFormat === 1 ? 'qcow2' : k.backingFormat === 2 ? 'raw' : null;
        if (!backingFormat) throw new ProtocolViolation(`${f}.backing_format`, 'must be FORMAT_QCOW2 or FORMAT_RAW');
        return { kind, disk, path: p, backingFile, backingFormat };
      }
      case 'sparse':
        return { kind, disk, path: p, sizeBytes: size(k.sizeBytes, `${f}.size_bytes`) };
      case 'hostDisk': {
        if (typeof (k.create ?? false) !== 'boolean') throw new ProtocolViolation(`${f}.create`, 'must be a boolean');
        const create = (k.create ?? false) as boolean;
        const sizeBytes = k.sizeBytes === undefined || k.sizeBytes === null ? null : size(k.sizeBytes, `${f}.size_bytes`);
        if (create && sizeBytes === null) throw new ProtocolViolation(`${f}.size_bytes`, 'is required when create is true');
        return { kind, disk, path: p, sizeBytes, create };
      }
      case 'cloudInit': {
        const networkData = k.networkData === undefined || k.networkData === null ? null : str(k, 'networkData', `${f}.network_data`, L.MAX_CLOUD_INIT_DATA);
        return { kind, disk, path: p, userData: str(k, 'userData', `${f}.user_data`, L.MAX_CLOUD_INIT_DATA), metaData: str(k, 'metaData', `${f}.meta_data`, L.MAX_CLOUD_INIT_DATA), networkData };
      }
      case 'iso': {
        const volumeLabel = k.volumeLabel;
        if (typeof volumeLabel !== 'string' || !L.ISO_VOLUME_LABEL.test(volumeLabel)) throw new ProtocolViolation(`${f}.volume_label`, 'must be 1-32 characters of [A-Za-z0-9 _.:-]');
        const files = checkIsoFiles(k.files ?? [], f);
        isoBytes += files.reduce((n, x) => n + x.data.length, 0);
        if (isoBytes > L.MAX_PLAN_ISO_BYTES) throw new ProtocolViolation(at, `the plan's ISO files exceed ${L.MAX_PLAN_ISO_BYTES} bytes together`);
        return { kind, disk, path: p, volumeLabel, files };
      }
    }
  });
}

/** StartDomain as the launcher runs it: XML and URI present and bounded, the disk plan checked against `vmiDir`. */
export function checkStartDomain(raw: unknown, vmiDir: string): StartDomain {
  const s = object(raw, 'start');
  const domainXml = str(s, 'domainXml', 'domain_xml', L.MAX_DOMAIN_XML);
  if (domainXml === '') throw new ProtocolViolation('domain_xml', 'is empty');
  const libvirtUri = str(s, 'libvirtUri', 'libvirt_uri', L.MAX_LIBVIRT_URI);
  if (libvirtUri === '') throw new ProtocolViolation('libvirt_uri', 'is empty');
  return { domainXml, libvirtUri, disks: checkDiskPlan(s.disks ?? [], vmiDir) };
}
