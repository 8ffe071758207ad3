/**
 * The launcher.proto messages as the launcher sees them (LOADER_OPTIONS: camelCase fields,
 * int64 as number, defaults filled in, an unset oneof member simply absent).
 */

import type { DomainStats } from '../libvirt/stats';

/** One file to create before the domain starts (planned by the handler, executed by the launcher); paths are inside the VMI's directory. */
export type DiskPrep =
  | { kind: 'overlay'; disk: string; path: string; backingFile: string; backingFormat: 'qcow2' | 'raw' }
  | { kind: 'sparse'; disk: string; path: string; sizeBytes: number }
  | { kind: 'hostDisk'; disk: string; path: string; sizeBytes: number | null; create: boolean }
  | { kind: 'cloudInit'; disk: string; path: string; userData: string; networkData: string | null; metaData: string };

/**
 * The DomainStatus message, shared with the handler's side (src/vmi/launcher-server.ts imports
 * the contract from here: one definition for both ends).
 */
export interface DomainStatus {
  state: string;
  reason: string;
  domainUuid: string;
  lastEvent: string;
  error: string;
  domainXml: string;
}

export interface CommandResult {
  id: string;
  ok: boolean;
  error: string;
  /** Only in the answer to getStats: encodeStatsReport's output. */
  statsJson?: string;
}

export type LauncherMessage =
  | { register: { vmiUid: string; token: string; pid: number; version: string } }
  | { heartbeat: { seq: number } }
  | { status: DomainStatus }
  | { result: CommandResult };

export interface StartDomain {
  domainXml: string;
  disksJson: string;
  libvirtUri: string;
}

type Empty = Record<string, never>;

/** The members of launcher.proto's Command oneof, by name, with their payloads. */
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

/** A decoded Command: `id` plus at most one member (none: a newer handler's command). */
export type Command = { id: string } & Partial<CommandPayloads>;

export interface HandlerMessage {
  registered?: { sessionToken: string; heartbeatIntervalMs: number };
  command?: Command;
}

export function emptyStatus(): DomainStatus {
  return { state: '', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: '' };
}

/** The stats groups a getStats answer carries (what KubeVirt's domain stats collector reads). */
export const STATS_GROUPS = ['state', 'cpu-total', 'balloon', 'vcpu', 'interface', 'block'] as const;

/**
 * The getStats payload: DomainStats (src/libvirt/stats.ts) without `raw`, with every bigint as
 * a decimal string (JSON has no 64-bit integers) and vCPUs as a list carrying their index.
 * Fields libvirt did not report stay absent. The handler validates all of it
 * (src/vmi/metrics-collector.ts): this is the launcher's claim, not a trusted structure.
 */
export function encodeStatsReport(s: DomainStats, takenAtMs: number): string {
  const vcpus = s.vcpus?.flatMap((v, id) => (v ? [{ id, ...v }] : []));
  const report = { takenAtMs, state: s.state, cpu: s.cpu, balloon: s.balloon, vcpuCurrent: s.vcpuCurrent, vcpus, net: s.net, block: s.block };
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}
