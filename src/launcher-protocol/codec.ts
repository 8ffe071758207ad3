/**
 * launcher.proto's messages on the wire without protobufjs: the launcher encodes and decodes
 * with this (it saves the launcher protobufjs, grpc-js and their start-up cost). The schema below
 * mirrors proto/virthandler/v1/launcher.proto field by field; test/unit/launcher-protocol-codec
 * .test.ts loads the .proto with protobufjs and checks that every message, field number, type,
 * label and oneof here matches, and that both put the same bytes on the wire.
 *
 * Decoded objects have the shape protobufjs gives with { longs: Number, enums: Number,
 * defaults: true, arrays: true, objects: true, oneofs: false }: unset scalars at their default,
 * an unset proto3 `optional` or oneof member absent, an unset message field null, repeated
 * fields []. Encoding is canonical proto3: default values of plain scalars are not written;
 * `optional` and oneof members are written whenever set. Unknown fields are skipped; a field
 * with the wrong wire type, a truncated message or one larger than MAX_MESSAGE_BYTES is refused
 * with a WireError that names the message and field.
 */
import { MAX_MESSAGE_BYTES } from './limits';
import type { HandlerMessage, LauncherMessage } from './messages';
import { Reader, WIRE, WireError, Writer } from './wire';

type Scalar = 'string' | 'bytes' | 'bool' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'enum';

export interface FieldSpec {
  no: number;
  /** The decoded object's key (protobufjs's camelCase of the proto name). */
  name: string;
  type: Scalar | MessageSpec;
  repeated?: boolean;
  /** proto3 `optional`: presence on the wire. */
  optional?: boolean;
  oneof?: string;
}

export interface MessageSpec {
  /** The fully-qualified name without the package, e.g. `Command`, `OverlayDisk`. */
  name: string;
  fields: readonly FieldSpec[];
}

const f = (no: number, name: string, type: FieldSpec['type'], extra: Partial<FieldSpec> = {}): FieldSpec => ({ no, name, type, ...extra });
const opt = { optional: true } as const;
const list = { repeated: true } as const;
const one = (oneof: string): Partial<FieldSpec> => ({ oneof });
const msg = (name: string, fields: FieldSpec[]): MessageSpec => ({ name, fields });
const u64 = (no: number, name: string): FieldSpec => f(no, name, 'uint64', opt);

const Empty = msg('Empty', []);

// launcher -> handler
const Register = msg('Register', [f(1, 'vmiUid', 'string'), f(2, 'token', 'string'), f(3, 'pid', 'int32'), f(4, 'version', 'string')]);
const Heartbeat = msg('Heartbeat', [f(1, 'seq', 'int64')]);
const DomainStatus = msg('DomainStatus', [f(1, 'state', 'string'), f(2, 'reason', 'string'), f(3, 'domainUuid', 'string'), f(4, 'lastEvent', 'string'), f(5, 'error', 'string'), f(6, 'domainXml', 'string')]);
const DomainStateStats = msg('DomainStateStats', [f(1, 'state', 'int32', opt), f(2, 'reason', 'int32', opt)]);
const CpuStats = msg('CpuStats', [u64(1, 'timeNs'), u64(2, 'userNs'), u64(3, 'systemNs')]);
const BalloonStats = msg(
  'BalloonStats',
  ['currentKib', 'maximumKib', 'swapInKib', 'swapOutKib', 'majorFault', 'minorFault', 'unusedKib', 'availableKib', 'usableKib', 'rssKib', 'diskCachesKib'].map((n, i) => u64(i + 1, n)),
);
const VcpuStats = msg('VcpuStats', [f(1, 'id', 'uint32'), f(2, 'state', 'int32', opt), u64(3, 'timeNs'), u64(4, 'waitNs'), u64(5, 'delayNs')]);
const NetStats = msg('NetStats', [f(1, 'name', 'string'), ...['rxBytes', 'rxPackets', 'rxErrs', 'rxDrop', 'txBytes', 'txPackets', 'txErrs', 'txDrop'].map((n, i) => u64(i + 2, n))]);
const BlockStats = msg('BlockStats', [f(1, 'name', 'string'), ...['rdReqs', 'rdBytes', 'rdTimesNs', 'wrReqs', 'wrBytes', 'wrTimesNs', 'flReqs', 'flTimesNs'].map((n, i) => u64(i + 2, n))]);
const DomainStats = msg('DomainStats', [
  f(1, 'takenAtMs', 'int64'),
  f(2, 'state', DomainStateStats),
  f(3, 'cpu', CpuStats),
  f(4, 'balloon', BalloonStats),
  f(5, 'vcpuCurrent', 'uint32', opt),
  f(6, 'vcpus', VcpuStats, list),
  f(7, 'net', NetStats, list),
  f(8, 'block', BlockStats, list),
]);
const CommandResult = msg('CommandResult', [f(1, 'id', 'string'), f(2, 'ok', 'bool'), f(3, 'error', 'string'), f(5, 'stats', DomainStats)]);
const LauncherMessageSpec = msg('LauncherMessage', [f(1, 'register', Register, one('msg')), f(2, 'heartbeat', Heartbeat, one('msg')), f(3, 'status', DomainStatus, one('msg')), f(4, 'result', CommandResult, one('msg'))]);

