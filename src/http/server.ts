/**
 * The status API: one fastify instance served on two listeners, a unix socket (0660, for local
 * tools and the kubelet via hostPath) and a loopback TCP port (for probes). Binding a non-loopback
 * address is refused unless explicitly allowed, because the API is unauthenticated.
 *
 * Any local user can connect to the TCP port, so it serves only the routes declared ON_TCP
 * (routes.ts: /healthz, /readyz, /metrics). Everything else - VMI, node and event views, unknown
 * paths, wrong methods, malformed URLs - gets one and the same 404 there, decided in an onRequest
 * hook before any handler, body parser or error message can say whether the route exists.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { ErrorCodes, VhError, errnoFacts, isVhError } from '../errors';
import type { Logger } from '../log';
import type { NodeInfo } from '../node/types';
import { prepareUnixSocket, restrictSocket } from '../util/unix-socket';
import type { Readiness } from '../util/readiness';
import type { VmiReadModel } from '../vmi/spec/types';
import type { DataVolumeReadModel } from './datavolume-routes';
import { registerErrorHandling, tcpNotFoundBody, toHttpError } from './errors';
import type { Metrics } from './metrics';
import { LagMonitor, registerRoutes } from './routes';

/** Inputs of HttpServer. */
export interface HttpServerOptions {
  logger: Logger;
  socketPath: string;
  /** null: unix socket only. */
  tcp: { host: string; port: number } | null;
  readiness: Readiness;
  nodeInfo: () => NodeInfo | null;
  metrics: Metrics;
  /** Component states shown by /readyz beside the reasons (e.g. libvirt), blocking or not. */
  components?: () => Record<string, unknown>;
  /** /healthz turns 503 above this event-loop lag (default 2000 ms). */
  maxEventLoopLagMs?: number;
  /** The VMI read model behind GET /v1/vmis...; absent when VMI support is off (those routes answer 503). */
  vmis?: VmiReadModel;
  /** The DataVolumes behind GET /v1/datavolumes... (unix socket only). */
  dataVolumes?: DataVolumeReadModel;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** One registered route and whether the TCP listener serves it. */
export interface HttpRoute {
  method: string;
  url: string;
  tcp: boolean;
}

/**
 * fastify's default schema compilers (ajv, fast-json-stringify), resolved from fastify's own
 * location and loaded on first use. Our routes declare no schemas, and fastify otherwise loads
 * ajv in its constructor: ~60 ms of every startup for nothing.
 */
type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
function lazyFastifyCompilers(): CompilersFactory {
  const load = <T>(mod: string): T => require(require.resolve(mod, { paths: [path.dirname(require.resolve('fastify'))] })) as T;
  type Selector<F> = () => F;
  type V = NonNullable<CompilersFactory['buildValidator']>;
  type S = NonNullable<CompilersFactory['buildSerializer']>;
  let validator: V | undefined; // one selector per server, as fastify does: it caches ajv instances
  let serializer: S | undefined;
  return {
    buildValidator: ((...args: Parameters<V>) => (validator ??= load<Selector<V>>('@fastify/ajv-compiler')())(...args)) as V,
    buildSerializer: ((...args: Parameters<S>) => (serializer ??= load<Selector<S>>('@fastify/fast-json-stringify-compiler')())(...args)) as S,
  };
}

/**
 * Request lines at debug, one per request: probes hit /healthz and /readyz every few seconds
 * and must not flood the info log (fastify's default is two info lines per request).
 */
class QuietLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const fields = { method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 };
    if (error) request.log.error({ ...fields, err: error }, 'request errored');
    else request.log.debug(fields, 'request');
  }

  override routeNotFound(): void {} // the 404 itself is logged by requestCompleted
}

