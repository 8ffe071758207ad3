/** WorkQueue: one worker per key, dedupe, concurrency bound, backoff, addAfter, stop, idle. */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueue } from '../../src/vmi/control/work-queue';

/** A promise with its resolve exposed. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('WorkQueue', () => {
  it('never runs one key twice at once: add() during a run gives exactly one rerun after it', async () => {
    const g = gate();
    const runs: string[] = [];
    let active = 0;
    let maxActive = 0;
    const q = new WorkQueue(async (k) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(k);
      if (runs.length === 1) await g.promise;
      else await sleep(5);
      active--;
    }, 4);
    q.add('a');
    await waitFor(() => runs.length === 1);
    q.add('a');
    q.add('a');
    q.add('a');
    await sleep(20);
    assert.equal(runs.length, 1, 'no second worker on the key while the first runs');
    assert.equal(q.stats().depth, 0, 'a dirty key is not queued while it runs');
    g.open();
    await q.idle();
    await sleep(20);
    assert.deepEqual(runs, ['a', 'a']);
    assert.equal(maxActive, 1);
    assert.equal(q.stats().processed, 2);
  });

  it('dedupes a key that is already queued', async () => {
    const g = gate();
    const runs: string[] = [];
    const q = new WorkQueue(async (k) => {
      runs.push(k);
      if (k === 'block') await g.promise;
    }, 1);
    q.add('block');
    await waitFor(() => runs.length === 1);
    for (let i = 0; i < 5; i++) {
      q.add('x');
      q.add('y');
    }
    assert.equal(q.stats().depth, 2);
    g.open();
    await q.idle();
    assert.deepEqual(runs, ['block', 'x', 'y'], 'each queued key runs once, in FIFO order');
  });

  it('runs at most `workers` keys at once', async () => {
    let active = 0;
    let maxActive = 0;
    const done: string[] = [];
    const q = new WorkQueue(async (k) => {
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(15);
      active--;
      done.push(k);
    }, 2);
    for (let i = 0; i < 7; i++) q.add(`k${i}`);
    assert.equal(q.stats().inFlight, 2);
    assert.equal(q.stats().depth, 5);
    await q.idle();
    assert.equal(maxActive, 2);
    assert.equal(done.length, 7);
    assert.deepEqual(q.stats().inFlight, 0);
  });

  it('failure backoff grows per key (jittered within [d/2, d]) and success resets it', async () => {
    const retries: number[] = [];
    let failNext = true;
    let runs = 0;
    let successes = 0;
    const q = new WorkQueue(
      async () => {
        runs++;
        if (failNext) throw new Error('boom');
        successes++;
      },
      1,
      { initialMs: 20, maxMs: 80, stableMs: 0 },
      (_k, err, retryIn) => {
        assert.match(String(err), /boom/);
        retries.push(retryIn);
      },
    );
    q.add('k');
    await waitFor(() => retries.length >= 4, 3000);
    const bounds = [20, 40, 80, 80];
    for (let i = 0; i < 4; i++) {
      assert.ok(retries[i]! >= bounds[i]! / 2 && retries[i]! <= bounds[i]!, `retry ${i}: ${retries[i]} not within [${bounds[i]! / 2}, ${bounds[i]}]`);
    }
    failNext = false;
    await waitFor(() => successes === 1, 3000); // the pending retry runs and succeeds
    await q.idle();
    const after = runs;
    await sleep(150);
    assert.equal(runs, after, 'no retry after a success');
    assert.equal(q.stats().failures, retries.length);
    failNext = true;
    retries.length = 0;
    q.add('k');
    await waitFor(() => retries.length >= 1);
    assert.ok(retries[0]! >= 10 && retries[0]! <= 20, `backoff restarts at initialMs after a success: ${retries[0]}`);
    await q.stop();
  });

  it('a throwing onError does not break the queue', async () => {
    let runs = 0;
    const q = new WorkQueue(async () => {
      runs++;
      if (runs === 1) throw new Error('x');
    }, 1, { initialMs: 10, maxMs: 10, stableMs: 0 }, () => {
      throw new Error('reporter broke');
    });
    q.add('k');
    await waitFor(() => runs >= 2);
    await q.stop();
  });

  it('addAfter schedules a run; add() cancels the pending delayed add', async () => {
    const runs: number[] = [];
    const t0 = Date.now();
    const q = new WorkQueue(async () => {
      runs.push(Date.now() - t0);
    }, 1);
    q.addAfter('k', 80);
    await sleep(20);
    assert.equal(runs.length, 0);
    q.add('k');
    await q.idle();
    assert.equal(runs.length, 1);
    await sleep(150);
    assert.equal(runs.length, 1, 'the delayed add was cancelled by add()');

    const tj = Date.now() - t0;
    q.addAfter('j', 40);
    await waitFor(() => runs.length === 2);
    assert.ok(runs[1]! - tj >= 38, `delayed run too early: ${runs[1]! - tj} ms`);
    q.addAfter('j', 30);
    q.forget('j'); // forget() drops a pending delayed add too
    await sleep(80);
    assert.equal(runs.length, 2);
    await q.stop();
  });

  it('stop() waits for running handlers, drops queued work and ignores later adds', async () => {
    const g = gate();
    const runs: string[] = [];
    let finished = false;
    const q = new WorkQueue(async (k) => {
      runs.push(k);
      if (k === 'slow') {
        await g.promise;
        finished = true;
      }
    }, 1);
    q.add('slow');
    q.add('queued');
    q.addAfter('later', 10);
    await waitFor(() => runs.length === 1);
    q.add('slow'); // dirty: must not rerun after stop
    let stopped = false;
    const p = q.stop().then(() => (stopped = true));
    await sleep(30);
    assert.equal(stopped, false, 'stop() resolved while a handler still ran');
    g.open();
    await p;
    assert.equal(finished, true);
    q.add('new');
    q.addAfter('new2', 1);
    await sleep(40);
    assert.deepEqual(runs, ['slow']);
  });

  it('stop() with nothing running resolves at once', async () => {
    const q = new WorkQueue(async () => undefined, 1);
    await q.stop();
  });

  it('idle() resolves at once when empty, and after queued and running work finishes (delayed adds do not count)', async () => {
    const q = new WorkQueue(async () => sleep(20), 2);
    await q.idle();
    let done = 0;
    for (const k of ['a', 'b', 'c']) q.add(k);
    const waiters = [q.idle().then(() => done++), q.idle().then(() => done++)];
    await sleep(5);
    assert.equal(done, 0);
    await Promise.all(waiters);
    assert.equal(q.stats().depth + q.stats().inFlight, 0);
    q.addAfter('z', 10_000);
    const t = Date.now();
    await q.idle();
    assert.ok(Date.now() - t < 50);
    await q.stop();
  });
});
