/**
 * The launcher.proto messages as both ends see them in TypeScript: camelCase fields, 64-bit
 * integers as numbers, unset scalars at their defaults, an unset proto3 `optional` field or oneof
 * member absent, an unset message field null. That is what protobufjs gives the handler with
 * src/grpc/proto.ts LOADER_OPTIONS, and what the launcher's own codec (codec.ts) gives.
 *
 * Where the wire shape is not the shape code wants, both are here with a converter in between:
 * a disk plan is DiskPrep (a union by `kind`) in code and DiskPrepMsg (a oneof) on the wire
 * (diskPrepToWire; validate.ts checkDiskPlan goes back, with checks). Stats on the wire are
 * DomainStatsMsg; the handler turns a launcher's claim into a StatsReport (validate.ts).
 */

/** One file to create before the domain starts (planned by the handler, executed by the launcher); paths are inside the VMI's directory. */
export type DiskPrep =
  | { kind: 'overlay'; disk: string; path: string; backingFile: string; backingFormat: 'qcow2' | 'raw' }
  | { kind: 'sparse'; disk: string; path: string; sizeBytes: number }
  | { kind: 'hostDisk'; disk: string; path: string; sizeBytes: number | null; create: boolean }
  | { kind: 'cloudInit'; disk: string; path: string; userData: string; networkData: string | null; metaData: string }
  /** A read-only ISO of `files` (config drive, object volumes); rebuilt on every run, since its source may change. */
  | { kind: 'iso'; disk: string; path: string; volumeLabel: string; files: IsoFile[] };

/** One file of an IsoDisk: `path` relative to the image's root; `data` may be secret (never logged). */
export interface IsoFile {
  path: string;
  data: Uint8Array;
  /** Permission bits; null: 0644. */
  mode: number | null;
}

/** OverlayDisk.Format. */
export const BACKING_FORMAT = { qcow2: 1, raw: 2 } as const;

/** DiskPrep as on the wire: `disk`, `path` and exactly one kind member. */
export interface DiskPrepMsg {
  disk: string;
  path: string;
  overlay?: { backingFile: string; backingFormat: number };
  sparse?: { sizeBytes: number };
  hostDisk?: { sizeBytes?: number; create: boolean };
  cloudInit?: { userData: string; metaData: string; networkData?: string };
  iso?: { volumeLabel: string; files: Array<{ path: string; data: Uint8Array; mode?: number }> };
}

/** The wire form of a planned disk. */
export function diskPrepToWire(d: DiskPrep): DiskPrepMsg {
  const base = { disk: d.disk, path: d.path };
  switch (d.kind) {
    case 'overlay':
      return { ...base, overlay: { backingFile: d.backingFile, backingFormat: BACKING_FORMAT[d.backingFormat] } };
    case 'sparse':
      return { ...base, sparse: { sizeBytes: d.sizeBytes } };
    case 'hostDisk':
      return { ...base, hostDisk: { ...(d.sizeBytes === null ? {} : { sizeBytes: d.sizeBytes }), create: d.create } };
    case 'cloudInit':
      return { ...base, cloudInit: { userData: d.userData, metaData: d.metaData, ...(d.networkData === null ? {} : { networkData: d.networkData }) } };
    case 'iso':
      return { ...base, iso: { volumeLabel: d.volumeLabel, files: d.files.map((f) => ({ path: f.path, data: f.data, ...(f.mode === null ? {} : { mode: f.mode }) })) } };
  }
}

// ---------------------------------------------------------------------------------------------
// launcher -> handler

export interface Register {
  vmiUid: string;
  token: string;
  pid: number;
  version: string;
}

/** The launcher's view of its domain (launcher.proto DomainStatus). */
export interface DomainStatus {
  state: string;
  reason: string;
  domainUuid: string;
  lastEvent: string;
  error: string;
  domainXml: string;
}

/**
 * A 64-bit counter: what the launcher hands its encoder may be a bigint (libvirt's width);
 * decoders give a number (exact below 2^53; above it the magnitude, as Prometheus keeps anyway).
 */
export type Uint64 = number | bigint;

export interface CpuStatsMsg {
  timeNs?: Uint64;
  userNs?: Uint64;
  systemNs?: Uint64;
}

export interface BalloonStatsMsg {
  currentKib?: Uint64;
  maximumKib?: Uint64;
  swapInKib?: Uint64;
  swapOutKib?: Uint64;
  majorFault?: Uint64;
  minorFault?: Uint64;
  unusedKib?: Uint64;
  availableKib?: Uint64;
  usableKib?: Uint64;
  rssKib?: Uint64;
  diskCachesKib?: Uint64;
}

export interface VcpuStatsMsg {
  id: number;
  state?: number;
  timeNs?: Uint64;
  waitNs?: Uint64;
  delayNs?: Uint64;
}

export interface NetStatsMsg {
  name: string;
  rxBytes?: Uint64;
  rxPackets?: Uint64;
  rxErrs?: Uint64;
  rxDrop?: Uint64;
  txBytes?: Uint64;
  txPackets?: Uint64;
  txErrs?: Uint64;
  txDrop?: Uint64;
}

