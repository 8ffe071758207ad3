/**
 * The libvirt connection supervisor with a fake opener (no libvirt): growing retry delays, reconnect
 * after loss with events re-wired to the new connection, no retry storm when a daemon accepts
 * and drops connections, stop() during backoff, and one log line per distinct error.
 * backoffDelay itself: test/unit/util-backoff.test.ts.
 * The same supervisor against a real libvirtd that is killed and restarted: test/libvirt/reconnect.test.ts.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log';
import { ErrorCodes, VhError } from '../../src/errors';
import { type LibvirtState, LibvirtSupervisor, type SupervisedConnection } from '../../src/libvirt/supervisor';
import type { Backoff } from '../../src/util/backoff';

class FakeConn extends EventEmitter implements SupervisedConnection {
  closed = false;
  async close(): Promise<void> {
    this.closed = true;
  }
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug', nodeName: 't', destination }), lines };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const FAST: Partial<Backoff> = { initialMs: 10, maxMs: 80, stableMs: 200 };

async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

describe('LibvirtSupervisor (fake connections)', () => {
  it('retries with growing delays, then connects; status tells the story', async () => {
    const { logger, lines } = capture();
    const opens: number[] = [];
    const conn = new FakeConn();
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///fake',
      logger,
      backoff: FAST,
      random: () => 1,
      open: async () => {
        opens.push(Date.now());
        if (opens.length <= 3) throw new Error('Failed to connect socket: No such file or directory');
        return conn;
      },
    });
    const states: LibvirtState[] = [];
    sup.on('state', (s) => states.push(s));
    sup.start();
    const c = await sup.whenConnected(3000);
    assert.equal(c, conn);
    assert.equal(opens.length, 4);
    const gaps = opens.slice(1).map((t, i) => t - (opens[i] as number));
    // random()=1 gives exactly 10, 20, 40 ms (timers may fire late, never early).
    [10, 20, 40].forEach((want, i) => assert.ok((gaps[i] as number) >= want - 1, `gap ${i} ${gaps[i]} < ${want}`));
    assert.equal(states.at(-1), 'connected');
    const st = sup.status();
    assert.equal(st.state, 'connected');
    assert.equal(st.connects, 1);
    assert.equal(st.lastError, null);
    const warns = lines.filter((l) => l.msg === 'libvirt connect failed; retrying with backoff');
    assert.equal(warns.length, 1, 'the same error is logged once at warn, then at debug');
    assert.equal(lines.filter((l) => l.msg === 'libvirt connect failed again').length, 2);
    await sup.stop();
    assert.ok(conn.closed);
    assert.equal(sup.state, 'stopped');
  });

  it('after a loss: disconnected, reconnecting, then events come from the new connection only', async () => {
    const { logger } = capture();
    const conns: FakeConn[] = [];
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///fake',
      logger,
      backoff: FAST,
      open: async () => {
        const c = new FakeConn();
        conns.push(c);
        return c;
      },
    });
    const got: string[] = [];
    sup.on('lifecycle', (ev) => got.push(ev.domain));
    const lostReasons: string[] = [];
    sup.on('disconnected', (r) => lostReasons.push(r));
    sup.start();
    await sup.whenConnected(1000);
    const first = conns[0] as FakeConn;
    first.emit('lifecycle', { domain: 'a' });
    first.emit('closed', 'eof');
    assert.equal(sup.state, 'reconnecting');
    assert.equal(sup.connection, null);
    await sup.whenConnected(1000);
    assert.equal(conns.length, 2);
    assert.ok(first.closed, 'the dead connection was closed');
    first.emit('lifecycle', { domain: 'stale' });
    (conns[1] as FakeConn).emit('lifecycle', { domain: 'b' });
    assert.deepEqual(got, ['a', 'b']);
    assert.deepEqual(lostReasons, ['eof']);
    const st = sup.status();
    assert.equal(st.connects, 2);
    assert.equal(st.disconnects, 1);
    await sup.stop();
  });

  it('a daemon that accepts then drops every connection gets backed-off attempts, not a storm', async () => {
    const { logger } = capture();
    let opens = 0;
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///flappy',
      logger,
      backoff: { initialMs: 10, maxMs: 160, stableMs: 10_000 },
      random: () => 1,
      open: async () => {
        opens++;
        const c = new FakeConn();
        setTimeout(() => c.emit('closed', 'eof'), 1);
        return c;
      },
    });
    sup.start();
    await sleep(700);
    await sup.stop();
    // Delays 10, 20, 40, 80, 160, 160...: at most ~7 opens in 700 ms; a storm would be hundreds.
    assert.ok(opens >= 3 && opens <= 8, `${opens} opens in 700 ms`);
    assert.ok(sup.status().disconnects >= 2);
  });

  it('stop() during backoff cancels the retry and rejects waiters', async () => {
    const { logger } = capture();
    let opens = 0;
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///down',
      logger,
      backoff: { initialMs: 200, maxMs: 200, stableMs: 1000 },
      open: async () => {
        opens++;
        throw new Error('down');
      },
    });
    sup.start();
    const waiting = sup.whenConnected(5000);
    await until(() => sup.status().nextAttemptAt !== null, 1000, 'a scheduled retry');
    await sup.stop();
    await assert.rejects(waiting, /stopped/);
    const n = opens;
    await sleep(300);
    assert.equal(opens, n, 'no attempt after stop()');
    assert.equal(sup.status().nextAttemptAt, null);
  });

  it('reports a missing libvirt as unavailable (and keeps retrying: it may get installed)', async () => {
    const { logger } = capture();
    let opens = 0;
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///system',
      logger,
      backoff: FAST,
      open: async () => {
        opens++;
        throw new VhError(ErrorCodes.LIBVIRT_UNAVAILABLE, 'libvirt unavailable: cannot load libvirt.so.0');
      },
    });
    sup.start();
    await until(() => opens >= 2, 2000, 'two attempts');
    assert.equal(sup.state, 'unavailable');
    assert.match(sup.status().lastError ?? '', /libvirt.so.0/);
    await assert.rejects(sup.whenConnected(30), /not connected within 30 ms \(unavailable: libvirt unavailable/);
    await sup.stop();
  });

  it('a loss during the post-connect step is not reported as connected', async () => {
    const { logger } = capture();
    const conns: FakeConn[] = [];
    const sup = new LibvirtSupervisor({
      uri: 'qemu:///fake',
      logger,
      backoff: FAST,
      open: async () => {
        const c = new FakeConn();
        conns.push(c);
        return c;
      },
      onConnected: async (c) => {
        if (conns.length === 1) c.emit('closed', 'keepalive');
      },
    });
    const states: LibvirtState[] = [];
    sup.on('state', (s) => states.push(s));
    sup.start();
    await sup.whenConnected(1000);
    assert.equal(conns.length, 2);
    assert.equal(states.filter((s) => s === 'connected').length, 1);
    assert.equal(sup.status().connects, 1);
    await sup.stop();
  });
});
