/**
 * Vcpu against a real /dev/kvm: guest programs (hand-assembled bytes) in real mode and long
 * mode with exact IO/MMIO/HLT exits and guest-memory effects, CPUID feature masks, register
 * state round trips (the state save/restore needs), and creation errors.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ErrorCodes, isVhError } from '../../src/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import type { Vcpu, VcpuExit, VcpuHandlers } from '../../src/kvm/vcpu';
import type { Vm } from '../../src/kvm/vm';

let kvm: KvmSystem;
before(() => {
  kvm = KvmSystem.open();
});
after(() => kvm.close());

const CODE = 0x1000;

/** A VM with `size` bytes of RAM at 0 and `code` at CODE; closed after fn. */
async function withVm<T>(code: number[], fn: (vm: Vm) => Promise<T> | T, size = 0x10000): Promise<T> {
  const vm = kvm.createVm();
  try {
    vm.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size });
    vm.writeGuest(CODE, Buffer.from(code));
    return await fn(vm);
  } finally {
    vm.close();
  }
}

/** Runs until the guest halts (and parks); returns every exit before the HLT. */
function runToHlt(vcpu: Vcpu, handlers: VcpuHandlers = {}): Promise<VcpuExit[]> {
  return new Promise((resolve, reject) => {
    const seen: VcpuExit[] = [];
    vcpu.start({
      ...handlers,
      exit(e) {
        if (e.reason === 'parked') resolve(seen);
        else if (e.reason === 'hlt') return;
        else if (e.reason === 'stopped') reject(new Error(`stopped before HLT: ${JSON.stringify(seen, replacer)}`));
        else seen.push(e);
      },
    });
  });
}

function replacer(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `0x${v.toString(16)}` : v;
}

describe('real mode guest', () => {
  // org 0x1000, ds = es = 0
  const program = [
    0xc6, 0x06, 0x00, 0x20, 0xaa, //       mov byte [0x2000], 0xaa
    0xc6, 0x06, 0x00, 0x30, 0xbb, //       mov byte [0x3000], 0xbb
    0xb0, 0x5a, //                         mov al, 0x5a
    0xe6, 0x42, //                         out 0x42, al
    0xb8, 0x34, 0x12, //                   mov ax, 0x1234
    0xba, 0xf8, 0x03, //                   mov dx, 0x3f8
    0xef, //                               out dx, ax
    0xe4, 0x60, //                         in al, 0x60
    0xa2, 0x00, 0x40, //                   mov [0x4000], al
    0xb8, 0x00, 0xd0, //                   mov ax, 0xd000
    0x8e, 0xc0, //                         mov es, ax
    0x26, 0x66, 0xc7, 0x06, 0x10, 0x00, 0xef, 0xbe, 0xad, 0xde, // mov dword es:[0x10], 0xdeadbeef
    0x26, 0x66, 0xa1, 0x20, 0x00, //       mov eax, es:[0x20]
    0x66, 0xa3, 0x04, 0x40, //             mov [0x4004], eax
    0xf4, //                               hlt
  ];

  test('writes pages, OUTs, INs and MMIO complete with exact data, then HLT parks', () =>
    withVm(program, async (vm) => {
      const vcpu = vm.createVcpu(0);
      vcpu.setupRealMode(CODE);
      const exits = await runToHlt(vcpu, {
        io: (e) => (e.direction === 'in' ? Buffer.from([0x77]) : undefined),
        mmio: (e) => (e.direction === 'read' ? Buffer.from([0x11, 0x22, 0x33, 0x44]) : undefined),
      });
      const shape = exits.map((e) => {
        const { seq: _seq, ...rest } = e;
        return rest;
      });
      assert.deepEqual(shape, [
        { reason: 'io', port: 0x42, size: 1, count: 1, direction: 'out', data: Buffer.from([0x5a]) },
        { reason: 'io', port: 0x3f8, size: 2, count: 1, direction: 'out', data: Buffer.from([0x34, 0x12]) },
        { reason: 'io', port: 0x60, size: 1, count: 1, direction: 'in' },
        { reason: 'mmio', address: 0xd0010n, length: 4, direction: 'write', data: Buffer.from([0xef, 0xbe, 0xad, 0xde]) },
        { reason: 'mmio', address: 0xd0020n, length: 4, direction: 'read' },
      ]);
      assert.equal(vm.readGuest(0x2000, 1)[0], 0xaa);
      assert.equal(vm.readGuest(0x3000, 1)[0], 0xbb);
      assert.equal(vm.readGuest(0x4000, 1)[0], 0x77);
      assert.deepEqual(vm.readGuest(0x4004, 4), Buffer.from([0x11, 0x22, 0x33, 0x44]));
      assert.equal(vcpu.state, 'parked');
      assert.equal(vcpu.getRegs().rip, BigInt(CODE + program.length)); // HLT retired
      await vcpu.stop();
      assert.equal(vcpu.state, 'stopped');
    }));

  test("hlt: 'stop' ends the thread after reporting the HLT", () =>
    withVm([0xf4], async (vm) => {
      const vcpu = vm.createVcpu(0);
      vcpu.setupRealMode(CODE);
      const reasons: string[] = [];
      await new Promise<void>((resolve) => {
        vcpu.start({ exit: (e) => (reasons.push(e.reason), e.reason === 'stopped' && resolve()) }, { hlt: 'stop' });
      });
      assert.deepEqual(reasons, ['hlt', 'stopped']);
      assert.equal(vcpu.state, 'stopped');
    }));
});

