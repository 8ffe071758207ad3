/**
 * The daemon's gRPC endpoint: every service (Node, Health, VmiService, Launcher) on one unix
 * socket (mode 0660: access control is the socket file's permissions), and optionally (grpc.tcp)
 * the controller-facing services only (Node, Health, VmiService) on a TCP port that requires
 * mutual TLS. Launchers are local and always use the unix socket; Launcher is never on TCP.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
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
  /** Optional mTLS TCP listener (Config.grpc.tcp); null or absent: unix socket only. */
  tcp?: GrpcTcpOptions | null;
}

/** The TCP listener: address and PEM file paths (read at start()). */
export interface GrpcTcpOptions {
  host: string;
  /** 0 picks a free port (see GrpcServer.tcpPort). */
  port: number;
  tls: { cert: string; key: string; ca: string };
}

/**
 * Method paths of services that are never served over TCP: launchers are local; the image store
 * is node-local state managed by the node's operator (an import is a bulk upload of up to
 * images.maxImageSize, removal and gc are local decisions), not by a remote controller.
 */
export const LOCAL_ONLY_SERVICE_PREFIXES: readonly string[] = ['/virthandler.v1.Launcher/', '/virthandler.v1.ImageService/'];

/** True when a service may be served on the TCP listener (its first method is not local-only). */
export function servedOverTcp(definition: grpc.ServiceDefinition): boolean {
  const first = Object.values(definition as Record<string, grpc.MethodDefinition<unknown, unknown>>)[0];
  return !first || !LOCAL_ONLY_SERVICE_PREFIXES.some((p) => first.path.startsWith(p));
}

/**
 * Reads and checks the TLS files for the TCP listener. Every failure is a startup failure
 * (LISTEN_FAILED, exit 3) whose message names the key and the file: unreadable files, a key
 * file readable by group or others, PEM that does not parse, a key that does not match the cert.
 */
export function loadTlsFiles(tls: GrpcTcpOptions['tls']): { cert: Buffer; key: Buffer; ca: Buffer } {
  const fail = (key: string, file: string, what: string, cause?: unknown): never => {
    throw new VhError(ErrorCodes.LISTEN_FAILED, `grpc.tls.${key} ${file}: ${what}`, { key: `grpc.tls.${key}`, path: file }, cause === undefined ? undefined : { cause });
  };
  const read = (key: string, file: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      return fail(key, file, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
    }
  };
  const keyMode = (() => {
    try {
      return fs.statSync(tls.key).mode;
    } catch (e) {
      return fail('key', tls.key, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
    }
  })();
  if ((keyMode & 0o077) !== 0) {
    fail('key', tls.key, `private key is readable or writable by group/others (mode ${(keyMode & 0o777).toString(8).padStart(4, '0')}); run chmod 600 ${tls.key}`);
  }
  const cert = read('cert', tls.cert);
  const key = read('key', tls.key);
  const ca = read('ca', tls.ca);
  let x509: crypto.X509Certificate | null = null;
  try {
    x509 = new crypto.X509Certificate(cert);
  } catch (e) {
    fail('cert', tls.cert, `not a PEM certificate (${(e as Error).message})`, e);
  }
  let privateKey: crypto.KeyObject | null = null;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (e) {
    fail('key', tls.key, `not a PEM private key (${(e as Error).message})`, e);
  }
  try {
    new crypto.X509Certificate(ca);
  } catch (e) {
    fail('ca', tls.ca, `not a PEM certificate (${(e as Error).message})`, e);
  }
  if (x509 && privateKey && !x509.checkPrivateKey(privateKey)) fail('key', tls.key, `does not match the certificate in ${tls.cert}`);
  return { cert, key, ca };
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
  /** The mTLS TCP server (a second grpc.Server: grpc-js adds services per server, not per port). */
  private tcpServer: grpc.Server | null = null;
  private boundTcpPort: number | null = null;
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
    const tcp = this.opts.tcp ?? null;
    // TLS files are read before anything is touched: a bad file fails startup with nothing bound.
    const pem = tcp ? loadTlsFiles(tcp.tls) : null;
    await prepareUnixSocket(socketPath);
    const protos = loadProtos();
    const server = new grpc.Server(SERVER_OPTIONS);
    const node = guardService(protos.nodeService, nodeServiceImplementation(this.opts.nodeInfo), this.log);
    const health = guardService(protos.healthService, this.health.implementation(), this.log);
    const all = [node, health, ...(this.opts.services?.() ?? []).map((extra) => guardService(extra.definition, extra.implementation, this.log))];
    for (const svc of all) server.addService(svc.definition, svc.implementation);
    let tcpServer: grpc.Server | null = null;
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
      if (tcp && pem) {
        tcpServer = new grpc.Server(SERVER_OPTIONS);
        for (const svc of all.filter((s) => servedOverTcp(s.definition))) tcpServer.addService(svc.definition, svc.implementation);
        // checkClientCertificate=true: a client without a certificate chaining to grpc.tls.ca is refused in the handshake.
        const creds = grpc.ServerCredentials.createSsl(pem.ca, [{ cert_chain: pem.cert, private_key: pem.key }], true);
        const address = `${net.isIPv6(tcp.host) ? `[${tcp.host}]` : tcp.host}:${tcp.port}`;
        const ts = tcpServer;
        this.boundTcpPort = await new Promise<number>((resolve, reject) => {
          ts.bindAsync(address, creds, (err, port) => {
            if (!err) return resolve(port);
            reject(new VhError(ErrorCodes.LISTEN_FAILED, `grpc.tcp: cannot listen on ${address}: ${err.message}`, { host: tcp.host, port: tcp.port }, { cause: err }));
          });
        });
      }
    } catch (e) {
      tcpServer?.forceShutdown();
      this.boundTcpPort = null;
      server.forceShutdown();
      if (this.ownsSocket) removeSocket(socketPath);
      this.ownsSocket = false;
      throw e;
    }
    this.server = server;
    this.tcpServer = tcpServer;
    this.log.info({ socket: socketPath }, 'gRPC listening');
    if (tcp) this.log.info({ host: tcp.host, port: this.boundTcpPort }, 'gRPC listening on tcp (mTLS)');
  }

  /** The bound TCP port (the real one when grpc.tcp.port was 0), or null without a TCP listener. */
  get tcpPort(): number | null {
    return this.boundTcpPort;
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
    const servers = [this.server, this.tcpServer].filter((s): s is grpc.Server => s !== null);
    this.server = null;
    this.tcpServer = null;
    this.boundTcpPort = null;
    this.setServing(false);
    this.health.closeWatchers();
    // Both listeners drain at once, under the same deadline.
    await Promise.all(servers.map((server) => this.drain(server, deadlineMs)));
    if (this.ownsSocket) removeSocket(this.opts.socketPath);
    this.ownsSocket = false;
  }

  /** tryShutdown, forced after `deadlineMs`. */
  private async drain(server: grpc.Server, deadlineMs: number): Promise<void> {
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
