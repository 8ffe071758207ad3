/**
 * A kubevirt.io/v1 VirtualMachine to the VirtualMachineInstance this node runs, as
 * virt-controller's SetupVMIFromVM builds it: the template's metadata and spec, the VM's name
 * and namespace, the template's labels, a disk for each volume no disk names; instancetype and
 * preference applied (instancetype.ts).
 *
 * runStrategy: KubeVirt keeps it on the VM and virt-controller creates or deletes the VMI to
 * follow it. This node has no VM controller: the VMI record is the one object it keeps, so the
 * VM's run strategy travels as the VMI's spec.runStrategy (types.ts), and the node's VMI
 * state machine does what virt-controller would (Halted: keep the record, do not start;
 * Always: restart; ...). The deprecated `running` maps as KubeVirt's VirtualMachine.RunStrategy():
 * true -> Always, false -> Halted; neither -> Halted; both -> refused.
 *
 * Strict like the VMI validator: every field not listed here is a violation with its path.
 * The template's spec itself is left to validateVmi (paths mapped back by vmFieldPath).
 * dataVolumeTemplates become DataVolume manifests (VmResult.dataVolumes) that vhctl creates
 * before the VMI; the VMI waits for them (DataVolumesReady) as KubeVirt's does.
 * Pure and never throws.
 */
import { child, isPlainObject, q, Violations } from './field-reader';
import { RUN_STRATEGIES, type FieldViolation, type RunStrategy } from './types';
import { INSTANCETYPE_KINDS, PREFERENCE_KINDS, type InstancetypeKind, type PreferenceKind } from './documents';
import { applyInstancetype, type Instancetype, type Preference } from './instancetype';
import { legacyFirmwareUuid } from './defaults';

type Obj = Record<string, unknown>;

/** Where the VM's instancetypes and preferences are found (the same vhctl call, then its cache). */
export interface ObjectLookup {
  instancetype(kind: InstancetypeKind, namespace: string | null, name: string): Instancetype | null;
  preference(kind: PreferenceKind, namespace: string | null, name: string): Preference | null;
}

/** Annotation naming the VM a VMI was built from (KubeVirt uses an ownerReference; this node keeps none). */
export const OWNER_ANNOTATION = 'virt-handler/owner';

export type VmResult =
  | { ok: true; vmi: Obj; runStrategy: RunStrategy; instancetype: Instancetype | null; preference: Preference | null; /** spec.dataVolumeTemplates as DataVolume manifests (namespace of the VM), to create before the VMI */ dataVolumes: Obj[] }
  | { ok: false; violations: FieldViolation[] };

const TOP = ['apiVersion', 'kind', 'metadata', 'spec'];
const META = ['name', 'namespace', 'labels', 'annotations', 'creationTimestamp'];
const SPEC = ['running', 'runStrategy', 'template', 'instancetype', 'preference', 'dataVolumeTemplates', 'updateVolumesStrategy'];
const TEMPLATE_META = ['name', 'namespace', 'generateName', 'labels', 'annotations', 'creationTimestamp'];
const MATCHER = ['name', 'kind', 'revisionName', 'inferFromVolume', 'inferFromVolumeFailurePolicy'];

const obj = (v: unknown): Obj | undefined => (isPlainObject(v) ? (v as Obj) : undefined);

function keys(v: Violations, value: Obj, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(value)) {
    if (allowed.includes(k)) continue;
    v.add(child(field, k), k === 'status' && field === '' ? 'server-populated: remove it' : 'unknown field');
  }
}

/** `creationTimestamp: null` is what Go clients print for an unset time; anything else is server state. */
function checkTimestamp(v: Violations, meta: Obj, field: string): void {
  if (Object.hasOwn(meta, 'creationTimestamp') && meta.creationTimestamp !== null) v.add(child(field, 'creationTimestamp'), 'server-populated: remove it');
}

