/**
 * libvirt's error facts (virErrorNumber, virErrorDomain) turned into one typed error. Names are
 * libvirt's own enum names (include/libvirt/virterror.h), indexed by value; values newer than
 * this table decode as VIR_ERR_<n> / VIR_FROM_<n>, never as a wrong name.
 */
import { ErrorCodes, VhError } from '../errors';
import type { RawError } from './ffi';

const CODE_NAMES: readonly string[] = [
  'OK', 'INTERNAL_ERROR', 'NO_MEMORY', 'NO_SUPPORT', 'UNKNOWN_HOST', 'NO_CONNECT', 'INVALID_CONN',
  'INVALID_DOMAIN', 'INVALID_ARG', 'OPERATION_FAILED', 'GET_FAILED', 'POST_FAILED', 'HTTP_ERROR',
  'SEXPR_SERIAL', 'NO_XEN', 'XEN_CALL', 'OS_TYPE', 'NO_KERNEL', 'NO_ROOT', 'NO_SOURCE', 'NO_TARGET',
  'NO_NAME', 'NO_OS', 'NO_DEVICE', 'NO_XENSTORE', 'DRIVER_FULL', 'CALL_FAILED', 'XML_ERROR',
  'DOM_EXIST', 'OPERATION_DENIED', 'OPEN_FAILED', 'READ_FAILED', 'PARSE_FAILED', 'CONF_SYNTAX',
  'WRITE_FAILED', 'XML_DETAIL', 'INVALID_NETWORK', 'NETWORK_EXIST', 'SYSTEM_ERROR', 'RPC',
  'GNUTLS_ERROR', 'WAR:NO_NETWORK', 'NO_DOMAIN', 'NO_NETWORK', 'INVALID_MAC', 'AUTH_FAILED',
  'INVALID_STORAGE_POOL', 'INVALID_STORAGE_VOL', 'WAR:NO_STORAGE', 'NO_STORAGE_POOL',
  'NO_STORAGE_VOL', 'WAR:NO_NODE', 'INVALID_NODE_DEVICE', 'NO_NODE_DEVICE', 'NO_SECURITY_MODEL',
  'OPERATION_INVALID', 'WAR:NO_INTERFACE', 'NO_INTERFACE', 'INVALID_INTERFACE',
  'MULTIPLE_INTERFACES', 'WAR:NO_NWFILTER', 'INVALID_NWFILTER', 'NO_NWFILTER', 'BUILD_FIREWALL',
  'WAR:NO_SECRET', 'INVALID_SECRET', 'NO_SECRET', 'CONFIG_UNSUPPORTED', 'OPERATION_TIMEOUT',
  'MIGRATE_PERSIST_FAILED', 'HOOK_SCRIPT_FAILED', 'INVALID_DOMAIN_SNAPSHOT', 'NO_DOMAIN_SNAPSHOT',
  'INVALID_STREAM', 'ARGUMENT_UNSUPPORTED', 'STORAGE_PROBE_FAILED', 'STORAGE_POOL_BUILT',
  'SNAPSHOT_REVERT_RISKY', 'OPERATION_ABORTED', 'AUTH_CANCELLED', 'NO_DOMAIN_METADATA',
  'MIGRATE_UNSAFE', 'OVERFLOW', 'BLOCK_COPY_ACTIVE', 'OPERATION_UNSUPPORTED', 'SSH',
  'AGENT_UNRESPONSIVE',
];

