/**
 * Container images before a launcher starts: each containerDiskImage volume's image and the
 * kernelBoot.container image are found in (or pulled into) the node's image store, with
 * kubelet's events (Pulling, Pulled) and kubelet's waiting reasons on failure (ImagePullBackOff,
 * ErrImageNeverPull) and a jittered backoff. The store's base files become the overlays' backing
 * files (render/disk-plan.ts) and the domain's <kernel>/<initrd>; the digests go into the VMI's
 * record so image GC never removes an image a VMI uses.
 *
 * Pulls run off the reconcile worker: resolveImages() starts (or joins, the store is single
 * flight) the pull and returns null with the VMI Pending "Pulling image X"; the pull's end
 * requeues the VMI. A delete or stop meanwhile is not held up by it: the pull finishes into the
 * store (shared with any other VMI or caller asking; an image nobody uses is collected by GC) and
 * its result is dropped. The resolution is kept for the VMI's generation, so a retry (waiting
 * for a start slot) does not ask the store again (with Always: a registry round trip); it is
 * dropped once the launcher is spawned. A launcher re-adopted after a handler restart resolves
 * by the digests its record names, never by the spec's tags (a tag may have moved).
 */
import * as fs from 'node:fs';
import { errorMessage } from '../../errors';
import { isImageError } from '../../images/errors';
import { formatReference, parseReference } from '../../images/reference';
import type { EnsureOptions, EnsuredImage, ImageSelection, PullPolicy, StoredImage } from '../../images/types';
import { type Backoff, backoffDelay } from '../../util/backoff';
import type { Logger } from '../../log';
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

/** A pull that settles within this stays on the reconcile (a store hit needs no requeue round). */
const QUICK_MS = 100;

/** The key of the kernel boot container in ImageResolution.byKey (volume names are DNS labels). */
export const KERNEL_BOOT_KEY = '@kernelBoot';

/** The store's files for the VMI's images, and the digests they come from. */
export interface ImageResolution {
  resolved: ResolvedImages;
  /** kernelBoot.container: the store's kernel and initrd files. */
  kernelBoot?: { kernel: string | null; initrd: string | null };
  digests: string[];
  /** Volume name (or KERNEL_BOOT_KEY) -> digest: recorded with the spawn, used by a re-adoption. */
  byKey: Record<string, string>;
}

/** One image the VMI needs. */
interface ImageNeed {
  key: string;
  image: string;
  pullPolicy: PullPolicy;
  select: ImageSelection;
}

/** A VMI's resolution in progress or done, for one generation. */
interface PullState {
  generation: number;
  pinned: boolean;
  running: boolean;
  result: ImageResolution | null;
  retryAt: number;
}

/** A pull that failed: which image, and why. */
class PullFailure extends Error {
  constructor(readonly need: ImageNeed, readonly err: unknown) {
    super(errorMessage(err));
  }
}

/** Per VMI state object (a WeakMap: a forgotten VMI's entry goes with it). */
const pulls = new WeakMap<VmiState, PullState>();

function needsOf(s: VmiState): ImageNeed[] {
  const out: ImageNeed[] = [];
  for (const d of s.vmi?.disks ?? []) {
    const v = d.volume;
    if (v.kind === 'containerDiskImage') out.push({ key: v.name, image: v.image, pullPolicy: v.pullPolicy, select: { kind: 'containerDisk', ...(v.path !== null ? { path: v.path } : {}) } });
  }
  const kc = s.vmi?.firmware.kernelBootContainer;
  if (kc) {
    out.push({ key: KERNEL_BOOT_KEY, image: kc.image, pullPolicy: kc.pullPolicy, select: { kind: 'kernelBoot', ...(kc.kernelPath !== null ? { kernelPath: kc.kernelPath } : {}), ...(kc.initrdPath !== null ? { initrdPath: kc.initrdPath } : {}) } });
  }
  return out;
}

/** The reference pinned to `digest` (repository@sha256:...): the store finds it without asking the registry. */
function pin(image: string, digest: string): string {
  const r = parseReference(image);
  return formatReference({ registry: r.registry, repository: r.repository, digest });
}

/**
 * Ensures every image the VMI names. Returns null when the VMI must wait (the phase, events and
 * requeue are done here); otherwise what to plan the start with. With `pinned` (a re-adopted
 * launcher's record), each image is taken by the digest recorded for it.
 */
