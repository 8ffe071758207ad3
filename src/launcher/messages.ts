/**
 * The launcher.proto messages as the launcher sees them (LOADER_OPTIONS: camelCase fields,
 * int64 as number, defaults filled in, an unset oneof member simply absent).
 */

import type { DomainStatusMsg } from '../vmi/launcher-server';

/** The DomainStatus message: one definition, shared with the handler's side (launcher-server.ts). */
export type DomainStatus = DomainStatusMsg;

export interface CommandResult {
  id: string;
  ok: boolean;
  error: string;
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
}

export interface HandlerMessage {
  registered?: { sessionToken: string; heartbeatIntervalMs: number };
  command?: Command;
}

export function emptyStatus(): DomainStatus {
  return { state: '', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: '' };
}
