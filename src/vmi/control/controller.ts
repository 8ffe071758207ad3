/**
 * The VMI controller: the daemon's VMIs, their API and their reconcile loop.
 *
 * - API (used by the gRPC VmiService and HTTP): sync (idempotent desired state keyed by uid),
 *   delete, get/list, watch from a revision, pause/unpause/soft-reboot/shutdown, console target.
 *   Every accepted change is written to the durable record BEFORE anything acts on it.
 * - Launcher registry (LauncherRegistry, used by the Launcher transport): token checks,
 *   connections, domain statuses.
 * - A level-triggered work queue runs reconcile.ts per VMI (one at a time per VMI, `workers`
 *   VMIs at once, jittered backoff on errors). The steps reach the outside only through the
 *   ReconcileHost this class hands them; each VMI's state has one owner, VmiState.
 * - On start it re-adopts every VMI from its record: phase and reason as last reported, the
 *   launcher by pid + start time, waiting for it to reconnect. Launchers keep their VMs while the
 *   handler is away; stop() never touches them.
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ErrorCodes, VhError } from '../../errors';
import type { Logger } from '../../log';
import type { Connection } from '../../libvirt/connection';
import type { NodeCapabilities } from '../../libvirt/node-capabilities';
import type { NodeInfo } from '../../node/types';
import { readObject } from '../../volumes/objects';
import type { CommandBody, DomainStatus } from '../../launcher-protocol/messages';
import { parseManifest } from '../spec/manifest';
import type { NormalizedVmi, ValidationContext, VirtualMachineInstance, VmiReadModel, VmiView } from '../spec/types';
import { defaultVmi } from '../spec/defaults';
import { validateVmi } from '../spec/validate';
import { type Failpoints, NO_FAILPOINTS } from './failpoints';
import { type ImagePuller, gcUnusedImages, imageUsers } from './images';
import type { ClaimSource } from './claim-source';
import { claimsOf } from './claims';
import type { NodeFacts } from './launch-plan';
import type { LauncherChannel, LauncherRegistry } from './launcher-port';
import { LauncherStartGate, defaultStartConcurrency, hashToken, scanLauncherProcesses, isSameProcess, newToken, procStartTime, tokenMatches } from './launcher-process';
import { reconcile } from './reconcile';
import type { ReconcileHost, ReconcileSettings, Timing } from './reconcile-host';
import { RecordStore, type VmiRecord } from './store';
import { VmiState, initialStatus } from './vmi-state';
import { WatchHub, type WatchEventOut } from './watch-hub';
import { WorkQueue } from './work-queue';

export type { Timing } from './reconcile-host';

export interface ControllerOptions {
  stateDir: string;
  nodeName: string;
  /** The handler's gRPC socket (launchers dial it). */
  handlerSocket: string;
  logger: Logger;
  logLevel: string;
  validation: ValidationContext;
  /** This node's labels now (spec.nodeSelector and required node affinity are checked against them). */
  nodeLabels?: () => Readonly<Record<string, string>> | null;
  allowTcg: boolean;
  maxVmis: number;
  bridge: string | null;
  workers: number;
  /** The libvirt launchers use (the node's libvirtd); null = no libvirt configured. */
  libvirtUri: string | null;
  /** Without a connected node libvirtd, run VMIs through qemu:///embed inside their launcher. */
  embedFallback: boolean;
  /** The handler's own libvirt connection (leftover-domain cleanup), when connected. */
  libvirt: () => Connection | null;
  /**
   * Whether the node libvirt's first connection attempt has finished. Until then a VMI waits
   * instead of falling back to the embedded driver (a handler restart must not move VMIs off a
   * node libvirtd that is merely not connected yet). Absent = settled.
   */
  libvirtSettled?: () => boolean;
  capabilities: () => NodeCapabilities | null;
  nodeInfo: () => NodeInfo | null;
  /** The node's image store; without one a containerDisk image is a requirement (the VMI waits). */
  images?: ImagePuller;
  /** Node-local claims and DataVolumes (claims.ts); without it a claim volume waits. */
  claims?: ClaimSource;
  /** Image GC: at start (after the records load) and every intervalMs, images unused for minIdleMs that no record names go. */
  imageGc?: Partial<ImageGcTiming>;
  /** ConfigMaps, Secrets and service accounts served as volumes (volumes.objectRoot); default <stateDir>/objects. */
  objectRoot?: string;
  /** Test seams (the test entry sets them; the shipped daemon never does). */
  launcherCommand?: readonly string[];
  timing?: Partial<Timing>;
  failpoints?: Failpoints;
}

