/**
 * A libvirt connection: `lanes` virConnectPtr handles to the same URI, each running one call at
 * a time (lane.ts explains why that makes per-call error capture exact), all sharing one
 * process-wide CallQueue that keeps koffi under its async-call limit.
 */
import { ErrorCodes, VhError } from '../errors';
import { type Handle, type LibvirtBinding, loadLibvirt } from './ffi';
import { type LibvirtError, libvirtErrorFrom } from './errors';
import { CallQueue } from './queue';
import { type DomainStats, fetchAllDomainStats } from './stats';
import { type KoffiMemory, decodeTypedParams, typedParamsToRecord } from './typed-params';
import { Lane } from './lane';
import { Domain } from './domain';
import { EventEmitter } from 'node:events';
import { ensureEventImpl, eventLoop, loadEventBinding } from './event-loop';
import {
  type CloseReason,
  DOMAIN_EVENT_IDS,
  DOMAIN_EVENT_NAMES,
  type DomainEvent,
  type DomainEventMap,
  type DomainEventName,
  type TypedParamsDecoder,
  addSink,
  noteRegistered,
  removeSink,
  trampolinesFor,
} from './events';

/** Events a Connection emits: every domain event kind by name, `event` for all, and `closed`. */
export type ConnectionEvents = { [K in DomainEventName]: [DomainEventMap[K]] } & {
  /** Every domain event, tagged with its kind (what events() yields). */
  event: [DomainEvent];
  /** libvirt closed one of the connection's handles (daemon gone, keepalive timeout...). */
  closed: [CloseReason];
};

/** Keepalive probes (virConnectSetKeepAlive): the peer is declared dead after about interval * (count + 1) s. */
export interface KeepAlive {
  intervalS: number;
  count: number;
}
export const DEFAULT_KEEPALIVE: KeepAlive = { intervalS: 5, count: 5 };

/** Decodes job-completed stats while libvirt's array is valid (inside the callback). */
function paramsDecoder(koffi: LibvirtBinding['koffi']): TypedParamsDecoder {
  return (p, n) => typedParamsToRecord(decodeTypedParams(koffi as unknown as KoffiMemory, p, n));
}

/** Options for Connection.open. */
export interface OpenOptions {
  /** Connections opened to the URI; the number of calls that can run at once. Default 4. */
  lanes?: number;
  /** The queue bounding koffi async calls; defaults to the process-wide one. */
  queue?: CallQueue;
  /**
   * Deliver events (every DomainEventName, 'event', 'closed'): registers the callbacks and holds
   * the process-wide event loop (event-loop.ts) until close(). Default false.
   */
  events?: boolean;
  /**
   * Keepalive on every handle (needs `events`, which runs the event loop); null disables it.
   * Ignored for drivers without a peer (test:///, qemu:///embed). Default DEFAULT_KEEPALIVE.
   */
  keepAlive?: KeepAlive | null;
}

/** Whether `uri` talks to a daemon (keepalive applies) rather than an in-process driver. */
export function isRemoteUri(uri: string): boolean {
  return !/^test:/.test(uri) && !/^[a-z0-9]+:\/\/\/embed/.test(uri);
}

let sharedQueue: CallQueue | null = null;

/** The process-wide queue (koffi's async limit is per process, so one queue should front it). */
export function defaultQueue(): CallQueue {
  return (sharedQueue ??= new CallQueue());
}

// Calls with no connection (open, close) report errors only through the process-wide handler,
// which copies into one shared buffer (ffi.ts); they run one at a time so that buffer is theirs.
let connlessTail: Promise<unknown> = Promise.resolve();
function connless<T>(job: () => Promise<T>): Promise<T> {
  const p = connlessTail.then(job);
  connlessTail = p.catch(() => undefined);
  return p;
}

function takeGlobalError(lv: LibvirtBinding, api: string): LibvirtError {
  const raw = lv.decodeError(lv.globalErrorBuf);
  lv.fn.virResetError(lv.globalErrorBuf);
  return libvirtErrorFrom(api, raw);
}

