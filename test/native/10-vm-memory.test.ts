/**
 * Vm and guest memory against a real /dev/kvm: VM creation options, memory slots of every
 * backing this host can provide, exact guest byte round trips, kernel and caller errors with
 * their codes, use after close, and 300 create/destroy cycles that must not leak fds or RSS.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { ErrorCodes, isVhError } from '../../src/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import type { NativeKvmSystem, NativeVm } from '../../src/native/binding';
import { loadNative } from '../../src/native/loader';

const native = loadNative();
const PAGE = native.hostPageSize();
const MiB = 1 << 20;

let kvm: NativeKvmSystem;
before(() => {
  kvm = new native.KvmSystem();
});
after(() => kvm.close());

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function mappingCount(): number {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length;
}

function rssBytes(): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  assert.ok(kb, 'VmRSS in /proc/self/status');
  return Number(kb) * 1024;
}

/** A fresh VM closed after `fn`, whatever happens. */
function withVm<T>(fn: (v: NativeVm) => T): T {
  const v = kvm.createVm();
  try {
    return fn(v);
  } finally {
    v.close();
  }
}

/** Matches a native error by code and, optionally, a message pattern. */
function nativeError(code: string, message?: RegExp) {
  return (e: unknown): boolean => {
    assert.equal((e as { code?: unknown }).code, code, String(e));
    if (message) assert.match((e as Error).message, message);
    return true;
  };
}

describe('VM lifecycle', () => {
  test('createVm() opens one fd and close() releases it; closed reports it', () => {
    const fds = openFdCount();
    const v = kvm.createVm();
    assert.equal(openFdCount(), fds + 1);
    assert.equal(v.closed, false);
    assert.ok(v.slotLimit > 0, 'KVM_CAP_NR_MEMSLOTS');
    assert.equal(v.checkExtension('USER_MEMORY'), 1);
    v.close();
    v.close(); // idempotent
    assert.equal(v.closed, true);
    assert.equal(openFdCount(), fds);
  });

  test('irqchip, PIT2, TSS and identity-map options are accepted', () => {
    const v = kvm.createVm({ irqchip: true, pit2: true, tssAddr: 0xfffbd000, identityMapAddr: 0xfffbc000n });
    try {
      assert.ok(v.checkExtension('IRQCHIP') > 0);
      // Memory still registers alongside the in-kernel devices and the TSS pages.
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 16 * PAGE });
    } finally {
      v.close();
    }
  });

  test('a failing option closes the new VM fd before the error propagates', () => {
    const fds = openFdCount();
    assert.throws(() => kvm.createVm({ irqchip: 'yes' as unknown as boolean }), nativeError('ERR_INVALID_ARG', /irqchip/));
    assert.equal(openFdCount(), fds);
  });

  test('a Vm cannot be constructed from JS', () => {
    const Ctor = (native as unknown as { Vm: new () => unknown }).Vm;
    assert.throws(() => new Ctor(), nativeError('ERR_ILLEGAL_CONSTRUCTOR'));
  });

  test('enableCap rejects unknown names and surfaces kernel errno', () => {
    withVm((v) => {
      assert.throws(() => v.enableCap('NO_SUCH_CAP'), nativeError('ERR_UNKNOWN_CAPABILITY'));
      // NR_MEMSLOTS is not an enable-able capability: the kernel answers EINVAL.
      assert.throws(() => v.enableCap('NR_MEMSLOTS', [1]), nativeError('EINVAL', /KVM_ENABLE_CAP/));
    });
  });
});

