/**
 * defaultVmi: what KubeVirt's virt-api mutating webhook writes into a new VMI on amd64
 * (pkg/defaults SetDefaultVirtualMachineInstance + amd64.go, the API's generated SetDefaults_*
 * in staging/src/kubevirt.io/api/core/v1/defaults.go, pkg/network/vmispec SetDefaultNetworkInterface,
 * pkg/util SetDefaultVolumeDisk), applied to a copy of a parsed manifest before validation. The
 * defaulted manifest is what the controller stores and the VMI view shows.
 *
 * Only well-shaped parts are defaulted: anything of the wrong kind is left as it is for
 * validation to report. Never throws; the input is not modified (own data properties only are
 * copied, as validation reads them).
 *
 * Differences from KubeVirt, on purpose:
 * - firmware.uuid: KubeVirt gives a bare VMI a fresh random UUID (SetDefaults_Firmware); a
 *   VirtualMachine's VMI without one gets legacyFirmwareUuid(name) (virtual-machine.ts does that
 *   here). The default here is the VMI uid, when known (`opts.uid`, else metadata.uid): also
 *   fresh and random, and reproducible from the record. It is the guest's SMBIOS UUID and the
 *   libvirt domain's UUID (render/domain-xml.ts).
 * - efi.secureBoot: KubeVirt treats an unset secureBoot as true (its admitter and converter read
 *   nil as enabled); it is written here so the stored VMI says what runs. Secure boot needs SMM:
 *   KubeVirt's admitter refuses it without features.smm, this node turns SMM on instead (an unset
 *   features.smm becomes enabled; an explicit `smm.enabled: false` is still refused).
 * - Cluster-config defaults (CPU model, eviction strategy, default CPU request, hotplug maximums)
 *   have no cluster here: they are left unset, as with KubeVirt's stock configuration.
 * - Hyper-V feature dependencies (SetHypervFeatureDependencies) are not added.
 */
import { createHash } from 'node:crypto';
import { isPlainObject } from './field-reader';
import { parseMilli } from './quantity';

type Obj = Record<string, unknown>;

/** KubeVirt's disk bus default on amd64 (pkg/defaults/amd64.go: SATA, supported by every guest OS). */
export const DEFAULT_DISK_BUS = 'sata';
/** KubeVirt's namespace for VirtualMachine firmware UUIDs (pkg/virt-controller/watch/vm/firmware.go). */
const FIRMWARE_UUID_NAMESPACE = '6a1a24a1-4061-4607-8bf4-a3963d0c5895';
const MAX_DEPTH = 64;

/** A defaulted deep copy of a parsed VMI manifest. */
export function defaultVmi(manifest: unknown, opts: { uid?: string } = {}): unknown {
  const copy = cloneData(manifest, 0);
  if (!isPlainObject(copy)) return copy;
  const top = copy as Obj;
  const spec = top.spec;
  if (!isPlainObject(spec)) return copy;
  const s = spec as Obj;
  const domain = s.domain;
  if (!isPlainObject(domain)) return copy;
  const d = domain as Obj;
  const meta = isPlainObject(top.metadata) ? (top.metadata as Obj) : {};
  const uid = opts.uid ?? (typeof meta.uid === 'string' ? meta.uid : undefined);

  if (s.architecture === undefined) s.architecture = 'amd64';
  defaultMachine(d);
  defaultResources(d);
  defaultGuestMemory(d);
  defaultCpuTopology(d);
  defaultPullPolicies(s);
  const devices = objAt(d, 'devices');
  if (devices !== null) {
    defaultPodInterface(s, devices);
    defaultVolumeDisks(s, devices);
    defaultDisks(devices);
    defaultInputs(devices);
    defaultWatchdog(devices);
  }
  const firmware = objAt(d, 'firmware');
  if (firmware !== null && firmware.uuid === undefined && uid !== undefined && uid !== '') firmware.uuid = uid;
  if (firmware !== null) defaultSecureBoot(firmware, d);
  const features = objAt(d, 'features');
  if (features !== null) defaultFeatures(features);
  const clock = d.clock;
  if (isPlainObject(clock) && isPlainObject((clock as Obj).timer)) {
    for (const t of Object.values((clock as Obj).timer as Obj)) if (isPlainObject(t) && (t as Obj).present === undefined) (t as Obj).present = true;
  }
  for (const probe of [s.livenessProbe, s.readinessProbe]) if (isPlainObject(probe)) defaultProbe(probe as Obj);
  return copy;
}