async function openHandle(lv: LibvirtBinding, queue: CallQueue, uri: string): Promise<Handle> {
  return connless(async () => {
    lv.fn.virResetError(lv.globalErrorBuf);
    const conn = await queue.call<Handle>(lv.fn.virConnectOpen, uri);
    if (!conn) throw takeGlobalError(lv, 'virConnectOpen');
    // A per-connection handler so this connection's errors never reach the shared buffer; the
    // handler is libvirt's own virResetError, which does nothing when called as (NULL, err).
    lv.fn.virConnSetErrorFunc(conn, null, lv.noopErrorHandler);
    return conn;
  });
}

async function closeHandle(lv: LibvirtBinding, queue: CallQueue, conn: Handle): Promise<void> {
  await connless(async () => {
    lv.fn.virResetError(lv.globalErrorBuf);
    const rc = await queue.call<number>(lv.fn.virConnectClose, conn);
    if (rc < 0) throw takeGlobalError(lv, 'virConnectClose');
  });
}

// Typed on/once/off/emit for Connection (declaration merging with the class below).
export interface Connection {
  on<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  once<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  off<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  emit<K extends keyof ConnectionEvents>(event: K, ...args: ConnectionEvents[K]): boolean;
}

/**
 * An open libvirt connection (all calls async; nothing blocks the JS thread). With
 * `events: true` it is an EventEmitter of ConnectionEvents: one lifecycle registration (on the
 * first lane: every handle sees the same domains, so one registration avoids duplicates) and a
 * close callback on every lane ('closed' is emitted once, for the first handle that closes).
 */
export class Connection extends EventEmitter {
  private closed = false;
  private sinkId = 0;
  private readonly callbackIds = new Map<DomainEventName, number>();
  private closeRegistered: Lane[] = [];
  private closeSeen = false;

  private constructor(
    readonly uri: string,
    private readonly lv: LibvirtBinding,
    readonly queue: CallQueue,
    private readonly lanes: Lane[],
  ) {
    super();
  }

  /** Opens `uri` (e.g. test:///default, qemu:///system); throws LIBVIRT_UNAVAILABLE or LibvirtError. */
  static async open(uri: string, opts: OpenOptions = {}): Promise<Connection> {
    const lv = loadLibvirt();
    const queue = opts.queue ?? defaultQueue();
    const n = opts.lanes ?? 4;
    if (!Number.isInteger(n) || n < 1 || n > queue.concurrency) {
      throw new RangeError(`lanes must be an integer in 1..${queue.concurrency}, got ${n}`);
    }
    // Before the first virConnectOpen, or connections opened earlier never deliver events.
    ensureEventImpl();
    const lanes: Lane[] = [];
    try {
      for (let i = 0; i < n; i++) lanes.push(new Lane(lv, queue, await openHandle(lv, queue, uri)));
    } catch (e) {
      for (const lane of lanes) await closeHandle(lv, queue, lane.conn).catch(() => undefined);
      throw e;
    }
    const conn = new Connection(uri, lv, queue, lanes);
    if (opts.events) {
      try {
        await conn.registerEvents();
        const ka = opts.keepAlive === undefined ? DEFAULT_KEEPALIVE : opts.keepAlive;
        if (ka && isRemoteUri(uri)) await conn.setKeepAlive(ka);
      } catch (e) {
        await conn.close().catch(() => undefined);
        throw e;
      }
    }
    return conn;
  }

  /** Whether this connection delivers events. */
  get eventsEnabled(): boolean {
    return this.sinkId !== 0;
  }

  private async registerEvents(): Promise<void> {
    const b = loadEventBinding();
    const t = trampolinesFor(b, paramsDecoder(this.lv.koffi));
    this.sinkId = addSink({
      event: (ev) => {
        this.emit(ev.kind, ev as never);
        this.emit('event', ev);
      },
      closed: (reason) => {
        if (this.closeSeen) return;
        this.closeSeen = true;
        this.emit('closed', reason);
      },
    });
    eventLoop().acquire();
    // One registration per kind on the first lane: every handle sees the same domains, so one
    // registration avoids duplicates.
    const first = this.lanes[0] as Lane;
    for (const kind of DOMAIN_EVENT_NAMES) {
      const id = await first.run<number>(
        'virConnectDomainEventRegisterAny',
        b.fn.virConnectDomainEventRegisterAny,
        [first.conn, null, DOMAIN_EVENT_IDS[kind], t.domain[kind], this.sinkId, t.free],
        (r) => r < 0,
        `${kind} events`,
      );
      this.callbackIds.set(kind, id);
      noteRegistered();
    }
    for (const lane of this.lanes) {
      await lane.run<number>('virConnectRegisterCloseCallback', b.fn.virConnectRegisterCloseCallback, [lane.conn, t.close, this.sinkId, null], (r) => r < 0);
      this.closeRegistered.push(lane);
    }
  }

