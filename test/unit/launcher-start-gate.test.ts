/**
 * LauncherStartGate (src/vmi/launcher-process.ts): at most `limit` launchers between spawn and
 * registration; waiters are served in arrival order and woken when a slot frees.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { LauncherStartGate } from '../../src/vmi/control/launcher-process';

describe('LauncherStartGate', () => {
  it('admits up to the limit, then queues in arrival order', () => {
    const woken: string[] = [];
    const g = new LauncherStartGate(2, (uid) => woken.push(uid));
    assert.equal(g.tryAcquire('a'), true);
    assert.equal(g.tryAcquire('b'), true);
    assert.equal(g.tryAcquire('a'), true, 'a holder asking again keeps its slot');
    assert.equal(g.tryAcquire('c'), false);
    assert.equal(g.tryAcquire('d'), false);
    assert.deepEqual(g.stats(), { starting: 2, waiting: 2 });

    g.release('a');
    assert.deepEqual(woken, ['c'], 'one slot freed: the first waiter is woken');
    assert.equal(g.tryAcquire('d'), false, 'd may not jump ahead of c');
    assert.equal(g.tryAcquire('c'), true);
    assert.deepEqual(g.stats(), { starting: 2, waiting: 1 });
  });

  it('release of a non-holder is a no-op; forget drops a waiter', () => {
    const woken: string[] = [];
    const g = new LauncherStartGate(1, (uid) => woken.push(uid));
    assert.equal(g.tryAcquire('a'), true);
    assert.equal(g.tryAcquire('b'), false);
    assert.equal(g.tryAcquire('c'), false);
    g.release('b'); // a waiter, not a holder: keeps its place
    assert.deepEqual(woken, []);
    g.forget('b');
    assert.deepEqual(g.stats(), { starting: 1, waiting: 1 });
    g.release('a');
    assert.deepEqual(woken, ['c']);
    assert.equal(g.tryAcquire('c'), true);
    g.forget('c');
    assert.deepEqual(g.stats(), { starting: 0, waiting: 0 });
  });
});