// handler -> launcher
const Registered = msg('Registered', [f(1, 'sessionToken', 'string'), f(2, 'heartbeatIntervalMs', 'int64')]);
const Shutdown = msg('Shutdown', [f(1, 'gracePeriodSeconds', 'int32')]);
const OverlayDisk = msg('OverlayDisk', [f(1, 'backingFile', 'string'), f(2, 'backingFormat', 'enum')]);
const SparseDisk = msg('SparseDisk', [f(1, 'sizeBytes', 'uint64')]);
const HostDisk = msg('HostDisk', [f(1, 'sizeBytes', 'uint64', opt), f(2, 'create', 'bool')]);
const CloudInitDisk = msg('CloudInitDisk', [f(1, 'userData', 'string'), f(2, 'metaData', 'string'), f(3, 'networkData', 'string', opt)]);
const IsoFile = msg('IsoFile', [f(1, 'path', 'string'), f(2, 'data', 'bytes'), f(3, 'mode', 'uint32', opt)]);
const IsoDisk = msg('IsoDisk', [f(1, 'volumeLabel', 'string'), f(2, 'files', IsoFile, list)]);
const DiskPrep = msg('DiskPrep', [
  f(1, 'disk', 'string'),
  f(2, 'path', 'string'),
  f(3, 'overlay', OverlayDisk, one('kind')),
  f(4, 'sparse', SparseDisk, one('kind')),
  f(5, 'hostDisk', HostDisk, one('kind')),
  f(6, 'cloudInit', CloudInitDisk, one('kind')),
  f(7, 'iso', IsoDisk, one('kind')),
]);
const StartDomain = msg('StartDomain', [f(1, 'domainXml', 'string'), f(3, 'libvirtUri', 'string'), f(4, 'disks', DiskPrep, list)]);
const Command = msg('Command', [
  f(1, 'id', 'string'),
  f(2, 'start', StartDomain, one('cmd')),
  ...['pause', 'unpause', 'softReboot'].map((n, i) => f(i + 3, n, Empty, one('cmd'))),
  f(6, 'shutdown', Shutdown, one('cmd')),
  ...['destroy', 'teardown', 'getStatus', 'getStats'].map((n, i) => f(i + 7, n, Empty, one('cmd'))),
]);
const HandlerMessageSpec = msg('HandlerMessage', [f(1, 'registered', Registered, one('msg')), f(2, 'command', Command, one('msg'))]);

/** Every message of launcher.proto this codec knows, by name (for the schema test). */
export const SCHEMA: ReadonlyMap<string, MessageSpec> = new Map(
  [Empty, Register, Heartbeat, DomainStatus, DomainStateStats, CpuStats, BalloonStats, VcpuStats, NetStats, BlockStats, DomainStats, CommandResult, LauncherMessageSpec, Registered, Shutdown, OverlayDisk, SparseDisk, HostDisk, CloudInitDisk, IsoFile, IsoDisk, DiskPrep, StartDomain, Command, HandlerMessageSpec].map((m) => [m.name, m]),
);

