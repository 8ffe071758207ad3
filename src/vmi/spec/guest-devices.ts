/**
 * Readers for the devices that are a switch or a model name each: TPM, virtiofs filesystems,
 * video, panic devices, sound and VSOCK. The schema walker (schema/devices.ts) has checked the
 * kinds and listed what this node cannot honour (a persistent TPM, the pvpanic model); these read
 * the rest. Host software the devices need (swtpm, virtiofsd, /dev/vhost-vsock) is a node fact
 * checked before start (control/start.ts), not here: the spec is valid either way.
 */
import { type Violations, isPlainObject, q } from './field-reader';
import type { NormalizedVmi, NormalizedVolume, VmiRequirement } from './types';

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | null => (isPlainObject(v) ? (v as Obj) : null);

export type GuestDevices = Pick<NormalizedVmi, 'tpm' | 'filesystems' | 'video' | 'panicDevices' | 'sound' | 'vsock'>;

/** KubeVirt's filesystem sources (served here as disk images). */
const DIRECTORY_SOURCES = new Set(['persistentVolumeClaim', 'dataVolume', 'configMap', 'secret', 'serviceAccount', 'downwardAPI']);

const VIDEO_TYPES = ['vga', 'virtio', 'bochs', 'ramfb', 'cirrus'] as const;

/**
 * spec.domain.devices' TPM, filesystems, video, panic devices, sound and VSOCK. `volumes` maps
 * each volume name to what this node serves for it (null: a source it does not serve yet, already
 * a requirement); `diskNames` are the disks, which cannot share a volume with a filesystem.
 */
export function readGuestDevices(devices: unknown, volumes: ReadonlyMap<string, { volume: NormalizedVolume | null }>, diskNames: ReadonlySet<string>, v: Violations, reqs: VmiRequirement[]): GuestDevices {
  const d = obj(devices);
  const out: GuestDevices = {};
  if (d === null) return out;
  const base = 'spec.domain.devices';
  const tpm = obj(d.tpm);
  if (tpm !== null && tpm.enabled !== false && tpm.persistent !== true) out.tpm = true;
  if (Array.isArray(d.filesystems)) {
    const seen = new Set<string>();
    const list: Array<{ name: string }> = [];
    d.filesystems.forEach((item, i) => {
      const f = obj(item);
      const field = `${base}.filesystems[${i}]`;
      if (f === null) return;
      if (typeof f.name !== 'string') return v.add(`${field}.name`, 'required');
      if (seen.has(f.name)) return v.add(`${field}.name`, `duplicate filesystem name ${q(f.name)}`);
      seen.add(f.name);
      if (obj(f.virtiofs) === null) return v.add(`${field}.virtiofs`, 'required (virtiofs is the only filesystem type)');
      const entry = volumes.get(f.name);
      if (entry === undefined) return v.add(`${field}.name`, `no volume named ${q(f.name)}`);
      if (diskNames.has(f.name)) return v.add(`${field}.name`, `volume ${q(f.name)} is also used by a disk`);
      // The served sources are disk images; a directory share comes from a PVC, DataVolume,
      // configMap, secret, serviceAccount or downwardAPI volume (KubeVirt's filesystem sources).
      if (entry.volume !== null && DIRECTORY_SOURCES.has(entry.volume.kind)) {
        // KubeVirt shares these as directories; here they are served as disk images (a claim's
        // disk.img, an ISO), so a directory share of one waits, naming why.
        return void reqs.push({ field, needs: `a virtiofs share of the ${entry.volume.kind} volume ${q(f.name)} (this node serves that volume kind as a disk image, not as a directory)` });
      }
      if (entry.volume !== null) return v.add(`${field}.name`, `volume ${q(f.name)} is a ${entry.volume.kind}, which is a disk image, not a directory a filesystem can share`);
      list.push({ name: f.name });
    });
    if (list.length > 0) out.filesystems = list;
  }
  const video = obj(d.video);
  if (video !== null && typeof video.type === 'string' && (VIDEO_TYPES as readonly string[]).includes(video.type)) out.video = video.type as NonNullable<GuestDevices['video']>;
  if (Array.isArray(d.panicDevices)) {
    const models: Array<'isa' | 'hyperv'> = [];
    d.panicDevices.forEach((item, i) => {
      const m = obj(item)?.model;
      if (m === 'isa' || m === 'hyperv') {
        if (models.includes(m)) v.add(`${base}.panicDevices[${i}].model`, `duplicate panic device model ${q(m)}`);
        else models.push(m);
      } else if (m === undefined) {
        v.add(`${base}.panicDevices[${i}].model`, 'required');
      }
    });
    if (models.length > 0) out.panicDevices = models;
  }
  const sound = obj(d.sound);
  if (sound !== null) {
    if (typeof sound.name !== 'string') v.add(`${base}.sound.name`, 'required');
    else out.sound = { name: sound.name, model: sound.model === 'ac97' ? 'ac97' : 'ich9' };
  }
  if (d.autoattachVSOCK === true) out.vsock = true;
  return out;
}
