/**
 * Domain lifecycle and connection-close callbacks, decoded into typed events.
 *
 * Callback ownership: koffi trampolines are registered ONCE per process (lifecycle, close,
 * free), never per connection. Each libvirt registration carries a small integer id as its
 * `opaque`; the trampoline looks the id up in `sinks` and drops calls for ids that are gone.
 * Why not koffi.register per connection and koffi.unregister on close: libvirt may still be in
 * the middle of dispatching to a callback when virConnectDomainEventDeregisterAny returns (the
 * event thread is blocked inside koffi waiting for the JS thread), and a trampoline freed at
 * that moment would be called after unregister (a crash). With fixed trampolines the worst case
 * is a call for a dead id, which is ignored. libvirt's own bookkeeping is released through the
 * free callback (vhFreeCb), counted in callbackStats() so tests can prove nothing leaks.
 */
import type { EventBinding } from './event-loop';

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
  lifecycle(ev: LifecycleEvent): void;
  closed(reason: CloseReason): void;
}

interface Trampolines {
  lifecycle: bigint;
  close: bigint;
  free: bigint;
}

const sinks = new Map<number, EventSink>();
let nextId = 1;
let trampolines: Trampolines | null = null;
const counters = { registered: 0, freed: 0 };
const UUID_BUFLEN = 37;

/** The process-wide trampolines (registered with koffi on first use, never unregistered). */
export function trampolinesFor(b: EventBinding): Trampolines {
  if (trampolines) return trampolines;
  const uuidBuf = Buffer.alloc(UUID_BUFLEN);
  const lifecycle = (_conn: unknown, dom: unknown, event: number, detail: number, opaque: number | bigint): void => {
    const sink = sinks.get(Number(opaque));
    if (!sink) return;
    // The domain handle is valid only during this call: read what we need now (local fields,
    // no lock, no I/O), emit after the event thread has been released.
    const name = b.fn.virDomainGetName(dom) as string;
    uuidBuf.fill(0);
    b.fn.virDomainGetUUIDString(dom, uuidBuf);
    const end = uuidBuf.indexOf(0);
    const ev: LifecycleEvent = {
      domain: name,
      uuid: uuidBuf.toString('latin1', 0, end < 0 ? UUID_BUFLEN : end),
      event: lifecycleEventName(event),
      eventCode: event,
      detail: lifecycleDetailName(event, detail),
      detailCode: detail,
    };
    queueMicrotask(() => sink.lifecycle(ev));
  };
  const close = (_conn: unknown, reason: number, opaque: number | bigint): void => {
    const sink = sinks.get(Number(opaque));
    if (sink) queueMicrotask(() => sink.closed(closeReasonName(reason)));
  };
  const free = (): void => {
    counters.freed++;
  };
  trampolines = {
    lifecycle: b.koffi.register(lifecycle, b.types.lifecycle),
    close: b.koffi.register(close, b.types.close),
    free: b.koffi.register(free, b.types.free),
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

/** Counts a lifecycle registration libvirt accepted (its free callback should follow). */
export function noteRegistered(): void {
  counters.registered++;
}

/** Callback bookkeeping: trampolines is constant; live sinks and registered - freed return to 0. */
export function callbackStats(): { trampolines: number; liveSinks: number; registered: number; freed: number } {
  return { trampolines: trampolines ? 3 : 0, liveSinks: sinks.size, registered: counters.registered, freed: counters.freed };
}
