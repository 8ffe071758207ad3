/**
 * virTypedParameter arrays, both directions.
 *
 * Layout (include/libvirt/libvirt-common.h, LP64): `char field[80]; int type;` then an 8-byte,
 * 8-aligned union at offset 88, 96 bytes per element. ffi.ts declares the struct with koffi and
 * exposes its size; everything here reads/writes that layout with Buffer methods, which is
 * cheaper than koffi struct decoding per element and keeps the union explicit.
 *
 * Value mapping (lossless, one rule everywhere): INT, UINT and DOUBLE -> number; LLONG and
 * ULLONG -> bigint (64-bit counters exceed 2^53); BOOLEAN -> boolean; STRING -> string.
 *
 * Ownership:
 * - Arrays libvirt allocates (stats records, job stats) are decoded into JS values first and
 *   then freed by the caller with virTypedParamsFree / virDomainStatsRecordListFree; nothing
 *   decoded here points into native memory afterwards.
 * - Arrays we pass in (virDomainMigrateToURI3) are built in a Node Buffer. STRING values point
 *   at further Buffers, which EncodedTypedParams keeps referenced; the caller must keep that
 *   object alive until the native call has returned (Domain.migrateToURI3 holds it in the
 *   closure awaiting the call). No native allocation, so nothing to free.
 */
import { ErrorCodes, VhError } from '../errors';

/** virTypedParameterType names, by value (VIR_TYPED_PARAM_INT = 1 ... STRING = 7). */
export const TYPED_PARAM_TYPES = ['', 'int', 'uint', 'llong', 'ullong', 'double', 'boolean', 'string'] as const;
export type TypedParamType = Exclude<(typeof TYPED_PARAM_TYPES)[number], ''>;
export type TypedParamValue = number | bigint | boolean | string;

/** One element of a virTypedParameter array. */
export interface TypedParam {
  field: string;
  type: TypedParamType;
  value: TypedParamValue;
}

/** A decoded array as a record; a field libvirt repeats (e.g. migrate_disks) becomes an array. */
export type TypedParamRecord = Record<string, TypedParamValue | TypedParamValue[]>;

/** VIR_TYPED_PARAM_FIELD_LENGTH: field names are at most 79 bytes plus the NUL. */
export const TYPED_PARAM_FIELD_LENGTH = 80;
/** Expected sizeof(virTypedParameter) on the supported platform (linux x64). */
export const TYPED_PARAM_SIZE = 96;
const OFF_TYPE = 80;
const OFF_VALUE = 88;

/** The koffi surface this module needs (ffi.ts's binding.koffi satisfies it). */
export interface KoffiMemory {
  view(ptr: unknown, len: number): ArrayBuffer;
  address(value: unknown): bigint;
  decode: { string(ptr: unknown, length?: number | bigint): string };
}

function invalid(field: string, message: string, extra: Record<string, unknown> = {}): VhError {
  return new VhError(ErrorCodes.INVALID_ARGUMENT, `typed parameter '${field}': ${message}`, { field, ...extra });
}

/**
 * Decodes `count` elements from memory holding a virTypedParameter array (a copy or a view).
 * STRING values are read through their char* (which must still be valid: decode before freeing).
 */
export function decodeTypedParamBuffer(k: KoffiMemory, buf: Buffer, count: number): TypedParam[] {
  const out: TypedParam[] = [];
  for (let i = 0; i < count; i++) {
    const base = i * TYPED_PARAM_SIZE;
    const nul = buf.indexOf(0, base);
    const end = nul < 0 || nul > base + TYPED_PARAM_FIELD_LENGTH ? base + TYPED_PARAM_FIELD_LENGTH : nul;
    const field = buf.toString('utf8', base, end);
    const code = buf.readInt32LE(base + OFF_TYPE);
    const v = base + OFF_VALUE;
    switch (code) {
      case 1:
        out.push({ field, type: 'int', value: buf.readInt32LE(v) });
        break;
      case 2:
        out.push({ field, type: 'uint', value: buf.readUInt32LE(v) });
        break;
      case 3:
        out.push({ field, type: 'llong', value: buf.readBigInt64LE(v) });
        break;
      case 4:
        out.push({ field, type: 'ullong', value: buf.readBigUInt64LE(v) });
        break;
      case 5:
        out.push({ field, type: 'double', value: buf.readDoubleLE(v) });
        break;
      case 6:
        out.push({ field, type: 'boolean', value: buf.readInt8(v) !== 0 });
        break;
      case 7: {
        const p = buf.readBigUInt64LE(v);
        out.push({ field, type: 'string', value: p === 0n ? '' : k.decode.string(p) });
        break;
      }
      default:
        // A type newer than this table: surface it rather than guess a width.
        throw new VhError(ErrorCodes.INTERNAL, `typed parameter '${field}' has unknown type ${code}`, { field, type: code });
    }
  }
  return out;
}

