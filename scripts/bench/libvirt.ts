/**
 * `npm run bench:libvirt`: throughput of the libvirt binding and lifecycle-event latency.
 *
 * 1. calls/s of `Domain.getInfo()` with 1, 16 and 64 calls in flight on test:///default (lanes =
 *    in-flight, one Domain handle per lane), next to a same-run baseline: calls/s of koffi's
 *    `.async` on libc `abs` at the same concurrency (the FFI + libuv pool's own ceiling).
 * 2. The same on a private real libvirtd (scripts/libvirt/libvirtd-env.sh) when
 *    VHDEV_BENCH_LIBVIRT_REAL=1: started here, a throw-away domain defined (not started) for getInfo,
 *    undefined and the daemon stopped afterwards (unless it was already running). If the daemon
 *    cannot start, the reason is printed and the bench goes on.
 * 3. Lifecycle event delivery latency on test:///default: suspend/resume cycles of the 'test'
 *    domain, timed from just before the call to the 'lifecycle' listener.
 *
 * Each figure is the median of ROUNDS rounds. Targets: >= 5000 calls/s at 64 in flight on
 * test:///default; event p99 <= 10 ms. Figures, not assertions (exit code 0 unless the bench
 * itself breaks).
 *
 * Environment: VHDEV_BENCH_LIBVIRT_REAL=1, VHDEV_BENCH_ROUNDS (default 5), VHDEV_BENCH_ROUND_MS (default
 * 1000), VHDEV_BENCH_EVENT_CYCLES (suspend+resume cycles per round, default 100).
 */
// FIRST, before anything else can start the libuv pool: koffi's .async calls run there, and 64
// in flight plus the libvirt event loop's long-running iteration need more than libuv's 4.
// queue.ts only has a type import, so requiring it starts nothing.
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
const MAX_IN_FLIGHT = 64;
const POOL = ensureThreadpoolSize(MAX_IN_FLIGHT + 8);

// Everything else is required lazily (below), so the line above provably runs first.
import type * as ConnectionModule from '../../src/libvirt/connection';
import type { Domain } from '../../src/libvirt/domain';
import type { LifecycleEvent } from '../../src/libvirt/events';

const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
const path = require('node:path') as typeof import('node:path');
const { performance } = require('node:perf_hooks') as typeof import('node:perf_hooks');

const ROUNDS = intEnv('VHDEV_BENCH_ROUNDS', 5);
const ROUND_MS = intEnv('VHDEV_BENCH_ROUND_MS', 1000);
const WARMUP_MS = Math.min(300, ROUND_MS);
const EVENT_CYCLES = intEnv('VHDEV_BENCH_EVENT_CYCLES', 100);
const IN_FLIGHT = [1, 16, MAX_IN_FLIGHT];
const TARGET_CALLS = 5000;
const TARGET_P99_MS = 10;
const TEST_URI = 'test:///default';
const REPO = path.resolve(__dirname, '../../..');
const ENV_SCRIPT = path.join(REPO, 'scripts/libvirt/libvirtd-env.sh');
const BENCH_DOMAIN = 'vh-bench-getinfo';

function intEnv(name: string, def: number): number {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isInteger(v) && v > 0 ? v : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

const fmtRate = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number): string => n.toFixed(3);

function table(head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i] as number) : c.padStart(w[i] as number))).join('  ');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** Runs `inFlight` closed loops of `once` for `ms`; returns completed calls per second. */
async function closedLoops(workers: Array<() => Promise<unknown>>, ms: number): Promise<number> {
  let count = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    workers.map(async (once) => {
      while (performance.now() < end) {
        await once();
        count++;
      }
    }),
  );
  return count / ((performance.now() - start) / 1000);
}

/** koffi's own .async ceiling: libc abs(int) on the libuv pool. */
function absBaseline(): () => Promise<unknown> {
  const koffi = require('koffi') as typeof import('koffi');
  const abs = koffi.load('libc.so.6').func('int abs(int)');
  return () => new Promise((resolve, reject) => abs.async(-7, (err: unknown, r: number) => (err ? reject(err) : resolve(r))));
}

interface ThroughputRow {
  inFlight: number;
  lanes: number;
  rounds: number[];
  baseline: number[];
  maxInFlight: number;
}

