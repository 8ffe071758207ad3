/**
 * The volume sources this node serves (validate.ts's part): containerDisk by host path, or by
 * image when the node pulls images (else the image is a requirement), hostDisk (Disk | DiskOrCreate, confined host
 * paths), emptyDisk (a capacity), cloudInitNoCloud and cloudInitConfigDrive (user/network data
 * as text or base64, bounded, never a redaction marker, or from a Secret read at start),
 * persistentVolumeClaim, ephemeral and dataVolume (node-local claims, resolved at start), and
 * the Kubernetes-object volumes (object-volumes.ts). Returns null when the source is unusable
 * (each reason a violation) or served elsewhere.
 */
import { CONTROL_MULTILINE_RE, FieldReader, type Fields, type Violations } from './field-reader';
import type { HostPaths } from './host-paths';
import { isDnsSubdomain } from './ids';
import { ObjectVolumeReader } from './object-volumes';
import { isRedactionMarker } from './redact';
import { parseReference } from '../../images/reference';
import type { ImagePullPolicy, NormalizedVmi, NormalizedVolume, VmiLimits, VmiRequirement } from './types';

const MIN_DISK_BYTES = 2 ** 20;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

export class VolumeSourceReader extends FieldReader {
  constructor(
    v: Violations,
    private readonly limits: VmiLimits,
    private readonly paths: HostPaths,
    private readonly reqs: VmiRequirement[],
    private readonly imagePulls: boolean,
  ) {
    super(v);
    this.strict = false; // the schema walker reports unknown fields
    this.objects = new ObjectVolumeReader(v);
  }

  private readonly objects: ObjectVolumeReader;

  read(kind: string, value: unknown, base: string, name: string): NormalizedVolume | null {
    const maxDisk = this.limits.maxDiskBytes;
    if (kind === 'persistentVolumeClaim' || kind === 'dataVolume' || kind === 'ephemeral') return this.claim(kind, value, base, name);
    if (kind === 'containerDisk') {
      const s = this.obj(value, base, ['path', 'image', 'imagePullPolicy']);
      if (s === null) return null;
      if (s.has('image')) return this.image(s, base, name);
      if (!s.has('path')) return this.refuse(`${base}.path`, 'required') ?? null;
      const p = this.paths.check(s.get('path'), `${base}.path`, false);
      return p === undefined ? null : { kind, name, path: p.path };
    }
    if (kind === 'hostDisk') {
      const s = this.obj(value, base, ['path', 'type', 'capacity']);
      if (s === null) return null;
      const type = s.has('type') ? this.oneOf(s.get('type'), `${base}.type`, ['Disk', 'DiskOrCreate'] as const) : this.refuse(`${base}.type`, 'required');
      const capacity = s.has('capacity') ? this.bytes(s.get('capacity'), `${base}.capacity`, MIN_DISK_BYTES, maxDisk) : null;
      if (!s.has('path')) return this.refuse(`${base}.path`, 'required') ?? null;
      const p = this.paths.check(s.get('path'), `${base}.path`, type === 'DiskOrCreate');
      if (p === undefined || type === undefined || capacity === undefined) return null;
      if (!p.exists && capacity === null) return this.refuse(`${base}.capacity`, 'required when a DiskOrCreate file does not exist yet') ?? null;
      return { kind, name, path: p.path, type, capacityBytes: capacity };
    }
    if (kind === 'emptyDisk') {
      const s = this.obj(value, base, ['capacity']);
      if (s === null) return null;
      if (!s.has('capacity')) return this.refuse(`${base}.capacity`, 'required') ?? null;
      const capacity = this.bytes(s.get('capacity'), `${base}.capacity`, MIN_DISK_BYTES, maxDisk);
      return capacity === undefined ? null : { kind, name, capacityBytes: capacity };
    }
    if (kind === 'cloudInitNoCloud' || kind === 'cloudInitConfigDrive') return this.cloudInit(kind, value, base, name);
    return this.objects.read(kind, value, base, name);
  }

