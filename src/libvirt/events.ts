/**
 * Domain event (lifecycle, reboot, watchdog, io-error, migration-iteration, job-completed) and
 * connection-close callbacks, decoded into typed events.
 *
 * Callback ownership: koffi trampolines are registered ONCE per process (one per event kind,
 * close, free), never per connection. Each libvirt registration carries a small integer id as its
 * `opaque`; the trampoline looks the id up in `sinks` and drops calls for ids that are gone.
 * Why not koffi.register per connection and koffi.unregister on close: libvirt may still be in
 * the middle of dispatching to a callback when virConnectDomainEventDeregisterAny returns (the
 * event thread is blocked inside koffi waiting for the JS thread), and a trampoline freed at
 * that moment would be called after unregister (a crash). With fixed trampolines the worst case
 * is a call for a dead id, which is ignored. libvirt's own bookkeeping is released through the
 * free callback (vhFreeCb), counted in callbackStats() so tests can prove nothing leaks.
 */
import type { EventBinding } from './event-loop';
import type { TypedParamRecord } from './typed-params';

/** virDomainEventType names, indexed by value. */
export const LIFECYCLE_EVENTS = ['DEFINED', 'UNDEFINED', 'STARTED', 'SUSPENDED', 'RESUMED', 'STOPPED', 'SHUTDOWN', 'PMSUSPENDED', 'CRASHED'] as const;
export type LifecycleEventName = (typeof LIFECYCLE_EVENTS)[number] | `EVENT_${number}`;

// virDomainEvent*DetailType names per event, indexed by value (include/libvirt/libvirt-domain.h).
const DETAILS: readonly (readonly string[])[] = [
  ['added', 'updated', 'renamed', 'from_snapshot'],
  ['removed', 'renamed'],
  ['booted', 'migrated', 'restored', 'from_snapshot', 'wakeup', 'recreated'],
  ['paused', 'migrated', 'ioerror', 'watchdog', 'restored', 'from_snapshot', 'api_error', 'postcopy', 'postcopy_failed'],
  ['unpaused', 'migrated', 'from_snapshot', 'postcopy', 'postcopy_failed'],
  ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot'],
  ['finished', 'guest', 'host'],
  ['memory', 'disk'],
  ['panicked', 'crashloaded'],
];

/** A VIR_DOMAIN_EVENT_ID_LIFECYCLE event. */
export interface LifecycleEvent {
  /** Domain name. */
  domain: string;
  uuid: string;
  event: LifecycleEventName;
  eventCode: number;
  /** e.g. 'booted', 'paused', 'destroyed'; `detail_<n>` for values newer than this table. */
  detail: string;
  detailCode: number;
}

/** What names a domain in every event. */
export interface DomainRef {
  domain: string;
  uuid: string;
}

/** VIR_DOMAIN_EVENT_ID_REBOOT: the guest rebooted (from inside, or virDomainReboot). */
export type RebootEvent = DomainRef;

/** virDomainEventWatchdogAction names, indexed by value. */
export const WATCHDOG_ACTIONS = ['none', 'pause', 'reset', 'poweroff', 'shutdown', 'debug', 'inject-nmi'] as const;

/** VIR_DOMAIN_EVENT_ID_WATCHDOG: the guest's watchdog fired. */
export interface WatchdogEvent extends DomainRef {
  action: string;
  actionCode: number;
}

/** virDomainEventIOErrorAction names, indexed by value. */
export const IO_ERROR_ACTIONS = ['none', 'pause', 'report'] as const;

/** VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON: a disk I/O error (reason e.g. 'enospc'). */
export interface IoErrorEvent extends DomainRef {
  srcPath: string;
  devAlias: string;
  action: string;
  actionCode: number;
  reason: string;
}

/** VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION: a pre-copy pass over guest memory started. */
export interface MigrationIterationEvent extends DomainRef {
  iteration: number;
}

/** VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: a job (e.g. migration) finished; stats as virDomainGetJobStats. */
export interface JobCompletedEvent extends DomainRef {
  /** Typed parameters decoded (VIR_DOMAIN_JOB_* names -> value; 64-bit values as bigint). */
  stats: TypedParamRecord;
}

/** Every domain event a Connection delivers, keyed by the Connection's event name. */
export interface DomainEventMap {
  lifecycle: LifecycleEvent;
  reboot: RebootEvent;
  watchdog: WatchdogEvent;
  'io-error': IoErrorEvent;
  'migration-iteration': MigrationIterationEvent;
  'job-completed': JobCompletedEvent;
}
export type DomainEventName = keyof DomainEventMap;

/** One event of any kind, tagged (what Connection.events() yields). */
export type DomainEvent = { [K in DomainEventName]: { kind: K } & DomainEventMap[K] }[DomainEventName];

/** libvirt's virDomainEventID for each kind the binding registers. */
export const DOMAIN_EVENT_IDS: Readonly<Record<DomainEventName, number>> = {
  lifecycle: 0,
  reboot: 1,
  watchdog: 3,
  'io-error': 6, // VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON: the IO_ERROR event plus the reason
  'migration-iteration': 20,
  'job-completed': 21,
};
export const DOMAIN_EVENT_NAMES = Object.keys(DOMAIN_EVENT_IDS) as DomainEventName[];

/** virConnectCloseReason names, indexed by value. */
export const CLOSE_REASONS = ['error', 'eof', 'keepalive', 'client'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number] | `reason_${number}`;

export function lifecycleEventName(code: number): LifecycleEventName {
  return LIFECYCLE_EVENTS[code] ?? `EVENT_${code}`;
}

export function lifecycleDetailName(event: number, detail: number): string {
  return DETAILS[event]?.[detail] ?? `detail_${detail}`;
}

