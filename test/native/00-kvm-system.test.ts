/**
 * KvmSystem against the real /dev/kvm. Fails (never skips) when KVM does not work: these
 * values are what every later suite (VM, vCPU) builds on. Must run with only node, the built
 * addon and /dev/kvm (also inside the nested-KVM sandbox, where the CPU is AMD with 1 vCPU).
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { ErrorCodes, isVhError } from '../../src/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import { probeKvm } from '../../src/kvm/probe';
import type { NativeCpuidEntry, NativeKvmSystem } from '../../src/native/binding';
import { loadNative } from '../../src/native/loader';

const native = loadNative();
const kvm: NativeKvmSystem = new native.KvmSystem();
after(() => kvm.close());

const REQUIRED_CAPS = [
  'NR_VCPUS', 'MAX_VCPUS', 'MAX_VCPU_ID', 'NR_MEMSLOTS', 'USER_MEMORY', 'SET_TSS_ADDR', 'IRQCHIP', 'PIT2',
  'IMMEDIATE_EXIT', 'READONLY_MEM', 'MANUAL_DIRTY_LOG_PROTECT2', 'DIRTY_LOG_RING', 'DIRTY_LOG_RING_ACQ_REL',
  'NESTED_STATE', 'TSC_CONTROL', 'X86_USER_SPACE_MSR', 'HYPERV', 'EXT_CPUID', 'GET_MSR_FEATURES', 'HYPERV_SYNIC',
  'SPLIT_IRQCHIP', 'X2APIC_API', 'XSAVE', 'XCRS', 'COALESCED_MMIO', 'IOEVENTFD', 'IRQFD', 'KVMCLOCK_CTRL', 'VM_TYPES',
];

function cpuinfoVendor(): string {
  const m = /^vendor_id\s*:\s*(\S+)/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  assert.ok(m?.[1], 'vendor_id in /proc/cpuinfo');
  return m[1];
}

function vendorOf(entries: NativeCpuidEntry[]): string {
  const leaf0 = entries.find((e) => e.function === 0);
  assert.ok(leaf0, 'leaf 0 present');
  const b = Buffer.alloc(12);
  b.writeUInt32LE(leaf0.ebx, 0);
  b.writeUInt32LE(leaf0.edx, 4);
  b.writeUInt32LE(leaf0.ecx, 8);
  return b.toString('latin1');
}

describe('KvmSystem on /dev/kvm', () => {
  test('API version is 12', () => {
    assert.equal(kvm.apiVersion(), 12);
    assert.equal(kvm.closed, false);
  });

  test('capability table: required names, capabilities() agrees with checkExtension()', () => {
    const names = native.capabilityNames();
    for (const n of REQUIRED_CAPS) assert.ok(names.includes(n), n);
    assert.equal(new Set(names).size, names.length, 'names are unique');
    const caps = kvm.capabilities();
    assert.deepEqual(Object.keys(caps), names, 'capabilities() reports every name, in table order');
    for (const n of names) {
      assert.ok(Number.isInteger(caps[n]) && (caps[n] ?? -1) >= 0, `${n}=${caps[n]}`);
      assert.equal(kvm.checkExtension(n), caps[n], n);
    }
  });

  test('sizing and baseline capabilities hold on any x86 KVM', () => {
    const c = kvm.capabilities();
    const get = (n: string): number => c[n] ?? Number.NaN;
    assert.equal(get('USER_MEMORY'), 1);
    assert.equal(get('IMMEDIATE_EXIT'), 1);
    assert.ok(get('NR_MEMSLOTS') >= 32, `NR_MEMSLOTS=${get('NR_MEMSLOTS')}`);
    assert.ok(get('NR_VCPUS') >= 1 && get('NR_VCPUS') <= get('MAX_VCPUS'), `NR_VCPUS=${get('NR_VCPUS')} MAX_VCPUS=${get('MAX_VCPUS')}`);
    assert.ok(get('MAX_VCPU_ID') >= get('MAX_VCPUS'), `MAX_VCPU_ID=${get('MAX_VCPU_ID')}`);
    // x86 KVM answers NR_VCPUS with min(online CPUs, KVM_MAX_VCPUS).
    assert.equal(get('NR_VCPUS'), Math.min(os.cpus().length, get('MAX_VCPUS')));
  });

  test('vCPU mmap size is whole pages; host page size is 4 KiB on x86-64', () => {
    const page = native.hostPageSize();
    assert.equal(page, 4096);
    const size = kvm.vcpuMmapSize();
    assert.ok(size >= page, `vcpuMmapSize=${size}`);
    assert.equal(size % page, 0, `vcpuMmapSize=${size}`);
  });

  test('supported CPUID: basic and extended ranges, the host vendor, x86-64 baseline features', () => {
    const entries = kvm.supportedCpuid();
    assert.ok(entries.length >= 2 && entries.length <= 4096, `${entries.length} entries`);
    const fns = new Set(entries.map((e) => e.function));
    assert.ok(fns.has(0) && fns.has(0x80000000), 'leaves 0 and 0x80000000');
    const maxBasic = entries.find((e) => e.function === 0)?.eax ?? 0;
    const maxExt = entries.find((e) => e.function === 0x80000000)?.eax ?? 0;
    assert.ok(maxBasic >= 7 && maxExt >= 0x80000008, `max leaves ${maxBasic.toString(16)} ${maxExt.toString(16)}`);
    for (const e of entries) {
      for (const r of [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx]) {
        assert.ok(Number.isInteger(r) && r >= 0 && r <= 0xffffffff, JSON.stringify(e));
      }
    }
    assert.equal(vendorOf(entries), cpuinfoVendor());

    const features = native.decodeCpuidFeatures(entries);
    // Not 'hypervisor': kvm_intel/kvm_amd leave that bit for the VMM to set (only some KVM
    // flavours, e.g. kvm_pvm, report it). x2apic and kvmclock are emulated by KVM itself.
    for (const f of ['fpu', 'tsc', 'cx8', 'cmov', 'sse', 'sse2', 'lm', 'nx', 'syscall', 'x2apic', 'kvmclock']) {
      assert.ok(features.includes(f), `${f} missing from ${features.join(' ')}`);
    }
    assert.deepEqual(features, [...new Set(features)].sort(), 'sorted and unique');
  });

  test('MSR index list: TSC, SYSENTER_CS and LSTAR, as unique u32 numbers', () => {
    const msrs = kvm.msrIndexList();
    assert.ok(msrs.length > 0);
    for (const m of [0x10, 0x174, 0xc0000082]) assert.ok(msrs.includes(m), `MSR 0x${m.toString(16)}`);
    for (const m of msrs) assert.ok(Number.isInteger(m) && m >= 0 && m <= 0xffffffff, String(m));
    assert.equal(new Set(msrs).size, msrs.length, 'unique');
  });

  test('the typed wrapper reports the same facts', () => {
    const sys = KvmSystem.open();
    try {
      assert.equal(sys.devicePath, '/dev/kvm');
      assert.equal(sys.apiVersion(), 12);
      assert.deepEqual(sys.capabilities(), kvm.capabilities());
      assert.equal(sys.checkExtension('USER_MEMORY'), 1);
      assert.deepEqual(sys.capabilityNames(), native.capabilityNames());
      assert.equal(sys.vcpuMmapSize(), kvm.vcpuMmapSize());
      assert.deepEqual(sys.cpuidFeatures(), native.decodeCpuidFeatures(kvm.supportedCpuid()));
      assert.deepEqual(sys.msrIndexList(), kvm.msrIndexList());
    } finally {
      sys.close();
    }
  });

  test('probeKvm: available with every field filled', () => {
    const info = probeKvm({ devicePath: '/dev/kvm', native });
    assert.equal(info.available, true, info.reason ?? '');
    assert.equal(info.reason, null);
    assert.equal(info.errorCode, null);
    assert.equal(info.apiVersion, 12);
    assert.equal(info.capabilities.USER_MEMORY, 1);
    assert.equal(info.vcpuMmapSize, kvm.vcpuMmapSize());
    assert.ok(info.cpuidFeatures.includes('lm'));
    assert.equal(info.msrCount, kvm.msrIndexList().length);
  });
});

describe('KvmSystem close()', () => {
  test('idempotent; every method then throws ERR_CLOSED (errno 0)', () => {
    const k = new native.KvmSystem('/dev/kvm');
    k.close();
    k.close();
    assert.equal(k.closed, true);
    const calls: Array<[string, () => unknown]> = [
      ['apiVersion', () => k.apiVersion()],
      ['checkExtension', () => k.checkExtension('USER_MEMORY')],
      ['capabilities', () => k.capabilities()],
      ['vcpuMmapSize', () => k.vcpuMmapSize()],
      ['supportedCpuid', () => k.supportedCpuid()],
      ['msrIndexList', () => k.msrIndexList()],
    ];
    for (const [name, call] of calls) {
      assert.throws(call, (e: unknown) => {
        const err = e as { code?: string; errno?: number; message?: string };
        return err.code === 'ERR_CLOSED' && err.errno === 0 && /closed/.test(err.message ?? '');
      }, name);
    }
  });

  test('the wrapper maps use-after-close to INTERNAL', () => {
    const sys = KvmSystem.open();
    sys.close();
    assert.equal(sys.closed, true);
    assert.throws(() => sys.apiVersion(), (e: unknown) => isVhError(e, ErrorCodes.INTERNAL) && e.details.code === 'ERR_CLOSED');
  });
});
