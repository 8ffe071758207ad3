/**
 * Parses libvirt's capabilities XML (virConnectGetCapabilities) and domain capabilities XML
 * (virConnectGetDomainCapabilities) into typed facts.
 *
 * Both parsers are total: malformed, truncated or unexpected XML yields empty values plus a
 * warning per problem, never an exception, because a libvirt quirk on one host must degrade the
 * node's labels rather than crash the handler (KubeVirt's node labeller panicking at startup is a
 * known complaint, kubevirt#19017). XML is read with fast-xml-parser; nothing here regex-matches XML.
 */

import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** How guests execute: hardware virtualisation or QEMU's software emulator. */
export type Accelerator = 'kvm' | 'tcg';

/** One machine type of a guest arch; aliases (q35, pc) carry the versioned type they stand for. */
export interface MachineType {
  name: string;
  /** Set on aliases: q35 -> pc-q35-7.2. */
  canonical: string | null;
  maxCpus: number | null;
  deprecated: boolean;
}

/** What <capabilities> says about the host and the guest arch it runs natively. */
export interface HostCapabilities {
  /** Host CPU arch, e.g. x86_64; '' when absent. */
  arch: string;
  cpu: { vendor: string; model: string };
  /** Machine types of the guest whose arch matches the host arch (document order, de-duplicated). */
  machineTypes: MachineType[];
  /** Domain types (qemu, kvm, test) libvirt offers for that guest arch. */
  domainTypes: string[];
  warnings: string[];
}

/** A host-model CPU feature and whether host-model requires or removes it. */
export interface CpuFeaturePolicy {
  name: string;
  policy: 'require' | 'disable';
}

/** A named CPU model from custom mode and the vendor libvirt attributes it to. */
export interface CpuModel {
  name: string;
  vendor: string;
}

/** What <domainCapabilities> says for one (virttype, arch, machine) triple. */
export interface DomainCapabilities {
  /** 'kvm' for domain type kvm, 'tcg' for domain type qemu, null otherwise (with a warning). */
  accelerator: Accelerator | null;
  /** The raw <domain> value: kvm, qemu, ... */
  domainType: string;
  arch: string;
  /** The versioned machine type these capabilities describe, e.g. pc-q35-7.2. */
  machine: string;
  emulator: string;
  /** <vcpu max>; 0 when absent. */
  maxVcpus: number;
  hostPassthrough: boolean;
  hostModel: { supported: boolean; name: string; vendor: string; features: CpuFeaturePolicy[] };
  cpuModels: { usable: CpuModel[]; unusable: CpuModel[] };
  firmware: {
    /** Legacy BIOS (SeaBIOS): a ROM loader, or 'bios' in the firmware enum. */
    bios: boolean;
    /** UEFI: 'efi' in the firmware enum, or at least one pflash image path libvirt knows. */
    efi: boolean;
    /** secure='yes' offered by the loader. */
    secureBoot: boolean;
    loaderTypes: string[];
    loaderPaths: string[];
  };
  /** <devices> children by name -> supported='yes' (disk, graphics, video, hostdev, rng, tpm, ...). */
  devices: Record<string, boolean>;
  /** <features> children by name -> supported='yes' (sev, sgx, hyperv, vmcoreinfo, ...). */
  features: Record<string, boolean>;
  /** filesystem driverType includes virtiofs. */
  virtiofs: boolean;
  warnings: string[];
}

/** An empty HostCapabilities, what a total failure looks like. */
export function emptyHostCapabilities(warnings: string[] = []): HostCapabilities {
  return { arch: '', cpu: { vendor: '', model: '' }, machineTypes: [], domainTypes: [], warnings };
}

/** An empty DomainCapabilities, what a total failure looks like. */
export function emptyDomainCapabilities(warnings: string[] = []): DomainCapabilities {
  return {
    accelerator: null, domainType: '', arch: '', machine: '', emulator: '', maxVcpus: 0,
    hostPassthrough: false,
    hostModel: { supported: false, name: '', vendor: '', features: [] },
    cpuModels: { usable: [], unusable: [] },
    firmware: { bios: false, efi: false, secureBoot: false, loaderTypes: [], loaderPaths: [] },
    devices: {}, features: {}, virtiofs: false, warnings,
  };
}

