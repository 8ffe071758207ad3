/**
 * Instancetypes and preferences (instancetype.kubevirt.io/v1beta1), applied to a VMI spec the
 * way virt-controller does when it starts a VirtualMachine that names them
 * (pkg/instancetype/apply and preference/apply in KubeVirt):
 * - the instancetype owns what it sets: cpu.guest becomes sockets/cores/threads (shape chosen by
 *   the preference's preferredCPUTopology, default sockets), memory.guest, hugepages, model,
 *   dedicatedCPUPlacement, ioThreadsPolicy, gpus, hostDevices...; the VM setting the same field
 *   (or cpu/memory requests and limits) is a conflict, reported per field;
 * - a preference only fills what the VM left unset: disk/cdrom/lun bus, interface model,
 *   machine type, firmware, features, clock, autoattach devices, termination grace period...;
 * - preference requirements (minimum vCPUs/memory) are checked after.
 * Fields the node does not serve yet are still copied: the VMI validator then names them.
 * Pure: no I/O (vhctl's cache of these objects lives in src/cli).
 */
import { child, isPlainObject, q, Violations } from './field-reader';
import { parseBytes } from './quantity';
import type { FieldViolation } from './types';
import type { InstancetypeKind, PreferenceKind } from './documents';

type Obj = Record<string, unknown>;

/** A checked instancetype or preference: its kind, name, namespace (null when cluster-wide) and spec. */
export interface ClusterObject<K extends string> {
  kind: K;
  name: string;
  namespace: string | null;
  spec: Obj;
}
export type Instancetype = ClusterObject<InstancetypeKind>;
export type Preference = ClusterObject<PreferenceKind>;

const INSTANCETYPE_SPEC = ['cpu', 'memory', 'gpus', 'hostDevices', 'ioThreadsPolicy', 'ioThreads', 'launchSecurity', 'annotations', 'nodeSelector', 'schedulerName'];
const INSTANCETYPE_CPU = ['guest', 'model', 'dedicatedCPUPlacement', 'numa', 'isolateEmulatorThread', 'realtime', 'maxSockets'];
const INSTANCETYPE_MEMORY = ['guest', 'hugepages', 'overcommitPercent', 'maxGuest'];
const PREFERENCE_SPEC = ['clock', 'cpu', 'devices', 'features', 'firmware', 'machine', 'volumes', 'preferredSubdomain',
  'preferredTerminationGracePeriodSeconds', 'requirements', 'annotations', 'preferSpreadSocketToCoreRatio', 'preferredArchitecture'];
const PREFERENCE_CPU = ['preferredCPUTopology', 'spreadOptions', 'preferredCPUFeatures'];
const PREFERENCE_DEVICES = ['preferredAutoattachGraphicsDevice', 'preferredAutoattachMemBalloon', 'preferredAutoattachPodInterface',
  'preferredAutoattachSerialConsole', 'preferredAutoattachInputDevice', 'preferredDisableHotplug', 'preferredVirtualGPUOptions',
  'preferredSoundModel', 'preferredUseVirtioTransitional', 'preferredInputBus', 'preferredInputType', 'preferredDiskBus', 'preferredLunBus',
  'preferredCdromBus', 'preferredDiskDedicatedIoThread', 'preferredDiskCache', 'preferredDiskIO', 'preferredDiskBlockSize',
  'preferredInterfaceModel', 'preferredRng', 'preferredBlockMultiQueue', 'preferredNetworkInterfaceMultiQueue', 'preferredTPM',
  'preferredInterfaceMasquerade', 'preferredPanicDeviceModel', 'preferredVideoType'];
const PREFERENCE_FEATURES = ['preferredAcpi', 'preferredApic', 'preferredHyperv', 'preferredKvm', 'preferredPvspinlock', 'preferredSmm'];
const PREFERENCE_FIRMWARE = ['preferredUseBios', 'preferredUseBiosSerial', 'preferredUseEfi', 'preferredUseSecureBoot', 'preferredEfi'];
const TOPOLOGIES = ['sockets', 'cores', 'threads', 'spread', 'any', 'preferSockets', 'preferCores', 'preferThreads', 'preferSpread', 'preferAny'];
const CLUSTER_KINDS = ['VirtualMachineClusterInstancetype', 'VirtualMachineClusterPreference'];

