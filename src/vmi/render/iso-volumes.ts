/**
 * The ISO images KubeVirt builds from a VMI's config volumes, as file lists for an IsoDisk
 * DiskPrep (the launcher runs genisoimage). Pure: the Kubernetes objects were read at start
 * (control/objects.ts) and arrive as ResolvedObjects.
 *
 * What goes on each image (KubeVirt's pkg/cloud-init and pkg/config):
 * - cloudInitConfigDrive: volume id config-2, OpenStack layout openstack/latest/meta_data.json
 *   ({instance_type?, instance_id: <name>.<namespace>, hostname, uuid}), user_data (always) and
 *   network_data.json (when there is network data);
 * - cloudInitNoCloud with a Secret: volume id cidata, user-data, meta-data, network-config (the
 *   inline form keeps the older cloudInit prep, which every launcher version speaks);
 * - configMap, secret: volume id volumeLabel or cfgdata, one file per key (an optional object
 *   that is missing: no files);
 * - serviceAccount: cfgdata, token, ca.crt, namespace;
 * - downwardAPI: volumeLabel or cfgdata, one file per field in kubelet's format;
 * - sysprep: unattendCD, the object's keys (autounattend.xml / unattend.xml among them).
 */
import type { IsoFile } from '../../launcher-protocol/messages';
import type { DownwardApiField, NormalizedVmi, NormalizedVolume } from '../spec/types';

/** What the node read for one volume at start. */
export type ResolvedObject =
  /** configMap, secret, serviceAccount, sysprep: the object's keys (none: an optional object that is missing). */
  | { kind: 'files'; files: ReadonlyArray<{ key: string; data: Uint8Array }> }
  /** cloud-init user and network data from the Secrets a cloudInit volume names (null: not from a Secret). */
  | { kind: 'cloudInit'; userData: Uint8Array | null; networkData: Uint8Array | null };

/** Per volume name, the objects control/objects.ts read (like ResolvedImages for images). */
export type ResolvedObjects = Readonly<Record<string, ResolvedObject>>;

/** KubeVirt's label for config disks without a volumeLabel. */
export const DEFAULT_CONFIG_LABEL = 'cfgdata';
/** KubeVirt's annotations naming the instancetype a VMI was expanded from (config drive instance_type). */
const INSTANCETYPE_ANNOTATIONS = ['kubevirt.io/cluster-instancetype-name', 'kubevirt.io/instancetype-name'];

export interface IsoImage {
  /** The image's file name under <vmiDir>/disks/. */
  fileName: string;
  volumeLabel: string;
  files: IsoFile[];
}

const text = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const file = (path: string, data: Uint8Array, mode: number | null = null): IsoFile => ({ path, data, mode });

/** KubeVirt's dns.SanitizeHostname without spec.hostname: the name up to its first dot, at most 63 characters. */
export function guestHostname(vmi: NormalizedVmi): string {
  return (vmi.name.split('.')[0] as string).slice(0, 63);
}

/** meta_data.json of a config drive, with KubeVirt's field names and order. */
export function configDriveMetaData(vmi: NormalizedVmi): string {
  const instanceType = INSTANCETYPE_ANNOTATIONS.map((a) => vmi.annotations[a]).find((v) => v !== undefined && v !== '');
  return JSON.stringify({
    ...(instanceType !== undefined ? { instance_type: instanceType } : {}),
    instance_id: `${vmi.name}.${vmi.namespace}`,
    hostname: guestHostname(vmi),
    uuid: vmi.uid,
  });
}

/**
 * Go's %q (strconv.Quote), which kubelet's downward API uses for label and annotation values:
 * '"' and '\' escaped, control characters as \a \b \f \n \r \t \v or \xNN, C1 controls as
 * \u00NN, other text as it is.
 */
export function goQuote(s: string): string {
  const named: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 34: '\\"', 92: '\\\\' };
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    const hex = c.toString(16).padStart(2, '0');
    if (named[c] !== undefined) out += named[c];
    else if (c < 0x20 || c === 0x7f) out += `\\x${hex}`;
    else if (c >= 0x80 && c < 0xa0) out += `\\u00${hex}`;
    else if (c >= 0xd800 && c <= 0xdfff) out += '\\ufffd'; // a lone surrogate: not valid UTF-8 in Go
    else out += ch;
  }
  return `${out}"`;
}

/** kubelet's fieldpath.FormatMap: `key="value"` lines sorted by key, no trailing newline. */
export function formatMap(m: Readonly<Record<string, string>>): string {
  return Object.keys(m)
    .sort()
    .map((k) => `${k}=${goQuote(m[k] as string)}`)
    .join('\n');
}

