/**
 * Validation of a DataVolume manifest (CDI cdi.kubevirt.io/v1beta1; v1alpha1 has the same
 * fields). Every CDI field is known; the ones this node cannot serve are refused at create, each
 * with its field path and what the node lacks. DataVolumes have no "Pending until schedulable"
 * notion in CDI (a DataVolume either binds and imports or reports an error), so refusing at
 * create is the honest answer, and it changes nothing.
 *
 * Served: source http (http/https URL, optional checksum and extraHeaders), registry (docker://),
 * blank, upload, pvc (a claim on this node); spec.storage or spec.pvc with a size (1 MiB..maxBytes),
 * Filesystem volume mode, ReadWriteOnce/ReadWriteOncePod/ReadOnlyMany.
 */
import { FieldReader, type Fields, Violations, q } from '../vmi/spec/field-reader';
import { isDnsLabel, isDnsSubdomain, isUuid } from '../vmi/spec/ids';
import type { FieldViolation } from '../vmi/spec/types';
import type { DataVolumeSource, NormalizedDataVolume } from './datavolume-types';

export const API_VERSIONS = ['cdi.kubevirt.io/v1beta1', 'cdi.kubevirt.io/v1alpha1'];
const MIN_BYTES = 2 ** 20;
export const DEFAULT_MAX_DV_BYTES = 2 ** 40;
const NO_K8S = 'this node reads no Kubernetes Secrets or ConfigMaps for imports';
const HEADER_RE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+:[\t -~]*$/;
const CHECKSUM_RE = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|md5:[0-9a-f]{32})$/;

export type DataVolumeValidation = { ok: true; dv: NormalizedDataVolume; uid: string | null } | { ok: false; violations: FieldViolation[] };

class DataVolumeReader extends FieldReader {
  constructor(v: Violations, private readonly maxBytes: number) {
    super(v);
  }

