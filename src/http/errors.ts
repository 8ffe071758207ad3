/**
 * The ONE place where errors become HTTP responses. Every error body is `{code, message}` where
 * code is a stable VH_ERR_* code: thrown VhErrors, fastify's own FST_ERR_* errors (bad
 * content-type, body too large, ...), unknown routes (404) and wrong methods (405) alike.
 */
import type { FastifyError, FastifyInstance, HTTPMethods } from 'fastify';
import { ErrorCodes, VhError, type ErrorCode } from '../errors';

/** The JSON body of every HTTP error response. */
export interface HttpErrorBody {
  code: ErrorCode;
  message: string;
}

/**
 * HTTP status per error code. A Record over ErrorCode, so adding a code to the registry without
 * deciding its status here is a compile error.
 */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  [ErrorCodes.CONFIG_INVALID]: 500,
  [ErrorCodes.FLAG_INVALID]: 500,
  [ErrorCodes.STATE_DIR_UNWRITABLE]: 500,
  [ErrorCodes.SOCKET_IN_USE]: 500,
  [ErrorCodes.LISTEN_FAILED]: 500,
  [ErrorCodes.KVM_MISSING]: 503,
  [ErrorCodes.KVM_FORBIDDEN]: 503,
  [ErrorCodes.KVM_UNUSABLE]: 503,
  [ErrorCodes.NATIVE_UNAVAILABLE]: 503,
  [ErrorCodes.LIBVIRT_UNAVAILABLE]: 503,
  [ErrorCodes.LIBVIRT_ERROR]: 502,
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.NOT_READY]: 503,
  [ErrorCodes.VMI_INVALID]: 400,
  [ErrorCodes.ALREADY_EXISTS]: 409,
  [ErrorCodes.FAILED_PRECONDITION]: 409,
  [ErrorCodes.UNAUTHENTICATED]: 401,
  [ErrorCodes.RESOURCE_EXHAUSTED]: 429,
  [ErrorCodes.OUT_OF_RANGE]: 410,
  [ErrorCodes.STATE_WRITE_FAILED]: 507,
  [ErrorCodes.DEADLINE_EXCEEDED]: 504,
  [ErrorCodes.INTERNAL]: 500,
};

/** Maps any thrown value to a status and body. Internal details of unexpected errors are not leaked. */
export function toHttpError(err: unknown): { status: number; body: HttpErrorBody } {
  if (err instanceof VhError) {
    return { status: STATUS_BY_CODE[err.code], body: { code: err.code, message: err.message } };
  }
  const status = (err as Partial<FastifyError> | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // fastify's client errors (FST_ERR_CTP_*, body too large, bad JSON...) carry safe messages.
    const code = status === 404 ? ErrorCodes.NOT_FOUND : ErrorCodes.INVALID_ARGUMENT;
    return { status, body: { code, message: (err as Error).message } };
  }
  if (status === 503) return { status, body: { code: ErrorCodes.NOT_READY, message: 'service unavailable' } };
  return { status: 500, body: { code: ErrorCodes.INTERNAL, message: 'internal error; see the virt-handler log' } };
}

/**
 * The 404 the loopback TCP listener gives for every request it does not serve: a route only the
 * unix socket serves, an unknown path, a wrong method or a malformed URL all get this same body,
 * so a TCP client cannot tell which routes exist. `served` lists what TCP does serve.
 */
export function tcpNotFoundBody(method: string, url: string, served: readonly string[]): HttpErrorBody {
  return { code: ErrorCodes.NOT_FOUND, message: `no route for ${method} ${url}; this TCP listener serves only ${served.join(', ')} (the rest of the API is on the unix socket)` };
}

const METHODS: readonly HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/** Installs the error handler and the not-found handler (which also answers 405 for known paths). */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) request.log.error({ err }, 'request failed');
    else request.log.debug({ code: body.code, err: (err as Error).message }, 'request rejected');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split('?')[0] ?? '/';
    const allowed = METHODS.filter((method) => app.hasRoute({ method, url }));
    if (allowed.length > 0) {
      const body: HttpErrorBody = { code: ErrorCodes.INVALID_ARGUMENT, message: `method ${request.method} is not allowed on ${url}; use ${allowed.join(', ')}` };
      void reply.code(405).header('allow', allowed.join(', ')).send(body);
      return;
    }
    const body: HttpErrorBody = { code: ErrorCodes.NOT_FOUND, message: `no route for ${request.method} ${url}; see GET /healthz, /readyz, /metrics, /v1/node` };
    void reply.code(404).send(body);
  });
}