/** Decodes a native virTypedParameter array of `count` elements at `ptr` (not freed here). */
export function decodeTypedParams(k: KoffiMemory, ptr: unknown, count: number): TypedParam[] {
  if (!ptr || count <= 0) return [];
  return decodeTypedParamBuffer(k, Buffer.from(k.view(ptr, count * TYPED_PARAM_SIZE)), count);
}

/** Typed params as a record: field -> value; repeated fields collect into an array. */
export function typedParamsToRecord(params: readonly TypedParam[]): TypedParamRecord {
  const rec: TypedParamRecord = {};
  for (const p of params) {
    const prev = rec[p.field];
    if (prev === undefined) rec[p.field] = p.value;
    else rec[p.field] = Array.isArray(prev) ? [...prev, p.value] : [prev, p.value];
  }
  return rec;
}

/** A virTypedParameter array in JS-owned memory, valid while this object is referenced. */
export interface EncodedTypedParams {
  /** The array (pass as the `virTypedParameterPtr`), or null when empty. */
  buffer: Buffer | null;
  count: number;
  /** The NUL-terminated strings `buffer` points at; kept here so GC cannot free them early. */
  readonly keepAlive: readonly Buffer[];
}

const INT_RANGE: Record<'int' | 'uint' | 'llong' | 'ullong', [bigint, bigint]> = {
  int: [-(2n ** 31n), 2n ** 31n - 1n],
  uint: [0n, 2n ** 32n - 1n],
  llong: [-(2n ** 63n), 2n ** 63n - 1n],
  ullong: [0n, 2n ** 64n - 1n],
};

/** Throws INVALID_ARGUMENT naming the field when `value` does not fit `type`. */
export function checkTypedValue(field: string, type: TypedParamType, value: unknown): void {
  switch (type) {
    case 'string':
      if (typeof value !== 'string') throw invalid(field, `expected a string, got ${typeof value}`, { expected: type });
      if (value.includes('\0')) throw invalid(field, 'string contains a NUL byte', { expected: type });
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw invalid(field, `expected a boolean, got ${typeof value}`, { expected: type });
      return;
    case 'double':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(field, 'expected a finite number', { expected: type });
      return;
    default: {
      let n: bigint;
      if (typeof value === 'bigint') n = value;
      else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
      else throw invalid(field, `expected an integer (${type}), got ${typeof value === 'number' ? value : typeof value}`, { expected: type });
      const [lo, hi] = INT_RANGE[type];
      if (n < lo || n > hi) throw invalid(field, `${n} is out of range for ${type}`, { expected: type });
    }
  }
}

/**
 * Builds a virTypedParameter array in a Buffer. Validates every element (field length, value
 * type and range) before writing anything; throws VhError(INVALID_ARGUMENT) naming the field.
 */
export function encodeTypedParams(k: KoffiMemory, params: readonly TypedParam[]): EncodedTypedParams {
  for (const p of params) {
    const len = Buffer.byteLength(p.field, 'utf8');
    if (len === 0 || len >= TYPED_PARAM_FIELD_LENGTH || p.field.includes('\0')) {
      throw invalid(p.field, `field name must be 1..${TYPED_PARAM_FIELD_LENGTH - 1} bytes without NUL`);
    }
    if (!TYPED_PARAM_TYPES.includes(p.type) || (p.type as string) === '') throw invalid(p.field, `unknown type '${String(p.type)}'`);
    checkTypedValue(p.field, p.type, p.value);
  }
  if (params.length === 0) return { buffer: null, count: 0, keepAlive: [] };
  const buf = Buffer.alloc(params.length * TYPED_PARAM_SIZE);
  const keepAlive: Buffer[] = [];
  params.forEach((p, i) => {
    const base = i * TYPED_PARAM_SIZE;
    buf.write(p.field, base, 'utf8');
    buf.writeInt32LE(TYPED_PARAM_TYPES.indexOf(p.type), base + OFF_TYPE);
    const v = base + OFF_VALUE;
    switch (p.type) {
      case 'int':
        buf.writeInt32LE(Number(p.value), v);
        break;
      case 'uint':
        buf.writeUInt32LE(Number(p.value), v);
        break;
      case 'llong':
        buf.writeBigInt64LE(BigInt(p.value as number | bigint), v);
        break;
      case 'ullong':
        buf.writeBigUInt64LE(BigInt(p.value as number | bigint), v);
        break;
      case 'double':
        buf.writeDoubleLE(p.value as number, v);
        break;
      case 'boolean':
        buf.writeInt8(p.value ? 1 : 0, v);
        break;
      case 'string': {
        // Buffer.alloc memory is a stable off-heap backing store: its address does not move.
        const s = Buffer.alloc(Buffer.byteLength(p.value as string, 'utf8') + 1);
        s.write(p.value as string, 0, 'utf8');
        keepAlive.push(s);
        buf.writeBigUInt64LE(k.address(s), v);
        break;
      }
    }
  });
  return { buffer: buf, count: params.length, keepAlive };
}

