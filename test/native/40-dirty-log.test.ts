/**
 * KVM dirty logging against a real /dev/kvm, with exact page sets: plain bitmap,
 * manual-protect (initially-set, GET does not clear, chunked CLEAR and its alignment rules) and
 * the dirty ring, each merged with the VMM's own writes (writeGuest), plus the typed errors of
 * every misuse. Guest-driven cases run real guest code on a vCPU (see the second half).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { ErrorCodes, isVhError, type ErrorCode } from '../../src/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import type { Vcpu } from '../../src/kvm/vcpu';
import type { Vm } from '../../src/kvm/vm';
import {
  KvmBitmapTracker,
  KvmManualProtectTracker,
  KvmRingTracker,
} from '../../src/kvm/kvm-dirty-tracker';
import { loadNative } from '../../src/native/loader';

const native = loadNative();
const PAGE = native.hostPageSize();

let kvm: KvmSystem;
/** KVM_CHECK_EXTENSION answers for the dirty-log capabilities (0 when absent). */
const caps = { MANUAL_DIRTY_LOG_PROTECT2: 0, DIRTY_LOG_RING: 0, DIRTY_LOG_RING_ACQ_REL: 0 };
before(() => {
  kvm = KvmSystem.open();
  const all = kvm.capabilities();
  for (const name of Object.keys(caps) as Array<keyof typeof caps>) caps[name] = all[name] ?? 0;
});
after(() => kvm.close());

async function withVm<T>(fn: (v: Vm) => T | Promise<T>): Promise<T> {
  const v = kvm.createVm();
  try {
    return await fn(v);
  } finally {
    v.close();
  }
}

/** [first, count] pairs of a flat run list, for readable assertions. */
function pairs(flat: Uint32Array): number[][] {
  return Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!]);
}

/** Runs of a bitmap as [first, count] pairs. */
function runsOf(bitmap: Uint8Array): number[][] {
  return pairs(native.bitmapToRuns(bitmap));
}

/** Matches a VhError by stable code and native facts. */
function vhError(code: ErrorCode, nativeCode: string, syscall?: string) {
  return (e: unknown): boolean => {
    assert.ok(isVhError(e, code), `expected ${code}, got ${String(e)}`);
    assert.equal(e.details.code, nativeCode, e.message);
    if (syscall !== undefined) assert.equal(e.details.syscall, syscall);
    return true;
  };
}

