/**
 * libvirt's default event loop, driven from Node, plus the native entry points that events
 * need (kept out of ffi.ts so the call binding stays independent of the event machinery).
 *
 * Pattern (../shared/recipes/libvirt.md, point 5):
 * - virEventRegisterDefaultImpl() once, before the first virConnectOpen (Connection.open calls
 *   ensureEventImpl()); a connection opened before it would never deliver events.
 * - virEventRunDefaultImpl.async(cb) runs one poll iteration on a libuv pool thread; its
 *   completion re-arms it. It takes that pool thread (and one koffi async slot, outside the
 *   CallQueue, which leaves room for it) for as long as the loop runs.
 * - A periodic timeout (virEventAddTimeout) bounds how long one iteration can block, and stop()
 *   sets it to fire at once (virEventUpdateTimeout(timer, 0) wakes poll), so stop() resolves as
 *   soon as the iteration in progress returns. The timer callback is libc's abs(): a native
 *   function that ignores (int timer, void *opaque), so a tick never hops to the JS thread.
 * - While running, the pending koffi async call keeps Node's event loop alive (like a listening
 *   socket); after stop() nothing of ours does, so the process exits normally.
 *
 * Errors on the event thread and the per-call error capture (lane.ts / connection.ts):
 * - Connection APIs (registering/deregistering callbacks) run on a Lane like any other call, so
 *   their errors land in that connection's error slot while no other call on the handle runs.
 * - The lifecycle/close callbacks run on the JS thread (koffi queues them there and blocks the
 *   event thread until they return). They only read fields of the domain handle libvirt passes
 *   (virDomainGetName/virDomainGetUUIDString), which take no lock and raise no connection error.
 * - virEventRunDefaultImpl itself has no connection: when it fails (poll() failing: practically
 *   never) libvirt dispatches the error to the process-wide handler, which copies it into the
 *   shared buffer that serialised open/close use (ffi.ts). That copy races with an open/close in
 *   flight and could attribute the loop's error to it, so the loop never reads that buffer: it
 *   counts the failure, reports it without detail (onError) and retries after a back-off. This
 *   is the one known hole in the capture design; fixing it needs a native error shim.
 */
import { type ForeignFn, loadLibvirt } from './ffi';

/** Native entry points for events; pointers are plain `void *` (BigInt in koffi callbacks). */
export interface EventBinding {
  koffi: typeof import('koffi');
  fn: {
    virEventRegisterDefaultImpl: ForeignFn;
    virEventRunDefaultImpl: ForeignFn;
    virEventAddTimeout: ForeignFn;
    virEventUpdateTimeout: ForeignFn;
    virEventRemoveTimeout: ForeignFn;
    virConnectDomainEventRegisterAny: ForeignFn;
    virConnectDomainEventDeregisterAny: ForeignFn;
    virConnectRegisterCloseCallback: ForeignFn;
    virConnectUnregisterCloseCallback: ForeignFn;
    virConnectSetKeepAlive: ForeignFn;
    virConnectIsAlive: ForeignFn;
    virDomainGetName: ForeignFn;
    virDomainGetUUIDString: ForeignFn;
  };
  /** libc abs(): a native do-nothing virEventTimeoutCallback. */
  noopTimer: unknown;
}

let binding: EventBinding | null = null;

/** The event binding, loaded once (throws LIBVIRT_UNAVAILABLE like loadLibvirt). */
export function loadEventBinding(): EventBinding {
  if (binding) return binding;
  // Throws the operator-readable reason if libvirt is missing; also declares virConnect/virDomain.
  const { koffi, lib } = loadLibvirt();
  const f = (decl: string): ForeignFn => lib.func(decl) as unknown as ForeignFn;
  // One callback prototype per event kind (libvirt-domain.h's virConnectDomainEvent*Callback);
  // `opaque` carries our sink id. Registered once per process by events.ts.
  koffi.proto('void vhLifecycleCb(void *conn, void *dom, int event, int detail, intptr_t opaque)');
  koffi.proto('void vhRebootCb(void *conn, void *dom, intptr_t opaque)');
  koffi.proto('void vhWatchdogCb(void *conn, void *dom, int action, intptr_t opaque)');
  koffi.proto('void vhIoErrorReasonCb(void *conn, void *dom, const char *srcPath, const char *devAlias, int action, const char *reason, intptr_t opaque)');
  koffi.proto('void vhMigrationIterationCb(void *conn, void *dom, int iteration, intptr_t opaque)');
  koffi.proto('void vhJobCompletedCb(void *conn, void *dom, void *params, int nparams, intptr_t opaque)');
  koffi.proto('void vhCloseCb(void *conn, int reason, intptr_t opaque)');
  koffi.proto('void vhFreeCb(intptr_t opaque)');
  const libc = koffi.load(null);
  binding = {
    koffi,
    fn: {
      virEventRegisterDefaultImpl: f('int virEventRegisterDefaultImpl(void)'),
      virEventRunDefaultImpl: f('int virEventRunDefaultImpl(void)'),
      virEventAddTimeout: f('int virEventAddTimeout(int timeout, void *cb, void *opaque, void *ff)'),
      virEventUpdateTimeout: f('void virEventUpdateTimeout(int timer, int timeout)'),
      virEventRemoveTimeout: f('int virEventRemoveTimeout(int timer)'),
      // cb is `void *`: the callback's real type depends on eventID (VIR_DOMAIN_EVENT_CALLBACK).
      virConnectDomainEventRegisterAny: f('int virConnectDomainEventRegisterAny(virConnect *conn, void *dom, int eventID, void *cb, intptr_t opaque, void *freecb)'),
      virConnectDomainEventDeregisterAny: f('int virConnectDomainEventDeregisterAny(virConnect *conn, int callbackID)'),
      virConnectRegisterCloseCallback: f('int virConnectRegisterCloseCallback(virConnect *conn, void *cb, intptr_t opaque, void *freecb)'),
      virConnectUnregisterCloseCallback: f('int virConnectUnregisterCloseCallback(virConnect *conn, void *cb)'),
      // Keepalive needs a running event loop; with it, a dead peer closes the connection.
      virConnectSetKeepAlive: f('int virConnectSetKeepAlive(virConnect *conn, int interval, unsigned int count)'),
      virConnectIsAlive: f('int virConnectIsAlive(virConnect *conn)'),
      virDomainGetName: f('const char *virDomainGetName(void *dom)'),
      virDomainGetUUIDString: f('int virDomainGetUUIDString(void *dom, _Out_ uint8_t *buf)'),
    },
    noopTimer: libc.symbol('abs'),
  };
  return binding;
}