export async function resolveImages(h: ReconcileHost, s: VmiState, o: { pinned?: Readonly<Record<string, string>> } = {}): Promise<ImageResolution | null> {
  const needs = needsOf(s);
  if (needs.length === 0) return { resolved: {}, digests: [], byKey: {} };
  const generation = s.rec.generation;
  const pinned = o.pinned !== undefined;
  let st = pulls.get(s);
  if (st !== undefined && (st.generation !== generation || st.pinned !== pinned)) st = undefined;
  if (st?.result) return st.result;
  if (st?.running) return null; // its end requeues the VMI
  if (st !== undefined && Date.now() < st.retryAt) {
    h.requeue(s.uid, st.retryAt - Date.now());
    return null;
  }
  const state: PullState = { generation, pinned, running: true, result: null, retryAt: 0 };
  pulls.set(s, state);
  let background = false;
  const current = (): boolean => pulls.get(s) === state && !s.rec.deleting && s.shouldRun;
  const run = pullAll(h, s, needs, o.pinned, current).then(
    (res) => {
      state.result = res;
      s.imagePullFailures = 0;
      if (background && current()) h.requeue(s.uid, 0);
    },
    (err: unknown) => {
      const failed = err instanceof PullFailure ? err : new PullFailure(needs[0] as ImageNeed, err);
      if (!current()) return; // deleted, stopped or superseded meanwhile: nobody waits for this
      const reason = isImageError(failed.err, 'NotPresent') ? 'ErrImageNeverPull' : 'ImagePullBackOff';
      const retryMs = backoffDelay(s.imagePullFailures++, IMAGE_PULL_BACKOFF);
      state.retryAt = Date.now() + retryMs;
      s.addEvent('Warning', reason === 'ErrImageNeverPull' ? reason : 'Failed', `Failed to pull image "${failed.need.image}": ${errorMessage(failed.err)}`);
      s.setPhase('Pending', `${reason}: ${errorMessage(failed.err)}`, true);
      h.publish(s);
      h.log.warn({ uid: s.uid, image: failed.need.image, err: failed.err, retryInMs: retryMs }, 'image pull failed');
      h.requeue(s.uid, retryMs);
    },
  ).finally(() => {
    state.running = false;
  });
  let timer: NodeJS.Timeout | undefined;
  const quick = await Promise.race([run.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), QUICK_MS)))]);
  clearTimeout(timer);
  if (quick) return state.result;
  background = true;
  const waiting = needs.map((n) => n.image).filter((x, i, all) => all.indexOf(x) === i);
  if (s.setPhase('Pending', `Pulling image ${waiting.map((x) => `"${x}"`).join(', ')}`)) h.publish(s);
  return null;
}

/** Pulls each need in turn (the first failure stops it: rejected with {need, err}). */
async function pullAll(h: ReconcileHost, s: VmiState, needs: readonly ImageNeed[], pinned: Readonly<Record<string, string>> | undefined, live: () => boolean): Promise<ImageResolution> {
  const out: ImageResolution = { resolved: {}, digests: [], byKey: {} };
  for (const need of needs) {
    const started = Date.now();
    let announced = false;
    const onProgress: EnsureOptions['onProgress'] = (p) => {
      if (p.phase !== 'pulling' || announced || !live()) return;
      announced = true;
      s.addEvent('Normal', 'Pulling', `Pulling image "${need.image}"`);
      s.setPhase('Pending', `Pulling image "${need.image}"`);
      h.publish(s);
    };
    const digest = pinned?.[need.key];
    let img: EnsuredImage;
    try {
      img = await h.pullImage(digest !== undefined ? pin(need.image, digest) : need.image, { pullPolicy: digest !== undefined ? 'IfNotPresent' : need.pullPolicy, select: need.select, onProgress });
      if (need.select.kind === 'containerDisk' && (!img.diskPath || !img.format)) throw new Error(`image ${need.image} has no disk`);
    } catch (err) {
      throw new PullFailure(need, err);
    }
    const file = img.diskPath ?? img.kernelPath ?? img.initrdPath;
    if (!live()) {
      // deleted or stopped meanwhile: no events for it
    } else if (img.pulled) {
      const size = file !== undefined ? fileSize(file) : null;
      s.addEvent('Normal', 'Pulled', `Successfully pulled image "${need.image}" (${img.digest}${size === null ? '' : `, ${size} bytes`}) in ${Date.now() - started} ms`);
    } else {
      s.addEvent('Normal', 'Pulled', `Container image "${need.image}" already present on machine (${img.digest})`);
    }
    if (need.key === KERNEL_BOOT_KEY) out.kernelBoot = { kernel: img.kernelPath ?? null, initrd: img.initrdPath ?? null };
    else out.resolved = { ...out.resolved, [need.key]: { path: img.diskPath as string, format: img.format as 'qcow2' | 'raw' } };
    if (!out.digests.includes(img.digest)) out.digests.push(img.digest);
    out.byKey[need.key] = img.digest;
  }
  return out;
}

/** The launcher was spawned with the resolution: the next start (a new launcher) resolves afresh. */
export function imagesConsumed(s: VmiState): void {
  pulls.delete(s);
}

/** Per digest, the VMIs (namespace/name) whose record names it or whose start holds it resolved. */
export function imageUsers(states: Iterable<VmiState>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of states) {
    const held = new Set([...(s.rec.images ?? []), ...(pulls.get(s)?.result?.digests ?? [])]);
    for (const d of held) out.set(d, [...(out.get(d) ?? []), `${s.rec.namespace}/${s.rec.name}`]);
  }
  return out;
}

/** Image GC: removes stored images no VMI uses (imageUsers) and unused for `minIdleMs`; their digests. */
export function gcUnusedImages(store: ImagePuller, states: Iterable<VmiState>, minIdleMs: number, log: Logger): string[] {
  try {
    return store.gc(new Set(imageUsers(states).keys()), { minIdleMs }).map((i) => i.digest);
  } catch (err) {
    log.error({ err }, 'image gc failed; retried on the next round');
    return [];
  }
}

/** Whether the VMI has images to pull. */
export function hasImageVolumes(s: VmiState): boolean {
  return needsOf(s).length > 0;
}

function fileSize(file: string): number | null {
  try {
    return fs.statSync(file).size;
  } catch {
    return null;
  }
}
