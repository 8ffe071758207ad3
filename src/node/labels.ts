/**
 * KubeVirt-style node labels and the schedulable rule.
 *
 * Label names follow KubeVirt's node labeller where a KubeVirt label exists
 * (kubevirt.io/schedulable, cpu-vendor./cpu-feature./hyperv.node.kubevirt.io, kubevirt.io/ksm-enabled)
 * so existing VMI nodeSelectors keep working; host facts KubeVirt does not label live under
 * kvm-info.node.kubevirt.io and node.kubevirt.io. Every label passes isValidLabel() by construction.
 */

import type { KvmInfo } from '../kvm/probe';
import type { CpuInfo, DeviceInfo, HugepagePool } from './types';
import { deviceUsable } from './devices';

/** The node label a scheduler selects on; "true" only when VMs can start here. */
export const SCHEDULABLE_LABEL = 'kubevirt.io/schedulable';
/** Label prefixes (the part before '/'). */
export const LabelPrefix = {
  cpuVendor: 'cpu-vendor.node.kubevirt.io',
  cpuFeature: 'cpu-feature.node.kubevirt.io',
  hyperv: 'hyperv.node.kubevirt.io',
  kvmInfo: 'kvm-info.node.kubevirt.io',
  node: 'node.kubevirt.io',
} as const;

const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const DNS_LABEL_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** A Kubernetes label name (the part after '/'), or a non-empty value: <= 63 chars, [A-Za-z0-9._-], alphanumeric ends. */
export function isValidLabelName(name: string): boolean {
  return name.length > 0 && name.length <= 63 && NAME_RE.test(name);
}

/** A DNS-1123 subdomain usable as a label-key prefix: <= 253 chars of dot-separated lowercase DNS labels. */
export function isValidLabelPrefix(prefix: string): boolean {
  return prefix.length > 0 && prefix.length <= 253
    && prefix.split('.').every((part) => part.length <= 63 && DNS_LABEL_RE.test(part));
}

/** A label key: optional "prefix/" plus a name, as the API server validates it. */
export function isValidLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash === -1) return isValidLabelName(key);
  return isValidLabelPrefix(key.slice(0, slash)) && isValidLabelName(key.slice(slash + 1));
}

/** A label value: empty, or a valid label name. */
export function isValidLabelValue(value: string): boolean {
  return value === '' || isValidLabelName(value);
}

/** A key/value pair the API server would accept. */
export function isValidLabel(key: string, value: string): boolean {
  return isValidLabelKey(key) && isValidLabelValue(value);
}

/**
 * Makes an arbitrary token label-safe: invalid characters become '-', the result is cut to 63
 * chars and trimmed to alphanumeric ends. '' means "no safe form" and the label is skipped.
 */
export function labelSafeName(token: string): string {
  const replaced = token.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63);
  return replaced.replace(/^[^A-Za-z0-9]+/, '').replace(/[^A-Za-z0-9]+$/, '');
}