const obj = (v: unknown): Obj | undefined => (isPlainObject(v) ? (v as Obj) : undefined);

/** Reads `value.metadata` (name, namespace rules by scope) and checks `value.spec` against `allowed` keys. */
function readObject<K extends string>(value: Obj, kind: K, allowed: readonly string[], v: Violations): ClusterObject<K> | null {
  const meta = obj(value.metadata);
  let name = '';
  let namespace: string | null = null;
  if (meta === undefined) v.add('metadata', 'required: an object with name');
  else {
    for (const key of Object.keys(meta)) if (!['name', 'namespace', 'labels', 'annotations'].includes(key)) v.add(child('metadata', key), 'unknown field');
    if (typeof meta.name !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(meta.name)) v.add('metadata.name', 'required: a DNS-1123 name');
    else name = meta.name;
    if (meta.namespace !== undefined) {
      if (CLUSTER_KINDS.includes(kind)) v.add('metadata.namespace', `${kind} is cluster-wide: it has no namespace`);
      else if (typeof meta.namespace !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(meta.namespace)) v.add('metadata.namespace', 'must be a DNS-1123 label');
      else namespace = meta.namespace;
    }
  }
  if (!CLUSTER_KINDS.includes(kind) && namespace === null) namespace = 'default';
  for (const key of Object.keys(value)) if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(key)) v.add(key, 'unknown field');
  const spec = obj(value.spec);
  if (spec === undefined) {
    v.add('spec', 'required: must be an object');
    return null;
  }
  for (const key of Object.keys(spec)) if (!allowed.includes(key)) v.add(child('spec', key), 'unknown field');
  return { kind, name, namespace, spec };
}

function keysIn(value: unknown, field: string, allowed: readonly string[], v: Violations): Obj | undefined {
  if (value === undefined) return undefined;
  const o = obj(value);
  if (o === undefined) {
    v.add(field, 'must be an object');
    return undefined;
  }
  for (const key of Object.keys(o)) if (!allowed.includes(key)) v.add(child(field, key), 'unknown field');
  return o;
}

export type ReadResult<T> = { ok: true; object: T } | { ok: false; violations: FieldViolation[] };

/** Checks a VirtualMachine(Cluster)Instancetype document: strict keys, cpu.guest and memory.guest required. */
export function readInstancetype(value: Obj, kind: InstancetypeKind): ReadResult<Instancetype> {
  const v = new Violations();
  const it = readObject(value, kind, INSTANCETYPE_SPEC, v);
  if (it !== null) {
    const cpu = keysIn(it.spec.cpu, 'spec.cpu', INSTANCETYPE_CPU, v);
    const memory = keysIn(it.spec.memory, 'spec.memory', INSTANCETYPE_MEMORY, v);
    const guest = cpu?.guest;
    if (typeof guest !== 'number' || !Number.isSafeInteger(guest) || guest < 1) v.add('spec.cpu.guest', 'required: a whole number of vCPUs, at least 1');
    const mem = parseBytes(memory?.guest);
    if (!mem.ok) v.add('spec.memory.guest', memory?.guest === undefined ? 'required: a quantity such as 128Mi' : mem.error);
    const over = memory?.overcommitPercent;
    if (over !== undefined && (typeof over !== 'number' || !Number.isInteger(over) || over < 0 || over > 100)) v.add('spec.memory.overcommitPercent', 'must be an integer between 0 and 100');
  }
  return v.count > 0 || it === null ? { ok: false, violations: v.list() } : { ok: true, object: it };
}

/** Checks a VirtualMachine(Cluster)Preference document (strict keys down to the groups it applies). */
export function readPreference(value: Obj, kind: PreferenceKind): ReadResult<Preference> {
  const v = new Violations();
  const p = readObject(value, kind, PREFERENCE_SPEC, v);
  if (p !== null) {
    const cpu = keysIn(p.spec.cpu, 'spec.cpu', PREFERENCE_CPU, v);
    if (cpu?.preferredCPUTopology !== undefined && !TOPOLOGIES.includes(cpu.preferredCPUTopology as string)) {
      v.add('spec.cpu.preferredCPUTopology', `must be one of ${TOPOLOGIES.join(', ')} (got ${q(String(cpu.preferredCPUTopology))})`);
    }
    keysIn(p.spec.devices, 'spec.devices', PREFERENCE_DEVICES, v);
    keysIn(p.spec.features, 'spec.features', PREFERENCE_FEATURES, v);
    keysIn(p.spec.firmware, 'spec.firmware', PREFERENCE_FIRMWARE, v);
    keysIn(p.spec.machine, 'spec.machine', ['preferredMachineType'], v);
    keysIn(p.spec.clock, 'spec.clock', ['preferredClockOffset', 'preferredTimer'], v);
    const req = keysIn(p.spec.requirements, 'spec.requirements', ['cpu', 'memory'], v);
    keysIn(req?.cpu, 'spec.requirements.cpu', ['guest'], v);
    keysIn(req?.memory, 'spec.requirements.memory', ['guest'], v);
  }
  return v.count > 0 || p === null ? { ok: false, violations: v.list() } : { ok: true, object: p };
}