describe('guest memory', () => {
  for (const backing of ['anonymous', 'memfd'] as const) {
    test(`${backing}: write/read round trip of exact bytes, also across a page boundary`, () => {
      withVm((v) => {
        const region = v.addMemoryRegion({ slot: 0, guestPhysAddr: 0x100000, size: 2 * MiB, backing });
        assert.deepEqual(region, {
          slot: 0, guestPhysAddr: 0x100000, size: 2 * MiB, backing, logDirtyPages: false, readonly: false,
        });
        const data = randomBytes(3 * PAGE);
        const gpa = 0x100000 + PAGE - 17;
        v.writeGuest(gpa, data);
        assert.deepEqual(v.readGuest(gpa, data.length), data);
        assert.deepEqual(v.readGuest(0x100000, 16), Buffer.alloc(16), 'fresh memory reads as zeros');
        // The very last byte of the region is reachable; one past it is not.
        v.writeGuest(0x100000 + 2 * MiB - 1, Buffer.from([0xa5]));
        assert.deepEqual(v.readGuest(BigInt(0x100000 + 2 * MiB - 1), 1), Buffer.from([0xa5]));
      });
    });
  }

  test('regions() lists slots by guest-physical address; dirty logging toggles', () => {
    withVm((v) => {
      v.addMemoryRegion({ slot: 2, guestPhysAddr: 0x400000, size: PAGE, backing: 'memfd' });
      v.addMemoryRegion({ slot: 1, guestPhysAddr: 0, size: 4 * PAGE, logDirtyPages: true });
      assert.deepEqual(v.regions().map((r) => [r.slot, r.guestPhysAddr, r.logDirtyPages]), [
        [1, 0, true],
        [2, 0x400000, false],
      ]);
      v.setDirtyLogging(1, false);
      v.setDirtyLogging(2, true);
      assert.deepEqual(v.regions().map((r) => r.logDirtyPages), [false, true]);
      assert.throws(() => v.setDirtyLogging(9, true), nativeError('ERR_INVALID_ARG', /slot 9/));
    });
  });

  test('an overlapping guest-physical range is refused by the kernel with EEXIST', () => {
    withVm((v) => {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 16 * PAGE });
      assert.throws(
        () => v.addMemoryRegion({ slot: 1, guestPhysAddr: 8 * PAGE, size: 16 * PAGE }),
        (e: unknown) => {
          assert.deepEqual({ ...(e as object) }, { code: 'EEXIST', errno: 17, syscall: 'KVM_SET_USER_MEMORY_REGION' });
          assert.match((e as Error).message, /overlaps another memory slot/);
          return true;
        },
      );
      assert.equal(v.regions().length, 1, 'the refused region is not kept');
    });
  });

  test('slot ids at or above KVM_CAP_NR_MEMSLOTS, and slots in use, are refused naming the slot', () => {
    withVm((v) => {
      assert.throws(() => v.addMemoryRegion({ slot: v.slotLimit, guestPhysAddr: 0, size: PAGE }),
        nativeError('ERR_INVALID_ARG', new RegExp(`slot ${v.slotLimit} is out of range`)));
      assert.throws(() => v.addMemoryRegion({ slot: -1, guestPhysAddr: 0, size: PAGE }), nativeError('ERR_INVALID_ARG', /slot/));
      v.addMemoryRegion({ slot: 3, guestPhysAddr: 0, size: PAGE });
      assert.throws(() => v.addMemoryRegion({ slot: 3, guestPhysAddr: 0x10000, size: PAGE }),
        nativeError('ERR_INVALID_ARG', /slot 3 is already in use/));
    });
  });

  test('invalid sizes and addresses are refused naming the field', () => {
    withVm((v) => {
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ slot: 0, guestPhysAddr: 0, size: PAGE + 1 }, /^ERR_INVALID_ARG: size .* not a multiple of the host page size/],
        [{ slot: 0, guestPhysAddr: 0, size: 0 }, /size must be greater than 0/],
        [{ slot: 0, guestPhysAddr: 123, size: PAGE }, /guestPhysAddr 0x7b is not aligned/],
        [{ slot: 0, guestPhysAddr: 0.5, size: PAGE }, /guestPhysAddr must be a non-negative safe integer/],
        [{ slot: 0, size: PAGE }, /guestPhysAddr is required/],
        [{ slot: 0, guestPhysAddr: 0, size: PAGE, backing: 'tmpfs' }, /backing must be/],
        [{ slot: 0, guestPhysAddr: 0, size: PAGE, readonly: 1 }, /readonly must be a boolean/],
        [{ slot: 0, guestPhysAddr: 0, size: PAGE, backing: 'hugetlb2M' }, /size .* not a multiple of the hugetlb2M page size/],
      ];
      for (const [spec, message] of cases) {
        assert.throws(() => v.addMemoryRegion(spec as never), nativeError('ERR_INVALID_ARG', message));
      }
      assert.deepEqual(v.regions(), []);
    });
  });

  test('hugetlb2M backing: with 4 huge pages reserved for the test (as root) a 4 MiB slot round-trips ' +
    'bytes and holds 2 pages while mapped; if the kernel reserves none, ENOMEM with the nr_hugepages hint', () => {
    const dir = '/sys/kernel/mm/hugepages/hugepages-2048kB';
    const read = (name: string): number => Number(fs.readFileSync(`${dir}/${name}`, 'utf8'));
    const oldNr = read('nr_hugepages');
    const spec = { slot: 0, guestPhysAddr: 0, size: 4 * MiB, backing: 'hugetlb2M' as const };
    try {
      // Reserving pages needs root (the native suite runs as root on the host and in the sandbox).
      fs.writeFileSync(`${dir}/nr_hugepages`, String(oldNr + 4));
      const free = read('free_hugepages');
      if (read('nr_hugepages') === oldNr) {
        // The kernel could not find 2 MiB of contiguous memory: the documented fallback.
        withVm((v) => assert.throws(() => v.addMemoryRegion(spec), nativeError('ENOMEM', /mmap .*hugepages-2048kB\/nr_hugepages/)));
        return;
      }
      assert.ok(free >= 2, `free_hugepages ${free} after reserving 4`);
      withVm((v) => {
        v.addMemoryRegion(spec);
        // Without MAP_NORESERVE the mmap reserves both pages up front...
        assert.equal(read('free_hugepages') - read('resv_hugepages'), free - 2, 'both pages reserved at map time');
        const data = randomBytes(64);
        v.writeGuest(2 * MiB - 32, data); // spans the two huge pages
        v.writeGuest(4 * MiB - 4, Buffer.from('huge'));
        assert.deepEqual(v.readGuest(2 * MiB - 32, 64), data);
        assert.equal(v.readGuest(4 * MiB - 4, 4).toString(), 'huge');
        // ...and touching them takes them off the free list.
        assert.equal(read('free_hugepages'), free - 2, 'free_hugepages while mapped');
      });
      assert.equal(read('free_hugepages'), free, 'free_hugepages after close');
    } finally {
      fs.writeFileSync(`${dir}/nr_hugepages`, String(oldNr));
    }
    assert.equal(read('nr_hugepages'), oldNr, 'nr_hugepages restored');
  });

  test('out-of-bounds reads and writes throw ERR_OUT_OF_RANGE naming the gpa', () => {
    withVm((v) => {
      // Two adjacent regions: a range spanning both is still refused (they are separate mappings).
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 4 * PAGE });
      v.addMemoryRegion({ slot: 1, guestPhysAddr: 4 * PAGE, size: 4 * PAGE, backing: 'memfd' });
      const end = 8 * PAGE;
      const hex = (n: number) => `0x${n.toString(16)}`;
      assert.throws(() => v.readGuest(end, 1), nativeError('ERR_OUT_OF_RANGE', new RegExp(`gpa ${hex(end)} is not in any`)));
      assert.throws(() => v.readGuest(end - 2, 4), nativeError('ERR_OUT_OF_RANGE', new RegExp(hex(end - 2))));
      assert.throws(() => v.readGuest(4 * PAGE - 1, 2), nativeError('ERR_OUT_OF_RANGE', /runs past the end of slot 0/));
      assert.throws(() => v.writeGuest(4 * PAGE - 1, Buffer.alloc(2)), nativeError('ERR_OUT_OF_RANGE'));
      assert.throws(() => v.writeGuest(0x10000000, Buffer.alloc(1)), nativeError('ERR_OUT_OF_RANGE', /0x10000000/));
      assert.throws(() => v.readGuest(2n ** 63n, 1), nativeError('ERR_OUT_OF_RANGE'));
      assert.throws(() => v.readGuest(0, 2 ** 40), nativeError('ERR_OUT_OF_RANGE'));
      assert.throws(() => v.writeGuest(0, 'text' as unknown as Uint8Array), nativeError('ERR_INVALID_ARG', /Buffer or Uint8Array/));
    });
  });

  test('a readonly slot is accepted when KVM_CAP_READONLY_MEM is offered; the VMM can still fill it', (t) => {
    withVm((v) => {
      if (v.checkExtension('READONLY_MEM') === 0) {
        t.skip('KVM_CAP_READONLY_MEM not offered');
        return;
      }
      const r = v.addMemoryRegion({ slot: 0, guestPhysAddr: 0xf0000, size: 16 * PAGE, readonly: true });
      assert.equal(r.readonly, true);
      v.writeGuest(0xf0000, Buffer.from('ROM'));
      assert.equal(v.readGuest(0xf0000, 3).toString(), 'ROM');
    });
  });

  test('a removed region is unmapped: access is out of range and the slot can be reused', () => {
    withVm((v) => {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 4 * PAGE });
      v.writeGuest(0, Buffer.from('x'));
      v.removeMemoryRegion(0);
      assert.deepEqual(v.regions(), []);
      assert.throws(() => v.readGuest(0, 1), nativeError('ERR_OUT_OF_RANGE'));
      assert.throws(() => v.removeMemoryRegion(0), nativeError('ERR_INVALID_ARG', /slot 0 has no memory region/));
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 4 * PAGE, backing: 'memfd' });
      assert.deepEqual(v.readGuest(0, 1), Buffer.from([0]), 'a new mapping, not the old bytes');
    });
  });

  test('after close() every method throws ERR_CLOSED', () => {
    const v = kvm.createVm();
    v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: PAGE });
    v.close();
    const calls: Array<[string, () => unknown]> = [
      ['readGuest', () => v.readGuest(0, 1)],
      ['writeGuest', () => v.writeGuest(0, Buffer.alloc(1))],
      ['addMemoryRegion', () => v.addMemoryRegion({ slot: 1, guestPhysAddr: 0x10000, size: PAGE })],
      ['removeMemoryRegion', () => v.removeMemoryRegion(0)],
      ['setDirtyLogging', () => v.setDirtyLogging(0, true)],
      ['regions', () => v.regions()],
      ['checkExtension', () => v.checkExtension('USER_MEMORY')],
      ['enableCap', () => v.enableCap('USER_MEMORY')],
    ];
    for (const [name, call] of calls) assert.throws(call, nativeError('ERR_CLOSED'), name);
  });
});

