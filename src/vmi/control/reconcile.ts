/**
 * The reconcile steps for one VMI (run by the manager's work queue, never twice at once for the
 * same VMI). Level-triggered: each run looks at the record, the launcher process, the link and
 * the last domain status, does the next step, and requeues itself when it must wait.
 *
 *   no launcher ─ shouldRun ─> preflight ─> record {launcher: spawning} ─> spawn ─> record {pid}
 *   launcher registered ─> StartDomain ─> domain running ─> Running
 *   domain stopped by itself ─> Succeeded (guest power-off) / Failed ─> teardown ─> runStrategy
 *   launcher died ─> Failed "launcher exited ..." ─> leftover domain destroyed ─> runStrategy
 *   deleting ─> graceful shutdown (terminationGracePeriodSeconds) ─> teardown ─> leftovers ─> record removed
 *
 * runStrategy: Always restarts after any stop; RerunOnFailure only after a failure; Once never
 * restarts; Manual never restarts by itself; Halted never starts. Restarts back off (1 s .. 60 s,
 * jittered) so a VMI that cannot run never storms.
 */
import * as fs from 'node:fs';
import { LibvirtError } from '../../libvirt/errors';
import { backoffDelay } from '../../util/backoff';
import { MAX_UNIX_PATH } from '../../util/unix-socket';
import type { StartDomain } from '../../launcher-protocol/messages';
import { type Entry, addEvent, setCondition } from './entry';
import { EMBED_SOCKET_SUFFIX, type NodeFacts, buildStartCommand, domainNameOf, embedRoot, launcherLibvirtUri, virtTypeFor } from './launch-plan';
import type { DomainStatusMsg } from '../../grpc/launcher-service';
import { findLauncherProcesses, hashToken, isSameProcess, lastLogLine, newToken, spawnLauncher, defaultLauncherCommand } from './launcher-process';
import type { ControllerOptions, VmiController } from './controller';
import type { VmiPhase } from '../spec/types';

export interface LifecycleDeps {
  m: VmiController;
  opts: ControllerOptions;
}

const RESTART_BACKOFF = { initialMs: 1_000, maxMs: 60_000, stableMs: 0 };
const START_TIMEOUT_MS = 180_000;
const TEARDOWN_EXIT_MS = 30_000;

export async function reconcile(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m } = d;
  const uid = e.rec.uid;
  // A start slot is held from spawn until the launcher registers (or is gone, or deleted).
  if (e.rec.deleting) m.startGate.forget(uid);
  else if (e.link?.isOpen || !e.rec.launcher) m.startGate.release(uid);
  if (e.rec.launcher?.pid === 0) return findUnrecordedLauncher(d, e);
  if (e.rec.deleting) return teardownForDelete(d, e);
  const l = e.rec.launcher;
  if (l) {
    if (!isSameProcess(l.pid, l.startTime)) return launcherGone(d, e);
    if (!e.link || !e.link.isOpen) {
      const waited = Date.now() - e.launcherSince;
      const limit = e.status.launcherPid ? m.timing.readoptMs : m.timing.registerTimeoutMs;
      if (waited < limit) return m.requeue(uid, 1000);
      setPhase(d, e, 'Unknown', `launcher ${l.pid} is alive but has not connected for ${Math.round(waited / 1000)} s; killing it`);
      kill(l.pid, l.startTime);
      return m.requeue(uid, 500);
    }
    if (e.intent === 'teardown') return waitForExit(d, e);
    if (!shouldRun(e)) return stopRun(d, e);
    if (!e.started) return startDomain(d, e);
    const st = e.domain?.state ?? '';
    if (st === 'shutoff' || st === 'crashed') return finishRun(d, e);
    return;
  }
  if (!shouldRun(e)) {
    if (e.status.phase === 'Pending' && e.vmi?.runStrategy === 'Halted') setPhase(d, e, 'Pending', 'runStrategy Halted: not started');
    return;
  }
  return startLauncher(d, e);
}

