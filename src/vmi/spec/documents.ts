/**
 * A file of several manifests (YAML `---` documents, or a JSON object / `kind: List`) to the
 * objects a node can act on, classified by apiVersion/kind. manifest.ts stays the one-object
 * parser the daemon uses; this is its multi-document sibling for vhctl, with the same safety
 * rules per document: 1 MiB in all, no aliases, only core tags, no duplicate keys.
 *
 * What a node takes: VirtualMachineInstance, VirtualMachine (expanded to a VMI by
 * virtual-machine.ts), and the instancetype/preference kinds (instancetype.ts). Everything
 * else gets one sentence saying why it is not for a node, or that it is not supported yet.
 * A document without kind is taken as a VMI (what vhctl always sent), for the daemon to judge.
 * Pure and never throws.
 */
import { LineCounter, isAlias, isNode, parseAllDocuments, visit } from 'yaml';
import { MAX_MANIFEST_BYTES } from './manifest';
import { isPlainObject, q } from './field-reader';
import type { FieldViolation } from './types';

export const INSTANCETYPE_KINDS = ['VirtualMachineInstancetype', 'VirtualMachineClusterInstancetype'] as const;
export const PREFERENCE_KINDS = ['VirtualMachinePreference', 'VirtualMachineClusterPreference'] as const;
export type InstancetypeKind = (typeof INSTANCETYPE_KINDS)[number];
export type PreferenceKind = (typeof PREFERENCE_KINDS)[number];

/** The apiVersions accepted per node-level kind (v1alpha3 is still served by KubeVirt for VMs/VMIs). */
const CORE_VERSIONS = ['kubevirt.io/v1', 'kubevirt.io/v1alpha3'];
const INSTANCETYPE_VERSIONS = ['instancetype.kubevirt.io/v1beta1', 'instancetype.kubevirt.io/v1'];

/** One document of the input, classified. `index` counts from 1 over non-empty documents. */
export type Document =
  | { type: 'vmi'; index: number; label: string; name: string; value: unknown }
  | { type: 'vm'; index: number; label: string; name: string; value: Record<string, unknown> }
  | { type: 'instancetype'; index: number; label: string; name: string; kind: InstancetypeKind; value: Record<string, unknown> }
  | { type: 'preference'; index: number; label: string; name: string; kind: PreferenceKind; value: Record<string, unknown> }
  | { type: 'refused'; index: number; label: string; name: string; kind: string; message: string }
  /** A CDI DataVolume (cdi.kubevirt.io/v1beta1 or v1alpha1): the daemon's DataVolumeService validates it. */
  | { type: 'dataVolume'; index: number; label: string; name: string; value: Record<string, unknown> };

/**
 * Parse failures refuse the whole file (positions in it are no longer trustworthy). `whole`:
 * the text is exactly one document, not a List (it may then be passed on as written).
 */
export type DocumentsResult = { ok: true; documents: Document[]; whole: boolean } | { ok: false; violations: FieldViolation[] };

