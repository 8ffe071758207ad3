/**
 * `npm run bench:scale` (issue 6 part 7): N VMIs (default 200) created at once through gRPC,
 * each run by its own launcher on libvirt's in-process test driver (test:///default, so the
 * "VM" lives inside the launcher and costs no QEMU), then all deleted; R rounds (default 5).
 *
 * Prints SyncVMI -> Running p50/p95 for the burst and for a paced run (one VMI at a time, so the
 * handler's own latency shows apart from CPU saturation), reconcile throughput, handler RSS and
 * V8 heap before / at peak / after delete, and after every round the handler's fds, child
 * processes, surviving launchers, sockets under the run dir and records. Launchers: CPU used up
 * to the moment their VMI is seen Running, and at Running (all N alive) VmRSS with its RssAnon /
 * RssFile split and Pss / Private from smaps_rollup: RssFile is mostly the node binary's pages,
 * shared by every node process, so Pss is what N launchers really cost.
 * Same-run floors: N bare `node -e 0` and N `virt-launcher --help` spawned at once (latency and
 * CPU), and N idle bare node processes alive at once (the same memory figures), so each launcher
 * figure can be read against what merely running node costs on this machine in the same run.
 * The handler's V8 heap after a full GC is read at ready and at the end through a bench-only
 * preload (`--expose-gc -r <tmp>/gc-hook.js`: SIGUSR2 -> gc() -> heap figures to a file).
 *
 * Targets are printed as PASS/MISS; the exit code is non-zero only when something broke (a VMI
 * never reached Running, a leak of fds/processes/sockets/records). Flags (or env):
 *   --count N   (VHDEV_BENCH_COUNT, 200)   VMIs per burst
 *   --rounds R  (VHDEV_BENCH_ROUNDS, 20)   create/delete rounds (the RSS-bounded target needs 20)
 *   --paced P   (VHDEV_BENCH_PACED, 20)    VMIs in the one-at-a-time run (0 = skip)
 *   --no-baseline                        skip the node -e 0 / --help floor
 *   --keep                               keep the temp dir (launcher logs, records) for a post-mortem
 *   --handler-prof DIR                   run the handler with --cpu-prof into DIR
 *   --dist DIR  (VHDEV_BENCH_DIST)          run another build's daemon and launcher (A/B in one session)
 * Needs a built dist/ and libvirt0 (the test driver needs no libvirtd).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';

const REPO = path.resolve(__dirname, '../../..');
const DIST = (() => {
  const i = process.argv.indexOf('--dist');
  return path.resolve(i >= 0 ? (process.argv[i + 1] ?? '') : process.env.VHDEV_BENCH_DIST || path.join(REPO, 'dist'));
})();
const DAEMON = path.join(DIST, 'virt-handler.cjs');
const LAUNCHER = path.join(DIST, 'virt-launcher.cjs');
const NS = 'scale';
const TICK_MS = 1000 / 100; // USER_HZ is 100 on every Linux we run on

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
interface VmiMsg {
  uid: string;
  name: string;
  deleting: boolean;
  status?: { phase: string; reason: string; launcherPid: number; conditions?: Array<{ type: string; status: string; lastTransitionTime: string }> };
}

function flag(name: string, env: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[env];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${raw}`);
  return n;
}

const COUNT = Math.max(1, flag('count', 'VHDEV_BENCH_COUNT', 200));
const ROUNDS = Math.max(1, flag('rounds', 'VHDEV_BENCH_ROUNDS', 20));
/** The handler-RSS-bounded target is judged over this many rounds. */
const RSS_ROUNDS = 20;
const PACED = flag('paced', 'VHDEV_BENCH_PACED', Math.min(20, COUNT));
const BASELINE = !process.argv.includes('--no-baseline');
const KEEP = process.argv.includes('--keep');
const PROF_DIR = process.argv.includes('--handler-prof') ? process.argv[process.argv.indexOf('--handler-prof') + 1] : undefined;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}
const median = (xs: number[]): number => pct(xs, 50);
const ms = (v: number): string => (Number.isFinite(v) ? `${Math.round(v)} ms` : '-');
const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

// --- /proc readers --------------------------------------------------------------------------

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** A process's memory in kB: VmRSS = RssAnon + RssFile (+ RssShmem), and Pss / Private from smaps_rollup. */
interface Mem {
  rss: number;
  anon: number;
  file: number;
  pss: number;
  priv: number;
}