// ---------------------------------------------------------------------------------------------
// decode

const byNumber = new Map<MessageSpec, Map<number, FieldSpec>>();
function fieldsByNumber(spec: MessageSpec): Map<number, FieldSpec> {
  let m = byNumber.get(spec);
  if (!m) byNumber.set(spec, (m = new Map(spec.fields.map((x) => [x.no, x]))));
  return m;
}

function scalarDefault(t: Scalar): unknown {
  return t === 'string' ? '' : t === 'bytes' ? Buffer.alloc(0) : t === 'bool' ? false : 0;
}

function decodeMessage(spec: MessageSpec, r: Reader, end: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const x of spec.fields) {
    if (x.repeated) o[x.name] = [];
    else if (x.oneof || x.optional) continue;
    else o[x.name] = typeof x.type === 'string' ? scalarDefault(x.type) : null;
  }
  const fields = fieldsByNumber(spec);
  while (r.pos < end) {
    const at = r.pos;
    const tag = r.uint32();
    const no = tag >>> 3;
    const wt = tag & 7;
    if (no === 0) throw new WireError(`${spec.name}: invalid field number 0 at byte ${at}`, at, true);
    const x = fields.get(no);
    if (!x) {
      r.skip(wt, no);
      continue;
    }
    const want = typeof x.type === 'string' && x.type !== 'string' && x.type !== 'bytes' ? WIRE.VARINT : WIRE.LEN;
    if (wt !== want) throw new WireError(`${spec.name}.${x.name}: wire type ${wt}, expected ${want} (at byte ${at})`, at, true);
    let v: unknown;
    try {
      v = typeof x.type === 'string' ? readScalar(r, x.type) : decodeMessage(x.type, r, r.lengthDelimited());
    } catch (e) {
      throw e instanceof WireError && !e.located ? new WireError(`${spec.name}.${x.name}: ${e.message}`, e.offset, true) : e;
    }
    if (x.repeated) (o[x.name] as unknown[]).push(v);
    else {
      // A oneof holds its last member on the wire (proto3).
      if (x.oneof) for (const y of spec.fields) if (y.oneof === x.oneof && y !== x) delete o[y.name];
      o[x.name] = v;
    }
  }
  if (r.pos !== end) throw new WireError(`${spec.name}: a field runs past the end of its message`, r.pos, true);
  return o;
}

function readScalar(r: Reader, t: Scalar): unknown {
  switch (t) {
    case 'string':
      return r.string();
    case 'bytes':
      return r.bytes();
    case 'bool':
      return r.uint32() !== 0;
    case 'int32':
    case 'enum':
      return r.uint32() | 0;
    case 'uint32':
      return r.uint32();
    case 'int64':
      return r.int64();
    case 'uint64':
      return r.uint64();
  }
}

/** Decodes one `spec` message from `buf`; throws WireError for input that is not one. */
export function decode(spec: MessageSpec, buf: Uint8Array): Record<string, unknown> {
  if (buf.length > MAX_MESSAGE_BYTES) throw new WireError(`${spec.name}: ${buf.length} bytes is more than the ${MAX_MESSAGE_BYTES}-byte limit`, 0, true);
  try {
    return decodeMessage(spec, new Reader(buf), buf.length);
  } catch (e) {
    throw e instanceof WireError && !e.located ? new WireError(`${spec.name}: ${e.message}`, e.offset, true) : e;
  }
}

// ---------------------------------------------------------------------------------------------
// encode

const INT32 = [-(2 ** 31), 2 ** 31 - 1] as const;

