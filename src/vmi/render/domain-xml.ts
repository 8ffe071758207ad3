/**
 * NormalizedVmi + DomainXmlContext -> libvirt domain XML. Pure and deterministic (same input,
 * same bytes: golden-file tested); built with ./xml so every user value is escaped by
 * construction. Anything the node cannot honour throws VhError(INVALID_ARGUMENT) with a message
 * meant for a VMI's Pending/Failed reason; inconsistent inputs from our own code throw INTERNAL.
 *
 * Decisions (libvirt 9 / QEMU 7.2, see shared/recipes/libvirt.md):
 * - `<domain type=ctx.virtType>` (kvm, or qemu = TCG); name ctx.domainName; uuid = the firmware
 *   UUID, else vmi.uid (domainUuid); `<metadata><vh:vmi xmlns:vh="https://virt-handler.dev/xmlns/vmi/v1">` carrying
 *   namespace, name, uid and generation as child elements (libvirt keeps namespaced metadata).
 * - Memory in KiB (bytes rounded up to a KiB), currentMemory = memory; `<vcpu placement=static>`.
 * - dedicated CPUs: `<cputune><vcpupin vcpu=i cpuset=ctx.pinnedCpus[i]/>`, one host CPU per vCPU
 *   (ctx.pinnedCpus must hold exactly vcpus entries, and be empty when not dedicated).
 * - CPU: model null -> host-model (kvm) / custom qemu64 check='none' fallback='allow' (TCG);
 *   host-passthrough / host-model under TCG -> INVALID_ARGUMENT; another named model -> custom,
 *   match exact (TCG: check none + fallback allow, as the recipe requires; kvm: check partial +
 *   fallback forbid so an unsupported model fails loudly). Always `<topology sockets dies=1 cores threads>`.
 * - Hugepages: `<memoryBacking><hugepages><page size unit=KiB/>`.
 * - `<os>`: type hvm arch x86_64 machine=vmi.machineType. EFI: an explicit OVMF loader and a
 *   per-VMI NVRAM in the VMI's directory (guest-devices.ts); secure boot requires a q35 machine
 *   and adds `<features><smm state=on/>`. kernelBoot: kernel / initrd / cmdline, `console=ttyS0`
 *   appended when the serial console is attached and the args name no ttyS0 console.
 * - `<features>`, `<clock>` and `<sysinfo>` (+ `<os><smbios mode=sysinfo/>`) in domain-features.ts:
 *   acpi/apic as requested, the rest only when the spec sets it (default `<clock offset=utc/>`);
 *   Hyper-V passthrough under TCG is INVALID_ARGUMENT. poweroff destroy, reboot restart, crash destroy.
 * - Devices (no `<emulator>`: libvirt picks; no graphics: `<graphics type=none/>` is invalid):
 *   * disks in disk order, `type=file` (`type=block` + `<source dev>` for a block-mode claim), driver qemu + type from the disk plan; target names per
 *     prefix (`vd` for virtio, `sd` shared by sata and scsi so they never collide) a..z, aa...;
 *     serials limited to libvirt's [A-Za-z0-9_.+- ] (else INVALID_ARGUMENT); kernel/initrd
 *     must be absolute paths (schema); the spec's cache/io when given, else cache='none' only for kvm non-cdrom disks (TCG guests often live on tmpfs, where O_DIRECT
 *     fails; cdroms are read-only); io=native without cache none is INVALID_ARGUMENT; cdroms and readonly disks get `<readonly/>`; `<serial>`,
 *     `<boot order>` when set; a virtio-scsi controller when any disk uses scsi; cdrom on virtio
 *     is INVALID_ARGUMENT (virtio-blk has no removable media).
 *   * each device carries a user alias `ua-<name>` so the live XML maps back to the VMI.
 *   * masquerade -> `<interface type=user>`: QEMU's user-mode NAT (slirp) is the node-local
 *     equivalent of KubeVirt's masquerade (guest behind NAT, outbound only, no extra host
 *     setup); bridge -> `<interface type=bridge><source bridge=ctx.bridge/>` (INVALID_ARGUMENT
 *     when no bridge is configured); `<link state=down>`, `<boot order>`, `<acpi index>` when set. MAC: the given one, or 52:54:00 + 3 bytes of
 *     sha256(uid "/" interface name) (deriveMac); duplicates are INVALID_ARGUMENT.
 *   * rng: virtio, backend /dev/urandom.
 *   * serial console (autoattachSerialConsole): `<serial type=unix>` bound at ctx.serialSocket
 *     with `<log file=ctx.serialLog append=on/>`, and the matching `<console type=unix>`.
 *   * inputs (tablet/keyboard on usb/virtio) and an i6300esb watchdog when the spec has them;
 *     autoattachGraphicsDevice true: VNC listening on `<vmiDir>/vnc.sock` + a VGA video device.
 *   * I/O threads (ioThreadPlan): one shared by virtio disks (ioThreadsPolicy shared, or when a
 *     disk asks for a dedicated one), one per dedicatedIOThread disk; blockMultiQueue: queues =
 *     vCPUs on virtio disks.
 *   * `<memballoon model=virtio><stats period=10/>`, or model none (autoattachMemBalloon: false).
 *   * cpu features as `<feature policy name>`; bios.useSerial as `<os><bios useserial>`.
 */

