/**
 * The VirtualMachineInstance model: the KubeVirt-compatible subset accepted from controllers
 * (`Vmi*` raw types, as JSON/YAML), the normalized form every other module works on
 * (`NormalizedVmi`: quantities parsed, defaults applied, host paths resolved and confined), and
 * the status the daemon reports. Raw types describe what a manifest MAY contain; nothing is
 * trusted until validate.ts has turned it into a NormalizedVmi. The raw `Vmi*` types below are
 * the part the daemon's own code reads; the whole kubevirt.io/v1 manifest type is `KubevirtVmi`
 * (schema/index.ts), derived from the field schema so the two cannot drift.
 */

// ---------------------------------------------------------------------------------------------
// Raw manifest (kubevirt.io/v1 VirtualMachineInstance subset)
// ---------------------------------------------------------------------------------------------

export const RUN_STRATEGIES = ['Always', 'RerunOnFailure', 'Manual', 'Halted', 'Once'] as const;
export type RunStrategy = (typeof RUN_STRATEGIES)[number];

export interface VmiMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
}

export interface VmiCpu {
  cores?: number;
  sockets?: number;
  threads?: number;
  /** host-passthrough | host-model | a named model (e.g. qemu64, Skylake-Client). */
  model?: string;
  dedicatedCpuPlacement?: boolean;
}

export interface VmiMemory {
  /** Quantity, e.g. 128Mi, 2Gi. */
  guest?: string;
  hugepages?: { pageSize: string };
}

export interface VmiResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface VmiFirmware {
  bootloader?: { bios?: Record<string, never>; efi?: { secureBoot?: boolean } };
  /** Host paths (absolute, or relative to the image root) of a kernel and initrd. */
  kernelBoot?: { kernel?: string; initrd?: string; kernelArgs?: string };
}

export interface VmiDisk {
  name: string;
  disk?: { bus?: DiskBus };
  cdrom?: { bus?: DiskBus; readonly?: boolean };
  bootOrder?: number;
  serial?: string;
}

export interface VmiInterface {
  name: string;
  masquerade?: Record<string, never>;
  bridge?: Record<string, never>;
  macAddress?: string;
  model?: string;
}

export interface VmiVolume {
  name: string;
  /** A read-only base image on the host; the VMI writes to a qcow2 overlay. */
  containerDisk?: { path: string };
  hostDisk?: { path: string; type: 'Disk' | 'DiskOrCreate'; capacity?: string };
  emptyDisk?: { capacity: string };
  cloudInitNoCloud?: { userData?: string; networkData?: string };
}

export interface VmiNetwork {
  name: string;
  pod?: Record<string, never>;
}

export interface VmiSpec {
  domain: {
    cpu?: VmiCpu;
    memory?: VmiMemory;
    resources?: VmiResources;
    firmware?: VmiFirmware;
    machine?: { type?: string };
    features?: { acpi?: { enabled?: boolean }; apic?: { enabled?: boolean } };
    devices?: {
      disks?: VmiDisk[];
      interfaces?: VmiInterface[];
      rng?: Record<string, never>;
      autoattachSerialConsole?: boolean;
    };
  };
  volumes?: VmiVolume[];
  networks?: VmiNetwork[];
  runStrategy?: RunStrategy;
  terminationGracePeriodSeconds?: number;
}

/** A VirtualMachineInstance manifest as submitted. */
export interface VirtualMachineInstance {
  apiVersion?: string;
  kind?: string;
  metadata: VmiMetadata;
  spec: VmiSpec;
}

// ---------------------------------------------------------------------------------------------
// Validation results
// ---------------------------------------------------------------------------------------------

/** One problem with a manifest: the JSON path of the field and what is wrong with it. */
export interface FieldViolation {
  /** e.g. `spec.domain.devices.disks[1].name`. */
  field: string;
  /** e.g. `no volume named "data"`. */
  message: string;
}

/** What validation needs to know about this node and its configuration. */
export interface ValidationContext {
  /** Relative host paths (kernelBoot, containerDisk) resolve under this directory. */
  imageRoot: string;
  /** Absolute host paths must resolve (after symlinks) inside one of these. */
  hostPathRoots: readonly string[];
  /** Upper bounds (defaults in validate.ts). */
  limits?: Partial<VmiLimits>;
  /** This node's labels, for spec.nodeSelector (a mismatch is a requirement, not a violation). */
  nodeLabels?: Readonly<Record<string, string>>;
  /**
   * What becomes of a field this node accepts but cannot honour: 'pending' lists it in
   * NormalizedVmi.requirements (the VMI waits, Unschedulable); 'refuse' (the default, until the
   * controller shows requirements) turns each into a violation naming what the node lacks.
   */
  requirements?: 'pending' | 'refuse';
  /**
   * Whether the node pulls container disk images (an image store is configured): then a
   * containerDisk with an image is a 'containerDiskImage' volume; otherwise it is a requirement.
   */
  imagePulls?: boolean;
}

