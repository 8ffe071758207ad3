/**
 * validateVmi: an untrusted VirtualMachineInstance manifest (already parsed) to a NormalizedVmi,
 * or every violation found, each with its field path (`spec.domain.devices.disks[1].name`).
 *
 * Two passes: the schema walker (schema/) checks every field of the kubevirt.io/v1 VMI against
 * its kind (unknown fields are violations, `status` included; "4" is not a number, 1 is not a
 * boolean) and lists the accepted fields this node cannot honour as requirements; the Validator
 * below reads what the node honours, with its ranges and cross-references (metadata in
 * validate-metadata.ts, volume sources in volume-sources.ts, networks and interfaces in
 * networks.ts, plain domain switches in
 * domain-extras.ts). Requirements end in NormalizedVmi.requirements when ctx.requirements is
 * 'pending', else each is a violation naming what the node lacks. Run defaultVmi (defaults.ts)
 * first, as KubeVirt's webhook does; an empty machine type is taken as q35 either way.
 *
 * Decisions (why, where not obvious):
 * - Every string is refused if it holds C0/C1 control characters, U+FFFE/U+FFFF or lone
 *   surrogates (none can be written to libvirt XML); only userData, networkData and annotation
 *   values may hold tab/CR/LF. Quoted values in messages are JSON-escaped and cut to 64 chars.
 * - metadata.uid, when present, must be a lower-case canonical UUID other than the nil UUID.
 *   Labels: <= 256, API-server key/value rules. Annotations: <= 1024 entries, keys follow label-key
 *   rules, keys + values <= 256 KiB in UTF-8 (the API server's limit).
 * - Quantities are exact (quantity.ts): `1.5Gi` is fine, `0.5` bytes is not. resources.requests/
 *   limits: cpu (millicores) and memory are read, any other resource is a requirement; a request above its limit is a violation, and
 *   so is memory.guest above limits.memory (KubeVirt rejects the same).
 * - firmware.bootloader, when given, must name exactly one of bios/efi. efi.secureBoot defaults
 *   to true, as in KubeVirt; with features.smm disabled that is a violation (defaultVmi turns an
 *   unset SMM on). secureBoot lives inside efi, so "secureBoot needs efi" holds by construction.
 * - firmware.uuid (any UUID) is the guest's SMBIOS UUID and the domain's UUID.
 * - A cdrom is always read-only (readonly: false is refused), cannot use bus virtio (QEMU has no
 *   virtio cdrom), and cannot be backed by an emptyDisk (a blank read-only medium is a mistake).
 * - bootOrder: 1..65535, unique across disks and interfaces. MAC addresses: unique across interfaces.
 * - Networks: one of pod, multus, resourceClaim (the last two are requirements); at most one pod
 *   network. Without defaultVmi, a spec with no interfaces and no networks has no NIC (the
 *   default pod interface is defaultVmi's, as in KubeVirt's webhook).
 * - Host paths (host-paths.ts): both the path as written (after joining relative ones onto imageRoot) and its
 *   realpath must lie strictly inside a root (imageRoot or a hostPathRoot, taken as given or as
 *   realpath). Relative and absolute paths share the same roots. Only regular files are accepted
 *   (hostDisk too: no block devices). DiskOrCreate on a missing file needs an existing parent
 *   directory inside the roots, a capacity, and no dangling symlink at the path. This is a
 *   pre-check: whoever opens the file later must still open the realpath with O_NOFOLLOW.
 * - Lists are validated up to 256 entries (the node limits are far lower and already violated
 *   then); at most 1000 violations are returned, the last one saying how many were left out.
 * - Never throws: the manifest is read through own data properties only (Object.hasOwn, no
 *   getters, no prototype lookups), and an unexpected failure becomes a 'manifest' violation.
 */

import { formatBytes, parseBytes, parseMilli } from './quantity';
import {
  RUN_STRATEGIES, type DiskBus, type NormalizedDisk,
  type NormalizedVmi, type NormalizedVolume, type RunStrategy, type ValidationContext, type ValidationResult,
  type VmiLimits,
} from './types';
import { FieldReader, type Fields, Violations, child, isPlainObject, q } from './field-reader';
import { HostPaths } from './host-paths';
import { checkVmiSchema } from './schema';
import { MetadataReader } from './validate-metadata';
import { nodeAffinityNeeds } from './node-match';
import { NetworkReader } from './networks';
import { VolumeSourceReader } from './volume-sources';
import { readClock, readCpuFeatures, readDeviceExtras, readFeatures, readSysinfo } from './domain-extras';
import { readGuestDevices } from './guest-devices';
import type { VmiRequirement } from './types';

