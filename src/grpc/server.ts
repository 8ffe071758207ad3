/**
 * The daemon's gRPC endpoint: virthandler.v1.Node and grpc.health.v1.Health on one unix socket
 * (mode 0660; no TCP listener, so no TLS - access control is the socket file's permissions).
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import { ErrorCodes, VhError } from '../errors';
import type { NodeInfo } from '../node/types';
import { prepareUnixSocket, restrictSocket } from '../util/unix-socket';
import { MalformedRequest, toGrpcStatus } from './errors';
import { HealthService } from './health';
import { nodeServiceImplementation } from './node-service';
import { NODE_SERVICE, loadProtos } from './proto';

/** Largest request we decode. Our requests are tiny; a bound keeps a bad client from making us buffer. */
export const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;
/** Largest response we send. NodeInfo is a few KiB; the headroom is for later list RPCs. */
export const MAX_SEND_BYTES = 16 * 1024 * 1024;

/**
 * Server channel options. Keepalive matters even on a unix socket: a peer process that hangs
 * (rather than exits) keeps its Watch stream and HTTP/2 session forever; pinging every 2 min
 * and dropping after 20 s without an answer reclaims them. grpc-js servers do not police
 * client ping rates, so clients may set their own keepalive freely.
 */
export const SERVER_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
  'grpc.max_send_message_length': MAX_SEND_BYTES,
  'grpc.keepalive_time_ms': 120_000,
  'grpc.keepalive_timeout_ms': 20_000,
  // Bounds the streams one connection can hold open (each Watch is one).
  'grpc.max_concurrent_streams': 128,
};

/** Constructor options of GrpcServer. */
export interface GrpcServerOptions {
  /** Absolute unix socket path, e.g. /run/virt-handler/grpc.sock. */
  socketPath: string;
  logger: pino.Logger;
  /** The latest probe result, or null while the probe is still running. */
  nodeInfo: () => NodeInfo | null;
  /** More services (VmiService, Launcher), each guarded like the built-in ones. */
  services?: () => Array<{ definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }>;
}

/**
 * Owns the grpc-js server. Health starts NOT_SERVING for '' and virthandler.v1.Node; the
 * composition root calls setServing(true) once the daemon is ready and setServing(false) when
 * it begins to drain.
 */
export class GrpcServer {
  private readonly opts: GrpcServerOptions;
  private readonly log: pino.Logger;
  private readonly health = new HealthService();
  private server: grpc.Server | null = null;
  /** True once bind succeeded: only then is the socket file ours to remove (never a live peer's). */
  private ownsSocket = false;

  constructor(opts: GrpcServerOptions) {
    this.opts = opts;
    this.log = opts.logger;
    this.setServing(false);
  }

