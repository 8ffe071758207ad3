#!/usr/bin/env node
/**
 * vhctl: the operator's view of a running virt-handler over its gRPC unix socket.
 * Exit codes: 0 ok (health: SERVING), 1 error (unreachable, not serving, RPC failure), 2 usage.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { defaultValues, detectProfile, processContext } from '../config/defaults';
import type { DeviceInfo, NodeInfo } from '../node/types';
import { nodeInfoFromWire } from '../grpc/node-service';
import { loadProtos } from '../grpc/proto';
import { MAX_SEND_BYTES } from '../grpc/server';

/** Process exit codes. */
export const EXIT = { OK: 0, ERROR: 1, USAGE: 2 } as const;

/** The file name the daemon gives its gRPC socket inside runDir (config: grpc.socket = <runDir>/grpc.sock). */
const GRPC_SOCKET_NAME = 'grpc.sock';
const DEFAULT_TIMEOUT_MS = 5000;

export const HELP = `Usage: vhctl <command> [options]

Commands:
  node      node facts: schedulability, KVM, CPU, memory, hugepages, THP, devices, labels
  health    grpc.health.v1 Check of the whole server; exit 0 only when SERVING

Options:
  -o, --output table|json   output format (default: table)
      --socket PATH         gRPC socket (default: $VH_GRPC_SOCKET, else $VH_RUN_DIR/grpc.sock,
                            else /run/virt-handler/grpc.sock if it exists, else the daemon's
                            default for this user: <dev runDir>/grpc.sock when not root)
      --timeout DURATION    per-call deadline: 5, 5s or 500ms (default: 5s)
  -h, --help                show this help

Exit codes: 0 ok, 1 error or not serving, 2 usage error.
`;

/** A usage mistake (exit 2) rather than a runtime failure (exit 1). */
class UsageError extends Error {}
/** A failure already phrased for the operator (exit 1). */
class CliError extends Error {}

interface Options {
  command: 'node' | 'health';
  output: 'table' | 'json';
  socket: string;
  timeoutMs: number;
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

function parseTimeout(raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw);
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : 1000) : NaN;
  if (!(ms > 0 && ms <= 3_600_000)) throw new UsageError(`--timeout: expected a duration like 5, 5s or 500ms (at most 1h), got '${raw}'`);
  return ms;
}

/** Parses argv strictly; returns null when help was asked for. */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Options | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o' },
        socket: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    // parseArgs' own text suggests '--' quoting, which only confuses here.
    const unknown = /Unknown option '([^']+)'/.exec((e as Error).message);
    throw new UsageError(unknown ? `unknown option '${unknown[1]}'` : (e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return null;
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing command (node or health)' : `unexpected argument '${positionals[1]}'`);
  const command = positionals[0];
  if (command !== 'node' && command !== 'health') throw new UsageError(`unknown command '${command}' (expected node or health)`);
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`--output: expected table or json, got '${output}'`);
  if (values.socket === '') throw new UsageError('--socket: empty path');
  return {
    command,
    output,
    socket: path.resolve(values.socket ?? defaultSocket(env)),
    timeoutMs: values.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseTimeout(values.timeout),
  };
}

