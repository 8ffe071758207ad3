/**
 * `npm run bench:startup`: how fast the daemon becomes ready and how much memory it holds idle.
 *
 * For each of RUNS runs: spawn `node dist/virt-handler.cjs` (what production runs: the loader for the bundle + its V8 code cache; dev profile, temp dirs, TCP port 0) and
 * poll GET /readyz over the unix socket in a tight loop until 200; then read VmRSS from
 * /proc/<pid>/status, SIGTERM it and time the exit. In the same run, spawn a bare `node -e` HTTP
 * server and time its first output: the ratio to that baseline stays meaningful on a noisy or
 * slow machine where absolute milliseconds do not. Prints a table and the medians against the
 * targets (ready <= 400 ms, idle RSS <= 70 MB). Figures, not assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

const RUNS = 5;
const TARGET_READY_MS = 400;
const TARGET_RSS_MB = 70;
const REPO = path.resolve(__dirname, '../../..');
/** What production runs (systemd, the DaemonSet): package.json's bin, the bundle dist/virt-handler.cjs. */
const MAIN = path.join(REPO, (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['virt-handler']!);
const BASELINE = "require('http').createServer((q,s)=>s.end('ok')).listen(0,'127.0.0.1',()=>console.log('up'))";

interface Sample { readyMs: number; rssMb: number; stopMs: number; baseMs: number; baseRssMb: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function readyz(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/readyz', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0)); // not bound yet (ENOENT / ECONNREFUSED)
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
}

async function daemonRun(dir: string): Promise<Pick<Sample, 'readyMs' | 'rssMb' | 'stopMs'>> {
  const socketPath = path.join(dir, 'run/http.sock');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'NOTIFY_SOCKET'));
  const t0 = performance.now();
  const child = spawn(process.execPath, [MAIN, '--profile=dev', '--state-dir', path.join(dir, 'state'), '--run-dir', path.join(dir, 'run'),
    '--http-tcp-port', '0', '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  let readyMs = NaN;
  while (child.exitCode === null) {
    if ((await readyz(socketPath)) === 200) {
      readyMs = performance.now() - t0;
      break;
    }
    await sleep(2);
  }
  if (Number.isNaN(readyMs)) throw new Error(`daemon exited with ${child.exitCode} before it was ready`);
  await sleep(200); // let the post-ready allocations settle: "idle" RSS, not mid-startup
  const rss = rssMb(child.pid!);
  const s0 = performance.now();
  child.kill('SIGTERM');
  const code = await exited(child);
  if (code !== 0) throw new Error(`daemon exited with ${code} after SIGTERM`);
  return { readyMs, rssMb: rss, stopMs: performance.now() - s0 };
}

async function baselineRun(): Promise<Pick<Sample, 'baseMs' | 'baseRssMb'>> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', BASELINE], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => child.stdout!.once('data', r));
  const baseMs = performance.now() - t0;
  await sleep(200);
  const baseRssMb = rssMb(child.pid!);
  child.kill('SIGTERM');
  await exited(child);
  return { baseMs, baseRssMb };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} missing: run npm run build first`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-bench-'));
  const samples: Sample[] = [];
  try {
    await daemonRun(path.join(root, 'warmup')); // fills the page cache so run 1 is not an outlier
    for (let i = 0; i < RUNS; i++) {
      const d = await daemonRun(path.join(root, `r${i}`));
      const b = await baselineRun();
      samples.push({ ...d, ...b });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const f = (n: number): string => n.toFixed(1).padStart(9);
  const header = `${'run'.padEnd(6)}${'ready ms'.padStart(9)}${'RSS MB'.padStart(9)}${'stop ms'.padStart(9)}${'base ms'.padStart(9)}${'base MB'.padStart(9)}`;
  console.log(`virt-handler startup (${os.cpus().length} CPUs, node ${process.version}); base = bare node -e HTTP server`);
  console.log(header);
  samples.forEach((s, i) => console.log(`${String(i + 1).padEnd(6)}${f(s.readyMs)}${f(s.rssMb)}${f(s.stopMs)}${f(s.baseMs)}${f(s.baseRssMb)}`));
  const m = (k: keyof Sample): number => median(samples.map((s) => s[k]));
  console.log(`${'median'.padEnd(6)}${f(m('readyMs'))}${f(m('rssMb'))}${f(m('stopMs'))}${f(m('baseMs'))}${f(m('baseRssMb'))}`);
  console.log('');
  console.log(`ready: ${m('readyMs').toFixed(0)} ms (target <= ${TARGET_READY_MS}: ${m('readyMs') <= TARGET_READY_MS ? 'met' : 'MISSED'}), ` +
    `${(m('readyMs') / m('baseMs')).toFixed(1)}x the bare node baseline`);
  console.log(`idle RSS: ${m('rssMb').toFixed(1)} MB (target <= ${TARGET_RSS_MB}: ${m('rssMb') <= TARGET_RSS_MB ? 'met' : 'MISSED'}), ` +
    `+${(m('rssMb') - m('baseRssMb')).toFixed(1)} MB over the baseline`);
}

main().catch((e: unknown) => {
  console.error(`bench:startup failed: ${(e as Error).message}`);
  process.exit(1);
});