/** `VirtualMachineInstancetype default/csmall`, `VirtualMachineClusterPreference virtio`: how messages name one. */
export function describeObject(o: ClusterObject<string>): string {
  return `${o.kind} ${o.namespace === null ? '' : `${o.namespace}/`}${o.name}`;
}

/** Get-or-create a nested object on a mutable spec. */
function at(o: Obj, ...keys: string[]): Obj {
  let cur = o;
  for (const k of keys) {
    if (!isPlainObject(cur[k])) cur[k] = {};
    cur = cur[k] as Obj;
  }
  return cur;
}
const copy = <T>(x: T): T => structuredClone(x);
const isSet = (x: unknown): boolean => x !== undefined && x !== null;

/**
 * Applies `instancetype` then `preference` to `vmiSpec` and `vmiMeta` in place. `base` is where
 * the VMI spec sits in the document the user wrote (spec.template.spec for a VM), for conflict
 * paths. Returns every conflict and unmet requirement; on any, the spec is half-applied and
 * must be dropped.
 */
export function applyInstancetype(vmiSpec: Obj, vmiMeta: Obj, instancetype: Instancetype | null, preference: Preference | null, base: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const domain = at(vmiSpec, 'domain');
  if (instancetype !== null) {
    const by = `conflicts with ${describeObject(instancetype)}, which sets it; remove it from the VirtualMachine`;
    const conflict = (...path: string[]): void => void out.push({ field: path.reduce((f, k) => child(f, k), base), message: by });
    const it = instancetype.spec;
    const itCpu = obj(it.cpu) ?? {};
    const itMem = obj(it.memory) ?? {};
    const cpu = at(domain, 'cpu');
    const mem = at(domain, 'memory');
    const resources = obj(domain.resources) ?? {};
    const requests = obj(resources.requests) ?? {};
    const limits = obj(resources.limits) ?? {};
    if (isSet(requests.cpu)) conflict('domain', 'resources', 'requests', 'cpu');
    if (isSet(limits.cpu)) conflict('domain', 'resources', 'limits', 'cpu');
    for (const k of ['sockets', 'cores', 'threads']) if (isSet(cpu[k]) && cpu[k] !== 0) conflict('domain', 'cpu', k);
    if (isSet(cpu.model) && cpu.model !== '' && isSet(itCpu.model)) conflict('domain', 'cpu', 'model');
    for (const k of ['dedicatedCpuPlacement', 'isolateEmulatorThread']) if (cpu[k] === true && isSet(itCpu[k === 'dedicatedCpuPlacement' ? 'dedicatedCPUPlacement' : k])) conflict('domain', 'cpu', k);
    for (const k of ['numa', 'realtime']) if (isSet(cpu[k]) && isSet(itCpu[k])) conflict('domain', 'cpu', k);
    if (isSet(mem.guest)) conflict('domain', 'memory', 'guest');
    for (const k of ['hugepages', 'maxGuest']) if (isSet(mem[k]) && isSet(itMem[k])) conflict('domain', 'memory', k);
    if (isSet(requests.memory)) conflict('domain', 'resources', 'requests', 'memory');
    if (isSet(limits.memory)) conflict('domain', 'resources', 'limits', 'memory');
    const devices = obj(domain.devices) ?? {};
    if (isSet(it.ioThreadsPolicy) && isSet(domain.ioThreadsPolicy)) conflict('domain', 'ioThreadsPolicy');
    if (isSet(it.ioThreads) && isSet(domain.ioThreads)) conflict('domain', 'ioThreads');
    if (isSet(it.launchSecurity) && isSet(domain.launchSecurity)) conflict('domain', 'launchSecurity');
    if (isSet(it.gpus) && Array.isArray(devices.gpus) && devices.gpus.length > 0) conflict('domain', 'devices', 'gpus');
    if (isSet(it.hostDevices) && Array.isArray(devices.hostDevices) && devices.hostDevices.length > 0) conflict('domain', 'devices', 'hostDevices');
    if (isSet(it.nodeSelector) && isSet(vmiSpec.nodeSelector)) conflict('nodeSelector');
    if (isSet(it.schedulerName) && isSet(vmiSpec.schedulerName) && vmiSpec.schedulerName !== '') conflict('schedulerName');
    const metaAnnotations = obj(vmiMeta.annotations) ?? {};
    for (const [k, val] of Object.entries(obj(it.annotations) ?? {})) {
      if (isSet(metaAnnotations[k]) && metaAnnotations[k] !== val) out.push({ field: child('spec.template.metadata.annotations', k), message: by });
    }
    if (out.length > 0) return out;

    // The instancetype's values, KubeVirt's spelling on the left, the VMI's on the right.
    if (isSet(itCpu.model)) cpu.model = itCpu.model;
    if (isSet(itCpu.dedicatedCPUPlacement)) cpu.dedicatedCpuPlacement = itCpu.dedicatedCPUPlacement;
    for (const k of ['isolateEmulatorThread', 'numa', 'realtime', 'maxSockets']) if (isSet(itCpu[k])) cpu[k] = copy(itCpu[k]);
    Object.assign(cpu, topology(itCpu.guest as number, preference));
    mem.guest = itMem.guest;
    const over = itMem.overcommitPercent;
    if (typeof over === 'number' && over > 0) {
      const guest = parseBytes(itMem.guest);
      if (guest.ok) at(domain, 'resources', 'requests').memory = String(Math.floor(guest.value * (1 - over / 100)));
    }
    for (const k of ['hugepages', 'maxGuest']) if (isSet(itMem[k])) mem[k] = copy(itMem[k]);
    for (const k of ['ioThreadsPolicy', 'ioThreads', 'launchSecurity']) if (isSet(it[k])) domain[k] = copy(it[k]);
    for (const k of ['gpus', 'hostDevices']) if (isSet(it[k])) at(domain, 'devices')[k] = copy(it[k]);
    for (const k of ['nodeSelector', 'schedulerName']) if (isSet(it[k])) vmiSpec[k] = copy(it[k]);
    const itAnnotations = obj(it.annotations);
    if (itAnnotations !== undefined) Object.assign(at(vmiMeta, 'annotations'), copy(itAnnotations));
  }
  if (preference !== null) applyPreference(preference, vmiSpec, vmiMeta);
  out.push(...requirements(preference, instancetype, vmiSpec));
  return out;
}