/** Fails early with a precise message where gRPC would only say "UNAVAILABLE". */
function preflight(socket: string): void {
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

/** Turns a failed call into one operator-readable sentence. */
function describeCallError(err: grpc.ServiceError, socket: string, timeoutMs: number): string {
  const d = err.details ?? '';
  switch (err.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return `deadline exceeded: no answer from virt-handler at ${socket} within ${timeoutMs} ms (raise --timeout?)`;
    case grpc.status.UNAVAILABLE:
      if (/ECONNREFUSED/.test(d)) return `nothing is listening on ${socket} (stale socket: is virt-handler running?)`;
      if (/EACCES|EPERM/.test(d)) return `permission denied connecting to ${socket}; run as root or as a member of its group`;
      if (/ENOENT/.test(d)) return `is virt-handler running? socket ${socket} not found`;
      return `virt-handler unavailable: ${d}`;
    default:
      return `${grpc.status[err.code] ?? err.code}: ${d}`;
  }
}

function unary<T>(client: grpc.Client, method: string, req: object, timeoutMs: number): Promise<T> {
  const fn = (client as unknown as Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: T) => void) => void>)[method]!;
  return new Promise((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

async function withClient<T>(opts: Options, which: 'NodeClient' | 'HealthClient', use: (c: grpc.Client) => Promise<T>): Promise<T> {
  const Ctor = loadProtos()[which];
  const client = new Ctor(`unix:${opts.socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_SEND_BYTES,
  });
  try {
    return await use(client);
  } catch (e) {
    if (e instanceof Error && 'code' in e && 'details' in e) throw new CliError(describeCallError(e as grpc.ServiceError, opts.socket, opts.timeoutMs));
    throw e;
  } finally {
    client.close();
  }
}

const GiB = 1024 ** 3;
/** 1.5 GiB / 2 MiB / 512 B: the unit an operator expects for each magnitude. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['TiB', 1024 * GiB], ['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size) return `${Number.isInteger(n / size) ? n / size : (n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

function deviceRow(d: DeviceInfo): string[] {
  const owner = d.uid === null ? '-' : `${d.uid}:${d.gid ?? '-'}`;
  return [d.path, d.present ? 'yes' : 'no', d.kind || '-', d.mode || '-', owner, d.accessible ? 'rw' : 'no'];
}

/** The `vhctl node` table: key facts first, then devices, then labels. */
export function renderNodeTable(n: NodeInfo): string {
  const c = n.cpu;
  const k = n.kvm;
  const kvm = k.available
    ? `available, API version ${k.apiVersion ?? '?'}` + (k.capabilities.NR_VCPUS !== undefined ? `, ${k.capabilities.NR_VCPUS} vCPUs recommended max` : '')
    : `unavailable: ${k.reason ?? 'unknown reason'}${k.errorCode ? ` (${k.errorCode})` : ''}`;
  const ident = [c.family, c.model, c.stepping].every((v) => v !== null) ? ` (family ${c.family} model ${c.model} stepping ${c.stepping})` : '';
  const hp = n.hugepages.length ? n.hugepages.map((h) => `${formatBytes(h.sizeBytes)}: ${h.free}/${h.total} free`).join('; ') : 'none';
  const facts: string[][] = [
    ['NODE', n.nodeName],
    ['SCHEDULABLE', n.schedulable ? 'yes' : 'no'],
    ...n.reasons.map((r) => ['', `- ${r}`]),
    ...n.warnings.map((w, i) => [i === 0 ? 'WARNINGS' : '', `- ${w}`]),
    ['KVM', kvm],
    ['CPU', `${c.vendor} ${c.modelName}${ident}`],
    ['TOPOLOGY', `${c.sockets} socket(s) x ${c.coresPerSocket} core(s) x ${c.threadsPerCore} thread(s) = ${c.logicalCpus} logical CPUs; ${n.numa.length} NUMA node(s)`],
    ['MEMORY', `${formatBytes(n.memory.totalBytes)} total, ${formatBytes(n.memory.availableBytes)} available`],
    ['HUGEPAGES', hp],
    ['THP', `enabled=${n.thp.enabled || '-'} defrag=${n.thp.defrag || '-'}`],
    ['KERNEL', n.kernel.release],
    ['PROBED', `${n.probedAt} (${Math.round(n.probeDurationMs * 10) / 10} ms)`],
  ];
  const d = n.devices;
  const devices = [['DEVICE', 'PRESENT', 'KIND', 'MODE', 'OWNER', 'ACCESS'], ...[d.kvm, d.tun, d.vhostNet, d.vhostVsock, d.userfaultfd].map(deviceRow)];
  const labels = Object.keys(n.labels).sort().map((key) => `  ${key}=${n.labels[key]}`);
  return [...table(facts), '', ...table(devices), '', `LABELS (${labels.length})`, ...labels, ''].join('\n');
}

async function cmdNode(opts: Options): Promise<number> {
  preflight(opts.socket);
  const res = await withClient(opts, 'NodeClient', (c) => unary<{ node: unknown }>(c, 'GetNodeInfo', {}, opts.timeoutMs));
  const info = nodeInfoFromWire(res.node);
  process.stdout.write(opts.output === 'json' ? JSON.stringify(info, null, 2) + '\n' : renderNodeTable(info));
  return EXIT.OK;
}

async function cmdHealth(opts: Options): Promise<number> {
  let status: string;
  let error: string | undefined;
  try {
    preflight(opts.socket);
    const res = await withClient(opts, 'HealthClient', (c) => unary<{ status: string }>(c, 'Check', { service: '' }, opts.timeoutMs));
    status = res.status;
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    status = 'unreachable';
    error = e.message;
  }
  if (opts.output === 'json') process.stdout.write(JSON.stringify({ status, socket: opts.socket, ...(error ? { error } : {}) }) + '\n');
  else process.stdout.write(status + '\n');
  if (error) process.stderr.write(`vhctl: ${error}\n`);
  return status === 'SERVING' ? EXIT.OK : EXIT.ERROR;
}

/** Runs one invocation and returns its exit code; never throws. */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    const opts = parseCli(argv);
    if (!opts) {
      process.stdout.write(HELP);
      return EXIT.OK;
    }
    return await (opts.command === 'node' ? cmdNode(opts) : cmdHealth(opts));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`vhctl: ${e.message}\nRun 'vhctl --help' for usage.\n`);
      return EXIT.USAGE;
    }
    process.stderr.write(`vhctl: ${e instanceof CliError ? e.message : (e as Error)?.stack ?? String(e)}\n`);
    return EXIT.ERROR;
  }
}

if (require.main === module) {
  // exitCode, not exit(): lets stdout drain when it is a pipe; the client is closed, so nothing lingers.
  void run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