/** A DomainStatus from the launcher; returns true when the VMI needs a reconcile. */
export function onDomainStatus(d: LifecycleDeps, e: Entry, s: DomainStatusMsg): boolean {
  const prev = e.domain;
  e.domain = s;
  if (s.domainXml) e.domainXml = s.domainXml;
  const before = `${e.status.phase}|${e.status.reason}|${e.status.domainState}`;
  e.status.domainState = s.state ? `${s.state}${s.reason ? `/${s.reason}` : ''}` : '';
  let requeue = false;
  if (s.error && !s.state) {
    e.status.reason = s.error;
  } else if (['running', 'paused', 'blocked', 'pmsuspended'].includes(s.state) && !e.rec.deleting && e.intent === 'none') {
    if (e.status.phase !== 'Running') addEvent(e, 'Normal', 'Started', `domain ${s.state}`);
    e.status.phase = 'Running';
    e.status.reason = s.state === 'paused' ? `paused${s.reason ? ` (${s.reason})` : ''}` : '';
    setCondition(e.status, 'Ready', s.state === 'paused' ? 'False' : 'True', s.state === 'paused' ? 'Paused' : 'DomainRunning');
    setCondition(e.status, 'Paused', s.state === 'paused' ? 'True' : 'False', s.reason || s.state);
    e.status.interfaces = macsFromXml(e);
  } else if ((s.state === 'shutoff' || s.state === 'crashed') && e.started) {
    requeue = true;
  }
  if (prev?.lastEvent !== s.lastEvent && s.lastEvent) addEvent(e, 'Normal', 'DomainEvent', s.lastEvent);
  if (`${e.status.phase}|${e.status.reason}|${e.status.domainState}` !== before || prev?.lastEvent !== s.lastEvent) d.m.publish(e, 'MODIFIED');
  return requeue || e.intent !== 'none';
}

function shouldRun(e: Entry): boolean {
  return !e.rec.deleting && e.rec.wantRunning && e.vmi !== null && e.vmi.runStrategy !== 'Halted';
}

function setPhase(d: LifecycleDeps, e: Entry, phase: VmiPhase, reason: string, warning = false): void {
  if (e.status.phase === phase && e.status.reason === reason) return;
  e.status.phase = phase;
  e.status.reason = reason;
  setCondition(e.status, 'Ready', phase === 'Running' ? 'True' : 'False', phase, reason);
  addEvent(e, warning || phase === 'Failed' ? 'Warning' : 'Normal', phase, reason || phase);
  d.m.publish(e, 'MODIFIED');
}

// ------------------------------------------------------------------------------ starting

