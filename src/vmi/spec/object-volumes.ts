/**
 * The volume sources that name Kubernetes objects (volume-sources.ts's part for them): configMap,
 * secret, serviceAccount and sysprep by name, downwardAPI by field path. Only references are
 * checked here; the objects are read from the node's object root when the VMI starts (they may
 * appear later), so a NormalizedVolume never holds their content.
 *
 * Object names become path components under the object root: they must be DNS-1123
 * subdomains (what Kubernetes allows), which have no '/', no '..' and no leading '.'.
 */
import { FieldReader, type Fields, type Violations } from './field-reader';
import type { DownwardApiField, NormalizedVolume } from './types';

/** A Kubernetes object name (DNS-1123 subdomain). */
export const OBJECT_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAX_OBJECT_NAME = 253;
/** An ISO volume id this node writes (genisoimage -volid; ISO 9660 allows 32 characters). */
export const VOLUME_LABEL_RE = /^[A-Za-z0-9 _.:-]{1,32}$/;
/** The fieldPaths kubelet allows in a downward API volume (metadata only; labels/annotations also with a ['key'] subscript). */
export const DOWNWARD_FIELD_RE = /^metadata\.(name|namespace|uid|labels|annotations)$|^metadata\.(labels|annotations)\['[^'\s]{1,317}'\]$/;
const MAX_DOWNWARD_FIELDS = 64;

/** A downward API item path as kubelet checks it: relative, no '..' component, not starting with '..'. */
export function downwardPathProblem(p: string): string | null {
  if (p === '') return 'must not be empty';
  if (p.startsWith('/')) return 'must be a relative path';
  if (p.startsWith('..')) return "must not start with '..'";
  if (p.split('/').some((c) => c === '..' || c === '.' || c === '')) return "must not contain '..', '.' or empty components";
  if (Buffer.byteLength(p) > 1024) return 'must be at most 1024 bytes';
  return null;
}

export class ObjectVolumeReader extends FieldReader {
  private serviceAccounts = 0;

  constructor(v: Violations) {
    super(v);
    this.strict = false; // the schema walker reports unknown fields
  }

  /** A Kubernetes object name at `field`; undefined (and a violation) when missing or malformed. */
  objectName(value: unknown, field: string): string | undefined {
    if (value === undefined) return this.refuse(field, 'required');
    const s = this.str(value, field, { max: MAX_OBJECT_NAME });
    if (s === undefined) return undefined;
    if (!OBJECT_NAME_RE.test(s)) return this.refuse(field, `${JSON.stringify(s)} must be a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.')`);
    return s;
  }

  read(kind: string, value: unknown, base: string, name: string): NormalizedVolume | null {
    switch (kind) {
      case 'configMap':
      case 'secret': {
        const nameKey = kind === 'configMap' ? 'name' : 'secretName';
        const s = this.obj(value, base, [nameKey, 'optional', 'volumeLabel']);
        if (s === null) return null;
        const object = this.objectName(s.get(nameKey), `${base}.${nameKey}`);
        const optional = s.has('optional') ? this.bool(s.get('optional'), `${base}.optional`) : false;
        const volumeLabel = this.label(s, base);
        if (object === undefined || optional === undefined || volumeLabel === undefined) return null;
        return { kind, name, object, optional, volumeLabel };
      }
      case 'serviceAccount': {
        const s = this.obj(value, base, ['serviceAccountName']);
        if (s === null) return null;
        // KubeVirt's admission allows one: the pod has one service account.
        if (++this.serviceAccounts > 1) return this.refuse(base, 'only one serviceAccount volume is allowed') ?? null;
        const object = this.objectName(s.get('serviceAccountName'), `${base}.serviceAccountName`);
        return object === undefined ? null : { kind, name, object };
      }
      case 'sysprep': {
        const s = this.obj(value, base, ['configMap', 'secret']);
        if (s === null) return null;
        const given = (['configMap', 'secret'] as const).filter((k) => s.has(k));
        if (given.length !== 1) return this.refuse(base, 'must set exactly one of configMap, secret') ?? null;
        const source = given[0] as 'configMap' | 'secret';
        const ref = this.obj(s.get(source), `${base}.${source}`, ['name']);
        const object = ref === null ? undefined : this.objectName(ref.get('name'), `${base}.${source}.name`);
        return object === undefined ? null : { kind, name, source, object };
      }
      case 'downwardAPI':
        return this.downwardApi(value, base, name);
      default:
        return null;
    }
  }