/** Node limits used when ValidationContext.limits leaves one out. */
export const DEFAULT_LIMITS: Readonly<VmiLimits> = Object.freeze({
  maxVcpus: 64,
  maxMemoryBytes: 64 * 2 ** 30,
  maxDisks: 16,
  maxInterfaces: 8,
  maxUserDataBytes: 64 * 1024,
  maxDiskBytes: 2 ** 40,
});

const MIN_GUEST_MEMORY = 16 * 2 ** 20;
const HUGEPAGE_SIZES = [2 * 2 ** 20, 2 ** 30];

const CPU_MODEL_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MACHINE_RE = /^(q35|pc|pc-q35-\d{1,2}\.\d{1,2}|pc-i440fx-\d{1,2}\.\d{1,2})$/;
const SERIAL_RE = /^[A-Za-z0-9_-]{1,20}$/;
const PRINTABLE_ASCII_RE = /^[\x20-\x7e]*$/;
const DISK_BUSES: readonly DiskBus[] = ['virtio', 'sata', 'scsi', 'usb'];
/** Volume sources this node serves; the schema accepts every other KubeVirt source as a requirement. */
const VOLUME_SOURCES = ['containerDisk', 'hostDisk', 'emptyDisk', 'cloudInitNoCloud', 'cloudInitConfigDrive', 'persistentVolumeClaim', 'dataVolume',
  'ephemeral', 'memoryDump', 'configMap', 'secret', 'serviceAccount', 'downwardAPI', 'downwardMetrics', 'sysprep', 'containerPath'];
const HONOURED_VOLUMES = ['containerDisk', 'hostDisk', 'emptyDisk', 'cloudInitNoCloud', 'persistentVolumeClaim', 'dataVolume', 'ephemeral', 'cloudInitConfigDrive', 'configMap', 'secret', 'serviceAccount', 'downwardAPI', 'sysprep'];

/** I/O threads and queues (KubeVirt: a dedicatedIOThread disk turns I/O threads on, shared by default). */
function ioSettings(policy: unknown, disks: NormalizedDisk[], dev: Fields): Pick<NormalizedVmi, 'ioThreadsShared' | 'blockMultiQueue' | 'graphics'> {
  const out: Pick<NormalizedVmi, 'ioThreadsShared' | 'blockMultiQueue' | 'graphics'> = {};
  if (policy === 'shared' || disks.some((d) => d.dedicatedIOThread === true)) out.ioThreadsShared = true;
  if (dev.get('blockMultiQueue') === true) out.blockMultiQueue = true;
  if (dev.get('autoattachGraphicsDevice') === true) out.graphics = true;
  return out;
}

function firmwareBios(fw: unknown): unknown {
  const b = isPlainObject(fw) ? (fw as { bootloader?: unknown }).bootloader : undefined;
  return isPlainObject(b) ? (b as { bios?: unknown }).bios : undefined;
}

/** Validates a parsed manifest against the VMI subset and this node's limits and host paths. */
export function validateVmi(raw: unknown, ctx: ValidationContext): ValidationResult {
  const out = new Violations();
  let vmi: NormalizedVmi | null = null;
  try {
    const requirements: VmiRequirement[] = [];
    checkVmiSchema(raw, out, requirements);
    vmi = new Validator(out, ctx, requirements).run(raw);
    if (vmi !== null && ctx.requirements !== 'pending') {
      for (const r of vmi.requirements) out.add(r.field, `accepted by KubeVirt, but this node cannot honour it: needs ${r.needs}`);
    }
  } catch (e) {
    out.add('manifest', `cannot be validated: ${e instanceof Error ? e.message : String(e)}`);
  }
  const violations = out.list();
  if (violations.length > 0 || vmi === null) {
    return { ok: false, violations: violations.length > 0 ? violations : [{ field: 'manifest', message: 'is invalid' }] };
  }
  return { ok: true, vmi };
}

