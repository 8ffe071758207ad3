/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * Per-VMI metrics: the bounded collector (concurrency, per-VMI timeout, overall deadline, stale
 * samples, garbage from a launcher), the KubeVirt-named series on /metrics through the HTTP
 * server, and the work-queue figures behind the reconcile metrics.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { ErrorCodes, VhError } from '../../src/errors';
import type { StatsReport } from '../../src/launcher-protocol/messages';
import { checkDomainStats } from '../../src/launcher-protocol/validate';
import { statsToWire } from '../../src/launcher/stats-report';
import { Metrics } from '../../src/http/metrics';
import { HttpServer } from '../../src/http/server';
import { createLogger } from '../../src/log';
import { Readiness } from '../../src/util/readiness';
import { LauncherLink } from '../../src/grpc/launcher-service';
import { MetricsCollector, type StatsTarget, statsTargets } from '../../src/vmi/control/metrics-collector';
import { WorkQueue } from '../../src/vmi/control/work-queue';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A QEMU domain's stats as its launcher sends them and the transport checks them. */
function qemuReport(): StatsReport {
  return checkDomainStats(statsToWire(
    {
      name: 'ns_vm',
      uuid: '00000000-0000-0000-0000-000000000000',
      raw: {},
      state: { state: 1, reason: 1 },
      cpu: { timeNs: 2_500_000_000n, userNs: 1_000_000_000n, systemNs: 500_000_000n },
      balloon: { currentKiB: 1_048_576n, maximumKiB: 2_097_152n, availableKiB: 1_000_000n, usableKiB: 600_000n, rssKiB: 300_000n, majorFault: 7n, minorFault: 12345n, swapInKiB: 0n },
      vcpuCurrent: 2,
      vcpus: [{ state: 1, timeNs: 1_000_000_000n, waitNs: 0n }, { state: 2, timeNs: 3_000_000_000n }],
      net: [{ name: 'vnet0', rxBytes: 1000n, txBytes: 2000n, rxPackets: 10n, txPackets: 20n, rxErrs: 0n, txErrs: 0n, rxDrop: 1n, txDrop: 0n }],
      block: [{ name: 'vda', path: '/img', rdReqs: 5n, rdBytes: 4096n, rdTimesNs: 1_500_000_000n, wrReqs: 3n, wrBytes: 512n, wrTimesNs: 0n, flReqs: 2n }],
    },
    Date.now(),
  ));
}

/** A target answering `answer()` after `delayMs` (never, for Infinity), counting calls. */
function fake(name: string, answer: () => StatsReport = qemuReport, delayMs = 0) {
  const st = { calls: 0 };
  const target: StatsTarget = {
    uid: `uid-${name}`,
    namespace: 'ns',
    name,
    stats: (timeoutMs) => {
      st.calls++;
      assert.ok(timeoutMs > 0);
      if (delayMs === Infinity) return new Promise<StatsReport>(() => undefined);
      return sleep(delayMs).then(answer);
    },
  };
  return { target, st };
}