function stringMap(v: Violations, value: unknown, field: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  const o = obj(value);
  if (o === undefined || !Object.values(o).every((x) => typeof x === 'string')) {
    v.add(field, 'must be a map of strings');
    return undefined;
  }
  return { ...(o as Record<string, string>) };
}

function matcher<K extends string>(v: Violations, value: unknown, field: string, kinds: readonly K[]): { kind: K; name: string } | null {
  if (value === undefined) return null;
  const m = obj(value);
  if (m === undefined) return void v.add(field, 'must be an object'), null;
  keys(v, m, field, MATCHER);
  if (m.inferFromVolume !== undefined) v.add(child(field, 'inferFromVolume'), 'not supported on this node: it cannot read volume labels; name the object');
  // revisionName pins a ControllerRevision, a cluster object: the node uses the object it was given.
  let kind = kinds[1]!; // KubeVirt's default: the cluster-wide kind
  if (m.kind !== undefined) {
    const found = kinds.find((k) => typeof m.kind === 'string' && k.toLowerCase() === m.kind.toLowerCase());
    if (found === undefined) v.add(child(field, 'kind'), `must be one of ${kinds.join(', ')} (got ${q(String(m.kind))})`);
    else kind = found;
  }
  if (typeof m.name !== 'string' || m.name === '') {
    if (m.inferFromVolume === undefined) v.add(child(field, 'name'), 'required');
    return null;
  }
  return { kind, name: m.name };
}

