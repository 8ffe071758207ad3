/**
 * virt-launcher's command line. The handler builds it, so anything unexpected is a bug or a
 * tampered invocation: every flag is required-or-known, validated, and an error names the flag
 * (exit 2). The spawn token arrives in the environment, never on argv (argv is world-readable
 * in /proc).
 */
import * as path from 'node:path';
import type { LogLevel } from '../config/types';
import { MAX_UNIX_PATH } from '../util/unix-socket';
import { isUuid } from '../vmi/spec/ids';

/** The environment variable carrying the one-time spawn token. */
export const TOKEN_ENV = 'VH_LAUNCHER_TOKEN';

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LauncherArgs {
  vmiUid: string;
  /** Absolute path of the handler's gRPC unix socket. */
  handlerSocket: string;
  /** Absolute path of the VMI's directory (disks, seed ISO, launcher.log). */
  vmiDir: string;
  logLevel: LogLevel;
  /** The one-time spawn token (from VH_LAUNCHER_TOKEN). */
  token: string;
}

export type LauncherCommand = { kind: 'run'; args: LauncherArgs } | { kind: 'help'; text: string };

/** A bad flag or variable; `flag` is what the message names. */
export class UsageError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
    this.name = 'UsageError';
  }
}

export const USAGE = `usage: virt-launcher --vmi-uid <uuid> --handler-socket <path> --vmi-dir <dir> [--log-level info]
  env ${TOKEN_ENV}: the one-time registration token (required)
`;

const FLAGS = ['--vmi-uid', '--handler-socket', '--vmi-dir', '--log-level'] as const;
type Flag = (typeof FLAGS)[number];

/** Parses argv (without node and script) and env; throws UsageError naming the flag or variable. */
export function parseLauncherArgs(argv: readonly string[], env: NodeJS.ProcessEnv): LauncherCommand {
  const seen = new Map<Flag, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') return { kind: 'help', text: USAGE };
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (!(FLAGS as readonly string[]).includes(name)) {
      throw new UsageError(name.startsWith('-') ? name : arg, name.startsWith('-') ? 'unknown flag' : 'unexpected argument');
    }
    const flag = name as Flag;
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new UsageError(flag, 'needs a value');
    }
    if (seen.has(flag)) throw new UsageError(flag, 'given more than once');
    seen.set(flag, value);
  }
  const need = (flag: Flag): string => {
    const v = seen.get(flag);
    if (v === undefined || v === '') throw new UsageError(flag, 'is required');
    return v;
  };
  const vmiUid = need('--vmi-uid');
  if (!isUuid(vmiUid)) throw new UsageError('--vmi-uid', `'${vmiUid}' is not a UUID`);
  const handlerSocket = absolutePath('--handler-socket', need('--handler-socket'));
  if (Buffer.byteLength(handlerSocket) > MAX_UNIX_PATH) throw new UsageError('--handler-socket', `longer than ${MAX_UNIX_PATH} bytes`);
  const vmiDir = absolutePath('--vmi-dir', need('--vmi-dir'));
  if (vmiDir === '/') throw new UsageError('--vmi-dir', 'must not be /');
  const level = seen.get('--log-level') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError('--log-level', `'${level}' is not one of ${LOG_LEVELS.join(', ')}`);
  const token = env[TOKEN_ENV];
  if (!token) throw new UsageError(TOKEN_ENV, 'is required (the handler passes the spawn token in the environment)');
  return { kind: 'run', args: { vmiUid: vmiUid.toLowerCase(), handlerSocket, vmiDir, logLevel: level as LogLevel, token } };
}

function absolutePath(flag: string, p: string): string {
  if (!path.isAbsolute(p)) throw new UsageError(flag, `'${p}' is not an absolute path`);
  if (p.includes('\0')) throw new UsageError(flag, 'contains a NUL byte');
  // Normalised, so the confinement checks in disk-prep.ts compare like with like.
  return path.resolve(p);
}
