/**
 * Shared by the crash-point and fuzz suites: the real daemon bundle as a process with VMIs on
 * libvirt's in-process test driver (each launcher holds its own test:///default, so the "VM"
 * lives inside the launcher process), a gRPC VmiService client, and process bookkeeping so a
 * suite can kill every daemon and launcher it caused (launchers outlive the daemon by design).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';

export const REPO = path.resolve(__dirname, '../../..');
const MAIN = path.join(REPO, 'dist/virt-handler.cjs');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Daemon {
  child: ChildProcess;
  root: string;
  stateDir: string;
  runDir: string;
  out: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A fresh directory with the empty kernel/initrd the test manifests name. */
export function makeRoot(prefix: string): string {
  // Short: the run dir holds unix sockets (108-byte sun_path).
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(path.join(root, 'img/tiny'), { recursive: true });
  fs.writeFileSync(path.join(root, 'img/tiny/vmlinux'), '');
  fs.writeFileSync(path.join(root, 'img/tiny/initrd.gz'), '');
  return root;
}

/** Every process this module started, so after() can kill what is left. */
const started = new Set<ChildProcess>();

export function startDaemon(root: string, env: Record<string, string> = {}, stateDir = path.join(root, 'state')): Daemon {
  const runDir = path.join(root, 'run');
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'NOTIFY_SOCKET'));
  const args = [MAIN, '--state-dir', stateDir, '--run-dir', runDir, '--http-tcp=off', '--libvirt-uri', 'test:///default', '--vmi-image-root', path.join(root, 'img'), '--log-level', 'info'];
  const child = spawn(process.execPath, args, { env: { ...clean, NODE_NAME: 'it-node', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-2_000_000)));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-2_000_000)));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, root, stateDir, runDir, out: () => out, exit };
}

export function httpGet(sock: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const r = http.get({ socketPath: sock, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', (e) => resolve({ status: 0, body: String(e) }));
  });
}

export async function waitReady(d: Daemon, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (d.child.exitCode !== null || d.child.signalCode !== null) break;
    if ((await httpGet(path.join(d.runDir, 'http.sock'), '/readyz')).status === 200) return;
    await sleep(50);
  }
  throw new Error(`daemon not ready\n${d.out().slice(-4000)}`);
}

export type Client = grpc.Client & Record<string, unknown>;

export function vmiClient(d: Daemon): Client {
  const { VmiClient } = loadProtos();
  return new VmiClient(`unix:${path.join(d.runDir, 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
}

export function call<T>(c: Client, method: string, req: unknown, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(
      c, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, v) => (e ? reject(e) : resolve(v)),
    );
  });
}

export interface VmiOut {
  uid: string;
  namespace: string;
  name: string;
  deleting: boolean;
  status: { phase: string; reason: string; launcherPid: number };
}

export function manifest(name: string, namespace = 'crash'): Record<string, unknown> {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name, namespace },
    spec: {
      runStrategy: 'Always',
      terminationGracePeriodSeconds: 2,
      domain: { memory: { guest: '64Mi' }, firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz' } }, devices: { autoattachSerialConsole: true } },
    },
  };
}

/** Polls until `fn` returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

/** Pids (not this process) whose command line contains `needle`. */
export function pidsWithCmdline(needle: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc')) {
    const pid = Number(n);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const st = fs.readFileSync(`/proc/${n}/stat`, 'utf8');
      if (st.slice(st.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(needle)) out.push(pid);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Uids that have a record.json under the state dir. */
export function recordUids(stateDir: string): string[] {
  const root = path.join(stateDir, 'vmis');
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).filter((u) => fs.existsSync(path.join(root, u, 'record.json')));
}

/**
 * Kills every daemon this module started and every launcher whose command line names `root`
 * (its --handler-socket and --vmi-dir are under it): by pid, all of them ours.
 */
export async function killEverything(root: string): Promise<void> {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const pid of pidsWithCmdline(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await sleep(100);
}

/** RSS (kB) and open fd count of a process. */
export function procFigures(pid: number): { rssKb: number; fds: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { rssKb, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}