describe('long mode guest', () => {
  const program = [
    0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rax, 0x1122334455667788
    0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, //                  mov rdi, 0x200000
    0x48, 0x89, 0x07, //                                          mov [rdi], rax
    0xc7, 0x87, 0x23, 0x01, 0x10, 0x00, 0xef, 0xbe, 0xad, 0xde, // mov dword [rdi+0x100123], 0xdeadbeef
    0xb8, 0xfe, 0xca, 0x00, 0x00, //                              mov eax, 0xcafe
    0xe7, 0x99, //                                                out 0x99, eax
    0xf4, //                                                      hlt
  ];

  test('a 64-bit program writes above 1 MiB and OUTs a value', () =>
    withVm(
      program,
      async (vm) => {
        const vcpu = vm.createVcpu(0);
        vcpu.setupLongMode(CODE, { pageTableGpa: 0x10000, gdtGpa: 0x9000 });
        const sregs = vcpu.getSregs();
        assert.equal(sregs.efer & 0x500n, 0x500n, 'EFER.LME|LMA');
        assert.equal(sregs.cs.l, 1);
        const exits = await runToHlt(vcpu);
        assert.equal(exits.length, 1, JSON.stringify(exits, replacer));
        const out = exits[0];
        assert.ok(out?.reason === 'io' && out.direction === 'out');
        assert.equal(out.port, 0x99);
        assert.equal(out.size, 4);
        assert.deepEqual(out.data, Buffer.from([0xfe, 0xca, 0, 0]));
        assert.equal(vm.readGuest(0x200000, 8).readBigUInt64LE(), 0x1122334455667788n);
        assert.equal(vm.readGuest(0x300123, 4).readUInt32LE(), 0xdeadbeef);
        assert.equal(vcpu.getRegs().rip, BigInt(CODE + program.length));
      },
      0x400000,
    ));
});

describe('CPUID', () => {
  // cpuid leaf 1; out 0x70, ecx (32 bits); hlt
  const program = [
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x66, 0x31, 0xc9, //                   xor ecx, ecx
    0x0f, 0xa2, //                         cpuid
    0x66, 0x89, 0xc8, //                   mov eax, ecx
    0x66, 0xe7, 0x70, //                   out 0x70, eax
    0xf4, //                               hlt
  ];
  const ecxBits: Record<string, number> = { x2apic: 21, popcnt: 23, sse4_2: 20, hypervisor: 31 };

  async function guestEcx(disable: string[]): Promise<number> {
    return withVm(program, async (vm) => {
      const vcpu = vm.createVcpu(0, { cpuid: { disable } });
      vcpu.setupRealMode(CODE);
      const [out] = await runToHlt(vcpu);
      assert.ok(out?.reason === 'io' && out.direction === 'out' && out.port === 0x70);
      return out.data.readUInt32LE();
    });
  }

  test('a disabled feature is cleared in what the guest sees', async () => {
    const baseline = await guestEcx([]);
    const name = Object.keys(ecxBits).find((n) => baseline & (1 << (ecxBits[n] as number)));
    assert.ok(name, `none of ${Object.keys(ecxBits).join(', ')} offered: ecx=${baseline.toString(16)}`);
    const bit = 1 << (ecxBits[name] as number);
    const masked = await guestEcx([name]);
    assert.equal(masked & bit, 0, `${name} still set`);
    assert.equal(masked | bit, baseline | bit, 'only that bit changed');
  });

  test('an unknown feature name is INVALID_ARGUMENT, and does not use up the vCPU id', () =>
    withVm([0xf4], (vm) => {
      assert.throws(() => vm.createVcpu(0, { cpuid: { disable: ['no-such-feature'] } }), (e: unknown) => {
        assert.ok(isVhError(e) && e.code === ErrorCodes.INVALID_ARGUMENT, String(e));
        return true;
      });
      assert.equal(vm.createVcpu(0).id, 0); // the options are checked before KVM_CREATE_VCPU: id 0 is still free
    }));
});

