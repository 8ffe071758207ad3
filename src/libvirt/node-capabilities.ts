/**
 * What the node's libvirt can run, read after every (re)connect: host capabilities, then domain
 * capabilities for x86_64 on q35 and pc with the virt type guests will really get.
 *
 * Virt type: 'kvm' only when the node probe found a usable /dev/kvm AND the CPU advertises
 * hardware virtualisation (vmx or svm) AND libvirt offers kvm. A paravirtualised KVM (kvm_pvm,
 * as on the development machines: /dev/kvm works for the addon but no vmx/svm flag) is listed
 * by libvirt, yet QEMU guests on it die with "emulation failure" at boot: such a node gets
 * 'qemu' (TCG) and says why in `virtTypeReason`.
 */
import { type DomainCapabilities, type HostCapabilities, emptyHostCapabilities, parseCapabilities, parseDomainCapabilities } from './capabilities';
import { buildCapabilityLabels } from './capability-labels';

/** The two calls this module needs (a Connection, or fixtures in tests). */
export interface CapabilitySource {
  getCapabilities(): Promise<string>;
  getDomainCapabilities(opts: { emulatorbin?: string | null; arch?: string | null; machine?: string | null; virttype?: string | null }): Promise<string>;
}

/** Node facts that decide the virt type. */
export interface AcceleratorInput {
  kvmAvailable: boolean;
  cpuFlags: readonly string[];
}

export type VirtType = 'kvm' | 'qemu';

export interface NodeCapabilities {
  virtType: VirtType;
  virtTypeReason: string;
  host: HostCapabilities;
  /** One per machine type asked for that libvirt answered (q35, pc). */
  domains: DomainCapabilities[];
  labels: Record<string, string>;
  /** Per-step failures that did not stop the rest (e.g. no pc machine type). */
  warnings: string[];
  readAt: string;
}

export const MACHINE_TYPES = ['q35', 'pc'] as const;

/** Chooses the virt type (see the header). */
export function chooseVirtType(node: AcceleratorInput, host: HostCapabilities): { virtType: VirtType; reason: string } {
  const hw = node.cpuFlags.includes('vmx') ? 'vmx' : node.cpuFlags.includes('svm') ? 'svm' : null;
  if (!node.kvmAvailable) return { virtType: 'qemu', reason: 'no usable /dev/kvm: guests run under TCG (software emulation)' };
  if (hw === null) {
    return { virtType: 'qemu', reason: '/dev/kvm works but the CPU has no vmx/svm flag (paravirtualised KVM such as kvm_pvm cannot run QEMU guests): TCG' };
  }
  if (!host.domainTypes.includes('kvm')) return { virtType: 'qemu', reason: `libvirt offers no kvm domain type for ${host.arch || 'this arch'}: TCG` };
  return { virtType: 'kvm', reason: `KVM with ${hw}` };
}

/** Reads and parses everything; a failing step becomes a warning, never an exception. */
export async function readNodeCapabilities(src: CapabilitySource, node: AcceleratorInput): Promise<NodeCapabilities> {
  const warnings: string[] = [];
  let host: HostCapabilities;
  try {
    host = parseCapabilities(await src.getCapabilities());
  } catch (e) {
    host = emptyHostCapabilities([`capabilities: ${(e as Error).message}`]);
  }
  warnings.push(...host.warnings);
  const { virtType, reason } = chooseVirtType(node, host);
  const domains: DomainCapabilities[] = [];
  for (const machine of MACHINE_TYPES) {
    try {
      const d = parseDomainCapabilities(await src.getDomainCapabilities({ arch: 'x86_64', machine, virttype: virtType }));
      warnings.push(...d.warnings.map((w) => `${machine}: ${w}`));
      domains.push(d);
    } catch (e) {
      warnings.push(`domain capabilities (${virtType}, ${machine}): ${(e as Error).message}`);
    }
  }
  return { virtType, virtTypeReason: reason, host, domains, labels: buildCapabilityLabels({ host, domains }), warnings, readAt: new Date().toISOString() };
}

/** The compact view for /v1/node (full XML-derived detail stays out of the node document). */
export function summarizeCapabilities(c: NodeCapabilities): Record<string, unknown> {
  const first = c.domains[0];
  return {
    virtType: c.virtType,
    virtTypeReason: c.virtTypeReason,
    accelerator: first?.accelerator ?? null,
    arch: c.host.arch,
    machineTypes: c.domains.map((d) => d.machine),
    maxVcpus: first?.maxVcpus ?? 0,
    hostModel: first?.hostModel.supported ? first.hostModel.name : null,
    usableCpuModels: first?.cpuModels.usable.map((m) => m.name) ?? [],
    unusableCpuModels: first?.cpuModels.unusable.map((m) => m.name) ?? [],
    firmware: { bios: c.domains.some((d) => d.firmware.bios), efi: c.domains.some((d) => d.firmware.efi) },
    warnings: c.warnings,
    readAt: c.readAt,
  };
}