const DOMAIN_NAMES: readonly string[] = [
  'NONE', 'XEN', 'XEND', 'XENSTORE', 'SEXPR', 'XML', 'DOM', 'RPC', 'PROXY', 'CONF', 'QEMU', 'NET',
  'TEST', 'REMOTE', 'OPENVZ', 'XENXM', 'STATS_LINUX', 'LXC', 'STORAGE', 'NETWORK', 'DOMAIN', 'UML',
  'NODEDEV', 'XEN_INOTIFY', 'SECURITY', 'VBOX', 'INTERFACE', 'ONE', 'ESX', 'PHYP', 'SECRET', 'CPU',
  'XENAPI', 'NWFILTER', 'HOOK', 'DOMAIN_SNAPSHOT', 'AUDIT', 'SYSINFO', 'STREAMS', 'VMWARE', 'EVENT',
  'LIBXL', 'LOCKING', 'HYPERV', 'CAPABILITIES', 'URI', 'AUTH', 'DBUS', 'PARALLELS', 'DEVICE', 'SSH',
  'LOCKSPACE', 'INITCTL', 'IDENTITY', 'CGROUP', 'ACCESS', 'SYSTEMD', 'BHYVE', 'CRYPTO', 'FIREWALL',
  'POLKIT', 'THREAD', 'ADMIN', 'LOGGING', 'XENXL', 'PERF', 'LIBSSH', 'RESCTRL', 'FIREWALLD',
  'DOMAIN_CHECKPOINT', 'TPM', 'BPF', 'CH',
];

/** libvirt's enum name for a virErrorNumber, e.g. 42 -> 'VIR_ERR_NO_DOMAIN'. */
export function errorCodeName(code: number): string {
  const n = CODE_NAMES[code];
  if (n === undefined) return `VIR_ERR_${code}`;
  return n.startsWith('WAR:') ? `VIR_WAR_${n.slice(4)}` : `VIR_ERR_${n}`;
}

/** libvirt's enum name for a virErrorDomain, e.g. 12 -> 'VIR_FROM_TEST'. */
export function errorDomainName(domain: number): string {
  const n = DOMAIN_NAMES[domain];
  return n === undefined ? `VIR_FROM_${domain}` : `VIR_FROM_${n}`;
}

/**
 * A failed libvirt call: libvirt's facts plus the API that failed. `subject` (e.g. "domain
 * 'web-1'") is appended to libvirt's message when libvirt left it out (the test driver and some
 * remote paths say only "Domain not found"), so an operator always sees what the call was about.
 */
export class LibvirtError extends VhError {
  /** virErrorNumber. */
  readonly libvirtCode: number;
  /** e.g. 'VIR_ERR_NO_DOMAIN'. */
  readonly codeName: string;
  /** virErrorDomain (the libvirt subsystem that raised it). */
  readonly domain: number;
  /** e.g. 'VIR_FROM_QEMU'. */
  readonly domainName: string;
  /** The libvirt function that failed, e.g. 'virDomainLookupByName'. */
  readonly api: string;

  /** What the call was about, e.g. "domain 'web-1'", if the caller said. */
  readonly subject: string | undefined;

  constructor(api: string, raw: Pick<RawError, 'code' | 'domain' | 'message'>, subject?: string) {
    const codeName = errorCodeName(raw.code);
    const domainName = errorDomainName(raw.domain);
    const base = raw.message ?? `${api} failed (${codeName})`;
    const message = subject && !base.includes(subject) ? `${base}: ${subject}` : base;
    super(ErrorCodes.LIBVIRT_ERROR, message, {
      api,
      ...(subject ? { subject } : {}),
      libvirtCode: raw.code,
      codeName,
      domain: raw.domain,
      domainName,
    });
    this.name = 'LibvirtError';
    this.libvirtCode = raw.code;
    this.codeName = codeName;
    this.domain = raw.domain;
    this.domainName = domainName;
    this.api = api;
    this.subject = subject;
  }
}

/** The error libvirt recorded for `api` (a virError copied out), or unknownLibvirtError when it recorded none (code 0). */
export function libvirtErrorFrom(api: string, raw: Pick<RawError, 'code' | 'domain' | 'message'>, subject?: string): LibvirtError {
  return raw.code === 0 ? unknownLibvirtError(api, subject) : new LibvirtError(api, raw, subject);
}

/** The error for a call that failed without libvirt recording why (should not happen). */
export function unknownLibvirtError(api: string, subject?: string): LibvirtError {
  return new LibvirtError(api, { code: 1, domain: 0, message: `${api} failed and libvirt reported no error` }, subject);
}