/** KubeVirt's UUID for a VirtualMachine's VMI firmware: UUID v5 of the VM name in a fixed namespace. */
export function legacyFirmwareUuid(name: string): string {
  const ns = Buffer.from(FIRMWARE_UUID_NAMESPACE.replace(/-/g, ''), 'hex');
  const h = createHash('sha1').update(ns).update(name, 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** efi without secureBoot means secure boot (KubeVirt); secure boot turns an unset SMM on. */
function defaultSecureBoot(firmware: Obj, d: Obj): void {
  const bootloader = firmware.bootloader;
  if (!isPlainObject(bootloader)) return;
  const efi = (bootloader as Obj).efi;
  if (!isPlainObject(efi)) return;
  const e = efi as Obj;
  if (e.secureBoot === undefined) e.secureBoot = true;
  if (e.secureBoot !== true) return;
  const features = objAt(d, 'features');
  if (features !== null && features.smm === undefined) features.smm = { enabled: true };
}

function cloneData(v: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH) return v;
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (let i = 0; i < v.length; i++) out.push(Object.hasOwn(v, i) ? cloneData(v[i], depth + 1) : undefined);
    return out;
  }
  if (!isPlainObject(v)) return v;
  const out: Obj = {};
  for (const key of Object.keys(v)) {
    const desc = Object.getOwnPropertyDescriptor(v, key);
    if (desc === undefined || !('value' in desc)) continue;
    Object.defineProperty(out, key, { value: cloneData(desc.value, depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** The object at `o[key]`, created when absent; null when something else is there. */
function objAt(o: Obj, key: string): Obj | null {
  if (o[key] === undefined) o[key] = {};
  return isPlainObject(o[key]) ? (o[key] as Obj) : null;
}

function has(o: unknown, key: string): boolean {
  return isPlainObject(o) && Object.hasOwn(o, key);
}

function defaultMachine(d: Obj): void {
  const machine = objAt(d, 'machine');
  if (machine !== null && (machine.type === undefined || machine.type === '')) machine.type = 'q35';
}

function resourceList(d: Obj, kind: 'requests' | 'limits'): Obj | null {
  const r = d.resources;
  if (!isPlainObject(r)) return null;
  const l = (r as Obj)[kind];
  return isPlainObject(l) ? (l as Obj) : null;
}

function defaultResources(d: Obj): void {
  const limits = resourceList(d, 'limits');
  if (limits?.cpu === undefined) return;
  const res = d.resources as Obj;
  if (res.requests === undefined) res.requests = {};
  const requests = resourceList(d, 'requests');
  if (requests !== null && requests.cpu === undefined) requests.cpu = limits.cpu;
}

function defaultGuestMemory(d: Obj): void {
  if (d.memory !== undefined && !isPlainObject(d.memory)) return;
  const memory = (d.memory ?? {}) as Obj;
  if (memory.guest !== undefined) return;
  const fromRequest = resourceList(d, 'requests')?.memory;
  const fromLimit = resourceList(d, 'limits')?.memory;
  const hugepages = isPlainObject(memory.hugepages) ? (memory.hugepages as Obj).pageSize : undefined;
  const guest = fromRequest ?? fromLimit ?? hugepages;
  if (guest === undefined) return;
  memory.guest = guest;
  d.memory = memory;
}

function defaultCpuTopology(d: Obj): void {
  if (d.cpu !== undefined && !isPlainObject(d.cpu)) return;
  const cpu = (d.cpu ?? {}) as Obj;
  const unset = (k: string): boolean => cpu[k] === undefined || cpu[k] === 0;
  if (!(unset('cores') && unset('sockets') && unset('threads'))) return;
  // KubeVirt: sockets from the CPU limit, else the request (Quantity.Value() rounds up), else 1.
  let sockets = 1;
  const quantity = resourceList(d, 'limits')?.cpu ?? resourceList(d, 'requests')?.cpu;
  if (quantity !== undefined) {
    const m = parseMilli(quantity);
    if (m.ok) sockets = Math.max(1, Math.ceil(m.value / 1000));
  }
  Object.assign(cpu, { sockets, cores: 1, threads: 1 });
  d.cpu = cpu;
}

function defaultPullPolicies(s: Obj): void {
  if (!Array.isArray(s.volumes)) return;
  for (const v of s.volumes) {
    const cd = isPlainObject(v) ? (v as Obj).containerDisk : undefined;
    if (!isPlainObject(cd)) continue;
    const c = cd as Obj;
    if (typeof c.image !== 'string' || c.imagePullPolicy !== undefined) continue;
    c.imagePullPolicy = c.image.endsWith(':latest') || !/[:@]/.test(c.image) ? 'Always' : 'IfNotPresent';
  }
}

/** KubeVirt's autoattachPodInterface: no networks and no interfaces = one masquerade interface on the pod network. */
function defaultPodInterface(s: Obj, devices: Obj): void {
  if (devices.autoattachPodInterface === false) return;
  const empty = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length === 0);
  if (!empty(s.networks) || !empty(devices.interfaces)) return;
  devices.interfaces = [{ name: 'default', masquerade: {} }];
  s.networks = [{ name: 'default', pod: {} }];
}

/** Every volume without a disk or filesystem of its name gets a plain disk. */
function defaultVolumeDisks(s: Obj, devices: Obj): void {
  if (!Array.isArray(s.volumes)) return;
  if (devices.disks !== undefined && !Array.isArray(devices.disks)) return;
  const names = new Set<unknown>();
  for (const list of [devices.disks, devices.filesystems]) {
    if (Array.isArray(list)) for (const e of list) if (isPlainObject(e)) names.add((e as Obj).name);
  }
  const disks = (devices.disks ?? []) as unknown[];
  for (const v of s.volumes) {
    if (!isPlainObject(v) || typeof (v as Obj).name !== 'string' || names.has((v as Obj).name)) continue;
    disks.push({ name: (v as Obj).name });
    names.add((v as Obj).name);
  }
  if (disks.length > 0) devices.disks = disks;
}

function defaultDisks(devices: Obj): void {
  if (!Array.isArray(devices.disks)) return;
  for (const disk of devices.disks) {
    if (!isPlainObject(disk)) continue;
    const dk = disk as Obj;
    if (!has(dk, 'disk') && !has(dk, 'cdrom') && !has(dk, 'lun')) dk.disk = {};
    for (const target of ['disk', 'cdrom', 'lun']) {
      const t = dk[target];
      if (isPlainObject(t) && (t as Obj).bus === undefined) (t as Obj).bus = DEFAULT_DISK_BUS;
    }
    if (isPlainObject(dk.cdrom)) {
      const c = dk.cdrom as Obj;
      if (c.readonly === undefined) c.readonly = true;
      if (c.tray === undefined) c.tray = 'closed';
    }
  }
}

function defaultInputs(devices: Obj): void {
  if (!Array.isArray(devices.inputs)) return;
  for (const input of devices.inputs) {
    if (!isPlainObject(input)) continue;
    const i = input as Obj;
    if (i.bus === undefined || i.bus === '') i.bus = 'usb';
    if (i.type === undefined || i.type === '') i.type = 'tablet';
  }
}

function defaultWatchdog(devices: Obj): void {
  const w = devices.watchdog;
  if (!isPlainObject(w)) return;
  const wd = w as Obj;
  if (wd.i6300esb === undefined) wd.i6300esb = {};
  if (isPlainObject(wd.i6300esb) && ((wd.i6300esb as Obj).action === undefined || (wd.i6300esb as Obj).action === '')) (wd.i6300esb as Obj).action = 'reset';
}

/** FeatureState and its kin default to enabled; Hyper-V spinlocks to 4096 retries. */
function defaultFeatures(f: Obj): void {
  const enable = (o: unknown): void => {
    if (isPlainObject(o) && (o as Obj).enabled === undefined) (o as Obj).enabled = true;
  };
  for (const key of ['acpi', 'apic', 'smm', 'pvspinlock']) enable(f[key]);
  const hv = f.hyperv;
  if (!isPlainObject(hv)) return;
  const h = hv as Obj;
  for (const value of Object.values(h)) enable(value);
  if (isPlainObject(h.synictimer)) enable((h.synictimer as Obj).direct);
  if (isPlainObject(h.spinlocks)) {
    const sl = h.spinlocks as Obj;
    if (sl.enabled === true && sl.spinlocks === undefined) sl.spinlocks = 4096;
  }
}

function defaultProbe(p: Obj): void {
  const atLeast = (key: string, min: number, value: number): void => {
    const v = p[key];
    if (v === undefined || (typeof v === 'number' && v < min)) p[key] = value;
  };
  atLeast('timeoutSeconds', 1, 1);
  atLeast('periodSeconds', 1, 10);
  atLeast('successThreshold', 1, 1);
  atLeast('failureThreshold', 1, 3);
}