/** The value kubelet writes for a downward API fieldPath (metadata.* only; validation allowed no other). */
export function downwardValue(vmi: NormalizedVmi, fieldPath: string): string {
  const sub = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(fieldPath);
  if (sub) return (sub[1] === 'labels' ? vmi.labels : vmi.annotations)[sub[2] as string] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return vmi.name;
    case 'metadata.namespace':
      return vmi.namespace;
    case 'metadata.uid':
      return vmi.uid;
    case 'metadata.labels':
      return formatMap(vmi.labels);
    case 'metadata.annotations':
      return formatMap(vmi.annotations);
    default:
      throw new Error(`downward API fieldPath ${fieldPath} is not supported`);
  }
}

function downwardFiles(vmi: NormalizedVmi, fields: readonly DownwardApiField[]): IsoFile[] {
  return fields.map((f) => file(f.path, text(downwardValue(vmi, f.fieldPath)), f.mode));
}

/** The cloud-init data a volume ends up with: inline, or what its Secrets held. */
function cloudInitData(v: Extract<NormalizedVolume, { kind: 'cloudInitNoCloud' | 'cloudInitConfigDrive' }>, r: ResolvedObject | undefined): { userData: Uint8Array; networkData: Uint8Array | null } {
  const fromSecret = r?.kind === 'cloudInit' ? r : { userData: null, networkData: null };
  const userData = v.userDataSecret !== undefined ? fromSecret.userData : text(v.userData);
  const networkData = v.networkDataSecret !== undefined ? fromSecret.networkData : v.networkData === null ? null : text(v.networkData);
  if (userData === null || (v.networkDataSecret !== undefined && networkData === null)) throw new Error(`the Secret of cloud-init volume ${v.name} has not been read`);
  return { userData, networkData };
}

/** Whether `v` becomes an IsoDisk (and not the older cloudInit prep). */
export function isIsoVolume(v: NormalizedVolume): boolean {
  switch (v.kind) {
    case 'cloudInitNoCloud':
      return v.userDataSecret !== undefined || v.networkDataSecret !== undefined;
    case 'cloudInitConfigDrive':
    case 'configMap':
    case 'secret':
    case 'serviceAccount':
    case 'downwardAPI':
    case 'sysprep':
      return true;
    default:
      return false;
  }
}

/** Whether `v` needs objects read at start (control/objects.ts). */
export function needsObjects(v: NormalizedVolume): boolean {
  return isIsoVolume(v) && v.kind !== 'downwardAPI' && (v.kind !== 'cloudInitConfigDrive' || v.userDataSecret !== undefined || v.networkDataSecret !== undefined);
}

/**
 * The image for an ISO volume (isIsoVolume), named after `disk`. Throws when an object the
 * volume needs is not in `resolved` (the caller resolves before planning).
 */
export function isoImage(vmi: NormalizedVmi, disk: string, v: NormalizedVolume, resolved: ResolvedObjects): IsoImage {
  const r = Object.prototype.hasOwnProperty.call(resolved, v.name) ? resolved[v.name] : undefined;
  const keys = (): IsoFile[] => {
    if (r?.kind !== 'files') throw new Error(`the object of volume ${v.name} has not been read`);
    return r.files.map((f) => file(f.key, f.data));
  };
  switch (v.kind) {
    case 'cloudInitNoCloud': {
      const d = cloudInitData(v, r);
      const files = [file('user-data', d.userData), file('meta-data', text(`instance-id: ${jsonIfNeeded(vmi.uid)}\nlocal-hostname: ${jsonIfNeeded(vmi.name)}\n`))];
      if (d.networkData !== null) files.push(file('network-config', d.networkData));
      return { fileName: `${disk}-cidata.iso`, volumeLabel: 'cidata', files };
    }
    case 'cloudInitConfigDrive': {
      const d = cloudInitData(v, r);
      const files = [file('openstack/latest/meta_data.json', text(configDriveMetaData(vmi))), file('openstack/latest/user_data', d.userData)];
      if (d.networkData !== null && d.networkData.length > 0) files.push(file('openstack/latest/network_data.json', d.networkData));
      return { fileName: `${disk}-configdrive.iso`, volumeLabel: 'config-2', files };
    }
    case 'configMap':
    case 'secret':
      return { fileName: `${disk}.iso`, volumeLabel: v.volumeLabel ?? DEFAULT_CONFIG_LABEL, files: keys() };
    case 'serviceAccount':
      return { fileName: `${disk}.iso`, volumeLabel: DEFAULT_CONFIG_LABEL, files: keys() };
    case 'downwardAPI':
      return { fileName: `${disk}.iso`, volumeLabel: v.volumeLabel ?? DEFAULT_CONFIG_LABEL, files: downwardFiles(vmi, v.fields) };
    case 'sysprep':
      return { fileName: `${disk}.iso`, volumeLabel: 'unattendCD', files: keys() };
    default:
      throw new Error(`volume ${v.name} (${v.kind}) is not an ISO volume`);
  }
}

/** The NoCloud meta-data quoting of disk-plan.ts (plain when safe, else JSON, which is YAML). */
function jsonIfNeeded(v: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v) ? v : JSON.stringify(v);
}
