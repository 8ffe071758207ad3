/**
 * The VMI manager: the daemon's one owner of VMI state.
 *
 * - API (used by the gRPC VmiService and HTTP): sync (idempotent desired state keyed by uid),
 *   delete, get/list, watch from a revision, pause/unpause/soft-reboot/shutdown, console target.
 *   Every accepted change is written to the durable record BEFORE anything acts on it.
 * - Launcher registry (used by launcher-server.ts): token checks, links, domain statuses.
 * - A level-triggered work queue runs lifecycle.ts's reconcile per VMI (one at a time per VMI,
 *   `workers` VMIs at once, jittered backoff on errors).
 * - On start it re-adopts every VMI from its record: phase and reason as last reported, the
 *   launcher by pid + start time, waiting for it to reconnect. Launchers keep their VMs while the
 *   handler is away; stop() never touches them.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ErrorCodes, VhError } from '../../errors';
import type { Logger } from '../../log';
import type { Connection } from '../../libvirt/connection';
import type { NodeCapabilities } from '../../libvirt/node-capabilities';
import type { NodeInfo } from '../../node/types';
import { type Entry, addEvent, initialStatus, setCondition, viewOf } from './entry';
import { type DomainStatusMsg, type LauncherLink, type LauncherRegistry, type CommandBody } from '../../grpc/launcher-service';
import { type Failpoints, NO_FAILPOINTS } from './failpoints';
import { LauncherStartGate, defaultStartConcurrency, hashToken, scanLauncherProcesses, isSameProcess, newToken, procStartTime, tokenMatches } from './launcher-process';
import { type LifecycleDeps, onDomainStatus, reconcile } from './reconcile';
import { parseManifest } from '../spec/manifest';
import { RecordStore, type VmiRecord } from './store';
import type { ValidationContext, VirtualMachineInstance, VmiReadModel, VmiView } from '../spec/types';
import { validateVmi } from '../spec/validate';
import { WorkQueue } from './work-queue';

export interface ControllerOptions {
  stateDir: string;
  nodeName: string;
  /** The handler's gRPC socket (launchers dial it). */
  handlerSocket: string;
  logger: Logger;
  logLevel: string;
  validation: ValidationContext;
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
  /** Test seams (the test entry sets them; the shipped daemon never does). */
  launcherCommand?: readonly string[];
  timing?: Partial<Timing>;
  failpoints?: Failpoints;
}

export interface Timing {
  /** A spawned launcher must register within this. */
  registerTimeoutMs: number;
  /** After a handler restart, how long a live launcher has to reconnect before the VMI is Unknown. */
  readoptMs: number;
  commandTimeoutMs: number;
  livenessPollMs: number;
}
const DEFAULT_TIMING: Timing = { registerTimeoutMs: 20_000, readoptMs: 30_000, commandTimeoutMs: 20_000, livenessPollMs: 1_000 };

const HISTORY = 1000;
const MAX_WATCHERS = 64;