/** cpu.guest as sockets/cores/threads per the preference's preferredCPUTopology (default sockets). */
function topology(vcpus: number, preference: Preference | null): { sockets: number; cores: number; threads: number } {
  const t = { sockets: 1, cores: 1, threads: 1 };
  if (vcpus === 1) return t;
  const pcpu = obj(preference?.spec.cpu) ?? {};
  const preferred = typeof pcpu.preferredCPUTopology === 'string' ? pcpu.preferredCPUTopology : 'sockets';
  switch (preferred) {
    case 'cores': case 'preferCores': t.cores = vcpus; break;
    case 'threads': case 'preferThreads': t.threads = vcpus; break;
    case 'spread': case 'preferSpread': {
      const spread = obj(pcpu.spreadOptions) ?? {};
      const ratio = typeof spread.ratio === 'number' ? spread.ratio : typeof preference?.spec.preferSpreadSocketToCoreRatio === 'number' ? preference.spec.preferSpreadSocketToCoreRatio : 2;
      const across = typeof spread.across === 'string' ? spread.across : 'SocketsCores';
      if (across === 'CoresThreads') Object.assign(t, { threads: ratio, cores: Math.floor(vcpus / ratio) });
      else if (across === 'SocketsCoresThreads') Object.assign(t, { threads: 2, cores: ratio, sockets: Math.floor(vcpus / 2 / ratio) });
      else Object.assign(t, { cores: ratio, sockets: Math.floor(vcpus / ratio) });
      break;
    }
    default: t.sockets = vcpus;
  }
  return t;
}