import { createHash } from 'node:crypto';
import { ErrorCodes, VhError } from '../../errors';
import type { DiskBus, NormalizedDisk, NormalizedInterface, NormalizedVmi } from '../spec/types';

/** Everything besides the VMI that decides the domain XML. */
export interface DomainXmlContext {
  /** libvirt domain type: kvm (hardware) or qemu (TCG). */
  virtType: 'kvm' | 'qemu';
  /** libvirt domain name, `<namespace>_<name>`. */
  domainName: string;
  /** The VMI's directory (disk overlays, seed ISO, console). */
  vmiDir: string;
  /** Serial console: QEMU listens here (unix socket) and also logs every byte to serialLog. */
  serialSocket: string;
  serialLog: string;
  /** Host CPUs for dedicatedCpuPlacement, one per vCPU in order; empty otherwise. */
  pinnedCpus: readonly number[];
  /** Host bridge for `bridge` interfaces; null when none is configured. */
  bridge: string | null;
  /** Per disk name: the file the domain uses (from the disk plan). */
  diskPaths: Readonly<Record<string, { path: string; format: 'qcow2' | 'raw'; /** a block device: `<disk type='block'>` with `<source dev>` */ block?: boolean; /** the volume is read-only (a readOnly claim) */ readonly?: boolean }>>;
  /** The OVMF build an EFI VMI boots (from the node probe); absent/null: EFI is INVALID_ARGUMENT. */
  efi?: EfiFirmware | null;
  /** Per filesystem name: the host directory it shares (from its volume). */
  filesystemSources?: Readonly<Record<string, string>>;
  /** The node's virtiofsd (from the node probe); absent: libvirt's own lookup. */
  virtiofsd?: string | null;
}

import { element, serialize, type XmlElement } from './xml';
import { buildClock, buildFeatures, buildSysinfo } from './domain-features';
import { buildEfiLoader, buildGuestDevices, sharedMemory, type EfiFirmware } from './guest-devices';

/** Namespace of the `<metadata>` element this daemon owns. */
export const VMI_METADATA_NS = 'https://virt-handler.dev/xmlns/vmi/v1';
export const VMI_METADATA_PREFIX = 'vh';

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const NIC_MODELS = new Set(['virtio', 'e1000', 'e1000e', 'rtl8139']);
/** libvirt accepts user aliases `ua-` + [a-zA-Z0-9_.-]; other device names simply get no alias. */
const ALIAS_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** libvirt's diskSerial (domaincommon.rng): QEMU gets the serial on its command line. */
const DISK_SERIAL_RE = /^[A-Za-z0-9_.+\- ]{1,64}$/;

function invalid(message: string, details: Record<string, unknown> = {}): VhError {
  return new VhError(ErrorCodes.INVALID_ARGUMENT, message, details);
}

function internal(message: string, details: Record<string, unknown> = {}): VhError {
  return new VhError(ErrorCodes.INTERNAL, message, details);
}

/** The default MAC of an interface: locally administered 52:54:00 prefix + 3 bytes of sha256(uid/name). */
export function deriveMac(uid: string, interfaceName: string): string {
  const h = createHash('sha256').update(`${uid}/${interfaceName}`, 'utf8').digest();
  return ['52', '54', '00', ...[h[0], h[1], h[2]].map((b) => (b as number).toString(16).padStart(2, '0'))].join(':');
}

