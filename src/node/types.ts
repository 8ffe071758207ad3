/** What the node probe learned about this host. Serialised as-is by GET /v1/node and GetNodeInfo. */
import type { KvmInfo } from '../kvm/probe';

export interface DeviceInfo {
  path: string;
  present: boolean;
  /** 'char' | 'block' | 'file' | 'missing' | 'other' */
  kind: string;
  /** Permission bits as an octal string, e.g. '0660'; '' when missing. */
  mode: string;
  uid: number | null;
  gid: number | null;
  /** This process can open it read-write (access(2) R_OK|W_OK). */
  accessible: boolean;
}

export interface CpuInfo {
  vendor: string;        // 'AuthenticAMD' | 'GenuineIntel' | ...
  vendorShort: string;   // 'amd' | 'intel' | other lowercased
  modelName: string;
  family: number | null;
  model: number | null;
  stepping: number | null;
  flags: string[];
  logicalCpus: number;
  sockets: number;
  coresPerSocket: number;
  threadsPerCore: number;
}

export interface NumaNode {
  id: number;
  cpus: number[];
  memTotalBytes: number | null;
}

export interface HugepagePool {
  sizeBytes: number;
  total: number;
  free: number;
}

export interface NodeInfo {
  nodeName: string;
  probedAt: string;
  probeDurationMs: number;
  kernel: { release: string; version: string };
  cpu: CpuInfo;
  numa: NumaNode[];
  memory: { totalBytes: number; availableBytes: number };
  hugepages: HugepagePool[];
  thp: { enabled: string; defrag: string };
  devices: {
    kvm: DeviceInfo;
    tun: DeviceInfo;
    vhostNet: DeviceInfo;
    vhostVsock: DeviceInfo;
    userfaultfd: DeviceInfo & { unprivilegedAllowed: boolean | null };
  };
  kvm: KvmInfo;
  schedulable: boolean;
  /** Why the node is not schedulable (empty when schedulable). */
  reasons: string[];
  /** KubeVirt-style node labels. */
  labels: Record<string, string>;
  /** Parts of the probe that degraded without blocking scheduling (e.g. an unreadable THP file). */
  warnings: string[];
  /** OVMF, swtpm and virtiofsd (host-software.ts); absent when the probe itself failed. */
  software?: import('./host-software').HostSoftware;
  /** Added by the daemon when libvirt.uri is set: connection state and capability summary. */
  libvirt?: { uri: string; state: string; lastError: string | null; capabilities: Record<string, unknown> | null };
}

/** Inputs of probeNode(); roots are parameters so tests can point them at fixtures. */
export interface ProbeOptions {
  nodeName: string;
  procRoot: string;  // '/proc'
  sysRoot: string;   // '/sys'
  devRoot: string;   // '/dev'
  kvmDevice: string; // '/dev/kvm'
  /** The loaded addon, or null when it failed to load (then nativeError says why). */
  native: import('../native/binding').NativeBinding | null;
  nativeError?: string;
  /** Where host software (OVMF, swtpm, virtiofsd) is looked for; default '/'. */
  softwareRoot?: string;
}
