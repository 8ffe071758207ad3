/**
 * The bounds of the handler<->launcher contract (proto/virthandler/v1/launcher.proto), in one
 * place for both ends: the validators (validate.ts) enforce them, the codec refuses larger
 * messages, and tests build messages just inside and just outside them. Each bound sits well
 * above anything a real VMI produces; it exists so that a broken or hostile peer cannot make
 * the other end buffer, log or export without limit.
 */

/** One Connect message, either direction (the handler's gRPC server takes 4 MiB as well). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Register: a spawn or session token (base64url of 32 bytes is 43 characters). */
export const MAX_TOKEN = 256;
export const MAX_VERSION = 64;

/** DomainStatus fields, in characters. */
export const MAX_STATE = 32;
export const MAX_REASON = 64;
export const MAX_DOMAIN_UUID = 64;
export const MAX_LAST_EVENT = 128;
/** Error texts (a status's error, a result's error). */
export const MAX_ERROR = 64 * 1024;
/** The live domain XML a status carries once, and the XML StartDomain carries. */
export const MAX_DOMAIN_XML = 1024 * 1024;

/** CommandResult.id: the handler issues c<seq>. */
export const MAX_COMMAND_ID = 64;

/** libvirt state names a launcher may report ('' = no domain yet). */
export const DOMAIN_STATES: ReadonlySet<string> = new Set(['', 'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended', 'unknown']);

/** Stats: vCPUs per domain (and the largest vCPU id + 1). */
export const MAX_VCPUS = 4096;
/** Stats: interfaces, and block devices, per domain. */
export const MAX_STATS_DEVICES = 512;
/** Stats device names become Prometheus label values: printable ASCII, 1-128 characters. */
export const DEVICE_NAME = /^[\x21-\x7e]{1,128}$/;
/** virDomainState / virVcpuState and their reasons are small enums. */
export const MAX_STATE_ENUM = 64;

/** StartDomain: disks per plan (the VMI spec allows 256 volumes). */
export const MAX_DISKS = 256;
/** Paths in a disk plan, in bytes (PATH_MAX). */
export const MAX_PATH = 4096;
/** Disk names in a disk plan (VMI volume names are DNS labels). */
export const MAX_DISK_NAME = 253;
/** Each of a cloud-init seed's user-data, meta-data and network-config (the VMI spec allows 64 KiB). */
export const MAX_CLOUD_INIT_DATA = 1024 * 1024;
/** libvirt URIs (qemu:///embed?root=<short path>). */
export const MAX_LIBVIRT_URI = 4096;

/** An IsoDisk: files per image (a ConfigMap has at most a few hundred keys in practice). */
export const MAX_ISO_FILES = 1024;
/**
 * An IsoDisk: the sum of its files' bytes. Kubernetes caps a ConfigMap or Secret at 1 MiB; a
 * config drive is bounded by the cloud-init limits. The handler also keeps a whole plan's ISO
 * data under MAX_PLAN_ISO_BYTES, so StartDomain stays inside MAX_MESSAGE_BYTES.
 */
export const MAX_ISO_BYTES = 2 * 1024 * 1024;
/** All IsoDisks of one plan together. */
export const MAX_PLAN_ISO_BYTES = 3 * 1024 * 1024;
/** An IsoFile path, in bytes (and each component at most 255: NAME_MAX). */
export const MAX_ISO_PATH = 1024;
/** genisoimage -volid: ISO 9660 allows 32 characters. */
export const ISO_VOLUME_LABEL = /^[A-Za-z0-9 _.:-]{1,32}$/;
