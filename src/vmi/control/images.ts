/**
 * Container disk images before a launcher starts: each containerDiskImage volume's image is
 * found in (or pulled into) the node's image store, with kubelet's events (Pulling, Pulled) and
 * kubelet's waiting reasons on failure (ImagePullBackOff, ErrImageNeverPull) and a jittered
 * backoff. The store's base files become the overlays' backing files (render/disk-plan.ts), and
 * the digests go into the VMI's record so image GC never removes an image a VMI uses.
 */
import * as fs from 'node:fs';
import { errorMessage } from '../../errors';
import { isImageError } from '../../images/errors';
import type { EnsureOptions, EnsuredImage, StoredImage } from '../../images/types';
import { type Backoff, backoffDelay } from '../../util/backoff';
import type { ResolvedImages } from '../render/disk-plan';
import type { ReconcileHost } from './reconcile-host';
import type { VmiState } from './vmi-state';

/** What the controller needs of the image store (src/images ImageStore is one). */
export interface ImagePuller {
  ensure(ref: string, o: EnsureOptions): Promise<EnsuredImage>;
  /** Removes images in no `inUse` digest and unused for `minIdleMs`; returns what it removed. */
  gc(inUse: ReadonlySet<string>, o: { minIdleMs?: number }): StoredImage[];
}

/** kubelet's image pull backoff: 10 s doubling to 5 min. */
export const IMAGE_PULL_BACKOFF: Backoff = { initialMs: 10_000, maxMs: 300_000, stableMs: 0 };

/** The store's files for the VMI's image volumes, and the digests they come from. */
export interface ImageResolution {
  resolved: ResolvedImages;
  digests: string[];
}

/**
 * Ensures every image the VMI's volumes name. Returns null when the VMI must wait (the phase,
 * events and requeue are done here); otherwise the bases to plan the disks with.
 */
export async function resolveImages(h: ReconcileHost, s: VmiState): Promise<ImageResolution | null> {
  const resolved: Record<string, { path: string; format: 'qcow2' | 'raw' }> = {};
  const digests = new Set<string>();
  for (const d of s.vmi?.disks ?? []) {
    const v = d.volume;
    if (v.kind !== 'containerDiskImage') continue;
    const started = Date.now();
    let announced = false;
    const onProgress: EnsureOptions['onProgress'] = (p) => {
      if (p.phase !== 'pulling' || announced) return;
      announced = true;
      s.addEvent('Normal', 'Pulling', `Pulling image "${v.image}"`);
      s.setPhase('Pending', `pulling image "${v.image}"`);
      h.publish(s);
    };
    let img: EnsuredImage;
    try {
      img = await h.pullImage(v.image, { pullPolicy: v.pullPolicy, select: { kind: 'containerDisk', ...(v.path !== null ? { path: v.path } : {}) }, onProgress });
      if (!img.diskPath || !img.format) throw new Error(`image ${v.image} has no disk`);
    } catch (err) {
      const reason = isImageError(err, 'NotPresent') ? 'ErrImageNeverPull' : 'ImagePullBackOff';
      const retryMs = backoffDelay(s.imagePullFailures++, IMAGE_PULL_BACKOFF);
      const message = `${reason}: ${errorMessage(err)}`;
      s.addEvent('Warning', reason === 'ErrImageNeverPull' ? reason : 'Failed', `Failed to pull image "${v.image}": ${errorMessage(err)}`);
      s.setPhase('Pending', message, true);
      h.publish(s);
      h.log.warn({ uid: s.uid, image: v.image, err, retryInMs: retryMs }, 'image pull failed');
      h.requeue(s.uid, retryMs);
      return null;
    }
    if (img.pulled) {
      const size = fileSize(img.diskPath);
      s.addEvent('Normal', 'Pulled', `Successfully pulled image "${v.image}" (${img.digest}${size === null ? '' : `, ${size} bytes`}) in ${Date.now() - started} ms`);
    } else {
      s.addEvent('Normal', 'Pulled', `Container image "${v.image}" already present on machine (${img.digest})`);
    }
    resolved[v.name] = { path: img.diskPath, format: img.format };
    digests.add(img.digest);
  }
  s.imagePullFailures = 0;
  return { resolved, digests: [...digests] };
}

/** Per digest, the VMIs (namespace/name) whose record names it. */
export function imageUsers(states: Iterable<VmiState>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of states) {
    for (const d of s.rec.images ?? []) out.set(d, [...(out.get(d) ?? []), `${s.rec.namespace}/${s.rec.name}`]);
  }
  return out;
}

/** Whether the VMI has images to pull. */
export function hasImageVolumes(s: VmiState): boolean {
  return (s.vmi?.disks ?? []).some((d) => d.volume.kind === 'containerDiskImage');
}

function fileSize(file: string): number | null {
  try {
    return fs.statSync(file).size;
  } catch {
    return null;
  }
}