function fill(target: Obj, key: string, value: unknown): void {
  if (isSet(value) && !isSet(target[key])) target[key] = copy(value);
}

function applyPreference(preference: Preference, vmiSpec: Obj, vmiMeta: Obj): void {
  const p = preference.spec;
  const domain = at(vmiSpec, 'domain');
  const pDevices = obj(p.devices);
  if (pDevices !== undefined) {
    const devices = at(domain, 'devices');
    const pairs: Array<[string, string]> = [
      ['preferredAutoattachGraphicsDevice', 'autoattachGraphicsDevice'], ['preferredAutoattachMemBalloon', 'autoattachMemBalloon'],
      ['preferredAutoattachPodInterface', 'autoattachPodInterface'], ['preferredAutoattachSerialConsole', 'autoattachSerialConsole'],
      ['preferredAutoattachInputDevice', 'autoattachInputDevice'], ['preferredUseVirtioTransitional', 'useVirtioTransitional'],
      ['preferredBlockMultiQueue', 'blockMultiQueue'], ['preferredNetworkInterfaceMultiQueue', 'networkInterfaceMultiQueue'],
      ['preferredRng', 'rng'], ['preferredTPM', 'tpm'],
    ];
    for (const [from, to] of pairs) fill(devices, to, pDevices[from]);
    if (isSet(pDevices.preferredDisableHotplug)) devices.disableHotplug = pDevices.preferredDisableHotplug;
    const sound = obj(devices.sound);
    if (sound !== undefined) fill(sound, 'model', pDevices.preferredSoundModel);
    if (isSet(pDevices.preferredVideoType)) fill(at(devices, 'video'), 'type', pDevices.preferredVideoType);
    for (const d of Array.isArray(devices.disks) ? devices.disks : []) {
      const disk = obj(d);
      if (disk === undefined) continue;
      if (!isSet(disk.disk) && !isSet(disk.cdrom) && !isSet(disk.lun)) disk.disk = {};
      const target = obj(disk.disk);
      if (target !== undefined) {
        fill(target, 'bus', pDevices.preferredDiskBus);
        fill(disk, 'blockSize', pDevices.preferredDiskBlockSize);
        fill(disk, 'cache', pDevices.preferredDiskCache);
        fill(disk, 'io', pDevices.preferredDiskIO);
        if (target.bus === 'virtio') fill(disk, 'dedicatedIOThread', pDevices.preferredDiskDedicatedIoThread);
      } else if (obj(disk.cdrom) !== undefined) fill(disk.cdrom as Obj, 'bus', pDevices.preferredCdromBus);
      else if (obj(disk.lun) !== undefined) fill(disk.lun as Obj, 'bus', pDevices.preferredLunBus);
    }
    const podNetworks = new Set((Array.isArray(vmiSpec.networks) ? vmiSpec.networks : []).map(obj).filter((n) => n !== undefined && isSet(n.pod)).map((n) => n!.name));
    const bindings = ['bridge', 'slirp', 'masquerade', 'sriov', 'macvtap', 'passt', 'binding'];
    for (const i of Array.isArray(devices.interfaces) ? devices.interfaces : []) {
      const iface = obj(i);
      if (iface === undefined) continue;
      fill(iface, 'model', pDevices.preferredInterfaceModel);
      if (isSet(pDevices.preferredInterfaceMasquerade) && !bindings.some((b) => isSet(iface[b])) && podNetworks.has(iface.name)) iface.masquerade = copy(pDevices.preferredInterfaceMasquerade);
    }
    for (const i of Array.isArray(devices.inputs) ? devices.inputs : []) {
      const input = obj(i);
      if (input === undefined) continue;
      fill(input, 'bus', pDevices.preferredInputBus);
      fill(input, 'type', pDevices.preferredInputType);
    }
  }
  const pFeatures = obj(p.features);
  if (pFeatures !== undefined) {
    const features = at(domain, 'features');
    if (isSet(pFeatures.preferredAcpi)) features.acpi = copy(pFeatures.preferredAcpi); // KubeVirt overwrites acpi (not a pointer there)
    for (const [from, to] of [['preferredApic', 'apic'], ['preferredKvm', 'kvm'], ['preferredPvspinlock', 'pvspinlock'], ['preferredSmm', 'smm']] as const) fill(features, to, pFeatures[from]);
    const hyperv = obj(pFeatures.preferredHyperv);
    if (hyperv !== undefined) for (const [k, val] of Object.entries(hyperv)) fill(at(features, 'hyperv'), k, val);
  }
  const pFirmware = obj(p.firmware);
  if (pFirmware !== undefined) {
    const boot = at(domain, 'firmware', 'bootloader');
    if (pFirmware.preferredUseBios === true && !isSet(boot.bios) && !isSet(boot.efi)) boot.bios = {};
    if (isSet(pFirmware.preferredUseBiosSerial) && obj(boot.bios) !== undefined) fill(boot.bios as Obj, 'useSerial', pFirmware.preferredUseBiosSerial);
    if (!isSet(boot.efi) && !isSet(boot.bios) && isSet(pFirmware.preferredEfi)) boot.efi = copy(pFirmware.preferredEfi);
    else {
      if (pFirmware.preferredUseEfi === true && !isSet(boot.efi) && !isSet(boot.bios)) boot.efi = {};
      if (isSet(pFirmware.preferredUseSecureBoot) && obj(boot.efi) !== undefined) fill(boot.efi as Obj, 'secureBoot', pFirmware.preferredUseSecureBoot);
    }
  }
  const machineType = obj(p.machine)?.preferredMachineType;
  if (typeof machineType === 'string' && machineType !== '') fill(at(domain, 'machine'), 'type', machineType);
  const pClock = obj(p.clock);
  if (pClock !== undefined) {
    const clock = at(domain, 'clock');
    const offset = obj(pClock.preferredClockOffset);
    if (offset !== undefined && !isSet(clock.utc) && !isSet(clock.timezone)) Object.assign(clock, copy(offset));
    fill(clock, 'timer', pClock.preferredTimer);
  }
  const features = obj(p.cpu)?.preferredCPUFeatures;
  if (Array.isArray(features) && features.length > 0) fill(at(domain, 'cpu'), 'features', features);
  fill(vmiSpec, 'terminationGracePeriodSeconds', p.preferredTerminationGracePeriodSeconds);
  fill(vmiSpec, 'subdomain', p.preferredSubdomain);
  fill(vmiSpec, 'architecture', p.preferredArchitecture);
  const annotations = obj(p.annotations);
  if (annotations !== undefined) for (const [k, val] of Object.entries(annotations)) fill(at(vmiMeta, 'annotations'), k, val);
}