describe('TypeScript Vm', () => {
  test('errors map to stable codes and keep the native facts', () => {
    const system = KvmSystem.open({ native });
    const v = system.createVm({ irqchip: true });
    try {
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 4 * PAGE });
      v.writeGuest(PAGE, Buffer.from('ts'));
      assert.equal(v.readGuest(PAGE, 2).toString(), 'ts');
      assert.throws(() => v.addMemoryRegion({ slot: 1, guestPhysAddr: 0, size: PAGE }),
        (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT) && e.details.code === 'EEXIST');
      assert.throws(() => v.readGuest(4 * PAGE, 1),
        (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT) && e.details.code === 'ERR_OUT_OF_RANGE' &&
          /vm: ERR_OUT_OF_RANGE: gpa 0x/.test(e.message));
      assert.throws(() => v.addMemoryRegion({ slot: 1, guestPhysAddr: 0x10000, size: 100 }),
        (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT) && /size/.test(e.message));
    } finally {
      v.close();
      system.close();
    }
    assert.throws(() => v.regions(), (e: unknown) => isVhError(e, ErrorCodes.INTERNAL) && e.details.code === 'ERR_CLOSED');
  });
});

describe('resource ownership', () => {
  const CYCLES = 300;

  test(`${CYCLES} VMs with a touched 2 MiB region each leave fd count and RSS flat`, () => {
    // Page faults are slow under nested emulation, so each VM commits one page in every 16
    // (128 KiB): a leaked region still costs >= 37 MiB of RSS over the run, and any leaked
    // mapping at all shows up in /proc/self/maps.
    const page = Buffer.alloc(PAGE, 0x5a);
    const cycle = (i: number) => {
      const v = kvm.createVm();
      v.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 2 * MiB, backing: i % 2 ? 'memfd' : 'anonymous' });
      for (let off = 0; off < 2 * MiB; off += 16 * PAGE) v.writeGuest(off, page);
      v.close();
    };
    for (let i = 0; i < 20; i++) cycle(i); // warm up allocators and JIT
    const fds = openFdCount();
    const maps = mappingCount();
    const rss = rssBytes();
    for (let i = 0; i < CYCLES; i++) cycle(i);
    assert.equal(openFdCount(), fds, 'open fds');
    // V8 and malloc may add or merge a few mappings of their own; a leak adds one per cycle.
    assert.ok(Math.abs(mappingCount() - maps) < 20, `mappings ${maps} -> ${mappingCount()}`);
    const growth = rssBytes() - rss;
    assert.ok(growth < 16 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  });

  test('VMs dropped without close() are released by the garbage collector', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const fds = openFdCount();
    (() => {
      for (let i = 0; i < 30; i++) kvm.createVm().addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: PAGE, backing: 'memfd' });
    })();
    assert.ok(openFdCount() >= fds + 60, 'each VM holds its fd and its memfd while alive');
    for (let i = 0; i < 20 && openFdCount() > fds; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(openFdCount(), fds);
  });
});
