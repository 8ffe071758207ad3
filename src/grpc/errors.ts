/**
 * The ONE place where errors become gRPC statuses. Handlers throw (or pass) VhError; this
 * module picks the status code, keeps the operator-facing message as `details`, and adds the
 * stable registry code as the `vh-error-code` trailer so clients can branch without parsing
 * text.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from './proto';
import { ErrorCode, ErrorCodes, isVhError } from '../errors';

/** Trailer key carrying a serialized virthandler.v1.FieldViolations for VMI_INVALID. */
export const VIOLATIONS_TRAILER = 'vh-field-violations-bin';

/** Trailer key carrying the stable VhError code (e.g. VH_ERR_NOT_READY). */
export const ERROR_CODE_TRAILER = 'vh-error-code';

/**
 * Status per registry code. A Record over ErrorCode makes the compiler reject a new code
 * that nobody mapped. The rule: caller mistakes are INVALID_ARGUMENT/NOT_FOUND, "retry
 * later" is UNAVAILABLE (clients may retry it blindly), "fix the host first" is
 * FAILED_PRECONDITION (retrying will not help), everything else is INTERNAL.
 */
const STATUS_BY_CODE: Record<ErrorCode, grpc.status> = {
  [ErrorCodes.INVALID_ARGUMENT]: grpc.status.INVALID_ARGUMENT,
  [ErrorCodes.FLAG_INVALID]: grpc.status.INVALID_ARGUMENT,
  [ErrorCodes.NOT_FOUND]: grpc.status.NOT_FOUND,
  [ErrorCodes.NOT_READY]: grpc.status.UNAVAILABLE,
  [ErrorCodes.KVM_MISSING]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.KVM_FORBIDDEN]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.KVM_UNUSABLE]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.NATIVE_UNAVAILABLE]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.LIBVIRT_UNAVAILABLE]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.LIBVIRT_ERROR]: grpc.status.UNAVAILABLE,
  [ErrorCodes.STATE_DIR_UNWRITABLE]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.SOCKET_IN_USE]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.LISTEN_FAILED]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.CONFIG_INVALID]: grpc.status.INTERNAL,
  [ErrorCodes.VMI_INVALID]: grpc.status.INVALID_ARGUMENT,
  [ErrorCodes.ALREADY_EXISTS]: grpc.status.ALREADY_EXISTS,
  [ErrorCodes.FAILED_PRECONDITION]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.UNAUTHENTICATED]: grpc.status.UNAUTHENTICATED,
  [ErrorCodes.RESOURCE_EXHAUSTED]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCodes.OUT_OF_RANGE]: grpc.status.OUT_OF_RANGE,
  [ErrorCodes.STATE_WRITE_FAILED]: grpc.status.UNAVAILABLE,
  [ErrorCodes.DEADLINE_EXCEEDED]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCodes.INTERNAL]: grpc.status.INTERNAL,
};

/** The gRPC status for a registry code. */
export function grpcStatusFor(code: ErrorCode): grpc.status {
  return STATUS_BY_CODE[code];
}

/**
 * Converts anything thrown by a handler into a status object for a unary callback or a
 * stream's 'error' event. Non-VhError values are bugs: their text is not sent (it may hold
 * paths or internals), only a generic INTERNAL; the caller logs the original.
 */
export function toGrpcStatus(err: unknown): grpc.ServerErrorResponse {
  const code: ErrorCode = isVhError(err) ? err.code : ErrorCodes.INTERNAL;
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_TRAILER, code);
  const violations = isVhError(err) ? err.details.violations : undefined;
  if (Array.isArray(violations) && violations.length > 0) {
    const type = loadProtos().messageType('virthandler.v1.FieldViolations');
    metadata.set(VIOLATIONS_TRAILER, Buffer.from(type.encode(type.fromObject({ violations })).finish()));
  }
  const details = isVhError(err) ? err.message : 'internal error; see the virt-handler log';
  return Object.assign(new Error(details), { code: STATUS_BY_CODE[code], details, metadata });
}

/** A request body that failed to decode (see server.ts); answered with INVALID_ARGUMENT. */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** A grpc-js unary handler. */
export type UnaryHandler = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void;

/**
 * Wraps `fn` (the request object -> the response, or a promise of it) as a unary handler: a
 * thrown VhError becomes its status here; anything else is also logged, as `<service> handler
 * failed`, since it is a bug rather than a caller's mistake.
 */
export function unaryHandler(log: { error(o: object, msg: string): void }, service: string): (fn: (req: Record<string, unknown>) => unknown) => UnaryHandler {
  return (fn) => (call, cb) => {
    Promise.resolve()
      .then(() => fn((call.request ?? {}) as Record<string, unknown>))
      .then(
        (res) => cb(null, res),
        (e: unknown) => {
          if (!isVhError(e)) log.error({ err: e, method: call.getPath() }, `${service} handler failed`);
          cb(toGrpcStatus(e));
        },
      );
  };
}