/**
 * A field the node accepts but cannot honour, and exactly what it lacks, e.g.
 * `{ field: 'spec.domain.devices.gpus[0]', needs: 'GPU device nvidia.com/GA102 (this node exposes no GPUs)' }`.
 */
export interface VmiRequirement {
  field: string;
  needs: string;
}

export interface VmiLimits {
  maxVcpus: number;
  maxMemoryBytes: number;
  maxDisks: number;
  maxInterfaces: number;
  maxUserDataBytes: number;
  maxDiskBytes: number;
}

export type ValidationResult = { ok: true; vmi: NormalizedVmi } | { ok: false; violations: FieldViolation[] };

// ---------------------------------------------------------------------------------------------
// Normalized VMI (validated; what domain-xml.ts, disks.ts and the reconciler consume)
// ---------------------------------------------------------------------------------------------

/** KubeVirt's imagePullPolicy. */
export type ImagePullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export type DiskBus = 'virtio' | 'sata' | 'scsi' | 'usb';

export type NormalizedVolume =
  | { kind: 'containerDisk'; name: string; /** realpath of the base image */ path: string }
  /** A containerDisk to pull (ValidationContext.imagePulls): the image store supplies the base at start. */
  | { kind: 'containerDiskImage'; name: string; /** the reference as written */ image: string; pullPolicy: ImagePullPolicy; /** the disk inside the image; null: its only /disk/ file */ path: string | null }
  | { kind: 'hostDisk'; name: string; path: string; type: 'Disk' | 'DiskOrCreate'; capacityBytes: number | null }
  | { kind: 'emptyDisk'; name: string; capacityBytes: number }
  | { kind: 'cloudInitNoCloud'; name: string; userData: string; networkData: string | null; /** secretRef: user data from this Secret (userData is then '') */ userDataSecret?: string; /** networkDataSecretRef */ networkDataSecret?: string }
  /**
   * A node-local claim `<claimRoot>/<vmi namespace>/<claimName>/` (disk.img or a block node
   * `disk`), resolved at start; `ephemeral`: a qcow2 overlay in the VMI's directory on top of
   * it (KubeVirt's ephemeral volume: writes are discarded with the VMI, the claim is read-only).
   */
  | { kind: 'persistentVolumeClaim'; name: string; claimName: string; readOnly: boolean; ephemeral: boolean }
  /** A DataVolume's claim (same name): waits until the DataVolume has Succeeded. */
  | { kind: 'dataVolume'; name: string; dataVolumeName: string }
  /** An OpenStack config drive (volume id config-2); the same sources as cloudInitNoCloud. */
  | { kind: 'cloudInitConfigDrive'; name: string; userData: string; networkData: string | null; userDataSecret?: string; networkDataSecret?: string }
  /** A ConfigMap's keys as the files of an ISO (KubeVirt's config disks); read from the node's object root at start. */
  | { kind: 'configMap'; name: string; object: string; optional: boolean; volumeLabel: string | null }
  | { kind: 'secret'; name: string; object: string; optional: boolean; volumeLabel: string | null }
  /** token, ca.crt and namespace of a service account, as an ISO. */
  | { kind: 'serviceAccount'; name: string; object: string }
  /** The VMI's own metadata as files (kubelet's downward API volume format), as an ISO. */
  | { kind: 'downwardAPI'; name: string; volumeLabel: string | null; fields: DownwardApiField[] }
  /** A Windows answer file (autounattend.xml / unattend.xml) from a ConfigMap or Secret, as a CD. */
  | { kind: 'sysprep'; name: string; source: 'configMap' | 'secret'; object: string };

/** One downwardAPI volume file: `path` (relative) gets the value of `fieldPath` (metadata.* only). */
export interface DownwardApiField {
  path: string;
  fieldPath: string;
  /** Permission bits; null: 0644. */
  mode: number | null;
}

