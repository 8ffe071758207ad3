#!/usr/bin/env node
/**
 * virt-launcher: the per-VMI process the handler spawns (KubeVirt's virt-launcher). It dials the
 * handler (handler-link.ts), runs the VMI's domain (domain-runner.ts) and lives until the
 * handler tears it down.
 *
 * Signals: SIGTERM/SIGINT shut the guest down gracefully within the last known grace period
 * (the last Shutdown command's, else 30 s), destroy it if it is still up, then exit 0 - like
 * KubeVirt's launcher, for which SIGTERM means the pod is going away. The domain's definition
 * and disks stay for the handler's teardown. A second signal exits at once (130). SIGKILL
 * leaves QEMU running under libvirtd; a new launcher for the same VMI adopts it.
 *
 * Exit codes: 0 after teardown or a signal; 1 unexpected failure; 2 bad flags or environment
 * (the message names the flag); 130 second signal.
 */
// First, before anything can start libuv's threadpool (see src/main.ts). A launcher needs 4: one
// is held by libvirt's event loop while it runs, two serve its two libvirt connections' calls,
// one is left for file work (disk preparation). The handler spawns it with exactly that.
import { ensureThreadpoolSize } from '../libvirt/queue';
ensureThreadpoolSize(4);

import * as fs from 'node:fs';
import * as os from 'node:os';
import { TOKEN_ENV, UsageError, parseLauncherArgs } from './args';

const EXIT = { OK: 0, RUNTIME: 1, USAGE: 2, FORCED: 130 } as const;

async function main(argv: readonly string[]): Promise<number> {
  let command;
  try {
    command = parseLauncherArgs(argv, process.env);
    if (command.kind === 'run') {
      let st: fs.Stats | null = null;
      try {
        st = fs.statSync(command.args.vmiDir);
      } catch {
        st = null;
      }
      if (!st?.isDirectory()) throw new UsageError('--vmi-dir', `${command.args.vmiDir} is not an existing directory`);
    }
  } catch (e) {
    process.stderr.write(`virt-launcher: ${(e as Error).message}\n`);
    return e instanceof UsageError ? EXIT.USAGE : EXIT.RUNTIME;
  } finally {
    // The token is a secret: children (qemu-img, genisoimage) and /proc/<pid>/environ readers get no copy.
    delete process.env[TOKEN_ENV];
  }
  if (command.kind === 'help') {
    process.stdout.write(command.text);
    return EXIT.OK;
  }
  const args = command.args;

  const { createLauncherLogger } = await import('./log');
  const { launcherVersion } = await import('./version');
  const { HandlerLink } = await import('./handler-link');
  const { DomainRunner } = await import('./domain-runner');

  const root = createLauncherLogger({ level: args.logLevel, nodeName: os.hostname() });
  const log = root.child({ component: 'launcher', vmiUid: args.vmiUid });
  const version = launcherVersion();
  log.info({ version, vmiDir: args.vmiDir, socket: args.handlerSocket }, 'virt-launcher starting');

  const runner = new DomainRunner({ vmiDir: args.vmiDir, logger: log });
  const link = new HandlerLink({
    socketPath: args.handlerSocket,
    vmiUid: args.vmiUid,
    spawnToken: args.token,
    version,
    logger: log.child({ component: 'handler-link' }),
  });

  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));

  runner.on('status', (s) => link.sendStatus(s));
  link.on('registered', () => link.sendStatus(runner.status()));
  link.on('command', (cmd) => {
    const t0 = Date.now();
    void runner.handle(cmd).then(async (result) => {
      // Stats are read on every scrape: info would drown the commands that change something.
      const level = cmd.getStats ? 'debug' : 'info';
      log[level]({ id: result.id, cmd: commandName(cmd), ok: result.ok, error: result.error || undefined, ms: Date.now() - t0 }, 'command done');
      await link.sendResult(result);
      if (runner.tornDown) {
        await link.stop();
        await runner.close();
        log.info('teardown complete; exiting');
        finish(EXIT.OK);
      }
    });
  });

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      process.stderr.write(`virt-launcher: second ${signal}, exiting now\n`);
      process.exit(EXIT.FORCED);
    }
    signalled = true;
    log.info({ signal }, 'signal received');
    void runner
      .stopForSignal()
      .catch((e: unknown) => log.error({ err: e }, 'stopping the guest failed'))
      .then(() => link.stop())
      .then(() => finish(EXIT.OK));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  link.start();
  return done;
}

function commandName(cmd: object): string {
  return Object.keys(cmd).find((k) => k !== 'id') ?? 'unknown';
}

main(process.argv.slice(2)).then(
  // Explicit exit: grpc-js and libvirt's event loop hold handles that would keep us alive.
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`virt-launcher: unexpected failure: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(EXIT.RUNTIME);
  },
);