/** 2097152 -> '2Mi', 1073741824 -> '1Gi': the Kubernetes quantity spelling of hugepages-<size>. */
export function hugepageSizeName(sizeBytes: number): string {
  const units: Array<[string, number]> = [['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]];
  for (const [suffix, unit] of units) {
    if (sizeBytes >= unit && sizeBytes % unit === 0) return `${sizeBytes / unit}${suffix}`;
  }
  return String(sizeBytes);
}

/** CPU vendor as KubeVirt (via libvirt) spells it in cpu-vendor labels. */
function vendorLabelName(cpu: CpuInfo): string {
  if (cpu.vendorShort === 'intel') return 'Intel';
  if (cpu.vendorShort === 'amd') return 'AMD';
  if (cpu.vendorShort === 'hygon') return 'Hygon';
  return cpu.vendor;
}

/**
 * Hyper-V enlightenments KubeVirt derives from KVM_CHECK_EXTENSION, keyed by our capability name
 * (KVM_CAP_ prefix dropped). KubeVirt derives frequencies/reset/runtime/synictimer/reenlightenment
 * from the MSR index list; KvmInfo carries only msrCount, so those are not labelled here.
 */
const HYPERV_CAPS: Array<[string, string]> = [
  ['HYPERV', 'base'],
  ['HYPERV_TIME', 'time'],
  ['HYPERV_VP_INDEX', 'vpindex'],
  ['HYPERV_TLBFLUSH', 'tlbflush'],
  ['HYPERV_SEND_IPI', 'ipi'],
  ['HYPERV_SYNIC', 'synic'],
  ['HYPERV_SYNIC2', 'synic2'],
];

/** A capability value whether the table names it 'HYPERV_TIME' or 'KVM_CAP_HYPERV_TIME'. */
function capability(kvm: KvmInfo, name: string): number {
  return kvm.capabilities[name] ?? kvm.capabilities[`KVM_CAP_${name}`] ?? 0;
}

/** Everything the schedulable rule looks at. */
export interface SchedulableInput {
  kvm: KvmInfo;
  tun: DeviceInfo;
  cpu: CpuInfo;
  memoryTotalBytes: number;
  procRoot: string;
}

/**
 * The schedulable rule: VMs can start only with a usable KVM, a usable /dev/net/tun (every VMI
 * with a pod network - the default - needs a tap device; KubeVirt requests devices.kubevirt.io/tun
 * for each), and readable CPU/memory facts (we will not place VMs on a host we cannot describe).
 * vhost-net, vhost-vsock and userfaultfd only narrow features (userspace virtio-net fallback,
 * no vsock, no post-copy), so they become labels, not reasons.
 */
export function assessSchedulable(input: SchedulableInput): { schedulable: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!input.kvm.available) {
    const code = input.kvm.errorCode === null ? '' : ` [${input.kvm.errorCode}]`;
    reasons.push(`KVM unavailable${code}: ${input.kvm.reason ?? 'unknown reason'}`);
  }
  const tun = input.tun;
  if (!tun.present) {
    reasons.push(`TUN unavailable: ${tun.path} missing; VMIs with pod networks need tap devices (run 'modprobe tun')`);
  } else if (tun.kind !== 'char') {
    reasons.push(`TUN unavailable: ${tun.path} is a ${tun.kind}, not a character device`);
  } else if (!tun.accessible) {
    reasons.push(`TUN unavailable: ${tun.path} (mode ${tun.mode}) is not readable and writable by this process`);
  }
  if (input.cpu.logicalCpus === 0) {
    reasons.push(`CPU facts unavailable: no processors parsed from ${input.procRoot}/cpuinfo`);
  }
  if (input.memoryTotalBytes <= 0) {
    reasons.push(`memory facts unavailable: no MemTotal in ${input.procRoot}/meminfo`);
  }
  return { schedulable: reasons.length === 0, reasons };
}

/** Everything the labels are derived from (a subset of NodeInfo plus facts NodeInfo does not carry). */
export interface LabelInput {
  schedulable: boolean;
  cpu: CpuInfo;
  kvm: KvmInfo;
  hugepages: HugepagePool[];
  thpEnabled: string;
  devices: {
    tun: DeviceInfo;
    vhostNet: DeviceInfo;
    vhostVsock: DeviceInfo;
    userfaultfd: DeviceInfo & { unprivilegedAllowed: boolean | null };
  };
  /** kvm_intel/kvm_amd 'nested' parameter; null when the module parameter is not readable. */
  nestedVirtualization: boolean | null;
  /** /sys/kernel/mm/ksm/run == 1; null when KSM is not built in. */
  ksmEnabled: boolean | null;
}

/**
 * Builds the node's labels. Feature labels appear only with a usable KVM (they describe what a
 * guest can get, and without KVM a guest gets nothing). Anything that cannot be made valid is
 * dropped rather than sent, because one invalid key makes the API server reject the whole patch.
 */
export function buildNodeLabels(input: LabelInput): Record<string, string> {
  const labels: Record<string, string> = {};
  const add = (prefix: string, token: string, value: string): void => {
    const name = labelSafeName(token);
    const key = `${prefix}/${name}`;
    if (name !== '' && isValidLabel(key, value)) labels[key] = value;
  };
  const bool = (b: boolean): string => (b ? 'true' : 'false');

  labels[SCHEDULABLE_LABEL] = bool(input.schedulable);

  const vendor = vendorLabelName(input.cpu);
  if (vendor !== '') add(LabelPrefix.cpuVendor, vendor, 'true');

  const kvm = input.kvm;
  if (kvm.available) {
    for (const feature of kvm.cpuidFeatures) add(LabelPrefix.cpuFeature, feature, 'true');
    for (const [cap, name] of HYPERV_CAPS) if (capability(kvm, cap) > 0) add(LabelPrefix.hyperv, name, 'true');
    const maxVcpus = capability(kvm, 'MAX_VCPUS') || capability(kvm, 'NR_VCPUS');
    if (maxVcpus > 0) add(LabelPrefix.kvmInfo, 'max-vcpus', String(maxVcpus));
  }
  if (input.nestedVirtualization !== null) {
    add(LabelPrefix.kvmInfo, 'nested-virtualization', bool(input.nestedVirtualization));
  }
  if (input.ksmEnabled !== null) labels['kubevirt.io/ksm-enabled'] = bool(input.ksmEnabled);

  // Only reserved pools: a size the kernel supports but holds no pages for cannot back a VM.
  for (const pool of input.hugepages) {
    if (pool.total > 0) add(LabelPrefix.node, `hugepages-${hugepageSizeName(pool.sizeBytes)}`, 'true');
  }
  if (input.thpEnabled !== '') add(LabelPrefix.node, 'transparent-hugepages', labelSafeName(input.thpEnabled));

  add(LabelPrefix.node, 'tun', bool(deviceUsable(input.devices.tun)));
  add(LabelPrefix.node, 'vhost-net', bool(deviceUsable(input.devices.vhostNet)));
  add(LabelPrefix.node, 'vhost-vsock', bool(deviceUsable(input.devices.vhostVsock)));
  // Post-copy needs userfaultfd via either /dev/userfaultfd (6.1+) or the syscall when unprivileged use is allowed.
  const uffd = input.devices.userfaultfd;
  add(LabelPrefix.node, 'userfaultfd', bool(deviceUsable(uffd) || uffd.unprivilegedAllowed === true));
  return labels;
}
