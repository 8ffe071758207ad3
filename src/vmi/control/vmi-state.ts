/**
 * The one owner of a VMI's in-memory state: its durable record (as last written), what the
 * handler observed since (launcher connection, domain status, events), and the launcher stage.
 *
 * Every change goes through a named method here; the controller and the reconcile steps read the
 * fields but never assign them. Record changes follow one rule: the caller writes the new record
 * durably first (store), then commits it here with `commitRecord` - so memory never runs ahead
 * of disk, and a failed write changes nothing.
 *
 * Stages (the launcher/domain lifecycle; link up/down is observed separately, `channel`):
 *
 *   Idle ──beginSpawn──> Spawning ──spawned / adoptUnrecorded──> Launching ──domainStarted──> Started
 *    ^                      │ spawnFailed / neverSpawned            │                          │
 *    │                      v                                       │ beginTeardown            │ beginShutdown
 *    +──────────────────── Idle                                     v                          v
 *    +──────────────launcherCleared (from any stage)──────────── TearingDown <──────────── ShuttingDown
 *
 * After a handler restart a record with a live launcher starts in Launching (StartDomain is sent
 * again; the launcher adopts its own running domain), one with launcher pid 0 in Spawning.
 */
import type { ChildProcess } from 'node:child_process';
import type { DomainStatus, StartDomain } from '../../launcher-protocol/messages';
import type { NormalizedVmi, VmiCondition, VmiEvent, VmiPhase, VmiStatus, VmiView } from '../spec/types';
import { redactSecrets } from '../spec/redact';
import type { LauncherChannel } from './launcher-port';
import type { LauncherRecord, VmiRecord } from './store';

export const STAGES = ['Idle', 'Spawning', 'Launching', 'Started', 'ShuttingDown', 'TearingDown'] as const;
export type Stage = (typeof STAGES)[number];

/** The legal transitions (launcherCleared may leave any stage for Idle). */
const NEXT: Readonly<Record<Stage, readonly Stage[]>> = {
  Idle: ['Spawning'],
  Spawning: ['Launching', 'Idle'],
  Launching: ['Started', 'TearingDown', 'Idle'],
  Started: ['ShuttingDown', 'TearingDown', 'Idle'],
  ShuttingDown: ['TearingDown', 'Idle'],
  TearingDown: ['Idle'],
};

/** Events kept per VMI (distinct ones: repeats are folded into their entry). */
export const MAX_EVENTS = 100;

/** Domain states in which the guest exists and runs (or is paused). */
const LIVE_DOMAIN_STATES = ['running', 'paused', 'blocked', 'pmsuspended'];

/** A fresh status. */
export function initialStatus(nodeName: string, phase: VmiPhase = 'Pending', reason = ''): VmiStatus {
  return { phase, reason, conditions: [], nodeName, launcherPid: null, interfaces: [], domainState: '' };
}

export class VmiState {
  private _rec: VmiRecord;
  private _vmi: NormalizedVmi | null;
  private _stage: Stage;
  private _stageSince = Date.now();
  private readonly _status: VmiStatus;
  private readonly _events: VmiEvent[] = [];
  private _domain: DomainStatus | null = null;
  private _domainXml: string | null = null;
  private _channel: LauncherChannel | null = null;
  private _child: ChildProcess | null = null;
  private _childExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private _launcherSince = Date.now();
  private _pinnedCpus: number[] = [];
  private _startPlan: StartDomain | null = null;
  private _consoleAttached = false;
  /** Consecutive failed image pulls: the next pull's backoff (images.ts); reset by a success. */
  imagePullFailures = 0;

  /**
   * @param vmi the validated spec; null when the stored manifest no longer validates (the status
   *   reason then says why).
   */
  constructor(rec: VmiRecord, vmi: NormalizedVmi | null, status: VmiStatus) {
    this._rec = rec;
    this._vmi = vmi;
    this._status = status;
    this._stage = !rec.launcher ? 'Idle' : rec.launcher.pid === 0 ? 'Spawning' : 'Launching';
  }

  // ------------------------------------------------------------------ reads

