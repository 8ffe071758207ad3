/**
 * The raw shape of the C++ addon (build/Release/virt_handler_native.node).
 * This file only describes what native/addon.cc exports; the public, typed API lives in
 * src/kvm/. Keep the two in step: a field renamed here must be renamed in native/ too.
 */

/** One entry of KVM_GET_SUPPORTED_CPUID (struct kvm_cpuid_entry2). */
export interface NativeCpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** A /dev/kvm handle. Every method is a short synchronous ioctl. */
export interface NativeKvmSystem {
  /** KVM_GET_API_VERSION (12 on every supported kernel). */
  apiVersion(): number;
  /** KVM_CHECK_EXTENSION for a name from capabilityNames(); throws ERR_UNKNOWN_CAPABILITY otherwise. */
  checkExtension(name: string): number;
  /** KVM_CHECK_EXTENSION for every name in the table. */
  capabilities(): Record<string, number>;
  /** KVM_GET_VCPU_MMAP_SIZE. */
  vcpuMmapSize(): number;
  /** KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG. */
  supportedCpuid(): NativeCpuidEntry[];
  /** KVM_GET_MSR_INDEX_LIST. */
  msrIndexList(): number[];
  /** Closes the fd; further calls throw ERR_CLOSED. Idempotent. */
  close(): void;
  /** True once close() ran. */
  readonly closed: boolean;
}

/**
 * Errors thrown by the addon are plain Error objects carrying Node-style facts:
 * code ('ENOENT', 'EACCES', 'EEXIST', ... or 'ERR_*' for addon-level misuse),
 * errno (positive errno number, 0 for ERR_*), syscall ('open', 'KVM_CHECK_EXTENSION', ...),
 * and path where a path was involved.
 */
export interface NativeErrorFacts {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export interface NativeBinding {
  /** Opens the device (default '/dev/kvm') with O_RDWR|O_CLOEXEC. */
  KvmSystem: new (devicePath?: string) => NativeKvmSystem;
  /** Names accepted by checkExtension(), in table order. */
  capabilityNames(): string[];
  /** Decodes CPUID leaves into feature names (e.g. 'svm', 'avx2'); pure, needs no KVM. */
  decodeCpuidFeatures(entries: NativeCpuidEntry[]): string[];
  /**
   * Sends one sd_notify datagram. socketPath defaults to $NOTIFY_SOCKET; a leading '@' means an
   * abstract socket. Returns false when no socket is configured, true when sent; throws on error.
   */
  sdNotify(message: string, socketPath?: string): boolean;
  /** sysconf(_SC_PAGESIZE). */
  hostPageSize(): number;
}
