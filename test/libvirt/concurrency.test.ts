/**
 * The koffi binding under load against a real libvirtd: many calls in flight over several lanes
 * must each get their own result or their own error (libvirt's errors are per thread/connection,
 * see src/libvirt/lane.ts), and 100,000 calls must not grow RSS (handles, returned strings and
 * error copies are all freed). Run through scripts/test-libvirt.sh.
 */
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Connection } from '../../src/libvirt/connection';
import type { Domain, DomainInfo } from '../../src/libvirt/domain';
import { LibvirtError } from '../../src/libvirt/errors';
import { type LibvirtTestEnv, cleanupDomain, mallocInUse, guestName, makeRunDir, removeRunDir, testEnv, tinyGuestXml, uniqueSuffix, virshRemoveDomain } from './guest';

const LANES = 8;
const CONCURRENT = 2000;
const TOTAL_CALLS = 100_000;
/**
 * Calls before the baseline: the C heap settles once (+0.6-1.6 MiB: V8's and glibc's per-thread
 * state, libvirt's caches), always within ~20,000 calls in the runs measured here.
 */
const WARMUP_CALLS = 20_000;
/** Operations kept in flight during the soak (below the queue's 64 running + a short JS-side queue). */
const WINDOW = 128;
/**
 * Leak bounds between the end of the warm-up and the end of the soak (~80,000 calls: ~20,000
 * lookup+free, ~20,000 failed lookups, ~40,000 getInfo).
 *
 * C heap in use (glibc mallinfo2, all arenas) is the precise one: a leaked virDomain per lookup
 * (object + name + allocator overhead, >= 130 B) is >= 2.5 MiB over the soak, a leaked error
 * copy per failed lookup (virError + message + str1, ~220 B) ~4.2 MiB, a leaked virDomainInfo or
 * XML string more. Measured here after the warm-up: flat within +-0.2 MiB, with single
 * transient samples up to +0.45 MiB. 2 MiB total, and 1 MiB from the first 10k-call sample to
 * the last (a leak of 15 B per call), separate the two.
 *
 * RSS is the coarse one: glibc gives libuv pool threads calling into libvirt their own arenas,
 * and a new or grown arena shows up as a ~13 MiB RSS step while the heap in use stays flat
 * (one or two per run, at varying points, up to +21 MiB seen after a 10k warm-up). 48 MiB
 * (the test:///default suite's bound too) allows two steps plus V8 noise and still catches a
 * gross leak (>= ~600 B on every call) even if mallinfo missed it (e.g. memory from mmap).
 */
const MALLOC_BOUND_MIB = 2;
const SLOPE_BOUND_MIB = 1;
const RSS_BOUND_MIB = 48;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const rssMiB = (): number => process.memoryUsage().rss / MiB;

/** Names in a libvirt message quoted the way libvirt and LibvirtError quote them. */
function quotedNames(message: string): string[] {
  return [...message.matchAll(/'(vh-[A-Za-z0-9_.-]+)'/g)].map((m) => m[1] as string);
}

