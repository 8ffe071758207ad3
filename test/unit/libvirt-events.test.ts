/**
 * libvirt events on test:///default: lifecycle events in order, delivery latency, the event loop
 * stopping cleanly (a child process must exit by itself), and no callback leak across 100
 * events-enabled connections.
 */
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { tryLoadLibvirt } from '../../src/libvirt/ffi';
import { Connection } from '../../src/libvirt/connection';
import { eventLoop } from '../../src/libvirt/event-loop';
import { DOMAIN_EVENT_NAMES, type DomainEvent, type LifecycleEvent, callbackStats, lifecycleDetailName, lifecycleEventName } from '../../src/libvirt/events';

const URI = 'test:///default';
const unavailable = tryLoadLibvirt().error;

function domainXml(name: string): string {
  return `<domain type='test'><name>${name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

describe('libvirt event names', () => {
  it('decodes event and detail enums, unknown values included', () => {
    assert.equal(lifecycleEventName(5), 'STOPPED');
    assert.equal(lifecycleDetailName(5, 1), 'destroyed');
    assert.equal(lifecycleDetailName(2, 0), 'booted');
    assert.equal(lifecycleEventName(99), 'EVENT_99');
    assert.equal(lifecycleDetailName(3, 99), 'detail_99');
  });
});

describe('libvirt events on test:///default', () => {
  let conn: Connection;

  before(async () => {
    assert.equal(unavailable, null, `libvirt binding unavailable: ${unavailable ?? ''}`);
    conn = await Connection.open(URI, { lanes: 2, events: true });
  });
  after(async () => {
    await conn?.close();
    assert.equal(eventLoop().isRunning, false, 'the loop stops when the last events connection closes');
  });

  it('define -> start -> suspend -> resume -> destroy -> undefine emits the six events in order', async () => {
    const name = 'vh-ev-order';
    const seen: LifecycleEvent[] = [];
    const listener = (ev: LifecycleEvent): void => {
      if (ev.domain === name) seen.push(ev);
    };
    conn.on('lifecycle', listener);
    try {
      const d = await conn.defineXML(domainXml(name));
      await d.create();
      await d.suspend();
      await d.resume();
      await d.destroy();
      await d.undefine();
      const uuid = d.uuid;
      await d.free();
      const deadline = Date.now() + 2000;
      while (seen.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 50)); // nothing extra may follow
      assert.deepEqual(
        seen.map((e) => e.event),
        ['DEFINED', 'STARTED', 'SUSPENDED', 'RESUMED', 'STOPPED', 'UNDEFINED'],
      );
      assert.deepEqual(
        seen.map((e) => e.detail),
        ['added', 'booted', 'paused', 'unpaused', 'destroyed', 'removed'],
      );
      assert.ok(seen.every((e) => e.uuid === uuid));
    } finally {
      conn.off('lifecycle', listener);
    }
  });

  it('events() yields every kind tagged, in order, and ends on abort', async () => {
    const name = 'vh-ev-iter';
    const ac = new AbortController();
    const seen: DomainEvent[] = [];
    const consumer = (async () => {
      for await (const ev of conn.events(ac.signal)) {
        if (ev.domain !== name) continue;
        seen.push(ev);
        if (seen.length === 3) ac.abort();
      }
    })();
    const tagged: string[] = [];
    const onEvent = (ev: DomainEvent): void => {
      if (ev.domain === name) tagged.push(ev.kind);
    };
    conn.on('event', onEvent);
    try {
      const d = await conn.defineXML(domainXml(name));
      await d.create();
      await d.destroy();
      await d.undefine();
      await d.free();
      await Promise.race([consumer, new Promise((_, rej) => setTimeout(() => rej(new Error('iterator did not end after abort')), 3000))]);
    } finally {
      conn.off('event', onEvent);
    }
    assert.deepEqual(
      seen.map((e) => (e.kind === 'lifecycle' ? `${e.kind}:${e.event}` : e.kind)),
      ['lifecycle:DEFINED', 'lifecycle:STARTED', 'lifecycle:STOPPED'],
    );
    assert.ok(tagged.length >= 3 && tagged.every((k) => k === 'lifecycle'), `tagged kinds: ${tagged.join(',')}`);
  });

  it('events() refuses a connection opened without events', async () => {
    const plain = await Connection.open(URI, { lanes: 1 });
    try {
      await assert.rejects(plain.events().next(), /open the connection with \{events: true\}/);
    } finally {
      await plain.close();
    }
  });

  it('delivers events promptly (p50/p99 from issuing the call to the event)', async () => {
    const name = 'vh-ev-latency';
    const d = await conn.defineXML(domainXml(name));
    await d.create();
    let waiting: { want: string; resolve: (t: number) => void } | null = null;
    const listener = (ev: LifecycleEvent): void => {
      if (ev.domain === name && waiting && ev.event === waiting.want) {
        const w = waiting;
        waiting = null;
        w.resolve(performance.now());
      }
    };
    conn.on('lifecycle', listener);
    const samples: number[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const want = i % 2 === 0 ? 'SUSPENDED' : 'RESUMED';
        const arrived = new Promise<number>((resolve) => (waiting = { want, resolve }));
        const t0 = performance.now();
        await (i % 2 === 0 ? d.suspend() : d.resume());
        const t1 = await Promise.race([arrived, new Promise<number>((_, rej) => setTimeout(() => rej(new Error(`no ${want} event in 2 s`)), 2000))]);
        samples.push(t1 - t0);
      }
    } finally {
      conn.off('lifecycle', listener);
      await d.destroy();
      await d.undefine();
      await d.free();
    }
    samples.sort((a, b) => a - b);
    const p50 = percentile(samples, 50);
    const p99 = percentile(samples, 99);
    console.log(`libvirt event latency (call issued -> JS listener, ${samples.length} events): p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, max ${(samples.at(-1) as number).toFixed(3)} ms`);
    assert.ok(p99 < 200, `p99 ${p99.toFixed(1)} ms`);
  });

  it('100 events-enabled connections opened and closed leave no callback behind', async () => {
    const before = callbackStats();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 100; i++) {
      const c = await Connection.open(URI, { lanes: 1, events: true });
      assert.ok(c.eventsEnabled);
      await c.close();
    }
    // libvirt calls the free callback when it really drops a registration.
    const deadline = Date.now() + 2000;
    const kinds = DOMAIN_EVENT_NAMES.length;
    while (callbackStats().freed - before.freed < 100 * kinds && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const now = callbackStats();
    assert.equal(now.trampolines, kinds + 2, 'koffi trampolines are process-wide (one per event kind + close + free), not per connection');
    assert.equal(now.liveSinks, before.liveSinks);
    assert.equal(now.registered - before.registered, 100 * kinds);
    assert.equal(now.freed - before.freed, 100 * kinds, 'libvirt released every domain-event registration');
    const grownMiB = (process.memoryUsage().rss - rss0) / (1024 * 1024);
    assert.ok(grownMiB < 64, `RSS grew ${grownMiB.toFixed(1)} MiB`);
    assert.ok(eventLoop().isRunning, 'the suite connection still holds the loop');
  });
});

describe('libvirt event loop shutdown', () => {
  it('stops with the last events connection and restarts with the next, also when they overlap', async () => {
    for (let i = 0; i < 20; i++) {
      const a = await Connection.open(URI, { lanes: 1, events: true });
      assert.ok(eventLoop().isRunning);
      // Close A (its release asks the loop to stop) while B opens (its acquire cancels that).
      const [, b] = await Promise.all([a.close(), Connection.open(URI, { lanes: 1, events: true })]);
      const name = `vh-ev-cycle-${i}`;
      const got = new Promise<LifecycleEvent>((resolve) => b.on('lifecycle', (ev) => ev.domain === name && resolve(ev)));
      const d = await b.defineXML(domainXml(name));
      assert.equal((await got).event, 'DEFINED');
      await d.undefine();
      await d.free();
      await b.close();
      assert.equal(eventLoop().isRunning, false, `cycle ${i}: loop still running`);
    }
  });

  it('a child process that uses events stops its loop and exits by itself, promptly, code 0', async () => {
    const dist = path.join(__dirname, '..', '..', 'src', 'libvirt');
    const script = `
      const { Connection } = require(${JSON.stringify(path.join(dist, 'connection'))});
      const { eventLoop } = require(${JSON.stringify(path.join(dist, 'event-loop'))});
      (async () => {
        eventLoop().start();
        eventLoop().start(); // idempotent
        const c = await Connection.open('test:///default', { lanes: 1, events: true });
        const got = new Promise((resolve) => c.once('lifecycle', resolve));
        const d = await c.defineXML(${JSON.stringify(domainXml('vh-ev-child'))});
        const ev = await got;
        console.log('EVENT ' + ev.event + ' ' + ev.domain);
        await d.undefine();
        await d.free();
        await c.close();
        if (!eventLoop().isRunning) throw new Error('start() should keep the loop after the last connection closes');
        const t = Date.now();
        await eventLoop().stop();
        await eventLoop().stop(); // idempotent
        console.log('STOPPED ' + (Date.now() - t));
      })().catch((e) => { console.error(e); process.exitCode = 3; });
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let stoppedAt = 0;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (!stoppedAt && out.includes('STOPPED')) stoppedAt = performance.now();
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const exitedAt = performance.now();
    clearTimeout(killer);
    assert.equal(code, 0, `exit ${String(code)}; stdout: ${out}; stderr: ${err}`);
    assert.match(out, /EVENT DEFINED vh-ev-child/);
    const stopMs = Number(/STOPPED (\d+)/.exec(out)?.[1]);
    assert.ok(stopMs < 1000, `stop() took ${stopMs} ms`);
    const exitLag = exitedAt - stoppedAt;
    console.log(`event loop stop() ${stopMs} ms; process exit ${exitLag.toFixed(0)} ms after stop`);
    assert.ok(exitLag < 1000, `process exited ${exitLag.toFixed(0)} ms after stop()`);
  });
});