function listenOn(server: http.Server, opts: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** The HTTP status API. `app` is exposed for fastify.inject() in tests. */
export class HttpServer {
  readonly app: FastifyInstance;
  private readonly log: Logger;
  private readonly unixServer: http.Server;
  private readonly tcpServer: http.Server | null;
  private readonly lag = new LagMonitor();
  /** Connections accepted by the TCP listener: their requests get only the ON_TCP routes. */
  private readonly tcpSockets = new WeakSet<Socket>();
  private readonly routeTable: HttpRoute[] = [];
  private socketIno: number | null = null;
  private draining = false;
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: HttpServerOptions) {
    this.log = opts.logger;
    let handler: Handler | null = null;
    // serverFactory hands us fastify's request handler; we give the same handler to both servers
    // and listen ourselves, since one fastify instance can only listen() once.
    const factory = (h: Handler): http.Server => {
      handler = h;
      return this.newServer(h);
    };
    this.app = fastify({
      loggerInstance: opts.logger as unknown as FastifyBaseLogger,
      logController: new QuietLogController(),
      serverFactory: factory,
      bodyLimit: 64 * 1024,
      schemaController: { compilersFactory: lazyFastifyCompilers() },
      return503OnClosing: false, // draining is reported by /readyz itself
      // Malformed URLs never reach routing or hooks: answered here, in the same shapes.
      frameworkErrors: (err, req, reply) => this.onFrameworkError(err, req as FastifyRequest, reply as unknown as FastifyReply),
    });
    this.unixServer = this.app.server;
    this.tcpServer = opts.tcp ? this.newServer(handler!) : null;
    this.tcpServer?.on('connection', (socket: Socket) => this.tcpSockets.add(socket));

    this.app.addHook('onRoute', (route) => {
      for (const method of [route.method].flat()) this.routeTable.push({ method, url: route.url, tcp: route.config?.tcp === true });
    });
    // For a path no route matches, routeOptions.config is the not-found handler's ({}): refused too.
    this.app.addHook('onRequest', async (req, reply) => {
      if (this.isTcp(req) && req.routeOptions.config.tcp !== true) return this.refuseOnTcp(req, reply);
    });

    this.app.addHook('onSend', async (_req, reply) => {
      reply.header('cache-control', 'no-store');
      // Keep-alive clients must reconnect elsewhere once we drain, or close() waits for them.
      if (this.draining) reply.header('connection', 'close');
    });
    registerErrorHandling(this.app);
    registerRoutes(this.app, {
      readiness: opts.readiness,
      nodeInfo: opts.nodeInfo,
      metrics: opts.metrics,
      components: opts.components ?? (() => ({})),
      lag: this.lag,
      maxEventLoopLagMs: opts.maxEventLoopLagMs ?? 2000,
      ...(opts.vmis ? { vmis: opts.vmis } : {}),
      ...(opts.dataVolumes ? { dataVolumes: opts.dataVolumes } : {}),
    });
  }

  /** Every route registered so far (HEAD twins included), in registration order. */
  get routes(): readonly HttpRoute[] {
    return this.routeTable.map((r) => ({ ...r }));
  }

  private isTcp(req: FastifyRequest): boolean {
    return this.tcpSockets.has(req.raw.socket);
  }

  private onFrameworkError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
    if (this.isTcp(req)) return void this.refuseOnTcp(req, reply);
    const { status, body } = toHttpError(err);
    void reply.code(status).send(body);
  }

  private refuseOnTcp(req: FastifyRequest, reply: FastifyReply): FastifyReply {
    const served = [...new Set(this.routeTable.filter((r) => r.tcp && r.method === 'GET').map((r) => `GET ${r.url}`))];
    return reply.code(404).send(tcpNotFoundBody(req.method, req.url.split('?')[0] ?? '/', served));
  }

  private newServer(h: Handler): http.Server {
    const s = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, h);
    s.keepAliveTimeout = 5_000;
    return s;
  }

  /** The bound TCP address (useful with port 0), or null when TCP is off or not listening. */
  get tcpAddress(): { host: string; port: number } | null {
    const a = this.tcpServer?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : null;
  }

  /**
   * Binds the unix socket (refusing one held by a live process, replacing a stale one) and then
   * TCP. On failure everything bound so far is closed again before the error is thrown.
   */
  async listen(): Promise<void> {
    await this.app.ready();
    this.lag.start();
    try {
      const what = `http.socket ${this.opts.socketPath}`;
      await prepareUnixSocket(this.opts.socketPath).catch((e) => {
        throw this.listenError(what, e);
      });
      await listenOn(this.unixServer, { path: this.opts.socketPath }).catch((e) => {
        throw this.listenError(what, e);
      });
      this.socketIno = fs.statSync(this.opts.socketPath).ino;
      restrictSocket(this.opts.socketPath);
      this.log.info({ socket: this.opts.socketPath, routes: this.routeTable.map((r) => `${r.method} ${r.url}`) }, 'http listening on unix socket');
      if (this.tcpServer && this.opts.tcp) {
        const { host, port } = this.opts.tcp;
        await listenOn(this.tcpServer, { host, port }).catch((e) => {
          throw this.listenError(`http.tcp ${host}:${port}`, e);
        });
        const routes = this.routeTable.filter((r) => r.tcp).map((r) => `${r.method} ${r.url}`);
        this.log.info({ address: `http://${this.tcpAddress?.host}:${this.tcpAddress?.port}`, ...this.tcpAddress, routes }, 'http listening on tcp');
      }
    } catch (e) {
      await this.close(0);
      throw e;
    }
  }

  private listenError(what: string, e: unknown): VhError {
    if (isVhError(e)) return e;
    const code = errnoFacts(e)?.code ?? 'error';
    const hint = code === 'EADDRINUSE' ? ' (another process holds it; choose another port with --http-tcp-port)'
      : code === 'EACCES' ? ' (permission denied; run as a user that may bind it)'
      : code === 'EADDRNOTAVAIL' ? ' (no such local address)' : '';
    const detail = hint ? `${code}${hint}` : (e as Error).message;
    return new VhError(ErrorCodes.LISTEN_FAILED, `${what}: cannot listen: ${detail}`, { code }, { cause: e });
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `deadlineMs`, then cuts the
   * remaining connections, and removes the socket file if it is still ours. Idempotent.
   */
  close(deadlineMs: number): Promise<void> {
    this.closing ??= this.drainAndClose(deadlineMs);
    return this.closing;
  }

  private async drainAndClose(deadlineMs: number): Promise<void> {
    this.draining = true;
    const listening = [this.unixServer, this.tcpServer].filter((s): s is http.Server => s?.listening === true);
    const closed = Promise.all(listening.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const s of listening) s.closeIdleConnections();
    const cut = (): void => listening.forEach((s) => s.closeAllConnections());
    let timer: NodeJS.Timeout | undefined;
    if (deadlineMs > 0) {
      timer = setTimeout(() => {
        this.log.warn({ deadlineMs }, 'drain deadline passed; closing remaining connections');
        cut();
      }, deadlineMs);
    } else {
      cut();
    }
    await closed;
    clearTimeout(timer);
    this.lag.stop();
    await this.app.close();
    this.removeSocket();
  }

  private removeSocket(): void {
    if (this.socketIno === null) return;
    try {
      // Only our own inode: a successor daemon may already have bound a new socket at this path.
      if (fs.lstatSync(this.opts.socketPath).ino === this.socketIno) fs.unlinkSync(this.opts.socketPath);
    } catch {
      // already gone (libuv unlinks unix sockets on close)
    }
    this.socketIno = null;
  }
}