export interface ImageGcTiming {
  intervalMs: number;
  minIdleMs: number;
}

const DEFAULT_IMAGE_GC: ImageGcTiming = { intervalMs: 10 * 60_000, minIdleMs: 60 * 60_000 };

const DEFAULT_TIMING: Timing = { registerTimeoutMs: 20_000, readoptMs: 30_000, commandTimeoutMs: 20_000, livenessPollMs: 1_000 };

export type { WatchEventOut } from './watch-hub';

/** Identifies a VMI in API calls. */
export interface VmiRefIn {
  namespace?: string;
  name?: string;
  uid?: string;
}

export class VmiController implements VmiReadModel, LauncherRegistry {
  readonly store: RecordStore;
  readonly timing: Timing;
  readonly failpoints: Failpoints;
  readonly log: Logger;
  private readonly vmis = new Map<string, VmiState>();
  private readonly byName = new Map<string, string>();
  private readonly hub: WatchHub;
  private readonly queue: WorkQueue;
  /** Launchers spawned but not yet registered are bounded (see LauncherStartGate). */
  private readonly startGate = new LauncherStartGate(defaultStartConcurrency(), (uid) => this.queue.addAfter(uid, 0));
  private readonly host: ReconcileHost;
  private poll: NodeJS.Timeout | null = null;
  private imageGcTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Launcher processes running when this handler started, by VMI uid (see ReconcileHost.takeLaunchersFoundAtStart). */
  private launchersAtStart = new Map<string, Array<{ pid: number; startTime: number }>>();

  constructor(readonly opts: ControllerOptions) {
    this.store = new RecordStore(opts.stateDir);
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.failpoints = opts.failpoints ?? NO_FAILPOINTS;
    this.log = opts.logger;
    this.hub = new WatchHub(opts.logger);
    this.queue = new WorkQueue((uid) => this.reconcileKey(uid), opts.workers, { initialMs: 500, maxMs: 30_000, stableMs: 0 }, (uid, err, retryInMs) =>
      this.log.warn({ uid, err, retryInMs }, 'reconcile failed; retrying'),
    );
    this.host = this.reconcileHost();
  }

  // ------------------------------------------------------------------ lifecycle of the controller

  /** Loads every record, re-adopts live launchers, starts reconciling. */
  start(): void {
    this.launchersAtStart = scanLauncherProcesses(this.opts.handlerSocket);
    const { records, problems } = this.store.load();
    for (const p of problems) this.log.warn({ problem: p }, 'VMI state directory problem');
    this.hub.raiseTo(this.store.readRevision());
    for (const rec of records) {
      this.hub.raiseTo(rec.revision);
      const v = validateVmi(rec.manifest, this.validation());
      const status = initialStatus(this.opts.nodeName, rec.phase, rec.reason);
      if (!v.ok) {
        status.phase = 'Failed';
        status.reason = `stored spec no longer valid: ${v.violations.map((x) => `${x.field}: ${x.message}`).join('; ')}`;
      }
      const s = new VmiState(rec, v.ok ? v.vmi : null, status);
      if (rec.launcher && rec.launcher.pid > 0 && isSameProcess(rec.launcher.pid, rec.launcher.startTime)) s.awaitReadoption(rec.launcher.pid);
      this.vmis.set(rec.uid, s);
      this.byName.set(s.key, rec.uid);
    }
    this.log.info({ vmis: records.length }, 'VMI records loaded');
    this.poll = setInterval(() => this.checkLiveness(), this.timing.livenessPollMs);
    this.poll.unref();
    if (this.opts.images) {
      const gc = { ...DEFAULT_IMAGE_GC, ...this.opts.imageGc };
      this.gcImages(gc.minIdleMs);
      this.imageGcTimer = setInterval(() => this.gcImages(gc.minIdleMs), gc.intervalMs);
      this.imageGcTimer.unref();
    }
    for (const uid of this.vmis.keys()) this.queue.add(uid);
  }

