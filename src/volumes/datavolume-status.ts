/**
 * CDI's status vocabulary for a DataVolume record: phases, the Bound/Ready/Running conditions
 * with their reasons, events (bounded), and the views the API and the VMI controller get (header
 * values of spec.source.http.extraHeaders redacted: they often carry tokens).
 */
import { redactSecret } from '../vmi/spec/redact';
import type { DataVolumeCondition, DataVolumePhase, DataVolumeRecord, DataVolumeView } from './datavolume-types';

const MAX_EVENTS = 30;

export function setCondition(rec: DataVolumeRecord, type: DataVolumeCondition['type'], status: DataVolumeCondition['status'], reason: string, message: string, now = new Date()): void {
  const list = rec.status.conditions;
  const i = list.findIndex((c) => c.type === type);
  const old = i >= 0 ? list[i] : undefined;
  const next: DataVolumeCondition = { type, status, reason, message, lastTransitionTime: old !== undefined && old.status === status ? old.lastTransitionTime : now.toISOString() };
  if (i >= 0) list[i] = next;
  else list.push(next);
}

export function addEvent(rec: DataVolumeRecord, type: 'Normal' | 'Warning', reason: string, message: string, now = new Date()): void {
  rec.events.push({ type, reason, message, time: now.toISOString() });
  if (rec.events.length > MAX_EVENTS) rec.events.splice(0, rec.events.length - MAX_EVENTS);
}

/** Moves to `phase` with the conditions CDI shows for it. */
export function enterPhase(rec: DataVolumeRecord, phase: DataVolumePhase, message = ''): void {
  rec.status.phase = phase;
  const claim = rec.status.claimName;
  switch (phase) {
    case 'Pending':
    case 'ImportScheduled':
      setCondition(rec, 'Ready', 'False', phase === 'Pending' ? 'Pending' : 'ImportScheduled', message || `Import into ${claim} scheduled`);
      setCondition(rec, 'Running', 'False', phase === 'Pending' ? 'Pending' : 'ImportScheduled', message);
      break;
    case 'UploadReady':
      setCondition(rec, 'Ready', 'False', 'UploadReady', message || `Upload into ${claim} ready`);
      setCondition(rec, 'Running', 'True', 'Pod is running', 'waiting for the upload (vhctl upload dv)');
      break;
    case 'ImportInProgress':
      setCondition(rec, 'Ready', 'False', 'TransferRunning', message || `Import into ${claim} in progress`);
      setCondition(rec, 'Running', 'True', 'Pod is running', message);
      break;
    case 'Succeeded':
      setCondition(rec, 'Ready', 'True', '', '');
      setCondition(rec, 'Running', 'False', 'Completed', message || 'Import Complete');
      break;
    case 'Failed':
      setCondition(rec, 'Ready', 'False', 'Failed', message);
      setCondition(rec, 'Running', 'False', rec.failureReason || 'Error', message);
      break;
  }
}

/** "NN.NN%" of a 0..100 figure (CDI's progress format). */
export function formatProgress(percent: number): string {
  const p = Math.max(0, Math.min(100, Number.isFinite(percent) ? percent : 0));
  return `${p.toFixed(2)}%`;
}

function redactHeaders(manifest: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(manifest);
  const http = ((copy.spec as Record<string, unknown> | undefined)?.source as Record<string, unknown> | undefined)?.http as Record<string, unknown> | undefined;
  if (http && Array.isArray(http.extraHeaders)) {
    http.extraHeaders = http.extraHeaders.map((h: unknown) => {
      if (typeof h !== 'string') return h;
      const i = h.indexOf(':');
      return i < 0 ? redactSecret(h) : `${h.slice(0, i)}: ${redactSecret(h.slice(i + 1).trim())}`;
    });
  }
  return copy;
}

export function viewOf(rec: DataVolumeRecord): DataVolumeView {
  return {
    uid: rec.uid, namespace: rec.namespace, name: rec.name, manifest: redactHeaders(rec.manifest), createdAt: rec.createdAt, deleting: rec.deleting,
    status: structuredClone(rec.status), events: rec.events.map((e) => ({ ...e })),
  };
}

/** The failure message (Running condition) when Failed, else ''. */
export function failureMessage(rec: DataVolumeRecord): string {
  if (rec.status.phase !== 'Failed') return '';
  const c = rec.status.conditions.find((x) => x.type === 'Running');
  return c ? `${c.reason}: ${c.message}` : 'import failed';
}
