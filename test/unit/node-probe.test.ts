import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { probeNode, probeNodeReport } from '../../src/node/probe';
import { isValidLabel } from '../../src/node/labels';
import type { NativeBinding, NativeCpuidEntry, NativeKvmSystem } from '../../src/native/binding';
import type { NodeInfo, ProbeOptions } from '../../src/node/types';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/host');
const AMD = path.join(FIXTURES, 'amd-epyc-2vcpu-kvm-guest');
const INTEL = path.join(FIXTURES, 'intel-xeon-2s-ht-numa2');

const CAPS: Record<string, number> = {
  NR_VCPUS: 16, MAX_VCPUS: 1024, USER_MEMORY: 1, IRQCHIP: 1, HLT: 1, HYPERV: 1, HYPERV_TIME: 1, HYPERV_SYNIC: 1,
};
const FEATURES = ['avx2', 'sse4.2', 'tsc_adjust', 'vmx', 'x2apic'];

/** A stand-in for an addon export the probe must never use. */
function notInProbe<K extends keyof NativeBinding>(name: K): NativeBinding[K] {
  return (() => { throw new Error(`fake addon: ${String(name)} is not part of the probe`); }) as unknown as NativeBinding[K];
}

/** A NativeBinding twin: open fails with `openError` (errno facts like the addon's), else a healthy KVM. */
function fakeNative(openError?: { code: string; errno: number }): NativeBinding {
  class FakeKvmSystem implements NativeKvmSystem {
    closed = false;
    constructor(devicePath = '/dev/kvm') {
      if (openError !== undefined) {
        throw Object.assign(new Error(`${openError.code}: open '${devicePath}'`), { ...openError, syscall: 'open', path: devicePath });
      }
    }
    apiVersion(): number { return 12; }
    checkExtension(name: string): number { return CAPS[name] ?? 0; }
    capabilities(): Record<string, number> { return { ...CAPS }; }
    vcpuMmapSize(): number { return 12288; }
    supportedCpuid(): NativeCpuidEntry[] {
      return [{ function: 7, index: 0, flags: 1, eax: 0, ebx: 0x20, ecx: 0, edx: 0 }];
    }
    msrIndexList(): number[] { return [0x10, 0x3b, 0x40000002]; }
    close(): void { this.closed = true; }
    // The probe never creates VMs; a call here is a bug in the code under test.
    createVm(): never { throw new Error('FakeKvmSystem: createVm is not part of the probe'); }
  }
  return {
    KvmSystem: FakeKvmSystem,
    capabilityNames: () => Object.keys(CAPS),
    decodeCpuidFeatures: () => [...FEATURES],
    sdNotify: () => false,
    hostPageSize: () => 4096,
    // Parts of the addon the probe never touches: calling one is a bug in the code under test.
    UserspaceDirtyTracker: notInProbe('UserspaceDirtyTracker'),
    bitmapToRuns: notInProbe('bitmapToRuns'),
    bitmapPopcount: notInProbe('bitmapPopcount'),
  };
}

const tmpDirs: string[] = [];
after(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-node-probe-'));
  tmpDirs.push(d);
  return d;
}

/** A devRoot with regular files standing in for device nodes (device nodes cannot be faked unprivileged). */
function fakeDevRoot(): string {
  const dev = tmpDir();
  fs.mkdirSync(path.join(dev, 'net'));
  for (const f of ['kvm', 'net/tun', 'vhost-net']) fs.writeFileSync(path.join(dev, f), '');
  return dev;
}

/** The host's /dev when its /dev/net/tun is a usable char device (needed for a schedulable node), else null. */
function realDevWithTun(): string | null {
  try {
    if (!fs.statSync('/dev/net/tun').isCharacterDevice()) return null;
    fs.accessSync('/dev/net/tun', fs.constants.R_OK | fs.constants.W_OK);
    return '/dev';
  } catch {
    return null;
  }
}

function opts(root: string, over: Partial<ProbeOptions> = {}): ProbeOptions {
  const devRoot = over.devRoot ?? fakeDevRoot();
  return {
    nodeName: 'node-a', procRoot: path.join(root, 'proc'), sysRoot: path.join(root, 'sys'),
    devRoot, kvmDevice: path.join(devRoot, 'kvm'), native: fakeNative(), ...over,
  };
}

function assertLabelsValid(info: NodeInfo): void {
  for (const [k, v] of Object.entries(info.labels)) assert.ok(isValidLabel(k, v), `invalid label ${k}=${v}`);
}

