// Userspace dirty tracking (userfaultfd async WP + PAGEMAP_SCAN) and the native bitmap helpers.
// Runs on the host: no KVM needed, only Linux 6.7+ and permission to use userfaultfd.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, isVhError } from '../../src/errors';
import { loadNative } from '../../src/native/loader';
import { stageForUnprivileged } from '../lib/unprivileged';
import { UserspaceDirtyTracker, bitmapPopcount, bitmapToRuns, type DirtyHarvest } from '../../src/kvm/dirty-tracker';

const MiB = 1 << 20;

/** Set bit indices of a harvest's bitmap, read bit by bit (independent of the native run code). */
function bitsOf(bitmap: Uint8Array, nbits = bitmap.length * 8): number[] {
  const out: number[] = [];
  for (let i = 0; i < nbits; i++) if ((bitmap[i >> 3]! >> (i & 7)) & 1) out.push(i);
  return out;
}

/** Reference run list: maximal [first, count] pairs of an ascending index list. */
function runsOf(indices: readonly number[]): number[][] {
  const runs: number[][] = [];
  for (const i of indices) {
    const last = runs[runs.length - 1];
    if (last && last[0]! + last[1]! === i) last[1]!++;
    else runs.push([i, 1]);
  }
  return runs;
}

function pairs(runs: Uint32Array): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < runs.length; i += 2) out.push([runs[i]!, runs[i + 1]!]);
  return out;
}

