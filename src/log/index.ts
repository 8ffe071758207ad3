/**
 * The daemon's logger: pino JSON lines on stdout (journald/kubelet collect them), ISO time,
 * textual level, base fields pid/hostname/node, and secrets redacted before they are written.
 */
import * as os from 'node:os';
import pino from 'pino';
import type { LogLevel } from '../config/types';

export type Logger = pino.Logger;

/**
 * Paths whose values are replaced by '[REDACTED]'. pino's `*` matches exactly one level, so the
 * common secret names are listed at the top level, one and two levels down.
 */
export const REDACT_PATHS: readonly string[] = (() => {
  // userData/networkData: cloud-init secrets; views are redacted by vmi/spec/redact.ts before they
  // are logged, this is the backstop for a raw spec logged by mistake.
  const secrets = ['token', 'password', 'key', 'secret', 'userData', 'networkData', 'userDataBase64', 'networkDataBase64'];
  return [
    ...secrets.flatMap((s) => [s, `*.${s}`, `*.*.${s}`]),
    'headers.authorization',
    'headers.cookie',
    'req.headers.authorization',
    'req.headers.cookie',
  ];
})();

/** Options for createLogger. */
export interface LoggerOptions {
  level: LogLevel;
  nodeName: string;
  /** Where lines go; stdout (synchronous, so nothing is lost on exit) unless a test passes a stream. */
  destination?: pino.DestinationStream;
}

/** Creates the root logger. Components take `component(root, 'http')` children. */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid, hostname: os.hostname(), node: opts.nodeName },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A child logger tagged `{component: name}` so one daemon's lines can be filtered by part. */
export function component(logger: Logger, name: string): Logger {
  return logger.child({ component: name });
}