describe('MetricsCollector', () => {
  test('asks at most `concurrency` launchers at once and returns every sample', async () => {
    let active = 0;
    let maxActive = 0;
    const targets: StatsTarget[] = Array.from({ length: 20 }, (_, i) => ({
      uid: `u${i}`,
      namespace: 'ns',
      name: `vm${i}`,
      stats: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(15);
        active--;
        return qemuReport();
      },
    }));
    const c = new MetricsCollector({ targets: () => targets, concurrency: 4, cacheMs: 0 });
    const r = await c.collect();
    assert.equal(maxActive, 4);
    assert.equal(r.samples.length, 20);
    assert.ok(r.samples.every((s) => s.fresh));
    assert.equal(r.samples[3]?.report.cpu.timeNs, 2.5e9);
  });

  test('a launcher that never answers cannot hold the scrape: deadline kept, the others present, then its last good sample served with its age', async () => {
    let stuck = false;
    const a = fake('a');
    const b = fake('b');
    const s = fake('s');
    const sTarget: StatsTarget = { ...s.target, stats: (ms) => (stuck ? new Promise<StatsReport>(() => undefined) : (s.target.stats as NonNullable<StatsTarget['stats']>)(ms)) };
    const c = new MetricsCollector({ targets: () => [a.target, sTarget, b.target], concurrency: 2, perVmiTimeoutMs: 150, deadlineMs: 400, cacheMs: 0 });
    const first = await c.collect();
    assert.deepEqual(first.samples.map((x) => [x.name, x.fresh]), [['a', true], ['s', true], ['b', true]]);

    stuck = true;
    await sleep(20);
    const t0 = Date.now();
    const second = await c.collect();
    const took = Date.now() - t0;
    assert.ok(took < 400, `took ${took} ms`);
    assert.deepEqual(second.samples.map((x) => [x.name, x.fresh]), [['a', true], ['s', false], ['b', true]]);
    const stale = second.samples.find((x) => x.name === 's');
    assert.ok(stale && second.at - stale.receivedAt >= 20, 'the stale sample keeps its receive time (its age)');
    assert.equal(c.counters().timeouts, 1);

    // The stuck launcher still owes that answer: it is not asked again (no pile-up), still stale.
    const third = await c.collect();
    assert.equal(c.counters().skipped, 1);
    assert.equal(third.samples.find((x) => x.name === 's')?.fresh, false);
  });

  test('every launcher stuck: the collection still ends at the overall deadline', async () => {
    const targets = Array.from({ length: 30 }, (_, i) => fake(`x${i}`, qemuReport, Infinity).target);
    const c = new MetricsCollector({ targets: () => targets, concurrency: 3, perVmiTimeoutMs: 200, deadlineMs: 300, cacheMs: 0 });
    const t0 = Date.now();
    const r = await c.collect();
    const took = Date.now() - t0;
    assert.ok(took >= 290 && took < 500, `took ${took} ms`);
    assert.deepEqual(r.samples, []);
    // Three asked at once, each timing out after 200 ms: three more were asked before 300 ms.
    await sleep(150);
    assert.equal(c.counters().timeouts, 6);
  });

  test('stale samples expire after maxStaleMs; a VMI that is no longer a target loses its sample', async () => {
    let fail = false;
    const a = fake('a', () => {
      if (fail) throw new VhError(ErrorCodes.FAILED_PRECONDITION, 'launcher: boom');
      return qemuReport();
    });
    const b = fake('b');
    let targets = [a.target, b.target];
    const errors: string[] = [];
    const c = new MetricsCollector({ targets: () => targets, maxStaleMs: 50, cacheMs: 0, onError: (t, e) => errors.push(`${t.name}: ${(e as Error).message}`) });
    assert.equal((await c.collect()).samples.length, 2);
    fail = true;
    assert.equal((await c.collect()).samples.find((x) => x.name === 'a')?.fresh, false);
    await sleep(70);
    assert.deepEqual((await c.collect()).samples.map((x) => x.name), ['b']);
    assert.deepEqual(errors, ['a: launcher: boom', 'a: launcher: boom']);
    targets = [a.target];
    fail = false;
    assert.deepEqual((await c.collect()).samples.map((x) => x.name), ['a']);
    targets = [b.target, { ...a.target, stats: null }];
    const r = await c.collect();
    assert.deepEqual(r.samples.map((x) => [x.name, x.fresh]), [['b', true], ['a', false]], 'a disconnected launcher: last good sample');
    assert.equal(c.counters().errors, 3);
  });

  test('concurrent scrapes share one collection; a finished one is reused for cacheMs', async () => {
    const a = fake('a', qemuReport, 30);
    const c = new MetricsCollector({ targets: () => [a.target], cacheMs: 200 });
    const [r1, r2] = await Promise.all([c.collect(), c.collect()]);
    assert.equal(r1, r2);
    assert.equal(await c.collect(), r1);
    assert.equal(a.st.calls, 1);
  });

  test('a refused answer (the transport found the stats malformed) is an error, never a sample', async () => {
    const g = fake('g', () => {
      throw new VhError(ErrorCodes.FAILED_PRECONDITION, 'launcher: bad stats answer: stats.cpu.time_ns: not an unsigned 64-bit integer');
    });
    const ok = fake('ok');
    const c = new MetricsCollector({ targets: () => [g.target, ok.target], cacheMs: 0 });
    const res = await c.collect();
    assert.deepEqual(res.samples.map((x) => x.name), ['ok']);
    assert.equal(c.counters().errors, 1);
  });
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-vmi-metrics-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

describe('/metrics: KubeVirt-named per-VMI series', () => {
  function server(targets: () => StatsTarget[], queue: WorkQueue) {
    const readiness = new Readiness({ listeners: 'listeners not bound' });
    const collector = new MetricsCollector({ targets, cacheMs: 0, perVmiTimeoutMs: 100, deadlineMs: 300 });
    const metrics = new Metrics({
      version: '1.0.0',
      nodeName: 'node-a',
      ready: () => readiness.ready,
      nodeInfo: () => null,
      vmis: () => ({ phases: { Running: 2 }, queue: queue.stats() }),
      vmiStats: collector,
    });
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const s = new HttpServer({
      logger: createLogger({ level: 'silent', nodeName: 'node-a', destination: sink }),
      socketPath: path.join(tmp, `m${Math.random().toString(36).slice(2)}.sock`),
      tcp: { host: '127.0.0.1', port: 0 },
      readiness,
      metrics,
      nodeInfo: () => null,
    });
    return { s, readiness, collector };
  }

  test('names, labels and units; unreported fields have no series; a deleted VMI loses its series', async () => {
    const web = fake('web').target;
    const tiny = fake('tiny', () => checkDomainStats(statsToWire({ name: 'ns_tiny', uuid: '', raw: {}, state: { state: 1 } }, 0))).target;
    const stuck = fake('stuck', qemuReport, Infinity).target;
    let targets = [web, tiny, stuck];
    const queue = new WorkQueue(async () => sleep(2), 1);
    queue.add('k1');
    queue.add('k2');
    await queue.idle();
    const { s, readiness } = server(() => targets, queue);
    readiness.ok('listeners');
    const t0 = Date.now();
    const body = (await s.app.inject('/metrics')).body;
    assert.ok(Date.now() - t0 < 1000, 'the stuck launcher did not hold the scrape');
    const L = 'node="node-a",namespace="ns",name="web"';
    const expect = [
      `kubevirt_virt_handler_ready_status 1`,
      `kubevirt_vmi_phase_count{phase="running",node="node-a"} 2`,
      `kubevirt_vmi_cpu_usage_seconds_total{${L}} 2.5`,
      `kubevirt_vmi_cpu_user_usage_seconds_total{${L}} 1`,
      `kubevirt_vmi_cpu_system_usage_seconds_total{${L}} 0.5`,
      `kubevirt_vmi_vcpu_seconds_total{${L},id="0",state="running"} 1`,
      `kubevirt_vmi_vcpu_seconds_total{${L},id="1",state="blocked"} 3`,
      `kubevirt_vmi_vcpu_wait_seconds_total{${L},id="0"} 0`,
      `kubevirt_vmi_memory_available_bytes{${L}} ${1_000_000 * 1024}`,
      `kubevirt_vmi_memory_usable_bytes{${L}} ${600_000 * 1024}`,
      `kubevirt_vmi_memory_used_bytes{${L}} ${400_000 * 1024}`,
      `kubevirt_vmi_memory_resident_bytes{${L}} ${300_000 * 1024}`,
      `kubevirt_vmi_memory_domain_bytes{${L}} ${2_097_152 * 1024}`,
      `kubevirt_vmi_memory_actual_balloon_bytes{${L}} ${1_048_576 * 1024}`,
      `kubevirt_vmi_memory_swap_in_traffic_bytes{${L}} 0`,
      `kubevirt_vmi_memory_pgmajfault_total{${L}} 7`,
      `kubevirt_vmi_memory_pgminfault_total{${L}} 12345`,
      `kubevirt_vmi_network_receive_bytes_total{${L},interface="vnet0"} 1000`,
      `kubevirt_vmi_network_transmit_bytes_total{${L},interface="vnet0"} 2000`,
      `kubevirt_vmi_network_receive_packets_total{${L},interface="vnet0"} 10`,
      `kubevirt_vmi_network_transmit_packets_total{${L},interface="vnet0"} 20`,
      `kubevirt_vmi_network_receive_errors_total{${L},interface="vnet0"} 0`,
      `kubevirt_vmi_network_transmit_errors_total{${L},interface="vnet0"} 0`,
      `kubevirt_vmi_network_receive_packets_dropped_total{${L},interface="vnet0"} 1`,
      `kubevirt_vmi_network_transmit_packets_dropped_total{${L},interface="vnet0"} 0`,
      `kubevirt_vmi_storage_read_traffic_bytes_total{${L},drive="vda"} 4096`,
      `kubevirt_vmi_storage_write_traffic_bytes_total{${L},drive="vda"} 512`,
      `kubevirt_vmi_storage_iops_read_total{${L},drive="vda"} 5`,
      `kubevirt_vmi_storage_iops_write_total{${L},drive="vda"} 3`,
      `kubevirt_vmi_storage_read_times_seconds_total{${L},drive="vda"} 1.5`,
      `kubevirt_vmi_storage_write_times_seconds_total{${L},drive="vda"} 0`,
      `kubevirt_vmi_storage_flush_requests_total{${L},drive="vda"} 2`,
      `virt_handler_vmi_stats_sample_age_seconds{${L}} 0`,
      `virt_handler_vmi_stats_timeouts_total 1`,
      `kubevirt_workqueue_depth{name="virt-handler-vmi"} 0`,
      `kubevirt_workqueue_adds_total{name="virt-handler-vmi"} 2`,
      `kubevirt_workqueue_work_duration_seconds_count{name="virt-handler-vmi"} 2`,
      `kubevirt_workqueue_queue_duration_seconds_bucket{le="+Inf",name="virt-handler-vmi"} 2`,
      `virt_handler_reconcile_queue_depth 0`,
    ];
    const lines = new Set(body.split('\n'));
    for (const e of expect) assert.ok(lines.has(e), `missing line: ${e}`);
    assert.match(body, /^# TYPE kubevirt_vmi_cpu_usage_seconds_total counter$/m);
    assert.match(body, /^# TYPE kubevirt_vmi_memory_resident_bytes gauge$/m);
    assert.match(body, /^# TYPE kubevirt_workqueue_work_duration_seconds histogram$/m);
    assert.match(body, /^kubevirt_workqueue_work_duration_seconds_bucket\{le="0.001",name="virt-handler-vmi"\} \d$/m);
    assert.match(body, /^virt_handler_vmi_stats_collection_duration_seconds \d/m);
    // Not reported by libvirt: no series (no invented zeros), for tiny nothing but its age.
    assert.doesNotMatch(body, /^kubevirt_vmi_storage_flush_times_seconds_total\{/m);
    assert.doesNotMatch(body, /^kubevirt_vmi_memory_cached_bytes\{/m);
    assert.doesNotMatch(body, /^kubevirt_vmi_memory_unused_bytes\{/m);
    assert.deepEqual(body.split('\n').filter((l) => l.includes('name="tiny"')), ['virt_handler_vmi_stats_sample_age_seconds{node="node-a",namespace="ns",name="tiny"} 0']);
    assert.doesNotMatch(body, /name="stuck"/);

    targets = [tiny];
    const after = (await s.app.inject('/metrics')).body;
    assert.doesNotMatch(after, /name="web"/, 'series of a deleted VMI disappear');
    await queue.stop();
  });
});

describe('WorkQueue latency figures', () => {
  test('wait (queued -> started) and run durations land in the histograms', async () => {
    const q = new WorkQueue(async (k) => sleep(k === 'slow' ? 60 : 1), 1);
    q.add('slow');
    q.add('fast');
    await q.idle();
    const st = q.stats();
    assert.equal(st.adds, 2);
    assert.equal(st.runSeconds.count, 2);
    assert.equal(st.waitSeconds.count, 2);
    assert.ok(st.runSeconds.sum >= 0.055, `run sum ${st.runSeconds.sum}`);
    // 'fast' waited behind 'slow' (one worker).
    assert.ok(st.waitSeconds.sum >= 0.055, `wait sum ${st.waitSeconds.sum}`);
    assert.equal(st.runSeconds.counts.reduce((a, b) => a + b, 0), 2);
    await q.stop();
  });
});

describe('LauncherLink.stats and the collection targets', () => {
  test('stats resolves with the checked answer; a malformed one, errors and deadlines reject; commands go out in wire form', async () => {
    const written: Array<Record<string, any>> = [];
    const call = { write: (m: Record<string, any>) => written.push(m) } as unknown as ConstructorParameters<typeof LauncherLink>[2];
    const link = new LauncherLink('u1', 42, call);
    const p = link.stats(1000);
    assert.deepEqual(written[0], { command: { id: 'c1', getStats: {} } });
    link.result({ id: 'c1', ok: true, error: '', stats: { takenAtMs: 1, state: null, cpu: { timeNs: 5 }, balloon: null, vcpus: [], net: [{ name: '', rxBytes: 1 }], block: [] } });
    assert.deepEqual(await p, { cpu: { timeNs: 5 }, vcpus: [], balloon: {}, net: [], block: [] });
    const garbage = link.stats(1000);
    link.result({ id: 'c2', ok: true, error: '', stats: { cpu: { timeNs: -1 } } });
    await assert.rejects(garbage, /launcher: bad stats answer: stats\.cpu\.time_ns: not an unsigned 64-bit integer/);
    const none = link.stats(1000);
    link.result({ id: 'c3', ok: true, error: '', stats: null });
    await assert.rejects(none, /answered get_stats without stats/);
    const bad = link.stats(1000);
    link.result({ id: 'c4', ok: false, error: 'get_stats: no domain yet', stats: null });
    await assert.rejects(bad, /launcher: get_stats: no domain yet/);
    await assert.rejects(link.stats(20), (e: unknown) => e instanceof VhError && e.code === ErrorCodes.DEADLINE_EXCEEDED);
    const s = link.send({ pause: {} }, 1000);
    link.result({ id: 'c6', ok: true, error: '', stats: null });
    assert.equal(await s, undefined);
    void link.send({ start: { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [{ kind: 'overlay', disk: 'root', path: '/v/root.qcow2', backingFile: '/b.img', backingFormat: 'raw' }, { kind: 'hostDisk', disk: 'h', path: '/h.img', sizeBytes: null, create: false }] } }, 50).catch(() => undefined);
    assert.deepEqual(written.at(-1), {
      command: { id: 'c7', start: { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [{ disk: 'root', path: '/v/root.qcow2', overlay: { backingFile: '/b.img', backingFormat: 2 } }, { disk: 'h', path: '/h.img', hostDisk: { create: false } }] } },
    });
  });

  test('statsTargets: Running VMIs only; a VMI without an open link has no stats function', () => {
    const link = { isOpen: true, stats: async () => ({ cpu: {}, vcpus: [], balloon: {}, net: [], block: [] }) } as unknown as LauncherLink;
    const e = (name: string, phase: string, channel: LauncherLink | null) => ({ uid: `u-${name}`, namespace: 'ns', name, phase, channel });
    const t = statsTargets([e('a', 'Running', link), e('b', 'Pending', link), e('c', 'Running', null), e('d', 'Running', { ...link, isOpen: false } as LauncherLink)]);
    assert.deepEqual(t.map((x) => [x.name, x.stats !== null]), [['a', true], ['c', false], ['d', false]]);
  });
});
