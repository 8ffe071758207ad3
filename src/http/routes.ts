/**
 * The status API's routes. Handlers only read state; failures are thrown as VhError and turned
 * into `{code, message}` by errors.ts.
 *
 * Where a route is served: every route is on the unix socket (0660: root and its group). Only a
 * route registered with ON_TCP is also on the loopback TCP port, which every local user can
 * reach; server.ts answers 404 there to everything else. So a new route is private unless it
 * says otherwise.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import { ErrorCodes, VhError } from '../errors';
import type { NodeInfo } from '../node/types';
import type { Readiness } from '../util/readiness';
import type { VmiReadModel } from '../vmi/spec/types';
import type { Metrics } from './metrics';
import { registerVmiRoutes } from './vmi-routes';
import { type DataVolumeReadModel, registerDataVolumeRoutes } from './datavolume-routes';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Served on the loopback TCP listener too (see ON_TCP). Unset: the unix socket only. */
    tcp?: boolean;
  }
}

/**
 * Route option for what probes (kubelet: /healthz, /readyz) and Prometheus (/metrics) need on
 * TCP, and no more: those answers carry no VMI spec, event or node detail.
 */
export const ON_TCP = { config: { tcp: true } } as const;

/**
 * Event-loop delay over a sliding window: the max of the previous and the current window, so a
 * single long stall stays visible to the next /healthz poll instead of being averaged away.
 */
export class LagMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private previousMaxNs = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly windowMs = 5000) {}

  /** Starts sampling (idempotent). */
  start(): void {
    if (this.timer) return;
    this.histogram.enable();
    this.timer = setInterval(() => {
      this.previousMaxNs = this.histogram.max;
      this.histogram.reset();
    }, this.windowMs);
    this.timer.unref(); // must never keep the process alive on its own
  }

  /** Worst event-loop delay seen in the last one to two windows, in ms (0.1 ms precision). */
  get lagMs(): number {
    const ns = Math.max(this.previousMaxNs, this.histogram.max);
    return Math.round(ns / 1e5) / 10;
  }

  /** Stops sampling and releases the histogram's timer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram.disable();
  }
}

/** What the routes read. */
export interface RouteDeps {
  readiness: Readiness;
  nodeInfo: () => NodeInfo | null;
  metrics: Metrics;
  components: () => Record<string, unknown>;
  lag: { readonly lagMs: number };
  /** /healthz answers 503 when the event-loop lag exceeds this. */
  maxEventLoopLagMs: number;
  /** The VMIs (GET /v1/vmis...); absent when VMI support is off, and those routes answer 503. */
  vmis?: VmiReadModel;
  /** The DataVolumes (GET /v1/datavolumes...); absent: those routes are not registered. */
  dataVolumes?: DataVolumeReadModel;
}

/** Registers GET /healthz, /readyz, /metrics (also on TCP), /v1/node and the /v1/vmis routes (unix socket only). */
export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  // Liveness: is this process still able to serve? Deliberately independent of readiness and of
  // outside systems (KubeVirt's /healthz checked the API server and restarted healthy handlers).
  app.get('/healthz', ON_TCP, async (_req, reply) => {
    const eventLoopLagMs = deps.lag.lagMs;
    const uptimeS = Math.round(process.uptime() * 10) / 10;
    if (eventLoopLagMs > deps.maxEventLoopLagMs) {
      return reply.code(503).send({ status: 'unhealthy', eventLoopLagMs, uptimeS, message: `event loop lag ${eventLoopLagMs} ms exceeds ${deps.maxEventLoopLagMs} ms` });
    }
    return { status: 'ok', eventLoopLagMs, uptimeS };
  });

  app.get('/readyz', ON_TCP, async (_req, reply) => {
    const ready = deps.readiness.ready;
    return reply.code(ready ? 200 : 503).send({ ready, reasons: deps.readiness.reasons, components: deps.components() });
  });

  app.get('/metrics', ON_TCP, async (_req, reply) => {
    const text = await deps.metrics.render();
    return reply.type(deps.metrics.contentType).send(text);
  });

  app.get('/v1/node', async () => {
    const info = deps.nodeInfo();
    if (!info) throw new VhError(ErrorCodes.NOT_READY, 'node probe still running; retry shortly');
    return info;
  });

  registerVmiRoutes(app, deps.vmis);
  if (deps.dataVolumes) registerDataVolumeRoutes(app, deps.dataVolumes);
}
