/**
 * Stopping a VMI: a domain that stopped by itself, a graceful shutdown, the launcher's teardown
 * and exit, a launcher that died, the runStrategy decision after a stop, and deletion. Nothing
 * is left behind: a leftover domain (a launcher killed with -9 leaves QEMU running) is destroyed
 * before the VMI can start again or its record is removed.
 */
import * as fs from 'node:fs';
import { LibvirtError } from '../../libvirt/errors';
import { undefineDomain } from '../../libvirt/undefine';
import { backoffDelay } from '../../util/backoff';
import { domainNameOf, embedRoot } from './launch-plan';
import { isSameProcess, lastLogLine } from './launcher-process';
import type { ReconcileHost } from './reconcile-host';
import type { VmiState } from './vmi-state';

const RESTART_BACKOFF = { initialMs: 1_000, maxMs: 60_000, stableMs: 0 };
/** After a teardown request, how long the launcher has to exit before it is killed. */
const TEARDOWN_EXIT_MS = 30_000;

/** Started, and the domain stopped by itself (or after our Shutdown): record the outcome, tear down, apply runStrategy. */
export async function finishRun(h: ReconcileHost, s: VmiState): Promise<void> {
  const d = s.domain;
  const succeeded = d?.state === 'shutoff' && (d.reason === 'shutdown' || s.stage === 'ShuttingDown');
  const changed = succeeded
    ? s.setPhase('Succeeded', 'the guest powered off')
    : s.setPhase('Failed', `domain stopped: ${d?.state ?? ''}${d?.reason ? `/${d.reason}` : ''}${d?.lastEvent ? ` (${d.lastEvent})` : ''}`, true);
  if (changed) h.publish(s);
  afterStop(h, s, !succeeded);
  return requestTeardown(h, s);
}

/** shouldRun turned false while a launcher runs (Halted, Once done...): graceful stop, then teardown. */
export async function stopRun(h: ReconcileHost, s: VmiState): Promise<void> {
  const st = s.domainState;
  if (s.stage === 'Launching' || st === '' || st === 'shutoff' || st === 'crashed') return requestTeardown(h, s);
  return gracefulShutdown(h, s);
}

/** Started -> ShuttingDown -> (guest off, or grace over) TearingDown. */
async function gracefulShutdown(h: ReconcileHost, s: VmiState): Promise<void> {
  const grace = s.vmi?.terminationGracePeriodSeconds ?? 30;
  if (s.stage === 'Started') {
    s.beginShutdown(grace);
    await s.channel?.send({ shutdown: { gracePeriodSeconds: grace } }, h.timing.commandTimeoutMs).catch((err: unknown) => h.log.warn({ err, uid: s.uid }, 'shutdown command failed; will destroy'));
  }
  const st = s.domainState;
  if (st === 'shutoff' || st === 'crashed' || Date.now() - s.stageSince > grace * 1000 + 5000) return requestTeardown(h, s);
  h.requeue(s.uid, 500);
}

/** -> TearingDown: the launcher removes the domain and its disks, then exits. */
export async function requestTeardown(h: ReconcileHost, s: VmiState): Promise<void> {
  s.beginTeardown();
  await s.channel?.send({ teardown: {} }, h.timing.commandTimeoutMs).catch((err: unknown) => h.log.warn({ err, uid: s.uid }, 'teardown command failed; the launcher will be killed'));
  if (s.rec.deleting) h.failpoints.hit('teardown-sent');
  h.requeue(s.uid, 200);
}

/** TearingDown: kill a launcher that does not exit in time. */
export async function waitForExit(h: ReconcileHost, s: VmiState): Promise<void> {
  const l = s.rec.launcher;
  if (l && isSameProcess(l.pid, l.startTime) && Date.now() - s.stageSince > TEARDOWN_EXIT_MS) kill(l.pid, l.startTime);
  h.requeue(s.uid, 250);
}

/** The launcher process is gone: expected after teardown, a failure otherwise. -> Idle */
export async function launcherGone(h: ReconcileHost, s: VmiState): Promise<void> {
  h.startGate.release(s.uid);
  const l = s.rec.launcher;
  const expected = s.stage === 'TearingDown';
  // Our own child: its exit status says how it died (the pid poll can be faster than the exit event).
  const child = s.child;
  const exit = s.childExit ?? (child && (child.exitCode !== null || child.signalCode !== null) ? { code: child.exitCode, signal: child.signalCode } : null);
  const how = exit ? (exit.signal ? `killed by ${exit.signal}` : `exited ${exit.code}`) : `exited (pid ${l?.pid ?? 0} gone)`;
  const failed = !expected && !s.rec.deleting;
  // Reported at once (setPhase is idempotent, so a cleanup retry does not repeat it); the
  // runStrategy decision waits until the leftover domain is gone.
  if (failed) {
    const last = lastLogLine(h.vmiDir(s.uid));
    if (s.setPhase('Failed', `launcher ${how}${last ? `: ${last}` : ''}`, true)) h.publish(s);
  }
  // Never leave an orphan QEMU: the domain lives in libvirtd, not in the launcher.
  killStrayLaunchers(h, s);
  if (!(await destroyLeftoverDomain(h, s))) return h.requeue(s.uid, 2000);
  s.launcherCleared(how);
  if (failed) afterStop(h, s, true);
  else h.persist(s);
  if (s.rec.deleting) return teardownForDelete(h, s);
  if (s.shouldRun) h.requeue(s.uid, backoffDelay(Math.max(0, s.rec.restarts - 1), RESTART_BACKOFF));
}