function assertExact(h: DirtyHarvest, pages: readonly number[], pageCount: number): void {
  const sorted = [...new Set(pages)].sort((a, b) => a - b);
  assert.deepEqual(bitsOf(h.bitmap, pageCount), sorted);
  assert.equal(h.bitmap.length % 8, 0);
  assert.ok(h.bitmap.length * 8 >= pageCount);
  assert.deepEqual(pairs(h.runs), runsOf(sorted));
  assert.equal(h.dirtyPages, sorted.length);
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

test('a fresh tracker harvests nothing', async () => {
  const t = UserspaceDirtyTracker.create(4 * MiB);
  try {
    assert.equal(t.pageSize, loadNative().hostPageSize());
    assert.equal(t.size, 4 * MiB);
    assert.equal(t.pageCount, (4 * MiB) / t.pageSize);
    const h = await t.harvest();
    assertExact(h, [], t.pageCount);
    assert.equal(h.timings.clearNs, 0);
    assert.ok(h.timings.scanNs > 0);
  } finally {
    t.close();
  }
});

test('exact dirty sets: written pages, re-armed after harvest, then only the new ones', async () => {
  const t = UserspaceDirtyTracker.create(4 * MiB);
  try {
    const ps = t.pageSize;
    const last = t.pageCount - 1;
    for (const p of [0, 5, 6, 7, last]) t.write(p * ps + 17, Buffer.from([0xab]));
    const h1 = await t.harvest();
    assertExact(h1, [0, 5, 6, 7, last], t.pageCount);
    assert.deepEqual(pairs(h1.runs), [[0, 1], [5, 3], [last, 1]]);
    assertExact(await t.harvest(), [], t.pageCount);
    // A write spanning a page boundary dirties both pages; rewriting an old page counts again.
    t.write(10 * ps - 2, Buffer.alloc(4, 1));
    t.write(5 * ps, Buffer.from([1]));
    assertExact(await t.harvest(), [5, 9, 10], t.pageCount);
    assert.equal(t.read(10 * ps - 2, 4).toString('hex'), '01010101');
    assert.equal(t.read(0 * ps + 17, 1)[0], 0xab);
  } finally {
    t.close();
  }
});

test('reading memory does not dirty it; fill() dirties whole pages natively', () => {
  const t = UserspaceDirtyTracker.create(2 * MiB);
  try {
    t.read(0, t.size);
    assertExact(t.harvestSync(), [], t.pageCount);
    t.fill({ pages: [3, 4, 100] }, 7);
    t.fill({ runs: [200, 10] }, 8);
    const expect = [3, 4, 100, ...Array.from({ length: 10 }, (_, i) => 200 + i)];
    assertExact(t.harvestSync(), expect, t.pageCount);
    assert.ok(t.read(3 * t.pageSize, t.pageSize).every((b) => b === 7));
  } finally {
    t.close();
  }
});

test('writes made by the kernel (read() into the region) are tracked', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-dirty-'));
  const file = path.join(dir, 'data');
  const t = UserspaceDirtyTracker.create(2 * MiB);
  try {
    const ps = t.pageSize;
    fs.writeFileSync(file, Buffer.alloc(2 * ps + 10, 0x5a));
    const fd = fs.openSync(file, 'r');
    try {
      assert.equal(t.readFromFd(fd, 20 * ps, 2 * ps + 10, 0), 2 * ps + 10);
    } finally {
      fs.closeSync(fd);
    }
    assertExact(t.harvestSync(), [20, 21, 22], t.pageCount);
    assert.equal(t.read(22 * ps + 9, 2).toString('hex'), '5a00');
  } finally {
    t.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('memfd-backed (shared) memory and THP-advised memory are tracked exactly', () => {
  for (const opts of [{ backing: 'memfd' as const }, { transparentHugePages: true }]) {
    const t = UserspaceDirtyTracker.create(8 * MiB, opts);
    try {
      const pages = [1, 2, 511, 512, 513, t.pageCount - 1];
      for (const p of pages) t.write(p * t.pageSize, Buffer.from([1]));
      assertExact(t.harvestSync(), pages, t.pageCount);
      assertExact(t.harvestSync(), [], t.pageCount);
    } finally {
      t.close();
    }
  }
});

test('bounds: out-of-range access and bad arguments are INVALID_ARGUMENT', () => {
  const t = UserspaceDirtyTracker.create(MiB);
  try {
    const bad = (fn: () => unknown, nativeCode: string): void =>
      assert.throws(fn, (e: unknown) => {
        assert.ok(isVhError(e, ErrorCodes.INVALID_ARGUMENT), String(e));
        assert.equal(e.details.code, nativeCode);
        return true;
      });
    bad(() => t.write(MiB - 1, Buffer.alloc(2)), 'ERR_OUT_OF_RANGE');
    bad(() => t.write(MiB, Buffer.alloc(1)), 'ERR_OUT_OF_RANGE');
    bad(() => t.read(0, MiB + 1), 'ERR_OUT_OF_RANGE');
    bad(() => t.read(2 ** 52, 1), 'ERR_OUT_OF_RANGE');
    bad(() => t.fill({ pages: [t.pageCount] }, 1), 'ERR_OUT_OF_RANGE');
    bad(() => t.fill({ runs: [t.pageCount - 1, 2] }, 1), 'ERR_OUT_OF_RANGE');
    bad(() => t.read(-1, 1), 'ERR_INVALID_ARG');
    bad(() => t.read(1.5, 1), 'ERR_INVALID_ARG');
    bad(() => t.fill({ pages: [0] }, 256), 'ERR_INVALID_ARG');
    bad(() => t.write(0, 'x' as unknown as Buffer), 'ERR_INVALID_ARG');
    bad(() => UserspaceDirtyTracker.create(0), 'ERR_INVALID_ARG');
    bad(() => UserspaceDirtyTracker.create(MiB, { backing: 'disk' as 'memfd' }), 'ERR_INVALID_ARG');
    // A rejected fill must not have dirtied anything.
    assertExact(t.harvestSync(), [], t.pageCount);
    t.write(MiB - 1, Buffer.alloc(1));
    t.write(MiB, Buffer.alloc(0));
    assertExact(t.harvestSync(), [t.pageCount - 1], t.pageCount);
  } finally {
    t.close();
  }
});

test('use after close: every call fails, close() is idempotent', async () => {
  const t = UserspaceDirtyTracker.create(MiB);
  t.close();
  t.close();
  assert.equal(t.closed, true);
  const closed = (e: unknown): boolean => {
    assert.ok(isVhError(e, ErrorCodes.INTERNAL), String(e));
    assert.equal(e.details.code, 'ERR_CLOSED');
    return true;
  };
  assert.throws(() => t.write(0, Buffer.alloc(1)), closed);
  assert.throws(() => t.read(0, 1), closed);
  assert.throws(() => t.fill({ pages: [0] }, 1), closed);
  assert.throws(() => t.harvestSync(), closed);
  await assert.rejects(t.harvest(), closed);
});

test('async harvest: same result as sync, one at a time, close() waits for it', async () => {
  const t = UserspaceDirtyTracker.create(16 * MiB);
  const pageCount = t.pageCount;
  t.fill({ runs: [1, 3, 100, 1] }, 9);
  const first = t.harvest();
  await assert.rejects(t.harvest(), (e: unknown) => isVhError(e) && e.details.code === 'ERR_BUSY');
  assert.throws(() => t.harvestSync(), (e: unknown) => isVhError(e) && e.details.code === 'ERR_BUSY');
  t.close(); // deferred until the running harvest settles
  assert.equal(t.closed, true);
  assertExact(await first, [1, 2, 3, 100], pageCount);
  assert.throws(() => t.read(0, 1), (e: unknown) => isVhError(e) && e.details.code === 'ERR_CLOSED');
  await assert.rejects(t.harvest(), (e: unknown) => isVhError(e) && e.details.code === 'ERR_CLOSED');
});

test('bitmapToRuns matches a JS reference on edge and random bitmaps', () => {
  const cases: Array<[Buffer, number | undefined]> = [
    [Buffer.alloc(0), undefined],
    [Buffer.alloc(64), undefined],
    [Buffer.alloc(64, 0xff), undefined],
    [Buffer.alloc(64, 0xff), 509],
    [Buffer.alloc(13, 0xff), 100],
    [Buffer.alloc(13, 0xff), undefined],
    [Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x80, 1]), undefined], // run across a word boundary
    [Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]), undefined], // ends at 64
    [Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 129],
    [Buffer.from([0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55]), 71],
  ];
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let k = 0; k < 200; k++) {
    const len = Math.floor(rnd() * 80);
    const density = [0.01, 0.1, 0.5, 0.9, 0.99][k % 5]!;
    const b = Buffer.alloc(len);
    for (let i = 0; i < len * 8; i++) if (rnd() < density) b[i >> 3]! |= 1 << (i & 7);
    // Occasionally long runs crossing words.
    if (len > 20 && k % 3 === 0) b.fill(0xff, 3, 19);
    cases.push([b, k % 2 === 0 ? undefined : Math.floor(rnd() * (len * 8 + 1))]);
  }
  for (const [b, nbits] of cases) {
    const n = nbits ?? b.length * 8;
    const expect = runsOf(bitsOf(b, n));
    assert.deepEqual(pairs(bitmapToRuns(b, nbits)), expect, `${b.toString('hex')} nbits=${nbits}`);
    assert.equal(bitmapPopcount(b, nbits), bitsOf(b, n).length);
  }
  // Views at odd offsets into a larger buffer.
  const big = Buffer.alloc(40, 0xf0);
  assert.deepEqual(pairs(bitmapToRuns(big.subarray(3, 11))), runsOf(bitsOf(big.subarray(3, 11))));
  assert.throws(() => bitmapToRuns(Buffer.alloc(1), 9), (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT));
});

