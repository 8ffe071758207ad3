#!/usr/bin/env node
/**
 * The daemon's test entry: the same process as the shipped one (src/daemon-process.ts: config,
 * startup, signals, exit codes), plus the test seams, read from ITS OWN variables and handed to
 * the app as constructor options. The shipped entry (src/main.ts, bundled into
 * dist/virt-handler.cjs) reads none of these; test/integration/test-seams.test.ts checks that.
 *
 *   VHTEST_FAILPOINTS=name[:N],...   die with SIGKILL at the Nth hit of each named point
 *                                    (src/vmi/control/failpoints.ts lists them)
 *   VHTEST_VMI_TIMING=JSON           the VMI controller's waits, e.g. {"registerTimeoutMs":3000}
 *   VHTEST_LAUNCHER_COMMAND=JSON     the launcher argv prefix, e.g. ["/bin/bash","fake-launcher.sh"]
 *   VHTEST_IMAGE_GC=JSON             image GC timing, e.g. {"minIdleMs":0}
 *   VHTEST_SLOW_IMPORT_MS=N          DataVolume imports take N ms (the blank importer after a wait)
 *
 *   VHTEST_FAILPOINTS=teardown-sent node dist/test/lib/test-daemon.js --state-dir ... (virt-handler's flags)
 *
 * A bad value exits 2 naming the variable, like a bad daemon flag. test/lib/daemon.ts starts it
 * (test/lib/seams.ts writes the variables).
 */
// First, as in src/main.ts: libuv reads UV_THREADPOOL_SIZE only once.
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import type { AppSeams } from '../../src/app';
import { EXIT, exitWhenDone, runDaemon } from '../../src/daemon-process';
import type { Timing } from '../../src/vmi/control/controller';
import { armFailpoints } from '../../src/vmi/control/failpoints';
import { SEAM_ENV } from './seams';
import { slowBlankImporter } from './slow-importer';

/** Every Timing key (a key added to Timing and not here fails to compile). */
const TIMING_KEYS = { registerTimeoutMs: true, readoptMs: true, commandTimeoutMs: true, livenessPollMs: true } satisfies Record<keyof Timing, true>;

class SeamError extends Error {}

function json(name: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new SeamError(`${name}: not JSON (${(e as Error).message})`);
  }
}

/** The seams the environment asks for; throws SeamError naming the variable on a bad value. */
export function seamsFromEnv(env: NodeJS.ProcessEnv): AppSeams {
  const seams: AppSeams = {};
  const fp = env[SEAM_ENV.failpoints];
  if (fp) {
    try {
      seams.failpoints = armFailpoints(fp);
    } catch (e) {
      throw new SeamError(`${SEAM_ENV.failpoints}: ${(e as Error).message}`);
    }
  }
  const timing = env[SEAM_ENV.vmiTiming];
  if (timing) {
    const v = json(SEAM_ENV.vmiTiming, timing);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SeamError(`${SEAM_ENV.vmiTiming}: must be a JSON object`);
    for (const [k, n] of Object.entries(v)) {
      if (!(k in TIMING_KEYS)) throw new SeamError(`${SEAM_ENV.vmiTiming}: unknown key ${k} (known: ${Object.keys(TIMING_KEYS).join(', ')})`);
      if (typeof n !== 'number' || !(n > 0)) throw new SeamError(`${SEAM_ENV.vmiTiming}: ${k} must be a positive number of ms`);
    }
    seams.vmiTiming = v as Partial<Timing>;
  }
  const command = env[SEAM_ENV.launcherCommand];
  if (command) {
    const v = json(SEAM_ENV.launcherCommand, command);
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string' || x === '')) throw new SeamError(`${SEAM_ENV.launcherCommand}: must be a JSON array of non-empty strings`);
    seams.launcherCommand = v as string[];
  }
  const gc = env[SEAM_ENV.imageGc];
  if (gc) {
    const v = json(SEAM_ENV.imageGc, gc);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SeamError(`${SEAM_ENV.imageGc}: must be a JSON object`);
    for (const [k, n] of Object.entries(v)) {
      if (k !== 'intervalMs' && k !== 'minIdleMs') throw new SeamError(`${SEAM_ENV.imageGc}: unknown key ${k} (known: intervalMs, minIdleMs)`);
      if (typeof n !== 'number' || !(n >= 0) || (k === 'intervalMs' && n === 0)) throw new SeamError(`${SEAM_ENV.imageGc}: ${k} must be a number of ms (intervalMs > 0)`);
    }
    seams.imageGc = v as AppSeams['imageGc'];
  }
  const slow = env[SEAM_ENV.slowImportMs];
  if (slow) {
    const ms = Number(slow);
    if (!Number.isSafeInteger(ms) || ms <= 0) throw new SeamError(`${SEAM_ENV.slowImportMs}: must be a positive integer of ms`);
    seams.importer = slowBlankImporter(ms);
  }
  return seams;
}

async function main(): Promise<number> {
  let seams: AppSeams;
  try {
    seams = seamsFromEnv(process.env);
  } catch (e) {
    if (!(e instanceof SeamError)) throw e;
    process.stderr.write(`test-daemon: ${e.message}\n`);
    return EXIT.USAGE;
  }
  const armed = Object.values(SEAM_ENV).filter((name) => process.env[name]);
  if (armed.length > 0) process.stderr.write(`test-daemon: test seams in effect: ${armed.map((n) => `${n}=${process.env[n]}`).join(' ')}\n`);
  return runDaemon(process.argv.slice(2), seams);
}

if (require.main === module) exitWhenDone(main());