let implRegistered = false;

/**
 * Registers libvirt's default event implementation (idempotent, synchronous: it only creates
 * the loop's wake-up pipe). Must run before the first virConnectOpen; Connection.open calls it.
 */
export function ensureEventImpl(): void {
  if (implRegistered) return;
  const b = loadEventBinding();
  const rc = b.fn.virEventRegisterDefaultImpl() as number;
  if (rc < 0) throw new Error('virEventRegisterDefaultImpl failed');
  implRegistered = true;
}

/** How often an idle loop wakes up (an upper bound on stop() latency if the wake-up is lost). */
export const TICK_MS = 500;
const FAILURE_BACKOFF_MS = 100;

/** Loop counters for tests and metrics. */
export interface EventLoopStats {
  running: boolean;
  iterations: number;
  failures: number;
  /** Connections (or other holders) that asked for the loop. */
  holders: number;
}

/** The process-wide loop driving libvirt's default event implementation. */
export class EventLoop {
  /** Called when an iteration fails (see the header: no libvirt detail is available). */
  onError: (err: Error) => void = () => undefined;
  private running = false;
  private stopping = false;
  private explicit = false;
  private holders = 0;
  private timer = -1;
  private iterations = 0;
  private failures = 0;
  /** Resolved when the loop exits or a new holder cancels the stop (see stop()). */
  private stopWaiters: Array<() => void> = [];

  /** Starts the loop (idempotent) and keeps it running until stop(). */
  start(): void {
    this.explicit = true;
    this.ensureRunning();
  }

  /**
   * Stops the loop whoever holds it; resolves once the last iteration has returned (within
   * one poll wake-up, normally well under a millisecond). Events queued meanwhile are delivered
   * when the loop starts again. If a new holder (acquire/start) arrives before the iteration
   * returns, the stop is cancelled and this resolves with the loop still running.
   */
  stop(): Promise<void> {
    this.explicit = false;
    return this.requestStop();
  }

  /** Counts one holder (an events-enabled Connection) and starts the loop if needed. */
  acquire(): void {
    this.holders++;
    this.ensureRunning();
  }

  /** Drops a holder; the loop stops when no holder is left and nobody called start(). */
  release(): Promise<void> {
    if (this.holders > 0) this.holders--;
    return this.holders === 0 && !this.explicit ? this.requestStop() : Promise.resolve();
  }

  get isRunning(): boolean {
    return this.running;
  }

  stats(): EventLoopStats {
    return { running: this.running, iterations: this.iterations, failures: this.failures, holders: this.holders };
  }

  private ensureRunning(): void {
    if (this.running) {
      // A stop in progress is cancelled: the iteration in flight simply re-arms.
      if (this.stopping) {
        this.stopping = false;
        loadEventBinding().fn.virEventUpdateTimeout(this.timer, TICK_MS);
        this.wakeStopWaiters();
      }
      return;
    }
    ensureEventImpl();
    const b = loadEventBinding();
    const timer = b.fn.virEventAddTimeout(TICK_MS, b.noopTimer, null, null) as number;
    if (timer < 0) throw new Error('virEventAddTimeout failed');
    this.timer = timer;
    this.running = true;
    this.stopping = false;
    this.iterate();
  }

  private requestStop(): Promise<void> {
    if (!this.running) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.stopWaiters.push(resolve));
    if (!this.stopping) {
      this.stopping = true;
      // Fire the tick now: wakes poll() so the iteration in flight returns promptly.
      loadEventBinding().fn.virEventUpdateTimeout(this.timer, 0);
    }
    return done;
  }

  private wakeStopWaiters(): void {
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) w();
  }

  private iterate(): void {
    const b = loadEventBinding();
    b.fn.virEventRunDefaultImpl.async((err: unknown, rc: number) => {
      this.iterations++;
      if (this.stopping) return this.finish();
      if (err || rc < 0) {
        this.failures++;
        try {
          this.onError(err instanceof Error ? err : new Error('virEventRunDefaultImpl failed'));
        } catch {
          /* a reporting hook must not kill the loop */
        }
        setTimeout(() => (this.stopping ? this.finish() : this.iterate()), FAILURE_BACKOFF_MS);
        return;
      }
      this.iterate();
    });
  }

  private finish(): void {
    const b = loadEventBinding();
    b.fn.virEventRemoveTimeout(this.timer);
    this.timer = -1;
    this.running = false;
    this.stopping = false;
    this.wakeStopWaiters();
  }
}

let loop: EventLoop | null = null;

/** The process-wide event loop (one per process: libvirt's default impl is process-global). */
export function eventLoop(): EventLoop {
  return (loop ??= new EventLoop());
}