  /**
   * Listens on the socket: refuses a path held by a live process (SOCKET_IN_USE), replaces a
   * stale one, then restricts the socket to 0660. Bind failures become LISTEN_FAILED.
   */
  async start(): Promise<void> {
    if (this.server) throw new VhError(ErrorCodes.INTERNAL, 'gRPC server already started');
    const { socketPath } = this.opts;
    await prepareUnixSocket(socketPath);
    const protos = loadProtos();
    const server = new grpc.Server(SERVER_OPTIONS);
    const node = guardService(protos.nodeService, nodeServiceImplementation(this.opts.nodeInfo), this.log);
    const health = guardService(protos.healthService, this.health.implementation(), this.log);
    server.addService(node.definition, node.implementation);
    server.addService(health.definition, health.implementation);
    for (const extra of this.opts.services?.() ?? []) {
      const guarded = guardService(extra.definition, extra.implementation, this.log);
      server.addService(guarded.definition, guarded.implementation);
    }
    try {
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
          if (!err) return resolve();
          reject(new VhError(ErrorCodes.LISTEN_FAILED, `cannot listen on ${socketPath}: ${err.message}`, { path: socketPath }, { cause: err }));
        });
      });
      this.ownsSocket = true;
      // Until this chmod the socket carries the umask's mode (0755 under umask 022), which already
      // denies connect(2) to others, so there is no window where it is wider than 0660.
      restrictSocket(socketPath, 0o660);
    } catch (e) {
      server.forceShutdown();
      if (this.ownsSocket) removeSocket(socketPath);
      this.ownsSocket = false;
      throw e;
    }
    this.server = server;
    this.log.info({ socket: socketPath }, 'gRPC listening');
  }

  /** SERVING / NOT_SERVING for '' and virthandler.v1.Node; open Watch streams see the change. */
  setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(NODE_SERVICE, status);
  }

  /**
   * Reports NOT_SERVING, ends Watch streams, lets in-flight calls finish (tryShutdown) and
   * forces the rest closed after `deadlineMs`, then removes the socket file. Idempotent, and
   * safe after a failed start(): a socket held by another live process is never removed.
   */
  async shutdown(deadlineMs: number): Promise<void> {
    const server = this.server;
    this.server = null;
    this.setServing(false);
    this.health.closeWatchers();
    if (server) {
      await new Promise<void>((resolve) => {
        let done = false;
        const finish = (): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.log.warn({ deadlineMs }, 'gRPC drain deadline passed; cancelling remaining calls');
          server.forceShutdown();
          finish();
        }, deadlineMs);
        server.tryShutdown((err) => {
          if (err) {
            this.log.warn({ err }, 'gRPC graceful shutdown failed; forcing');
            server.forceShutdown();
          }
          finish();
        });
      });
    }
    if (this.ownsSocket) removeSocket(this.opts.socketPath);
    this.ownsSocket = false;
  }
}

/** Removes our socket file; never touches a non-socket that appeared at the path. */
function removeSocket(socketPath: string): void {
  try {
    if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Wraps a service so that a request body which fails to decode is answered INVALID_ARGUMENT
 * (grpc-js would say INTERNAL, blaming the server for a client's bytes) and a handler that
 * throws is answered through toGrpcStatus instead of escaping. Client-streaming and bidi
 * handlers pass through unwrapped: they get MalformedRequest objects in their data stream and
 * answer them themselves.
 */
function guardService(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  log: pino.Logger,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const outDef: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const outImpl: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition as Record<string, grpc.MethodDefinition<unknown, unknown>>)) {
    const handler = implementation[name];
    if (!handler) throw new VhError(ErrorCodes.INTERNAL, `no handler for ${method.path}`);
    outDef[name] = {
      ...method,
      requestDeserialize: (buf: Buffer): unknown => {
        try {
          return method.requestDeserialize(buf);
        } catch (e) {
          return new MalformedRequest(e instanceof Error ? e.message : String(e));
        }
      },
    };
    const fail = (request: unknown, err: unknown): grpc.ServerErrorResponse => {
      if (request instanceof MalformedRequest) {
        log.warn({ method: method.path, reason: request.reason }, 'malformed gRPC request');
        return toGrpcStatus(new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed ${method.path} request: ${request.reason}`));
      }
      log.error({ method: method.path, err }, 'gRPC handler failed');
      return toGrpcStatus(err);
    };
    if (method.requestStream) {
      outImpl[name] = handler;
    } else if (method.responseStream) {
      const h = handler as grpc.handleServerStreamingCall<unknown, unknown>;
      outImpl[name] = (call: grpc.ServerWritableStream<unknown, unknown>): void => {
        try {
          if (call.request instanceof MalformedRequest) throw call.request;
          h(call);
        } catch (e) {
          call.emit('error', fail(call.request, e));
        }
      };
    } else {
      const h = handler as grpc.handleUnaryCall<unknown, unknown>;
      outImpl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>): void => {
        try {
          if (call.request instanceof MalformedRequest) throw call.request;
          h(call, callback);
        } catch (e) {
          callback(fail(call.request, e));
        }
      };
    }
  }
  return { definition: outDef as grpc.ServiceDefinition, implementation: outImpl };
}
