/**
 * Claims before a launcher starts (like images.ts for container disks): each
 * persistentVolumeClaim / ephemeral / dataVolume volume names a node-local claim
 * `<claimRoot>/<vmi namespace>/<claimName>/`, holding `disk.img` (filesystem mode: a regular
 * file, raw or qcow2 by its magic) or `disk` (block mode: a block device node). Its realpath must
 * stay inside the claim root (a symlink out is refused). A DataVolume's claim is only used once
 * the DataVolume has Succeeded.
 *
 * A claim that is not there yet keeps the VMI Pending, as KubeVirt's controller does (reason
 * FailedPvcNotFound, condition DataVolumesReady=False/NotAllDVsReady for DataVolumes), and
 * looks again with a backoff (1 s doubling to 30 s; a DataVolume still importing every 2 s so its
 * progress shows).
 */
import { type Backoff, backoffDelay } from '../../util/backoff';
import type { ResolvedClaims } from '../render/disk-plan';
import { lookupClaim } from '../../volumes/claim-lookup';
import type { NormalizedVmi, NormalizedVolume } from '../spec/types';
import type { ReconcileHost } from './reconcile-host';
import type { VmiState } from './vmi-state';

export type { ClaimSource, DataVolumeReadiness } from './claim-source';
export { lookupClaim } from '../../volumes/claim-lookup';

export const CLAIM_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 30_000, stableMs: 0 };
const IMPORT_POLL_MS = 2_000;

type ClaimVolume = Extract<NormalizedVolume, { kind: 'persistentVolumeClaim' | 'dataVolume' }>;

/** The claim a volume names, or null for other volume kinds. */
export function claimNameOf(v: NormalizedVolume): string | null {
  if (v.kind === 'persistentVolumeClaim') return v.claimName;
  if (v.kind === 'dataVolume') return v.dataVolumeName;
  return null;
}

/** The claims (and DataVolumes, which are claims of the same name) a VMI uses. */
export function claimsOf(vmi: NormalizedVmi | null | undefined): string[] {
  return [...new Set((vmi?.disks ?? []).map((d) => claimNameOf(d.volume)).filter((c): c is string => c !== null))];
}

const waits = new WeakMap<VmiState, number>();

/** Pending with `reason`; a changed reason of the same kind (import progress) is noted without a new event. */
function wait(h: ReconcileHost, s: VmiState, reason: string, retryMs: number, sameKind: string): null {
  if (s.status.phase === 'Pending' && s.status.reason.startsWith(sameKind)) {
    if (s.status.reason !== reason) {
      s.note(reason);
      h.publish(s);
    }
  } else if (s.setPhase('Pending', reason)) {
    h.publish(s);
  }
  h.requeue(s.uid, retryMs);
  return null;
}

/**
 * Resolves every claim the VMI's volumes name. Returns null when the VMI must wait (phase,
 * condition and requeue done here); otherwise the claims to plan the disks with.
 */
export function resolveClaims(h: ReconcileHost, s: VmiState): ResolvedClaims | null {
  const vols = (s.vmi?.disks ?? []).map((d) => d.volume).filter((v): v is ClaimVolume => v.kind === 'persistentVolumeClaim' || v.kind === 'dataVolume');
  if (vols.length === 0) return {};
  const src = h.claims;
  if (!src) {
    if (s.setPhase('Pending', 'this node serves no persistent volume claims (no volumes.claimRoot)')) h.publish(s);
    return null;
  }
  const ns = s.rec.namespace;
  const backoff = (): number => {
    const n = waits.get(s) ?? 0;
    waits.set(s, n + 1);
    return backoffDelay(n, CLAIM_BACKOFF);
  };
  const dvs = vols.filter((v): v is Extract<ClaimVolume, { kind: 'dataVolume' }> => v.kind === 'dataVolume');
  for (const v of dvs) {
    const dv = src.dataVolume(ns, v.dataVolumeName);
    let reason: string | null = null;
    let retryMs = IMPORT_POLL_MS;
    if (dv === null) {
      reason = `DataVolume ${ns}/${v.dataVolumeName} not found`;
      retryMs = backoff();
    } else if (dv.phase === 'Failed') {
      reason = `DataVolume ${v.dataVolumeName} failed: ${dv.message || 'import failed'}`;
      retryMs = backoff();
    } else if (dv.phase !== 'Succeeded') {
      reason = `DataVolume ${v.dataVolumeName} is ${dv.phase}${dv.progress !== '' && dv.progress !== 'N/A' ? ` (${dv.progress})` : ''}`;
    }
    if (reason !== null) {
      s.setCondition('DataVolumesReady', 'False', 'NotAllDVsReady', reason);
      return wait(h, s, reason, retryMs, `DataVolume ${dv === null ? `${ns}/` : ''}${v.dataVolumeName} ${dv === null ? 'not' : dv.phase === 'Failed' ? 'failed' : 'is'}`);
    }
  }
  if (dvs.length > 0) s.setCondition('DataVolumesReady', 'True', 'AllDVsReady', 'All of the VMI\'s DVs are bound and ready');
  const out: Record<string, { path: string; format: 'qcow2' | 'raw'; block: boolean }> = {};
  for (const v of vols) {
    const name = v.kind === 'dataVolume' ? v.dataVolumeName : v.claimName;
    const found = lookupClaim(src.root, ns, name);
    if (!found.ok) {
      if (found.missing && s.status.reason !== found.reason) s.addEvent('Normal', 'FailedPvcNotFound', `PVC ${ns}/${name} does not exist, waiting for it to appear`);
      h.log.info({ uid: s.uid, claim: `${ns}/${name}`, reason: found.reason }, 'claim not usable; waiting');
      return wait(h, s, found.reason, backoff(), found.reason);
    }
    out[v.name] = { path: found.path, format: found.format, block: found.block };
  }
  waits.delete(s);
  return out;
}
