/**
 * `npm run bench:scale` (issue 6 part 7): N VMIs (default 200) created at once through gRPC,
 * each run by its own launcher on libvirt's in-process test driver (test:///default, so the
 * "VM" lives inside the launcher and costs no QEMU), then all deleted; R rounds (default 5).
 *
 * Prints SyncVMI -> Running p50/p95 for the burst and for a paced run (one VMI at a time, so the
 * handler's own latency shows apart from CPU saturation), reconcile throughput, handler RSS and
 * V8 heap before / at peak / after delete, launcher RSS and CPU, and after every round the
 * handler's fds, child processes, surviving launchers, sockets under the run dir and records.
 * Same-run floor: N bare `node -e 0` and N `virt-launcher --help` spawned at once, so the burst
 * latency can be read against what merely starting N node processes costs on this machine.
 *
 * Targets are printed as PASS/MISS; the exit code is non-zero only when something broke (a VMI
 * never reached Running, a leak of fds/processes/sockets/records). Flags (or env):
 *   --count N   (VH_BENCH_COUNT, 200)   VMIs per burst
 *   --rounds R  (VH_BENCH_ROUNDS, 5)    create/delete rounds
 *   --paced P   (VH_BENCH_PACED, 20)    VMIs in the one-at-a-time run (0 = skip)
 *   --no-baseline                        skip the node -e 0 / --help floor
 *   --keep                               keep the temp dir (launcher logs, records) for a post-mortem
 *   --handler-prof DIR                   run the handler with --cpu-prof into DIR
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
const DAEMON = path.join(REPO, 'dist/virt-handler.cjs');
const LAUNCHER = path.join(REPO, 'dist/virt-launcher.cjs');
const NS = 'scale';
const TICK_MS = 1000 / 100; // USER_HZ is 100 on every Linux we run on

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
interface VmiMsg {
  uid: string;
  name: string;
  deleting: boolean;
  status?: { phase: string; reason: string; launcherPid: number };
}

function flag(name: string, env: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[env];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${raw}`);
  return n;
}

const COUNT = Math.max(1, flag('count', 'VH_BENCH_COUNT', 200));
const ROUNDS = Math.max(1, flag('rounds', 'VH_BENCH_ROUNDS', 5));
const PACED = flag('paced', 'VH_BENCH_PACED', Math.min(20, COUNT));
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
      if (v.status?.phase === 'Running' && !this.running.has(v.name)) this.running.set(v.name, performance.now());
      if (v.status?.phase === 'Failed') this.failed.set(v.name, v.status.reason);
    });
    s.on('error', () => undefined);
    this.stream = s;
  }

  reset(): void {
    this.running.clear();
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
  allRunningMs: number;
  deleteMs: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  launcherRss: number[];
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
    let floor: { bare: Awaited<ReturnType<typeof burst>>; help: Awaited<ReturnType<typeof burst>> } | null = null;
    if (BASELINE) {
      const bare = await burst(COUNT, ['-e', '0']);
      const help = await burst(COUNT, [LAUNCHER, '--help']);
      floor = { bare, help };
    }

    const images = path.join(tmp, 'images', 'tiny');
    fs.mkdirSync(images, { recursive: true });
    fs.writeFileSync(path.join(images, 'vmlinux'), ''); // the test driver never reads them
    fs.writeFileSync(path.join(images, 'initrd.gz'), '');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'NODE_OPTIONS'));
    let daemonErr = '';
    daemon = spawn(
      process.execPath,
      // SIGUSR2 writes a heap snapshot, which starts with a full GC: the bench uses it to read the
      // heap the handler really retains after each round (heapUsed without a GC includes garbage).
      ['--heapsnapshot-signal=SIGUSR2', ...(PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`] : []), DAEMON, '--state-dir', state, '--run-dir', run, '--http-tcp=off', '--libvirt-uri', 'test:///default', '--vmi-image-root', path.join(tmp, 'images'), '--log-level', 'warn', '--vmi-max-vmis', String(Math.max(256, COUNT))],
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

    client = new (loadProtos().VmiClient)(`unix:${path.join(run, 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
    watcher.start(client);
    await sleep(200);

    /** Heap used after a full GC (the heap snapshot's), then the snapshot is removed unless --keep. */
    const heapAfterGc = async (): Promise<number> => {
      const before = new Set(fs.readdirSync(tmp));
      daemon!.kill('SIGUSR2');
      await until(() => fs.readdirSync(tmp).some((f) => f.endsWith('.heapsnapshot') && !before.has(f)), 60_000, 'heap snapshot', 100);
      const used = (await heap(httpSock)).used; // served once the snapshot is written (same thread)
      if (!KEEP) for (const f of fs.readdirSync(tmp)) if (f.endsWith('.heapsnapshot')) fs.rmSync(path.join(tmp, f));
      return used;
    };

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
    if (PACED > 0) {
      watcher.reset();
      for (let i = 0; i < PACED; i++) {
        const name = `paced-${i}`;
        const t0 = performance.now();
        await call(client, 'SyncVMI', { manifest: manifest(name) });
        await until(() => watcher.running.has(name) || watcher.failed.has(name), 60_000, `${name} Running`, 5);
        if (watcher.failed.has(name)) throw new Error(`${name} failed: ${watcher.failed.get(name)}`);
        paced.push((watcher.running.get(name) as number) - t0);
        const lp = watcher.pids.get(name);
        if (lp) {
          everyLauncher.add(lp);
          pacedCpu.push(stat(lp)?.cpuMs ?? NaN);
        }
      }
      await deleteAll(Array.from({ length: PACED }, (_, i) => `paced-${i}`));
      await waitLaunchersGone([...everyLauncher]);
      await sleep(1000);
    }

    const base: Leaks = { fds: fdCount(pid), children: childrenOf(pid).length, launchersAlive: 0, sockets: socketsUnder(run), records: entries(path.join(state, 'vmis')) };
    const rounds: Round[] = [];
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

      const cpu0 = stat(pid)?.cpuMs ?? 0;
      const t0 = performance.now();
      const sent = new Map<string, number>();
      await Promise.all(
        names.map((name) => {
          sent.set(name, performance.now());
          return call(client!, 'SyncVMI', { manifest: manifest(name) });
        }),
      );
      await until(() => names.every((n) => watcher.running.has(n) || watcher.failed.has(n)), 300_000, `round ${r + 1}: all Running`, 20).catch((e: Error) => {
        broken.push(`${e.message} (${names.filter((n) => !watcher.running.has(n)).length} not Running)`);
      });
      const allRunningMs = performance.now() - t0;
      if (watcher.failed.size > 0) broken.push(`round ${r + 1}: ${watcher.failed.size} VMIs Failed, e.g. ${[...watcher.failed.values()][0]}`);
      const createLat = names.filter((n) => watcher.running.has(n)).map((n) => (watcher.running.get(n) as number) - (sent.get(n) as number));
      const pids = names.map((n) => watcher.pids.get(n)).filter((p): p is number => typeof p === 'number');
      for (const p of pids) everyLauncher.add(p);
      const launcherRss = pids.map(rssKb).filter((v) => v > 0);
      const launcherCpu = pids.map((p) => stat(p)?.cpuMs ?? NaN).filter(Number.isFinite);
      rssPeak = Math.max(rssPeak, rssKb(pid));
      const reconciles = (await metric(httpSock, 'virt_handler_reconcile_total')) - reconcile0;
      const handlerCpuMs = (stat(pid)?.cpuMs ?? 0) - cpu0;

      if (KEEP) {
        const logs = path.join(tmp, `launcher-logs-${r + 1}`);
        fs.mkdirSync(logs, { recursive: true });
        for (const uid of entries(path.join(state, 'vmis'))) fs.cpSync(path.join(state, 'vmis', uid, 'launcher.log'), path.join(logs, `${uid}.log`), { force: true, errorOnExist: false });
        const rel = [...watcher.running.values()].map((t) => t - t0).sort((a, b) => a - b);
        console.log(`round ${r + 1}: Running times since the first SyncVMI (deciles): ${[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((p) => ms(pct(rel, p))).join(' ')}`);
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
      const round: Round = { createLat, allRunningMs, deleteMs, rssBefore, rssPeak, rssAfter: rssKb(pid), heapBefore, heapAfter: (await heap(httpSock)).used, launcherRss, launcherCpu, reconciles, handlerCpuMs, leaks };
      rounds.push(round);
      console.log(
        `round ${r + 1}: Running p50 ${ms(median(createLat))} p95 ${ms(pct(createLat, 95))} all ${ms(allRunningMs)} (handler CPU ${ms(handlerCpuMs)}); deleted in ${ms(deleteMs)}; ` +
          `RSS ${mb(rssBefore)} -> peak ${mb(rssPeak)} -> ${mb(round.rssAfter)}; heap ${mb(heapBefore / 1024)} -> ${mb(round.heapAfter / 1024)}; ` +
          `fds ${leaks.fds} children ${leaks.children} launchers alive ${leaks.launchersAlive} sockets ${leaks.sockets.length} records ${leaks.records.length}`,
      );
    }

    // --- report ---------------------------------------------------------------------------
    const allLat = rounds.flatMap((r) => r.createLat);
    const r1 = rounds[0] as Round;
    const last = rounds[rounds.length - 1] as Round;
    const lRss = rounds.flatMap((r) => r.launcherRss);
    const lCpu = rounds.flatMap((r) => r.launcherCpu);
    const line = (k: string, v: string): void => console.log(`${k.padEnd(44)} ${v}`);
    console.log('');
    if (floor) {
      const { bare, help } = floor;
      line(`floor: ${COUNT} x \`node -e 0\` at once`, `exit p50 ${ms(median(bare.lat))} p95 ${ms(pct(bare.lat, 95))}; all in ${ms(bare.wallMs)}; CPU ${ms(bare.cpuMs)} (${ms(bare.cpuMs / COUNT)} each)`);
      line(`floor: ${COUNT} x \`virt-launcher --help\``, `exit p50 ${ms(median(help.lat))} p95 ${ms(pct(help.lat, 95))}; all in ${ms(help.wallMs)}; CPU ${ms(help.cpuMs)} (${ms(help.cpuMs / COUNT)} each)`);
    }
    if (paced.length) line(`paced (1 at a time, ${paced.length} VMIs) -> Running`, `p50 ${ms(median(paced))} p95 ${ms(pct(paced, 95))}; launcher CPU to Running median ${ms(median(pacedCpu))}`);
    line(`burst (${COUNT} at once, ${rounds.length} rounds) -> Running`, `p50 ${ms(median(allLat))} p95 ${ms(pct(allLat, 95))}; max ${ms(pct(allLat, 100))}`);
    if (floor) {
      line('  burst p95 / `node -e 0` burst p95', `${(pct(allLat, 95) / pct(floor.bare.lat, 95)).toFixed(2)}x`);
      line('  burst p95 / `launcher --help` burst p95', `${(pct(allLat, 95) / pct(floor.help.lat, 95)).toFixed(2)}x`);
    }
    line('  all Running (median round)', `${ms(median(rounds.map((r) => r.allRunningMs)))} -> ${(COUNT / (median(rounds.map((r) => r.allRunningMs)) / 1000)).toFixed(1)} VMIs/s`);
    line('  reconcile runs per round (median)', `${median(rounds.map((r) => r.reconciles))} -> ${(median(rounds.map((r) => r.reconciles)) / (median(rounds.map((r) => r.allRunningMs)) / 1000)).toFixed(1)} runs/s`);
    line('  handler CPU, first SyncVMI -> all Running', `${ms(median(rounds.map((r) => r.handlerCpuMs)))} (${ms(median(rounds.map((r) => r.handlerCpuMs)) / COUNT)} per VMI)`);
    line('  delete all -> gone (median round)', `${ms(median(rounds.map((r) => r.deleteMs)))}`);
    line('launcher RSS at Running (all rounds)', `min ${mb(pct(lRss, 0))} median ${mb(median(lRss))} max ${mb(pct(lRss, 100))} (${lRss.length} samples)`);
    line('launcher CPU to Running (all rounds)', `median ${ms(median(lCpu))}, p95 ${ms(pct(lCpu, 95))}; x${COUNT} = ${ms(median(lCpu) * COUNT)} CPU per burst on ${os.cpus().length} CPUs`);
    line('handler RSS at ready / before round 1', `${mb(rssReady)} / ${mb(r1.rssBefore)} (V8 heap used ${mb(heapReady.used / 1024)} / ${mb(r1.heapBefore / 1024)})`);
    line('handler RSS peak (max over rounds)', `${mb(Math.max(...rounds.map((r) => r.rssPeak)))}`);
    line('handler RSS after delete, per round', rounds.map((r) => mb(r.rssAfter)).join(', '));
    line('handler V8 heap used after delete, per round', rounds.map((r) => mb(r.heapAfter / 1024)).join(', '));
    line('handler memory at ready / after the last round', `${memReady} / ${await memoryBreakdown(httpSock)}`);
    // Last: the snapshot itself costs the handler tens of MB of RSS, which must not reach the RSS figures above.
    const heapGcEnd = await heapAfterGc();
    line('V8 heap used after a full GC, at the end', `${mb(heapGcEnd / 1024)} (at ready, without a GC: ${mb(heapReady.used / 1024)})`);
    line('fds / children / sockets / records, per round', rounds.map((r) => `${r.leaks.fds}/${r.leaks.children}/${r.leaks.sockets.length}/${r.leaks.records.length}`).join(', ') + `  (before: ${base.fds}/${base.children}/${base.sockets.length}/${base.records.length})`);

    const growthPerVmi = (Math.max(...rounds.map((r) => r.rssPeak - r.rssBefore)) / COUNT);
    const afterRatio = last.rssAfter / r1.rssBefore - 1;
    const roundGrowth = (last.rssAfter - r1.rssAfter) / 1024;
    const heapGrowth = (last.heapAfter - r1.heapAfter) / 1024 / 1024;
    console.log('\ntarget                                       measured                         verdict');
    const verdict = (name: string, measured: string, ok: boolean): void => console.log(`${name.padEnd(44)} ${measured.padEnd(32)} ${ok ? 'PASS' : 'MISS'}`);
    verdict('burst SyncVMI -> Running p95 <= 1 s', ms(pct(allLat, 95)), pct(allLat, 95) <= 1000);
    if (paced.length) verdict('paced SyncVMI -> Running p95 <= 1 s', ms(pct(paced, 95)), pct(paced, 95) <= 1000);
    verdict('handler RSS growth <= 1 MB per VMI', `${(growthPerVmi / 1024).toFixed(3)} MB/VMI (peak - before)`, growthPerVmi <= 1024);
    verdict('RSS after delete within 10% of before', `${(afterRatio * 100).toFixed(1)}% (last round vs round 1)`, afterRatio <= 0.1);
    const gcRatio = heapGcEnd / heapReady.used - 1;
    verdict('  (V8 heap after GC vs at ready)', `${(gcRatio * 100).toFixed(1)}% (${mb(heapReady.used / 1024)} -> ${mb(heapGcEnd / 1024)})`, gcRatio <= 0.1);
    verdict('no growth round over round (after 1 -> last)', `${roundGrowth.toFixed(1)} MB RSS, ${heapGrowth.toFixed(1)} MB heap`, roundGrowth <= 0.05 * (r1.rssBefore / 1024)); // heap without a GC is too noisy to judge

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

async function metric(socketPath: string, name: string): Promise<number> {
  const { body } = await httpGet(socketPath, '/metrics');
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

void main();