describe('register state', () => {
  test('regs, sregs, fpu, msrs, lapic, mp_state and events round-trip exactly', async () => {
    const vm = kvm.createVm({ irqchip: true });
    try {
      vm.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: 0x20000 });
      const vcpu = vm.createVcpu(0);
      vcpu.setupLongMode(CODE, { pageTableGpa: 0x10000, gdtGpa: 0x9000 });

      const regs = { ...vcpu.getRegs(), rax: 0xfedcba9876543210n, r15: 0x8000000000000001n, rsp: 0x7ff0n };
      vcpu.setRegs(regs);
      assert.deepEqual(vcpu.getRegs(), regs);

      const sregs = vcpu.getSregs();
      vcpu.setSregs({ ...sregs, cr2: 0xffff800000001000n });
      assert.deepEqual(vcpu.getSregs(), { ...sregs, cr2: 0xffff800000001000n });
      vcpu.setSregs(sregs);
      assert.deepEqual(vcpu.getSregs(), sregs);

      const fpu = vcpu.getFpu();
      const xmm = Buffer.alloc(256);
      for (let i = 0; i < xmm.length; i++) xmm[i] = i;
      vcpu.setFpu({ ...fpu, xmm, fcw: 0x27f });
      assert.deepEqual(vcpu.getFpu(), { ...fpu, xmm, fcw: 0x27f });

      // SYSENTER_CS/ESP/EIP, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE.
      const msrs = [
        { index: 0x174, data: 0x10n },
        // SYSENTER_ESP/EIP: 32 bits only on AMD (KVM's SVM keeps the high half for Intel-vendor guests only).
        { index: 0x175, data: 0x81002000n },
        { index: 0x176, data: 0x81003000n },
        { index: 0xc0000081, data: 0x0023001000000000n },
        { index: 0xc0000082, data: 0xffffffff81000000n },
        { index: 0xc0000083, data: 0xffffffff81000100n },
        { index: 0xc0000084, data: 0x47700n },
        { index: 0xc0000102, data: 0xffff888000000000n },
      ];
      assert.equal(vcpu.setMsrs(msrs), msrs.length);
      assert.deepEqual(vcpu.getMsrs(msrs.map((m) => m.index)), msrs);

      const lapic = vcpu.getLapic();
      assert.equal(lapic.length, 1024);
      vcpu.setLapic(lapic);
      assert.deepEqual(vcpu.getLapic(), lapic);

      const mp = vcpu.getMpState();
      vcpu.setMpState(mp);
      assert.equal(vcpu.getMpState(), mp);

      const events = vcpu.getVcpuEvents();
      vcpu.setVcpuEvents(events);
      assert.deepEqual(vcpu.getVcpuEvents(), events);
    } finally {
      vm.close();
    }
  });

  test('a second vCPU with the same id is INVALID_ARGUMENT (EEXIST); a closed Vm closes its vCPUs', () =>
    withVm([0xf4], (vm) => {
      const vcpu = vm.createVcpu(3);
      assert.equal(vcpu.id, 3);
      assert.throws(() => vm.createVcpu(3), (e: unknown) => {
        assert.ok(isVhError(e) && e.code === ErrorCodes.INVALID_ARGUMENT, String(e));
        assert.equal((e.details as { code?: string }).code, 'EEXIST');
        return true;
      });
      vm.close();
      assert.equal(vcpu.state, 'closed');
      assert.throws(() => vcpu.getRegs(), (e: unknown) => isVhError(e) && e.code === ErrorCodes.INTERNAL);
    }));
});
