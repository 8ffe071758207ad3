/**
 * The daemon as a process: parse argv/env/config file, start the app, wait for a signal, stop,
 * and the exit code of each outcome. Shared by the shipped entry (main.ts) and the test entry
 * (test/lib/test-daemon.ts), which differ only in the seams they pass: main.ts passes none, so
 * the shipped bundle has no way to arm a failpoint or change a timing.
 *
 * Exit codes:
 *   0   clean exit (after SIGTERM/SIGINT drain, or --help/--version/--print-config)
 *   1   unexpected failure (uncaught exception, or a startup error that is not a known VhError: a bug)
 *   2   invalid configuration, flags or usage (the message names the key/flag/variable)
 *   3   startup failure: stateDir/runDir not writable, socket held by a live daemon, listen failed
 *   130 forced exit by a second SIGTERM/SIGINT while draining
 */
import { packageVersion, parseCommandLine } from './config';
import { ErrorCodes, isVhError } from './errors';
import type { AppSeams } from './app';

export const EXIT = { OK: 0, RUNTIME: 1, USAGE: 2, STARTUP: 3, FORCED: 130 } as const;

/** Config/flag errors are usage errors; other VhErrors are known startup failures; anything else is a bug. */
function exitCodeFor(e: unknown): number {
  if (isVhError(e, ErrorCodes.CONFIG_INVALID) || isVhError(e, ErrorCodes.FLAG_INVALID)) return EXIT.USAGE;
  return isVhError(e) ? EXIT.STARTUP : EXIT.RUNTIME;
}

/**
 * Resolves with the first SIGTERM/SIGINT. The handler only records it; runDaemon() does the work.
 * A second signal means the operator wants out now: that one exits immediately, on purpose.
 */
function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received) {
        process.stderr.write(`virt-handler: second ${signal}, exiting without draining\n`);
        process.exit(EXIT.FORCED);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** Runs the daemon until the first SIGTERM/SIGINT has drained it; resolves with the exit code. */
export async function runDaemon(argv: readonly string[], seams?: AppSeams): Promise<number> {
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (e) {
    process.stderr.write(`virt-handler: ${(e as Error).message}\n`);
    return exitCodeFor(e);
  }
  if (command.kind !== 'run') {
    process.stdout.write(command.text);
    return EXIT.OK;
  }

  // Installed before startup so a SIGTERM during startup still drains cleanly afterwards.
  const signal = waitForSignal();
  let app;
  try {
    // Loaded only now: --help, --version and config errors answer without loading fastify/gRPC.
    const { startApp } = await import('./app');
    app = await startApp(command.config, { version: packageVersion(), profile: command.profile, seams });
  } catch (e) {
    process.stderr.write(`virt-handler: startup failed: ${(e as Error).message}\n`);
    return exitCodeFor(e);
  }
  await app.stop(`received ${await signal}`);
  return EXIT.OK;
}

/** Exits with the code `run` resolves to; a rejection is a bug (exit 1, stack on stderr). */
export function exitWhenDone(run: Promise<number>): void {
  run.then(
    // Explicit exit: a stray handle (a client's keep-alive timer...) must not keep a stopped daemon alive.
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`virt-handler: unexpected failure: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(EXIT.RUNTIME);
    },
  );
}