/** getInfo throughput on `uri` at each concurrency, baseline interleaved round by round. */
async function throughput(uri: string, domainName: string, absCall: () => Promise<unknown>): Promise<ThroughputRow[]> {
  const { Connection } = require('../../src/libvirt/connection') as typeof ConnectionModule;
  const { CallQueue, MAX_CONCURRENCY } = require('../../src/libvirt/queue') as typeof import('../../src/libvirt/queue');
  const rows: ThroughputRow[] = [];
  for (const inFlight of IN_FLIGHT) {
    const lanes = Math.min(inFlight, MAX_IN_FLIGHT);
    // A queue of our own so its maxInFlight proves the concurrency reached.
    const queue = new CallQueue(Math.min(MAX_CONCURRENCY, Math.max(lanes, 64)));
    const conn = await Connection.open(uri, { lanes, queue });
    const domains: Domain[] = [];
    try {
      // Concurrent lookups: each picks the least busy lane, so every lane gets one handle.
      domains.push(...(await Promise.all(Array.from({ length: lanes }, () => conn.lookupByName(domainName)))));
      const workers = Array.from({ length: inFlight }, (_, i) => {
        const d = domains[i % domains.length] as Domain;
        return () => d.getInfo();
      });
      const absWorkers = Array.from({ length: inFlight }, () => absCall);
      await closedLoops(workers, WARMUP_MS);
      await closedLoops(absWorkers, WARMUP_MS);
      const row: ThroughputRow = { inFlight, lanes, rounds: [], baseline: [], maxInFlight: 0 };
      for (let r = 0; r < ROUNDS; r++) {
        row.rounds.push(await closedLoops(workers, ROUND_MS));
        row.baseline.push(await closedLoops(absWorkers, ROUND_MS));
      }
      row.maxInFlight = queue.stats().maxInFlight;
      rows.push(row);
    } finally {
      for (const d of domains) await d.free().catch(() => undefined);
      await conn.close();
    }
  }
  return rows;
}

function printThroughput(title: string, rows: ThroughputRow[], withTarget: boolean): void {
  console.log(`\n${title} — Domain.getInfo() calls/s, median of ${ROUNDS} x ${ROUND_MS} ms rounds (UV_THREADPOOL_SIZE=${POOL})`);
  table(
    ['in flight', 'lanes', 'reached', 'getInfo/s', 'min..max', 'koffi abs/s', 'of baseline', 'target'],
    rows.map((r) => {
      const m = median(r.rounds);
      const b = median(r.baseline);
      const target = withTarget && r.inFlight === MAX_IN_FLIGHT ? `>= ${TARGET_CALLS} ${m >= TARGET_CALLS ? 'MET' : 'MISSED'}` : '-';
      return [
        String(r.inFlight),
        String(r.lanes),
        String(r.maxInFlight),
        fmtRate(m),
        `${fmtRate(Math.min(...r.rounds))}..${fmtRate(Math.max(...r.rounds))}`,
        fmtRate(b),
        `${((100 * m) / b).toFixed(1)}%`,
        target,
      ];
    }),
  );
}

interface LatencyRound {
  p50: number;
  p99: number;
  max: number;
  samples: number[];
  callMs: number[];
}

/** Suspend/resume cycles on test:///default's 'test' domain; latency call -> listener. */
async function eventLatency(): Promise<LatencyRound[]> {
  const { Connection } = require('../../src/libvirt/connection') as typeof ConnectionModule;
  const conn = await Connection.open(TEST_URI, { lanes: 1, events: true });
  const dom = await conn.lookupByName('test');
  let waiting: { event: string; resolve: (t: number) => void } | null = null;
  const listener = (ev: LifecycleEvent): void => {
    const t = performance.now();
    if (waiting && ev.domain === 'test' && ev.event === waiting.event) {
      const w = waiting;
      waiting = null;
      w.resolve(t);
    }
  };
  conn.on('lifecycle', listener);
  const rounds: LatencyRound[] = [];
  try {
    if ((await dom.getInfo()).state === 'paused') await dom.resume();
    const step = async (call: () => Promise<void>, event: string): Promise<{ lat: number; call: number }> => {
      const arrived = new Promise<number>((resolve, reject) => {
        waiting = { event, resolve };
        setTimeout(() => reject(new Error(`no ${event} event within 5 s`)), 5000).unref();
      });
      const t0 = performance.now();
      await call();
      const t1 = performance.now();
      const te = await arrived;
      return { lat: te - t0, call: t1 - t0 };
    };
    // Warm-up.
    for (let i = 0; i < 10; i++) {
      await step(() => dom.suspend(), 'SUSPENDED');
      await step(() => dom.resume(), 'RESUMED');
    }
    for (let r = 0; r < ROUNDS; r++) {
      const samples: number[] = [];
      const callMs: number[] = [];
      for (let i = 0; i < EVENT_CYCLES; i++) {
        for (const [call, ev] of [
          [() => dom.suspend(), 'SUSPENDED'],
          [() => dom.resume(), 'RESUMED'],
        ] as const) {
          const s = await step(call, ev);
          samples.push(s.lat);
          callMs.push(s.call);
        }
      }
      rounds.push({ p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples), samples, callMs });
    }
  } finally {
    conn.off('lifecycle', listener);
    await dom.free().catch(() => undefined);
    await conn.close();
  }
  return rounds;
}