  get uid(): string {
    return this._rec.uid;
  }
  /** `namespace/name`. */
  get key(): string {
    return `${this._rec.namespace}/${this._rec.name}`;
  }
  get rec(): Readonly<VmiRecord> {
    return this._rec;
  }
  get vmi(): NormalizedVmi | null {
    return this._vmi;
  }
  get stage(): Stage {
    return this._stage;
  }
  /** When the current stage began (ms since epoch): grace and exit deadlines count from here. */
  get stageSince(): number {
    return this._stageSince;
  }
  get status(): Readonly<VmiStatus> {
    return this._status;
  }
  get events(): readonly VmiEvent[] {
    return this._events;
  }
  /** The launcher's last DomainStatus. */
  get domain(): Readonly<DomainStatus> | null {
    return this._domain;
  }
  /** The live domain's state name ('' when none was reported). */
  get domainState(): string {
    return this._domain?.state ?? '';
  }
  get domainXml(): string | null {
    return this._domainXml;
  }
  get channel(): LauncherChannel | null {
    return this._channel;
  }
  /** The launcher is connected. */
  get linked(): boolean {
    return this._channel?.isOpen === true;
  }
  /** The launcher process this handler spawned (exit status known); null for an adopted one. */
  get child(): ChildProcess | null {
    return this._child;
  }
  get childExit(): { code: number | null; signal: NodeJS.Signals | null } | null {
    return this._childExit;
  }
  /** When the current launcher was spawned or re-adopted (ms since epoch), for connect timeouts. */
  get launcherSince(): number {
    return this._launcherSince;
  }
  /** Host CPUs pinned to this VMI (dedicatedCpuPlacement). */
  get pinnedCpus(): readonly number[] {
    return this._pinnedCpus;
  }
  /** The StartDomain command planned when the current launcher was spawned (null after a handler restart). */
  get startPlan(): StartDomain | null {
    return this._startPlan;
  }
  /** Whether the VMI should run now (not deleting, wanted, valid, not Halted). */
  get shouldRun(): boolean {
    return !this._rec.deleting && this._rec.wantRunning && this._vmi !== null && this._vmi.runStrategy !== 'Halted';
  }

  /** The read-model view (a copy: callers may serialise it later). */
  view(): VmiView {
    const s = this._status;
    return {
      uid: this._rec.uid,
      namespace: this._rec.namespace,
      name: this._rec.name,
      generation: this._rec.generation,
      manifest: redactSecrets(this._rec.manifest), // views leave the process; the record keeps the full manifest
      status: { ...s, conditions: s.conditions.map((c) => ({ ...c })), interfaces: s.interfaces.map((i) => ({ ...i })) },
      revision: this._rec.revision,
      deleting: this._rec.deleting,
      events: this._events.map((x) => ({ ...x })),
      domainXml: this._domainXml,
    };
  }

  // ------------------------------------------------------------------ record

  /** Adopts a record the caller has just written durably (or, for status-only fields, atomically). */
  commitRecord(rec: VmiRecord): void {
    if (rec.uid !== this._rec.uid) throw new Error(`record of ${rec.uid} committed to ${this._rec.uid}`);
    this._rec = rec;
  }

  /** The record with the current phase and reason folded in (what persist writes). */
  recordWithStatus(): VmiRecord {
    return { ...this._rec, phase: this._status.phase, reason: this._status.reason };
  }

  /** A new generation was accepted (its record written); `vmi` is its validated spec. */
  acceptSpec(rec: VmiRecord, vmi: NormalizedVmi): void {
    this.commitRecord(rec);
    this._vmi = vmi;
  }

  // ------------------------------------------------------------------ status and events

  /** Sets phase and reason (with the Ready condition and an event); false when nothing changed. */
  setPhase(phase: VmiPhase, reason: string, warning = false): boolean {
    if (this._status.phase === phase && this._status.reason === reason) return false;
    this._status.phase = phase;
    this._status.reason = reason;
    this.setCondition('Ready', phase === 'Running' ? 'True' : 'False', phase, reason);
    this.addEvent(warning || phase === 'Failed' ? 'Warning' : 'Normal', phase, reason || phase);
    return true;
  }

  /** Sets the reason only (no event): progress notes such as 'accepted'. */
  note(reason: string): void {
    this._status.reason = reason;
  }

  /** Sets or replaces a condition, keeping lastTransitionTime when its status did not change. */
  setCondition(type: string, value: VmiCondition['status'], reason = '', message = ''): void {
    setCondition(this._status, type, value, reason, message);
  }

  /**
   * Records an event in the bounded history (oldest first, by last occurrence). An identical
   * event already kept is moved to the end with its count raised (Kubernetes' event
   * de-duplication), so a launcher flapping in a loop cannot push every other event out.
   */
  addEvent(type: VmiEvent['type'], reason: string, message: string, now: Date = new Date()): void {
    addEvent(this._events, type, reason, message, now);
  }

  /** The launcher went quiet while its connection stays open. */
  heartbeatMissed(seconds: number): void {
    this.setCondition('LauncherConnected', 'Unknown', 'HeartbeatMissed', `no heartbeat for ${seconds} s`);
  }

  // ------------------------------------------------------------------ launcher connection

  /** After a handler restart: the recorded launcher lives and is expected to reconnect. */
  awaitReadoption(pid: number): void {
    this._status.launcherPid = pid;
    this.setCondition('LauncherConnected', 'False', 'HandlerRestarted', 'waiting for the launcher to reconnect');
    this.addEvent('Normal', 'Readopting', `handler restarted; launcher ${pid} is alive, waiting for it to reconnect`);
  }

