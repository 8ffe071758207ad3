/**
 * Kubernetes objects before a launcher starts: every ConfigMap, Secret and service account the
 * VMI's volumes name (configMap, secret, serviceAccount, sysprep, and the cloud-init Secrets of
 * secretRef / networkDataSecretRef) is read from the node's object root (src/volumes/objects.ts).
 * Read at start, not at validation: objects may appear after the VMI. A missing object leaves
 * the VMI Pending with a reason naming it and the directory the node looked in (kubelet's
 * FailedMount event too), retried with a jittered 5 s..30 s backoff; an `optional` ConfigMap
 * or Secret that is missing becomes an empty image (kubelet mounts an empty volume).
 *
 * The content goes into the disk plan only (render/iso-volumes.ts), which is held in memory and
 * sent over the launcher's private socket: never into the VMI record, an event or a log line.
 */
import { type Backoff, backoffDelay } from '../../util/backoff';
import { type ObjectKind, type ObjectRead, ObjectError } from '../../volumes/objects';
import { type ResolvedObject, type ResolvedObjects, needsObjects } from '../render/iso-volumes';
import type { NormalizedVolume } from '../spec/types';
import type { ReconcileHost } from './reconcile-host';
import type { VmiState } from './vmi-state';

export const OBJECT_BACKOFF: Backoff = { initialMs: 5_000, maxMs: 30_000, stableMs: 0 };

/** Failed attempts per VMI (reset when every object is there). */
const failures = new WeakMap<VmiState, number>();

const KIND_NAMES: Record<ObjectKind, string> = { configmaps: 'ConfigMap', secrets: 'Secret', serviceaccounts: 'service account' };
/** KubeVirt's key names for cloud-init data in a Secret, in the order it tries them. */
export const USER_DATA_KEYS = ['userdata', 'userData'] as const;
export const NETWORK_DATA_KEYS = ['networkdata', 'networkData'] as const;
const SYSPREP_FILES = ['autounattend.xml', 'unattend.xml'];

/** Why a VMI waits for an object; `event` is kubelet's FailedMount text. */
class Wait extends Error {
  constructor(
    message: string,
    readonly event: string,
  ) {
    super(message);
  }
}

/** Whether the VMI has volumes whose objects must be read before it starts. */
export function hasObjectVolumes(s: VmiState): boolean {
  return (s.vmi?.disks ?? []).some((d) => needsObjects(d.volume));
}

/**
 * Reads every object the VMI's volumes name. Returns null when the VMI must wait (phase,
 * event and requeue are done here); otherwise the data to plan the disks with.
 */
export async function resolveObjects(h: ReconcileHost, s: VmiState): Promise<ResolvedObjects | null> {
  const out: Record<string, ResolvedObject> = {};
  const namespace = s.rec.namespace;
  try {
    for (const d of s.vmi?.disks ?? []) {
      const v = d.volume;
      if (!needsObjects(v)) continue;
      out[v.name] = await resolveVolume(h, namespace, v);
    }
  } catch (err) {
    if (!(err instanceof Wait)) throw err;
    const n = failures.get(s) ?? 0;
    failures.set(s, n + 1);
    const retryMs = backoffDelay(n, OBJECT_BACKOFF);
    s.setPhase('Pending', err.message, true);
    s.addEvent('Warning', 'FailedMount', err.event);
    h.publish(s);
    h.log.warn({ uid: s.uid, reason: err.message, retryInMs: retryMs }, 'waiting for a volume object');
    h.requeue(s.uid, retryMs);
    return null;
  }
  failures.delete(s);
  return out;
}

async function read(h: ReconcileHost, namespace: string, kind: ObjectKind, name: string, volume: string): Promise<ObjectRead> {
  try {
    return await h.readObject({ namespace, kind, name });
  } catch (e) {
    if (!(e instanceof ObjectError)) throw e;
    throw new Wait(`${KIND_NAMES[kind]} ${namespace}/${name} of volume ${volume} cannot be used: ${e.message}`, `MountVolume.SetUp failed for volume "${volume}" : ${e.message}`);
  }
}