function printLatency(rounds: LatencyRound[]): void {
  const all = rounds.flatMap((r) => r.samples);
  const calls = rounds.flatMap((r) => r.callMs);
  const p99 = median(rounds.map((r) => r.p99));
  console.log(`\nLifecycle event latency on ${TEST_URI} — call start -> 'lifecycle' listener, ${EVENT_CYCLES} suspend+resume cycles x ${ROUNDS} rounds (ms)`);
  table(
    ['figure', 'p50', 'p99', 'max', 'target'],
    [
      ['median of rounds', fmtMs(median(rounds.map((r) => r.p50))), fmtMs(p99), fmtMs(median(rounds.map((r) => r.max))), `p99 <= ${TARGET_P99_MS} ${p99 <= TARGET_P99_MS ? 'MET' : 'MISSED'}`],
      [`all ${all.length} events`, fmtMs(percentile(all, 50)), fmtMs(percentile(all, 99)), fmtMs(Math.max(...all)), '-'],
      ['(the call alone)', fmtMs(percentile(calls, 50)), fmtMs(percentile(calls, 99)), fmtMs(Math.max(...calls)), '-'],
    ],
  );
}

function envScript(...args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync('bash', [ENV_SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });
  const err = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim();
  return { ok: r.status === 0, out: (r.stdout ?? '').trim(), err };
}

const BENCH_XML = `<domain type='qemu'>
  <name>${BENCH_DOMAIN}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>`;

/** The real daemon's figures, or the reason there are none. */
async function realDaemon(absCall: () => Promise<unknown>): Promise<void> {
  const { Connection } = require('../../src/libvirt/connection') as typeof ConnectionModule;
  const wasRunning = envScript('status').ok;
  const started = wasRunning ? envScript('uri') : envScript('start');
  if (!started.ok) {
    console.log(`\nReal libvirtd: not benchmarked — could not start it: ${started.err.split('\n').slice(-5).join(' | ') || 'unknown error'}`);
    return;
  }
  const uri = started.out.split('\n').pop() as string;
  try {
    let conn: ConnectionModule.Connection | null = null;
    try {
      conn = await Connection.open(uri, { lanes: 1 });
      const d = await conn.defineXML(BENCH_XML);
      await d.free();
    } catch (e) {
      console.log(`\nReal libvirtd (${uri}): not benchmarked — ${e instanceof Error ? e.message : String(e)}`);
      return;
    } finally {
      await conn?.close().catch(() => undefined);
    }
    try {
      const rows = await throughput(uri, BENCH_DOMAIN, absCall);
      printThroughput(`Real libvirtd ${uri} (QEMU driver, domain '${BENCH_DOMAIN}' defined, not running)`, rows, false);
    } finally {
      const c = await Connection.open(uri, { lanes: 1 });
      const d = await c.lookupByName(BENCH_DOMAIN);
      await d.undefine().catch(() => undefined);
      await d.free();
      await c.close();
    }
  } finally {
    if (!wasRunning) {
      const stop = envScript('stop');
      if (!stop.ok) console.log(`(stopping the private libvirtd failed: ${stop.err})`);
    }
  }
}

async function main(): Promise<void> {
  const os = require('node:os') as typeof import('node:os');
  console.log(`bench:libvirt — node ${process.version}, ${os.cpus().length} CPUs, UV_THREADPOOL_SIZE=${POOL}`);
  const absCall = absBaseline();
  const rows = await throughput(TEST_URI, 'test', absCall);
  printThroughput(`${TEST_URI}`, rows, true);
  if (process.env.VHDEV_BENCH_LIBVIRT_REAL === '1') await realDaemon(absCall);
  else console.log('\nReal libvirtd: skipped (set VHDEV_BENCH_LIBVIRT_REAL=1)');
  printLatency(await eventLatency());
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