  /** A launcher registered; returns the connection it replaces (to be closed), if any. */
  connect(channel: LauncherChannel): LauncherChannel | null {
    const old = this._channel !== channel ? this._channel : null;
    this._channel = channel;
    this._status.launcherPid = channel.pid;
    this.setCondition('LauncherConnected', 'True', 'Registered', `launcher ${channel.pid}`);
    this.addEvent('Normal', 'LauncherConnected', `launcher ${channel.pid} registered`);
    return old;
  }

  /** The current connection ended; false when `channel` is not the current one. */
  disconnect(channel: LauncherChannel, reason: string): boolean {
    if (this._channel !== channel) return false;
    this._channel = null;
    this.setCondition('LauncherConnected', 'False', 'Disconnected', reason);
    return true;
  }

  /** Attaches the serial console; null when one is attached already. Returns the release. */
  attachConsole(): (() => void) | null {
    if (this._consoleAttached) return null;
    this._consoleAttached = true;
    let released = false;
    return () => {
      if (!released) this._consoleAttached = false;
      released = true;
    };
  }

  // ------------------------------------------------------------------ stages

  private moveTo(to: Stage): void {
    if (!NEXT[this._stage].includes(to)) throw new Error(`VMI ${this.key}: no transition ${this._stage} -> ${to}`);
    this._stage = to;
    this._stageSince = Date.now();
  }

  /** Idle -> Spawning: `rec` (launcher pid 0, the spawn token's hash) has been written durably; `plan` is what the launcher will be told to start. */
  beginSpawn(rec: VmiRecord, plan: StartDomain): void {
    this.moveTo('Spawning');
    this.commitRecord(rec);
    this._startPlan = plan;
    this._status.phase = 'Scheduling';
    this._status.reason = 'starting the launcher';
    this._launcherSince = Date.now();
    this._domain = null;
    this._childExit = null;
  }

  /** Spawning -> Launching: our child runs as `pid` (recorded by the caller's next publish). */
  spawned(pid: number, startTime: number, child: ChildProcess): void {
    this.moveTo('Launching');
    this._rec = { ...this._rec, launcher: { ...(this._rec.launcher as LauncherRecord), pid, startTime } };
    this._child = child;
    this._status.launcherPid = pid;
    this.addEvent('Normal', 'LauncherStarted', `launcher ${pid}`);
  }

  /** Our child exited (the pid poll may notice first; either leads to launcherCleared). */
  childExited(exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    this._childExit = exit;
  }

  /** Spawning -> Idle: the spawn itself failed; nothing runs. */
  spawnFailed(): void {
    this.moveTo('Idle');
    this._rec = { ...this._rec, launcher: null };
  }

  /** Spawning -> Launching: a launcher spawned by a previous handler (pid never recorded) was found. */
  adoptUnrecorded(pid: number, startTime: number): void {
    this.moveTo('Launching');
    this._rec = { ...this._rec, launcher: { ...(this._rec.launcher as LauncherRecord), pid, startTime } };
    this._launcherSince = Date.now();
    this.addEvent('Normal', 'LauncherFound', `launcher ${pid} was spawned by the previous handler before it recorded the pid; adopted`);
  }

  /** Spawning -> Idle: a previous handler recorded a spawn but died before it happened. */
  neverSpawned(): void {
    this.moveTo('Idle');
    this._rec = { ...this._rec, launcher: null };
    this.addEvent('Normal', 'LauncherNeverStarted', 'the previous handler recorded a launcher spawn but died before it happened');
  }

  /** Launching -> Started: the launcher acknowledged StartDomain. */
  domainStarted(): void {
    this.moveTo('Started');
  }

  /** Started -> ShuttingDown: a graceful shutdown of `grace` seconds was asked for. */
  beginShutdown(grace: number): void {
    this.moveTo('ShuttingDown');
    this.addEvent('Normal', 'ShuttingDown', `graceful shutdown, up to ${grace} s`);
  }

  /** -> TearingDown: the launcher is told (or made) to remove the domain and exit. */
  beginTeardown(): void {
    if (this._stage === 'TearingDown') return; // asked again: the exit deadline keeps running
    this.moveTo('TearingDown');
  }

  /** Any stage -> Idle: the launcher is gone and its leftovers are cleaned up. */
  launcherCleared(how: string): void {
    this._stage = 'Idle';
    this._stageSince = Date.now();
    this._rec = { ...this._rec, launcher: null };
    this._channel?.end();
    this._channel = null;
    this._child = null;
    this._domain = null;
    this._domainXml = null;
    this._pinnedCpus = [];
    this._startPlan = null;
    this._status.launcherPid = null;
    this._status.domainState = '';
    this.setCondition('LauncherConnected', 'False', 'LauncherGone', how);
  }

