/**
 * Failpoints: test-only fault injection (in the spirit of etcd's gofail), injected, never read
 * from the environment. Named points in the create/delete paths call `failpoints.hit('name')`;
 * an armed point kills the process right there with SIGKILL, exactly like a `kill -9` (no
 * cleanup, no flush), so the crash tests can check that a restarted handler finishes or rolls
 * back what was half done.
 *
 * The shipped daemon constructs none (NO_FAILPOINTS: `hit` does nothing). Only the test entry
 * (test/lib/test-daemon.ts) builds armed ones, from its own arguments, through the app's seams.
 */

/** Every point the code defines (a name outside this list is refused, so a typo is seen). */
export const FAILPOINTS = [
  'sync-after-record-write',
  'launcher-after-record',
  'launcher-after-spawn',
  'launcher-after-pid-record',
  'launcher-registered',
  'domain-start-sent',
  'delete-after-record-write',
  'teardown-sent',
  'launcher-exited',
  'record-remove-before',
  'record-remove-after',
] as const;
export type FailpointName = (typeof FAILPOINTS)[number];

/** What the control layer calls at each point. */
export interface Failpoints {
  hit(name: FailpointName): void;
}

/** Production: no point is armed. */
export const NO_FAILPOINTS: Failpoints = { hit: () => undefined };

/**
 * Armed points from a spec: `name` (die at the first hit) or `name:N` (at the Nth), comma
 * separated. Throws on an unknown name or a bad count, so a typo is never a silent no-op.
 */
export function armFailpoints(spec: string, die: (name: FailpointName) => void = killSelf): Failpoints {
  const armed = new Map<FailpointName, number>();
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name = '', nth = '1'] = item.split(':');
    const n = Number(nth);
    if (!(FAILPOINTS as readonly string[]).includes(name) || !Number.isInteger(n) || n < 1) {
      throw new Error(`failpoint ${JSON.stringify(item)}: known points are ${FAILPOINTS.join(', ')}; form name or name:N`);
    }
    armed.set(name as FailpointName, n);
  }
  return {
    hit(name) {
      const left = armed.get(name);
      if (left === undefined) return;
      if (left > 1) armed.set(name, left - 1);
      else die(name);
    },
  };
}

function killSelf(name: FailpointName): void {
  process.stderr.write(`failpoint ${name}: SIGKILL\n`);
  process.kill(process.pid, 'SIGKILL');
}