const NOT_NODE = 'not a node-level object';
/** DataVolume apiVersions (CDI). */
export const CDI_VERSIONS = ['cdi.kubevirt.io/v1beta1', 'cdi.kubevirt.io/v1alpha1'];
/** Kinds a node never takes, with the reason an operator needs. */
const REFUSALS: Record<string, string> = {
  VirtualMachinePool: `${NOT_NODE}: a cluster controller expands pools into VirtualMachines; give this node the VirtualMachine(s) instead`,
  VirtualMachineInstanceReplicaSet: `${NOT_NODE}: a cluster controller keeps replicas of a VMI template across nodes; give this node the VirtualMachineInstance(s) instead`,
  VirtualMachineInstancePreset: `${NOT_NODE}: the cluster's API server applies presets (deprecated) to VMIs as they are created; write their settings into the VMI instead`,
  PriorityClass: `${NOT_NODE}: priorities order the cluster scheduler's work; this node runs what it is given`,
  MigrationPolicy: `${NOT_NODE}: migration policies are cluster configuration for virt-controller`,
  VirtualMachineInstanceMigration: 'not supported yet: live migration between nodes is planned for this node agent; nothing to do for it today',
  Secret: `${NOT_NODE}: the API server stores Secrets and this node reads none yet; put the data into the VMI (cloudInitNoCloud.userData)`,
  ConfigMap: `${NOT_NODE}: the API server stores ConfigMaps and this node reads none yet; put the data into the VMI`,
  PersistentVolumeClaim: `${NOT_NODE}: claims on this node are directories under volumes.claimRoot (<namespace>/<name>/disk.img, or a block device node 'disk'); create one there, or use a DataVolume`,
  Service: `${NOT_NODE}: Services are cluster networking`,
  ResourceClaimTemplate: `${NOT_NODE}: dynamic resource allocation is the cluster scheduler's`,
  VirtualMachineSnapshot: `${NOT_NODE}: snapshots are driven by virt-controller`,
  VirtualMachineRestore: `${NOT_NODE}: restores are driven by virt-controller`,
  VirtualMachineClone: `${NOT_NODE}: clones are driven by virt-controller`,
  VirtualMachineExport: `${NOT_NODE}: exports are served by the cluster`,
  KubeVirt: `${NOT_NODE}: the KubeVirt CR configures the cluster's operator`,
};