export interface WatchEventOut {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  vmi: VmiView;
  revision: number;
}

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
  private readonly entries = new Map<string, Entry>();
  private readonly byName = new Map<string, string>();
  private revision = 0;
  private readonly history: WatchEventOut[] = [];
  private readonly watchers = new Set<{ ns: string; cb: (e: WatchEventOut) => void }>();
  private readonly queue: WorkQueue;
  /** Launchers spawned but not yet registered are bounded (see LauncherStartGate). */
  readonly startGate = new LauncherStartGate(defaultStartConcurrency(), (uid) => this.requeue(uid, 0));
  private poll: NodeJS.Timeout | null = null;
  private stopped = false;
  readonly log: Logger;

  constructor(readonly opts: ControllerOptions) {
    this.store = new RecordStore(opts.stateDir);
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.failpoints = opts.failpoints ?? NO_FAILPOINTS;
    this.log = opts.logger;
    this.queue = new WorkQueue((uid) => this.reconcileKey(uid), opts.workers, { initialMs: 500, maxMs: 30_000, stableMs: 0 }, (uid, err, retryInMs) =>
      this.log.warn({ uid, err, retryInMs }, 'reconcile failed; retrying'),
    );
  }

  // ------------------------------------------------------------------ lifecycle of the manager

  /** Launcher processes running when this handler started, by VMI uid (see takeLaunchersFoundAtStart). */
  private launchersAtStart = new Map<string, Array<{ pid: number; startTime: number }>>();

  /** The launchers of `uid` that were running when this handler started; each uid's list is handed out once. */
  takeLaunchersFoundAtStart(uid: string): Array<{ pid: number; startTime: number }> {
    const found = this.launchersAtStart.get(uid) ?? [];
    this.launchersAtStart.delete(uid);
    return found;
  }

  /** Loads every record, re-adopts live launchers, starts reconciling. */
  start(): void {
    this.launchersAtStart = scanLauncherProcesses(this.opts.handlerSocket);
    const { records, problems } = this.store.load();
    for (const p of problems) this.log.warn({ problem: p }, 'VMI state directory problem');
    this.revision = this.store.readRevision();
    for (const rec of records) {
      this.revision = Math.max(this.revision, rec.revision);
      const v = validateVmi(rec.manifest, this.opts.validation);
      const e = this.newEntry(rec, v.ok ? v.vmi : null);
      e.status = initialStatus(this.opts.nodeName, rec.phase, rec.reason);
      if (!v.ok) {
        e.status.phase = 'Failed';
        e.status.reason = `stored spec no longer valid: ${v.violations.map((x) => `${x.field}: ${x.message}`).join('; ')}`;
      }
      if (rec.launcher && rec.launcher.pid > 0 && isSameProcess(rec.launcher.pid, rec.launcher.startTime)) {
        e.status.launcherPid = rec.launcher.pid;
        setCondition(e.status, 'LauncherConnected', 'False', 'HandlerRestarted', 'waiting for the launcher to reconnect');
        addEvent(e, 'Normal', 'Readopting', `handler restarted; launcher ${rec.launcher.pid} is alive, waiting for it to reconnect`);
      }
      e.launcherSince = Date.now();
      this.entries.set(rec.uid, e);
      this.byName.set(`${rec.namespace}/${rec.name}`, rec.uid);
    }
    this.log.info({ vmis: records.length }, 'VMI records loaded');
    this.poll = setInterval(() => this.checkLiveness(), this.timing.livenessPollMs);
    this.poll.unref();
    for (const uid of this.entries.keys()) this.queue.add(uid);
  }

  /** Stops reconciling and closes launcher links (launchers and VMs keep running). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poll) clearInterval(this.poll);
    for (const w of this.watchers) w.cb = () => undefined;
    this.watchers.clear();
    await this.queue.stop();
    for (const e of this.entries.values()) e.link?.end();
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
    for (const e of this.entries.values()) if (!namespace || e.rec.namespace === namespace) out.push(viewOf(e));
    return out.sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
  }

  get(namespace: string, name: string): VmiView | null {
    const uid = this.byName.get(`${namespace}/${name}`);
    const e = uid ? this.entries.get(uid) : undefined;
    return e ? viewOf(e) : null;
  }

  /** The list plus the revision it reflects (for list-then-watch). */
  snapshot(namespace?: string): { vmis: VmiView[]; revision: number } {
    return { vmis: this.list(namespace), revision: this.revision };
  }

  /** The entry a ref names; NOT_FOUND otherwise; INVALID_ARGUMENT for an empty ref. */
  find(ref: VmiRefIn): Entry {
    let uid = ref.uid || undefined;
    if (!uid) {
      if (!ref.name) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name (or uid) is required', { field: 'name' });
      uid = this.byName.get(`${ref.namespace || 'default'}/${ref.name}`);
    }
    const e = uid ? this.entries.get(uid) : undefined;
    if (!e) throw new VhError(ErrorCodes.NOT_FOUND, `vmi ${ref.uid ? `uid ${ref.uid}` : `${ref.namespace || 'default'}/${ref.name}`} not found`);
    return e;
  }

  // ------------------------------------------------------------------ API: desired state

  /** Accepts a manifest (JSON or YAML). Idempotent per uid; durable before it returns. */
  sync(manifestText: string): { vmi: VmiView; changed: boolean } {
    if (this.stopped) throw new VhError(ErrorCodes.NOT_READY, 'draining: not accepting VMIs');
    const parsed = parseManifest(manifestText);
    if (!parsed.ok) throw invalid(parsed.violations);
    const v = validateVmi(parsed.value, this.opts.validation);
    if (!v.ok) throw invalid(v.violations);
    const vmi = v.vmi;
    const key = `${vmi.namespace}/${vmi.name}`;
    const existingUid = this.byName.get(key);
    if (vmi.uid && existingUid && existingUid !== vmi.uid) {
      throw new VhError(ErrorCodes.ALREADY_EXISTS, `vmi ${key} exists with uid ${existingUid}, not ${vmi.uid}`);
    }
    const uid = vmi.uid || existingUid || randomUUID();
    const manifest = withUid(parsed.value as VirtualMachineInstance, uid, vmi.namespace, vmi.generation);
    const normalized = { ...vmi, uid };
    const e = this.entries.get(uid);
    if (!e) {
      if (this.entries.size >= this.opts.maxVmis) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `this node accepts at most ${this.opts.maxVmis} VMIs (vmi.maxVmis)`);
      const rec: VmiRecord = {
        version: 1, uid, namespace: vmi.namespace, name: vmi.name, generation: vmi.generation, manifest,
        deleting: false, wantRunning: vmi.runStrategy !== 'Halted', launcher: null,
        phase: 'Pending', reason: '', restarts: 0, revision: this.revision + 1, updatedAt: '',
      };
      try {
        this.store.write(rec); // durable first; a failure here leaves nothing behind
      } catch (err) {
        this.store.removeQuietly(uid); // not even the empty directory write() created (it would read as an interrupted teardown)
        throw err;
      }
      this.failpoints.hit('sync-after-record-write');
      const ne = this.newEntry(rec, normalized);
      ne.status.reason = vmi.runStrategy === 'Halted' ? 'runStrategy Halted: not started' : 'accepted';
      addEvent(ne, 'Normal', 'Created', `accepted generation ${vmi.generation}`);
      this.entries.set(uid, ne);
      this.byName.set(key, uid);
      this.publish(ne, 'ADDED', false);
      this.queue.add(uid);
      return { vmi: viewOf(ne), changed: true };
    }
    if (e.rec.deleting) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key} is being deleted`);
    if (vmi.generation < e.rec.generation) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `metadata.generation ${vmi.generation} is older than the stored ${e.rec.generation}`, { field: 'metadata.generation' });
    }
    if (isDeepStrictEqual(manifest, e.rec.manifest)) return { vmi: viewOf(e), changed: false };
    // The domain part of a VMI is immutable while it exists (as in KubeVirt); what may change in
    // place: runStrategy, terminationGracePeriodSeconds, labels, annotations, generation.
    const old = e.vmi;
    if (old && !isDeepStrictEqual(immutablePart(old), immutablePart(normalized))) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key}: only runStrategy, terminationGracePeriodSeconds, labels and annotations can change; delete and re-create it to change the rest`);
    }
    const next: VmiRecord = { ...e.rec, manifest, generation: vmi.generation };
    if (!old || old.runStrategy !== normalized.runStrategy) next.wantRunning = normalized.runStrategy !== 'Halted';
    this.store.write({ ...next, revision: this.revision + 1 });
    e.rec = next;
    e.vmi = normalized;
    addEvent(e, 'Normal', 'Updated', `generation ${vmi.generation}${old && old.runStrategy !== normalized.runStrategy ? `, runStrategy ${normalized.runStrategy}` : ''}`);
    this.publish(e, 'MODIFIED', false);
    this.queue.add(uid);
    return { vmi: viewOf(e), changed: true };
  }

  /** Marks the VMI for deletion (durable), then the reconciler tears it down and removes it. */
  delete(ref: VmiRefIn): VmiView {
    const e = this.find(ref);
    if (!e.rec.deleting) {
      // One durable write, with the revision the MODIFIED event gets; if it fails (a full disk)
      // nothing changed, in memory or on disk, and nothing acts on the delete.
      const next: VmiRecord = { ...e.rec, deleting: true, wantRunning: false, phase: e.status.phase, reason: e.status.reason, revision: this.revision + 1 };
      this.store.write(next);
      e.rec = next;
      this.failpoints.hit('delete-after-record-write');
      addEvent(e, 'Normal', 'Deleting', 'delete requested');
      this.publish(e, 'MODIFIED', false);
    }
    this.queue.add(e.rec.uid);
    return viewOf(e);
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
    const e = this.find(ref);
    const grace = e.vmi?.terminationGracePeriodSeconds ?? 30;
    return this.guestCommand(ref, { shutdown: { gracePeriodSeconds: grace } }, ['running', 'paused'], 'Shutdown');
  }

  private async guestCommand(ref: VmiRefIn, body: CommandBody, states: string[], what: string): Promise<VmiView> {
    const e = this.find(ref);
    const key = `${e.rec.namespace}/${e.rec.name}`;
    if (e.rec.deleting) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key} is being deleted`);
    const state = e.domain?.state ?? '';
    if (!e.link || !e.link.isOpen || e.status.phase !== 'Running' || !states.includes(state)) {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, `${what}: vmi ${key} is ${e.status.phase}${state ? ` (domain ${state})` : ''}; needs a domain that is ${states.join(' or ')}`);
    }
    await e.link.send(body, this.timing.commandTimeoutMs);
    addEvent(e, 'Normal', what, `${what} done`);
    this.publish(e, 'MODIFIED');
    return viewOf(e);
  }

  // ------------------------------------------------------------------ API: watch, console

  /**
   * Streams changes after `sinceRevision` (0 = current state as ADDED first), filtered by
   * namespace. Returns a closer. OUT_OF_RANGE when the revision is older than the history.
   */
  watch(sinceRevision: number, namespace: string, cb: (e: WatchEventOut) => void): () => void {
    if (this.watchers.size >= MAX_WATCHERS) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `at most ${MAX_WATCHERS} watchers`);
    if (!Number.isSafeInteger(sinceRevision) || sinceRevision < 0) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'since_revision: must be a non-negative integer', { field: 'since_revision' });
    if (sinceRevision > this.revision) throw new VhError(ErrorCodes.OUT_OF_RANGE, `since_revision ${sinceRevision} is in the future (current ${this.revision})`);
    const match = (ev: WatchEventOut): boolean => !namespace || ev.vmi.namespace === namespace;
    if (sinceRevision === 0) {
      for (const v of this.list(namespace)) cb({ type: 'ADDED', vmi: v, revision: v.revision });
    } else {
      const oldest = this.history[0]?.revision ?? this.revision + 1;
      if (sinceRevision < oldest - 1) throw new VhError(ErrorCodes.OUT_OF_RANGE, `since_revision ${sinceRevision} is older than the retained history (from ${oldest}); list and watch again`);
      for (const ev of this.history) if (ev.revision > sinceRevision && match(ev)) cb(ev);
    }
    const w = { ns: namespace, cb };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /** The serial console socket of a running VMI; one attachment at a time. */
  attachConsole(ref: VmiRefIn): { socket: string; release: () => void } {
    const e = this.find(ref);
    const key = `${e.rec.namespace}/${e.rec.name}`;
    if (!e.vmi?.autoattachSerialConsole) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key} has no serial console (autoattachSerialConsole: false)`);
    if (e.status.phase !== 'Running') throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key} is ${e.status.phase}, not Running`);
    if (e.consoleAttached) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `vmi ${key}: a console is already attached`);
    e.consoleAttached = true;
    let released = false;
    return {
      socket: `${this.store.dir(e.rec.uid)}/serial.sock`,
      release: () => {
        if (!released) e.consoleAttached = false;
        released = true;
      },
    };
  }

  // ------------------------------------------------------------------ launcher registry

  async authenticate(uid: string, token: string, pid: number): Promise<string> {
    const e = this.entries.get(uid);
    const l = e?.rec.launcher;
    if (!e || !l) throw new VhError(ErrorCodes.UNAUTHENTICATED, `no launcher expected for ${uid}`);
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
    const prev = e.rec;
    e.rec = { ...e.rec, launcher: { ...l, pid, startTime, spawnTokenHash, sessionTokenHash: hashToken(session) } };
    try {
      this.persist(e);
    } catch (err) {
      e.rec = prev; // a session that is not durable is not handed out; the launcher's current token stays valid
      throw err;
    }
    return session;
  }

  attached(uid: string, link: LauncherLink): void {
    const e = this.entries.get(uid);
    if (!e) return link.end();
    const old = e.link;
    e.link = link;
    this.startGate.release(uid);
    this.failpoints.hit('launcher-registered');
    if (old && old !== link) old.end();
    e.status.launcherPid = link.pid;
    setCondition(e.status, 'LauncherConnected', 'True', 'Registered', `launcher ${link.pid}`);
    addEvent(e, 'Normal', 'LauncherConnected', `launcher ${link.pid} registered`);
    this.log.info({ uid, pid: link.pid, vmi: `${e.rec.namespace}/${e.rec.name}` }, 'launcher connected');
    this.publish(e, 'MODIFIED');
    this.queue.add(uid);
  }

  detached(uid: string, link: LauncherLink, reason: string): void {
    const e = this.entries.get(uid);
    if (!e || e.link !== link) return;
    e.link = null;
    setCondition(e.status, 'LauncherConnected', 'False', 'Disconnected', reason);
    this.log.info({ uid, reason }, 'launcher disconnected');
    this.publish(e, 'MODIFIED');
    this.queue.add(uid);
  }

  status(uid: string, link: LauncherLink, s: DomainStatusMsg): void {
    const e = this.entries.get(uid);
    if (!e || e.link !== link) return;
    this.spendSpawnToken(e);
    if (onDomainStatus(this.deps(), e, s)) this.queue.add(uid);
  }

  /** The launcher is talking on its session: its spawn token can never be used again. */
  private spendSpawnToken(e: Entry): void {
    const l = e.rec.launcher;
    if (!l || l.spawnTokenHash === '') return;
    e.rec = { ...e.rec, launcher: { ...l, spawnTokenHash: '' } };
    try {
      this.persist(e);
    } catch (err) {
      this.log.error({ err, uid: e.rec.uid }, 'could not persist the spent spawn token; retried on the next status');
      e.rec = { ...e.rec, launcher: l };
    }
  }

  // ------------------------------------------------------------------ internals used by lifecycle.ts

  /** Writes the record (revision bumped by publish, not here). */
  persist(e: Entry): void {
    e.rec = { ...e.rec, phase: e.status.phase, reason: e.status.reason };
    this.store.write(e.rec);
  }

  /** Bumps the revision, records the change in the history and tells watchers. */
  publish(e: Entry, type: WatchEventOut['type'], persist = true): void {
    this.revision++;
    e.rec = { ...e.rec, revision: this.revision, phase: e.status.phase, reason: e.status.reason };
    if (persist && type !== 'DELETED') {
      try {
        this.store.write(e.rec, { sync: false }); // status bookkeeping: atomic, not fsync'ed (see store.ts)
      } catch (err) {
        // Status bookkeeping only: the previous record stays valid; the next change retries.
        this.log.error({ err, uid: e.rec.uid }, 'could not persist VMI status');
      }
    }
    // The history keeps HISTORY events: without the per-VMI events and the launcher-reported XML
    // (up to 1 MiB each; the wire form carries neither), a launcher sending distinct statuses
    // cannot pin HISTORY x 1 MiB.
    const ev: WatchEventOut = { type, vmi: { ...viewOf(e), events: [], domainXml: null }, revision: this.revision };
    this.history.push(ev);
    if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
    for (const w of this.watchers) {
      if (w.ns && w.ns !== e.rec.namespace) continue;
      try {
        w.cb(ev);
      } catch (err) {
        this.log.warn({ err }, 'watcher failed');
      }
    }
  }

  /** Drops a fully torn-down VMI. */
  forget(e: Entry): void {
    // The DELETED event's revision is stored in no record: keep it as the high-water mark first.
    this.store.writeRevision(this.revision + 1);
    this.failpoints.hit('record-remove-before');
    this.store.remove(e.rec.uid);
    this.failpoints.hit('record-remove-after');
    this.entries.delete(e.rec.uid);
    this.byName.delete(`${e.rec.namespace}/${e.rec.name}`);
    this.queue.forget(e.rec.uid);
    this.publish(e, 'DELETED', false);
  }

  requeue(uid: string, ms: number): void {
    this.queue.addAfter(uid, ms);
  }

  entriesSnapshot(): Entry[] {
    return [...this.entries.values()];
  }

  private deps(): LifecycleDeps {
    return { m: this, opts: this.opts };
  }

  private async reconcileKey(uid: string): Promise<void> {
    const e = this.entries.get(uid);
    if (!e || this.stopped) return;
    await reconcile(this.deps(), e);
  }

  /** Adopted launchers are not our children: poll their pids so a kill -9 is seen within a second. */
  private checkLiveness(): void {
    for (const e of this.entries.values()) {
      const l = e.rec.launcher;
      if (!l || l.pid <= 0) continue;
      if (!isSameProcess(l.pid, l.startTime)) this.queue.add(e.rec.uid);
      else if (e.link && Date.now() - e.link.lastHeartbeatAt > 5 * this.timing.livenessPollMs + 3000) {
        setCondition(e.status, 'LauncherConnected', 'Unknown', 'HeartbeatMissed', `no heartbeat for ${Math.round((Date.now() - e.link.lastHeartbeatAt) / 1000)} s`);
      }
    }
  }

  private newEntry(rec: VmiRecord, vmi: Entry['vmi']): Entry {
    return {
      rec, vmi, status: initialStatus(this.opts.nodeName), events: [], domainXml: null, link: null, child: null, childExit: null,
      domain: null, started: false, launcherSince: Date.now(), intent: 'none', intentSince: 0, pinnedCpus: [], consoleAttached: false,
    };
  }
}

function invalid(violations: Array<{ field: string; message: string }>): VhError {
  const lines = violations.map((v) => (v.field ? `${v.field}: ${v.message}` : v.message));
  return new VhError(ErrorCodes.VMI_INVALID, `invalid VirtualMachineInstance (${violations.length} problem${violations.length === 1 ? '' : 's'}): ${lines.join('; ')}`, { violations });
}

function withUid(m: VirtualMachineInstance, uid: string, namespace: string, generation: number): VirtualMachineInstance {
  return { ...m, metadata: { ...m.metadata, uid, namespace, generation } };
}

function immutablePart(v: import('../spec/types').NormalizedVmi): unknown {
  const { runStrategy: _r, terminationGracePeriodSeconds: _t, labels: _l, annotations: _a, generation: _g, ...rest } = v;
  return rest;
}