  /** Stops reconciling and closes launcher connections (launchers and VMs keep running). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poll) clearInterval(this.poll);
    if (this.imageGcTimer) clearInterval(this.imageGcTimer);
    this.hub.close();
    await this.queue.stop();
    for (const s of this.vmis.values()) s.channel?.end();
  }

  /** Per image digest, the VMIs (namespace/name) whose record names it or whose start is about to use it. */
  imageUsers(): Map<string, string[]> {
    return imageUsers(this.vmis.values());
  }

  /** Removes stored images no VMI record names and unused for `minIdleMs`; returns their digests. */
  gcImages(minIdleMs: number): string[] {
    return this.opts.images ? gcUnusedImages(this.opts.images, this.vmis.values(), minIdleMs, this.log) : [];
  }

  /** Queue figures for metrics. */
  queueStats(): ReturnType<WorkQueue['stats']> {
    return this.queue.stats();
  }

  /** Resolves when no reconcile is queued or running (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  // ------------------------------------------------------------------ read model

  list(namespace?: string): VmiView[] {
    const out: VmiView[] = [];
    for (const s of this.vmis.values()) if (!namespace || s.rec.namespace === namespace) out.push(s.view());
    return out.sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
  }

  get(namespace: string, name: string): VmiView | null {
    const uid = this.byName.get(`${namespace}/${name}`);
    const s = uid ? this.vmis.get(uid) : undefined;
    return s ? s.view() : null;
  }

  /** The list plus the revision it reflects (for list-then-watch). */
  snapshot(namespace?: string): { vmis: VmiView[]; revision: number } {
    return { vmis: this.list(namespace), revision: this.hub.revision };
  }

  /** `namespace/name` of the VMIs whose volumes name claim (or DataVolume) `claim` of `namespace`. */
  claimUsers(namespace: string, claim: string): string[] {
    return [...this.vmis.values()].filter((s) => s.rec.namespace === namespace && claimsOf(s.vmi).includes(claim)).map((s) => `${s.rec.namespace}/${s.rec.name}`);
  }

  /** The VMIs whose launcher is connected, for the stats collector. */
  connectedLaunchers(): Array<{ uid: string; namespace: string; name: string; phase: string; channel: LauncherChannel | null }> {
    return [...this.vmis.values()].map((s) => ({ uid: s.uid, namespace: s.rec.namespace, name: s.rec.name, phase: s.status.phase, channel: s.linked ? s.channel : null }));
  }

  /** The VMI a ref names; NOT_FOUND otherwise; INVALID_ARGUMENT for an empty ref. */
  find(ref: VmiRefIn): VmiState {
    let uid = ref.uid || undefined;
    if (!uid) {
      if (!ref.name) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name (or uid) is required', { field: 'name' });
      uid = this.byName.get(`${ref.namespace || 'default'}/${ref.name}`);
    }
    const s = uid ? this.vmis.get(uid) : undefined;
    if (!s) throw new VhError(ErrorCodes.NOT_FOUND, `vmi ${ref.uid ? `uid ${ref.uid}` : `${ref.namespace || 'default'}/${ref.name}`} not found`);
    return s;
  }

  // ------------------------------------------------------------------ API: desired state

  /** The validation context now: fields the node cannot honour wait (requirements), node labels as they are. */
  private validation(): ValidationContext {
    const labels = this.opts.nodeLabels?.();
    return { ...this.opts.validation, requirements: 'pending', imagePulls: this.opts.images !== undefined, ...(labels ? { nodeLabels: labels } : {}) };
  }