/** Checks what the node offers; returns a reason to wait (Pending) or fail, or null. */
function preflight(d: LifecycleDeps, e: Entry): { phase: 'Pending' | 'Failed'; reason: string; retryMs: number } | null {
  const { opts } = d;
  const vmi = e.vmi;
  if (!vmi) return { phase: 'Failed', reason: e.status.reason || 'invalid spec', retryMs: -1 };
  const nodeLibvirt = opts.libvirtUri !== null && opts.libvirt() !== null;
  if (!nodeLibvirt && opts.libvirtUri !== null && opts.libvirtSettled?.() === false) return { phase: 'Pending', reason: `waiting for the first connection to libvirt ${opts.libvirtUri}`, retryMs: 500 };
  if (!nodeLibvirt && !opts.embedFallback) {
    return opts.libvirtUri === null
      ? { phase: 'Pending', reason: 'libvirt is switched off (libvirt.uri=off) and vmi.embeddedLibvirt is off: VMIs cannot run on this node', retryMs: 30_000 }
      : { phase: 'Pending', reason: `libvirt ${opts.libvirtUri} is not connected`, retryMs: 3_000 };
  }
  if (!nodeLibvirt) {
    const longest = `${embedRoot(d.opts.handlerSocket, e.rec.uid)}${EMBED_SOCKET_SUFFIX}`;
    if (Buffer.byteLength(longest) > MAX_UNIX_PATH) {
      return { phase: 'Failed', reason: `no node libvirtd, and the embedded driver's sockets under ${embedRoot(d.opts.handlerSocket, e.rec.uid)} would exceed ${MAX_UNIX_PATH} bytes: use a shorter stateDir or a node libvirtd`, retryMs: -1 };
    }
  }
  const vt = virtTypeFor(nodeFacts(d));
  if (!vt) return { phase: 'Pending', reason: 'waiting for the node capabilities', retryMs: 1_000 };
  if (vt.virtType === 'qemu' && !opts.allowTcg) return { phase: 'Pending', reason: `no KVM and TCG disabled (vmi.allowTcg=false): ${vt.reason}`, retryMs: 60_000 };
  const model = vmi.cpu.model;
  if (vt.virtType === 'qemu' && (model === 'host-passthrough' || model === 'host-model')) {
    return { phase: 'Failed', reason: `cpu model ${model} needs KVM; this node runs guests under TCG (${vt.reason})`, retryMs: -1 };
  }
  if (vmi.interfaces.some((i) => i.binding === 'bridge') && !opts.bridge) return { phase: 'Failed', reason: 'a bridge interface needs a node bridge (vmi.bridge is not set)', retryMs: -1 };
  const node = opts.nodeInfo();
  if (vmi.cpu.dedicated) {
    const total = node?.cpu.logicalCpus ?? 0;
    const used = new Set(d.m.entriesSnapshot().filter((o) => o !== e).flatMap((o) => o.pinnedCpus));
    const free = Array.from({ length: total }, (_, i) => i).filter((c) => !used.has(c));
    if (free.length < vmi.cpu.vcpus) return { phase: 'Pending', reason: `dedicatedCpuPlacement needs ${vmi.cpu.vcpus} dedicated CPUs; ${free.length} of ${total} are free`, retryMs: 10_000 };
    e.pinnedCpus = free.slice(0, vmi.cpu.vcpus);
  }
  const hp = vmi.memory.hugepageSizeBytes;
  if (hp !== null) {
    const pool = node?.hugepages.find((p) => p.sizeBytes === hp);
    const freeBytes = pool ? pool.free * hp : 0;
    if (freeBytes < vmi.memory.guestBytes) return { phase: 'Pending', reason: `needs ${vmi.memory.guestBytes / 2 ** 20} MiB of ${hp / 2 ** 20} MiB hugepages; ${freeBytes / 2 ** 20} MiB free`, retryMs: 30_000 };
  }
  const sock = `${d.m.store.dir(e.rec.uid)}/serial.sock`;
  if (Buffer.byteLength(sock) > MAX_UNIX_PATH) return { phase: 'Failed', reason: `console socket path ${sock} is longer than ${MAX_UNIX_PATH} bytes; use a shorter stateDir`, retryMs: -1 };
  return null;
}

/** What the node offers a launcher right now. */
function nodeFacts(d: LifecycleDeps): NodeFacts {
  const { opts } = d;
  return {
    libvirtUri: opts.libvirtUri,
    nodeLibvirtConnected: opts.libvirt() !== null,
    capabilities: opts.capabilities(),
    nodeInfo: opts.nodeInfo(),
    handlerSocket: opts.handlerSocket,
    bridge: opts.bridge,
  };
}

/** The StartDomain command for the VMI's current launcher (the spec must be valid). */
function startCommand(d: LifecycleDeps, e: Entry, libvirtUri: string): StartDomain {
  return buildStartCommand(nodeFacts(d), {
    vmi: e.vmi as NonNullable<Entry['vmi']>,
    namespace: e.rec.namespace,
    name: e.rec.name,
    vmiDir: d.m.store.dir(e.rec.uid),
    pinnedCpus: e.pinnedCpus,
    libvirtUri,
  });
}

