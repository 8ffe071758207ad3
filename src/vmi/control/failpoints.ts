/**
 * Failpoints: a TEST-ONLY fault-injection facility (in the spirit of etcd's gofail). Named points
 * in the create/delete paths call `failpoint('name')`; when `VH_FAILPOINTS` names that point, the
 * process dies right there with SIGKILL, exactly like a `kill -9` (no cleanup, no flush), so the
 * crash tests (test/integration/crash-points.test.ts) can check that a restarted handler finishes
 * or rolls back what was half done.
 *
 *   VH_FAILPOINTS="sync-after-record-write"            die at the first hit
 *   VH_FAILPOINTS="launcher-after-spawn:2,teardown-sent" die at the 2nd hit of one, 1st of the other
 *
 * The variable is parsed once, when this module loads; unset (production), `failpoint()` is one
 * Map size check. A malformed entry is reported on stderr and ignored: this never runs in
 * production, and a typo must not be mistaken for a crash.
 *
 * Other test-only knobs live here too, for the same reason (read once, never set in production):
 *   VH_TEST_VMI_TIMING       JSON, e.g. {"registerTimeoutMs":3000,"readoptMs":5000}: the
 *                            manager's waits (ControllerOptions.timing), so crash tests run quickly
 *   VH_TEST_LAUNCHER_COMMAND JSON array, the launcher argv prefix (ControllerOptions.launcherCommand),
 *                            e.g. a fake launcher for the fuzz test
 */

import { ErrorCodes, VhError } from '../../errors';

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

/** point -> hits left before it fires. */
const armed = parse(process.env.VH_FAILPOINTS ?? '');

function parse(spec: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name = '', nth = '1'] = item.split(':');
    const n = Number(nth);
    if (!(FAILPOINTS as readonly string[]).includes(name) || !Number.isInteger(n) || n < 1) {
      process.stderr.write(`VH_FAILPOINTS: ignoring ${JSON.stringify(item)} (known points: ${FAILPOINTS.join(', ')}; form name or name:N)\n`);
      continue;
    }
    out.set(name, n);
  }
  if (out.size > 0) process.stderr.write(`VH_FAILPOINTS armed (test-only fault injection): ${[...out].map(([k, v]) => `${k}:${v}`).join(', ')}\n`);
  return out;
}

/** Dies with SIGKILL when `name` is armed and this is its Nth hit; otherwise does nothing. */
export function failpoint(name: FailpointName): void {
  if (armed.size === 0) return;
  const left = armed.get(name);
  if (left === undefined) return;
  if (left > 1) {
    armed.set(name, left - 1);
    return;
  }
  process.stderr.write(`failpoint ${name}: SIGKILL\n`);
  process.kill(process.pid, 'SIGKILL');
}

/** The test-only manager overrides from the environment (see the header); {} when unset. */
export function testManagerOverrides(env: Readonly<Record<string, string | undefined>> = process.env): {
  timing?: Record<string, number>;
  launcherCommand?: string[];
} {
  const out: { timing?: Record<string, number>; launcherCommand?: string[] } = {};
  const t = env.VH_TEST_VMI_TIMING;
  if (t) {
    const v = JSON.parse(t) as unknown;
    if (typeof v !== 'object' || v === null || Object.values(v).some((x) => typeof x !== 'number' || !(x > 0))) throw new VhError(ErrorCodes.CONFIG_INVALID, 'VH_TEST_VMI_TIMING (test-only): must be a JSON object of positive numbers');
    out.timing = v as Record<string, number>;
  }
  const c = env.VH_TEST_LAUNCHER_COMMAND;
  if (c) {
    const v = JSON.parse(c) as unknown;
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string')) throw new VhError(ErrorCodes.CONFIG_INVALID, 'VH_TEST_LAUNCHER_COMMAND (test-only): must be a JSON array of strings');
    out.launcherCommand = v as string[];
  }
  if (out.timing || out.launcherCommand) process.stderr.write(`test-only overrides in effect: ${JSON.stringify(out)}\n`);
  return out;
}