  private label(s: Fields, base: string): string | null | undefined {
    if (!s.has('volumeLabel') || s.get('volumeLabel') === '') return null;
    const l = this.str(s.get('volumeLabel'), `${base}.volumeLabel`, { max: 64 });
    if (l === undefined) return undefined;
    if (!VOLUME_LABEL_RE.test(l)) return this.refuse(`${base}.volumeLabel`, `${JSON.stringify(l)} must be 1-32 characters of [A-Za-z0-9 _.:-] (an ISO 9660 volume id)`);
    return l;
  }

  /** One downwardAPI item: the field, null when unusable (violations added), 'pod' for a resourceFieldRef (a requirement). */
  private downwardField(item: unknown, at: string, paths: Set<string>): DownwardApiField | 'pod' | null {
    const f = this.obj(item, at, ['path', 'mode', 'fieldRef', 'resourceFieldRef']);
    if (f === null) return null;
    const p = f.has('path') ? this.str(f.get('path'), `${at}.path`, { max: 1024 }) : this.refuse(`${at}.path`, 'required');
    const problem = p === undefined ? null : downwardPathProblem(p);
    if (problem !== null) this.v.add(`${at}.path`, problem);
    else if (p !== undefined && paths.has(p)) this.v.add(`${at}.path`, `duplicate path ${JSON.stringify(p)}`);
    else if (p !== undefined) paths.add(p);
    const mode = f.has('mode') ? this.int(f.get('mode'), `${at}.mode`, 0, 0o777) : null;
    if (['fieldRef', 'resourceFieldRef'].filter((k) => f.has(k)).length !== 1) return this.refuse(at, 'must set exactly one of fieldRef, resourceFieldRef') ?? null;
    if (f.has('resourceFieldRef')) return 'pod'; // the schema lists the requirement
    const ref = this.obj(f.get('fieldRef'), `${at}.fieldRef`, ['apiVersion', 'fieldPath']);
    if (ref === null) return null;
    const apiVersion = ref.get('apiVersion');
    if (apiVersion !== undefined && apiVersion !== 'v1' && apiVersion !== '') this.v.add(`${at}.fieldRef.apiVersion`, 'must be v1');
    const fp = ref.has('fieldPath') ? this.str(ref.get('fieldPath'), `${at}.fieldRef.fieldPath`, { max: 400 }) : this.refuse(`${at}.fieldRef.fieldPath`, 'required');
    if (fp !== undefined && !DOWNWARD_FIELD_RE.test(fp)) {
      return this.refuse(`${at}.fieldRef.fieldPath`, `${JSON.stringify(fp)} is not supported in a downward API volume (metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, or metadata.labels['key'] / metadata.annotations['key'])`) ?? null;
    }
    if (p === undefined || problem !== null || fp === undefined || mode === undefined) return null;
    return { path: p, fieldPath: fp, mode };
  }

  private downwardApi(value: unknown, base: string, name: string): NormalizedVolume | null {
    const s = this.obj(value, base, ['volumeLabel', 'fields']);
    if (s === null) return null;
    const volumeLabel = this.label(s, base);
    const items = s.has('fields') ? this.list(s.get('fields'), `${base}.fields`, { max: MAX_DOWNWARD_FIELDS, noun: 'fields' }) : [];
    const fields: DownwardApiField[] = [];
    const paths = new Set<string>();
    let ok = volumeLabel !== undefined;
    let needsPod = false;
    items.forEach((item, i) => {
      const field = this.downwardField(item, `${base}.fields[${i}]`, paths);
      if (field === 'pod') needsPod = true;
      else if (field === null) ok = false;
      else fields.push(field);
    });
    if (!ok || needsPod || volumeLabel === undefined) return null;
    return { kind: 'downwardAPI', name, volumeLabel, fields };
  }
}