/** libvirt-style disk suffix: 0 -> a, 25 -> z, 26 -> aa, 701 -> zz, 702 -> aaa. */
export function diskSuffix(index: number): string {
  let s = '';
  let n = index;
  do {
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return s;
}

const BUS_PREFIX: Readonly<Record<DiskBus, string>> = { virtio: 'vd', sata: 'sd', scsi: 'sd', usb: 'sd' };

/** Target dev names in disk order, one counter per prefix (sata and scsi share `sd`). */
export function targetDevs(disks: readonly NormalizedDisk[]): string[] {
  const counters = new Map<string, number>();
  return disks.map((d) => {
    const prefix = BUS_PREFIX[d.bus];
    if (prefix === undefined) throw invalid(`disk ${d.name}: unsupported bus ${JSON.stringify(d.bus)}`, { disk: d.name });
    const i = counters.get(prefix) ?? 0;
    counters.set(prefix, i + 1);
    return prefix + diskSuffix(i);
  });
}

function isQ35(machine: string): boolean {
  return machine === 'q35' || machine.startsWith('pc-q35-');
}

function alias(name: string): XmlElement | null {
  return ALIAS_RE.test(name) ? element('alias', { name: `ua-${name}` }) : null;
}

function kib(bytes: number, what: string): number {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw internal(`${what} must be a positive integer number of bytes, got ${bytes}`);
  return Math.ceil(bytes / 1024);
}

function buildCpu(vmi: NormalizedVmi, ctx: DomainXmlContext): XmlElement {
  const { sockets, cores, threads } = vmi.cpu;
  const topology = [
    element('topology', { sockets, dies: 1, cores, threads }),
    (vmi.cpu.features ?? []).map((f) => element('feature', { policy: f.policy, name: f.name })),
  ];
  const tcg = ctx.virtType === 'qemu';
  const model = vmi.cpu.model;
  if (model === 'host-passthrough' || model === 'host-model') {
    if (tcg) {
      throw invalid(`cpu model ${model} needs KVM, but this node runs guests under TCG (software emulation); use a named model such as qemu64 or leave the model unset`, {
        field: 'spec.domain.cpu.model',
        model,
      });
    }
    return element('cpu', { mode: model, check: model === 'host-model' ? 'partial' : undefined }, topology);
  }
  if (model === null) {
    if (tcg) return element('cpu', { mode: 'custom', match: 'exact', check: 'none' }, element('model', { fallback: 'allow' }, 'qemu64'), topology);
    return element('cpu', { mode: 'host-model', check: 'partial' }, topology);
  }
  return element(
    'cpu',
    { mode: 'custom', match: 'exact', check: tcg ? 'none' : 'partial' },
    element('model', { fallback: tcg ? 'allow' : 'forbid' }, model),
    topology,
  );
}

function buildCputune(vmi: NormalizedVmi, ctx: DomainXmlContext): XmlElement | null {
  const pins = ctx.pinnedCpus;
  if (!vmi.cpu.dedicated) {
    if (pins.length > 0) throw internal(`pinnedCpus given (${pins.length}) for a VMI without dedicatedCpuPlacement`);
    return null;
  }
  if (pins.length !== vmi.cpu.vcpus) {
    throw invalid(`dedicatedCpuPlacement needs ${vmi.cpu.vcpus} host CPUs, ${pins.length} were assigned`, { field: 'spec.domain.cpu.dedicatedCpuPlacement' });
  }
  if (new Set(pins).size !== pins.length || pins.some((c) => !Number.isSafeInteger(c) || c < 0)) {
    throw internal(`pinnedCpus must be distinct non-negative integers, got [${pins.join(', ')}]`);
  }
  return element('cputune', null, pins.map((cpu, vcpu) => element('vcpupin', { vcpu, cpuset: String(cpu) })));
}

/** kernelArgs, plus console=ttyS0 when the serial console is attached and the args name no ttyS0 console. */
export function kernelCmdline(kernelArgs: string, serialConsole: boolean): string {
  const args = kernelArgs.trim();
  if (!serialConsole || /(^|\s)console=ttyS0(,\S*)?(\s|$)/.test(args)) return args;
  return args === '' ? 'console=ttyS0' : `${args} console=ttyS0`;
}

function buildOs(vmi: NormalizedVmi, ctx: DomainXmlContext): XmlElement {
  const fw = vmi.firmware;
  const efi = fw.bootloader === 'efi';
  if (fw.secureBoot && !efi) throw invalid('secure boot needs the EFI bootloader', { field: 'spec.domain.firmware.bootloader' });
  if (fw.secureBoot && !isQ35(vmi.machineType)) {
    throw invalid(`secure boot needs a q35 machine (SMM), got machine type ${vmi.machineType}`, { field: 'spec.domain.machine.type' });
  }
  const kb = fw.kernelBoot;
  if (kb) {
    for (const [what, p] of [['kernel', kb.kernel], ['initrd', kb.initrd]] as const) {
      if (p !== null && !p.startsWith('/')) {
        throw invalid(`kernelBoot ${what} must be an absolute host path, got ${JSON.stringify(p)}`, { field: `spec.domain.firmware.kernelBoot.${what}` });
      }
    }
  }
  const cmdline = kb ? kernelCmdline(kb.kernelArgs, vmi.autoattachSerialConsole) : '';
  return element(
    'os',
    null,
    element('type', { arch: 'x86_64', machine: vmi.machineType }, 'hvm'),
    buildEfiLoader(vmi, ctx),
    vmi.sysinfo !== undefined && element('smbios', { mode: 'sysinfo' }),
    !efi && fw.biosUseSerial !== undefined && element('bios', { useserial: fw.biosUseSerial ? 'yes' : 'no' }),
    kb && element('kernel', null, kb.kernel),
    kb && kb.initrd !== null && element('initrd', null, kb.initrd),
    kb && cmdline !== '' && element('cmdline', null, cmdline),
  );
}

/** I/O thread per virtio disk: 1 shared (when on), then one per dedicatedIOThread disk; and the count. */
export function ioThreadPlan(vmi: NormalizedVmi): { count: number; byDisk: Map<string, number> } {
  let next = 1;
  const shared = vmi.ioThreadsShared === true && vmi.disks.some((d) => d.bus === 'virtio' && d.dedicatedIOThread !== true) ? next++ : null;
  const byDisk = new Map<string, number>();
  for (const d of vmi.disks) {
    if (d.bus !== 'virtio') continue;
    if (d.dedicatedIOThread === true) byDisk.set(d.name, next++);
    else if (shared !== null) byDisk.set(d.name, shared);
  }
  return { count: next - 1, byDisk };
}

function buildDisks(vmi: NormalizedVmi, ctx: DomainXmlContext, iothreads: Map<string, number>): XmlElement[] {
  const devs = targetDevs(vmi.disks);
  return vmi.disks.map((d, i) => {
    const planned = Object.prototype.hasOwnProperty.call(ctx.diskPaths, d.name) ? ctx.diskPaths[d.name] : undefined;
    if (!planned) throw internal(`no planned file for disk ${d.name}`, { disk: d.name });
    const cdrom = d.device === 'cdrom';
    if (cdrom && d.bus === 'virtio') {
      throw invalid(`disk ${d.name}: a cdrom cannot use the virtio bus (use sata or scsi)`, { disk: d.name });
    }
    if (d.device === 'lun' && (planned.block !== true || d.bus !== 'scsi')) {
      throw invalid(`disk ${d.name}: a lun passes a block device through on the scsi bus; its claim is ${planned.block === true ? 'a block device' : `a file (${planned.path}), not a block device`}${d.bus !== 'scsi' ? ` and its bus is ${d.bus}` : ''}`, { disk: d.name });
    }
    if (d.serial !== null && d.serial !== '' && !DISK_SERIAL_RE.test(d.serial)) {
      throw invalid(`disk ${d.name}: serial ${JSON.stringify(d.serial)} may only hold letters, digits, space and _ . + - (at most 64)`, { disk: d.name });
    }
    const cache = d.cache ?? (!cdrom && ctx.virtType === 'kvm' ? 'none' : undefined);
    if (d.io === 'native' && cache !== 'none') {
      throw invalid(`disk ${d.name}: io native needs cache none${ctx.virtType === 'qemu' ? ' (set it explicitly under TCG)' : ''}`, { disk: d.name });
    }
    if (d.bootOrder !== null && (!Number.isSafeInteger(d.bootOrder) || d.bootOrder < 1)) {
      throw internal(`disk ${d.name}: bootOrder must be a positive integer, got ${d.bootOrder}`);
    }
    return element(
      'disk',
      { type: planned.block === true ? 'block' : 'file', device: d.device },
      element('driver', {
        name: 'qemu', type: planned.format, cache, io: d.io ?? undefined,
        error_policy: d.errorPolicy, iothread: iothreads.get(d.name), queues: vmi.blockMultiQueue === true && d.bus === 'virtio' ? vmi.cpu.vcpus : undefined,
      }),
      element('source', planned.block === true ? { dev: planned.path } : { file: planned.path }),
      element('target', { dev: devs[i], bus: d.bus, tray: cdrom && d.trayOpen === true ? 'open' : undefined }),
      (cdrom || d.readonly || planned.readonly === true) && element('readonly'),
      d.serial !== null && d.serial !== '' && element('serial', null, d.serial),
      d.bootOrder !== null && element('boot', { order: d.bootOrder }),
      alias(d.name),
    );
  });
}

function buildInterfaces(vmi: NormalizedVmi, ctx: DomainXmlContext): XmlElement[] {
  const macs = new Map<string, string>();
  return vmi.interfaces.map((n: NormalizedInterface) => {
    const mac = n.macAddress ?? deriveMac(vmi.uid, n.name);
    if (!MAC_RE.test(mac)) throw invalid(`interface ${n.name}: MAC ${JSON.stringify(mac)} is not lower-case aa:bb:cc:dd:ee:ff`, { interface: n.name });
    const other = macs.get(mac);
    if (other !== undefined) throw invalid(`interfaces ${other} and ${n.name} have the same MAC ${mac}`, { interface: n.name });
    macs.set(mac, n.name);
    if (!NIC_MODELS.has(n.model)) throw invalid(`interface ${n.name}: unsupported model ${JSON.stringify(n.model)}`, { interface: n.name });
    let type: string;
    let source: XmlElement | null = null;
    if (n.binding === 'masquerade') {
      type = 'user';
    } else if (n.binding === 'bridge') {
      if (ctx.bridge === null || ctx.bridge === '') {
        throw invalid(`interface ${n.name} uses the bridge binding, but this node has no bridge configured`, { interface: n.name });
      }
      type = 'bridge';
      source = element('source', { bridge: ctx.bridge });
    } else {
      throw invalid(`interface ${n.name}: unsupported binding ${JSON.stringify(n.binding)}`, { interface: n.name });
    }
    if (n.bootOrder !== null && (!Number.isSafeInteger(n.bootOrder) || n.bootOrder < 1)) throw internal(`interface ${n.name}: bootOrder must be a positive integer, got ${n.bootOrder}`);
    return element(
      'interface',
      { type },
      element('mac', { address: mac }),
      source,
      element('model', { type: n.model }),
      n.linkDown === true && element('link', { state: 'down' }),
      n.bootOrder !== null && element('boot', { order: n.bootOrder }),
      n.acpiIndex !== undefined && element('acpi', { index: n.acpiIndex }),
      alias(n.name),
    );
  });
}

function buildSerial(ctx: DomainXmlContext): XmlElement[] {
  return [
    element(
      'serial',
      { type: 'unix' },
      element('source', { mode: 'bind', path: ctx.serialSocket }),
      element('log', { file: ctx.serialLog, append: 'on' }),
      element('target', { port: 0 }),
    ),
    element('console', { type: 'unix' }, element('source', { mode: 'bind', path: ctx.serialSocket }), element('target', { type: 'serial', port: 0 })),
  ];
}

/**
 * The domain's UUID: the firmware UUID (the guest's SMBIOS system UUID, which libvirt requires to
 * be the domain's), else the VMI uid. The VMI's identity is its uid, kept in `<vh:uid>`.
 */
export function domainUuid(vmi: NormalizedVmi): string {
  const u = vmi.firmware.uuid ?? vmi.uid;
  if (!UUID_RE.test(u)) throw invalid(`firmware uuid ${JSON.stringify(u)} is not a UUID`, { field: 'spec.domain.firmware.uuid' });
  return u.toLowerCase();
}

/** The domain XML of a VMI on this node. Throws VhError (INVALID_ARGUMENT / INTERNAL) as documented above. */
export function buildDomainXml(vmi: NormalizedVmi, ctx: DomainXmlContext): string {
  if (ctx.virtType !== 'kvm' && ctx.virtType !== 'qemu') throw internal(`unknown virtType ${JSON.stringify(ctx.virtType)}`);
  if (!UUID_RE.test(vmi.uid)) throw invalid(`uid ${JSON.stringify(vmi.uid)} is not a UUID`, { field: 'metadata.uid' });
  if (ctx.domainName === '') throw internal('empty domain name');
  const { vcpus, sockets, cores, threads } = vmi.cpu;
  if (![vcpus, sockets, cores, threads].every((n) => Number.isSafeInteger(n) && n > 0) || vcpus !== sockets * cores * threads) {
    throw internal(`inconsistent CPU topology: vcpus=${vcpus} sockets=${sockets} cores=${cores} threads=${threads}`);
  }
  const memKib = kib(vmi.memory.guestBytes, 'memory.guestBytes');
  const hp = vmi.memory.hugepageSizeBytes;
  const secureBoot = vmi.firmware.bootloader === 'efi' && vmi.firmware.secureBoot;
  const hasScsi = vmi.disks.some((d) => d.bus === 'scsi');
  const io = ioThreadPlan(vmi);
  if (vmi.features.hyperv === 'passthrough' && ctx.virtType !== 'kvm') {
    throw invalid('Hyper-V passthrough needs KVM, but this node runs guests under TCG (software emulation)', { field: 'spec.domain.features.hypervPassthrough' });
  }

  const root = element(
    'domain',
    { type: ctx.virtType },
    element('name', null, ctx.domainName),
    element('uuid', null, domainUuid(vmi)),
    element(
      'metadata',
      null,
      element(
        `${VMI_METADATA_PREFIX}:vmi`,
        { [`xmlns:${VMI_METADATA_PREFIX}`]: VMI_METADATA_NS },
        element(`${VMI_METADATA_PREFIX}:namespace`, null, vmi.namespace),
        element(`${VMI_METADATA_PREFIX}:name`, null, vmi.name),
        element(`${VMI_METADATA_PREFIX}:uid`, null, vmi.uid),
        element(`${VMI_METADATA_PREFIX}:generation`, null, vmi.generation),
      ),
    ),
    element('memory', { unit: 'KiB' }, memKib),
    element('currentMemory', { unit: 'KiB' }, memKib),
    (hp !== null || sharedMemory(vmi).length > 0) && element(
      'memoryBacking',
      null,
      hp !== null && element('hugepages', null, element('page', { size: kib(hp, 'memory.hugepageSizeBytes'), unit: 'KiB' })),
      sharedMemory(vmi),
    ),
    element('vcpu', { placement: 'static' }, vcpus),
    io.count > 0 && element('iothreads', null, io.count),
    buildCputune(vmi, ctx),
    buildSysinfo(vmi),
    buildOs(vmi, ctx),
    buildFeatures(vmi, secureBoot),
    buildCpu(vmi, ctx),
    buildClock(vmi),
    element('on_poweroff', null, 'destroy'),
    element('on_reboot', null, 'restart'),
    element('on_crash', null, 'destroy'),
    element(
      'devices',
      null,
      buildDisks(vmi, ctx, io.byDisk),
      hasScsi && element('controller', { type: 'scsi', index: 0, model: 'virtio-scsi' }),
      buildInterfaces(vmi, ctx),
      vmi.autoattachSerialConsole && buildSerial(ctx),
      (vmi.inputs ?? []).map((i) => element('input', { type: i.type, bus: i.bus }, alias(i.name))),
      vmi.graphics === true && [
        element('graphics', { type: 'vnc' }, element('listen', { type: 'socket', socket: `${ctx.vmiDir}/vnc.sock` })),
        element('video', null, element('model', { type: vmi.video ?? 'vga', heads: 1 })),
      ],
      buildGuestDevices(vmi, ctx),
      vmi.watchdog !== undefined && element('watchdog', { model: 'i6300esb', action: vmi.watchdog.action }, alias(vmi.watchdog.name)),
      vmi.rng && element('rng', { model: 'virtio' }, element('backend', { model: 'random' }, '/dev/urandom')),
      vmi.memBalloon === false ? element('memballoon', { model: 'none' }) : element('memballoon', { model: 'virtio' }, element('stats', { period: 10 })),
    ),
  );
  return serialize(root);
}