  /** Accepts a manifest (JSON or YAML). Idempotent per uid; durable before it returns. */
  sync(manifestText: string): { vmi: VmiView; changed: boolean } {
    if (this.stopped) throw new VhError(ErrorCodes.NOT_READY, 'draining: not accepting VMIs');
    const parsed = parseManifest(manifestText);
    if (!parsed.ok) throw invalid(parsed.violations);
    // KubeVirt's defaulting first (its webhook runs before validation: `machine: {type: ""}` is
    // valid there), then validation of the defaulted VMI; what is stored and shown is defaulted.
    const first = validateVmi(defaultVmi(parsed.value), this.validation());
    if (!first.ok) throw invalid(first.violations);
    const key = `${first.vmi.namespace}/${first.vmi.name}`;
    const existingUid = this.byName.get(key);
    if (first.vmi.uid && existingUid && existingUid !== first.vmi.uid) {
      throw new VhError(ErrorCodes.ALREADY_EXISTS, `vmi ${key} exists with uid ${existingUid}, not ${first.vmi.uid}`);
    }
    const uid = first.vmi.uid || existingUid || randomUUID();
    // Defaulted again now that the uid is known (firmware.uuid defaults to it).
    const manifest = defaultVmi(withUid(parsed.value as VirtualMachineInstance, uid, first.vmi.namespace, first.vmi.generation), { uid }) as VirtualMachineInstance;
    const v = validateVmi(manifest, this.validation());
    if (!v.ok) throw invalid(v.violations);
    const vmi = v.vmi;
    const normalized = { ...vmi, uid };
    const s = this.vmis.get(uid);
    if (!s) return this.create(uid, manifest, normalized);
    if (s.rec.deleting) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key} is being deleted`);
    if (vmi.generation < s.rec.generation) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `metadata.generation ${vmi.generation} is older than the stored ${s.rec.generation}`, { field: 'metadata.generation' });
    }
    // A record stored before defaulting existed compares as it would be stored today.
    const stored = defaultVmi(s.rec.manifest, { uid }) as VirtualMachineInstance;
    if (isDeepStrictEqual(manifest, s.rec.manifest) || isDeepStrictEqual(manifest, stored)) return { vmi: s.view(), changed: false };
    // The domain part of a VMI is immutable while it exists (as in KubeVirt); what may change in
    // place: runStrategy, terminationGracePeriodSeconds, labels, annotations, generation.
    const storedNow = validateVmi(stored, this.validation());
    const old = storedNow.ok ? storedNow.vmi : s.vmi;
    if (old && !isDeepStrictEqual(immutablePart(old), immutablePart(normalized))) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key}: only runStrategy, terminationGracePeriodSeconds, labels and annotations can change; delete and re-create it to change the rest`);
    }
    const next: VmiRecord = { ...s.rec, manifest, generation: vmi.generation };
    if (!old || old.runStrategy !== normalized.runStrategy) next.wantRunning = normalized.runStrategy !== 'Halted';
    this.store.write({ ...next, revision: this.hub.next });
    s.acceptSpec(next, normalized);
    s.addEvent('Normal', 'Updated', `generation ${vmi.generation}${old && old.runStrategy !== normalized.runStrategy ? `, runStrategy ${normalized.runStrategy}` : ''}`);
    this.publish(s, 'MODIFIED', false);
    this.queue.add(uid);
    return { vmi: s.view(), changed: true };
  }

  private create(uid: string, manifest: VirtualMachineInstance, vmi: NormalizedVmi): { vmi: VmiView; changed: boolean } {
    if (this.vmis.size >= this.opts.maxVmis) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `this node accepts at most ${this.opts.maxVmis} VMIs (vmi.maxVmis)`);
    const rec: VmiRecord = {
      version: 1, uid, namespace: vmi.namespace, name: vmi.name, generation: vmi.generation, manifest,
      deleting: false, wantRunning: vmi.runStrategy !== 'Halted', launcher: null,
      phase: 'Pending', reason: '', restarts: 0, revision: this.hub.next, updatedAt: '',
    };
    try {
      this.store.write(rec); // durable first; a failure here leaves nothing behind
    } catch (err) {
      this.store.removeQuietly(uid); // not even the empty directory write() created (it would read as an interrupted teardown)
      throw err;
    }
    this.failpoints.hit('sync-after-record-write');
    const s = new VmiState(rec, vmi, initialStatus(this.opts.nodeName));
    s.note(vmi.runStrategy === 'Halted' ? 'runStrategy Halted: not started' : 'accepted');
    s.addEvent('Normal', 'Created', `accepted generation ${vmi.generation}`);
    this.vmis.set(uid, s);
    this.byName.set(s.key, uid);
    this.publish(s, 'ADDED', false);
    this.queue.add(uid);
    return { vmi: s.view(), changed: true };
  }

  /** Marks the VMI for deletion (durable), then the reconciler tears it down and removes it. */
  delete(ref: VmiRefIn): VmiView {
    const s = this.find(ref);
    if (!s.rec.deleting) {
      // One durable write, with the revision the MODIFIED event gets; if it fails (a full disk)
      // nothing changed, in memory or on disk, and nothing acts on the delete.
      const next: VmiRecord = { ...s.recordWithStatus(), deleting: true, wantRunning: false, revision: this.hub.next };
      this.store.write(next);
      s.commitRecord(next);
      this.failpoints.hit('delete-after-record-write');
      s.addEvent('Normal', 'Deleting', 'delete requested');
      this.publish(s, 'MODIFIED', false);
    }
    this.queue.add(s.uid);
    return s.view();
  }

  // ------------------------------------------------------------------ API: commands to the guest

  async pause(ref: VmiRefIn): Promise<VmiView> {
    return this.guestCommand(ref, { pause: {} }, ['running'], 'Pause');
  }

  async unpause(ref: VmiRefIn): Promise<VmiView> {
    return this.guestCommand(ref, { unpause: {} }, ['paused'], 'Unpause');
  }

  async softReboot(ref: VmiRefIn): Promise<VmiView> {
    return this.guestCommand(ref, { softReboot: {} }, ['running'], 'SoftReboot');
  }

  /** Graceful shutdown; what follows is the runStrategy's call (Always restarts it). */
  async shutdown(ref: VmiRefIn): Promise<VmiView> {
    const s = this.find(ref);
    const grace = s.vmi?.terminationGracePeriodSeconds ?? 30;
    return this.guestCommand(ref, { shutdown: { gracePeriodSeconds: grace } }, ['running', 'paused'], 'Shutdown');
  }

  private async guestCommand(ref: VmiRefIn, body: CommandBody, states: string[], what: string): Promise<VmiView> {
    const s = this.find(ref);
    if (s.rec.deleting) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${s.key} is being deleted`);
    const state = s.domainState;
    const channel = s.channel;
    if (!channel || !channel.isOpen || s.status.phase !== 'Running' || !states.includes(state)) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `${what}: vmi ${s.key} is ${s.status.phase}${state ? ` (domain ${state})` : ''}; needs a domain that is ${states.join(' or ')}`);
    }
    await channel.send(body, this.timing.commandTimeoutMs);
    s.addEvent('Normal', what, `${what} done`);
    this.publish(s, 'MODIFIED');
    return s.view();
  }

  // ------------------------------------------------------------------ API: watch, console

  /**
   * Streams changes after `sinceRevision` (0 = current state as ADDED first), filtered by
   * namespace. Returns a closer. OUT_OF_RANGE when the revision is older than the history.
   */
  watch(sinceRevision: number, namespace: string, cb: (e: WatchEventOut) => void): () => void {
    return this.hub.watch(sinceRevision, namespace, () => this.list(namespace), cb);
  }

  /** The serial console socket of a running VMI; one attachment at a time. */
  attachConsole(ref: VmiRefIn): { socket: string; release: () => void } {
    const s = this.find(ref);
    if (!s.vmi?.autoattachSerialConsole) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${s.key} has no serial console (autoattachSerialConsole: false)`);
    if (s.status.phase !== 'Running') throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${s.key} is ${s.status.phase}, not Running`);
    const release = s.attachConsole();
    if (!release) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${s.key}: a console is already attached`);
    return { socket: `${this.store.dir(s.uid)}/serial.sock`, release };
  }

  // ------------------------------------------------------------------ launcher registry

  async authenticate(uid: string, token: string, pid: number): Promise<string> {
    const s = this.vmis.get(uid);
    const l = s?.rec.launcher;
    if (!s || !l) throw new VhError(ErrorCodes.UNAUTHENTICATED, `no launcher expected for ${uid}`);
    const bySpawn = l.spawnTokenHash !== '' && tokenMatches(token, l.spawnTokenHash);
    const bySession = !bySpawn && tokenMatches(token, l.sessionTokenHash);
    if (!bySpawn && !bySession) throw new VhError(ErrorCodes.UNAUTHENTICATED, `bad token for ${uid}`);
    if (l.pid > 0 && (l.pid !== pid || (l.startTime > 0 && !isSameProcess(pid, l.startTime)))) throw new VhError(ErrorCodes.UNAUTHENTICATED, `pid ${pid} is not the launcher of ${uid} (${l.pid})`);
    // A known launcher reconnecting with its session keeps it: nothing to make durable, so a
    // launcher re-links even while the state disk is full.
    if (bySession && l.spawnTokenHash === '' && l.startTime > 0) return token;
    const session = newToken();
    const startTime = l.startTime || procStartTime(pid) || 0;
    // The spawn token is one-time, but it is spent only once the launcher shows it got a session
    // (its first status, or a register with the session token): a handler killed after this write
    // but before Registered reached the launcher must not lock its own launcher out. Until then
    // only that same process (pid + start time, checked above) can use it again.
    const spawnTokenHash = bySession ? '' : l.spawnTokenHash;
    // A session that is not durable is not handed out (the write throws; the current token stays valid).
    const next = { ...s.recordWithStatus(), launcher: { ...l, pid, startTime, spawnTokenHash, sessionTokenHash: hashToken(session) } };
    this.store.write(next);
    s.commitRecord(next);
    return session;
  }

  attached(uid: string, channel: LauncherChannel): void {
    const s = this.vmis.get(uid);
    if (!s) return channel.end();
    const old = s.connect(channel);
    this.startGate.release(uid);
    this.failpoints.hit('launcher-registered');
    old?.end();
    this.log.info({ uid, pid: channel.pid, vmi: s.key }, 'launcher connected');
    this.publish(s, 'MODIFIED');
    this.queue.add(uid);
  }

  detached(uid: string, channel: LauncherChannel, reason: string): void {
    const s = this.vmis.get(uid);
    if (!s || !s.disconnect(channel, reason)) return;
    this.log.info({ uid, reason }, 'launcher disconnected');
    this.publish(s, 'MODIFIED');
    this.queue.add(uid);
  }

  status(uid: string, channel: LauncherChannel, status: DomainStatus): void {
    const s = this.vmis.get(uid);
    if (!s || s.channel !== channel) return;
    this.spendSpawnToken(s);
    const { changed, requeue } = s.observeDomain(status);
    if (changed) this.publish(s, 'MODIFIED');
    if (requeue) this.queue.add(uid);
  }

  /** The launcher is talking on its session: its spawn token can never be used again. */
  private spendSpawnToken(s: VmiState): void {
    const l = s.rec.launcher;
    if (!l || l.spawnTokenHash === '') return;
    const next = { ...s.recordWithStatus(), launcher: { ...l, spawnTokenHash: '' } };
    try {
      this.store.write(next);
      s.commitRecord(next);
    } catch (err) {
      this.log.error({ err, uid: s.uid }, 'could not persist the spent spawn token; retried on the next status');
    }
  }

  // ------------------------------------------------------------------ records and watch events

  /** Bumps the revision, records the change in the history and tells watchers. */
  private publish(s: VmiState, type: WatchEventOut['type'], persist = true): void {
    const revision = this.hub.bump();
    const rec = { ...s.recordWithStatus(), revision };
    if (persist && type !== 'DELETED') {
      try {
        this.store.write(rec, { sync: false }); // status bookkeeping: atomic, not fsync'ed (see store.ts)
      } catch (err) {
        // Status bookkeeping only: the previous record stays valid; the next change retries.
        this.log.error({ err, uid: s.uid }, 'could not persist VMI status');
      }
    }
    s.commitRecord(rec);
    this.hub.emit({ type, vmi: { ...s.view(), events: [], domainXml: null }, revision });
  }

  /** Drops a fully torn-down VMI. */
  private forget(s: VmiState): void {
    // The DELETED event's revision is stored in no record: keep it as the high-water mark first.
    this.store.writeRevision(this.hub.next);
    this.failpoints.hit('record-remove-before');
    this.store.remove(s.uid);
    this.failpoints.hit('record-remove-after');
    this.vmis.delete(s.uid);
    this.byName.delete(s.key);
    this.queue.forget(s.uid);
    this.publish(s, 'DELETED', false);
  }

  // ------------------------------------------------------------------ reconcile

  /** The one door the reconcile steps have to the outside (see reconcile-host.ts). */
  private reconcileHost(): ReconcileHost {
    const o = this.opts;
    const settings: ReconcileSettings = {
      nodeName: o.nodeName, handlerSocket: o.handlerSocket, logLevel: o.logLevel, allowTcg: o.allowTcg,
      libvirtUri: o.libvirtUri, embedFallback: o.embedFallback, launcherCommand: o.launcherCommand ?? null,
    };
    return {
      settings,
      timing: this.timing,
      failpoints: this.failpoints,
      log: this.log,
      startGate: this.startGate,
      requeue: (uid, ms) => this.queue.addAfter(uid, ms),
      persist: (s) => {
        const rec = s.recordWithStatus();
        this.store.write(rec);
        s.commitRecord(rec);
      },
      persistRecord: (rec) => this.store.write(rec),
      publish: (s) => this.publish(s, 'MODIFIED'),
      forget: (s) => this.forget(s),
      vmiDir: (uid) => this.store.dir(uid),
      ensureVmiDir: (uid) => this.store.ensureDir(uid),
      nodeFacts: (): NodeFacts => ({
        libvirtUri: o.libvirtUri, nodeLibvirtConnected: o.libvirt() !== null, capabilities: o.capabilities(), nodeInfo: o.nodeInfo(), handlerSocket: o.handlerSocket, bridge: o.bridge,
      }),
      libvirtSettled: () => o.libvirtSettled?.() ?? true,
      libvirt: () => o.libvirt(),
      cpusPinnedElsewhere: (self) => new Set([...this.vmis.values()].filter((x) => x !== self).flatMap((x) => x.pinnedCpus)),
      domainUuidInUse: (self, uuid) => {
        const other = [...this.vmis.values()].find((x) => x !== self && x.rec.launcher && x.vmi && (x.vmi.firmware.uuid ?? x.uid) === uuid);
        return other ? `${other.rec.namespace}/${other.rec.name}` : null;
      },
      pullImage: (ref, opts) => {
        if (!o.images) return Promise.reject(new VhError(ErrorCodes.FAILED_PRECONDITION, `image ${ref}: this node has no image store`));
        return o.images.ensure(ref, opts);
      },
      ...(o.claims ? { claims: o.claims } : {}),
      readObject: (ref) => readObject(o.objectRoot ?? path.join(o.stateDir, 'objects'), ref),
      takeLaunchersFoundAtStart: (uid) => {
        const found = this.launchersAtStart.get(uid) ?? [];
        this.launchersAtStart.delete(uid);
        return found;
      },
    };
  }

  private async reconcileKey(uid: string): Promise<void> {
    const s = this.vmis.get(uid);
    if (!s || this.stopped) return;
    await reconcile(this.host, s);
  }

  /** Adopted launchers are not our children: poll their pids so a kill -9 is seen within a second. */
  private checkLiveness(): void {
    for (const s of this.vmis.values()) {
      const l = s.rec.launcher;
      if (!l || l.pid <= 0) continue;
      const channel = s.channel;
      if (!isSameProcess(l.pid, l.startTime)) this.queue.add(s.uid);
      else if (channel && Date.now() - channel.lastHeartbeatAt > 5 * this.timing.livenessPollMs + 3000) s.heartbeatMissed(Math.round((Date.now() - channel.lastHeartbeatAt) / 1000));
    }
  }
}

function invalid(violations: Array<{ field: string; message: string }>): VhError {
  const lines = violations.map((v) => (v.field ? `${v.field}: ${v.message}` : v.message));
  return new VhError(ErrorCodes.VMI_INVALID, `invalid VirtualMachineInstance (${violations.length} problem${violations.length === 1 ? '' : 's'}): ${lines.join('; ')}`, { violations });
}

function withUid(m: VirtualMachineInstance, uid: string, namespace: string, generation: number): VirtualMachineInstance {
  return { ...m, metadata: { ...m.metadata, uid, namespace, generation } };
}

function immutablePart(v: NormalizedVmi): unknown {
  // requirements follow the node (its labels change), not the spec.
  const { runStrategy: _r, terminationGracePeriodSeconds: _t, labels: _l, annotations: _a, generation: _g, requirements: _q, ...rest } = v;
  return rest;
}