/** Builds the VMI for a VirtualMachine document, or every violation with its path in the VM. */
export function vmToVmi(value: Obj, lookup: ObjectLookup): VmResult {
  const v = new Violations();
  keys(v, value, '', [...TOP, 'status']);
  if (Object.hasOwn(value, 'status')) v.add('status', 'server-populated: remove it');
  const meta = obj(value.metadata);
  let name = '';
  let namespace: string | undefined;
  if (meta === undefined) v.add('metadata', 'required: an object with name');
  else {
    keys(v, meta, 'metadata', META);
    checkTimestamp(v, meta, 'metadata');
    if (typeof meta.name !== 'string' || meta.name === '') v.add('metadata.name', 'required');
    else name = meta.name;
    if (meta.namespace !== undefined) {
      if (typeof meta.namespace !== 'string') v.add('metadata.namespace', 'must be a string');
      else namespace = meta.namespace;
    }
    stringMap(v, meta.labels, 'metadata.labels');
    stringMap(v, meta.annotations, 'metadata.annotations');
  }
  const spec = obj(value.spec);
  if (spec === undefined) {
    v.add('spec', 'required: must be an object');
    return { ok: false, violations: v.list() };
  }
  keys(v, spec, 'spec', SPEC);

  let runStrategy: RunStrategy = 'Halted';
  if (spec.running !== undefined && spec.running !== null && spec.runStrategy !== undefined && spec.runStrategy !== null) {
    v.add('spec.running', 'running and runStrategy are mutually exclusive (running is deprecated: keep runStrategy)');
  } else if (spec.running !== undefined && spec.running !== null) {
    if (typeof spec.running !== 'boolean') v.add('spec.running', 'must be true or false');
    else runStrategy = spec.running ? 'Always' : 'Halted';
  } else if (spec.runStrategy !== undefined && spec.runStrategy !== null) {
    if (!(RUN_STRATEGIES as readonly unknown[]).includes(spec.runStrategy)) {
      v.add('spec.runStrategy', spec.runStrategy === 'WaitAsReceiver'
        ? 'WaitAsReceiver is for a migration target, not supported on this node yet'
        : `must be one of ${RUN_STRATEGIES.join(', ')} (got ${q(String(spec.runStrategy))})`);
    } else runStrategy = spec.runStrategy as RunStrategy;
  }
  const dataVolumes = dataVolumeTemplates(v, spec.dataVolumeTemplates, namespace ?? 'default');
  if (spec.updateVolumesStrategy !== undefined && spec.updateVolumesStrategy !== 'Replacement' && spec.updateVolumesStrategy !== 'Migration') {
    v.add('spec.updateVolumesStrategy', 'must be Replacement or Migration');
  }
  const itRef = matcher(v, spec.instancetype, 'spec.instancetype', INSTANCETYPE_KINDS);
  const prefRef = matcher(v, spec.preference, 'spec.preference', PREFERENCE_KINDS);

  const template = obj(spec.template);
  let tMeta: Obj = {};
  let tSpec: Obj | undefined;
  if (template === undefined) v.add('spec.template', 'required: an object with the VMI spec');
  else {
    keys(v, template, 'spec.template', ['metadata', 'spec']);
    if (template.metadata !== undefined && template.metadata !== null) {
      const m = obj(template.metadata);
      if (m === undefined) v.add('spec.template.metadata', 'must be an object');
      else {
        keys(v, m, 'spec.template.metadata', TEMPLATE_META);
        checkTimestamp(v, m, 'spec.template.metadata');
        tMeta = m;
      }
    }
    tSpec = obj(template.spec);
    if (tSpec === undefined) v.add('spec.template.spec', 'required: the VMI spec');
    else if (Object.hasOwn(tSpec, 'runStrategy')) v.add('spec.template.spec.runStrategy', 'set it on the VirtualMachine (spec.runStrategy), not in its template');
  }
  const labels = stringMap(v, tMeta.labels, 'spec.template.metadata.labels');
  const annotations = stringMap(v, tMeta.annotations, 'spec.template.metadata.annotations') ?? {};

  const ns = namespace ?? 'default';
  const missing = (field: string, what: string): void => v.add(field, `${what} not found: pass it to the same vhctl create (same file or another -f), or create it on this node first`);
  const instancetype = itRef === null ? null : lookup.instancetype(itRef.kind, itRef.kind === 'VirtualMachineInstancetype' ? ns : null, itRef.name);
  if (itRef !== null && instancetype === null) missing('spec.instancetype.name', `${itRef.kind} ${itRef.kind === 'VirtualMachineInstancetype' ? `${ns}/` : ''}${itRef.name}`);
  const preference = prefRef === null ? null : lookup.preference(prefRef.kind, prefRef.kind === 'VirtualMachinePreference' ? ns : null, prefRef.name);
  if (prefRef !== null && preference === null) missing('spec.preference.name', `${prefRef.kind} ${prefRef.kind === 'VirtualMachinePreference' ? `${ns}/` : ''}${prefRef.name}`);
  if (v.count > 0 || tSpec === undefined) return { ok: false, violations: v.list() };

  const vmiMeta: Obj = { name };
  if (namespace !== undefined) vmiMeta.namespace = namespace;
  if (labels !== undefined) vmiMeta.labels = labels;
  vmiMeta.annotations = { ...annotations, [OWNER_ANNOTATION]: `VirtualMachine/${name}` };
  // KubeVirt's names for what was applied (kubevirt.io/{cluster-,}instancetype-name, ...-preference-name).
  if (instancetype !== null) (vmiMeta.annotations as Obj)[instancetype.namespace === null ? 'kubevirt.io/cluster-instancetype-name' : 'kubevirt.io/instancetype-name'] = instancetype.name;
  if (preference !== null) (vmiMeta.annotations as Obj)[preference.namespace === null ? 'kubevirt.io/cluster-preference-name' : 'kubevirt.io/preference-name'] = preference.name;
  const vmiSpec = structuredClone(tSpec);
  addVolumeDisks(vmiSpec);
  const conflicts = applyInstancetype(vmiSpec, vmiMeta, instancetype, preference, 'spec.template.spec');
  if (conflicts.length > 0) return { ok: false, violations: conflicts };
  setupStableFirmwareUuid(vmiSpec, name);
  vmiSpec.runStrategy = runStrategy;
  return {
    ok: true,
    vmi: { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: vmiMeta, spec: vmiSpec },
    runStrategy, instancetype, preference, dataVolumes,
  };
}

