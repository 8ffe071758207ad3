/**
 * The test seams as the test entry (test/lib/test-daemon.ts) reads them from its environment,
 * and as the harness (test/lib/daemon.ts) writes them: one place for the VHTEST_* names and
 * formats. No side effects on import (the test entry itself raises libuv's pool when loaded).
 */
import type { ImageGcTiming, Timing } from '../../src/vmi/control/controller';

/** What the crash, timing and fuzz tests inject. */
export interface Seams {
  /** `name[:N],...`: die with SIGKILL at the Nth hit of each point (src/vmi/control/failpoints.ts). */
  failpoints?: string;
  /** The VMI controller's waits, e.g. {registerTimeoutMs: 3000}. */
  vmiTiming?: Partial<Timing>;
  /** The launcher argv prefix, e.g. ['/bin/bash', 'fake-launcher.sh']. */
  launcherCommand?: readonly string[];
  /** Image GC timing, e.g. {minIdleMs: 0}: the GC at start removes every image no record names. */
  imageGc?: Partial<ImageGcTiming>;
  /** DataVolume imports wait this long (with progress) before the blank importer runs (slow-importer.ts). */
  slowImportMs?: number;
}

/** The variable that carries each seam. */
export const SEAM_ENV = { failpoints: 'VHTEST_FAILPOINTS', vmiTiming: 'VHTEST_VMI_TIMING', launcherCommand: 'VHTEST_LAUNCHER_COMMAND', imageGc: 'VHTEST_IMAGE_GC', slowImportMs: 'VHTEST_SLOW_IMPORT_MS' } as const satisfies Record<keyof Seams, string>;

/** The environment the test entry reads `seams` from. */
export function seamEnv(seams: Seams): Record<string, string> {
  const env: Record<string, string> = {};
  if (seams.failpoints) env[SEAM_ENV.failpoints] = seams.failpoints;
  if (seams.vmiTiming) env[SEAM_ENV.vmiTiming] = JSON.stringify(seams.vmiTiming);
  if (seams.launcherCommand) env[SEAM_ENV.launcherCommand] = JSON.stringify(seams.launcherCommand);
  if (seams.imageGc) env[SEAM_ENV.imageGc] = JSON.stringify(seams.imageGc);
  if (seams.slowImportMs !== undefined) env[SEAM_ENV.slowImportMs] = String(seams.slowImportMs);
  return env;
}
