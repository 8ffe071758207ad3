/**
 * backoffDelay: equal-jitter bounds, the cap for huge attempt counts, and the spread of many
 * clients over the window. Its users (libvirt supervisor, launcher handler link, work queue,
 * VMI restarts) are tested with their own timings in their own suites.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { type Backoff, backoffDelay } from '../../src/util/backoff';

describe('backoffDelay', () => {
  it('is within [d/2, d] with d = min(max, initial * 2^attempt), never 0', () => {
    const b: Backoff = { initialMs: 250, maxMs: 30_000, stableMs: 1 };
    for (let a = 0; a < 40; a++) {
      const d = Math.min(30_000, 250 * 2 ** a);
      assert.equal(backoffDelay(a, b, () => 0), Math.round(d / 2));
      assert.equal(backoffDelay(a, b, () => 1), d);
      const r = backoffDelay(a, b);
      assert.ok(r >= d / 2 - 1 && r <= d, `attempt ${a}: ${r}`);
    }
    assert.equal(backoffDelay(1000, b, () => 1), 30_000, 'huge attempt counts stay at the cap');
  });

  it('spreads many clients over the window (no synchronised herd)', () => {
    const b: Backoff = { initialMs: 1000, maxMs: 1000, stableMs: 1 };
    const delays = Array.from({ length: 1000 }, () => backoffDelay(5, b));
    const buckets = new Set(delays.map((d) => Math.floor(d / 50)));
    assert.ok(buckets.size >= 9, `only ${buckets.size} distinct 50 ms buckets`);
  });
});