describe('libvirt under load on a real libvirtd', () => {
  const runName = guestName(uniqueSuffix('conc-run'));
  const defName = guestName(uniqueSuffix('conc-def'));
  let env: LibvirtTestEnv;
  let conn: Connection | undefined;
  let runDir: string | undefined;
  /** Several handles per domain so getInfo calls spread over the lanes (a handle stays on its lane). */
  let runHandles: Domain[] = [];
  let defHandles: Domain[] = [];
  let runUuid = '';
  let defUuid = '';

  function checkRunInfo(info: DomainInfo): void {
    assert.equal(info.state, 'running');
    assert.equal(info.maxMem, 128 * 1024);
    assert.equal(info.nrVirtCpu, 1);
  }
  function checkDefInfo(info: DomainInfo): void {
    assert.equal(info.state, 'shutoff');
    assert.equal(info.maxMem, 64 * 1024);
    assert.equal(info.nrVirtCpu, 2);
  }

  before(async () => {
    env = testEnv();
    runDir = await makeRunDir('conc');
    conn = await Connection.open(env.uri, { lanes: LANES });
    // One running guest (128 MiB, 1 vCPU) and one defined, never started (64 MiB, 2 vCPUs): their
    // getInfo results differ, so a result delivered to the wrong caller is caught.
    const run = await conn.defineXML(tinyGuestXml({ name: runName, kernel: env.kernel, initrd: env.initrd, serialPath: path.join(runDir, 'run.log'), memoryMiB: 128, vcpus: 1 }));
    const def = await conn.defineXML(tinyGuestXml({ name: defName, kernel: env.kernel, initrd: env.initrd, serialPath: path.join(runDir, 'def.log'), memoryMiB: 64, vcpus: 2 }));
    await run.create();
    runUuid = run.uuid;
    defUuid = def.uuid;
    await Promise.all([run.free(), def.free()]);
    // Looked up in parallel so each lands on a different (least busy) lane.
    const c = conn;
    runHandles = await Promise.all(Array.from({ length: LANES }, () => c.lookupByName(runName)));
    defHandles = await Promise.all(Array.from({ length: LANES }, () => c.lookupByName(defName)));
  });

  after(async () => {
    await Promise.all([...runHandles, ...defHandles].map((d) => d.free().catch(() => undefined)));
    for (const name of [runName, defName]) {
      const errors = await cleanupDomain(conn, name);
      if (errors.length > 0 && env) {
        console.log(`cleanup of ${name} through the library failed (${String(errors[0])}); using virsh`);
        await virshRemoveDomain(env, name);
      }
    }
    await conn?.close();
    await removeRunDir(runDir);
  });

  it(`${CONCURRENT} concurrent calls (getInfo on real domains, lookups of real and missing names) each get their own result or error`, async () => {
    const c = conn as Connection;
    assert.equal(runHandles[0]?.uuid, runUuid);
    type Outcome = { kind: 'info-run' | 'info-def' | 'lookup-run' | 'missing'; i: number };
    const plan: Outcome[] = [];
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < CONCURRENT; i++) {
      switch (i % 5) {
        case 0:
          plan.push({ kind: 'info-run', i });
          calls.push((runHandles[i % LANES] as Domain).getInfo());
          break;
        case 1:
          plan.push({ kind: 'info-def', i });
          calls.push((defHandles[i % LANES] as Domain).getInfo());
          break;
        case 2:
          plan.push({ kind: 'lookup-run', i });
          calls.push(c.lookupByName(i % 2 ? runName : defName));
          break;
        default:
          plan.push({ kind: 'missing', i });
          calls.push(c.lookupByName(`vh-missing-${i}`));
      }
    }
    const t0 = performance.now();
    const results = await Promise.allSettled(calls);
    const ms = performance.now() - t0;
    let missing = 0;
    try {
      for (const [k, r] of results.entries()) {
        const { kind, i } = plan[k] as Outcome;
        if (kind === 'missing') {
          assert.equal(r.status, 'rejected', `vh-missing-${i} resolved`);
          const e = (r as PromiseRejectedResult).reason as unknown;
          assert.ok(e instanceof LibvirtError, `call ${i}: not a LibvirtError: ${String(e)}`);
          assert.equal(e.codeName, 'VIR_ERR_NO_DOMAIN', `call ${i}: ${e.message}`);
          assert.equal(e.api, 'virDomainLookupByName');
          const named = quotedNames(e.message);
          assert.ok(named.length > 0 && named.every((n) => n === `vh-missing-${i}`), `call ${i} got someone else's error: ${e.message}`);
          missing++;
          continue;
        }
        assert.equal(r.status, 'fulfilled', `call ${i} (${kind}) failed: ${r.status === 'rejected' ? String(r.reason) : ''}`);
        const v = (r as PromiseFulfilledResult<unknown>).value;
        if (kind === 'info-run') checkRunInfo(v as DomainInfo);
        else if (kind === 'info-def') checkDefInfo(v as DomainInfo);
        else {
          const d = v as Domain;
          const want = i % 2 ? [runName, runUuid] : [defName, defUuid];
          assert.deepEqual([d.name, d.uuid], want, `lookup ${i}`);
        }
      }
    } finally {
      await Promise.all(
        results.map((r, k) => (plan[k]?.kind === 'lookup-run' && r.status === 'fulfilled' ? (r.value as Domain).free() : undefined)),
      );
    }
    assert.equal(missing, (CONCURRENT * 2) / 5);
    const s = c.queue.stats();
    console.log(`${CONCURRENT} concurrent calls over ${LANES} lanes in ${ms.toFixed(0)} ms (${((CONCURRENT / ms) * 1000).toFixed(0)} calls/s); queue ${JSON.stringify(s)}`);
  });

  it(`${TOTAL_CALLS.toLocaleString('en')} calls (getInfo, lookup+free, failed lookups) leak nothing (C heap in use, RSS)`, async () => {
    const c = conn as Connection;
    let calls = 0;
    let op = 0;
    let failures = 0;
    // One operation: getInfo (1 call), lookup + free (2 calls) or a failed lookup (1 call).
    async function one(): Promise<void> {
      const k = op++;
      switch (k % 4) {
        case 0:
          checkRunInfo(await (runHandles[k % LANES] as Domain).getInfo());
          calls += 1;
          break;
        case 1:
          checkDefInfo(await (defHandles[k % LANES] as Domain).getInfo());
          calls += 1;
          break;
        case 2: {
          const d = await c.lookupByName(k % 8 === 2 ? runName : defName);
          await d.free();
          calls += 2;
          break;
        }
        default:
          try {
            await c.lookupByName(`vh-missing-${k}`);
            assert.fail(`vh-missing-${k} resolved`);
          } catch (e) {
            if (!(e instanceof LibvirtError) || e.codeName !== 'VIR_ERR_NO_DOMAIN') throw e;
            failures++;
          }
          calls += 1;
      }
    }
    async function soak(target: number): Promise<void> {
      const worker = async (): Promise<void> => {
        while (calls < target) await one();
      };
      await Promise.all(Array.from({ length: WINDOW }, worker));
    }

    await soak(WARMUP_CALLS);
    gc();
    await new Promise((r) => setTimeout(r, 100));
    gc();
    const rss0 = rssMiB();
    const heapC0 = mallocInUse() / MiB;
    const heap0 = process.memoryUsage().heapUsed / MiB;
    const t0 = performance.now();
    const calls0 = calls;
    // In 10,000-call steps, sampling the C heap in use after each, so a slope shows in the log.
    const series: string[] = [];
    for (let target = calls0 + 10_000; calls < TOTAL_CALLS; target = Math.min(target + 10_000, TOTAL_CALLS)) {
      await soak(target);
      gc();
      series.push((mallocInUse() / MiB).toFixed(2));
    }
    const secs = (performance.now() - t0) / 1000;
    gc();
    await new Promise((r) => setTimeout(r, 100));
    gc();
    const rss1 = rssMiB();
    const heapC1 = mallocInUse() / MiB;
    const heap1 = process.memoryUsage().heapUsed / MiB;
    const rate = (calls - calls0) / secs;
    console.log(
      `${calls} calls (${failures} failed lookups): RSS after ${calls0}-call warm-up ${rss0.toFixed(1)} MiB, at the end ${rss1.toFixed(1)} MiB ` +
        `(+${(rss1 - rss0).toFixed(1)} MiB, bound ${RSS_BOUND_MIB}); C heap in use ${heapC0.toFixed(2)} -> ${heapC1.toFixed(2)} MiB ` +
        `(+${(heapC1 - heapC0).toFixed(2)}, bound ${MALLOC_BOUND_MIB}); JS heap ${heap0.toFixed(1)} -> ${heap1.toFixed(1)} MiB; ` +
        `${(calls - calls0).toLocaleString('en')} calls in ${secs.toFixed(1)} s = ${rate.toFixed(0)} calls/s; C heap MiB every 10k calls: ${series.join(' ')}`,
    );
    assert.ok(calls >= TOTAL_CALLS);
    assert.ok(heapC1 - heapC0 < MALLOC_BOUND_MIB, `C heap in use grew ${(heapC1 - heapC0).toFixed(2)} MiB over ${calls - calls0} calls (bound ${MALLOC_BOUND_MIB} MiB)`);
    // Slope over the soak: a per-call leak rises steadily, settling noise does not.
    const drift = Number(series.at(-1)) - Number(series[0]);
    assert.ok(drift < SLOPE_BOUND_MIB, `C heap in use rose ${drift.toFixed(2)} MiB from the first to the last 10k-call sample (${series.join(' ')})`);
    assert.ok(rss1 - rss0 < RSS_BOUND_MIB, `RSS grew ${(rss1 - rss0).toFixed(1)} MiB over ${calls - calls0} calls (bound ${RSS_BOUND_MIB} MiB)`);
    const s = c.queue.stats();
    assert.equal(s.inFlight, 0);
  });
});