// Everything stays a string: machine names like "pc-q35-7.2" or model names like "486" must not
// become numbers.
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
});

type Node = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Element text whether the parser produced a bare string or {#text, @_attr...}. */
function text(value: unknown): string {
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (isNode(value) && value['#text'] !== undefined) return text(value['#text']);
  return '';
}

function attr(value: unknown, name: string): string | undefined {
  if (!isNode(value)) return undefined;
  const raw = value[`@_${name}`];
  return typeof raw === 'string' ? raw : undefined;
}

/** All children called `name`: the parser gives one child as a value and several as an array. */
function children(value: unknown, name: string): unknown[] {
  if (!isNode(value)) return [];
  const raw = value[name];
  if (raw === undefined) return [];
  return Array.isArray(raw) ? raw : [raw];
}

function child(value: unknown, name: string): unknown {
  return children(value, name)[0];
}

/** A positive integer attribute, or null. */
function positiveInt(raw: string | undefined): number | null {
  if (raw === undefined || !/^[0-9]+$/.test(raw)) return null;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** Values of <enum name='...'><value>...</value></enum> under `parent`. */
function enumValues(parent: unknown, name: string): string[] {
  const e = children(parent, 'enum').find((x) => attr(x, 'name') === name);
  return children(e, 'value').map(text).filter((v) => v !== '');
}

/** Parses the document and returns its root element, or null with a warning. */
function parseRoot(xml: unknown, rootName: string, warnings: string[]): Node | null {
  if (typeof xml !== 'string' || xml.trim() === '') {
    warnings.push(`${rootName}: no XML (got ${typeof xml === 'string' ? 'an empty string' : typeof xml})`);
    return null;
  }
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    warnings.push(`${rootName}: malformed XML at line ${valid.err.line}: ${valid.err.msg}`);
    return null;
  }
  let doc: unknown;
  try {
    doc = parser.parse(xml);
  } catch (err) {
    warnings.push(`${rootName}: XML parser failed: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  }
  const root = isNode(doc) ? doc[rootName] : undefined;
  // <capabilities></capabilities> parses as '' - present but empty.
  if (root === '') return {};
  if (!isNode(root)) {
    warnings.push(`${rootName}: no <${rootName}> root element`);
    return null;
  }
  return root;
}

function parseMachine(m: unknown): MachineType | null {
  const name = text(m);
  if (name === '') return null;
  return {
    name,
    canonical: attr(m, 'canonical') ?? null,
    maxCpus: positiveInt(attr(m, 'maxCpus')),
    deprecated: attr(m, 'deprecated') === 'yes',
  };
}

/** Parses `virsh capabilities` output. Never throws. */
export function parseCapabilities(xml: string): HostCapabilities {
  const warnings: string[] = [];
  const root = parseRoot(xml, 'capabilities', warnings);
  if (root === null) return emptyHostCapabilities(warnings);
  const result = emptyHostCapabilities(warnings);

  const hostCpu = child(child(root, 'host'), 'cpu');
  result.arch = text(child(hostCpu, 'arch'));
  result.cpu = { vendor: text(child(hostCpu, 'vendor')), model: text(child(hostCpu, 'model')) };
  if (result.arch === '') warnings.push('capabilities: no <host><cpu><arch>');

  const guests = children(root, 'guest');
  const guest = guests.find((g) => attr(child(g, 'arch'), 'name') === result.arch);
  if (guest === undefined) {
    warnings.push(`capabilities: no <guest> for host arch '${result.arch}'`);
    return result;
  }
  const arch = child(guest, 'arch');
  const seen = new Set<string>();
  const addMachine = (m: unknown): void => {
    const parsed = parseMachine(m);
    if (parsed !== null && !seen.has(parsed.name)) {
      seen.add(parsed.name);
      result.machineTypes.push(parsed);
    }
  };
  children(arch, 'machine').forEach(addMachine);
  for (const domain of children(arch, 'domain')) {
    const type = attr(domain, 'type');
    if (type !== undefined && type !== '' && !result.domainTypes.includes(type)) result.domainTypes.push(type);
    // A domain type may list machines of its own (a different emulator for kvm, say).
    children(domain, 'machine').forEach(addMachine);
  }
  if (result.machineTypes.length === 0) warnings.push(`capabilities: guest arch '${result.arch}' lists no machine types`);
  return result;
}

function acceleratorOf(domainType: string): Accelerator | null {
  if (domainType === 'kvm') return 'kvm';
  if (domainType === 'qemu') return 'tcg';
  return null;
}

function supportedChildren(parent: unknown): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  if (!isNode(parent)) return out;
  for (const name of Object.keys(parent)) {
    if (name.startsWith('@_') || name === '#text') continue;
    out[name] = attr(child(parent, name), 'supported') === 'yes';
  }
  return out;
}

/** Parses `virsh domcapabilities` output. Never throws. */
export function parseDomainCapabilities(xml: string): DomainCapabilities {
  const warnings: string[] = [];
  const root = parseRoot(xml, 'domainCapabilities', warnings);
  if (root === null) return emptyDomainCapabilities(warnings);
  const result = emptyDomainCapabilities(warnings);

  result.domainType = text(child(root, 'domain'));
  result.accelerator = acceleratorOf(result.domainType);
  if (result.accelerator === null) {
    warnings.push(`domainCapabilities: domain type '${result.domainType}' is neither kvm nor qemu; accelerator unknown`);
  }
  result.arch = text(child(root, 'arch'));
  result.machine = text(child(root, 'machine'));
  result.emulator = text(child(root, 'path'));
  const vcpuMax = positiveInt(attr(child(root, 'vcpu'), 'max'));
  if (vcpuMax === null) warnings.push('domainCapabilities: no valid <vcpu max>');
  result.maxVcpus = vcpuMax ?? 0;

  const cpu = child(root, 'cpu');
  if (cpu === undefined) warnings.push('domainCapabilities: no <cpu>');
  const modes = children(cpu, 'mode');
  const mode = (name: string): unknown => modes.find((m) => attr(m, 'name') === name);

  result.hostPassthrough = attr(mode('host-passthrough'), 'supported') === 'yes';

  const hostModel = mode('host-model');
  if (attr(hostModel, 'supported') === 'yes') {
    result.hostModel.supported = true;
    result.hostModel.name = text(child(hostModel, 'model'));
    result.hostModel.vendor = text(child(hostModel, 'vendor'));
    for (const f of children(hostModel, 'feature')) {
      const name = attr(f, 'name');
      const policy = attr(f, 'policy');
      if (name === undefined || name === '') continue;
      if (policy === 'require' || policy === 'disable') result.hostModel.features.push({ name, policy });
      else warnings.push(`domainCapabilities: host-model feature '${name}' has unexpected policy '${policy ?? ''}'`);
    }
    if (result.hostModel.name === '') warnings.push('domainCapabilities: host-model is supported but names no model');
  }

  const custom = mode('custom');
  for (const m of children(custom, 'model')) {
    const model: CpuModel = { name: text(m), vendor: attr(m, 'vendor') ?? '' };
    if (model.name === '') continue;
    const usable = attr(m, 'usable');
    if (usable === 'yes') result.cpuModels.usable.push(model);
    // 'unknown' (libvirt could not tell) counts as unusable: we only promise what libvirt confirmed.
    else result.cpuModels.unusable.push(model);
  }

  const os = child(root, 'os');
  const loader = child(os, 'loader');
  const firmwareEnum = enumValues(os, 'firmware');
  const loaderSupported = attr(loader, 'supported') === 'yes';
  result.firmware.loaderTypes = loaderSupported ? enumValues(loader, 'type') : [];
  result.firmware.loaderPaths = loaderSupported ? children(loader, 'value').map(text).filter((v) => v !== '') : [];
  result.firmware.bios = firmwareEnum.includes('bios') || result.firmware.loaderTypes.includes('rom');
  result.firmware.efi = firmwareEnum.includes('efi')
    || (result.firmware.loaderTypes.includes('pflash') && result.firmware.loaderPaths.length > 0);
  result.firmware.secureBoot = loaderSupported && enumValues(loader, 'secure').includes('yes');

  const devices = child(root, 'devices');
  result.devices = supportedChildren(devices);
  result.virtiofs = enumValues(child(devices, 'filesystem'), 'driverType').includes('virtiofs');
  result.features = supportedChildren(child(root, 'features'));
  return result;
}
