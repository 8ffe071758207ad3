/**
 * The typed /dev/kvm handle. Wraps NativeKvmSystem; every failure leaves here as a VhError with a
 * stable code (KVM_MISSING, KVM_FORBIDDEN, KVM_UNUSABLE, INVALID_ARGUMENT, INTERNAL) and the raw
 * facts in `details`, mapped by ./errors.ts.
 */
import type { NativeBinding, NativeCpuidEntry, NativeKvmSystem } from '../native/binding';
import { loadNative } from '../native/loader';
import { callNative } from './errors';
import { Vm, type VmOptions } from './vm';

/** Where KVM lives unless configured otherwise. */
export const DEFAULT_KVM_DEVICE = '/dev/kvm';

/** The only KVM API version the kernel has shipped since 2.6.22; anything else is unusable. */
export const KVM_API_VERSION = 12;

/** One KVM_GET_SUPPORTED_CPUID entry (struct kvm_cpuid_entry2). */
export type CpuidEntry = NativeCpuidEntry;

/** Options of KvmSystem.open(). */
export interface KvmSystemOptions {
  /** Device to open; defaults to /dev/kvm. */
  devicePath?: string;
  /** The addon; defaults to loadNative(). Tests pass a fake. */
  native?: NativeBinding;
}

/** A /dev/kvm handle: API version, capabilities, supported CPUID and MSRs. Close it when done. */
export class KvmSystem {
  /** The device this handle was opened on. */
  readonly devicePath: string;
  private readonly native: NativeBinding;
  private readonly handle: NativeKvmSystem;

  private constructor(native: NativeBinding, handle: NativeKvmSystem, devicePath: string) {
    this.native = native;
    this.handle = handle;
    this.devicePath = devicePath;
  }

  /** Opens the device O_RDWR|O_CLOEXEC; throws KVM_MISSING, KVM_FORBIDDEN or KVM_UNUSABLE. */
  static open(opts: KvmSystemOptions = {}): KvmSystem {
    const devicePath = opts.devicePath ?? DEFAULT_KVM_DEVICE;
    const native = opts.native ?? loadNative();
    return callNative(() => new KvmSystem(native, new native.KvmSystem(devicePath), devicePath), devicePath);
  }

  /** KVM_GET_API_VERSION; 12 on every usable kernel (see KVM_API_VERSION). */
  apiVersion(): number {
    return this.call(() => this.handle.apiVersion());
  }

  /** KVM_CHECK_EXTENSION by name (see capabilityNames()); 0 means unsupported. */
  checkExtension(name: string): number {
    return this.call(() => this.handle.checkExtension(name));
  }

  /** KVM_CHECK_EXTENSION for every known capability name. */
  capabilities(): Record<string, number> {
    return this.call(() => this.handle.capabilities());
  }

  /** Names checkExtension() accepts, in table order. */
  capabilityNames(): string[] {
    return this.native.capabilityNames();
  }

  /** Bytes to mmap from a vCPU fd for its kvm_run area (KVM_GET_VCPU_MMAP_SIZE). */
  vcpuMmapSize(): number {
    return this.call(() => this.handle.vcpuMmapSize());
  }

  /** Every CPUID leaf KVM can expose to a guest (KVM_GET_SUPPORTED_CPUID). */
  supportedCpuid(): CpuidEntry[] {
    return this.call(() => this.handle.supportedCpuid());
  }

  /** Feature names of supportedCpuid(), /proc/cpuinfo style, sorted. */
  cpuidFeatures(): string[] {
    const entries = this.supportedCpuid();
    return this.call(() => this.native.decodeCpuidFeatures(entries));
  }

  /** MSR numbers KVM can save and restore (KVM_GET_MSR_INDEX_LIST). */
  msrIndexList(): number[] {
    return this.call(() => this.handle.msrIndexList());
  }

  /** Creates a VM (KVM_CREATE_VM) configured by `options`; close it when done. */
  createVm(options: VmOptions = {}): Vm {
    return Vm.wrap(callNative(() => this.handle.createVm(options), this.devicePath, 'createVm'), this.devicePath);
  }

  /** Closes the fd. Idempotent; afterwards every other method throws INTERNAL (ERR_CLOSED). */
  close(): void {
    this.handle.close();
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.handle.closed;
  }

  private call<T>(fn: () => T): T {
    return callNative(fn, this.devicePath);
  }
}