  /** Starts keepalive probes on every handle (libvirt then closes a handle whose peer died). */
  private async setKeepAlive(ka: KeepAlive): Promise<void> {
    const b = loadEventBinding();
    for (const lane of this.lanes) {
      await lane.run<number>('virConnectSetKeepAlive', b.fn.virConnectSetKeepAlive, [lane.conn, ka.intervalS, ka.count], (r) => r < 0);
    }
  }

  /**
   * Every domain event as an async iterator (for await ... of conn.events()); ends when the
   * connection closes or `signal` aborts. Events are buffered while the consumer is busy.
   */
  async *events(signal?: AbortSignal): AsyncGenerator<DomainEvent> {
    if (!this.eventsEnabled) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'events(): open the connection with {events: true}');
    const buffer: DomainEvent[] = [];
    let wake: (() => void) | null = null;
    let done = false;
    const onEvent = (ev: DomainEvent): void => {
      buffer.push(ev);
      wake?.();
    };
    const finish = (): void => {
      done = true;
      wake?.();
    };
    this.on('event', onEvent);
    this.once('closed', finish);
    signal?.addEventListener('abort', finish, { once: true });
    try {
      for (;;) {
        while (buffer.length > 0) yield buffer.shift() as DomainEvent;
        if (done || this.closed) return;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    } finally {
      this.off('event', onEvent);
      this.off('closed', finish);
      signal?.removeEventListener('abort', finish);
    }
  }

  /** Whether every handle is still alive (virConnectIsAlive; local, no round trip). */
  isAlive(): boolean {
    if (this.closed || this.closeSeen) return false;
    const b = loadEventBinding();
    return this.lanes.every((l) => (b.fn.virConnectIsAlive(l.conn) as number) === 1);
  }

  /** Deregisters everything registerEvents() did (each step on its own lane, errors collected). */
  private async unregisterEvents(errors: unknown[]): Promise<void> {
    if (this.sinkId === 0) return;
    const b = loadEventBinding();
    const t = trampolinesFor(b, paramsDecoder(this.lv.koffi));
    const first = this.lanes[0] as Lane;
    for (const [kind, id] of this.callbackIds) {
      await first
        .run<number>('virConnectDomainEventDeregisterAny', b.fn.virConnectDomainEventDeregisterAny, [first.conn, id], (r) => r < 0, `${kind} events`)
        .catch((e) => errors.push(e));
    }
    this.callbackIds.clear();
    for (const lane of this.closeRegistered) {
      await lane
        .run<number>('virConnectUnregisterCloseCallback', b.fn.virConnectUnregisterCloseCallback, [lane.conn, t.close], (r) => r < 0)
        .catch((e) => errors.push(e));
    }
    this.closeRegistered = [];
  }

  /** Number of connection handles (the most calls that run at once on this connection). */
  get laneCount(): number {
    return this.lanes.length;
  }

  /** Waits for calls already queued, then closes every handle. Domains should be freed first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.lanes.map((l) => l.drain()));
    const errors: unknown[] = [];
    await this.unregisterEvents(errors);
    for (const lane of this.lanes) await closeHandle(this.lv, this.queue, lane.conn).catch((e) => errors.push(e));
    if (this.sinkId !== 0) {
      removeSink(this.sinkId);
      await eventLoop().release();
    }
    if (errors.length > 0) throw errors[0];
  }

  /** Every domain, defined and running (virConnectListAllDomains flags, default all). */
  async listAllDomains(flags = 0): Promise<Domain[]> {
    const lane = this.pick();
    const out: Handle[] = [null];
    const n = await lane.run<number>('virConnectListAllDomains', this.lv.fn.virConnectListAllDomains, [lane.conn, out, flags], (r) => r < 0);
    const array = out[0];
    const ptrs = this.lv.decodeDomainPtrArray(array, n);
    // The array is libvirt's malloc; the handles in it are ours to free (Domain.free).
    if (array) this.lv.freeArray(array);
    return ptrs.map((p) => new Domain(lane, p));
  }

