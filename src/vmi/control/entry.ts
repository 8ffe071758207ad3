/**
 * The in-memory state of one VMI (its durable record plus what the handler observed since), and
 * the pure helpers that derive its status. Shared by manager.ts (API, launcher registry, watch)
 * and lifecycle.ts (the reconcile steps).
 */
import type { ChildProcess } from 'node:child_process';
import type { LauncherLink, DomainStatusMsg } from '../../grpc/launcher-service';
import type { VmiRecord } from './store';
import type { NormalizedVmi, VmiCondition, VmiEvent, VmiPhase, VmiStatus, VmiView } from '../spec/types';

/** Events kept per VMI (distinct ones: repeats are folded into their entry). */
export const MAX_EVENTS = 100;

export interface Entry {
  rec: VmiRecord;
  /** The validated spec; null when the stored manifest no longer validates (reason says why). */
  vmi: NormalizedVmi | null;
  status: VmiStatus;
  events: VmiEvent[];
  domainXml: string | null;
  link: LauncherLink | null;
  /** Set when this handler process spawned the launcher (exit code known). */
  child: ChildProcess | null;
  childExit: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** The launcher's last DomainStatus. */
  domain: DomainStatusMsg | null;
  /** StartDomain was acknowledged by the current launcher. */
  started: boolean;
  /** When the current launcher was spawned or re-adopted (ms since epoch), for connect timeouts. */
  launcherSince: number;
  /** What the handler itself asked for, so a stop it caused is not mistaken for a guest stop. */
  intent: 'none' | 'shutdown' | 'teardown';
  /** When the intent began (grace deadline). */
  intentSince: number;
  /** Host CPUs pinned to this VMI (dedicatedCpuPlacement). */
  pinnedCpus: number[];
  /** An attached console stream (one at a time). */
  consoleAttached: boolean;
}

/** A fresh status. */
export function initialStatus(nodeName: string, phase: VmiPhase = 'Pending', reason = ''): VmiStatus {
  return { phase, reason, conditions: [], nodeName, launcherPid: null, interfaces: [], domainState: '' };
}

/** Sets or replaces a condition, keeping lastTransitionTime when the status did not change. */
export function setCondition(status: VmiStatus, type: string, value: VmiCondition['status'], reason = '', message = ''): void {
  const now = new Date().toISOString();
  const i = status.conditions.findIndex((c) => c.type === type);
  const prev = i >= 0 ? status.conditions[i] : undefined;
  const next: VmiCondition = { type, status: value, reason, message, lastTransitionTime: prev && prev.status === value ? prev.lastTransitionTime : now };
  if (i >= 0) status.conditions[i] = next;
  else status.conditions.push(next);
}

/**
 * Records an event in the bounded history (oldest first, by last occurrence). An identical
 * event already kept is moved to the end with its count raised (Kubernetes' event
 * de-duplication), so a launcher flapping in a loop cannot push every other event out.
 */
export function addEvent(e: Entry, type: VmiEvent['type'], reason: string, message: string, now: Date = new Date()): void {
  const time = now.toISOString();
  const i = e.events.findIndex((x) => x.type === type && x.reason === reason && x.message === message);
  if (i >= 0) {
    const [prev] = e.events.splice(i, 1) as [VmiEvent];
    e.events.push({ ...prev, time, count: (prev.count ?? 1) + 1, lastTimestamp: time });
    return;
  }
  e.events.push({ time, type, reason, message, count: 1, firstTimestamp: time, lastTimestamp: time });
  if (e.events.length > MAX_EVENTS) e.events.splice(0, e.events.length - MAX_EVENTS);
}

/** The read-model view (a copy: callers may serialise it later). */
export function viewOf(e: Entry): VmiView {
  return {
    uid: e.rec.uid,
    namespace: e.rec.namespace,
    name: e.rec.name,
    generation: e.rec.generation,
    manifest: e.rec.manifest,
    status: { ...e.status, conditions: e.status.conditions.map((c) => ({ ...c })), interfaces: e.status.interfaces.map((i) => ({ ...i })) },
    revision: e.rec.revision,
    deleting: e.rec.deleting,
    events: e.events.map((x) => ({ ...x })),
    domainXml: e.domainXml,
  };
}