test('captured AMD host: facts parsed from the fixture tree', async () => {
  const info = await probeNode(opts(AMD));
  assert.equal(info.nodeName, 'node-a');
  assert.ok(!Number.isNaN(Date.parse(info.probedAt)));
  assert.ok(info.probeDurationMs >= 0 && Number.isFinite(info.probeDurationMs));
  assert.equal(info.kernel.release, fs.readFileSync(path.join(AMD, 'proc/sys/kernel/osrelease'), 'utf8').trim());
  assert.deepEqual([info.cpu.vendorShort, info.cpu.logicalCpus, info.cpu.sockets], ['amd', 2, 1]);
  assert.deepEqual(info.numa.map((n) => [n.id, n.cpus]), [[0, [0, 1]]]);
  assert.equal(info.memory.totalBytes, 24683656 * 1024);
  assert.deepEqual(info.hugepages.map((h) => [h.sizeBytes, h.total]), [[2 ** 21, 0], [2 ** 30, 0]]);
  assert.deepEqual(info.thp, { enabled: 'madvise', defrag: 'madvise' });
  assert.equal(info.devices.userfaultfd.unprivilegedAllowed, false);
  assert.equal(info.labels['kubevirt.io/ksm-enabled'], 'false');
  assert.equal(info.labels['kvm-info.node.kubevirt.io/nested-virtualization'], undefined, 'no kvm_amd module in this capture');
  assert.ok(!Object.keys(info.labels).some((k) => k.includes('hugepages-')), 'no pages reserved');
  assertLabelsValid(info);
});

test('constructed Intel host: 2 sockets, 2 NUMA nodes, 2M + 1G pools, THP always, nested', async () => {
  const info = await probeNode(opts(INTEL));
  assert.deepEqual([info.cpu.logicalCpus, info.cpu.sockets, info.cpu.coresPerSocket, info.cpu.threadsPerCore], [16, 2, 4, 2]);
  assert.deepEqual(info.numa.map((n) => n.cpus), [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]]);
  assert.deepEqual(info.numa.map((n) => n.memTotalBytes), [97845372 * 1024, 98601840 * 1024]);
  assert.deepEqual(info.hugepages, [{ sizeBytes: 2 ** 21, total: 1024, free: 512 }, { sizeBytes: 2 ** 30, total: 8, free: 8 }]);
  assert.deepEqual(info.thp, { enabled: 'always', defrag: 'madvise' });
  assert.equal(info.kernel.release, '5.14.0-427.13.1.el9_4.x86_64');
  for (const k of ['cpu-vendor.node.kubevirt.io/Intel', 'node.kubevirt.io/hugepages-2Mi', 'node.kubevirt.io/hugepages-1Gi',
    'kvm-info.node.kubevirt.io/nested-virtualization', 'kubevirt.io/ksm-enabled']) {
    assert.equal(info.labels[k], 'true', k);
  }
  assertLabelsValid(info);
});

test('native addon missing: not schedulable, the reason names the addon, no throw', async () => {
  const info = await probeNode(opts(AMD, { native: null, nativeError: 'Cannot find module build/Release/virt_handler_native.node' }));
  assert.equal(info.kvm.available, false);
  assert.equal(info.schedulable, false);
  assert.equal(info.labels['kubevirt.io/schedulable'], 'false');
  assert.match(info.reasons.join('\n'), /^KVM unavailable/m);
  assert.match(info.reasons.join('\n'), /addon|native/i);
  assert.ok(!Object.keys(info.labels).some((k) => k.startsWith('cpu-feature.')));
});

// probeKvm maps these to VH_ERR_KVM_MISSING / VH_ERR_KVM_FORBIDDEN and reports the errno code in KvmInfo.errorCode.
for (const [code, errno, message] of [['ENOENT', 2, /missing/], ['EACCES', 13, /not accessible/]] as const) {
  test(`KVM open fails with ${code}: degraded through probeKvm, not schedulable`, async () => {
    const info = await probeNode(opts(AMD, { native: fakeNative({ code, errno }) }));
    assert.equal(info.kvm.available, false);
    assert.equal(info.kvm.errorCode, code);
    assert.match(info.kvm.reason ?? '', message);
    assert.match(info.reasons[0] ?? '', new RegExp(`^KVM unavailable \\[${code}\\]`));
    assert.equal(info.schedulable, false);
    assertLabelsValid(info);
  });
}

test('working (fake) KVM with a usable tun: schedulable, cpu-feature and hyperv labels', async () => {
  const devRoot = realDevWithTun();
  // A VM host without tun is broken; failing loudly here beats a silent skip.
  assert.ok(devRoot !== null, 'this test needs a usable /dev/net/tun on the host (modprobe tun)');
  const info = await probeNode(opts(INTEL, { devRoot, kvmDevice: '/dev/kvm' }));
  assert.equal(info.kvm.available, true, info.kvm.reason ?? '');
  assert.deepEqual(info.reasons, []);
  assert.equal(info.schedulable, true);
  assert.equal(info.labels['kubevirt.io/schedulable'], 'true');
  for (const f of FEATURES) assert.equal(info.labels[`cpu-feature.node.kubevirt.io/${f}`], 'true', f);
  assert.equal(info.labels['hyperv.node.kubevirt.io/base'], 'true');
  assert.equal(info.labels['hyperv.node.kubevirt.io/time'], 'true');
  assert.equal(info.labels['node.kubevirt.io/tun'], 'true');
  assertLabelsValid(info);
});