function encodeMessage(spec: MessageSpec, o: Record<string, unknown>, w: Writer): void {
  let oneofSeen: Map<string, string> | null = null;
  for (const x of spec.fields) {
    const v = o[x.name];
    if (v === undefined || v === null) continue;
    if (x.oneof) {
      oneofSeen ??= new Map();
      const other = oneofSeen.get(x.oneof);
      if (other) throw new TypeError(`${spec.name}: both ${other} and ${x.name} set in oneof ${x.oneof}`);
      oneofSeen.set(x.oneof, x.name);
    }
    if (x.repeated) {
      if (!Array.isArray(v)) throw new TypeError(`${spec.name}.${x.name}: not a list`);
      for (const item of v) writeField(spec, x, item, w, true);
    } else writeField(spec, x, v, w, !!(x.optional || x.oneof));
  }
}

function writeField(spec: MessageSpec, x: FieldSpec, v: unknown, w: Writer, present: boolean): void {
  const where = `${spec.name}.${x.name}`;
  if (typeof x.type !== 'string') {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${where}: not a message`);
    const sub = new Writer(64);
    encodeMessage(x.type, v as Record<string, unknown>, sub);
    w.tag(x.no, WIRE.LEN);
    w.bytes(sub.finish());
    return;
  }
  const int = (lo: number, hi: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new TypeError(`${where}: ${String(v)} is not an integer in ${lo}..${hi}`);
    return v;
  };
  switch (x.type) {
    case 'string':
      if (typeof v !== 'string') throw new TypeError(`${where}: not a string`);
      if (v === '' && !present) return;
      w.tag(x.no, WIRE.LEN);
      w.string(v);
      return;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw new TypeError(`${where}: not bytes (a Uint8Array)`);
      if (v.length === 0 && !present) return;
      w.tag(x.no, WIRE.LEN);
      w.bytes(v);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw new TypeError(`${where}: not a boolean`);
      if (!v && !present) return;
      w.tag(x.no, WIRE.VARINT);
      w.uint32(v ? 1 : 0);
      return;
    case 'int32':
    case 'enum': {
      const n = int(INT32[0], INT32[1]);
      if (n === 0 && !present) return;
      w.tag(x.no, WIRE.VARINT);
      w.int32(n);
      return;
    }
    case 'uint32': {
      const n = int(0, 2 ** 32 - 1);
      if (n === 0 && !present) return;
      w.tag(x.no, WIRE.VARINT);
      w.uint32(n);
      return;
    }
    case 'int64':
    case 'uint64': {
      const unsigned = x.type === 'uint64';
      let n: number | bigint;
      if (typeof v === 'bigint') {
        if (unsigned ? v < 0n || v >= 1n << 64n : v < -(1n << 63n) || v >= 1n << 63n) throw new TypeError(`${where}: ${v} is out of range`);
        n = v;
      } else n = int(unsigned ? 0 : -(2 ** 63), unsigned ? 2 ** 64 - 1 : 2 ** 63 - 1);
      if ((n === 0 || n === 0n) && !present) return;
      w.tag(x.no, WIRE.VARINT);
      w.int64(n);
      return;
    }
  }
}

/** Encodes `o` as a `spec` message; throws TypeError for a value the schema cannot carry. */
export function encode(spec: MessageSpec, o: object): Buffer {
  const w = new Writer();
  encodeMessage(spec, o as Record<string, unknown>, w);
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// the two stream messages

/** What the launcher sends. */
export function encodeLauncherMessage(m: LauncherMessage): Buffer {
  return encode(LauncherMessageSpec, m);
}

/** What the launcher receives; the shape is the schema's (values still to be checked where they matter: validate.ts). */
export function decodeHandlerMessage(buf: Uint8Array): HandlerMessage {
  return decode(HandlerMessageSpec, buf) as HandlerMessage;
}

/** The handler's direction, for tests and stand-in handlers. */
export function encodeHandlerMessage(m: HandlerMessage): Buffer {
  return encode(HandlerMessageSpec, m);
}

export function decodeLauncherMessage(buf: Uint8Array): LauncherMessage {
  return decode(LauncherMessageSpec, buf) as unknown as LauncherMessage;
}