async function startLauncher(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m, opts } = d;
  const uid = e.rec.uid;
  const pf = preflight(d, e);
  if (pf) {
    setPhase(d, e, pf.phase, pf.reason, pf.phase === 'Failed');
    if (pf.retryMs > 0) m.requeue(uid, pf.retryMs);
    else if (pf.phase === 'Failed') afterStop(d, e, false);
    return;
  }
  const libvirtUri = launcherLibvirtUri(nodeFacts(d), uid);
  try {
    startCommand(d, e, libvirtUri); // spec problems (e.g. unsupported combination) fail here, before any process exists
  } catch (err) {
    setPhase(d, e, 'Failed', `cannot build the domain: ${(err as Error).message}`, true);
    afterStop(d, e, false);
    return;
  }
  if (!m.startGate.tryAcquire(uid)) {
    setPhase(d, e, 'Scheduling', 'waiting for a launcher start slot');
    m.log.debug({ uid, ...m.startGate.stats() }, 'launcher start deferred');
    return m.requeue(uid, 5_000); // the gate wakes it sooner; this is only a safety net
  }
  const dir = m.store.ensureDir(uid);
  killStrayLaunchers(d, e);
  const token = newToken();
  // Durable before the side effect: a crash after this line leaves a record that expects a
  // launcher holding this token, which may still register (see reconcile, pid 0).
  e.rec = {
    ...e.rec,
    launcher: { pid: 0, startTime: 0, spawnTokenHash: hashToken(token), sessionTokenHash: '', spawnedAt: new Date().toISOString(), libvirtUri },
  };
  e.status.phase = 'Scheduling';
  e.status.reason = 'starting the launcher';
  m.persist(e);
  d.m.failpoints.hit('launcher-after-record');
  e.launcherSince = Date.now();
  e.started = false;
  e.domain = null;
  e.intent = 'none';
  e.childExit = null;
  let spawned;
  try {
    spawned = await spawnLauncher({ command: opts.launcherCommand ?? defaultLauncherCommand(), uid, vmiDir: dir, handlerSocket: opts.handlerSocket, logLevel: opts.logLevel, token });
  } catch (err) {
    e.rec = { ...e.rec, launcher: null };
    m.startGate.release(uid);
    setPhase(d, e, 'Failed', `cannot start the launcher: ${(err as Error).message}`, true);
    afterStop(d, e, true);
    return;
  }
  d.m.failpoints.hit('launcher-after-spawn');
  e.child = spawned.child;
  void spawned.exited.then((x) => {
    e.childExit = x;
    m.requeue(uid, 0);
  });
  e.rec = { ...e.rec, launcher: { ...(e.rec.launcher as NonNullable<typeof e.rec.launcher>), pid: spawned.pid, startTime: spawned.startTime } };
  e.status.launcherPid = spawned.pid;
  addEvent(e, 'Normal', 'LauncherStarted', `launcher ${spawned.pid}`);
  m.publish(e, 'MODIFIED'); // persists the pid
  d.m.failpoints.hit('launcher-after-pid-record');
  m.requeue(uid, m.timing.registerTimeoutMs);
}

async function startDomain(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m, opts } = d;
  const link = e.link;
  if (!link) return;
  let start: StartDomain;
  try {
    // The libvirt recorded at spawn (older records without one: the node's as configured).
    start = startCommand(d, e, e.rec.launcher?.libvirtUri || opts.libvirtUri || launcherLibvirtUri(nodeFacts(d), e.rec.uid));
  } catch (err) {
    setPhase(d, e, 'Failed', `cannot build the domain: ${(err as Error).message}`, true);
    return requestTeardown(d, e);
  }
  if (e.status.phase !== 'Running') setPhase(d, e, 'Scheduled', 'starting the domain');
  try {
    await link.send({ start }, START_TIMEOUT_MS);
    d.m.failpoints.hit('domain-start-sent');
    e.started = true;
  } catch (err) {
    if (!link.isOpen) return; // the launcher went away; its exit is handled on the next run
    setPhase(d, e, 'Failed', `starting the domain failed: ${(err as Error).message}`, true);
    return requestTeardown(d, e);
  }
  m.requeue(e.rec.uid, 0);
}

// ------------------------------------------------------------------------------ stopping

/** The domain stopped by itself (or after our Shutdown): record the outcome, tear down, apply runStrategy. */
async function finishRun(d: LifecycleDeps, e: Entry): Promise<void> {
  const s = e.domain as DomainStatusMsg;
  const succeeded = s.state === 'shutoff' && (s.reason === 'shutdown' || e.intent === 'shutdown');
  if (succeeded) setPhase(d, e, 'Succeeded', 'the guest powered off');
  else setPhase(d, e, 'Failed', `domain stopped: ${s.state}${s.reason ? `/${s.reason}` : ''}${s.lastEvent ? ` (${s.lastEvent})` : ''}`, true);
  afterStop(d, e, !succeeded);
  return requestTeardown(d, e);
}