/** Parses every document of `text` and classifies it. */
export function parseDocuments(text: string): DocumentsResult {
  try {
    if (typeof text !== 'string') return fail('must be text');
    if (Buffer.byteLength(text, 'utf8') > MAX_MANIFEST_BYTES) return fail(`is larger than ${MAX_MANIFEST_BYTES} bytes (1 MiB)`);
    const body = text.replace(/^\uFEFF/, '');
    if (body.trim() === '') return fail('is empty');
    const values = /^\s*[[{]/.test(body) ? parseJson(body) : parseYaml(body);
    if (!values.ok) return values;
    const flat: unknown[] = [];
    let lists = 0;
    for (const v of values.values) {
      // kubectl's `kind: List` (what `get -o yaml` prints for several objects) holds documents.
      if (isPlainObject(v) && (v as Record<string, unknown>).kind === 'List' && Array.isArray((v as Record<string, unknown>).items)) {
        flat.push(...((v as Record<string, unknown>).items as unknown[]));
        lists += 1;
      } else flat.push(v);
    }
    if (flat.length === 0) return fail('contains no document');
    return { ok: true, documents: flat.map((v, i) => classify(v, i + 1)), whole: flat.length === 1 && lists === 0 };
  } catch (e) {
    return fail(`cannot be parsed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function fail(message: string, pos?: { line: number; col: number }): { ok: false; violations: FieldViolation[] } {
  const where = pos === undefined ? '' : `line ${pos.line}, column ${pos.col}: `;
  return { ok: false, violations: [{ field: 'manifest', message: `${where}${message}` }] };
}

type Values = { ok: true; values: unknown[] } | { ok: false; violations: FieldViolation[] };

function parseJson(text: string): Values {
  try {
    return { ok: true, values: [JSON.parse(text) as unknown] };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const m = /at position (\d+)/.exec(message);
    let pos;
    if (m !== null) {
      const before = text.slice(0, Number(m[1]));
      pos = { line: before.split('\n').length, col: Number(m[1]) - before.lastIndexOf('\n') };
    }
    return fail(`invalid JSON: ${message.replace(/ in JSON at position \d+.*$/s, '')}`, pos);
  }
}

const ALLOWED_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `tag:yaml.org,2002:${t}`));

function parseYaml(text: string): Values {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, schema: 'core', strict: true });
  const list = Array.isArray(docs) ? docs : [];
  const values: unknown[] = [];
  const violations: FieldViolation[] = [];
  for (const doc of list) {
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem !== undefined) {
      const pos = problem.linePos?.[0] ?? lineCounter.linePos(problem.pos[0]);
      violations.push(...fail(`invalid YAML: ${problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, pos).violations);
      continue;
    }
    // `---` at the start or end of a file makes an empty document: nothing to do, not an error.
    if (doc.contents === null) continue;
    let refusal: FieldViolation[] | null = null;
    visit(doc, (_key, node) => {
      if (!isNode(node)) return undefined;
      const pos = node.range === null || node.range === undefined ? undefined : lineCounter.linePos(node.range[0]);
      if (isAlias(node)) refusal = fail(`YAML aliases are not allowed (found *${node.source})`, pos).violations;
      else if (typeof node.tag === 'string' && !ALLOWED_TAGS.has(node.tag)) refusal = fail(`YAML tag ${JSON.stringify(node.tag)} is not allowed`, pos).violations;
      return refusal === null ? undefined : visit.BREAK;
    });
    if (refusal !== null) violations.push(...(refusal as FieldViolation[]));
    else {
      const value = doc.toJS({ maxAliasCount: 0 }) as unknown;
      if (value !== null) values.push(value); // a bare `---` at the end parses as a null document
    }
  }
  return violations.length > 0 ? { ok: false, violations } : { ok: true, values };
}

/** `document 2 (kind VirtualMachinePool "vm-pool-cirros")`: how messages name a document. */
export function documentLabel(index: number, kind: string, name: string): string {
  return `document ${index} (kind ${kind || '(none)'}${name ? ` ${q(name)}` : ''})`;
}

function ownString(o: Record<string, unknown>, key: string): string {
  const d = Object.getOwnPropertyDescriptor(o, key);
  return d !== undefined && 'value' in d && typeof d.value === 'string' ? d.value : '';
}

function classify(value: unknown, index: number): Document {
  if (!isPlainObject(value)) {
    return { type: 'refused', index, label: documentLabel(index, '', ''), name: '', kind: '', message: 'must be an object (a Kubernetes-style manifest)' };
  }
  const o = value as Record<string, unknown>;
  const kind = ownString(o, 'kind');
  const apiVersion = ownString(o, 'apiVersion');
  const meta = isPlainObject(o.metadata) ? (o.metadata as Record<string, unknown>) : {};
  const name = ownString(meta, 'name');
  const label = documentLabel(index, kind, name);
  const refused = (message: string): Document => ({ type: 'refused', index, label, name, kind, message });
  const versionOk = (allowed: readonly string[]): boolean => apiVersion === '' || allowed.includes(apiVersion);
  const wrongVersion = (allowed: readonly string[]): Document => refused(`apiVersion ${q(apiVersion)} is not served for kind ${kind} (expected ${allowed.join(' or ')})`);

  if (kind === '' || kind === 'VirtualMachineInstance') {
    if (!versionOk(CORE_VERSIONS)) return wrongVersion(CORE_VERSIONS);
    return { type: 'vmi', index, label, name, value };
  }
  if (kind === 'VirtualMachine') {
    if (!versionOk(CORE_VERSIONS)) return wrongVersion(CORE_VERSIONS);
    return { type: 'vm', index, label, name, value: o };
  }
  if ((INSTANCETYPE_KINDS as readonly string[]).includes(kind)) {
    if (!versionOk(INSTANCETYPE_VERSIONS)) return wrongVersion(INSTANCETYPE_VERSIONS);
    return { type: 'instancetype', index, label, name, kind: kind as InstancetypeKind, value: o };
  }
  if ((PREFERENCE_KINDS as readonly string[]).includes(kind)) {
    if (!versionOk(INSTANCETYPE_VERSIONS)) return wrongVersion(INSTANCETYPE_VERSIONS);
    return { type: 'preference', index, label, name, kind: kind as PreferenceKind, value: o };
  }
  if (kind === 'DataVolume') {
    if (!versionOk(CDI_VERSIONS)) return wrongVersion(CDI_VERSIONS);
    return { type: 'dataVolume', index, label, name, value: o };
  }
  const reason = Object.hasOwn(REFUSALS, kind) ? REFUSALS[kind] : undefined;
  if (reason !== undefined) return refused(reason);
  return refused(`unknown kind ${q(kind)} (apiVersion ${q(apiVersion)}): this node takes VirtualMachineInstance, VirtualMachine, `
    + 'VirtualMachine(Cluster)Instancetype, VirtualMachine(Cluster)Preference and DataVolume');
}
