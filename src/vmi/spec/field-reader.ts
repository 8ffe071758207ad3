/**
 * The validator's building blocks (validate.ts): the violation list, message quoting, and typed
 * readers for untrusted JSON values that record a violation with its field path instead of
 * throwing. Values are read through own data properties only (no getters, no prototype).
 */
import { isDnsLabel } from './ids';
import { formatBytes, parseBytes } from './quantity';
import type { FieldViolation } from './types';

export const MAX_VIOLATIONS = 1000;
export const MAX_LIST_ITEMS = 256;
export const MAX_STRING = 4096;
const LONE_SURROGATE = '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
export const CONTROL_RE = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f\\ufffe\\uffff]|${LONE_SURROGATE}`);
export const CONTROL_MULTILINE_RE = new RegExp(`[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\ufffe\\uffff]|${LONE_SURROGATE}`);
const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A JSON-escaped, length-bounded quotation of an untrusted string for messages. */
export function q(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s);
}

/** `parent.key`, or `parent["odd key"]` when the key is not a plain identifier. */
export function child(parent: string, key: string): string {
  if (IDENT_RE.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${q(key)}]`;
}

/** The violations found so far; the same message for the same field is kept once (the schema walker and the validator may both see it). */
export class Violations {
  private readonly items: FieldViolation[] = [];
  private readonly seen = new Set<string>();
  private omitted = 0;
  get count(): number {
    return this.items.length + this.omitted;
  }
  add(field: string, message: string): void {
    const f = field === '' ? 'manifest' : field;
    const key = `${f}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (this.items.length < MAX_VIOLATIONS - 1) this.items.push({ field: f, message });
    else this.omitted += 1;
  }
  list(): FieldViolation[] {
    if (this.omitted === 0) return [...this.items];
    return [...this.items, { field: 'manifest', message: `${this.omitted} further violations not shown` }];
  }
}

/** Own enumerable data properties of a plain object, as a Map (no prototype, no getters). */
export type Fields = Map<string, unknown>;

export function isPlainObject(v: unknown): v is object {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Typed readers over untrusted values; each failure is a violation at its field path. */
export abstract class FieldReader {
  /** false: unknown keys are left to someone else (the schema walker), obj() only reads. */
  protected strict = true;

  constructor(protected readonly v: Violations) {}

  /** The fields of an object; unknown keys are reported (when strict). null (and a violation) if not an object. */
  protected obj(value: unknown, field: string, allowed: readonly string[], unknown = 'unknown field'): Fields | null {
    if (!isPlainObject(value)) {
      this.v.add(field, 'must be an object');
      return null;
    }
    const fields: Fields = new Map();
    for (const key of Object.keys(value)) {
      const desc = Object.getOwnPropertyDescriptor(value, key);
      if (!allowed.includes(key)) {
        if (this.strict) this.v.add(child(field, key), unknown);
        continue;
      }
      fields.set(key, desc !== undefined && 'value' in desc ? (desc.value as unknown) : undefined);
    }
    return fields;
  }

  /** An object with no fields at all ({}), e.g. `pod: {}`. */
  protected empty(value: unknown, field: string): boolean {
    return this.obj(value, field, []) !== null;
  }

  /** A list's entries (up to MAX_LIST_ITEMS); `limit` adds the node's count limit for `noun`s. */
  protected list(value: unknown, field: string, limit?: { max: number; noun: string }): unknown[] {
    if (!Array.isArray(value)) {
      this.v.add(field, 'must be a list');
      return [];
    }
    if (limit !== undefined && value.length > limit.max) {
      this.v.add(field, `${value.length} ${limit.noun} exceed this node's limit of ${limit.max}`);
    }
    const items: unknown[] = [];
    for (let i = 0; i < Math.min(value.length, MAX_LIST_ITEMS); i++) items.push(Object.hasOwn(value, i) ? value[i] : undefined);
    return items;
  }

  protected str(value: unknown, field: string, opts: { max?: number; multiline?: boolean } = {}): string | undefined {
    const max = opts.max ?? MAX_STRING;
    if (typeof value !== 'string') {
      this.v.add(field, 'must be a string');
      return undefined;
    }
    if (value.length > max) {
      this.v.add(field, `must be at most ${max} characters`);
      return undefined;
    }
    if ((opts.multiline === true ? CONTROL_MULTILINE_RE : CONTROL_RE).test(value)) {
      this.v.add(field, 'must not contain control characters');
      return undefined;
    }
    return value;
  }

  protected int(value: unknown, field: string, min: number, max: number): number | undefined {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      this.v.add(field, 'must be an integer');
      return undefined;
    }
    if (value < min || value > max) {
      this.v.add(field, `must be between ${min} and ${max}`);
      return undefined;
    }
    return value;
  }

  protected bool(value: unknown, field: string): boolean | undefined {
    if (typeof value !== 'boolean') {
      this.v.add(field, 'must be true or false');
      return undefined;
    }
    return value;
  }

  protected oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T | undefined {
    const s = this.str(value, field, { max: 64 });
    if (s === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(s)) {
      this.v.add(field, `must be one of ${allowed.join(', ')} (got ${q(s)})`);
      return undefined;
    }
    return s as T;
  }

  protected dnsLabel(value: unknown, field: string): string | undefined {
    const s = this.str(value, field, { max: 253 });
    if (s === undefined) return undefined;
    if (!isDnsLabel(s)) {
      this.v.add(field, `${q(s)} must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63 characters)`);
      return undefined;
    }
    return s;
  }

  /** A byte quantity within [min, max]. */
  protected bytes(value: unknown, field: string, min: number, max: number): number | undefined {
    const r = parseBytes(value);
    if (!r.ok) {
      this.v.add(field, r.error);
      return undefined;
    }
    if (r.value < min) this.v.add(field, `must be at least ${formatBytes(min)}`);
    else if (r.value > max) this.v.add(field, `must be at most ${formatBytes(max)}`);
    else return r.value;
    return undefined;
  }

  /** The `name` of a list entry: required, a DNS-1123 label, not yet in `seen`. */
  protected entryName(f: Fields, base: string, seen: { has(name: string): boolean }, what: string): string | undefined {
    if (!f.has('name')) return this.refuse(`${base}.name`, 'required');
    const name = this.dnsLabel(f.get('name'), `${base}.name`);
    if (name !== undefined && seen.has(name)) return this.refuse(`${base}.name`, `duplicate ${what} name ${q(name)}`);
    return name;
  }

  /** Records `name` as seen and marks the same-named target used; `no <noun> named "x"` if none. */
  protected refer<T extends { used: boolean }>(name: string | undefined, field: string, seen: Set<string>, targets: Map<string, T>, noun: string): T | undefined {
    if (name === undefined) return undefined;
    seen.add(name);
    const target = targets.get(name);
    if (target === undefined) this.v.add(field, `no ${noun} named ${q(name)}`);
    else target.used = true;
    return target;
  }

  /** Adds a violation; `undefined` so callers can `return this.refuse(...)`. */
  protected refuse(field: string, message: string): undefined {
    this.v.add(field, message);
    return undefined;
  }
}