test('64 MiB region with 1% random dirty pages harvests exactly', () => {
  const t = UserspaceDirtyTracker.create(64 * MiB);
  try {
    let seed = 99;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const chosen = new Set<number>();
    while (chosen.size < Math.ceil(t.pageCount / 100)) chosen.add(Math.floor(rnd() * t.pageCount));
    const pages = [...chosen].sort((a, b) => a - b);
    t.fill({ pages: Uint32Array.from(pages) }, 0xcc);
    assertExact(t.harvestSync(), pages, t.pageCount);
    assertExact(t.harvestSync(), [], t.pageCount);
    // Every page dirty: one region, one run.
    t.fill({ runs: [0, t.pageCount] }, 1);
    const all = t.harvestSync();
    assert.deepEqual(pairs(all.runs), [[0, t.pageCount]]);
    assert.equal(all.dirtyPages, t.pageCount);
  } finally {
    t.close();
  }
});

test('more dirty regions than the result vector holds: restarts from walk_end lose nothing', () => {
  for (const regionsPerScan of [1, 7, 64]) {
    const t = UserspaceDirtyTracker.create(4 * MiB, { regionsPerScan });
    try {
      const alternate = Array.from({ length: t.pageCount / 2 }, (_, i) => 2 * i + 1);
      t.fill({ pages: Uint32Array.from(alternate) }, 2);
      assertExact(t.harvestSync(), alternate, t.pageCount);
      assertExact(t.harvestSync(), [], t.pageCount);
      // Exactly a multiple of the vector length dirty: the last call comes back full.
      const exact = alternate.slice(0, regionsPerScan * 3);
      t.fill({ pages: Uint32Array.from(exact) }, 3);
      assertExact(t.harvestSync(), exact, t.pageCount);
    } finally {
      t.close();
    }
  }
});

test('fd count stays flat over 200 create/harvest/close cycles', () => {
  const warm = UserspaceDirtyTracker.create(MiB);
  warm.close();
  const before = openFds();
  for (let i = 0; i < 200; i++) {
    const t = UserspaceDirtyTracker.create(MiB, i % 2 ? { backing: 'memfd' } : {});
    t.write(i % MiB, Buffer.from([1]));
    assert.equal(t.harvestSync().dirtyPages, 1);
    t.close();
  }
  assert.equal(openFds(), before);
});

test('unprivileged: falls back to UFFD_USER_MODE_ONLY and still tracks user and kernel writes', (t) => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
  if (process.getuid?.() !== 0 || !setpriv) {
    t.skip('needs root and setpriv to start a child as nobody');
    return;
  }
  // A copy the child can reach even when the checkout sits under a 0700 directory.
  const staged = stageForUnprivileged();
  t.after(() => staged.remove());
  const mod = path.join(staged.root, 'dist/src/kvm/dirty-tracker.js');
  const script = `
    const { UserspaceDirtyTracker } = require(${JSON.stringify(mod)});
    const fs = require('fs');
    const t = UserspaceDirtyTracker.create(1 << 20);
    t.write(3 * t.pageSize, Buffer.from([1]));
    const fd = fs.openSync('/proc/self/status', 'r');
    t.readFromFd(fd, 7 * t.pageSize, 64);
    fs.closeSync(fd);
    console.log(JSON.stringify({ features: t.features(), runs: Array.from(t.harvestSync().runs) }));
    t.close();`;
  const r = spawnSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { features: { userModeOnly: boolean }; runs: number[] };
  // With vm.unprivileged_userfaultfd=1 the full mode is allowed and no fallback happens.
  const restricted = fs.readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim() === '0';
  assert.equal(out.features.userModeOnly, restricted);
  assert.deepEqual(out.runs, [3, 1, 7, 1]);
});