/** shouldRun turned false while a launcher runs (Halted, Once done...): graceful stop, then teardown. */
async function stopRun(d: LifecycleDeps, e: Entry): Promise<void> {
  const st = e.domain?.state ?? '';
  if (!e.started || st === '' || st === 'shutoff' || st === 'crashed') return requestTeardown(d, e);
  return gracefulShutdown(d, e, () => requestTeardown(d, e));
}

async function gracefulShutdown(d: LifecycleDeps, e: Entry, then: () => Promise<void>): Promise<void> {
  const grace = e.vmi?.terminationGracePeriodSeconds ?? 30;
  if (e.intent === 'none') {
    e.intent = 'shutdown';
    e.intentSince = Date.now();
    addEvent(e, 'Normal', 'ShuttingDown', `graceful shutdown, up to ${grace} s`);
    await e.link?.send({ shutdown: { gracePeriodSeconds: grace } }, d.m.timing.commandTimeoutMs).catch((err: unknown) => d.m.log.warn({ err, uid: e.rec.uid }, 'shutdown command failed; will destroy'));
  }
  const st = e.domain?.state ?? '';
  if (st === 'shutoff' || st === 'crashed' || Date.now() - e.intentSince > grace * 1000 + 5000) return then();
  d.m.requeue(e.rec.uid, 500);
}

async function requestTeardown(d: LifecycleDeps, e: Entry): Promise<void> {
  e.intent = 'teardown';
  e.intentSince = Date.now();
  await e.link?.send({ teardown: {} }, d.m.timing.commandTimeoutMs).catch((err: unknown) => d.m.log.warn({ err, uid: e.rec.uid }, 'teardown command failed; the launcher will be killed'));
  if (e.rec.deleting) d.m.failpoints.hit('teardown-sent');
  d.m.requeue(e.rec.uid, 200);
}

async function waitForExit(d: LifecycleDeps, e: Entry): Promise<void> {
  const l = e.rec.launcher;
  if (l && isSameProcess(l.pid, l.startTime) && Date.now() - e.intentSince > TEARDOWN_EXIT_MS) kill(l.pid, l.startTime);
  d.m.requeue(e.rec.uid, 250);
}

/** The launcher process is gone: expected after teardown, a failure otherwise. */
async function launcherGone(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m } = d;
  m.startGate.release(e.rec.uid);
  const l = e.rec.launcher;
  const expected = e.intent === 'teardown';
  // Our own child: its exit status says how it died (the pid poll can be faster than the exit event).
  const exit = e.childExit ?? (e.child && (e.child.exitCode !== null || e.child.signalCode !== null) ? { code: e.child.exitCode, signal: e.child.signalCode } : null);
  const how = exit ? (exit.signal ? `killed by ${exit.signal}` : `exited ${exit.code}`) : `exited (pid ${l?.pid ?? 0} gone)`;
  const failed = !expected && !e.rec.deleting;
  // Reported at once (setPhase is idempotent, so a cleanup retry does not repeat it); the
  // runStrategy decision waits until the leftover domain is gone.
  if (failed) {
    const last = lastLogLine(m.store.dir(e.rec.uid));
    setPhase(d, e, 'Failed', `launcher ${how}${last ? `: ${last}` : ''}`, true);
  }
  // Never leave an orphan QEMU: the domain lives in libvirtd, not in the launcher.
  killStrayLaunchers(d, e);
  const cleaned = await destroyLeftoverDomain(d, e);
  if (!cleaned) return m.requeue(e.rec.uid, 2000);
  e.rec = { ...e.rec, launcher: null };
  e.link?.end();
  e.link = null;
  e.child = null;
  e.started = false;
  e.domain = null;
  e.domainXml = null;
  e.pinnedCpus = [];
  e.intent = 'none';
  e.status.launcherPid = null;
  e.status.domainState = '';
  setCondition(e.status, 'LauncherConnected', 'False', 'LauncherGone', how);
  if (failed) {
    afterStop(d, e, true);
  } else {
    m.persist(e);
  }
  if (e.rec.deleting) return teardownForDelete(d, e);
  if (shouldRun(e)) m.requeue(e.rec.uid, backoffDelay(Math.max(0, e.rec.restarts - 1), RESTART_BACKOFF));
}