/**
 * spec.dataVolumeTemplates: each becomes a DataVolume named by its metadata.name in the VM's
 * namespace (virt-controller creates them before the VMI); the daemon validates the spec.
 */
function dataVolumeTemplates(v: Violations, value: unknown, namespace: string): Obj[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return void v.add('spec.dataVolumeTemplates', 'must be a list'), [];
  const seen = new Set<string>();
  return value.flatMap((t: unknown, i: number) => {
    const f = `spec.dataVolumeTemplates[${i}]`;
    const o = obj(t);
    if (o === undefined) return void v.add(f, 'must be an object'), [];
    keys(v, o, f, ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
    const m = obj(o.metadata);
    const name = typeof m?.name === 'string' ? m.name : '';
    if (name === '') return void v.add(`${f}.metadata.name`, 'required: the DataVolume (and claim) name the template volumes refer to'), [];
    if (seen.has(name)) return void v.add(`${f}.metadata.name`, `duplicate DataVolume name ${q(name)}`), [];
    seen.add(name);
    if (obj(o.spec) === undefined) return void v.add(`${f}.spec`, 'required: the DataVolume spec'), [];
    const meta: Obj = { name, namespace };
    if (m?.labels !== undefined) meta.labels = m.labels;
    if (m?.annotations !== undefined) meta.annotations = m.annotations;
    return [{ apiVersion: typeof o.apiVersion === 'string' ? o.apiVersion : 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: meta, spec: structuredClone(o.spec) }];
  });
}

/**
 * virt-controller's setupStableFirmwareUUID: a VM's VMI without firmware.uuid gets
 * CalculateLegacyUUID(vmi name), a SHA-1 UUID of the name, so the guest sees the same SMBIOS UUID
 * on every start (and the same one KubeVirt would give it). KubeVirt's VM webhook gives a VM
 * created through the API a random one stored in the VM; this node keeps no VM object to store
 * it in, so the name-derived one is the stable choice.
 */
function setupStableFirmwareUuid(spec: Obj, name: string): void {
  const domain = obj(spec.domain);
  if (domain === undefined) return;
  if (domain.firmware === undefined) domain.firmware = {};
  const firmware = obj(domain.firmware);
  if (firmware !== undefined && (firmware.uuid === undefined || firmware.uuid === '')) firmware.uuid = legacyFirmwareUuid(name);
}

/**
 * virt-controller's SetDefaultVolumeDisk: a volume no disk or filesystem names gets a disk of
 * its own (`{name}`; the disk target and bus are defaulted later, a preference's bus first).
 * Malformed shapes are left alone for validateVmi to name.
 */
function addVolumeDisks(spec: Obj): void {
  if (!Array.isArray(spec.volumes)) return;
  const domain = obj(spec.domain);
  if (domain === undefined) return;
  if (domain.devices === undefined) domain.devices = {};
  const devices = obj(domain.devices);
  if (devices === undefined) return;
  if (devices.disks === undefined) devices.disks = [];
  const disks = devices.disks;
  if (!Array.isArray(disks)) return;
  const named = new Set<unknown>([...disks, ...(Array.isArray(devices.filesystems) ? devices.filesystems : [])].map((d) => obj(d)?.name));
  for (const volume of spec.volumes) {
    const name = obj(volume)?.name;
    if (typeof name === 'string' && !named.has(name)) {
      disks.push({ name });
      named.add(name);
    }
  }
}

/** A field path of the VMI built from a VM, as the path in the VM the user wrote. */
export function vmFieldPath(vmiField: string): string {
  if (vmiField === 'spec.runStrategy') return vmiField;
  if (vmiField.startsWith('spec.') || vmiField.startsWith('spec[')) return `spec.template.${vmiField}`;
  if (/^metadata\.(labels|annotations)\b/.test(vmiField)) return `spec.template.${vmiField}`;
  return vmiField;
}