  manifest(value: unknown): { dv: NormalizedDataVolume; uid: string | null } | null {
    const top = this.obj(value, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
    if (top === null) return null;
    if (!API_VERSIONS.includes(top.get('apiVersion') as string)) this.v.add('apiVersion', `must be one of ${API_VERSIONS.join(', ')}`);
    if (top.get('kind') !== 'DataVolume') this.v.add('kind', 'must be DataVolume');
    const meta = this.obj(top.get('metadata') ?? {}, 'metadata', ['name', 'namespace', 'uid', 'labels', 'annotations', 'generation', 'resourceVersion', 'creationTimestamp', 'generateName', 'ownerReferences', 'finalizers']);
    let name: string | undefined;
    let namespace = 'default';
    let uid: string | null = null;
    if (meta !== null) {
      if (meta.has('generateName')) this.v.add('metadata.generateName', 'not served: give metadata.name (this node generates no names)');
      if (!meta.has('name')) this.v.add('metadata.name', 'required');
      else {
        name = this.str(meta.get('name'), 'metadata.name', { max: 253 });
        if (name !== undefined && !isDnsSubdomain(name)) name = this.refuse('metadata.name', `${q(name)} must be a DNS-1123 subdomain`);
      }
      if (meta.has('namespace')) {
        const ns = this.str(meta.get('namespace'), 'metadata.namespace', { max: 63 });
        if (ns !== undefined && !isDnsLabel(ns)) this.v.add('metadata.namespace', `${q(ns)} must be a DNS-1123 label`);
        else if (ns !== undefined) namespace = ns;
      }
      if (meta.has('uid')) {
        const u = this.str(meta.get('uid'), 'metadata.uid', { max: 36 });
        if (u !== undefined && !isUuid(u)) this.v.add('metadata.uid', 'must be a lower-case UUID');
        else uid = u ?? null;
      }
      for (const k of ['labels', 'annotations']) {
        const m = meta.has(k) ? this.obj(meta.get(k), `metadata.${k}`, Object.keys(meta.get(k) ?? {})) : null;
        for (const [key, val] of m ?? []) this.str(val, `metadata.${k}[${q(key)}]`, { max: 4096 });
      }
    }
    if (!top.has('spec')) {
      this.v.add('spec', 'required');
      return null;
    }
    const spec = this.obj(top.get('spec'), 'spec', ['source', 'sourceRef', 'storage', 'pvc', 'contentType', 'preallocation', 'priorityClassName', 'checkpoints', 'finalCheckpoint']);
    if (spec === null) return null;
    const source = this.source(spec);
    const size = this.storage(spec);
    if (spec.has('contentType')) {
      const ct = this.oneOf(spec.get('contentType'), 'spec.contentType', ['kubevirt', 'archive'] as const);
      if (ct === 'archive') this.v.add('spec.contentType', 'archive content (a tar unpacked into a filesystem claim) is not served: this node imports disk images only (contentType kubevirt)');
    }
    if (spec.has('preallocation') && this.bool(spec.get('preallocation'), 'spec.preallocation') === true) this.v.add('spec.preallocation', 'preallocated claims are not served: this node writes sparse disk images');
    if (spec.has('priorityClassName')) this.str(spec.get('priorityClassName'), 'spec.priorityClassName', { max: 253 }); // accepted; no importer pods to prioritise
    if (spec.has('checkpoints') && this.list(spec.get('checkpoints'), 'spec.checkpoints').length > 0) this.v.add('spec.checkpoints', 'multi-stage (warm) imports are not served: they need a VDDK or ImageIO source');
    if (spec.has('finalCheckpoint')) this.bool(spec.get('finalCheckpoint'), 'spec.finalCheckpoint');
    if (name === undefined || source === undefined || size === undefined) return null;
    return { dv: { namespace, name, source, sizeBytes: size.bytes, accessModes: size.accessModes, storageClassName: size.storageClassName }, uid };
  }

  private source(spec: Fields): DataVolumeSource | undefined {
    if (spec.has('sourceRef')) {
      const r = this.obj(spec.get('sourceRef'), 'spec.sourceRef', ['kind', 'namespace', 'name']);
      const what = r?.get('kind') === 'DataSource' ? `DataSource ${String(r.get('name'))}` : 'a source reference';
      this.v.add('spec.sourceRef', `${what} is not served: this node keeps no DataSources (give spec.source)`);
      return undefined;
    }
    if (!spec.has('source')) return this.refuse('spec.source', 'required (exactly one of http, registry, blank, upload, pvc)');
    const s = this.obj(spec.get('source'), 'spec.source', ['http', 'registry', 'blank', 'upload', 'pvc', 's3', 'gcs', 'imageio', 'vddk', 'snapshot']);
    if (s === null) return undefined;
    const kinds = [...s.keys()];
    if (kinds.length !== 1) return this.refuse('spec.source', `must set exactly one source (got ${kinds.length === 0 ? 'none' : kinds.join(', ')})`);
    const kind = kinds[0]!;
    const base = `spec.source.${kind}`;
    const lacks: Record<string, string> = {
      s3: 'S3 imports are not served: this node has no S3 client (use http with a presigned URL)',
      gcs: 'Google Cloud Storage imports are not served: this node has no GCS client (use http)',
      imageio: 'oVirt ImageIO imports are not served: this node has no ImageIO client',
      vddk: 'VMware VDDK imports are not served: this node has no VDDK library',
      snapshot: 'restoring from a VolumeSnapshot is not served: this node has no CSI snapshots',
    };
    if (lacks[kind] !== undefined) return this.refuse(base, lacks[kind]!);
    const v = s.get(kind);
    if (kind === 'blank' || kind === 'upload') return this.obj(v, base, []) === null ? undefined : { kind };
    if (kind === 'pvc') {
      const p = this.obj(v, base, ['namespace', 'name']);
      if (p === null) return undefined;
      const ns = p.has('namespace') ? this.str(p.get('namespace'), `${base}.namespace`, { max: 63 }) : this.refuse(`${base}.namespace`, 'required');
      const name = p.has('name') ? this.str(p.get('name'), `${base}.name`, { max: 253 }) : this.refuse(`${base}.name`, 'required');
      if (ns !== undefined && !isDnsLabel(ns)) return this.refuse(`${base}.namespace`, `${q(ns)} must be a DNS-1123 label`);
      if (name !== undefined && !isDnsSubdomain(name)) return this.refuse(`${base}.name`, `${q(name)} must be a DNS-1123 subdomain`);
      return ns === undefined || name === undefined ? undefined : { kind, namespace: ns, name };
    }
    if (kind === 'registry') {
      const r = this.obj(v, base, ['url', 'imageStream', 'pullMethod', 'secretRef', 'certConfigMap', 'platform']);
      if (r === null) return undefined;
      if (r.has('imageStream')) this.v.add(`${base}.imageStream`, 'OpenShift image streams are not served: give url');
      if (r.has('secretRef')) this.v.add(`${base}.secretRef`, `registry credentials from a Secret are not served: ${NO_K8S}; the node's images.authFile is used`);
      if (r.has('certConfigMap')) this.v.add(`${base}.certConfigMap`, `a CA bundle from a ConfigMap is not served: ${NO_K8S}`);
      if (r.has('pullMethod')) this.oneOf(r.get('pullMethod'), `${base}.pullMethod`, ['pod', 'node'] as const); // both pull through the node's image store
      if (r.has('platform')) {
        const pl = this.obj(r.get('platform'), `${base}.platform`, ['architecture']);
        if (pl?.has('architecture') === true && pl.get('architecture') !== 'amd64') this.v.add(`${base}.platform.architecture`, 'this node imports amd64 images only');
      }
      if (!r.has('url')) return this.refuse(`${base}.url`, 'required');
      const url = this.str(r.get('url'), `${base}.url`, { max: 1024 });
      if (url === undefined) return undefined;
      if (!url.startsWith('docker://') || url.length === 'docker://'.length) return this.refuse(`${base}.url`, `${q(url)} must be docker://<image reference> (oci-archive:// is not served)`);
      return { kind, url };
    }
    // http
    const h = this.obj(v, base, ['url', 'secretRef', 'certConfigMap', 'extraHeaders', 'secretExtraHeaders', 'checksum']);
    if (h === null) return undefined;
    if (h.has('secretRef')) this.v.add(`${base}.secretRef`, `basic-auth credentials from a Secret are not served: ${NO_K8S} (use extraHeaders)`);
    if (h.has('certConfigMap')) this.v.add(`${base}.certConfigMap`, `a CA bundle from a ConfigMap is not served: ${NO_K8S}; the node's CA store is used`);
    if (h.has('secretExtraHeaders')) this.v.add(`${base}.secretExtraHeaders`, `headers from Secrets are not served: ${NO_K8S}`);
    const extraHeaders: string[] = [];
    if (h.has('extraHeaders')) {
      this.list(h.get('extraHeaders'), `${base}.extraHeaders`, { max: 32, noun: 'headers' }).forEach((x, i) => {
        const s = this.str(x, `${base}.extraHeaders[${i}]`, { max: 8192 });
        if (s !== undefined && !HEADER_RE.test(s)) this.v.add(`${base}.extraHeaders[${i}]`, "must be 'Name: value' (an HTTP header field)");
        else if (s !== undefined) extraHeaders.push(s);
      });
    }
    let checksum: string | null = null;
    if (h.has('checksum')) {
      const c = this.str(h.get('checksum'), `${base}.checksum`, { max: 140 });
      if (c !== undefined && !CHECKSUM_RE.test(c)) this.v.add(`${base}.checksum`, 'must be sha256:<64 hex>, sha512:<128 hex> or md5:<32 hex>');
      else checksum = c ?? null;
    }
    if (!h.has('url')) return this.refuse(`${base}.url`, 'required');
    const url = this.str(h.get('url'), `${base}.url`, { max: 4096 });
    if (url === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return this.refuse(`${base}.url`, `${q(url)} is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return this.refuse(`${base}.url`, `scheme ${q(parsed.protocol.replace(/:$/, ''))} is not served: http or https only`);
    if (parsed.username !== '' || parsed.password !== '') return this.refuse(`${base}.url`, 'must not carry credentials (they would show in status and events); use extraHeaders');
    return { kind: 'http', url, checksum, extraHeaders };
  }

  /** spec.storage or spec.pvc (exactly one): the size, access modes and class. */
  private storage(spec: Fields): { bytes: number; accessModes: string[]; storageClassName: string | null } | undefined {
    const both = ['storage', 'pvc'].filter((k) => spec.has(k));
    if (both.length !== 1) return this.refuse('spec', `must set exactly one of storage, pvc (got ${both.length === 0 ? 'none' : 'both'})`);
    const key = both[0]!;
    const base = `spec.${key}`;
    const s = this.obj(spec.get(key), base, ['accessModes', 'volumeMode', 'resources', 'storageClassName', 'selector', 'volumeName', 'dataSource', 'dataSourceRef', 'volumeAttributesClassName']);
    if (s === null) return undefined;
    for (const [k, why] of [['selector', 'a persistent volume selector (this node binds no PersistentVolumes)'], ['volumeName', 'binding to a named PersistentVolume (this node has none)'],
      ['dataSource', 'a populator data source (give spec.source)'], ['dataSourceRef', 'a populator data source (give spec.source)'], ['volumeAttributesClassName', 'volume attribute classes (no CSI driver on this node)']] as const) {
      if (s.has(k)) this.v.add(`${base}.${k}`, `${why} is not served`);
    }
    const accessModes: string[] = [];
    if (s.has('accessModes')) {
      this.list(s.get('accessModes'), `${base}.accessModes`).forEach((m, i) => {
        const mode = this.oneOf(m, `${base}.accessModes[${i}]`, ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'] as const);
        if (mode === 'ReadWriteMany') this.v.add(`${base}.accessModes[${i}]`, 'ReadWriteMany is not served: claims are local to this node (no shared storage)');
        else if (mode !== undefined) accessModes.push(mode);
      });
    } else if (key === 'pvc') {
      this.v.add(`${base}.accessModes`, 'required');
    }
    if (s.has('volumeMode') && this.oneOf(s.get('volumeMode'), `${base}.volumeMode`, ['Filesystem', 'Block'] as const) === 'Block') {
      this.v.add(`${base}.volumeMode`, 'Block is not served for DataVolumes: the importer fills filesystem claims (disk.img); a block claim is a device node an administrator provides');
    }
    const storageClassName = s.has('storageClassName') ? this.str(s.get('storageClassName'), `${base}.storageClassName`, { max: 253 }) ?? null : null;
    const res = s.has('resources') ? this.obj(s.get('resources'), `${base}.resources`, ['requests', 'limits']) : null;
    const req = res?.has('requests') === true ? this.obj(res.get('requests'), `${base}.resources.requests`, ['storage']) : null;
    if (res?.has('limits') === true) this.obj(res.get('limits'), `${base}.resources.limits`, ['storage']);
    if (req?.has('storage') !== true) return this.refuse(`${base}.resources.requests.storage`, 'required: the claim size (this node does not infer sizes)');
    const bytes = this.bytes(req.get('storage'), `${base}.resources.requests.storage`, MIN_BYTES, this.maxBytes);
    return bytes === undefined ? undefined : { bytes, accessModes: accessModes.length > 0 ? accessModes : ['ReadWriteOnce'], storageClassName };
  }
}

/** Validates a parsed DataVolume manifest; every violation names its field path. */
export function validateDataVolume(value: unknown, maxBytes = DEFAULT_MAX_DV_BYTES): DataVolumeValidation {
  const v = new Violations();
  const r = new DataVolumeReader(v, maxBytes).manifest(value);
  if (r === null || v.count > 0) {
    const list = v.list();
    return { ok: false, violations: list.length > 0 ? list : [{ field: 'manifest', message: 'invalid DataVolume' }] };
  }
  return { ok: true, ...r };
}
