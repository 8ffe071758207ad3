/**
 * The reconcile of one VMI (run by the controller's work queue, never twice at once for the same
 * VMI). Level-triggered: each run looks at the record, the launcher process, its connection and
 * the last domain status, does the next step, and requeues itself when it must wait.
 *
 *   Idle ─ shouldRun ─> preflight ─> Spawning (record: spawn token, pid 0) ─> spawn ─> Launching (pid)
 *   Launching + connected ─> StartDomain ─> Started ─> domain running ─> Running
 *   Started, domain stopped by itself ─> Succeeded (guest power-off) / Failed ─> TearingDown ─> runStrategy
 *   launcher died ─> Failed "launcher exited ..." ─> leftover domain destroyed ─> Idle ─> runStrategy
 *   deleting ─> ShuttingDown (terminationGracePeriodSeconds) ─> TearingDown ─> leftovers ─> record removed
 *
 * The steps live in start.ts and stop.ts; the per-VMI state and its stages in vmi-state.ts; what
 * the steps may ask of the outside in reconcile-host.ts.
 */
import { isSameProcess } from './launcher-process';
import type { ReconcileHost } from './reconcile-host';
import { findUnrecordedLauncher, startDomain, startLauncher } from './start';
import { finishRun, kill, launcherGone, stopRun, teardownForDelete, waitForExit } from './stop';
import type { VmiState } from './vmi-state';

export async function reconcile(h: ReconcileHost, s: VmiState): Promise<void> {
  const uid = s.uid;
  // A start slot is held from spawn until the launcher registers (or is gone, or deleted).
  if (s.rec.deleting) h.startGate.forget(uid);
  else if (s.linked || !s.rec.launcher) h.startGate.release(uid);
  if (s.stage === 'Spawning') return findUnrecordedLauncher(h, s);
  if (s.rec.deleting) return teardownForDelete(h, s);
  const l = s.rec.launcher;
  if (l) {
    if (!isSameProcess(l.pid, l.startTime)) return launcherGone(h, s);
    if (!s.linked) {
      const waited = Date.now() - s.launcherSince;
      const limit = s.status.launcherPid ? h.timing.readoptMs : h.timing.registerTimeoutMs;
      if (waited < limit) return h.requeue(uid, 1000);
      if (s.setPhase('Unknown', `launcher ${l.pid} is alive but has not connected for ${Math.round(waited / 1000)} s; killing it`)) h.publish(s);
      kill(l.pid, l.startTime);
      return h.requeue(uid, 500);
    }
    if (s.stage === 'TearingDown') return waitForExit(h, s);
    if (!s.shouldRun) return stopRun(h, s);
    if (s.stage === 'Launching') return startDomain(h, s);
    const st = s.domainState;
    if (st === 'shutoff' || st === 'crashed') return finishRun(h, s);
    return;
  }
  if (!s.shouldRun) {
    if (s.status.phase === 'Pending' && s.vmi?.runStrategy === 'Halted' && s.setPhase('Pending', 'runStrategy Halted: not started')) h.publish(s);
    return;
  }
  return startLauncher(h, s);
}