export interface NormalizedDisk {
  name: string;
  /** lun: SCSI passthrough of a block-mode claim (persistentVolumeClaim or DataVolume), bus scsi. */
  device: 'disk' | 'cdrom' | 'lun';
  bus: DiskBus;
  bootOrder: number | null;
  serial: string | null;
  readonly: boolean;
  /** spec cache mode; null = the node's choice (none on KVM, the QEMU default under TCG). */
  cache: 'none' | 'writethrough' | 'writeback' | null;
  /** spec io mode; null = QEMU's default. */
  io: 'native' | 'threads' | null;
  /** dedicatedIOThread: a virtio disk with an I/O thread of its own. */
  dedicatedIOThread?: boolean;
  /** errorPolicy (libvirt error_policy); absent = QEMU's default (report). */
  errorPolicy?: 'stop' | 'ignore' | 'report' | 'enospace';
  /** A cdrom whose tray starts open. */
  trayOpen?: boolean;
  volume: NormalizedVolume;
}

export interface NormalizedInterface {
  name: string;
  binding: 'masquerade' | 'bridge';
  /** Lower-case aa:bb:cc:dd:ee:ff, or null to let the domain XML derive one from the uid. */
  macAddress: string | null;
  /** virtio | e1000 | e1000e | rtl8139. */
  model: string;
  /** Boot order (PXE); unique across disks and interfaces. */
  bootOrder: number | null;
  /** state down: the link starts down. */
  linkDown?: boolean;
  /** acpiIndex: the guest's stable interface index (e.g. eno<N>). */
  acpiIndex?: number;
}

/** Hyper-V enlightenments as given (a missing one is not rendered). */
export interface HypervFeatures {
  relaxed?: boolean;
  vapic?: boolean;
  vpindex?: boolean;
  runtime?: boolean;
  reset?: boolean;
  frequencies?: boolean;
  reenlightenment?: boolean;
  ipi?: boolean;
  evmcs?: boolean;
  synic?: boolean;
  synictimer?: { enabled: boolean; direct?: boolean };
  spinlocks?: { enabled: boolean; retries?: number };
  vendorId?: { enabled: boolean; value?: string };
  tlbflush?: { enabled: boolean };
}

export type ClockTimerName = 'hpet' | 'pit' | 'rtc' | 'kvm' | 'hyperv';

export interface VmiClock {
  offset: { kind: 'utc'; adjustmentSeconds: number | null } | { kind: 'timezone'; timezone: string };
  timers: Array<{ name: ClockTimerName; present: boolean; tickPolicy?: string; track?: string }>;
}