/** runStrategy after a stop: whether the VMI should run again (counted as a restart). */
function afterStop(d: LifecycleDeps, e: Entry, failed: boolean): void {
  const rs = e.vmi?.runStrategy ?? 'Once';
  const again = rs === 'Always' || (rs === 'RerunOnFailure' && failed);
  e.rec = { ...e.rec, wantRunning: again && e.vmi !== null && e.rec.wantRunning, restarts: again ? e.rec.restarts + 1 : e.rec.restarts };
  if (again) addEvent(e, 'Normal', 'Restarting', `runStrategy ${rs}: restart ${e.rec.restarts}`);
  d.m.persist(e);
}

async function teardownForDelete(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m } = d;
  const l = e.rec.launcher;
  // (A pid-0 record never gets here: reconcile resolves it first, findUnrecordedLauncher.)
  if (l && isSameProcess(l.pid, l.startTime)) {
    if (e.link && e.link.isOpen && e.intent !== 'teardown') {
      const st = e.domain?.state ?? '';
      if (e.started && st !== '' && st !== 'shutoff' && st !== 'crashed') return gracefulShutdown(d, e, () => requestTeardown(d, e));
      return requestTeardown(d, e);
    }
    if (e.intent === 'teardown') return waitForExit(d, e);
    // Alive but not linked: give it the reconnect window, then kill it.
    if (Date.now() - e.launcherSince < m.timing.readoptMs) return m.requeue(e.rec.uid, 500);
    kill(l.pid, l.startTime);
    e.intent = 'teardown';
    return m.requeue(e.rec.uid, 250);
  }
  d.m.failpoints.hit('launcher-exited');
  killStrayLaunchers(d, e);
  if (!(await destroyLeftoverDomain(d, e))) return m.requeue(e.rec.uid, 2000);
  fs.rmSync(embedRoot(d.opts.handlerSocket, e.rec.uid), { recursive: true, force: true });
  m.log.info({ uid: e.rec.uid, vmi: `${e.rec.namespace}/${e.rec.name}` }, 'VMI deleted');
  m.forget(e);
}

/**
 * Destroys and undefines the VMI's domain if libvirt still has it (a launcher killed with -9
 * leaves QEMU running). Returns false when that cannot be checked (libvirt not connected).
 */
async function destroyLeftoverDomain(d: LifecycleDeps, e: Entry): Promise<boolean> {
  const used = e.rec.launcher?.libvirtUri ?? '';
  if (used.startsWith('qemu:///embed')) return killEmbeddedQemu(d, e);
  if (d.opts.libvirtUri === null) return true;
  const conn = d.opts.libvirt();
  if (!conn) return false;
  const name = domainNameOf(e.rec.namespace, e.rec.name);
  let dom;
  try {
    dom = await conn.lookupByName(name);
  } catch (err) {
    if (err instanceof LibvirtError && err.codeName === 'VIR_ERR_NO_DOMAIN') return true;
    d.m.log.warn({ err, domain: name }, 'leftover domain lookup failed');
    return false;
  }
  try {
    const st = await dom.getState();
    if (st.state !== 'shutoff') await dom.destroy();
    await dom.undefine().catch((err: unknown) => {
      if (!(err instanceof LibvirtError && err.codeName === 'VIR_ERR_NO_DOMAIN')) throw err;
    });
    addEvent(e, 'Normal', 'LeftoverCleaned', `destroyed leftover domain ${name}`);
    d.m.log.info({ domain: name }, 'destroyed a leftover domain');
    return true;
  } catch (err) {
    d.m.log.warn({ err, domain: name }, 'could not destroy the leftover domain');
    return false;
  } finally {
    await dom.free().catch(() => undefined);
  }
}

/**
 * The embedded driver ran inside the dead launcher; its QEMU outlives it. The driver's pidfile
 * names it; the process is only killed if its command line is that domain's QEMU.
 */