describe('dirty log without vCPUs', () => {
  test('capabilities: manual protect and the ring are reported (the tests below assert the fallback otherwise)', () => {
    assert.ok(caps.MANUAL_DIRTY_LOG_PROTECT2 >= 0 && caps.DIRTY_LOG_RING >= 0);
  });

  test('bitmap: VMM writes appear exactly in the merged harvest and are cleared by it', async () => {
    await withVm(async (v) => {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0x100000, size: 256 * PAGE, logDirtyPages: true });
      const t = KvmBitmapTracker.create(v, 0);
      assert.equal(t.pageCount, 256);
      assert.equal(t.pageSize, PAGE);
      assert.equal((await t.harvest()).dirtyPages, 0, 'no guest, no writes: clean');
      v.writeGuest(0x100000 + 3 * PAGE, Buffer.from([1]));
      v.writeGuest(0x100000 + 100 * PAGE - 1, Buffer.alloc(2 * PAGE + 2, 7)); // pages 99..102
      v.writeGuest(0x100000 + 255 * PAGE, Buffer.alloc(PAGE, 1)); // the last page, exactly
      assert.equal(runsOf(v.getDirtyLog(0)).length, 0, 'KVM itself never sees VMM writes');
      const h = await t.harvest();
      assert.deepEqual(pairs(h.runs), [[3, 1], [99, 4], [255, 1]]);
      assert.equal(h.dirtyPages, 6);
      assert.equal(h.bitmap.length, 32);
      assert.deepEqual(runsOf(h.bitmap), [[3, 1], [99, 4], [255, 1]]);
      assert.ok(h.timings.scanNs > 0 && h.timings.clearNs === 0);
      assert.equal((await t.harvest()).dirtyPages, 0, 'the harvest cleared them');
      t.close();
      await assert.rejects(t.harvest(), (e) => isVhError(e, ErrorCodes.INTERNAL));
    });
  });

  test('manual protect with initially-set: GET reports every page and does not clear; CLEAR does', async () => {
    await withVm(async (v) => {
      if (!(caps.MANUAL_DIRTY_LOG_PROTECT2 & 1)) {
        assert.throws(() => KvmManualProtectTracker.enable(v), vhError(ErrorCodes.KVM_UNUSABLE, 'EOPNOTSUPP'));
        return;
      }
      const { initiallySet } = KvmManualProtectTracker.enable(v);
      assert.equal(initiallySet, (caps.MANUAL_DIRTY_LOG_PROTECT2 & 2) !== 0);
      assert.equal(v.dirtyLogMode, 'manual');
      v.addMemoryRegion({ slot: 1, guestPhysAddr: 0, size: 256 * PAGE, logDirtyPages: true });
      const all = initiallySet ? [[0, 256]] : [];
      assert.deepEqual(runsOf(v.getDirtyLog(1)), all);
      assert.deepEqual(runsOf(v.getDirtyLog(1)), all, 'GET does not clear in manual mode');
      if (!initiallySet) return;
      v.clearDirtyLog(1, 64, 64);
      assert.deepEqual(runsOf(v.getDirtyLog(1)), [[0, 64], [128, 128]]);
      v.clearDirtyLog(1, 192, 64);
      assert.deepEqual(runsOf(v.getDirtyLog(1)), [[0, 64], [128, 64]]);

      // The harvest reports the remainder plus VMM writes, then re-protects exactly that.
      v.writeGuest(70 * PAGE, Buffer.from([1]));
      const t = KvmManualProtectTracker.create(v, 1);
      const h = await t.harvest();
      assert.deepEqual(pairs(h.runs), [[0, 64], [70, 1], [128, 64]]);
      assert.equal(h.dirtyPages, 129);
      assert.ok(h.timings.clearNs > 0, 'KVM_CLEAR_DIRTY_LOG was timed');
      assert.deepEqual(runsOf(v.getDirtyLog(1)), []);
      assert.equal((await t.harvest()).dirtyPages, 0);
    });
  });

  test('manual protect without initially-set starts clean', async () => {
    await withVm((v) => {
      if (!(caps.MANUAL_DIRTY_LOG_PROTECT2 & 1)) return; // covered by the EOPNOTSUPP case above
      assert.deepEqual(v.enableManualDirtyProtect({ initiallySet: false }), { initiallySet: false });
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 128 * PAGE, logDirtyPages: true });
      assert.deepEqual(runsOf(v.getDirtyLog(0)), []);
    });
  });

  test('KVM_CLEAR_DIRTY_LOG alignment: 64-page multiples unless the range reaches the end of the slot', async () => {
    await withVm((v) => {
      if (!(caps.MANUAL_DIRTY_LOG_PROTECT2 & 2)) return;
      v.enableManualDirtyProtect();
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 200 * PAGE, logDirtyPages: true });
      const bad = vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_INVALID_ARG');
      assert.throws(() => v.clearDirtyLog(0, 1, 64), bad);
      assert.throws(() => v.clearDirtyLog(0, 64, 100), bad, 'not a multiple of 64 and not reaching the end');
      assert.throws(() => v.clearDirtyLog(0, 0, 201), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_OUT_OF_RANGE'));
      assert.throws(() => v.clearDirtyLog(0, 0, 0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_OUT_OF_RANGE'));
      v.clearDirtyLog(0, 192, 8); // the tail: 8 pages, allowed because it ends the slot
      v.clearDirtyLog(0, 64, 72 + 64); // 136 pages up to the end
      assert.deepEqual(runsOf(v.getDirtyLog(0)), [[0, 64]]);
    });
  });

  test('harvest clears in bounded chunks across a 1 GiB chunk boundary and the unaligned tail', async () => {
    await withVm(async (v) => {
      if (!(caps.MANUAL_DIRTY_LOG_PROTECT2 & 2)) return;
      v.enableManualDirtyProtect();
      const pages = (1 << 18) + 100; // one full clear chunk + a tail that is not a multiple of 64
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: pages * PAGE, logDirtyPages: true });
      const t = KvmManualProtectTracker.create(v, 0);
      const first = await t.harvest();
      assert.deepEqual(pairs(first.runs), [[0, pages]]);
      v.writeGuest(((1 << 18) + 99) * PAGE, Buffer.from([1]));
      assert.deepEqual(pairs((await t.harvest()).runs), [[(1 << 18) + 99, 1]], 'only the VMM write is left');
      assert.deepEqual(runsOf(v.getDirtyLog(0)), []);
    });
  });

  test('typed errors: logging off, bad slot, clear outside manual mode', async () => {
    await withVm(async (v) => {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 64 * PAGE });
      assert.throws(() => v.getDirtyLog(0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ENOENT', 'KVM_GET_DIRTY_LOG'));
      await assert.rejects(v.harvestDirty(0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_OFF'));
      assert.throws(() => KvmBitmapTracker.create(v, 0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_OFF'));
      assert.throws(() => v.getDirtyLog(7), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_INVALID_ARG'));
      await assert.rejects(v.harvestDirty(7), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_INVALID_ARG'));
      assert.throws(() => KvmBitmapTracker.create(v, 7), (e) => isVhError(e, ErrorCodes.INVALID_ARGUMENT));
      v.setDirtyLogging(0, true);
      assert.deepEqual(runsOf(v.getDirtyLog(0)), []);
      assert.throws(() => v.clearDirtyLog(0, 0, 64), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_MODE'));
      assert.throws(() => KvmManualProtectTracker.create(v, 0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_MODE'));
    });
  });

  test('ring: GET fails ENXIO, VMM writes are merged, misuse is typed', async () => {
    await withVm(async (v) => {
      if (!caps.DIRTY_LOG_RING) {
        assert.throws(() => KvmRingTracker.enable(v, 4096), vhError(ErrorCodes.KVM_UNUSABLE, 'EOPNOTSUPP'));
        return;
      }
      const bad = vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_INVALID_ARG');
      assert.throws(() => KvmRingTracker.enable(v, 3 * PAGE), bad, 'not a power of two');
      assert.throws(() => KvmRingTracker.enable(v, PAGE / 2), bad, 'below the page size');
      assert.throws(() => KvmRingTracker.enable(v, 2 * caps.DIRTY_LOG_RING), bad, 'above the maximum');
      const r = KvmRingTracker.enable(v, PAGE);
      assert.deepEqual(r, { bytes: PAGE, acqRel: caps.DIRTY_LOG_RING_ACQ_REL > 0 });
      assert.equal(v.dirtyLogMode, 'ring');
      assert.throws(() => KvmRingTracker.enable(v, PAGE), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_MODE'));
      assert.throws(() => v.enableManualDirtyProtect(), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_MODE'));
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 128 * PAGE, logDirtyPages: true });
      v.addMemoryRegion({ slot: 1, guestPhysAddr: 128 * PAGE, size: 64 * PAGE, logDirtyPages: true });
      assert.throws(() => v.getDirtyLog(0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ENXIO', 'KVM_GET_DIRTY_LOG'));
      assert.throws(() => KvmBitmapTracker.create(v, 0), vhError(ErrorCodes.INVALID_ARGUMENT, 'ERR_DIRTY_LOG_MODE'));
      const t0 = KvmRingTracker.create(v, 0);
      const t1 = KvmRingTracker.create(v, 1);
      v.writeGuest(5 * PAGE, Buffer.from([1]));
      v.writeGuest(127 * PAGE, Buffer.alloc(PAGE)); // the last page of slot 0
      v.writeGuest(128 * PAGE, Buffer.alloc(1)); // the first page of slot 1
      assert.deepEqual(pairs((await t0.harvest()).runs), [[5, 1], [127, 1]]);
      assert.deepEqual(pairs((await t1.harvest()).runs), [[0, 1]]);
      assert.equal((await t0.harvest()).dirtyPages, 0);
    });
  });

  test('removing a slot drops its VMM writes; a new slot with the same id starts clean', async () => {
    await withVm(async (v) => {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 64 * PAGE, logDirtyPages: true });
      v.writeGuest(PAGE, Buffer.from([1]));
      v.removeMemoryRegion(0);
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 64 * PAGE, logDirtyPages: true });
      assert.equal((await v.harvestDirty(0)).dirtyPages, 0);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Guest-driven: a real-mode guest at CODE_GPA writes one byte to each chosen page, then HLTs.

/** Where the guest code lives (page 1 of the slot). */
const CODE_GPA = 0x1000;
const CODE_PAGE = CODE_GPA / PAGE;

/**
 * Which KVM we run on decides one documented difference: kvm_amd/kvm_intel mark a page dirty on
 * its first access of any kind (the code page shows up) and enforce the ring's soft limit with
 * KVM_EXIT_DIRTY_RING_FULL; the paravirtual kvm_pvm of this host does neither.
 */
const kvmModule = ['kvm_amd', 'kvm_intel', 'kvm_pvm'].find((m) => fs.existsSync(`/sys/module/${m}`)) ?? 'unknown';
const fetchDirties = kvmModule !== 'kvm_pvm';

/** mov ax, seg; mov es, ax; mov byte [es:0], 1 for each page, then hlt (11 bytes a page). */
function writerProgram(pages: readonly number[]): Buffer {
  const bytes: number[] = [];
  for (const p of pages) {
    const seg = (p * PAGE) >> 4;
    assert.ok(seg <= 0xffff, 'real mode reaches the first MiB only');
    bytes.push(0xb8, seg & 0xff, seg >> 8, 0x8e, 0xc0, 0x26, 0xc6, 0x06, 0x00, 0x00, 0x01);
  }
  bytes.push(0xf4);
  assert.ok(bytes.length <= PAGE, 'the program fits in its page');
  return Buffer.from(bytes);
}

/** The page set a guest writing `pages` dirties, per the KVM semantics above. */
function expectedPages(pages: readonly number[]): number[] {
  return [...new Set([...pages, ...(fetchDirties ? [CODE_PAGE] : [])])].sort((a, b) => a - b);
}

function pagesOf(runs: Uint32Array): number[] {
  const out: number[] = [];
  for (const [first, count] of pairs(runs)) for (let i = 0; i < count!; i++) out.push(first! + i);
  return out;
}

/**
 * Runs vCPU 0 from CODE_GPA until it halts. A 'dirtyRingFull' exit parks the vCPU: `onFull`
 * runs (harvest), then the vCPU resumes. Returns how many ring-full exits were seen.
 */
async function runUntilHalt(vcpu: Vcpu, onFull: () => Promise<void> = async () => {}): Promise<number> {
  let fullExits = 0;
  let pendingFull = false;
  let halted = false;
  vcpu.setupRealMode(CODE_GPA);
  const exits = vcpu.exits();
  vcpu.start();
  try {
    for await (const e of exits) {
      if (e.reason === 'dirtyRingFull') {
        fullExits++;
        pendingFull = true;
      } else if (e.reason === 'hlt') {
        halted = true;
      } else if (e.reason === 'parked') {
        if (pendingFull) {
          pendingFull = false;
          await onFull();
          assert.ok(vcpu.resume(), 'the parked vCPU resumes');
        } else if (halted) {
          return fullExits;
        }
      } else {
        assert.fail(`unexpected vCPU exit ${JSON.stringify(e, (_k, x) => (typeof x === 'bigint' ? String(x) : x))}`);
      }
    }
    assert.fail('the vCPU stopped before halting');
  } finally {
    await vcpu.stop();
  }
}

/** A VM with one dirty-logged 1 MiB slot at 0 holding the writer program, VMM writes harvested. */
async function guestVm(v: Vm, pages: readonly number[]): Promise<void> {
  v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 1 << 20, logDirtyPages: true });
  v.writeGuest(CODE_GPA, writerProgram(pages));
  await v.harvestDirty(0); // drop the VMM write of the program itself
}

describe(`guest-driven dirty sets (${kvmModule})`, { timeout: 120_000 }, () => {
  const chosen = [20, 21, 50, 200, 255];

  test('bitmap: exactly the written pages (+ the code page where fetches dirty)', async () => {
    await withVm(async (v) => {
      await guestVm(v, chosen);
      const t = KvmBitmapTracker.create(v, 0);
      await runUntilHalt(v.createVcpu(0));
      v.writeGuest(100 * PAGE, Buffer.from([9])); // a VMM write merged with the guest's
      assert.deepEqual(pagesOf((await t.harvest()).runs), expectedPages([...chosen, 100]));
      assert.equal((await t.harvest()).dirtyPages, 0, 'GET cleared the log');
    });
  });

  test('manual protect: GET does not clear, CLEAR does, the harvest clears what it reports', async () => {
    await withVm(async (v) => {
      if (!(caps.MANUAL_DIRTY_LOG_PROTECT2 & 1)) return; // the EOPNOTSUPP fallback is asserted above
      v.enableManualDirtyProtect();
      await guestVm(v, chosen); // with initially-set, this first harvest reported and cleared all
      const t = KvmManualProtectTracker.create(v, 0);
      await runUntilHalt(v.createVcpu(0));
      const expected = expectedPages(chosen);
      assert.deepEqual(pagesOf(native.bitmapToRuns(v.getDirtyLog(0))), expected);
      assert.deepEqual(pagesOf(native.bitmapToRuns(v.getDirtyLog(0))), expected, 'GET did not clear');
      v.clearDirtyLog(0, 0, 64); // pages 0..63: the code page and 20, 21, 50
      assert.deepEqual(pagesOf(native.bitmapToRuns(v.getDirtyLog(0))), [200, 255]);
      const h = await t.harvest();
      assert.deepEqual(pagesOf(h.runs), [200, 255]);
      assert.deepEqual(pagesOf(native.bitmapToRuns(v.getDirtyLog(0))), [], 'the harvest cleared');
    });
  });

  test('ring: exactly the written pages; enabling it once a vCPU exists is a typed error', async () => {
    await withVm(async (v) => {
      if (!caps.DIRTY_LOG_RING) return; // the EOPNOTSUPP fallback is asserted above
      KvmRingTracker.enable(v, 16 * PAGE);
      await guestVm(v, chosen);
      const t = KvmRingTracker.create(v, 0);
      await runUntilHalt(v.createVcpu(0));
      v.writeGuest(100 * PAGE, Buffer.from([9]));
      assert.deepEqual(pagesOf((await t.harvest()).runs), expectedPages([...chosen, 100]));
      assert.equal((await t.harvest()).dirtyPages, 0);
    });
    await withVm((v) => {
      v.createVcpu(0);
      assert.throws(
        () => KvmRingTracker.enable(v, PAGE),
        vhError(ErrorCodes.INVALID_ARGUMENT, caps.DIRTY_LOG_RING ? 'EINVAL' : 'EOPNOTSUPP', 'KVM_ENABLE_CAP'),
      );
    });
  });

  // 230 pages into a one-page ring (256 entries, soft limit 256 - 64 reserved on AMD).
  const many = Array.from({ length: 230 }, (_, i) => 16 + i);

  test('ring full: the vCPU exits, the owner harvests and resumes, every page is reported', async (t) => {
    await withVm(async (v) => {
      if (!caps.DIRTY_LOG_RING) return;
      KvmRingTracker.enable(v, PAGE);
      await guestVm(v, many);
      const tracker = KvmRingTracker.create(v, 0);
      const seen = new Set<number>();
      const collect = async (): Promise<void> => {
        for (const p of pagesOf((await tracker.harvest()).runs)) seen.add(p);
      };
      const fullExits = await runUntilHalt(v.createVcpu(0), collect);
      await collect();
      assert.deepEqual([...seen].sort((a, b) => a - b), expectedPages(many));
      t.diagnostic(`${kvmModule}: ${fullExits} KVM_EXIT_DIRTY_RING_FULL exit(s)`);
      if (kvmModule !== 'kvm_pvm') assert.ok(fullExits >= 1, 'the soft limit forced a ring-full exit');
    });
  });

  test('ring full with handleFull: the vCPU thread drains the rings itself, nothing is lost', async () => {
    await withVm(async (v) => {
      if (!caps.DIRTY_LOG_RING) return;
      KvmRingTracker.enable(v, PAGE, { handleFull: true });
      await guestVm(v, many);
      const tracker = KvmRingTracker.create(v, 0);
      const fullExits = await runUntilHalt(v.createVcpu(0));
      assert.equal(fullExits, 0, 'no ring-full exit reached JS');
      assert.deepEqual(pagesOf((await tracker.harvest()).runs), expectedPages(many));
    });
  });
});