function memOf(pid: number): Mem | null {
  const kb = (text: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  try {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const sm = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = { rss: kb(st, 'VmRSS'), anon: kb(st, 'RssAnon'), file: kb(st, 'RssFile'), pss: kb(sm, 'Pss'), priv: kb(sm, 'Private_Clean') + kb(sm, 'Private_Dirty') };
    return Object.values(m).every(Number.isFinite) ? m : null;
  } catch {
    return null;
  }
}

/** Medians of each figure. */
function medianMem(ms: Mem[]): Mem {
  return { rss: median(ms.map((m) => m.rss)), anon: median(ms.map((m) => m.anon)), file: median(ms.map((m) => m.file)), pss: median(ms.map((m) => m.pss)), priv: median(ms.map((m) => m.priv)) };
}

const memLine = (m: Mem): string => `RSS ${mb(m.rss)} (RssAnon ${mb(m.anon)}, RssFile ${mb(m.file)}); Pss ${mb(m.pss)}, Private ${mb(m.priv)}`;

/** [ppid, utime+stime ms, state] from /proc/<pid>/stat, or null when gone. */
function stat(pid: number): { ppid: number; cpuMs: number; state: string } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0] as string, ppid: Number(f[1]), cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
  } catch {
    return null;
  }
}

/**
 * CPU time (ms) of all of `pid`'s threads, exact: se.sum_exec_runtime from /proc/<pid>/task/<tid>/sched
 * (what getrusage reports); the 10 ms ticks of /proc/<pid>/stat when that file is missing (a
 * kernel without CONFIG_SCHED_DEBUG). NaN when the process is gone.
 */
function cpuMs(pid: number): number {
  try {
    let sum = 0;
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      const m = /^se\.sum_exec_runtime\s+:\s+([0-9.]+)/m.exec(fs.readFileSync(`/proc/${pid}/task/${t}/sched`, 'utf8'));
      if (!m) return stat(pid)?.cpuMs ?? NaN;
      sum += Number(m[1]);
    }
    return sum;
  } catch {
    return stat(pid)?.cpuMs ?? NaN;
  }
}

const alive = (pid: number): boolean => {
  const s = stat(pid);
  return s !== null && s.state !== 'Z';
};

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(Number(d));
    if (s && s.ppid === pid) out.push(Number(d));
  }
  return out;
}

function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

function socketsUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of names) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isSocket()) out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** VMI record directories (uids) under `dir`; state/vmis/revision is the store's counter, not a record. */
function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

// --- HTTP / gRPC ----------------------------------------------------------------------------

function httpGet(socketPath: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

/** Where the handler's memory is (MB), from its prom-client default metrics: V8 heap committed, new space, external. */
async function memoryBreakdown(socketPath: string): Promise<string> {
  const { body } = await httpGet(socketPath, '/metrics');
  const get = (re: string): number => Number(new RegExp(`^${re} ([0-9.e+-]+)$`, 'm').exec(body)?.[1] ?? NaN) / 1024 / 1024;
  return `V8 heap committed ${get('nodejs_heap_size_total_bytes').toFixed(1)} MB (new space ${get('nodejs_heap_space_size_total_bytes\\{space="new"\\}').toFixed(1)} MB), external ${get('nodejs_external_memory_bytes').toFixed(1)} MB`;
}

/** V8 heap used/total (bytes) from the daemon's own prom-client default metrics. */
async function heap(socketPath: string): Promise<{ used: number; total: number; external: number }> {
  const { body } = await httpGet(socketPath, '/metrics');
  const get = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(body);
    return m ? Number(m[1]) : NaN;
  };
  return { used: get('nodejs_heap_size_used_bytes'), total: get('nodejs_heap_size_total_bytes'), external: get('nodejs_external_memory_bytes') };
}