export interface BlockStatsMsg {
  name: string;
  rdReqs?: Uint64;
  rdBytes?: Uint64;
  rdTimesNs?: Uint64;
  wrReqs?: Uint64;
  wrBytes?: Uint64;
  wrTimesNs?: Uint64;
  flReqs?: Uint64;
  flTimesNs?: Uint64;
}

/** launcher.proto DomainStats: the answer to get_stats. Groups libvirt did not report are null. */
export interface DomainStatsMsg {
  takenAtMs: number;
  state: { state?: number; reason?: number } | null;
  cpu: CpuStatsMsg | null;
  balloon: BalloonStatsMsg | null;
  vcpuCurrent?: number;
  vcpus: VcpuStatsMsg[];
  net: NetStatsMsg[];
  block: BlockStatsMsg[];
}

export interface CommandResult {
  id: string;
  ok: boolean;
  error: string;
  /** Only in the answer to getStats (null or absent otherwise). */
  stats?: DomainStatsMsg | null;
}

export type LauncherMessage =
  | { register: Register }
  | { heartbeat: { seq: number } }
  | { status: DomainStatus }
  | { result: CommandResult };

// ---------------------------------------------------------------------------------------------
// handler -> launcher

/** StartDomain as the handler builds it (src/vmi/control/launch-plan.ts) and the launcher runs it. */
export interface StartDomain {
  domainXml: string;
  disks: DiskPrep[];
  libvirtUri: string;
}

/** StartDomain on the wire (the launcher turns it into StartDomain with validate.ts checkStartDomain). */
export interface StartDomainMsg {
  domainXml: string;
  disks: DiskPrepMsg[];
  libvirtUri: string;
}

type Empty = Record<string, never>;

/** The members of launcher.proto's Command oneof, by name, with their payloads (as code sees them). */
export interface CommandPayloads {
  start: StartDomain;
  pause: Empty;
  unpause: Empty;
  softReboot: Empty;
  shutdown: { gracePeriodSeconds: number };
  destroy: Empty;
  teardown: Empty;
  getStatus: Empty;
  getStats: Empty;
}

/** What the handler sends: exactly one member. */
export type CommandBody = { [K in keyof CommandPayloads]: Pick<CommandPayloads, K> }[keyof CommandPayloads];

/**
 * A decoded Command as the launcher receives it: `id` plus at most one member (none: a newer
 * handler's command); `start` still in its wire form, to be checked against the VMI directory.
 */
export type Command = { id: string } & Partial<Omit<CommandPayloads, 'start'>> & { start?: StartDomainMsg };

/** The wire form of a command: only StartDomain's disk plan changes shape. */
export function commandToWire(id: string, body: CommandBody): Command {
  if ('start' in body) return { id, start: { ...body.start, disks: body.start.disks.map(diskPrepToWire) } };
  return { id, ...body };
}

export interface Registered {
  sessionToken: string;
  heartbeatIntervalMs: number;
}

export interface HandlerMessage {
  registered?: Registered;
  command?: Command;
}

export function emptyStatus(): DomainStatus {
  return { state: '', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: '' };
}

/** The stats groups a getStats answer carries (what KubeVirt's domain stats collector reads). */
export const STATS_GROUPS = ['state', 'cpu-total', 'balloon', 'vcpu', 'interface', 'block'] as const;

// ---------------------------------------------------------------------------------------------
// what the handler makes of a stats claim (validate.ts checkDomainStats)

export interface VcpuSample {
  id: number;
  /** virVcpuState: 0 offline, 1 running, 2 blocked. */
  state?: number;
  timeNs?: number;
  waitNs?: number;
  delayNs?: number;
}

export interface NetSample {
  name: string;
  rxBytes?: number;
  rxPackets?: number;
  rxErrs?: number;
  rxDrop?: number;
  txBytes?: number;
  txPackets?: number;
  txErrs?: number;
  txDrop?: number;
}

export interface BlockSample {
  name: string;
  rdReqs?: number;
  rdBytes?: number;
  rdTimesNs?: number;
  wrReqs?: number;
  wrBytes?: number;
  wrTimesNs?: number;
  flReqs?: number;
  flTimesNs?: number;
}

export interface BalloonSample {
  currentKiB?: number;
  maximumKiB?: number;
  swapInKiB?: number;
  swapOutKiB?: number;
  majorFault?: number;
  minorFault?: number;
  unusedKiB?: number;
  availableKiB?: number;
  usableKiB?: number;
  rssKiB?: number;
  diskCachesKiB?: number;
}

/**
 * A validated stats report: every value a plain number (a 64-bit value above 2^53 keeps its
 * magnitude, not its last digits; Prometheus stores float64 anyway); fields libvirt did not
 * report absent; devices without a name left out (they cannot be labelled).
 */
export interface StatsReport {
  cpu: { timeNs?: number; userNs?: number; systemNs?: number };
  vcpus: VcpuSample[];
  balloon: BalloonSample;
  net: NetSample[];
  block: BlockSample[];
}