export interface NormalizedVmi {
  uid: string;
  namespace: string;
  name: string;
  generation: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  cpu: {
    sockets: number;
    cores: number;
    threads: number;
    /** sockets * cores * threads. */
    vcpus: number;
    /** null = node default (host-model with KVM, qemu64 under TCG). */
    model: string | null;
    dedicated: boolean;
    /** spec.domain.cpu.features (policy defaults to require, as KubeVirt's converter). */
    features?: Array<{ name: string; policy: 'force' | 'require' | 'optional' | 'disable' | 'forbid' }>;
  };
  memory: { guestBytes: number; hugepageSizeBytes: number | null };
  firmware: {
    bootloader: 'bios' | 'efi';
    secureBoot: boolean;
    kernelBoot: { kernel: string; initrd: string | null; kernelArgs: string } | null;
    /** kernelBoot.container (ValidationContext.imagePulls): the image store supplies kernelBoot's files at start. */
    kernelBootContainer?: { image: string; pullPolicy: ImagePullPolicy; kernelPath: string | null; initrdPath: string | null; kernelArgs: string } | null;
    /**
     * spec.domain.firmware.uuid: the guest's SMBIOS system UUID and the libvirt domain's UUID
     * (libvirt requires the two to match); null = the VMI uid. The VMI's identity stays its uid
     * (the domain's `<vh:uid>` metadata), so two VMIs may carry the same firmware UUID, though
     * not run on one node at the same time (control/start.ts preflight).
     */
    uuid: string | null;
    /** bios.useSerial: SeaBIOS output on the serial console. */
    biosUseSerial?: boolean;
  };
  /** Default q35. */
  machineType: string;
  /** acpi/apic are always decided; the optional ones are rendered only when the spec sets them. */
  features: {
    acpi: boolean;
    apic: boolean;
    apicEoi?: boolean;
    smm?: boolean;
    pvspinlock?: boolean;
    kvmHidden?: boolean;
    hyperv?: HypervFeatures | 'passthrough';
  };
  /** spec.domain.clock; absent = UTC, hypervisor default timers. */
  clock?: VmiClock;
  /** devices.watchdog (i6300esb; diag288 is s390x-only, a requirement). */
  watchdog?: { name: string; action: 'poweroff' | 'reset' | 'shutdown' };
  /** ioThreadsPolicy shared (or any dedicatedIOThread disk): virtio disks share one I/O thread. */
  ioThreadsShared?: boolean;
  /** devices.blockMultiQueue: one queue per vCPU on virtio disks. */
  blockMultiQueue?: boolean;
  /** devices.autoattachGraphicsDevice true: VNC (unix socket in the VMI's directory) + VGA. */
  graphics?: boolean;
  /** devices.inputs. */
  inputs?: Array<{ name: string; type: 'tablet' | 'keyboard'; bus: 'usb' | 'virtio' }>;
  /** devices.autoattachMemBalloon: false renders no balloon; absent/true = a virtio balloon. */
  memBalloon?: boolean;
  /** SMBIOS: firmware.serial and chassis; absent = libvirt's defaults. */
  sysinfo?: { serial: string | null; chassis: Partial<Record<'manufacturer' | 'version' | 'serial' | 'asset' | 'sku', string>> };
  disks: NormalizedDisk[];
  interfaces: NormalizedInterface[];
  rng: boolean;
  autoattachSerialConsole: boolean;
  runStrategy: RunStrategy;
  terminationGracePeriodSeconds: number;
  /** devices.tpm (not disabled, not persistent): an emulated TPM 2.0 (swtpm), tpm-tis as KubeVirt renders it. */
  tpm?: boolean;
  /** devices.filesystems: virtiofs shares, each named after its volume (the host directory comes with the render context). */
  filesystems?: Array<{ name: string }>;
  /** devices.video.type: the model of the video device graphics get. */
  video?: 'vga' | 'virtio' | 'bochs' | 'ramfb' | 'cirrus';
  /** devices.panicDevices (isa, hyperv). */
  panicDevices?: Array<'isa' | 'hyperv'>;
  /** devices.sound. */
  sound?: { name: string; model: 'ich9' | 'ac97' };
  /** devices.autoattachVSOCK: a virtio vsock with a libvirt-assigned CID (needs /dev/vhost-vsock). */
  vsock?: boolean;
  /**
   * Accepted fields this node cannot honour (empty: the VMI can run here). Render ignores these
   * fields; a VMI with requirements must wait (Pending, condition Schedulable=False/Unschedulable).
   */
  requirements: VmiRequirement[];
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

export const VMI_PHASES = ['Pending', 'Scheduling', 'Scheduled', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
export type VmiPhase = (typeof VMI_PHASES)[number];

export interface VmiCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface VmiInterfaceStatus {
  name: string;
  mac: string;
  ipAddress?: string;
}

export interface VmiStatus {
  phase: VmiPhase;
  /** Why the VMI is where it is, for a human (e.g. "launcher exited 1: ..."). */
  reason: string;
  conditions: VmiCondition[];
  nodeName: string;
  launcherPid: number | null;
  interfaces: VmiInterfaceStatus[];
  /** libvirt's state and reason name, e.g. 'running/booted', 'paused/user'. */
  domainState: string;
}

/**
 * One entry of a VMI's recent event history. Repeats of an identical event (same type, reason
 * and message) are folded into one entry as Kubernetes does: `count` occurrences between
 * `firstTimestamp` and `lastTimestamp`; `time` is the last occurrence.
 */
export interface VmiEvent {
  time: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  count?: number;
  firstTimestamp?: string;
  lastTimestamp?: string;
}

// ---------------------------------------------------------------------------------------------
// Read model (what HTTP /v1/vmis and the gRPC Get/List answers are built from)
// ---------------------------------------------------------------------------------------------

/** One VMI as the daemon currently knows it. */
export interface VmiView {
  uid: string;
  namespace: string;
  name: string;
  generation: number;
  /** The stored manifest (as submitted, after parsing), with cloud-init secrets redacted on the way out (spec/redact.ts). */
  manifest: VirtualMachineInstance;
  status: VmiStatus;
  /** Revision of the last change to this VMI (WatchVMIs order). */
  revision: number;
  deleting: boolean;
  /** Recent events, oldest first (bounded). */
  events: VmiEvent[];
  /** The live domain XML as the launcher reported it, when a domain runs. */
  domainXml: string | null;
}

/** Read access to the VMIs (implemented by the VMI manager; faked in unit tests). */
export interface VmiReadModel {
  list(namespace?: string): VmiView[];
  get(namespace: string, name: string): VmiView | null;
}
