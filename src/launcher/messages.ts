/**
 * The launcher.proto messages as the launcher sees them (LOADER_OPTIONS: camelCase fields,
 * int64 as number, defaults filled in, an unset oneof member simply absent).
 */

import type { DomainStats } from '../libvirt/stats';
import type { DomainStatusMsg } from '../vmi/launcher-server';

/** The DomainStatus message: one definition, shared with the handler's side (launcher-server.ts). */
export type DomainStatus = DomainStatusMsg;

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

/** A decoded Command: `id` plus at most one of the cmd members (none: a newer handler's command). */
export interface Command {
  id: string;
  start?: StartDomain;
  pause?: object;
  unpause?: object;
  softReboot?: object;
  shutdown?: { gracePeriodSeconds: number };
  destroy?: object;
  teardown?: object;
  getStatus?: object;
  getStats?: object;
}

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
