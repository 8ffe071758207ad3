/**
 * Secret material in a VMI (cloud-init user and network data: passwords, SSH keys, tokens) must
 * never leave the daemon in full: not in an API answer, a log line or an event. Views and log
 * fields pass through redactSecrets() on their way out; only the durable record keeps the full
 * manifest, because the launcher needs it.
 *
 * One stable format, so an operator can still tell two versions apart and check one against a
 * file: `<redacted: N bytes, sha256:HEX>`, N the UTF-8 byte length and HEX the full lower-case
 * SHA-256 of those bytes (what `printf %s "$userData" | sha256sum` prints). The hash lets anyone
 * who can read a view test guesses of the whole text offline, which is why the views themselves
 * are only served on the 0660 unix socket (src/http/server.ts).
 *
 * Pure: no I/O and no imports from the transports or the controller, so every layer may use it.
 */
import { createHash } from 'node:crypto';

/**
 * Field names whose string values are secret wherever they appear. KubeVirt's
 * cloudInitNoCloud/cloudInitConfigDrive carry these (the Base64 forms are KubeVirt's, refused
 * by validation today; redacted anyway should a view ever be built from an unvalidated value).
 */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(['userData', 'userDataBase64', 'networkData', 'networkDataBase64']);

const MARKER_RE = /^<redacted: \d+ bytes, sha256:[0-9a-f]{64}>$/;

/** Whether `text` is already a redaction marker (redacting twice must not hash the marker). */
export function isRedactionMarker(text: string): boolean {
  return MARKER_RE.test(text);
}

/** The marker standing in for a secret string: `<redacted: N bytes, sha256:HEX>`. Idempotent. */
export function redactSecret(text: string): string {
  if (isRedactionMarker(text)) return text;
  const bytes = Buffer.from(text, 'utf8');
  return `<redacted: ${bytes.length} bytes, sha256:${createHash('sha256').update(bytes).digest('hex')}>`;
}

/**
 * A deep copy of `value` (a manifest, a bare spec, a view, a DiskPrep list: any JSON-shaped
 * value) with the string value of every SECRET_FIELDS key, at any depth, replaced by its
 * marker. Other values are copied as they are; the input is never modified.
 */
export function redactSecrets<T>(value: T): T {
  return copy(value) as T;
}

function copy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copy);
  if (typeof value !== 'object' || value === null) return value;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // Buffers, Dates...: no secret fields
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    // defineProperty: an own "__proto__" key (JSON.parse makes those) stays data, not a prototype.
    Object.defineProperty(out, key, { value: SECRET_FIELDS.has(key) && typeof v === 'string' ? redactSecret(v) : copy(v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