  /** Host CPUs reserved for this VMI's vCPUs (dedicatedCpuPlacement). */
  pinCpus(cpus: readonly number[]): void {
    this._pinnedCpus = [...cpus];
  }

  /**
   * runStrategy after a stop: whether the VMI should run again (counted as a restart). Returns
   * the record to write (the caller persists it).
   */
  afterStop(failed: boolean): void {
    const rs = this._vmi?.runStrategy ?? 'Once';
    const again = rs === 'Always' || (rs === 'RerunOnFailure' && failed);
    this._rec = { ...this._rec, wantRunning: again && this._vmi !== null && this._rec.wantRunning, restarts: again ? this._rec.restarts + 1 : this._rec.restarts };
    if (again) this.addEvent('Normal', 'Restarting', `runStrategy ${rs}: restart ${this._rec.restarts}`);
  }

  // ------------------------------------------------------------------ domain status

  /**
   * A DomainStatus from the launcher. Returns whether watchers must hear of it (`changed`) and
   * whether the VMI needs a reconcile (`requeue`).
   */
  observeDomain(s: DomainStatus): { changed: boolean; requeue: boolean } {
    const prev = this._domain;
    this._domain = s;
    if (s.domainXml) this._domainXml = s.domainXml;
    const st = this._status;
    const before = `${st.phase}|${st.reason}|${st.domainState}`;
    st.domainState = s.state ? `${s.state}${s.reason ? `/${s.reason}` : ''}` : '';
    const stopping = this._stage === 'ShuttingDown' || this._stage === 'TearingDown';
    let requeue = false;
    if (s.error && !s.state) {
      st.reason = s.error;
    } else if (LIVE_DOMAIN_STATES.includes(s.state) && !this._rec.deleting && !stopping) {
      const paused = s.state === 'paused';
      if (st.phase !== 'Running') this.addEvent('Normal', 'Started', `domain ${s.state}`);
      st.phase = 'Running';
      st.reason = paused ? `paused${s.reason ? ` (${s.reason})` : ''}` : '';
      this.setCondition('Ready', paused ? 'False' : 'True', paused ? 'Paused' : 'DomainRunning');
      this.setCondition('Paused', paused ? 'True' : 'False', s.reason || s.state);
      st.interfaces = this.interfacesFromXml();
    } else if ((s.state === 'shutoff' || s.state === 'crashed') && this._stage !== 'Launching' && this._stage !== 'Spawning' && this._stage !== 'Idle') {
      requeue = true;
    }
    if (prev?.lastEvent !== s.lastEvent && s.lastEvent) this.addEvent('Normal', 'DomainEvent', s.lastEvent);
    const changed = `${st.phase}|${st.reason}|${st.domainState}` !== before || prev?.lastEvent !== s.lastEvent;
    return { changed, requeue: requeue || stopping };
  }

  /** Interface names and MACs, the MACs as libvirt assigned them in the live XML. */
  private interfacesFromXml(): VmiStatus['interfaces'] {
    const xml = this._domainXml ?? '';
    const macs = [...xml.matchAll(/<mac address=['"]([0-9a-f:]{17})['"]/g)].map((m) => m[1] as string);
    return (this._vmi?.interfaces ?? []).map((i, n) => ({ name: i.name, mac: macs[n] ?? i.macAddress ?? '' }));
  }
}

/** Sets or replaces a condition, keeping lastTransitionTime when the status did not change. */
export function setCondition(status: VmiStatus, type: string, value: VmiCondition['status'], reason = '', message = ''): void {
  const now = new Date().toISOString();
  const i = status.conditions.findIndex((c) => c.type === type);
  const prev = i >= 0 ? status.conditions[i] : undefined;
  const next: VmiCondition = { type, status: value, reason, message, lastTransitionTime: prev && prev.status === value ? prev.lastTransitionTime : now };
  if (i >= 0) status.conditions[i] = next;
  else status.conditions.push(next);
}

/** Adds an event to a bounded, de-duplicating history (see VmiState.addEvent). */
export function addEvent(events: VmiEvent[], type: VmiEvent['type'], reason: string, message: string, now: Date = new Date()): void {
  const time = now.toISOString();
  const i = events.findIndex((x) => x.type === type && x.reason === reason && x.message === message);
  if (i >= 0) {
    const [prev] = events.splice(i, 1) as [VmiEvent];
    events.push({ ...prev, time, count: (prev.count ?? 1) + 1, lastTimestamp: time });
    return;
  }
  events.push({ time, type, reason, message, count: 1, firstTimestamp: time, lastTimestamp: time });
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
}
