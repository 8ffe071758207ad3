/**
 * metadata of a VMI manifest (validate.ts's part): name and namespace (DNS-1123 labels), uid
 * (a lower-case canonical UUID, not nil), generation, labels (<= 256, API-server key/value rules)
 * and annotations (<= 1024 entries, label-key rules, keys + values <= 256 KiB in UTF-8). KubeVirt
 * annotations that change what runs are requirements. Server-populated fields are accepted by
 * the schema and not read.
 */
import { isValidLabelKey, isValidLabelValue } from '../../node/labels';
import { FieldReader, type Violations, child, isPlainObject, q } from './field-reader';
import { isUuid } from './ids';
import type { NormalizedVmi, VmiRequirement } from './types';

const MAX_LABELS = 256;
const MAX_ANNOTATIONS = 1024;
const MAX_ANNOTATION_BYTES = 256 * 1024;

/** KubeVirt annotations that change what runs; anything else in annotations is only kept. */
const BEHAVIOUR_ANNOTATIONS: ReadonlyArray<[string, string]> = [
  ['hooks.kubevirt.io/hookSidecars', 'hook sidecars (this node runs no sidecar containers)'],
];


export class MetadataReader extends FieldReader {
  constructor(v: Violations, private readonly reqs: VmiRequirement[]) {
    super(v);
    this.strict = false; // the schema walker reports unknown fields
  }

  read(value: unknown): Pick<NormalizedVmi, 'uid' | 'namespace' | 'name' | 'generation' | 'labels' | 'annotations'> | null {
    if (value === undefined) {
      this.v.add('metadata', 'required');
      return null;
    }
    const m = this.obj(value, 'metadata', ['name', 'namespace', 'uid', 'labels', 'annotations', 'generation']);
    if (m === null) return null;
    let name: string | undefined;
    if (m.has('name')) name = this.dnsLabel(m.get('name'), 'metadata.name');
    else this.v.add('metadata.name', 'required');
    const namespace = m.has('namespace') ? this.dnsLabel(m.get('namespace'), 'metadata.namespace') : 'default';
    let uid = '';
    if (m.has('uid')) {
      const s = this.str(m.get('uid'), 'metadata.uid', { max: 64 });
      if (s !== undefined && !isUuid(s)) this.v.add('metadata.uid', `${q(s)} must be a lower-case UUID`);
      else if (s !== undefined && /^[0-]+$/.test(s)) this.v.add('metadata.uid', 'must not be the nil UUID');
      else if (s !== undefined) uid = s;
    }
    const generation = m.has('generation') ? this.int(m.get('generation'), 'metadata.generation', 0, Number.MAX_SAFE_INTEGER) : 1;
    const labels = this.stringMap(m.get('labels'), 'metadata.labels', false);
    const annotations = this.stringMap(m.get('annotations'), 'metadata.annotations', true);
    for (const [key, what] of BEHAVIOUR_ANNOTATIONS) {
      if (Object.hasOwn(annotations, key)) this.reqs.push({ field: child('metadata.annotations', key), needs: what });
    }
    if (name === undefined || namespace === undefined) return null;
    return { uid, namespace, name, generation: generation ?? 1, labels, annotations };
  }

  /** metadata.labels (annotations=false) or metadata.annotations. */
  private stringMap(value: unknown, field: string, annotations: boolean): Record<string, string> {
    // Object.fromEntries defines own data properties, so even a '__proto__' key could not
    // reach a prototype (and isValidLabelKey refuses it anyway).
    const entries: Array<[string, string]> = [];
    if (value === undefined) return {};
    if (!isPlainObject(value)) {
      this.v.add(field, 'must be an object');
      return {};
    }
    const keys = Object.keys(value);
    const maxEntries = annotations ? MAX_ANNOTATIONS : MAX_LABELS;
    if (keys.length > maxEntries) this.v.add(field, `must have at most ${maxEntries} entries (has ${keys.length})`);
    let total = 0;
    for (const key of keys.slice(0, maxEntries)) {
      const f = child(field, key);
      const desc = Object.getOwnPropertyDescriptor(value, key);
      const raw = desc !== undefined && 'value' in desc ? (desc.value as unknown) : undefined;
      if (!isValidLabelKey(key)) this.v.add(f, 'is not a valid key (optional DNS prefix "/" plus a name of at most 63 [A-Za-z0-9._-] characters)');
      const s = annotations ? this.str(raw, f, { max: MAX_ANNOTATION_BYTES, multiline: true }) : this.str(raw, f, { max: 63 });
      if (s === undefined) continue;
      if (!annotations && !isValidLabelValue(s)) {
        this.v.add(f, `${q(s)} is not a valid label value (at most 63 [A-Za-z0-9._-] characters, alphanumeric ends)`);
        continue;
      }
      total += Buffer.byteLength(key) + Buffer.byteLength(s);
      entries.push([key, s]);
    }
    if (annotations && total > MAX_ANNOTATION_BYTES) this.v.add(field, `total size ${total} bytes exceeds 256 KiB`);
    return Object.fromEntries(entries);
  }
}