class Validator extends FieldReader {
  private readonly limits: VmiLimits;
  private readonly paths: HostPaths;

  private readonly nodeLabels: Readonly<Record<string, string>> | null;
  private readonly sources: VolumeSourceReader;
  /** Boot orders are unique across disks and interfaces (libvirt refuses duplicates). */
  private readonly bootOrders = new Set<number>();

  constructor(v: Violations, ctx: ValidationContext, private readonly reqs: VmiRequirement[]) {
    super(v);
    this.strict = false; // the schema walker (schema/) reports unknown fields
    this.nodeLabels = isPlainObject(ctx.nodeLabels) ? ctx.nodeLabels : null;
    const given = (ctx.limits ?? {}) as Partial<Record<keyof VmiLimits, unknown>>;
    const limits = { ...DEFAULT_LIMITS };
    for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof VmiLimits>) {
      const value = given[key];
      if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) limits[key] = value;
    }
    this.limits = limits;
    this.paths = new HostPaths(v, ctx);
    this.sources = new VolumeSourceReader(v, this.limits, this.paths, reqs, ctx.imagePulls === true);
  }

  // ----- the manifest ---------------------------------------------------------------------------

  run(raw: unknown): NormalizedVmi | null {
    const top = this.obj(raw, '', ['apiVersion', 'kind', 'metadata', 'spec']);
    if (top === null) return null;
    if (top.has('apiVersion')) {
      const api = this.str(top.get('apiVersion'), 'apiVersion', { max: 64 });
      if (api !== undefined && api !== 'kubevirt.io/v1' && api !== 'kubevirt.io/v1alpha3') {
        this.v.add('apiVersion', `must be kubevirt.io/v1 or kubevirt.io/v1alpha3 (got ${q(api)})`);
      }
    }
    if (top.has('kind')) {
      const kind = this.str(top.get('kind'), 'kind', { max: 64 });
      if (kind !== undefined && kind !== 'VirtualMachineInstance') this.v.add('kind', `must be VirtualMachineInstance (got ${q(kind)})`);
    }
    const meta = new MetadataReader(this.v, this.reqs).read(top.get('metadata'));
    const spec = top.has('spec') ? this.obj(top.get('spec'), 'spec', ['domain', 'volumes', 'networks', 'runStrategy', 'terminationGracePeriodSeconds', 'nodeSelector', 'affinity']) : null;
    if (!top.has('spec')) this.v.add('spec', 'required');
    if (spec === null) return null;
    const runStrategy = spec.has('runStrategy') ? this.oneOf<RunStrategy>(spec.get('runStrategy'), 'spec.runStrategy', RUN_STRATEGIES) : 'Always';
    const grace = spec.has('terminationGracePeriodSeconds')
      ? this.int(spec.get('terminationGracePeriodSeconds'), 'spec.terminationGracePeriodSeconds', 0, 3600)
      : 30;
    if (spec.has('nodeSelector')) this.nodeSelector(spec.get('nodeSelector'));
    const affinity = this.nodeLabels === null ? null : nodeAffinityNeeds(spec.get('affinity'), this.nodeLabels);
    if (affinity !== null) this.reqs.push({ field: 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution', needs: affinity });

    const domain = spec.has('domain')
      ? this.obj(spec.get('domain'), 'spec.domain', ['cpu', 'memory', 'resources', 'firmware', 'machine', 'features', 'devices', 'clock', 'chassis', 'ioThreadsPolicy'])
      : null;
    if (!spec.has('domain')) this.v.add('spec.domain', 'required');
    if (domain === null) {
      // Without a domain, cross-references (disk -> volume, interface -> network) mean nothing.
      this.volumes(spec.get('volumes'));
      return null;
    }
    const d = domain;
    const cpu = this.cpu(d.get('cpu'));
    const memory = this.memory(d.get('memory'), d.get('resources'));
    const firmware = this.firmware(d.get('firmware'));
    const machineType = this.machine(d.get('machine'));
    const features = readFeatures(d.get('features'), this.v);
    const clock = readClock(d.get('clock'), this.v);
    const sysinfo = readSysinfo(d.get('firmware'), d.get('chassis'), this.v);
    const cpuFeatures = readCpuFeatures(d.get('cpu'), this.v);
    if (cpuFeatures !== undefined) cpu.features = cpuFeatures;
    const useSerial = isPlainObject(firmwareBios(d.get('firmware'))) ? (firmwareBios(d.get('firmware')) as { useSerial?: unknown }).useSerial : undefined;
    if (typeof useSerial === 'boolean') firmware.biosUseSerial = useSerial;
    if (firmware.secureBoot && features.smm === false) this.v.add('spec.domain.features.smm.enabled', 'secure boot needs SMM (EFI secureBoot is on; an unset secureBoot means on, as in KubeVirt: set efi.secureBoot: false or enable SMM)');
    const dev = (d.has('devices')
      ? this.obj(d.get('devices'), 'spec.domain.devices', ['disks', 'interfaces', 'rng', 'autoattachSerialConsole', 'filesystems', 'blockMultiQueue', 'autoattachGraphicsDevice'])
      : null) ?? new Map<string, unknown>();
    const volumes = this.volumes(spec.get('volumes'));
    const disks = this.disks(dev.get('disks'), volumes, dev.get('filesystems'));
    const interfaces = new NetworkReader(this.v, this.limits, this.bootOrders).read(dev.get('interfaces'), spec.get('networks'));
    const rng = dev.has('rng') ? this.empty(dev.get('rng'), 'spec.domain.devices.rng') : false;
    const serial = dev.has('autoattachSerialConsole') ? this.bool(dev.get('autoattachSerialConsole'), 'spec.domain.devices.autoattachSerialConsole') : true;

    const diskNames = new Set((Array.isArray(dev.get('disks')) ? (dev.get('disks') as unknown[]) : []).map((x) => (isPlainObject(x) ? (x as { name?: unknown }).name : undefined)).filter((n): n is string => typeof n === 'string'));
    const guestDevices = readGuestDevices(d.get('devices'), volumes, diskNames, this.v, this.reqs);
    if (this.v.count > 0 || meta === null) return null;
    return {
      ...meta, cpu, memory, firmware, machineType, features, ...(clock === undefined ? {} : { clock }), ...(sysinfo === undefined ? {} : { sysinfo }),
      ...readDeviceExtras(d.get('devices'), this.v), ...guestDevices, ...ioSettings(d.get('ioThreadsPolicy'), disks, dev),
      // KubeVirt attaches graphics unless told not to; this node only on request, and a video type is one.
      ...(guestDevices.video !== undefined && dev.get('autoattachGraphicsDevice') !== false ? { graphics: true } : {}), disks, interfaces, rng,
      autoattachSerialConsole: serial ?? true, runStrategy: runStrategy ?? 'Always', terminationGracePeriodSeconds: grace ?? 30,
      requirements: [...this.reqs],
    };
  }

  /** spec.nodeSelector against this node's labels: a mismatch is a requirement (labels change). */
  private nodeSelector(value: unknown): void {
    if (!isPlainObject(value) || this.nodeLabels === null) return;
    for (const [key, want] of Object.entries(value)) {
      if (typeof want !== 'string') continue;
      const have = Object.hasOwn(this.nodeLabels, key) ? this.nodeLabels[key] : undefined;
      if (have !== want) {
        this.reqs.push({ field: child('spec.nodeSelector', key), needs: `node label ${key}=${want} (this node has ${have === undefined ? 'no such label' : `${key}=${have}`})` });
      }
    }
  }

  private cpu(value: unknown): NormalizedVmi['cpu'] {
    const result: NormalizedVmi['cpu'] = { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: null, dedicated: false };
    if (value === undefined) return result;
    const c = this.obj(value, 'spec.domain.cpu', ['cores', 'sockets', 'threads', 'model', 'dedicatedCpuPlacement']);
    if (c === null) return result;
    const max = this.limits.maxVcpus;
    let valid = true;
    for (const key of ['sockets', 'cores', 'threads'] as const) {
      if (!c.has(key)) continue;
      const n = this.int(c.get(key), `spec.domain.cpu.${key}`, 1, max);
      if (n === undefined) valid = false;
      else result[key] = n;
    }
    result.vcpus = result.sockets * result.cores * result.threads;
    if (valid && result.vcpus > max) {
      this.v.add('spec.domain.cpu', `sockets * cores * threads = ${result.vcpus} exceeds this node's limit of ${max} vCPUs`);
    }
    if (c.has('model')) {
      const model = this.str(c.get('model'), 'spec.domain.cpu.model', { max: 64 });
      if (model !== undefined && !CPU_MODEL_RE.test(model)) {
        this.v.add('spec.domain.cpu.model', `${q(model)} must be host-passthrough, host-model or a CPU model name`);
      } else if (model !== undefined) result.model = model;
    }
    if (c.has('dedicatedCpuPlacement')) result.dedicated = this.bool(c.get('dedicatedCpuPlacement'), 'spec.domain.cpu.dedicatedCpuPlacement') ?? false;
    return result;
  }

  private memory(memValue: unknown, resValue: unknown): NormalizedVmi['memory'] {
    const result: NormalizedVmi['memory'] = { guestBytes: 0, hugepageSizeBytes: null };
    const res = this.resources(resValue);
    const mem = memValue === undefined ? new Map<string, unknown>() : this.obj(memValue, 'spec.domain.memory', ['guest', 'hugepages']);
    if (mem === null) return result;
    if (mem.has('hugepages')) {
      const hp = this.obj(mem.get('hugepages'), 'spec.domain.memory.hugepages', ['pageSize']);
      if (hp !== null && !hp.has('pageSize')) this.v.add('spec.domain.memory.hugepages.pageSize', 'required');
      else if (hp !== null) {
        const r = parseBytes(hp.get('pageSize'));
        if (!r.ok) this.v.add('spec.domain.memory.hugepages.pageSize', r.error);
        else if (!HUGEPAGE_SIZES.includes(r.value)) this.v.add('spec.domain.memory.hugepages.pageSize', 'must be 2Mi or 1Gi');
        else result.hugepageSizeBytes = r.value;
      }
    }
    let field = 'spec.domain.memory.guest';
    let guest: number | undefined;
    if (mem.has('guest')) {
      guest = this.bytes(mem.get('guest'), field, MIN_GUEST_MEMORY, this.limits.maxMemoryBytes);
    } else if (res.requestsMemory !== undefined) {
      // KubeVirt: guest memory defaults to the memory request.
      field = 'spec.domain.resources.requests.memory';
      const bytes = res.requestsMemory;
      if (bytes < MIN_GUEST_MEMORY) this.v.add(field, `must be at least ${formatBytes(MIN_GUEST_MEMORY)} (it sets the guest memory)`);
      else if (bytes > this.limits.maxMemoryBytes) this.v.add(field, `must be at most ${formatBytes(this.limits.maxMemoryBytes)} (it sets the guest memory)`);
      else guest = bytes;
    } else if (!res.requestsMemoryGiven) {
      this.v.add('spec.domain.memory.guest', 'required (or set spec.domain.resources.requests.memory)');
    }
    if (guest === undefined) return result;
    // A request above its limit is already reported by resources().
    if (res.limitsMemory !== undefined && guest > res.limitsMemory && mem.has('guest')) {
      this.v.add(field, `${formatBytes(guest)} exceeds spec.domain.resources.limits.memory`);
    }
    if (result.hugepageSizeBytes !== null && guest % result.hugepageSizeBytes !== 0) {
      this.v.add(field, `must be a multiple of the hugepage size ${formatBytes(result.hugepageSizeBytes)}`);
    }
    result.guestBytes = guest;
    return result;
  }

  private resources(value: unknown): { requestsMemory?: number; limitsMemory?: number; requestsMemoryGiven: boolean } {
    const out: { requestsMemory?: number; limitsMemory?: number; requestsMemoryGiven: boolean } = { requestsMemoryGiven: false };
    if (value === undefined) return out;
    const r = this.obj(value, 'spec.domain.resources', ['requests', 'limits']);
    if (r === null) return out;
    const parsed: Record<'requests' | 'limits', { cpu?: number; memory?: number }> = { requests: {}, limits: {} };
    for (const kind of ['requests', 'limits'] as const) {
      if (!r.has(kind)) continue;
      const base = `spec.domain.resources.${kind}`;
      const m = this.obj(r.get(kind), base, ['cpu', 'memory']);
      if (m === null) continue;
      for (const key of Object.keys(r.get(kind) as object)) {
        if (key !== 'cpu' && key !== 'memory') this.reqs.push({ field: child(base, key), needs: `resource ${key} (this node offers only cpu and memory)` });
      }
      if (m.has('cpu')) {
        const q1 = parseMilli(m.get('cpu'));
        if (q1.ok) parsed[kind].cpu = q1.value;
        else this.v.add(`${base}.cpu`, q1.error);
      }
      if (m.has('memory')) {
        if (kind === 'requests') out.requestsMemoryGiven = true;
        const q2 = parseBytes(m.get('memory'));
        if (q2.ok) parsed[kind].memory = q2.value;
        else this.v.add(`${base}.memory`, q2.error);
      }
    }
    for (const key of ['cpu', 'memory'] as const) {
      const req = parsed.requests[key];
      const lim = parsed.limits[key];
      if (req !== undefined && lim !== undefined && req > lim) {
        this.v.add(`spec.domain.resources.requests.${key}`, `must not exceed spec.domain.resources.limits.${key}`);
      }
    }
    if (parsed.requests.memory !== undefined) out.requestsMemory = parsed.requests.memory;
    if (parsed.limits.memory !== undefined) out.limitsMemory = parsed.limits.memory;
    return out;
  }

  private firmware(value: unknown): NormalizedVmi['firmware'] {
    const result: NormalizedVmi['firmware'] = { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null };
    if (value === undefined) return result;
    const f = this.obj(value, 'spec.domain.firmware', ['bootloader', 'kernelBoot', 'uuid']);
    if (f === null) return result;
    if (f.has('uuid')) {
      const u = this.str(f.get('uuid'), 'spec.domain.firmware.uuid', { max: 64 });
      if (u !== undefined && !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(u)) this.v.add('spec.domain.firmware.uuid', `${q(u)} must be a UUID`);
      else if (u !== undefined) result.uuid = u.toLowerCase();
    }
    if (f.has('bootloader')) {
      const b = this.obj(f.get('bootloader'), 'spec.domain.firmware.bootloader', ['bios', 'efi']);
      if (b !== null && b.has('bios') === b.has('efi')) {
        this.v.add('spec.domain.firmware.bootloader', 'must set exactly one of bios, efi');
      } else if (b !== null && b.has('bios')) {
        this.empty(b.get('bios'), 'spec.domain.firmware.bootloader.bios');
      } else if (b !== null) {
        result.bootloader = 'efi';
        const efi = this.obj(b.get('efi'), 'spec.domain.firmware.bootloader.efi', ['secureBoot']);
        // KubeVirt: an unset secureBoot is secure boot.
        result.secureBoot = efi?.has('secureBoot') === true ? this.bool(efi.get('secureBoot'), 'spec.domain.firmware.bootloader.efi.secureBoot') ?? false : true;
      }
    }
    if (f.has('kernelBoot')) {
      const base = 'spec.domain.firmware.kernelBoot';
      const k = this.obj(f.get('kernelBoot'), base, ['kernel', 'initrd', 'kernelArgs', 'container']);
      if (k === null) return result;
      let kernel: string | undefined;
      if (k.has('kernel')) kernel = this.paths.check(k.get('kernel'), `${base}.kernel`, false)?.path;
      else if (!k.has('container')) this.v.add(`${base}.kernel`, 'required when kernelBoot is set (or kernelBoot.container)');
      const initrd = k.has('initrd') ? this.paths.check(k.get('initrd'), `${base}.initrd`, false)?.path : null;
      let kernelArgs = '';
      if (k.has('kernelArgs')) {
        const args = this.str(k.get('kernelArgs'), `${base}.kernelArgs`, { max: 1024 });
        if (args !== undefined && !PRINTABLE_ASCII_RE.test(args)) this.v.add(`${base}.kernelArgs`, 'must be printable ASCII');
        else if (args !== undefined) kernelArgs = args;
      }
      if (k.has('container') && (k.has('kernel') || k.has('initrd'))) this.v.add(`${base}.container`, 'kernelBoot.container excludes kernelBoot.kernel/initrd (host paths)');
      else if (k.has('container')) result.kernelBootContainer = this.sources.kernelBootContainer(k.get('container'), `${base}.container`, kernelArgs);
      else if (kernel !== undefined && initrd !== undefined) result.kernelBoot = { kernel, initrd, kernelArgs };
    }
    return result;
  }

  private machine(value: unknown): string {
    if (value === undefined) return 'q35';
    const m = this.obj(value, 'spec.domain.machine', ['type']);
    if (m === null || !m.has('type') || m.get('type') === '') return 'q35'; // KubeVirt defaults an empty type
    const type = this.str(m.get('type'), 'spec.domain.machine.type', { max: 64 });
    if (type !== undefined && !MACHINE_RE.test(type)) {
      this.v.add('spec.domain.machine.type', `${q(type)} must be q35, pc, pc-q35-N.N or pc-i440fx-N.N`);
    }
    return type ?? 'q35';
  }

  // ----- volumes and disks ----------------------------------------------------------------------

  private volumes(value: unknown): Map<string, { index: number; volume: NormalizedVolume | null; used: boolean }> {
    const byName = new Map<string, { index: number; volume: NormalizedVolume | null; used: boolean }>();
    if (value === undefined) return byName;
    const items = this.list(value, 'spec.volumes');
    items.forEach((item, i) => {
      const base = `spec.volumes[${i}]`;
      const vol = this.obj(item, base, ['name', ...VOLUME_SOURCES]);
      if (vol === null) return;
      const name = this.entryName(vol, base, byName, 'volume');
      const present = VOLUME_SOURCES.filter((s) => vol.has(s));
      let volume: NormalizedVolume | null = null;
      if (present.length !== 1) this.v.add(base, `must set exactly one volume source (${VOLUME_SOURCES.join(', ')})`);
      // A source this node does not serve is a requirement (listed by the schema): no volume here.
      else if (HONOURED_VOLUMES.includes(present[0]!)) volume = this.sources.read(present[0]!, vol.get(present[0]!), `${base}.${present[0]!}`, name ?? '');
      if (name !== undefined) byName.set(name, { index: i, volume, used: false });
    });
    return byName;
  }

  private disks(value: unknown, volumes: ReturnType<Validator['volumes']>, filesystems: unknown): NormalizedDisk[] {
    // A filesystem uses its volume too (guest-devices.ts checks the pairing).
    if (Array.isArray(filesystems)) {
      for (const f of filesystems) {
        const entry = isPlainObject(f) && typeof (f as { name?: unknown }).name === 'string' ? volumes.get((f as { name: string }).name) : undefined;
        if (entry !== undefined) entry.used = true;
      }
    }
    const out: NormalizedDisk[] = [];
    const items = value === undefined ? [] : this.list(value, 'spec.domain.devices.disks', { max: this.limits.maxDisks, noun: 'disks' });
    const names = new Set<string>();
    const bootOrders = this.bootOrders;
    items.forEach((item, i) => {
      const base = `spec.domain.devices.disks[${i}]`;
      const d = this.obj(item, base, ['name', 'disk', 'cdrom', 'lun', 'bootOrder', 'serial', 'cache', 'io', 'dedicatedIOThread', 'errorPolicy']);
      if (d === null) return;
      const name = this.entryName(d, base, names, 'disk');
      const entry = this.refer(name, `${base}.name`, names, volumes, 'volume');
      let device: 'disk' | 'cdrom' | 'lun' = 'disk';
      let bus: DiskBus | undefined = 'virtio';
      let readonly = false;
      let trayOpen = false;
      const targets = ['disk', 'cdrom', 'lun'].filter((t) => d.has(t));
      const busOf = (t: Fields | null, field: string, allowed: readonly string[]): DiskBus | undefined => {
        if (t?.has('bus') !== true) return bus;
        const given = t.get('bus');
        if (typeof given !== 'string' || !['virtio', 'sata', 'scsi', 'usb'].includes(given)) return undefined; // the schema reports it
        return this.oneOf(t.get('bus'), field, allowed as DiskBus[]);
      };
      if (targets.length > 1) {
        this.v.add(base, 'must set at most one of disk, cdrom, lun');
      } else if (d.has('lun')) {
        // KubeVirt: a lun maps only to a persistentVolumeClaim or DataVolume; here it must also be
        // a block-mode claim (checked when the claim is resolved) on the scsi bus (libvirt's lun).
        device = 'lun';
        bus = 'scsi';
        const l = this.obj(d.get('lun'), `${base}.lun`, ['bus', 'readonly', 'reservation']);
        if (l?.has('bus') === true && l.get('bus') !== 'scsi' && typeof l.get('bus') === 'string') this.v.add(`${base}.lun.bus`, `a lun is SCSI passthrough: bus must be scsi (got ${q(String(l.get('bus')))})`);
        if (l?.has('readonly') === true) readonly = this.bool(l.get('readonly'), `${base}.lun.readonly`) ?? false;
        const vol = entry?.volume;
        if (vol && !((vol.kind === 'persistentVolumeClaim' && !vol.ephemeral) || vol.kind === 'dataVolume')) {
          this.v.add(`${base}.lun`, 'can only be mapped to a DataVolume or PersistentVolumeClaim volume (a block-mode claim; not ephemeral)');
        }
      } else if (d.has('cdrom')) {
        device = 'cdrom';
        readonly = true;
        bus = 'sata';
        const c = this.obj(d.get('cdrom'), `${base}.cdrom`, ['bus', 'readonly', 'tray']);
        if (c?.get('tray') === 'open') trayOpen = true;
        bus = busOf(c, `${base}.cdrom.bus`, ['sata', 'scsi']);
        if (c?.has('readonly') === true && this.bool(c.get('readonly'), `${base}.cdrom.readonly`) === false) {
          this.v.add(`${base}.cdrom.readonly`, 'a cdrom is always read-only');
        }
        if (entry?.volume?.kind === 'emptyDisk') this.v.add(`${base}.cdrom`, 'an emptyDisk cannot be attached as a cdrom');
      } else if (d.has('disk')) {
        const k = this.obj(d.get('disk'), `${base}.disk`, ['bus', 'readonly']);
        bus = busOf(k, `${base}.disk.bus`, DISK_BUSES);
        if (k?.has('readonly') === true) readonly = this.bool(k.get('readonly'), `${base}.disk.readonly`) ?? false;
      }
      const cache = d.has('cache') ? this.oneOf(d.get('cache'), `${base}.cache`, ['none', 'writethrough', 'writeback'] as const) ?? null : null;
      const io = d.has('io') && d.get('io') !== 'default' ? this.oneOf(d.get('io'), `${base}.io`, ['native', 'threads'] as const) ?? null : null;
      // QEMU's native AIO needs O_DIRECT, i.e. cache none.
      if (io === 'native' && cache !== null && cache !== 'none') this.v.add(`${base}.io`, `native needs cache none (got ${cache})`);
      let bootOrder: number | null = null;
      if (d.has('bootOrder')) {
        const b = this.int(d.get('bootOrder'), `${base}.bootOrder`, 1, 65535);
        if (b !== undefined && bootOrders.has(b)) this.v.add(`${base}.bootOrder`, `duplicate bootOrder ${b}`);
        else if (b !== undefined) bootOrders.add(b);
        bootOrder = b ?? null;
      }
      let serial: string | null = null;
      if (d.has('serial')) {
        const s = this.str(d.get('serial'), `${base}.serial`, { max: 64 });
        if (s !== undefined && !SERIAL_RE.test(s)) this.v.add(`${base}.serial`, 'must be 1-20 characters of [A-Za-z0-9_-]');
        else serial = s ?? null;
      }
      if (name !== undefined && bus !== undefined && entry?.volume !== null && entry?.volume !== undefined) {
        const dedicated = d.get('dedicatedIOThread') === true;
        if (dedicated && bus !== 'virtio') this.v.add(`${base}.dedicatedIOThread`, 'needs a virtio disk');
        const errorPolicy = d.get('errorPolicy');
        out.push({
          name, device, bus, bootOrder, serial, readonly, cache, io,
          ...(dedicated ? { dedicatedIOThread: true } : {}),
          ...(errorPolicy === 'stop' || errorPolicy === 'ignore' || errorPolicy === 'report' || errorPolicy === 'enospace' ? { errorPolicy } : {}),
          ...(trayOpen ? { trayOpen } : {}),
          volume: entry.volume,
        });
      }
    });
    for (const [name, entry] of volumes) {
      if (!entry.used) this.v.add(`spec.volumes[${entry.index}].name`, `no disk uses volume ${q(name)}`);
    }
    return out;
  }


}
