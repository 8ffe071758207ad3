/**
 * The KVM layer's one error module: gives the addon's errno facts (code, errno, syscall, path)
 * their meaning as VhErrors with stable codes (KVM_MISSING, KVM_FORBIDDEN, KVM_UNUSABLE,
 * INVALID_ARGUMENT, INTERNAL), with advice an operator can act on and the raw facts kept in
 * `details`. The device, VM, vCPU and dirty-tracking modules all map through here, so none of
 * them imports another for its error policy.
 */
import { ErrorCodes, VhError, errnoFacts, type ErrorCode } from '../errors';

/**
 * Native codes for a malformed JS argument or a range outside the memory it names: the caller's
 * mistake in every native object, never a broken host (the transports answer them as bad
 * requests). The addon throws ERR_INVALID_ARG and ERR_OUT_OF_RANGE; ERR_INVALID_ARG_TYPE/_VALUE
 * are Node core's spellings of the same mistake (Buffer and friends inside a wrapped call).
 */
const ARGUMENT_MISTAKES: ReadonlySet<string> = new Set(['ERR_INVALID_ARG', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE']);

/** What the operator should do about a failed open, by errno code. */
function openAdvice(code: string, devicePath: string): string {
  switch (code) {
    case 'ENOENT':
      return `${devicePath} missing: load kvm_intel or kvm_amd (is virtualization enabled in firmware?)`;
    case 'EACCES':
    case 'EPERM':
      return `${devicePath} not accessible: run as root or add the user to group kvm`;
    case 'ENXIO':
    case 'ENODEV':
      return `${devicePath} has no KVM behind it: load kvm_intel or kvm_amd (is virtualization enabled in firmware?)`;
    default:
      return `${devicePath} unusable`;
  }
}

/** The stable code for a native error code ('ENOENT', 'ERR_CLOSED', ...). */
function kvmCodeFor(nativeCode: string): ErrorCode {
  if (ARGUMENT_MISTAKES.has(nativeCode)) return ErrorCodes.INVALID_ARGUMENT;
  switch (nativeCode) {
    case 'ENOENT':
      return ErrorCodes.KVM_MISSING;
    case 'EACCES':
    case 'EPERM':
      return ErrorCodes.KVM_FORBIDDEN;
    // Caller mistakes, not a broken host: the transports answer them as bad requests.
    case 'ERR_UNKNOWN_CAPABILITY':
    // A guest-physical range that overlaps another memory slot: a conflicting request.
    case 'EEXIST':
    // A vCPU call that its run state forbids (state access while running, complete() with nothing pending).
    case 'ERR_BUSY':
    case 'ERR_NOT_WAITING':
      return ErrorCodes.INVALID_ARGUMENT;
    // Using a closed handle is a bug in this process, not a property of the host.
    case 'ERR_CLOSED':
      return ErrorCodes.INTERNAL;
    default:
      return ErrorCodes.KVM_UNUSABLE;
  }
}

/**
 * Maps anything the addon threw to a VhError. `details` keeps the errno facts (code, errno,
 * syscall, path) plus devicePath; the original error is the `cause`. `context` (e.g. 'vm')
 * marks errors of an object below the device: their message is the native one, prefixed.
 */
export function toKvmError(e: unknown, devicePath: string, context?: string): VhError {
  if (e instanceof VhError) return e;
  const facts = errnoFacts(e);
  if (!facts) {
    return new VhError(ErrorCodes.INTERNAL, `${devicePath}: ${String(e)}`, { devicePath }, { cause: e });
  }
  const code = kvmCodeFor(facts.code);
  let message: string;
  if (context !== undefined) {
    message = `${devicePath} ${context}: ${(e as Error).message ?? facts.code}`;
  } else if (facts.syscall === 'open') {
    message = `${openAdvice(facts.code, devicePath)} (${facts.code})`;
  } else if (facts.syscall) {
    message = `${devicePath}: ${facts.syscall} failed with ${facts.code}; is this a KVM device?`;
  } else {
    message = (e as Error).message ?? facts.code;
  }
  return new VhError(code, message, { devicePath, ...facts }, { cause: e });
}

/** Runs one call into the addon; whatever it throws leaves as toKvmError(e, devicePath, context). */
export function callNative<T>(fn: () => T, devicePath: string, context?: string): T {
  try {
    return fn();
  } catch (e) {
    throw toKvmError(e, devicePath, context);
  }
}

/** The stable code for a dirty-log failure, when it differs from the generic KVM mapping. */
function dirtyLogCode(code: string, syscall: string | undefined): ErrorCode | undefined {
  switch (code) {
    // Wrong order of calls or wrong mode for this VM: caller mistakes, not a broken host.
    case 'ERR_DIRTY_LOG_MODE':
    case 'ERR_DIRTY_LOG_OFF':
      return ErrorCodes.INVALID_ARGUMENT;
    case 'ENOENT': // KVM_GET_DIRTY_LOG on a slot without KVM_MEM_LOG_DIRTY_PAGES
    case 'ENXIO': // KVM_GET/CLEAR_DIRTY_LOG on a VM that uses the dirty ring
      return syscall === 'KVM_GET_DIRTY_LOG' || syscall === 'KVM_CLEAR_DIRTY_LOG'
        ? ErrorCodes.INVALID_ARGUMENT
        : undefined;
    case 'EINVAL': // enabling the dirty ring once a vCPU exists
      return syscall === 'KVM_ENABLE_CAP' ? ErrorCodes.INVALID_ARGUMENT : undefined;
    default:
      return undefined;
  }
}

/**
 * Maps anything a dirty-log call threw to a VhError: through toKvmError, then the dirty-log
 * facts above get their own codes. `details.code`/`syscall`/`errno` keep the native facts.
 */
export function toDirtyLogError(e: unknown, devicePath: string): VhError {
  const base = toKvmError(e, devicePath, 'dirty log');
  const code = dirtyLogCode(String(base.details.code ?? ''), base.details.syscall as string | undefined);
  if (code === undefined || code === base.code) return base;
  return new VhError(code, base.message, { ...base.details }, { cause: base.cause ?? e });
}

/** The stable code for a native error code of the userspace tracker. */
function trackerCodeFor(nativeCode: string): ErrorCode {
  if (ARGUMENT_MISTAKES.has(nativeCode)) return ErrorCodes.INVALID_ARGUMENT;
  // ERR_CLOSED and ERR_BUSY are bugs in this process; errno failures (EOPNOTSUPP, ENOTTY, EPERM, ENOMEM)
  // mean the host cannot track: details.code/syscall say which.
  return ErrorCodes.INTERNAL;
}

/** What the operator should do about a host-level failure of the userspace tracker. */
function trackerAdvice(code: string, syscall: string | undefined): string {
  if (syscall === 'userfaultfd' && (code === 'EPERM' || code === 'EACCES')) {
    return 'userfaultfd refused: run as root or set vm.unprivileged_userfaultfd=1';
  }
  if (code === 'EOPNOTSUPP' || code === 'ENOTTY' || code === 'EINVAL') {
    return 'userspace dirty tracking needs Linux 6.7+ (UFFD_FEATURE_WP_ASYNC, PAGEMAP_SCAN)';
  }
  if (code === 'ENOMEM') return 'not enough memory or address space for the tracked region';
  return 'userspace dirty tracking failed';
}

/** Maps anything the userspace dirty tracker's addon calls threw to a VhError; native facts stay in `details`, the original is `cause`. */
export function toDirtyTrackerError(e: unknown): VhError {
  if (e instanceof VhError) return e;
  const facts = errnoFacts(e);
  if (!facts) return new VhError(ErrorCodes.INTERNAL, `dirty tracker: ${String(e)}`, {}, { cause: e });
  const text = e instanceof Error ? e.message : facts.code;
  const message = facts.errno ? `${trackerAdvice(facts.code, facts.syscall)} (${text})` : text;
  return new VhError(trackerCodeFor(facts.code), message, { ...facts }, { cause: e });
}