  /**
   * cloudInitNoCloud / cloudInitConfigDrive: user data from userData, userDataBase64 or a Secret
   * (secretRef), network data from networkData, networkDataBase64 or a Secret
   * (networkDataSecretRef); at most one source each, and user or network data given. A Secret
   * is only named here: its keys are read when the VMI starts.
   */
  private cloudInit(kind: 'cloudInitNoCloud' | 'cloudInitConfigDrive', value: unknown, base: string, name: string): NormalizedVolume | null {
    const s = this.obj(value, base, ['userData', 'networkData', 'userDataBase64', 'networkDataBase64', 'secretRef', 'networkDataSecretRef']);
    if (s === null) return null;
    const max = this.limits.maxUserDataBytes;
    const text = (key: string): string | undefined => {
      const t = this.str(s.get(key), `${base}.${key}`, { max, multiline: true });
      if (t !== undefined && Buffer.byteLength(t) > max) return this.refuse(`${base}.${key}`, `must be at most ${max} bytes`);
      // A view read back and re-submitted carries the marker, not the data: the guest would get it.
      if (t !== undefined && isRedactionMarker(t.trim())) return this.refuse(`${base}.${key}`, 'is a redaction marker from a VMI view, not the data; submit the original text');
      return t;
    };
    const decoded = (key: string): string | undefined => {
      const b = this.str(s.get(key), `${base}.${key}`, { max: Math.ceil((max * 4) / 3) + 4 });
      if (b === undefined) return undefined;
      const compact = b.replace(/\s+/g, '');
      if (!BASE64_RE.test(compact) || compact.length % 4 === 1) return this.refuse(`${base}.${key}`, 'is not base64');
      const t = Buffer.from(compact, 'base64').toString('utf8');
      if (Buffer.byteLength(t) > max) return this.refuse(`${base}.${key}`, `decodes to more than ${max} bytes`);
      if (CONTROL_MULTILINE_RE.test(t)) return this.refuse(`${base}.${key}`, 'decodes to text with control characters');
      return t;
    };
    const atMostOne = (...keys: string[]): void => {
      if (keys.filter((k) => s.has(k)).length > 1) this.v.add(base, `must set at most one of ${keys.join(', ')}`);
    };
    atMostOne('userData', 'userDataBase64', 'secretRef');
    atMostOne('networkData', 'networkDataBase64', 'networkDataSecretRef');
    const secret = (key: string): string | undefined | null => {
      if (!s.has(key)) return null;
      const ref = this.obj(s.get(key), `${base}.${key}`, ['name']);
      return ref === null ? undefined : this.objects.objectName(ref.get('name'), `${base}.${key}.name`);
    };
    const userDataSecret = secret('secretRef');
    const networkDataSecret = secret('networkDataSecretRef');
    let userData: string | undefined;
    if (s.has('userData')) userData = text('userData');
    else if (s.has('userDataBase64')) userData = decoded('userDataBase64');
    else if (s.has('secretRef')) userData = ''; // from the Secret, at start
    else if (s.has('networkData') || s.has('networkDataBase64') || s.has('networkDataSecretRef')) userData = '';
    else userData = this.refuse(`${base}.userData`, 'required (or userDataBase64, secretRef)');
    const networkData = s.has('networkData') ? text('networkData') : s.has('networkDataBase64') ? decoded('networkDataBase64') : null;
    if (userData === undefined || networkData === undefined || userDataSecret === undefined || networkDataSecret === undefined) return null;
    return {
      kind, name, userData, networkData,
      ...(userDataSecret !== null ? { userDataSecret } : {}),
      ...(networkDataSecret !== null ? { networkDataSecret } : {}),
    };
  }
  /**
   * persistentVolumeClaim / ephemeral.persistentVolumeClaim / dataVolume: a node-local claim in
   * the VMI's namespace. The name becomes a path component under volumes.claimRoot, so it must be
   * a DNS-1123 subdomain (no '/', never '.' or '..'); hotpluggable is a requirement (schema).
   */
  private claim(kind: 'persistentVolumeClaim' | 'dataVolume' | 'ephemeral', value: unknown, base: string, name: string): NormalizedVolume | null {
    const s = this.obj(value, base, kind === 'dataVolume' ? ['name', 'hotpluggable'] : kind === 'ephemeral' ? ['persistentVolumeClaim'] : ['claimName', 'readOnly', 'hotpluggable']);
    if (s === null) return null;
    let fields = s;
    let field = base;
    if (kind === 'ephemeral') {
      if (!s.has('persistentVolumeClaim')) return this.refuse(`${base}.persistentVolumeClaim`, 'required') ?? null;
      field = `${base}.persistentVolumeClaim`;
      const inner = this.obj(s.get('persistentVolumeClaim'), field, ['claimName', 'readOnly']);
      if (inner === null) return null;
      fields = inner;
    }
    const key = kind === 'dataVolume' ? 'name' : 'claimName';
    if (!fields.has(key)) return this.refuse(`${field}.${key}`, 'required') ?? null;
    const claim = this.str(fields.get(key), `${field}.${key}`, { max: 253 });
    if (claim === undefined) return null;
    if (!isDnsSubdomain(claim)) return this.refuse(`${field}.${key}`, `${JSON.stringify(claim)} must be a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.', at most 253 characters)`) ?? null;
    if (kind === 'dataVolume') return { kind, name, dataVolumeName: claim };
    const readOnly = fields.has('readOnly') ? this.bool(fields.get('readOnly'), `${field}.readOnly`) : false;
    if (readOnly === undefined) return null;
    return { kind: 'persistentVolumeClaim', name, claimName: claim, readOnly, ephemeral: kind === 'ephemeral' };
  }
  /** containerDisk.image: a volume the store fills at start, or (no image store) a requirement. */
  private image(s: Fields, base: string, name: string): NormalizedVolume | null {
    const ref = this.str(s.get('image'), `${base}.image`, { max: 512 });
    if (ref === undefined) return null;
    if (!this.imagePulls) {
      this.reqs.push({ field: `${base}.image`, needs: `${ref} (pulling container disk images is not implemented yet on this node)` });
      return null;
    }
    try {
      parseReference(ref);
    } catch (e) {
      return this.refuse(`${base}.image`, (e as Error).message) ?? null;
    }
    let path: string | null = null;
    if (s.has('path')) {
      const p = this.str(s.get('path'), `${base}.path`, { max: 4096 });
      if (p === undefined) return null;
      if (!p.startsWith('/') || p.split('/').includes('..')) return this.refuse(`${base}.path`, `must be an absolute path inside the image without '..' (got ${JSON.stringify(p)})`) ?? null;
      path = p;
    }
    // Defaulting sets the policy; a spec validated without it gets the same rule (defaults.ts).
    const given = s.has('imagePullPolicy') ? this.oneOf(s.get('imagePullPolicy'), `${base}.imagePullPolicy`, ['Always', 'IfNotPresent', 'Never'] as const) : null;
    if (given === undefined) return null;
    const pullPolicy: ImagePullPolicy = given ?? (ref.endsWith(':latest') || !/[:@]/.test(ref) ? 'Always' : 'IfNotPresent');
    return { kind: 'containerDiskImage', name, image: ref, pullPolicy, path };
  }