function killEmbeddedQemu(d: LifecycleDeps, e: Entry): boolean {
  const name = domainNameOf(e.rec.namespace, e.rec.name);
  const pidfile = `${embedRoot(d.opts.handlerSocket, e.rec.uid)}/run/qemu/${name}.pid`;
  let pid = 0;
  try {
    pid = Number(fs.readFileSync(pidfile, 'utf8').trim());
  } catch {
    return true; // never started, or already cleaned up
  }
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (pid > 1 && cmd.includes('qemu') && cmd.includes(`guest=${name}`)) {
      process.kill(pid, 'SIGKILL');
      addEvent(e, 'Normal', 'LeftoverCleaned', `killed leftover QEMU ${pid} of the embedded driver`);
    }
  } catch {
    /* gone */
  }
  fs.rmSync(pidfile, { force: true });
  return true;
}

/**
 * A record with launcher pid 0: a handler died between recording a spawn and recording its pid.
 * If the spawn happened, the launcher is found by its command line and adopted (it holds the
 * spawn token the record expects, and registers with it); if it did not, nothing was started and
 * the launcher is cleared from the record, so the VMI starts afresh.
 */
async function findUnrecordedLauncher(d: LifecycleDeps, e: Entry): Promise<void> {
  const { m } = d;
  const l = e.rec.launcher as NonNullable<Entry['rec']['launcher']>;
  const [found, ...more] = findLauncherProcesses(e.rec.uid, d.opts.handlerSocket);
  for (const p of more) kill(p.pid, p.startTime); // at most one spawn per record write; never two launchers
  if (found) {
    e.rec = { ...e.rec, launcher: { ...l, pid: found.pid, startTime: found.startTime } };
    e.launcherSince = Date.now();
    addEvent(e, 'Normal', 'LauncherFound', `launcher ${found.pid} was spawned by the previous handler before it recorded the pid; adopted`);
    m.log.info({ uid: e.rec.uid, pid: found.pid }, 'adopted a launcher whose pid was never recorded');
  } else {
    // fork..exec: a child forked just before the crash may not show its launcher argv yet.
    if (Date.now() - e.launcherSince < Math.min(2_000, m.timing.registerTimeoutMs)) return m.requeue(e.rec.uid, 500);
    e.rec = { ...e.rec, launcher: null };
    addEvent(e, 'Normal', 'LauncherNeverStarted', 'the previous handler recorded a launcher spawn but died before it happened');
  }
  m.persist(e);
  m.requeue(e.rec.uid, 0);
}

/**
 * Kills launcher processes of this VMI that are not its recorded, live launcher (one spawned by
 * a handler that died before recording it and was not adopted): such a process holds a token no
 * record accepts any more, and would otherwise retry forever. Only a previous handler can have
 * left one (this one records every spawn in memory at once), so the candidates are the launchers
 * found by the manager's one /proc scan at startup, not a scan per launcher start (which made a
 * burst of N starts O(N^2) in /proc reads).
 */
function killStrayLaunchers(d: LifecycleDeps, e: Entry): void {
  const l = e.rec.launcher;
  for (const p of d.m.takeLaunchersFoundAtStart(e.rec.uid)) {
    if (l && l.pid === p.pid && l.startTime === p.startTime) continue;
    kill(p.pid, p.startTime);
    addEvent(e, 'Warning', 'StrayLauncherKilled', `killed launcher ${p.pid}, which no record owns`);
    d.m.log.warn({ uid: e.rec.uid, pid: p.pid }, 'killed a stray launcher');
  }
}

function kill(pid: number, startTime: number): void {
  if (!isSameProcess(pid, startTime)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

function macsFromXml(e: Entry): Entry['status']['interfaces'] {
  const xml = e.domainXml ?? '';
  const macs = [...xml.matchAll(/<mac address=['"]([0-9a-f:]{17})['"]/g)].map((m) => m[1] as string);
  return (e.vmi?.interfaces ?? []).map((i, n) => ({ name: i.name, mac: macs[n] ?? i.macAddress ?? '' }));
}