// ---- Migration parameters (VIR_MIGRATE_PARAM_*, include/libvirt/libvirt-domain.h) ----

/** Each known migration parameter and its libvirt type; `multi` ones may repeat. */
export const MIGRATION_PARAMS = {
  migrate_uri: { type: 'string' },
  destination_name: { type: 'string' },
  destination_xml: { type: 'string' },
  persistent_xml: { type: 'string' },
  bandwidth: { type: 'ullong' },
  'bandwidth.postcopy': { type: 'ullong' },
  graphics_uri: { type: 'string' },
  listen_address: { type: 'string' },
  migrate_disks: { type: 'string', multi: true },
  disks_port: { type: 'int' },
  disks_uri: { type: 'string' },
  compression: { type: 'string', multi: true },
  'compression.mt.level': { type: 'int' },
  'compression.mt.threads': { type: 'int' },
  'compression.mt.dthreads': { type: 'int' },
  'compression.xbzrle.cache': { type: 'ullong' },
  // Since libvirt 9.4.0; older libvirt rejects them with VIR_ERR_INVALID_ARG.
  'compression.zlib.level': { type: 'int' },
  'compression.zstd.level': { type: 'int' },
  'auto_converge.initial': { type: 'int' },
  'auto_converge.increment': { type: 'int' },
  'parallel.connections': { type: 'int' },
  'tls.destination': { type: 'string' },
} as const satisfies Record<string, { type: TypedParamType; multi?: boolean }>;

export type MigrationParamName = keyof typeof MIGRATION_PARAMS;
type JsOf<T extends TypedParamType> = T extends 'string' ? string : T extends 'boolean' ? boolean : T extends 'double' ? number : number | bigint;

/** Migration parameters by libvirt name; multi-valued ones accept a list. */
export type MigrationParams = {
  [K in MigrationParamName]?: (typeof MIGRATION_PARAMS)[K] extends { multi: true }
    ? JsOf<(typeof MIGRATION_PARAMS)[K]['type']> | JsOf<(typeof MIGRATION_PARAMS)[K]['type']>[]
    : JsOf<(typeof MIGRATION_PARAMS)[K]['type']>;
};

/**
 * Validates a migration parameter record and flattens it into typed params (pure: no native
 * call). Unknown names and wrong value types throw VhError(INVALID_ARGUMENT) naming the field.
 * `undefined` values are skipped (so callers can spread optional settings).
 */
export function migrationTypedParams(params: Readonly<Record<string, unknown>>): TypedParam[] {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'migration parameters must be an object', {});
  }
  const out: TypedParam[] = [];
  for (const [field, raw] of Object.entries(params)) {
    if (raw === undefined) continue;
    const spec = (MIGRATION_PARAMS as Record<string, { type: TypedParamType; multi?: boolean }>)[field];
    if (!spec) {
      throw invalid(field, `unknown migration parameter (known: ${Object.keys(MIGRATION_PARAMS).join(', ')})`);
    }
    const values = Array.isArray(raw) ? raw : [raw];
    if (Array.isArray(raw) && !spec.multi) throw invalid(field, 'takes one value, got a list', { expected: spec.type });
    for (const value of values) {
      checkTypedValue(field, spec.type, value);
      out.push({ field, type: spec.type, value: value as TypedParamValue });
    }
  }
  return out;
}