  /**
   * kernelBoot.container {image, imagePullPolicy, kernelPath, initrdPath}: the image store takes
   * the files out of the image at start (KubeVirt's kernel boot container layout), or (no image
   * store) a requirement. kernelPath is required here: a domain boots no initrd on its own.
   */
  kernelBootContainer(value: unknown, base: string, kernelArgs: string): NonNullable<NormalizedVmi['firmware']['kernelBootContainer']> | null {
    const c = this.obj(value, base, ['image', 'imagePullPolicy', 'kernelPath', 'initrdPath']);
    if (c === null) return null;
    if (!c.has('image')) return this.refuse(`${base}.image`, 'required') ?? null;
    const ref = this.str(c.get('image'), `${base}.image`, { max: 512 });
    if (ref === undefined) return null;
    const inImage = (key: 'kernelPath' | 'initrdPath'): string | null | undefined => {
      if (!c.has(key)) return null;
      const p = this.str(c.get(key), `${base}.${key}`, { max: 4096 });
      if (p === undefined) return undefined;
      if (!p.startsWith('/') || p.split('/').includes('..') || p.endsWith('/')) return this.refuse(`${base}.${key}`, `must be an absolute file path inside the image without '..' (got ${JSON.stringify(p)})`) ?? undefined;
      return p;
    };
    const kernelPath = inImage('kernelPath');
    const initrdPath = inImage('initrdPath');
    if (kernelPath === null) return this.refuse(`${base}.kernelPath`, "required (the kernel's path inside the image, e.g. /boot/vmlinuz)") ?? null;
    const given = c.has('imagePullPolicy') ? this.oneOf(c.get('imagePullPolicy'), `${base}.imagePullPolicy`, ['Always', 'IfNotPresent', 'Never'] as const) : null;
    if (kernelPath === undefined || initrdPath === undefined || given === undefined) return null;
    if (!this.imagePulls) {
      this.reqs.push({ field: `${base}.image`, needs: `kernel boot container ${ref} (this node has no image store)` });
      return null;
    }
    try {
      parseReference(ref);
    } catch (e) {
      return this.refuse(`${base}.image`, (e as Error).message) ?? null;
    }
    const pullPolicy: ImagePullPolicy = given ?? (ref.endsWith(':latest') || !/[:@]/.test(ref) ? 'Always' : 'IfNotPresent');
    return { image: ref, pullPolicy, kernelPath, initrdPath, kernelArgs };
  }
}