function call<T>(c: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, o: grpc.CallOptions, cb: (e: Error | null, v: T) => void) => void).call(c, req, { deadline: Date.now() + 120_000 }, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

function manifest(name: string): string {
  return JSON.stringify({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name, namespace: NS },
    spec: {
      runStrategy: 'Always',
      terminationGracePeriodSeconds: 0,
      domain: { memory: { guest: '64Mi' }, firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz' } }, devices: { autoattachSerialConsole: true } },
    },
  });
}

/** Running/Failed times and launcher pids from one WatchVMIs stream (no polling load). */
class Watcher {
  readonly running = new Map<string, number>();
  /** The launcher's CPU (ms) when its VMI was first seen Running. */
  readonly cpuAtRunning = new Map<string, number>();
  /** When the handler made the VMI Ready (its condition's lastTransitionTime, epoch ms): apart from watch delivery. */
  readonly readyAt = new Map<string, number>();
  readonly failed = new Map<string, string>();
  readonly pids = new Map<string, number>();
  readonly gone = new Set<string>();
  private stream: grpc.ClientReadableStream<{ type: string; vmi: VmiMsg }> | null = null;

  start(c: Client): void {
    const s = (c.WatchVMIs as (r: unknown) => grpc.ClientReadableStream<{ type: string; vmi: VmiMsg }>).call(c, { sinceRevision: 0, namespace: NS });
    s.on('data', (ev: { type: string; vmi: VmiMsg }) => {
      const v = ev.vmi;
      if (ev.type === 'DELETED') {
        this.gone.add(v.name);
        return;
      }
      if (v.status?.launcherPid) this.pids.set(v.name, v.status.launcherPid);
      if (v.status?.phase === 'Running' && !this.running.has(v.name)) {
        this.running.set(v.name, performance.now());
        const ready = v.status.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
        if (ready) this.readyAt.set(v.name, Date.parse(ready.lastTransitionTime));
        const cpu = v.status.launcherPid ? cpuMs(v.status.launcherPid) : NaN;
        if (Number.isFinite(cpu)) this.cpuAtRunning.set(v.name, cpu);
      }
      if (v.status?.phase === 'Failed') this.failed.set(v.name, v.status.reason);
    });
    s.on('error', () => undefined);
    this.stream = s;
  }

  reset(): void {
    this.running.clear();
    this.cpuAtRunning.clear();
    this.readyAt.clear();
    this.failed.clear();
    this.pids.clear();
    this.gone.clear();
  }

  stop(): void {
    this.stream?.cancel();
  }
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

// --- the floor: N node processes at once ----------------------------------------------------

const started = new Set<ChildProcess>();

/** Spawns `n` copies of `argv` at once; per-process spawn -> exit latency, total wall and CPU. */
async function burst(n: number, argv: string[]): Promise<{ lat: number[]; wallMs: number; cpuMs: number }> {
  const t0 = performance.now();
  const r0 = fs.readFileSync('/proc/self/stat', 'utf8'); // children's cutime/cstime after wait()
  const lat = await Promise.all(
    Array.from({ length: n }, () => {
      const s = performance.now();
      const c = spawn(process.execPath, argv, { stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      started.add(c);
      return new Promise<number>((resolve) =>
        c.once('exit', () => {
          started.delete(c);
          resolve(performance.now() - s);
        }),
      );
    }),
  );
  const childCpu = (st: string): number => {
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) * TICK_MS;
  };
  return { lat, wallMs: performance.now() - t0, cpuMs: childCpu(fs.readFileSync('/proc/self/stat', 'utf8')) - childCpu(r0) };
}

/** `n` idle bare node processes alive at once (as N launchers are at Running): their memory, then they are killed. */
async function idleNodes(n: number): Promise<Mem[]> {
  const kids = Array.from({ length: n }, () => {
    const c = spawn(process.execPath, ['-e', "process.stdout.write('r'); setInterval(() => {}, 1 << 30)"], { stdio: ['ignore', 'pipe', 'ignore'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    started.add(c);
    return c;
  });
  try {
    await Promise.all(kids.map((c) => new Promise((resolve) => c.stdout!.once('data', resolve).once('close', resolve))));
    await sleep(500);
    return kids.map((c) => memOf(c.pid as number)).filter((m): m is Mem => m !== null);
  } finally {
    for (const c of kids) {
      c.kill('SIGKILL');
      started.delete(c);
    }
  }
}

/**
 * The bench's hook into the handler: preloaded with --expose-gc, SIGUSR2 runs two full GCs and
 * writes the heap figures to `<file>` (the handler has no debug route for it, and a heap snapshot
 * would cost it tens of MB of RSS).
 */
function gcHookSource(file: string): string {
  return `'use strict';
const fs = require('fs');
const v8 = require('v8');
process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  const h = v8.getHeapStatistics();
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name.replace(/_space$/, ''), s.space_used_size]));
  fs.writeFileSync(${JSON.stringify(file)} + '.tmp', JSON.stringify({ used: h.used_heap_size, total: h.total_heap_size, external: m.external, rss: m.rss, spaces }));
  fs.renameSync(${JSON.stringify(file)} + '.tmp', ${JSON.stringify(file)});
});
`;
}

// --- the bench -----------------------------------------------------------------------------

interface Leaks {
  fds: number;
  children: number;
  launchersAlive: number;
  sockets: string[];
  records: string[];
}

interface Round {
  createLat: number[];
  /** SyncVMI -> the handler's Ready time (the same clock), which the watch may deliver later. */
  readyLat: number[];
  allRunningMs: number;
  deleteMs: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  launcherMem: Mem[];
  /** CPU used by each launcher up to its VMI's Running. */
  launcherCpu: number[];
  reconciles: number;
  handlerCpuMs: number;
  leaks: Leaks;
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-bench-scale-'));
  const run = path.join(tmp, 'run');
  const state = path.join(tmp, 'state');
  const httpSock = path.join(run, 'http.sock');
  let daemon: ChildProcess | null = null;
  let client: Client | null = null;
  const watcher = new Watcher();
  const everyLauncher = new Set<number>();
  let broken: string[] = [];
  const onSignal = (): void => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  async function cleanup(): Promise<void> {
    watcher.stop();
    client?.close();
    for (const c of started) c.kill('SIGKILL');
    // Launchers whose pid no watch event carried yet are still the handler's children.
    if (daemon?.pid && daemon.exitCode === null) for (const c of childrenOf(daemon.pid)) everyLauncher.add(c);
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await Promise.race([new Promise((r) => daemon?.once('exit', r)), sleep(15_000)]);
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
    // Launchers run detached (own session): a SIGTERMed handler leaves them on purpose.
    for (const pid of everyLauncher) {
      if (alive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    if (KEEP) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }

  try {
    console.log(`bench:scale - ${COUNT} VMIs x ${ROUNDS} rounds on libvirt test:///default (node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);

    // Floor first, on a quiet machine.
    // The `node -e 0` floor moves with whatever else this shared machine runs: it is measured
    // before the rounds, after the middle one and after the last, and the median is the floor.
    type Burst = Awaited<ReturnType<typeof burst>>;
    let floor: { bare: Burst[]; help: Burst; idle: Mem } | null = null;
    if (BASELINE) {
      const bare = await burst(COUNT, ['-e', '0']);
      const help = await burst(COUNT, [LAUNCHER, '--help']);
      const idle = medianMem(await idleNodes(COUNT));
      floor = { bare: [bare], help, idle };
    }

    const images = path.join(tmp, 'images', 'tiny');
    fs.mkdirSync(images, { recursive: true });
    fs.writeFileSync(path.join(images, 'vmlinux'), ''); // the test driver never reads them
    fs.writeFileSync(path.join(images, 'initrd.gz'), '');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'NODE_OPTIONS'));
    let daemonErr = '';
    const gcFile = path.join(tmp, 'gc.json');
    fs.writeFileSync(path.join(tmp, 'gc-hook.js'), gcHookSource(gcFile));
    daemon = spawn(
      process.execPath,
      // heapUsed without a GC includes garbage: the hook reads the heap the handler really retains.
      ['--expose-gc', '-r', path.join(tmp, 'gc-hook.js'), ...(PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`] : []), DAEMON, '--state-dir', state, '--run-dir', run, '--http-tcp=off', '--libvirt-uri', 'test:///default', '--vmi-image-root', path.join(tmp, 'images'), '--log-level', 'warn', '--vmi-max-vmis', String(Math.max(256, COUNT))],
      { env: { ...env, NODE_NAME: 'bench' }, stdio: ['ignore', 'ignore', 'pipe'], cwd: tmp },
    );
    const daemonLog = fs.createWriteStream(path.join(tmp, 'daemon.log'));
    daemon.stderr!.on('data', (d: Buffer) => {
      daemonErr = (daemonErr + d.toString()).slice(-4000);
      daemonLog.write(d);
    });
    const pid = daemon.pid as number;
    await until(async () => {
      if (daemon?.exitCode !== null) throw new Error(`daemon exited ${daemon?.exitCode}: ${daemonErr}`);
      const r = await httpGet(httpSock, '/v1/node');
      return r.status === 200 && r.body.includes('"state":"connected"');
    }, 60_000, 'daemon ready with libvirt', 100);
    await sleep(500);
    const rssReady = rssKb(pid);
    const heapReady = await heap(httpSock);
    const memReady = await memoryBreakdown(httpSock);

    /** The handler's heap after two full GCs (the hook above). */
    type GcFigures = { used: number; total: number; rss: number; spaces: Record<string, number> };
    const heapAfterGc = async (): Promise<GcFigures> => {
      fs.rmSync(gcFile, { force: true });
      daemon!.kill('SIGUSR2');
      await until(() => fs.existsSync(gcFile), 30_000, 'the GC hook', 20);
      return JSON.parse(fs.readFileSync(gcFile, 'utf8')) as GcFigures;
    };
    const gcReady = await heapAfterGc();

    client = new (loadProtos().VmiClient)(`unix:${path.join(run, 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
    watcher.start(client);
    await sleep(200);

    const deleteAll = async (names: string[]): Promise<number> => {
      const t0 = performance.now();
      await Promise.all(names.map((name) => call(client!, 'DeleteVMI', { namespace: NS, name })));
      await until(async () => (await call<{ vmis: unknown[] }>(client!, 'ListVMIs', { namespace: NS })).vmis.length === 0, 300_000, 'every VMI deleted', 100);
      return performance.now() - t0;
    };
    const waitLaunchersGone = async (pids: number[]): Promise<void> => {
      await until(() => pids.every((p) => !alive(p)), 30_000, 'launchers to exit', 100).catch(() => undefined);
    };

    // Paced: one VMI at a time, so the latency is the handler's own path, not CPU saturation.
    const paced: number[] = [];
    const pacedCpu: number[] = [];
    const pacedMem: Mem[] = [];
    if (PACED > 0) {
      watcher.reset();
      for (let i = 0; i < PACED; i++) {
        const name = `paced-${i}`;
        const t0 = performance.now();
        await call(client, 'SyncVMI', { manifest: manifest(name) });
        await until(() => watcher.running.has(name) || watcher.failed.has(name), 60_000, `${name} Running`, 5);
        if (watcher.failed.has(name)) throw new Error(`${name} failed: ${watcher.failed.get(name)}`);
        paced.push((watcher.running.get(name) as number) - t0);
        const cpu = watcher.cpuAtRunning.get(name);
        if (cpu !== undefined) pacedCpu.push(cpu);
        const lp = watcher.pids.get(name);
        if (lp) {
          everyLauncher.add(lp);
          const m = memOf(lp);
          if (m) pacedMem.push(m);
        }
      }
      await deleteAll(Array.from({ length: PACED }, (_, i) => `paced-${i}`));
      await waitLaunchersGone([...everyLauncher]);
      await sleep(1000);
    }

    // After the paced VMIs: the handler has run every VMI code path once (compiled it, filled its caches).
    const gcWarm = await heapAfterGc();
    const base: Leaks = { fds: fdCount(pid), children: childrenOf(pid).length, launchersAlive: 0, sockets: socketsUnder(run), records: entries(path.join(state, 'vmis')) };
    const rounds: Round[] = [];
    let gcRound1: GcFigures | null = null;
    /** ms of CPU per second per idle Running launcher (round 1). */
    let idleCpu: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      watcher.reset();
      const names = Array.from({ length: COUNT }, (_, i) => `vmi-${r}-${i}`);
      const rssBefore = rssKb(pid);
      const heapBefore = (await heap(httpSock)).used;
      const reconcile0 = await metric(httpSock, 'virt_handler_reconcile_total');
      let rssPeak = rssBefore;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          rssPeak = Math.max(rssPeak, rssKb(pid));
          await sleep(100);
        }
      })();

      const cpu0 = cpuMs(pid);
      const t0 = performance.now();
      const sent = new Map<string, number>();
      const sentWall = new Map<string, number>();
      await Promise.all(
        names.map((name) => {
          sent.set(name, performance.now());
          sentWall.set(name, Date.now());
          return call(client!, 'SyncVMI', { manifest: manifest(name) });
        }),
      );
      await until(() => names.every((n) => watcher.running.has(n) || watcher.failed.has(n)), 300_000, `round ${r + 1}: all Running`, 20).catch((e: Error) => {
        broken.push(`${e.message} (${names.filter((n) => !watcher.running.has(n)).length} not Running)`);
      });
      const allRunningMs = performance.now() - t0;
      if (watcher.failed.size > 0) broken.push(`round ${r + 1}: ${watcher.failed.size} VMIs Failed, e.g. ${[...watcher.failed.values()][0]}`);
      const createLat = names.filter((n) => watcher.running.has(n)).map((n) => (watcher.running.get(n) as number) - (sent.get(n) as number));
      const readyLat = names.filter((n) => watcher.readyAt.has(n)).map((n) => (watcher.readyAt.get(n) as number) - (sentWall.get(n) as number));
      const pids = names.map((n) => watcher.pids.get(n)).filter((p): p is number => typeof p === 'number');
      for (const p of pids) everyLauncher.add(p);
      const launcherMem = pids.map(memOf).filter((m): m is Mem => m !== null);
      const launcherCpu = names.map((n) => watcher.cpuAtRunning.get(n)).filter((v): v is number => v !== undefined);
      rssPeak = Math.max(rssPeak, rssKb(pid));
      const reconciles = (await metric(httpSock, 'virt_handler_reconcile_total')) - reconcile0;
      const handlerCpuMs = cpuMs(pid) - cpu0;

      if (KEEP) {
        const logs = path.join(tmp, `launcher-logs-${r + 1}`);
        fs.mkdirSync(logs, { recursive: true });
        for (const uid of entries(path.join(state, 'vmis'))) fs.cpSync(path.join(state, 'vmis', uid, 'launcher.log'), path.join(logs, `${uid}.log`), { force: true, errorOnExist: false });
        const rel = [...watcher.running.values()].map((t) => t - t0).sort((a, b) => a - b);
        console.log(`round ${r + 1}: Running times since the first SyncVMI (deciles): ${[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((p) => ms(pct(rel, p))).join(' ')}`);
      }
      // Once: what N Running launchers cost while idle (heartbeats, libvirt's event loop), over 5 s.
      if (r === 0) {
        const c0 = new Map(pids.map((p) => [p, cpuMs(p)]));
        const t = performance.now();
        await sleep(5000);
        const secs = (performance.now() - t) / 1000;
        idleCpu = pids.map((p) => (cpuMs(p) - (c0.get(p) as number)) / secs).filter(Number.isFinite);
      }
      const deleteMs = await deleteAll(names);
      await waitLaunchersGone(pids);
      sampling = false;
      await sampler;
      await sleep(2000); // let the handler settle (reaped children, closed streams, timers)
      const leaks: Leaks = {
        fds: fdCount(pid),
        children: childrenOf(pid).length,
        launchersAlive: pids.filter(alive).length,
        sockets: socketsUnder(run),
        records: entries(path.join(state, 'vmis')),
      };
      if (floor && ROUNDS >= 3 && r === Math.floor(ROUNDS / 2) - 1) floor.bare.push(await burst(COUNT, ['-e', '0']));
      const round: Round = { createLat, readyLat, allRunningMs, deleteMs, rssBefore, rssPeak, rssAfter: rssKb(pid), heapBefore, heapAfter: (await heap(httpSock)).used, launcherMem, launcherCpu, reconciles, handlerCpuMs, leaks };
      rounds.push(round);
      // After round 1 (its RSS already read): the watch history is full and the burst paths are
      // compiled, so round 1 -> end is what the rounds themselves retain.
      if (r === 0) gcRound1 = await heapAfterGc();
      console.log(
        `round ${r + 1}: Running p50 ${ms(median(createLat))} p95 ${ms(pct(createLat, 95))} all ${ms(allRunningMs)} (handler CPU ${ms(handlerCpuMs)}); deleted in ${ms(deleteMs)}; ` +
          `RSS ${mb(rssBefore)} -> peak ${mb(rssPeak)} -> ${mb(round.rssAfter)}; heap ${mb(heapBefore / 1024)} -> ${mb(round.heapAfter / 1024)}; ` +
          `fds ${leaks.fds} children ${leaks.children} launchers alive ${leaks.launchersAlive} sockets ${leaks.sockets.length} records ${leaks.records.length}`,
      );
    }

    if (floor) floor.bare.push(await burst(COUNT, ['-e', '0']));

    // --- report ---------------------------------------------------------------------------
    const allLat = rounds.flatMap((r) => r.createLat);
    /** The `node -e 0` floor: median over its runs of the burst p95, and of the CPU per process. */
    const bareP95 = floor ? median(floor.bare.map((b) => pct(b.lat, 95))) : NaN;
    const bareCpu = floor ? median(floor.bare.map((b) => b.cpuMs / COUNT)) : NaN;
    const r1 = rounds[0] as Round;
    const lMem = medianMem(rounds.flatMap((r) => r.launcherMem));
    const lRss = rounds.flatMap((r) => r.launcherMem.map((m) => m.rss));
    const lCpu = rounds.flatMap((r) => r.launcherCpu);
    const line = (k: string, v: string): void => console.log(`${k.padEnd(44)} ${v}`);
    console.log('');
    console.log(`daemon and launcher from ${DIST}`);
    if (floor) {
      const { help, idle } = floor;
      for (const [i, bare] of floor.bare.entries()) {
        const when = i === 0 ? 'before' : i === floor.bare.length - 1 ? 'after' : 'mid-run';
        line(`floor: ${COUNT} x \`node -e 0\` at once, ${when}`, `exit p50 ${ms(median(bare.lat))} p95 ${ms(pct(bare.lat, 95))}; all in ${ms(bare.wallMs)}; CPU ${ms(bare.cpuMs)} (${ms(bare.cpuMs / COUNT)} each)`);
      }
      line(`floor: ${COUNT} x \`virt-launcher --help\``, `exit p50 ${ms(median(help.lat))} p95 ${ms(pct(help.lat, 95))}; all in ${ms(help.wallMs)}; CPU ${ms(help.cpuMs)} (${ms(help.cpuMs / COUNT)} each)`);
      line(`floor: ${COUNT} idle bare node alive at once`, `median ${memLine(idle)}`);
    }
    if (paced.length) {
      line(`paced (1 at a time, ${paced.length} VMIs) -> Running`, `p50 ${ms(median(paced))} p95 ${ms(pct(paced, 95))}; launcher CPU to Running median ${median(pacedCpu).toFixed(1)} ms`);
      if (pacedMem.length) line('  paced launcher at Running (1 alive)', `median ${memLine(medianMem(pacedMem))}`);
    }
    const readyLat = rounds.flatMap((r) => r.readyLat);
    line(`burst (${COUNT} at once, ${rounds.length} rounds) -> Running`, `p50 ${ms(median(allLat))} p95 ${ms(pct(allLat, 95))}; max ${ms(pct(allLat, 100))} (as the watch delivered it)`);
    line('  -> Ready per the handler (condition time)', `p50 ${ms(median(readyLat))} p95 ${ms(pct(readyLat, 95))}; max ${ms(pct(readyLat, 100))} (the gap to the line above is watch delivery)`);
    if (floor) {
      line('  burst p95 / `node -e 0` burst p95', `${(pct(allLat, 95) / bareP95).toFixed(2)}x (floor: median of ${floor.bare.length} runs, ${ms(bareP95)})`);
      line('  burst p95 / `launcher --help` burst p95', `${(pct(allLat, 95) / pct(floor.help.lat, 95)).toFixed(2)}x`);
    }
    line('  all Running (median round)', `${ms(median(rounds.map((r) => r.allRunningMs)))} -> ${(COUNT / (median(rounds.map((r) => r.allRunningMs)) / 1000)).toFixed(1)} VMIs/s`);
    line('  reconcile runs per round (median)', `${median(rounds.map((r) => r.reconciles))} -> ${(median(rounds.map((r) => r.reconciles)) / (median(rounds.map((r) => r.allRunningMs)) / 1000)).toFixed(1)} runs/s`);
    line('  handler CPU, first SyncVMI -> all Running', `${ms(median(rounds.map((r) => r.handlerCpuMs)))} (${ms(median(rounds.map((r) => r.handlerCpuMs)) / COUNT)} per VMI)`);
    line('  delete all -> gone (median round)', `${ms(median(rounds.map((r) => r.deleteMs)))}`);
    line(`launcher at Running (${COUNT} alive, all rounds)`, `median ${memLine(lMem)}; RSS min ${mb(pct(lRss, 0))} max ${mb(pct(lRss, 100))} (${lRss.length} samples)`);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    line('launcher CPU to Running (burst, all rounds)', `median ${median(lCpu).toFixed(1)} ms (mean ${mean(lCpu).toFixed(1)} ms), p95 ${ms(pct(lCpu, 95))}; x${COUNT} = ${ms(mean(lCpu) * COUNT)} CPU per burst on ${os.cpus().length} CPUs`);
    if (idleCpu.length) line(`launcher CPU while Running idle (${idleCpu.length} alive)`, `mean ${mean(idleCpu).toFixed(2)} ms/s each = ${((mean(idleCpu) * idleCpu.length) / 1000).toFixed(2)} CPU for all of them (heartbeats, libvirt event loop)`);
    line('handler RSS at ready / before round 1', `${mb(rssReady)} / ${mb(r1.rssBefore)} (V8 heap used ${mb(heapReady.used / 1024)} / ${mb(r1.heapBefore / 1024)})`);
    line('handler RSS peak (max over rounds)', `${mb(Math.max(...rounds.map((r) => r.rssPeak)))}`);
    line('handler RSS after delete, per round', rounds.map((r) => (r.rssAfter / 1024).toFixed(0)).join(' ') + ' MB');
    line('handler V8 heap used after delete, per round', rounds.map((r) => (r.heapAfter / 1024 / 1024).toFixed(0)).join(' ') + ' MB (no forced GC)');
    line('handler memory at ready / after the last round', `${memReady} / ${await memoryBreakdown(httpSock)}`);
    const gcEnd = await heapAfterGc();
    const spaces = (g: GcFigures): string => ['old', 'code', 'large_object'].map((k) => `${k} ${mb((g.spaces[k] ?? 0) / 1024)}`).join(', ');
    line('handler V8 heap after a full GC: ready / warm / round 1 / end', `${mb(gcReady.used / 1024)} / ${mb(gcWarm.used / 1024)} / ${gcRound1 ? mb(gcRound1.used / 1024) : '-'} / ${mb(gcEnd.used / 1024)} (warm: after the paced VMIs; round 1: after the first burst and delete)`);
    line('  by space: ready / warm / end', `${spaces(gcReady)} / ${spaces(gcWarm)} / ${spaces(gcEnd)}; committed ${mb(gcReady.total / 1024)} / ${mb(gcWarm.total / 1024)} / ${mb(gcEnd.total / 1024)}`);
    line('fds / children / sockets / records, per round', rounds.map((r) => `${r.leaks.fds}/${r.leaks.children}/${r.leaks.sockets.length}/${r.leaks.records.length}`).join(', ') + `  (before: ${base.fds}/${base.children}/${base.sockets.length}/${base.records.length})`);

    const growthPerVmi = (Math.max(...rounds.map((r) => r.rssPeak - r.rssBefore)) / COUNT);
    // Bounded: the second half of the rounds never goes above the first half's maximum (+5%), i.e.
    // RSS plateaus instead of climbing; judged over RSS_ROUNDS rounds (fewer: reported, not judged).
    const after = rounds.map((r) => r.rssAfter / 1024);
    const half = Math.floor(after.length / 2);
    const firstMax = Math.max(...after.slice(0, Math.max(1, half)));
    const secondMax = Math.max(...after.slice(half));
    const monotonic = after.length > 2 && after.every((v, i) => i === 0 || v >= (after[i - 1] as number));
    const slope = linearSlope(after.slice(half));
    const bounded = secondMax <= firstMax * 1.05 && !monotonic;
    const gcRatio = gcEnd.used / gcReady.used - 1;
    const cpuTarget = 45;
    const ratio = pct(allLat, 95) / bareP95;
    console.log(`\n${'target'.padEnd(44)} ${'measured'.padEnd(58)} verdict`);
    const verdict = (name: string, measured: string, ok: boolean | null): void => console.log(`${name.padEnd(44)} ${measured.padEnd(58)} ${ok === null ? 'n/a' : ok ? 'PASS' : 'MISS'}`);
    verdict('launcher RSS <= 40 MB', `median ${mb(lMem.rss)} (RssAnon ${mb(lMem.anon)}, Pss ${mb(lMem.pss)})${floor ? `; bare node ${mb(floor.idle.rss)} (${mb(floor.idle.anon)}, ${mb(floor.idle.pss)})` : ''}`, lMem.rss <= 40 * 1024);
    verdict(`launcher CPU to Running <= ${cpuTarget} ms`, `median ${median(lCpu).toFixed(1)} ms (burst)${paced.length ? `, ${median(pacedCpu).toFixed(1)} ms (paced)` : ''}${floor ? `; \`node -e 0\` ${ms(bareCpu)}` : ''}`, median(lCpu) <= cpuTarget);
    verdict('burst p95 <= 2.5x `node -e 0` burst p95', floor ? `${ratio.toFixed(2)}x (${ms(pct(allLat, 95))} vs ${ms(bareP95)})` : 'no floor (--no-baseline)', floor ? ratio <= 2.5 : null);
    if (floor) verdict('  (with the handler\'s Ready time)', `${(pct(readyLat, 95) / bareP95).toFixed(2)}x (${ms(pct(readyLat, 95))} vs ${ms(bareP95)})`, pct(readyLat, 95) / bareP95 <= 2.5);
    verdict('burst SyncVMI -> Running p95 <= 1 s', ms(pct(allLat, 95)), pct(allLat, 95) <= 1000);
    if (paced.length) verdict('paced SyncVMI -> Running p95 <= 1 s', ms(pct(paced, 95)), pct(paced, 95) <= 1000);
    verdict('handler RSS growth <= 1 MB per VMI', `${(growthPerVmi / 1024).toFixed(3)} MB/VMI (peak - before)`, growthPerVmi <= 1024);
    verdict('V8 heap after full GC within 10% of ready', `${(gcRatio * 100).toFixed(1)}% (${mb(gcReady.used / 1024)} -> ${mb(gcEnd.used / 1024)}; vs round 1 ${gcRound1 ? `${((gcEnd.used / gcRound1.used - 1) * 100).toFixed(1)}%` : '-'})`, gcRatio <= 0.1);
    verdict(
      `handler RSS over ${RSS_ROUNDS} rounds bounded`,
      `max ${firstMax.toFixed(0)} MB (rounds 1-${Math.max(1, half)}) vs ${secondMax.toFixed(0)} MB (${half + 1}-${after.length}); ${slope >= 0 ? '+' : ''}${slope.toFixed(2)} MB/round${monotonic ? ', monotonic' : ''}`,
      rounds.length >= RSS_ROUNDS ? bounded : null,
    );

    // Leaks are failures, not misses.
    rounds.forEach((r, i) => {
      const l = r.leaks;
      if (l.fds > base.fds) broken.push(`round ${i + 1}: handler fds ${base.fds} -> ${l.fds}`);
      if (l.children > base.children) broken.push(`round ${i + 1}: ${l.children} child processes left (before: ${base.children})`);
      if (l.launchersAlive > 0) broken.push(`round ${i + 1}: ${l.launchersAlive} launcher processes still alive`);
      if (l.sockets.length > base.sockets.length) broken.push(`round ${i + 1}: sockets left: ${l.sockets.filter((s) => !base.sockets.includes(s)).join(' ')}`);
      if (l.records.length > base.records.length) broken.push(`round ${i + 1}: ${l.records.length - base.records.length} records left under state/vmis`);
    });
    const leakFree = broken.length === 0;
    verdict('zero leaked fds/processes/sockets/records', leakFree ? 'none' : `${broken.length} problems`, leakFree);
    if (broken.length) {
      console.log('\nBROKEN:');
      for (const b of broken) console.log(`  ${b}`);
      process.exitCode = 1;
    }
  } catch (e) {
    broken = [...broken, (e as Error).message];
    console.error(`bench:scale failed: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

/** Least-squares slope of `ys` over their index (per round). */
function linearSlope(ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

async function metric(socketPath: string, name: string): Promise<number> {
  const { body } = await httpGet(socketPath, '/metrics');
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

void main();