  /** The host capabilities XML (virConnectGetCapabilities); parse with capabilities.ts. */
  async getCapabilities(): Promise<string> {
    const lane = this.pick();
    return lane.run<string>('virConnectGetCapabilities', this.lv.fn.virConnectGetCapabilities, [lane.conn], (x) => x === null);
  }

  /** The domain capabilities XML for one (emulator, arch, machine, virttype); null lets libvirt choose. */
  async getDomainCapabilities(opts: { emulatorbin?: string | null; arch?: string | null; machine?: string | null; virttype?: string | null } = {}): Promise<string> {
    const lane = this.pick();
    const args = [lane.conn, opts.emulatorbin ?? null, opts.arch ?? null, opts.machine ?? null, opts.virttype ?? null, 0];
    const subject = `domain capabilities ${[opts.virttype, opts.arch, opts.machine].filter(Boolean).join('/')}`;
    return lane.run<string>('virConnectGetDomainCapabilities', this.lv.fn.virConnectGetDomainCapabilities, args, (x) => x === null, subject);
  }

  /** The domain called `name`; LibvirtError VIR_ERR_NO_DOMAIN when there is none. */
  lookupByName(name: string): Promise<Domain> {
    return this.domainCall('virDomainLookupByName', this.lv.fn.virDomainLookupByName, name, `domain '${name}'`);
  }

  /** The domain with this UUID (string form); LibvirtError VIR_ERR_NO_DOMAIN when there is none. */
  lookupByUUID(uuid: string): Promise<Domain> {
    return this.domainCall('virDomainLookupByUUIDString', this.lv.fn.virDomainLookupByUUIDString, uuid, `domain uuid '${uuid}'`);
  }

  /** Defines (or redefines) a persistent domain from XML; returns it (not started). */
  defineXML(xml: string): Promise<Domain> {
    return this.domainCall('virDomainDefineXML', this.lv.fn.virDomainDefineXML, xml);
  }

  /**
   * Starts a transient domain from XML (virDomainCreateXML; flags are virDomainCreateFlags,
   * e.g. 1 = START_PAUSED). It has no persistent definition: it disappears once destroyed.
   */
  async createXML(xml: string, flags = 0): Promise<Domain> {
    const lane = this.pick();
    const ptr = await lane.run<Handle>('virDomainCreateXML', this.lv.fn.virDomainCreateXML, [lane.conn, xml, flags], (p) => !p);
    return new Domain(lane, ptr);
  }

  /**
   * Statistics for every domain matching `flags` (virConnectGetAllDomainStats), decoded by
   * stats.ts. `stats` names VIR_DOMAIN_STATS_* groups ('state', 'cpu-total', 'balloon', 'vcpu',
   * 'interface', 'block', 'dirtyrate', ...); empty means all the driver supports. `flags` is a
   * bitmask or names ('active', 'running', 'enforceStats', ...). Unknown names: RangeError.
   */
  async getAllDomainStats(stats: readonly string[] = [], flags: number | readonly string[] = 0): Promise<DomainStats[]> {
    return fetchAllDomainStats(this.pick(), stats, flags);
  }

  private async domainCall(api: string, fn: LibvirtBinding['fn'][keyof LibvirtBinding['fn']], arg: string, subject?: string): Promise<Domain> {
    const lane = this.pick();
    const ptr = await lane.run<Handle>(api, fn, [lane.conn, arg], (p) => !p, subject);
    return new Domain(lane, ptr);
  }

  /** The least busy lane. */
  private pick(): Lane {
    if (this.closed) throw new VhError(ErrorCodes.NOT_READY, `libvirt connection to ${this.uri} is closed`);
    let best = this.lanes[0] as Lane;
    for (const l of this.lanes) if (l.pending < best.pending) best = l;
    return best;
  }
}
