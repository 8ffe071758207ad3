/**
 * One registry of stable error codes (never reuse or rename a code once released).
 * Native code reports errno facts; this layer gives them meaning. Each transport maps
 * VhError to its wire form in exactly one place (src/http/errors.ts, src/grpc/errors.ts).
 */

export const ErrorCodes = {
  /** Configuration value invalid or unknown; startup stops with exit code 2. */
  CONFIG_INVALID: 'VH_ERR_CONFIG_INVALID',
  /** A command-line flag is unknown or malformed. */
  FLAG_INVALID: 'VH_ERR_FLAG_INVALID',
  /** The state or runtime directory cannot be created or written. */
  STATE_DIR_UNWRITABLE: 'VH_ERR_STATE_DIR_UNWRITABLE',
  /** A unix socket path is held by another live process. */
  SOCKET_IN_USE: 'VH_ERR_SOCKET_IN_USE',
  /** Listening failed (address in use, permission...). */
  LISTEN_FAILED: 'VH_ERR_LISTEN_FAILED',
  /** /dev/kvm is absent. */
  KVM_MISSING: 'VH_ERR_KVM_MISSING',
  /** /dev/kvm exists but this process may not open it. */
  KVM_FORBIDDEN: 'VH_ERR_KVM_FORBIDDEN',
  /** KVM answered but is unusable (wrong API version, ioctl failure). */
  KVM_UNUSABLE: 'VH_ERR_KVM_UNUSABLE',
  /** The native addon could not be loaded. */
  NATIVE_UNAVAILABLE: 'VH_ERR_NATIVE_UNAVAILABLE',
  /** A request argument is malformed. */
  INVALID_ARGUMENT: 'VH_ERR_INVALID_ARGUMENT',
  /** The requested object does not exist. */
  NOT_FOUND: 'VH_ERR_NOT_FOUND',
  /** The daemon is not ready for this request yet (probe running, draining). */
  NOT_READY: 'VH_ERR_NOT_READY',
  /** libvirt.so.0 (or the koffi FFI) cannot be loaded; the message names what to install. */
  LIBVIRT_UNAVAILABLE: 'VH_ERR_LIBVIRT_UNAVAILABLE',
  /** A libvirt call failed; details carry libvirt's code/codeName/domain/domainName. */
  LIBVIRT_ERROR: 'VH_ERR_LIBVIRT_ERROR',
  /** A VMI manifest failed validation; details.violations lists {field, message}. */
  VMI_INVALID: 'VH_ERR_VMI_INVALID',
  /** The object exists already with a different identity (e.g. same namespace/name, other uid). */
  ALREADY_EXISTS: 'VH_ERR_ALREADY_EXISTS',
  /** The object is not in a state that allows the request (e.g. Pause on a VMI that is not Running). */
  FAILED_PRECONDITION: 'VH_ERR_FAILED_PRECONDITION',
  /** A launcher presented a wrong or used token. */
  UNAUTHENTICATED: 'VH_ERR_UNAUTHENTICATED',
  /** A bound was reached (VMI count, watchers, consoles). */
  RESOURCE_EXHAUSTED: 'VH_ERR_RESOURCE_EXHAUSTED',
  /** A watch revision older than the retained history. */
  OUT_OF_RANGE: 'VH_ERR_OUT_OF_RANGE',
  /** Durable state could not be written (disk full, read-only...); the last good record is kept. */
  STATE_WRITE_FAILED: 'VH_ERR_STATE_WRITE_FAILED',
  /** A command to a launcher got no answer in time. */
  DEADLINE_EXCEEDED: 'VH_ERR_DEADLINE_EXCEEDED',
  /** An unexpected internal failure. */
  INTERNAL: 'VH_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** A typed error with a stable code; `details` carries machine-readable facts (field, path, errno...). */
export class VhError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VhError';
    this.code = code;
    this.details = Object.freeze({ ...details });
  }
}

/** True when `e` is a VhError carrying `code` (or any VhError when code is omitted). */
export function isVhError(e: unknown, code?: ErrorCode): e is VhError {
  return e instanceof VhError && (code === undefined || e.code === code);
}

/** The message of anything thrown: an Error's (or error-like object's) message, else String(e). */
export function errorMessage(e: unknown): string {
  const m = typeof e === 'object' && e !== null ? (e as { message?: unknown }).message : undefined;
  return typeof m === 'string' ? m : String(e);
}

/** The first line of errorMessage(e): loader and dlopen failures carry a stack-like tail. */
export function errorFirstLine(e: unknown): string {
  return errorMessage(e).split('\n')[0] ?? '';
}

/** Node-style errno facts (`code`, `errno`, `syscall`, `path`) if `e` carries them. */
export function errnoFacts(e: unknown): { code: string; errno?: number; syscall?: string; path?: string } | null {
  if (typeof e !== 'object' || e === null) return null;
  const o = e as Record<string, unknown>;
  if (typeof o.code !== 'string') return null;
  return {
    code: o.code,
    ...(typeof o.errno === 'number' ? { errno: o.errno } : {}),
    ...(typeof o.syscall === 'string' ? { syscall: o.syscall } : {}),
    ...(typeof o.path === 'string' ? { path: o.path } : {}),
  };
}