/** The preference's minimum vCPUs and guest memory, checked against what the VMI ended up with. */
function requirements(preference: Preference | null, instancetype: Instancetype | null, vmiSpec: Obj): FieldViolation[] {
  const req = obj(preference?.spec.requirements);
  if (req === undefined || preference === null) return [];
  const out: FieldViolation[] = [];
  const cpu = obj(obj(vmiSpec.domain)?.cpu) ?? {};
  const n = (x: unknown): number => (typeof x === 'number' && x > 0 ? x : 1);
  const vcpus = n(cpu.sockets) * n(cpu.cores) * n(cpu.threads);
  const needCpu = obj(req.cpu)?.guest;
  // As KubeVirt: the shortfall is the instancetype's when there is one, else the template's.
  const by = instancetype === null ? 'provided by the VirtualMachine' : `provided by ${describeObject(instancetype)}`;
  const cpuField = instancetype === null ? 'spec.template.spec.domain.cpu' : 'spec.instancetype.name';
  const memField = instancetype === null ? 'spec.template.spec.domain.memory.guest' : 'spec.instancetype.name';
  if (typeof needCpu === 'number' && vcpus < needCpu) out.push({ field: cpuField, message: `${vcpus} vCPU(s) ${by}; ${describeObject(preference)} requires ${needCpu}` });
  const needMem = parseBytes(obj(req.memory)?.guest);
  const have = parseBytes(obj(obj(vmiSpec.domain)?.memory)?.guest);
  if (needMem.ok && (!have.ok || have.value < needMem.value)) {
    out.push({ field: memField, message: `guest memory ${have.ok ? String(obj(obj(vmiSpec.domain)?.memory)?.guest) : '(none)'} ${by}; ${describeObject(preference)} requires ${String(obj(req.memory)?.guest)}` });
  }
  return out;
}
