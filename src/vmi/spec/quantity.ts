/**
 * Kubernetes resource quantities (`128Mi`, `2G`, `1e3`, `500m`) turned into exact integers.
 *
 * Arithmetic is done on BigInt rationals so `1.5Gi` or `0.5Ki` are exact, and anything that does
 * not land on a whole unit (a fractional byte, a fraction of a millicore) is refused rather than
 * rounded: a manifest that asks for 1.3 bytes is a typo, not a request. Results must fit in
 * Number.MAX_SAFE_INTEGER because the rest of the agent does arithmetic on plain numbers.
 * Nothing here throws: every failure is a message the caller attaches to a field.
 */

export type QuantityResult = { ok: true; value: number } | { ok: false; error: string };

/** What the integer result counts: bytes (`parseBytes`) or thousandths of a unit (`parseMilli`). */
export interface QuantityOptions {
  /** Power of ten the result is scaled by: 0 for bytes/counts, 3 for millicores. */
  scale?: number;
}

const BINARY_SUFFIXES: Readonly<Record<string, bigint>> = {
  Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n,
};
const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = { m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/** Kubernetes' serialization grammar: optional sign, digits with optional fraction, one suffix. */
const QUANTITY_RE = /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?$/;
/** Longest text considered; real quantities are a handful of characters. */
const MAX_TEXT = 64;
/** Decimal exponents beyond this cannot produce a safe integer (or a whole unit) anyway. */
const MAX_EXPONENT = 40;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Parses a quantity to an exact non-negative integer of `10^-scale` units. */
export function parseQuantity(input: unknown, options: QuantityOptions = {}): QuantityResult {
  const scale = options.scale ?? 0;
  let text: string;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) return { ok: false, error: 'must be a finite quantity' };
    text = String(input);
  } else if (typeof input === 'string') {
    text = input;
  } else {
    return { ok: false, error: 'must be a quantity string such as "128Mi"' };
  }
  if (text.length === 0) return { ok: false, error: 'must not be empty' };
  if (text.length > MAX_TEXT) return { ok: false, error: `is longer than ${MAX_TEXT} characters` };
  const m = QUANTITY_RE.exec(text);
  if (m === null) return { ok: false, error: `${JSON.stringify(text)} is not a valid quantity (e.g. 128Mi, 2G, 1e3)` };
  const [, sign = '', digits = '', suffix = ''] = m;

  const dot = digits.indexOf('.');
  const intDigits = dot === -1 ? digits : digits.slice(0, dot);
  const fracDigits = dot === -1 ? '' : digits.slice(dot + 1);
  const mantissa = BigInt((intDigits + fracDigits).replace(/^0+(?=.)/, '') || '0');

  let num = mantissa;
  let den = 10n ** BigInt(fracDigits.length);
  let exp10 = scale;
  const binary = BINARY_SUFFIXES[suffix];
  if (binary !== undefined) {
    num *= binary;
  } else if (suffix.startsWith('e') || suffix.startsWith('E')) {
    const exponent = Number(suffix.slice(1));
    if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_EXPONENT) {
      return { ok: false, error: `exponent in ${JSON.stringify(text)} is out of range` };
    }
    exp10 += exponent;
  } else {
    exp10 += DECIMAL_SUFFIXES[suffix] ?? 0;
  }
  if (exp10 >= 0) num *= 10n ** BigInt(exp10);
  else den *= 10n ** BigInt(-exp10);

  if (sign === '-' && num !== 0n) return { ok: false, error: `${JSON.stringify(text)} must not be negative` };
  if (num % den !== 0n) {
    const unit = scale === 0 ? 'a whole number of bytes/units' : `a whole multiple of 10^-${scale}`;
    return { ok: false, error: `${JSON.stringify(text)} is not ${unit}` };
  }
  const value = num / den;
  if (value > MAX_SAFE) return { ok: false, error: `${JSON.stringify(text)} is too large` };
  return { ok: true, value: Number(value) };
}

/** A byte count (memory, disk capacity, hugepage size). */
export function parseBytes(input: unknown): QuantityResult {
  return parseQuantity(input, { scale: 0 });
}

/** A CPU quantity in millicores (`500m` -> 500, `2` -> 2000). */
export function parseMilli(input: unknown): QuantityResult {
  return parseQuantity(input, { scale: 3 });
}

/** 1073741824 -> '1Gi', 1000 -> '1000': the shortest exact binary spelling, for messages. */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [['Ti', 2 ** 40], ['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]];
  for (const [suffix, unit] of units) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}
