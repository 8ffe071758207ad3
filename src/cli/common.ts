/**
 * What every vhctl command shares: exit codes, the error classes that choose them, socket
 * discovery and preflight, the gRPC client, and the one function that phrases a failed call.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { defaultValues, detectProfile, processContext } from '../config/defaults';
import { loadProtos } from '../grpc/proto';
import { MAX_SEND_BYTES } from '../grpc/server';

/** Process exit codes: 0 ok, 1 any runtime failure (daemon, RPC, refusal, not found), 2 usage. */
export const EXIT = { OK: 0, ERROR: 1, USAGE: 2 } as const;

/** A usage mistake (exit 2) rather than a runtime failure (exit 1). */
export class UsageError extends Error {}
/** A failure already phrased for the operator (exit 1). */
export class CliError extends Error {}

/** The file name the daemon gives its gRPC socket inside runDir (config: grpc.socket = <runDir>/grpc.sock). */
const GRPC_SOCKET_NAME = 'grpc.sock';
export const DEFAULT_TIMEOUT_MS = 5000;

/** What every command gets after parsing. */
export interface CommonOptions {
  socket: string;
  /** Per-call deadline. */
  timeoutMs: number;
  /** Whether --timeout was given (some commands then use it as an overall limit). */
  timeoutSet: boolean;
}

/**
 * The socket the daemon would listen on given this environment. Reuses the daemon's own
 * runDir defaults (src/config/defaults.ts) so the two cannot drift apart.
 */
export function defaultSocket(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = fs.existsSync): string {
  if (env.VH_GRPC_SOCKET) return env.VH_GRPC_SOCKET;
  if (env.VH_RUN_DIR) return path.join(env.VH_RUN_DIR, GRPC_SOCKET_NAME);
  const ctx = processContext(env);
  // An explicit profile names the daemon the operator means.
  if (env.VH_PROFILE !== undefined) return path.join(String(defaultValues(detectProfile(ctx), ctx).runDir), GRPC_SOCKET_NAME);
  const production = path.join(String(defaultValues('production', ctx).runDir), GRPC_SOCKET_NAME);
  // A non-root operator in the socket's group talks to the system daemon when there is one.
  if (exists(production)) return production;
  // Otherwise the daemon this user would start by hand: dev paths unless root (same rule as the daemon).
  return path.join(String(defaultValues(detectProfile(ctx), ctx).runDir), GRPC_SOCKET_NAME);
}

export function parseTimeout(raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw);
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!(ms > 0 && ms <= 3_600_000)) throw new UsageError(`--timeout: expected a duration like 5, 5s, 500ms or 2m (at most 1h), got '${raw}'`);
  return ms;
}

/** Fails early with a precise message where gRPC would only say "UNAVAILABLE". */
export function preflight(socket: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(socket);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`is virt-handler running? socket ${socket} not found (set --socket or VH_GRPC_SOCKET)`);
    if (code === 'EACCES') throw new CliError(`permission denied: cannot reach ${socket} (a parent directory is not searchable); run as root`);
    throw new CliError(`cannot stat ${socket}: ${(e as Error).message}`);
  }
  if (!st.isSocket()) throw new CliError(`${socket} is not a unix socket`);
  try {
    fs.accessSync(socket, fs.constants.W_OK); // connect(2) on a unix socket needs write permission
  } catch {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new CliError(`permission denied on ${socket} (mode ${mode}, owner ${st.uid}:${st.gid}); run as root or as a member of group ${st.gid}`);
  }
}

/** What a failed call was about, for the message. */
export interface CallContext {
  socket: string;
  timeoutMs: number;
  /** e.g. `vmi default/x`. */
  subject?: string;
  /** e.g. `pause`. */
  action?: string;
}

export function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && 'code' in e && 'details' in e && typeof (e as { code: unknown }).code === 'number';
}

/** Turns a failed call into one operator-readable sentence. */
export function describeCallError(err: grpc.ServiceError, ctx: CallContext): string {
  const d = err.details ?? '';
  const { socket } = ctx;
  const what = ctx.action && ctx.subject ? `${ctx.action} ${ctx.subject}` : ctx.action ?? ctx.subject;
  switch (err.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return `deadline exceeded: no answer from virt-handler at ${socket} within ${ctx.timeoutMs} ms (raise --timeout?)`;
    case grpc.status.UNAVAILABLE:
      if (/ECONNREFUSED/.test(d)) return `nothing is listening on ${socket} (stale socket: is virt-handler running?)`;
      if (/EACCES|EPERM/.test(d)) return `permission denied connecting to ${socket}; run as root or as a member of its group`;
      if (/ENOENT/.test(d)) return `is virt-handler running? socket ${socket} not found`;
      return `virt-handler unavailable: ${d}`;
    case grpc.status.NOT_FOUND:
      return ctx.subject ? `${ctx.subject} not found` : `not found: ${d}`;
    case grpc.status.UNIMPLEMENTED:
      return `virt-handler at ${socket} does not serve this API (VMI support off, or an older daemon): ${d}`;
    case grpc.status.INVALID_ARGUMENT:
      return `invalid request${what ? ` (${what})` : ''}: ${d}`;
    case grpc.status.FAILED_PRECONDITION:
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.OUT_OF_RANGE:
      return `${what ? `cannot ${what}: ` : ''}${d} (${grpc.status[err.code]})`;
    default:
      return `${grpc.status[err.code] ?? err.code}: ${d}`;
  }
}

type UnaryFn<T> = (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: T) => void) => void;

export function unary<T>(client: grpc.Client, method: string, req: object, timeoutMs: number): Promise<T> {
  const fn = (client as unknown as Record<string, UnaryFn<T>>)[method]!;
  return new Promise((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

export type ClientName = 'NodeClient' | 'HealthClient' | 'VmiClient' | 'ImageClient' | 'DataVolumeClient';

export function newClient(socket: string, which: ClientName): grpc.Client {
  const Ctor = loadProtos()[which];
  return new Ctor(`unix:${socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_SEND_BYTES,
    'grpc.max_send_message_length': MAX_SEND_BYTES,
  });
}

/**
 * Runs `use` with a client, closing it afterwards; a failed call becomes a CliError phrased by
 * `describe` when given (it may return null to fall back), else by describeCallError.
 */
export async function withClient<T>(
  opts: CommonOptions,
  which: ClientName,
  use: (c: grpc.Client) => Promise<T>,
  ctx: Omit<CallContext, 'socket' | 'timeoutMs'> = {},
  describe?: (e: grpc.ServiceError) => string | null,
): Promise<T> {
  const client = newClient(opts.socket, which);
  try {
    return await use(client);
  } catch (e) {
    if (isServiceError(e)) throw new CliError(describe?.(e) ?? describeCallError(e, { socket: opts.socket, timeoutMs: opts.timeoutMs, ...ctx }));
    throw e;
  } finally {
    client.close();
  }
}

/** Control characters (terminal escapes from daemon-supplied text) shown as '?' in tables. */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

export function table(rows: string[][]): string[] {
  const safe = rows.map((r) => r.map(printable));
  const widths = safe[0]!.map((_, i) => Math.max(...safe.map((r) => (r[i] ?? '').length)));
  return safe.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}
