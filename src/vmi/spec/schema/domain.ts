/**
 * Schema: the domain outside its devices (CPU, memory, resources, firmware, machine, features,
 * clock, launch security, chassis, I/O threads).
 */
import { arr, bool, empty, featureState, int, map, needs, obj, oneOf, qty, str } from './node';

export const CPU = obj({
  cores: int(), sockets: int(), threads: int(), model: str(), dedicatedCpuPlacement: bool(),
  maxSockets: needs(int(), 'CPU hotplug (maxSockets is not supported by this node)'),
  features: arr(obj({ name: str(), policy: oneOf(['force', 'require', 'optional', 'disable', 'forbid']) })),
  isolateEmulatorThread: needs(bool(), (v) => (v === true ? 'an isolated emulator thread (needs a dedicated host CPU this node does not assign)' : null)),
  numa: needs(obj({ guestMappingPassthrough: empty() }), 'guest NUMA mapping passthrough (needs hugepages and a NUMA-aware CPU manager)'),
  realtime: needs(obj({ mask: str() }), 'realtime vCPUs (this node has no realtime CPU scheduling)'),
});

export const MEMORY = obj({
  guest: qty(),
  hugepages: obj({ pageSize: str() }),
  maxGuest: needs(qty(), 'memory hotplug (maxGuest is not supported by this node)'),
  // Pod memory accounting: there is no pod here, so there is nothing to reserve it in.
  reservedOverhead: obj({ addedOverhead: qty(), memLock: oneOf(['Required', 'NotRequired']) }),
});

/** requests/limits are ResourceLists; validate.ts honours cpu and memory and lists the others as requirements. */
export const RESOURCES = obj({ requests: map(qty()), limits: map(qty()), overcommitGuestOverhead: bool() });

export const FIRMWARE = obj({
  uuid: str(),
  serial: str(),
  bootloader: obj({
    bios: obj({ useSerial: bool() }),
    efi: obj({ secureBoot: bool(), persistent: needs(bool(), (v) => (v === true ? 'persistent EFI variables (need backend storage this node does not have)' : null)) }),
  }),
  kernelBoot: obj({
    kernelArgs: str(),
    // This node's own extension: host paths (under the image root) of a kernel and initrd.
    kernel: str(), initrd: str(),
    // Whether the image is a requirement depends on the node (ValidationContext.imagePulls):
    // volume-sources.ts (kernelBootContainer) decides it, as for containerDisk.image.
    container: obj({
      image: str(), imagePullPolicy: oneOf(['Always', 'IfNotPresent', 'Never']), kernelPath: str(), initrdPath: str(),
      imagePullSecret: needs(str(), (v) => `image pull Secret ${String(v)} (this node reads no Kubernetes objects); registry credentials come from the node's images.authFile`),
    }),
  }),
  acpi: needs(obj({ slicNameRef: str(), msdmNameRef: str() }), 'ACPI SLIC/MSDM tables from a Secret (this node reads no Kubernetes Secrets)'),
});

export function imageOf(v: unknown): string {
  const image = typeof v === 'object' && v !== null ? (v as { image?: unknown }).image : undefined;
  return typeof image === 'string' ? image : '(no image)';
}

/** A FeatureState that is present and enabled (KubeVirt defaults enabled to true). */
const state = (v: unknown): boolean => typeof v === 'object' && v !== null && (v as { enabled?: unknown }).enabled !== false;

const hyperv = () => obj({
  relaxed: featureState(), vapic: featureState(), vpindex: featureState(), runtime: featureState(), reset: featureState(),
  frequencies: featureState(), reenlightenment: featureState(), ipi: featureState(), evmcs: featureState(),
  synic: featureState(),
  synictimer: obj({ enabled: bool(), direct: featureState() }),
  spinlocks: obj({ enabled: bool(), spinlocks: int() }),
  vendorid: obj({ enabled: bool(), vendorid: str() }),
  // libvirt 9.0 (Debian 12) has no direct/extended TLB flush elements.
  tlbflush: obj({
    enabled: bool(),
    direct: needs(featureState(), (v) => (state(v) ? 'Hyper-V direct TLB flush (not rendered by this node yet)' : null)),
    extended: needs(featureState(), (v) => (state(v) ? 'Hyper-V extended TLB flush (not rendered by this node yet)' : null)),
  }),
});

export const FEATURES = obj({
  acpi: featureState(),
  apic: obj({ enabled: bool(), endOfInterrupt: bool() }),
  smm: featureState(),
  hyperv: hyperv(),
  hypervPassthrough: obj({ enabled: bool() }),
  kvm: obj({ hidden: bool() }),
  pvspinlock: featureState(),
});

const TICK_POLICIES = ['delay', 'catchup', 'merge', 'discard'] as const;
export const CLOCK = obj({
  utc: obj({ offsetSeconds: int() }),
  timezone: str(),
  timer: obj({
    hpet: obj({ present: bool(), tickPolicy: oneOf(TICK_POLICIES) }),
    pit: obj({ present: bool(), tickPolicy: oneOf(TICK_POLICIES) }),
    rtc: obj({ present: bool(), tickPolicy: oneOf(TICK_POLICIES), track: oneOf(['guest', 'wall']) }),
    kvm: obj({ present: bool() }),
    hyperv: obj({ present: bool() }),
  }),
});

export const LAUNCH_SECURITY = obj({
  sev: needs(obj({ policy: obj({ encryptedState: bool() }), attestation: empty(), session: str(), dhCert: str() }), 'AMD SEV (not available on this node)'),
  snp: needs(empty(), 'AMD SEV-SNP (not available on this node)'),
  tdx: needs(empty(), 'Intel TDX (not available on this node)'),
});

export const CHASSIS = obj({ manufacturer: str(), version: str(), serial: str(), asset: str(), sku: str() });

export const IO_THREADS_POLICY = needs(oneOf(['shared', 'auto', 'supplementalPool']), (v) => (v === 'shared' ? null : `I/O threads policy ${JSON.stringify(v)} (not rendered by this node yet; shared is)`));
export const IO_THREADS = needs(obj({ supplementalPoolThreadCount: int() }), 'a supplemental I/O thread pool (not rendered by this node yet)');