function missing(kind: ObjectKind, namespace: string, name: string, volume: string, dir: string): Wait {
  return new Wait(
    `${KIND_NAMES[kind]} ${namespace}/${name} (volume ${volume}) not found: this node looked for it in ${dir}`,
    `MountVolume.SetUp failed for volume "${volume}" : ${kind.replace(/s$/, '')} "${name}" not found`,
  );
}

async function required(h: ReconcileHost, namespace: string, kind: ObjectKind, name: string, volume: string): Promise<Array<{ key: string; data: Buffer }>> {
  const r = await read(h, namespace, kind, name, volume);
  if (!r.found) throw missing(kind, namespace, name, volume, r.dir);
  return r.keys;
}

/** The first of `names` the Secret has (KubeVirt: readFirstFoundFileFromDir). */
function firstKey(keys: Array<{ key: string; data: Buffer }>, names: readonly string[], secret: string, namespace: string, volume: string): Buffer {
  for (const n of names) {
    const k = keys.find((x) => x.key === n);
    if (k) return k.data;
  }
  throw new Wait(
    `Secret ${namespace}/${secret} (volume ${volume}) has no key ${names.join(' or ')}`,
    `MountVolume.SetUp failed for volume "${volume}" : secret "${secret}" has no key ${names.join(' or ')}`,
  );
}

async function resolveVolume(h: ReconcileHost, namespace: string, v: NormalizedVolume): Promise<ResolvedObject> {
  switch (v.kind) {
    case 'configMap':
    case 'secret': {
      const kind: ObjectKind = v.kind === 'configMap' ? 'configmaps' : 'secrets';
      const r = await read(h, namespace, kind, v.object, v.name);
      if (!r.found && !v.optional) throw missing(kind, namespace, v.object, v.name, r.dir);
      return { kind: 'files', files: r.found ? r.keys : [] };
    }
    case 'serviceAccount': {
      const keys = (await required(h, namespace, 'serviceaccounts', v.object, v.name)).filter((k) => ['token', 'ca.crt', 'namespace'].includes(k.key));
      if (!keys.some((k) => k.key === 'token')) {
        throw new Wait(`service account ${namespace}/${v.object} (volume ${v.name}) has no token`, `MountVolume.SetUp failed for volume "${v.name}" : service account "${v.object}" has no token`);
      }
      return { kind: 'files', files: keys };
    }
    case 'sysprep': {
      const kind: ObjectKind = v.source === 'configMap' ? 'configmaps' : 'secrets';
      const keys = await required(h, namespace, kind, v.object, v.name);
      if (!keys.some((k) => SYSPREP_FILES.includes(k.key.toLowerCase()))) {
        throw new Wait(
          `${KIND_NAMES[kind]} ${namespace}/${v.object} (sysprep volume ${v.name}) has neither autounattend.xml nor unattend.xml`,
          `Sysprep drive should contain autounattend.xml or unattend.xml but neither were found (volume "${v.name}")`,
        );
      }
      return { kind: 'files', files: keys };
    }
    case 'cloudInitNoCloud':
    case 'cloudInitConfigDrive': {
      const userData = v.userDataSecret === undefined ? null : firstKey(await required(h, namespace, 'secrets', v.userDataSecret, v.name), USER_DATA_KEYS, v.userDataSecret, namespace, v.name);
      const networkData = v.networkDataSecret === undefined ? null : firstKey(await required(h, namespace, 'secrets', v.networkDataSecret, v.name), NETWORK_DATA_KEYS, v.networkDataSecret, namespace, v.name);
      return { kind: 'cloudInit', userData, networkData };
    }
    default:
      throw new Error(`volume ${v.name} (${v.kind}) reads no objects`);
  }
}