/** runStrategy after a stop: whether the VMI should run again (counted as a restart); persisted. */
export function afterStop(h: ReconcileHost, s: VmiState, failed: boolean): void {
  s.afterStop(failed);
  h.persist(s);
}

/** Deleting: graceful shutdown, teardown, leftovers, then the record goes. */
export async function teardownForDelete(h: ReconcileHost, s: VmiState): Promise<void> {
  const l = s.rec.launcher;
  // (A Spawning record never gets here: reconcile resolves it first, findUnrecordedLauncher.)
  if (l && isSameProcess(l.pid, l.startTime)) {
    if (s.linked && s.stage !== 'TearingDown') {
      const st = s.domainState;
      if (s.stage !== 'Launching' && st !== '' && st !== 'shutoff' && st !== 'crashed') return gracefulShutdown(h, s);
      return requestTeardown(h, s);
    }
    if (s.stage === 'TearingDown') return waitForExit(h, s);
    // Alive but not connected: give it the reconnect window, then kill it.
    if (Date.now() - s.launcherSince < h.timing.readoptMs) return h.requeue(s.uid, 500);
    kill(l.pid, l.startTime);
    s.beginTeardown();
    return h.requeue(s.uid, 250);
  }
  h.failpoints.hit('launcher-exited');
  killStrayLaunchers(h, s);
  if (!(await destroyLeftoverDomain(h, s))) return h.requeue(s.uid, 2000);
  fs.rmSync(embedRoot(h.settings.handlerSocket, s.uid), { recursive: true, force: true });
  h.log.info({ uid: s.uid, vmi: s.key }, 'VMI deleted');
  h.forget(s);
}

/**
 * Destroys and undefines the VMI's domain if libvirt still has it (a launcher killed with -9
 * leaves QEMU running). Returns false when that cannot be checked (libvirt not connected).
 */
async function destroyLeftoverDomain(h: ReconcileHost, s: VmiState): Promise<boolean> {
  const used = s.rec.launcher?.libvirtUri ?? '';
  if (used.startsWith('qemu:///embed')) return killEmbeddedQemu(h, s);
  if (h.settings.libvirtUri === null) return true;
  const conn = h.libvirt();
  if (!conn) return false;
  const name = domainNameOf(s.rec.namespace, s.rec.name);
  let dom;
  try {
    dom = await conn.lookupByName(name);
  } catch (err) {
    if (err instanceof LibvirtError && err.codeName === 'VIR_ERR_NO_DOMAIN') return true;
    h.log.warn({ err, domain: name }, 'leftover domain lookup failed');
    return false;
  }
  try {
    const st = await dom.getState();
    if (st.state !== 'shutoff') await dom.destroy();
    await undefineDomain(dom).catch((err: unknown) => {
      if (!(err instanceof LibvirtError && err.codeName === 'VIR_ERR_NO_DOMAIN')) throw err;
    });
    s.addEvent('Normal', 'LeftoverCleaned', `destroyed leftover domain ${name}`);
    h.log.info({ domain: name }, 'destroyed a leftover domain');
    return true;
  } catch (err) {
    h.log.warn({ err, domain: name }, 'could not destroy the leftover domain');
    return false;
  } finally {
    await dom.free().catch(() => undefined);
  }
}

/**
 * The embedded driver ran inside the dead launcher; its QEMU outlives it. The driver's pidfile
 * names it; the process is only killed if its command line is that domain's QEMU.
 */
function killEmbeddedQemu(h: ReconcileHost, s: VmiState): boolean {
  const name = domainNameOf(s.rec.namespace, s.rec.name);
  const pidfile = `${embedRoot(h.settings.handlerSocket, s.uid)}/run/qemu/${name}.pid`;
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
      s.addEvent('Normal', 'LeftoverCleaned', `killed leftover QEMU ${pid} of the embedded driver`);
    }
  } catch {
    /* gone */
  }
  fs.rmSync(pidfile, { force: true });
  return true;
}

/**
 * Kills launcher processes of this VMI that are not its recorded, live launcher (one spawned by
 * a handler that died before recording it and was not adopted): such a process holds a token no
 * record accepts any more, and would otherwise retry forever. Only a previous handler can have
 * left one (this one records every spawn in memory at once), so the candidates are the launchers
 * found by the controller's one /proc scan at startup, not a scan per launcher start (which made
 * a burst of N starts O(N^2) in /proc reads).
 */
export function killStrayLaunchers(h: ReconcileHost, s: VmiState): void {
  const l = s.rec.launcher;
  for (const p of h.takeLaunchersFoundAtStart(s.uid)) {
    if (l && l.pid === p.pid && l.startTime === p.startTime) continue;
    kill(p.pid, p.startTime);
    s.addEvent('Warning', 'StrayLauncherKilled', `killed launcher ${p.pid}, which no record owns`);
    h.log.warn({ uid: s.uid, pid: p.pid }, 'killed a stray launcher');
  }
}

/** SIGKILL, only if `pid` is still the process that started at `startTime`. */
export function kill(pid: number, startTime: number): void {
  if (!isSameProcess(pid, startTime)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}
