/**
 * What the reconcile steps need from the outside, and nothing more: the controller implements it
 * (durable writes, watch events, the queue, launcher start slots), tests fake it. The steps never
 * see the controller, its API or the other VMIs' state.
 */
import type { EnsureOptions, EnsuredImage } from '../../images/types';
import type { Logger } from '../../log';
import type { ObjectRead, ObjectRef } from '../../volumes/objects';
import type { Connection } from '../../libvirt/connection';
import type { ClaimSource } from './claim-source';
import type { Failpoints } from './failpoints';
import type { NodeFacts } from './launch-plan';
import type { LauncherStartGate } from './launcher-process';
import type { VmiRecord } from './store';
import type { VmiState } from './vmi-state';

/** Waits that tests shorten (AppSeams.vmiTiming). */
export interface Timing {
  /** A spawned launcher must register within this. */
  registerTimeoutMs: number;
  /** After a handler restart, how long a live launcher has to reconnect before the VMI is Unknown. */
  readoptMs: number;
  commandTimeoutMs: number;
  livenessPollMs: number;
}

/** Node settings the steps decide with (from config; fixed for the handler's life). */
export interface ReconcileSettings {
  nodeName: string;
  handlerSocket: string;
  logLevel: string;
  allowTcg: boolean;
  /** The node libvirt's URI; null = libvirt switched off. */
  libvirtUri: string | null;
  /** Without a connected node libvirtd, run VMIs through qemu:///embed inside their launcher. */
  embedFallback: boolean;
  /** The launcher argv prefix (a test seam; the packaged launcher otherwise). */
  launcherCommand: readonly string[] | null;
}

export interface ReconcileHost {
  readonly settings: ReconcileSettings;
  readonly timing: Timing;
  readonly failpoints: Failpoints;
  readonly log: Logger;
  /** Launcher start slots (bounded concurrent spawns). */
  readonly startGate: LauncherStartGate;
  /** Runs the VMI's reconcile again after `ms`. */
  requeue(uid: string, ms: number): void;
  /** Writes the record with the current phase and reason (durable) and commits it; throws when it cannot. */
  persist(s: VmiState): void;
  /** Writes a record durably (the caller commits it to the VMI's state after); throws when it cannot. */
  persistRecord(rec: VmiRecord): void;
  /** Tells watchers (and persists the status part atomically, not fsync'ed). */
  publish(s: VmiState): void;
  /** Removes a fully torn-down VMI: record, directory, memory; emits DELETED. */
  forget(s: VmiState): void;
  /** The VMI's directory (created by ensureVmiDir). */
  vmiDir(uid: string): string;
  ensureVmiDir(uid: string): string;
  /** What the node offers a launcher now. */
  nodeFacts(): NodeFacts;
  /** Whether the node libvirt's first connection attempt has finished (until then VMIs wait). */
  libvirtSettled(): boolean;
  /** The handler's own libvirt connection (leftover-domain cleanup), when connected. */
  libvirt(): Connection | null;
  /** Host CPUs pinned by other VMIs. */
  cpusPinnedElsewhere(s: VmiState): Set<number>;
  /** Another VMI with a launcher whose domain has this UUID (`namespace/name`), else null; libvirt refuses a second. */
  domainUuidInUse?(s: VmiState, uuid: string): string | null;
  /** Finds or pulls a container disk image in the node's image store (images.ts). */
  pullImage(ref: string, o: EnsureOptions): Promise<EnsuredImage>;
  /** Node-local claims and DataVolumes (claims.ts); absent: claim volumes wait. */
  readonly claims?: ClaimSource;
  /** Reads a ConfigMap, Secret or service account from the node's object root (objects.ts); throws ObjectError when unusable. */
  readObject(ref: ObjectRef): Promise<ObjectRead>;
  /** Launchers of `uid` found running when this handler started; each uid's list is handed out once. */
  takeLaunchersFoundAtStart(uid: string): Array<{ pid: number; startTime: number }>;
}