export function closeReasonName(reason: number): CloseReason {
  return CLOSE_REASONS[reason] ?? `reason_${reason}`;
}

/** Where a registration's callbacks go (a Connection). */
export interface EventSink {
  event(ev: DomainEvent): void;
  closed(reason: CloseReason): void;
}

/** Decodes a job-completed virTypedParameter array (set by the module that owns typed params). */
export type TypedParamsDecoder = (params: unknown, nparams: number) => TypedParamRecord;

/** Native addresses of the process-wide callbacks, one per event kind plus close and free. */
export interface Trampolines {
  domain: Readonly<Record<DomainEventName, unknown>>;
  close: unknown;
  free: unknown;
}

const sinks = new Map<number, EventSink>();
let nextId = 1;
let trampolines: Trampolines | null = null;
const counters = { registered: 0, freed: 0 };
const UUID_BUFLEN = 37;

/** The process-wide trampolines (registered with koffi on first use, never unregistered). */
export function trampolinesFor(b: EventBinding, decodeParams: TypedParamsDecoder): Trampolines {
  if (trampolines) return trampolines;
  const uuidBuf = Buffer.alloc(UUID_BUFLEN);
  // The domain handle is valid only during the callback: read what we need now (local fields,
  // no lock, no I/O) and deliver after the event thread has been released.
  const ref = (dom: unknown): DomainRef => {
    const name = b.fn.virDomainGetName(dom) as string;
    uuidBuf.fill(0);
    b.fn.virDomainGetUUIDString(dom, uuidBuf);
    const end = uuidBuf.indexOf(0);
    return { domain: name, uuid: uuidBuf.toString('latin1', 0, end < 0 ? UUID_BUFLEN : end) };
  };
  const deliver = (opaque: number | bigint, make: () => DomainEvent): void => {
    const sink = sinks.get(Number(opaque));
    if (!sink) return;
    const ev = make();
    queueMicrotask(() => sink.event(ev));
  };
  const lifecycle = (_c: unknown, dom: unknown, event: number, detail: number, opaque: number | bigint): void =>
    deliver(opaque, () => ({
      kind: 'lifecycle',
      ...ref(dom),
      event: lifecycleEventName(event),
      eventCode: event,
      detail: lifecycleDetailName(event, detail),
      detailCode: detail,
    }));
  const reboot = (_c: unknown, dom: unknown, opaque: number | bigint): void => deliver(opaque, () => ({ kind: 'reboot', ...ref(dom) }));
  const watchdog = (_c: unknown, dom: unknown, action: number, opaque: number | bigint): void =>
    deliver(opaque, () => ({ kind: 'watchdog', ...ref(dom), action: WATCHDOG_ACTIONS[action] ?? `action_${action}`, actionCode: action }));
  const ioError = (_c: unknown, dom: unknown, srcPath: string | null, devAlias: string | null, action: number, reason: string | null, opaque: number | bigint): void =>
    deliver(opaque, () => ({
      kind: 'io-error',
      ...ref(dom),
      srcPath: srcPath ?? '',
      devAlias: devAlias ?? '',
      action: IO_ERROR_ACTIONS[action] ?? `action_${action}`,
      actionCode: action,
      reason: reason ?? '',
    }));
  const migrationIteration = (_c: unknown, dom: unknown, iteration: number, opaque: number | bigint): void =>
    deliver(opaque, () => ({ kind: 'migration-iteration', ...ref(dom), iteration }));
  // The params array belongs to libvirt and is valid only during the call: decode it now.
  const jobCompleted = (_c: unknown, dom: unknown, params: unknown, nparams: number, opaque: number | bigint): void =>
    deliver(opaque, () => ({ kind: 'job-completed', ...ref(dom), stats: decodeParams(params, nparams) }));
  const close = (_conn: unknown, reason: number, opaque: number | bigint): void => {
    const sink = sinks.get(Number(opaque));
    if (sink) queueMicrotask(() => sink.closed(closeReasonName(reason)));
  };
  const free = (): void => {
    counters.freed++;
  };
  const reg = (f: (...a: never[]) => void, type: string): unknown => b.koffi.register(f, b.koffi.pointer(type));
  trampolines = {
    domain: {
      lifecycle: reg(lifecycle, 'vhLifecycleCb'),
      reboot: reg(reboot, 'vhRebootCb'),
      watchdog: reg(watchdog, 'vhWatchdogCb'),
      'io-error': reg(ioError, 'vhIoErrorReasonCb'),
      'migration-iteration': reg(migrationIteration, 'vhMigrationIterationCb'),
      'job-completed': reg(jobCompleted, 'vhJobCompletedCb'),
    },
    close: reg(close, 'vhCloseCb'),
    free: reg(free, 'vhFreeCb'),
  };
  return trampolines;
}

/** Reserves an id whose callbacks go to `sink`. */
export function addSink(sink: EventSink): number {
  const id = nextId++;
  sinks.set(id, sink);
  return id;
}

/** Stops delivery to `id` (late calls from libvirt for it are dropped). */
export function removeSink(id: number): void {
  sinks.delete(id);
}

/** Counts a domain-event registration libvirt accepted (its free callback should follow). */
export function noteRegistered(): void {
  counters.registered++;
}

/** Callback bookkeeping: trampolines is constant; live sinks and registered - freed return to 0. */
export function callbackStats(): { trampolines: number; liveSinks: number; registered: number; freed: number } {
  return { trampolines: trampolines ? DOMAIN_EVENT_NAMES.length + 2 : 0, liveSinks: sinks.size, registered: counters.registered, freed: counters.freed };
}
