/**
 * The configuration key table (one row per Config leaf: meaning, kind, default) and the two
 * default profiles. Env var and flag names are derived from the key so the three spellings
 * can never drift apart: `http.tcp.port` <-> `VH_HTTP_TCP_PORT` <-> `--http-tcp-port`.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, VhError } from '../errors';

/** Which set of defaults applies: system paths (root/systemd/DaemonSet) or an unprivileged checkout. */
export type Profile = 'production' | 'dev';

/** How a key's raw value is parsed and checked (see load.ts). */
export type KeyKind =
  | { type: 'nodeName' }
  | { type: 'path'; writable?: boolean; nullable?: boolean }
  | { type: 'socket' }
  | { type: 'host' }
  | { type: 'switch' }
  | { type: 'bool' }
  | { type: 'int'; min: number; max: number; hint?: string }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'libvirtUri' }
  | { type: 'pathList' }
  | { type: 'ifname' }
  /** Registry host (or prefix) -> registry host (or prefix); text form `from=to,from=to`. */
  | { type: 'registryMap' }
  /** Registry host -> mirrors tried in order; text form `host=m1|m2,host=m3`. */
  | { type: 'registryMirrors' }
  /** Registries reached over plain HTTP (loopback only); text form `h1,h2`. */
  | { type: 'loopbackRegistries' }
  /** A byte count: an integer or a quantity (512Mi, 64Gi, 1G). */
  | { type: 'bytes'; min: number; max: number };

