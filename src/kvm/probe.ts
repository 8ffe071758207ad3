/**
 * The KVM part of the node probe: can this host run VMs, and with what? Never throws - a
 * broken host is an answer (available: false plus a reason an operator can act on), not a crash.
 */
import { ErrorCodes, isVhError } from '../errors';
import type { NativeBinding } from '../native/binding';
import { toKvmError } from './errors';
import { KVM_API_VERSION, KvmSystem } from './kvm-system';

/** What probeKvm() learned about /dev/kvm; NodeInfo.kvm, served by GET /v1/node and GetNodeInfo. */
export interface KvmInfo {
  available: boolean;
  /** Why KVM is unusable (operator-readable), when available is false. */
  reason: string | null;
  /** Stable error code from the open/probe failure, e.g. 'ENOENT', 'EACCES'. */
  errorCode: string | null;
  apiVersion: number | null;
  /** KVM_CHECK_EXTENSION value per capability name (e.g. NR_VCPUS: 2). */
  capabilities: Record<string, number>;
  vcpuMmapSize: number | null;
  /** CPUID feature names KVM can expose to guests. */
  cpuidFeatures: string[];
  msrCount: number | null;
}

/** Inputs of probeKvm(). */
export interface ProbeKvmOptions {
  /** Device to probe, normally /dev/kvm. */
  devicePath: string;
  /** The loaded addon, or null when it failed to load. */
  native: NativeBinding | null;
  /** Why the addon failed to load (tryLoadNative().error), when native is null. */
  nativeError?: string;
}

function emptyInfo(): KvmInfo {
  return {
    available: false,
    reason: null,
    errorCode: null,
    apiVersion: null,
    capabilities: {},
    vcpuMmapSize: null,
    cpuidFeatures: [],
    msrCount: null,
  };
}

/**
 * Opens the device and reads API version, capabilities, vCPU mmap size, CPUID features and the
 * MSR count. On failure `reason` says what to fix and `errorCode` is the errno code when there
 * is one ('ENOENT', 'EACCES', 'ENOTTY') or else a VH_ERR_* code; fields read before the failure
 * are kept.
 */
export function probeKvm(opts: ProbeKvmOptions): KvmInfo {
  const info = emptyInfo();
  const fail = (reason: string, errorCode: string): KvmInfo => {
    info.available = false;
    info.reason = reason;
    info.errorCode = errorCode;
    return info;
  };

  if (!opts.native) {
    return fail(`native addon not built: ${opts.nativeError ?? 'unknown reason'}`, ErrorCodes.NATIVE_UNAVAILABLE);
  }

  let kvm: KvmSystem | null = null;
  try {
    kvm = KvmSystem.open({ devicePath: opts.devicePath, native: opts.native });
    info.apiVersion = kvm.apiVersion();
    if (info.apiVersion !== KVM_API_VERSION) {
      return fail(`KVM API version ${info.apiVersion}, expected ${KVM_API_VERSION}`, ErrorCodes.KVM_UNUSABLE);
    }
    info.capabilities = kvm.capabilities();
    info.vcpuMmapSize = kvm.vcpuMmapSize();
    info.cpuidFeatures = kvm.cpuidFeatures();
    info.msrCount = kvm.msrIndexList().length;
    info.available = true;
    return info;
  } catch (e) {
    const err = isVhError(e) ? e : toKvmError(e, opts.devicePath);
    const nativeCode = err.details.code;
    return fail(err.message, typeof nativeCode === 'string' && !nativeCode.startsWith('ERR_') ? nativeCode : err.code);
  } finally {
    try {
      kvm?.close();
    } catch {
      // Closing only releases an fd; a failure here must not hide the probe's answer.
    }
  }
}