test('working KVM but /dev/net/tun is not a char device: not schedulable with a tun reason', async () => {
  const info = await probeNode(opts(INTEL));
  assert.equal(info.kvm.available, true, info.kvm.reason ?? '');
  assert.equal(info.schedulable, false);
  assert.deepEqual(info.reasons.length, 1);
  assert.match(info.reasons[0] ?? '', /TUN unavailable: .*net\/tun is a file/);
  assert.equal(info.devices.vhostNet.kind, 'file');
  assert.equal(info.devices.vhostVsock.kind, 'missing');
  assert.equal(info.labels['cpu-feature.node.kubevirt.io/avx2'], 'true', 'features still describe the host');
});

test('roots that do not exist: degrades to unknowns with reasons and warnings, never rejects', async () => {
  const nowhere = path.join(tmpDir(), 'does-not-exist');
  const report = await probeNodeReport({
    nodeName: 'n', procRoot: path.join(nowhere, 'proc'), sysRoot: path.join(nowhere, 'sys'),
    devRoot: path.join(nowhere, 'dev'), kvmDevice: path.join(nowhere, 'dev/kvm'), native: null,
  });
  const info = report.info;
  assert.equal(info.schedulable, false);
  assert.equal(info.cpu.logicalCpus, 0);
  assert.deepEqual([info.numa, info.hugepages, info.thp], [[], [], { enabled: '', defrag: '' }]);
  assert.equal(info.devices.kvm.present, false);
  const reasons = info.reasons.join('\n');
  for (const re of [/KVM unavailable/, /TUN unavailable/, /CPU facts unavailable/, /memory facts unavailable/]) assert.match(reasons, re);
  assert.ok(report.warnings.some((w) => w.includes('cpuinfo') && w.includes('ENOENT')), report.warnings.join('\n'));
  assert.deepEqual(report.info.warnings, report.warnings, 'NodeInfo carries the same warnings (served by /v1/node and GetNodeInfo)');
  assertLabelsValid(info);
});

test('garbage in every file and wrong file types: never rejects, labels stay valid', async () => {
  const root = tmpDir();
  let s = 7;
  const junk = (): Buffer => Buffer.from(Array.from({ length: 300 }, () => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s & 0xff; }));
  const files = [
    'proc/cpuinfo', 'proc/meminfo', 'proc/sys/kernel/osrelease', 'proc/sys/kernel/version', 'proc/sys/vm/unprivileged_userfaultfd',
    'sys/devices/system/node/node0/cpulist', 'sys/devices/system/node/node0/meminfo', 'sys/devices/system/node/node7/cpulist',
    'sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages', 'sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages',
    'sys/kernel/mm/hugepages/hugepages-banana/nr_hugepages', 'sys/kernel/mm/transparent_hugepage/enabled',
    'sys/kernel/mm/ksm/run', 'sys/module/kvm_intel/parameters/nested',
  ];
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), junk());
  }
  fs.mkdirSync(path.join(root, 'sys/kernel/mm/transparent_hugepage/defrag')); // a directory where a file belongs
  const report = await probeNodeReport(opts(root));
  const info = report.info;
  assert.equal(info.numa.length, 2);
  assert.equal(info.numa[1]?.memTotalBytes, null);
  assert.deepEqual(info.hugepages, [{ sizeBytes: 2 ** 21, total: 0, free: 0 }]);
  assert.equal(info.thp.defrag, '');
  assert.ok(report.warnings.some((w) => w.includes('defrag') && w.includes('EISDIR')), report.warnings.join('\n'));
  assert.equal(info.schedulable, false);
  assertLabelsValid(info);
  JSON.stringify(info); // must serialise as-is for GET /v1/node
});

test('a binding whose methods throw after a good open still yields a NodeInfo', async () => {
  const broken = fakeNative();
  const Base = broken.KvmSystem;
  broken.KvmSystem = class extends Base {
    override apiVersion(): number { throw Object.assign(new Error('KVM_GET_API_VERSION failed'), { code: 'EIO', errno: 5, syscall: 'KVM_GET_API_VERSION' }); }
  };
  const info = await probeNode(opts(AMD, { native: broken }));
  assert.equal(info.kvm.available, false);
  assert.equal(info.schedulable, false);
});

test('even nonsense options resolve to a NodeInfo that says the probe failed', async () => {
  const info = await probeNode(null as unknown as ProbeOptions);
  assert.equal(info.schedulable, false);
  assert.match(info.reasons[0] ?? '', /^node probe failed internally: /);
  assert.equal(info.devices.tun.path, '/dev/net/tun');
  assert.equal(info.devices.userfaultfd.unprivilegedAllowed, null);
  assertLabelsValid(info);
});

test('the real host probes without throwing (native=null)', async () => {
  const info = await probeNode({
    nodeName: os.hostname(), procRoot: '/proc', sysRoot: '/sys', devRoot: '/dev', kvmDevice: '/dev/kvm',
    native: null, nativeError: 'not loaded in unit tests',
  });
  assert.ok(info.cpu.logicalCpus > 0);
  assert.ok(info.memory.totalBytes > 0);
  assert.equal(info.schedulable, false);
  assertLabelsValid(info);
});