/** One configuration key. */
export interface KeySpec {
  /** Dotted Config path, e.g. 'http.tcp.port'. */
  key: string;
  kind: KeyKind;
  /** One line for --help and the README table. */
  doc: string;
  /** Human description of the default (profile-dependent ones say so). */
  defaultDoc: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Every accepted key. `http.tcp` and `grpc.tcp` are pseudo keys (on/off) because Config.http.tcp
 * and Config.grpc.tcp are nullable: YAML `tcp: null`, `VH_HTTP_TCP=off` or `--http-tcp=off`
 * disable a TCP listener; a `tcp:` mapping in a file, `=on` from env or a flag enable it.
 */
export const KEYS: readonly KeySpec[] = [
  { key: 'nodeName', kind: { type: 'nodeName' }, doc: 'Kubernetes node name', defaultDoc: '$NODE_NAME, else the lower-cased hostname' },
  { key: 'stateDir', kind: { type: 'path', writable: true }, doc: 'durable state directory (created 0750)', defaultDoc: 'production: $STATE_DIRECTORY or /var/lib/virt-handler; dev: <devRoot>/state' },
  { key: 'runDir', kind: { type: 'path', writable: true }, doc: 'runtime directory for sockets (created 0750)', defaultDoc: 'production: $RUNTIME_DIRECTORY or /run/virt-handler; dev: <devRoot>/run' },
  { key: 'log.level', kind: { type: 'enum', values: LOG_LEVELS }, doc: 'fatal|error|warn|info|debug|trace|silent (JSON lines on stdout)', defaultDoc: 'info' },
  { key: 'http.socket', kind: { type: 'socket' }, doc: 'status API unix socket (mode 0660)', defaultDoc: '<runDir>/http.sock' },
  { key: 'http.tcp', kind: { type: 'switch' }, doc: 'status API TCP listener on|off', defaultDoc: 'on' },
  { key: 'http.tcp.host', kind: { type: 'host' }, doc: 'TCP listener address (loopback unless allowNonLoopback)', defaultDoc: '127.0.0.1' },
  { key: 'http.tcp.port', kind: { type: 'int', min: 0, max: 65535, hint: '0 picks a free port' }, doc: 'TCP listener port', defaultDoc: '8185' },
  { key: 'http.allowNonLoopback', kind: { type: 'bool' }, doc: 'permit a non-loopback http.tcp.host', defaultDoc: 'false' },
  { key: 'grpc.socket', kind: { type: 'socket' }, doc: 'gRPC unix socket (mode 0660)', defaultDoc: '<runDir>/grpc.sock' },
  { key: 'grpc.tcp', kind: { type: 'switch' }, doc: 'gRPC TCP listener with mutual TLS (Node, Health, VmiService; never Launcher) on|off', defaultDoc: 'off' },
  { key: 'grpc.tcp.host', kind: { type: 'host' }, doc: 'gRPC TCP listener address (non-loopback allowed: clients must present a cert signed by grpc.tls.ca)', defaultDoc: '127.0.0.1' },
  { key: 'grpc.tcp.port', kind: { type: 'int', min: 0, max: 65535, hint: '0 picks a free port' }, doc: 'gRPC TCP listener port', defaultDoc: '8186' },
  { key: 'grpc.tls.cert', kind: { type: 'path' }, doc: 'PEM server certificate chain for grpc.tcp (required when grpc.tcp is on)', defaultDoc: 'none' },
  { key: 'grpc.tls.key', kind: { type: 'path' }, doc: 'PEM server private key for grpc.tcp (mode 0600 or stricter; required when grpc.tcp is on)', defaultDoc: 'none' },
  { key: 'grpc.tls.ca', kind: { type: 'path' }, doc: 'PEM CA bundle client certificates must chain to (required when grpc.tcp is on)', defaultDoc: 'none' },
  { key: 'shutdown.drainTimeoutMs', kind: { type: 'int', min: 0, max: 3_600_000 }, doc: 'drain deadline for in-flight requests after SIGTERM', defaultDoc: '10000' },
  { key: 'probe.procRoot', kind: { type: 'path' }, doc: 'procfs root read by the node probe', defaultDoc: '/proc' },
  { key: 'probe.sysRoot', kind: { type: 'path' }, doc: 'sysfs root read by the node probe', defaultDoc: '/sys' },
  { key: 'probe.devRoot', kind: { type: 'path' }, doc: 'device directory inspected by the node probe', defaultDoc: '/dev' },
  { key: 'probe.kvmDevice', kind: { type: 'path' }, doc: 'KVM device opened by the native addon', defaultDoc: '/dev/kvm' },
  { key: 'libvirt.uri', kind: { type: 'libvirtUri' }, doc: "node libvirt URI (qemu:///system, qemu+unix:///system?socket=..., qemu:///embed?root=..., test:///default) or 'off'", defaultDoc: 'qemu:///system' },
  { key: 'libvirt.required', kind: { type: 'bool' }, doc: 'not ready while libvirt is unreachable', defaultDoc: 'false' },
  { key: 'vmi.imageRoot', kind: { type: 'path' }, doc: 'host directory relative kernelBoot/containerDisk paths resolve under', defaultDoc: '<stateDir>/images' },
  { key: 'vmi.hostPathRoots', kind: { type: 'pathList' }, doc: "more directories absolute VMI host paths may point into (':'-separated; YAML list)", defaultDoc: 'none (only vmi.imageRoot)' },
  { key: 'vmi.allowTcg', kind: { type: 'bool' }, doc: 'run VMIs under QEMU TCG when the node has no usable hardware KVM', defaultDoc: 'true' },
  { key: 'vmi.embeddedLibvirt', kind: { type: 'bool' }, doc: "without a connected node libvirtd, run each VMI through qemu:///embed inside its launcher", defaultDoc: 'true' },
  { key: 'vmi.maxVmis', kind: { type: 'int', min: 1, max: 10000 }, doc: 'most VMIs this node accepts', defaultDoc: '256' },
  { key: 'vmi.bridge', kind: { type: 'ifname' }, doc: "host bridge for 'bridge' interfaces ('' = none: such VMIs are refused)", defaultDoc: "''" },
  { key: 'vmi.reconcileWorkers', kind: { type: 'int', min: 1, max: 64 }, doc: 'VMIs reconciled at once', defaultDoc: '8' },
  { key: 'images.root', kind: { type: 'path', writable: true }, doc: 'the image store (pulled containerDisk images; created 0700; not inside vmi.imageRoot)', defaultDoc: '<stateDir>/image-store' },
  { key: 'images.rewrites', kind: { type: 'registryMap' }, doc: "reference prefix rewrites, longest prefix wins (YAML mapping; 'from=to,...')", defaultDoc: 'none' },
  { key: 'images.mirrors', kind: { type: 'registryMirrors' }, doc: "per registry host, mirrors tried in order before it (YAML mapping of lists; 'host=m1|m2,...')", defaultDoc: 'none' },
  { key: 'images.authFile', kind: { type: 'path', nullable: true }, doc: "registry credentials (containers-auth.json format), passed to skopeo only ('' = none)", defaultDoc: 'none' },
  { key: 'images.insecureRegistries', kind: { type: 'loopbackRegistries' }, doc: "registries reached over plain HTTP; loopback hosts only (YAML list; ',')", defaultDoc: 'none' },
  { key: 'images.maxImageSize', kind: { type: 'bytes', min: 2 ** 20, max: 2 ** 50 }, doc: 'largest image pulled (bytes or a quantity: 512Mi, 64Gi)', defaultDoc: '64Gi' },
  { key: 'volumes.claimRoot', kind: { type: 'path', writable: true }, doc: 'persistent volume claims and DataVolumes: <claimRoot>/<namespace>/<claimName>/disk.img (filesystem mode) or a block device node named disk (block mode); created 0700', defaultDoc: '<stateDir>/volumes' },
  { key: 'volumes.objectRoot', kind: { type: 'path' }, doc: 'ConfigMaps, Secrets and service accounts the node serves as volumes: <objectRoot>/<namespace>/{configmaps,secrets,serviceaccounts}/<name>/<key>', defaultDoc: '<stateDir>/objects' },
  { key: 'libvirt.lanes', kind: { type: 'int', min: 1, max: 32 }, doc: 'libvirt connections opened (calls that run at once)', defaultDoc: '4' },
];

/** 'http.tcp.port' -> 'VH_HTTP_TCP_PORT'. */
export function envName(key: string): string {
  return 'VH_' + key.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** 'http.tcp.port' -> 'http-tcp-port' (without the leading dashes). */
export function flagName(key: string): string {
  return key.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()).join('-');
}

/** Facts about the process that decide defaults; a parameter so tests need not mutate process state. */
export interface DefaultsContext {
  env: Readonly<Record<string, string | undefined>>;
  uid: number;
  hostname: string;
  tmpdir: string;
}

/** The real process's context. */
export function processContext(env: Readonly<Record<string, string | undefined>> = process.env): DefaultsContext {
  return { env, uid: process.getuid?.() ?? 0, hostname: os.hostname(), tmpdir: os.tmpdir() };
}

/**
 * $VH_PROFILE when set; else production when systemd handed us directories
 * ($STATE_DIRECTORY/$RUNTIME_DIRECTORY) or we run as root (DaemonSet); dev otherwise, so an
 * unprivileged checkout starts without sudo. Shared by the daemon and vhctl so both agree.
 */
export function detectProfile(ctx: DefaultsContext): Profile {
  const explicit = ctx.env.VH_PROFILE;
  if (explicit !== undefined) {
    if (explicit !== 'production' && explicit !== 'dev') {
      throw new VhError(ErrorCodes.CONFIG_INVALID, `VH_PROFILE: must be production or dev, got ${JSON.stringify(explicit)}`);
    }
    return explicit;
  }
  if (ctx.env.STATE_DIRECTORY || ctx.env.RUNTIME_DIRECTORY) return 'production';
  return ctx.uid === 0 ? 'production' : 'dev';
}

/**
 * Dev root: $XDG_RUNTIME_DIR/virt-handler (per-user, cleaned at logout) when set, else
 * <tmpdir>/virt-handler-<uid> (per-user so two developers on one box do not collide).
 */
export function devRoot(ctx: DefaultsContext): string {
  const xdg = ctx.env.XDG_RUNTIME_DIR;
  return xdg && path.isAbsolute(xdg) ? path.join(xdg, 'virt-handler') : path.join(ctx.tmpdir, `virt-handler-${ctx.uid}`);
}

/**
 * Default raw value per key for `profile` (strings/numbers/booleans exactly as a config file
 * would hold them). Socket paths are absent: they derive from the final runDir (load.ts).
 */
export function defaultValues(profile: Profile, ctx: DefaultsContext): Record<string, unknown> {
  // systemd may pass several directories separated by ':'; the first one is ours.
  const first = (v: string | undefined): string | undefined => (v ? v.split(':')[0] : undefined);
  const dirs =
    profile === 'production'
      ? { stateDir: first(ctx.env.STATE_DIRECTORY) ?? '/var/lib/virt-handler', runDir: first(ctx.env.RUNTIME_DIRECTORY) ?? '/run/virt-handler' }
      : { stateDir: path.join(devRoot(ctx), 'state'), runDir: path.join(devRoot(ctx), 'run') };
  return {
    nodeName: ctx.env.NODE_NAME ?? ctx.hostname.toLowerCase(),
    ...dirs,
    'log.level': 'info',
    'http.tcp': true,
    'http.tcp.host': '127.0.0.1',
    'http.tcp.port': 8185,
    'http.allowNonLoopback': false,
    'grpc.tcp': false,
    'grpc.tcp.host': '127.0.0.1',
    'grpc.tcp.port': 8186,
    'shutdown.drainTimeoutMs': 10_000,
    'probe.procRoot': '/proc',
    'probe.sysRoot': '/sys',
    'probe.devRoot': '/dev',
    'probe.kvmDevice': '/dev/kvm',
    'libvirt.uri': 'qemu:///system',
    'libvirt.required': false,
    'libvirt.lanes': 4,
    'vmi.hostPathRoots': [],
    'vmi.allowTcg': true,
    'vmi.embeddedLibvirt': true,
    'vmi.maxVmis': 256,
    'vmi.bridge': '',
    'vmi.reconcileWorkers': 8,
    'images.rewrites': {},
    'images.mirrors': {},
    'images.authFile': null,
    'images.insecureRegistries': [],
    'images.maxImageSize': 64 * 2 ** 30,
  };
}
