import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  assessSchedulable, buildNodeLabels, hugepageSizeName, isValidLabel, isValidLabelKey, isValidLabelValue,
  labelSafeName, type LabelInput,
} from '../../src/node/labels';
import { parseCpuinfo } from '../../src/node/proc-parsers';
import type { KvmInfo } from '../../src/kvm/probe';
import type { DeviceInfo } from '../../src/node/types';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/host');
const intelCpu = parseCpuinfo(fs.readFileSync(path.join(FIXTURES, 'intel-xeon-2s-ht-numa2/proc/cpuinfo'), 'utf8'));
const amdCpu = parseCpuinfo(fs.readFileSync(path.join(FIXTURES, 'amd-epyc-2vcpu-kvm-guest/proc/cpuinfo'), 'utf8'));

const dev = (p: string, over: Partial<DeviceInfo> = {}): DeviceInfo =>
  ({ path: p, present: true, kind: 'char', mode: '0666', uid: 0, gid: 0, accessible: true, ...over });
const missing = (p: string): DeviceInfo =>
  ({ path: p, present: false, kind: 'missing', mode: '', uid: null, gid: null, accessible: false });

const kvmOk: KvmInfo = {
  available: true, reason: null, errorCode: null, apiVersion: 12,
  capabilities: { HYPERV: 1, HYPERV_TIME: 1, HYPERV_VP_INDEX: 1, HYPERV_SYNIC: 1, HYPERV_SYNIC2: 0, MAX_VCPUS: 1024 },
  vcpuMmapSize: 12288, cpuidFeatures: ['avx2', 'sse4.2', 'tsc_adjust', 'vmx'], msrCount: 40,
};
const kvmDown: KvmInfo = {
  available: false, reason: '/dev/kvm missing: is CONFIG_KVM enabled and kvm_intel/kvm_amd loaded?', errorCode: 'ENOENT',
  apiVersion: null, capabilities: {}, vcpuMmapSize: null, cpuidFeatures: [], msrCount: null,
};

function input(over: Partial<LabelInput> = {}): LabelInput {
  return {
    schedulable: true, cpu: intelCpu, kvm: kvmOk,
    hugepages: [{ sizeBytes: 2 ** 21, total: 1024, free: 512 }, { sizeBytes: 2 ** 30, total: 0, free: 0 }],
    thpEnabled: 'always',
    devices: {
      tun: dev('/dev/net/tun'), vhostNet: dev('/dev/vhost-net'), vhostVsock: missing('/dev/vhost-vsock'),
      userfaultfd: { ...missing('/dev/userfaultfd'), unprivilegedAllowed: true },
    },
    nestedVirtualization: true, ksmEnabled: false, ...over,
  };
}

function assertAllValid(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) assert.ok(isValidLabel(k, v), `invalid label ${JSON.stringify(k)}=${JSON.stringify(v)}`);
}

test('validator accepts Kubernetes-valid keys and values', () => {
  for (const k of ['kubevirt.io/schedulable', 'cpu-feature.node.kubevirt.io/sse4.2', 'cpu-feature.node.kubevirt.io/tsc_adjust',
    'plain', 'a', `x.io/${'a'.repeat(63)}`, `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}/n`]) {
    assert.ok(isValidLabelKey(k), k);
  }
  for (const v of ['', 'true', '1024', 'A-b_c.d', 'x'.repeat(63)]) assert.ok(isValidLabelValue(v), v);
});

test('validator rejects what the API server rejects', () => {
  const badKeys = [
    '', '/name', 'prefix/', 'Upper.io/name', 'a..b/name', '-a.io/name', 'a.io/-name', 'a.io/name-', 'a.io/na me',
    'a.io/b/c', `a.io/${'a'.repeat(64)}`, `${'a'.repeat(64)}.io/name`, `${'a.'.repeat(127)}a/name`,
  ];
  for (const k of badKeys) assert.ok(!isValidLabelKey(k), k);
  for (const v of ['-true', 'true-', 'a b', 'x'.repeat(64), 'ü']) assert.ok(!isValidLabelValue(v), v);
});

test('labelSafeName repairs or gives up', () => {
  assert.equal(labelSafeName('sse4.2'), 'sse4.2');
  assert.equal(labelSafeName('avx512_4vnniw'), 'avx512_4vnniw');
  assert.equal(labelSafeName('foo/bar baz'), 'foo-bar-baz');
  assert.equal(labelSafeName('__x__'), 'x');
  assert.equal(labelSafeName('---'), '');
  assert.equal(labelSafeName(''), '');
  assert.equal(labelSafeName('a'.repeat(62) + '-b'), 'a'.repeat(62));
});

test('hugepage size names use Kubernetes quantity suffixes', () => {
  assert.equal(hugepageSizeName(2 ** 21), '2Mi');
  assert.equal(hugepageSizeName(2 ** 30), '1Gi');
  assert.equal(hugepageSizeName(64 * 1024), '64Ki');
  assert.equal(hugepageSizeName(16 * 2 ** 30), '16Gi');
});

test('labels with working KVM: KubeVirt names for vendor, features, hyperv; host facts', () => {
  const labels = buildNodeLabels(input());
  assertAllValid(labels);
  assert.equal(labels['kubevirt.io/schedulable'], 'true');
  assert.equal(labels['cpu-vendor.node.kubevirt.io/Intel'], 'true');
  for (const f of ['avx2', 'sse4.2', 'tsc_adjust', 'vmx']) assert.equal(labels[`cpu-feature.node.kubevirt.io/${f}`], 'true', f);
  for (const h of ['base', 'time', 'vpindex', 'synic']) assert.equal(labels[`hyperv.node.kubevirt.io/${h}`], 'true', h);
  assert.equal(labels['hyperv.node.kubevirt.io/synic2'], undefined, 'capability value 0 is not a label');
  assert.equal(labels['kvm-info.node.kubevirt.io/max-vcpus'], '1024');
  assert.equal(labels['kvm-info.node.kubevirt.io/nested-virtualization'], 'true');
  assert.equal(labels['kubevirt.io/ksm-enabled'], 'false');
  assert.equal(labels['node.kubevirt.io/hugepages-2Mi'], 'true');
  assert.equal(labels['node.kubevirt.io/hugepages-1Gi'], undefined, 'a pool with no pages reserved is not labelled');
  assert.equal(labels['node.kubevirt.io/transparent-hugepages'], 'always');
  assert.equal(labels['node.kubevirt.io/tun'], 'true');
  assert.equal(labels['node.kubevirt.io/vhost-net'], 'true');
  assert.equal(labels['node.kubevirt.io/vhost-vsock'], 'false');
  assert.equal(labels['node.kubevirt.io/userfaultfd'], 'true', 'unprivileged_userfaultfd=1 is enough');
});

test('hyperv capability names are accepted with the KVM_CAP_ prefix too', () => {
  const labels = buildNodeLabels(input({ kvm: { ...kvmOk, capabilities: { KVM_CAP_HYPERV_SEND_IPI: 1, KVM_CAP_HYPERV_TLBFLUSH: 1 } } }));
  assert.equal(labels['hyperv.node.kubevirt.io/ipi'], 'true');
  assert.equal(labels['hyperv.node.kubevirt.io/tlbflush'], 'true');
});

test('labels without KVM: schedulable false, no feature or hyperv labels', () => {
  const labels = buildNodeLabels(input({ schedulable: false, kvm: kvmDown, cpu: amdCpu, nestedVirtualization: null, ksmEnabled: null }));
  assertAllValid(labels);
  assert.equal(labels['kubevirt.io/schedulable'], 'false');
  assert.equal(labels['cpu-vendor.node.kubevirt.io/AMD'], 'true');
  assert.ok(!Object.keys(labels).some((k) => k.startsWith('cpu-feature.') || k.startsWith('hyperv.')));
  assert.equal(labels['kvm-info.node.kubevirt.io/nested-virtualization'], undefined);
  assert.equal(labels['kubevirt.io/ksm-enabled'], undefined);
});

test('hostile feature names and vendors never produce an invalid label', () => {
  const nasty = ['', '...', 'ok', 'a/b', 'x'.repeat(200), ' spaced name ', 'ünïcode', '-lead', 'trail_', 'UPPER.case', '\0'];
  const labels = buildNodeLabels(input({
    kvm: { ...kvmOk, cpuidFeatures: nasty },
    cpu: { ...intelCpu, vendor: 'Weird Vendor/Inc.', vendorShort: 'weird vendor/inc.' },
    thpEnabled: '[[never]]',
  }));
  assertAllValid(labels);
  assert.equal(labels['cpu-feature.node.kubevirt.io/ok'], 'true');
  assert.equal(labels['cpu-feature.node.kubevirt.io/UPPER.case'], 'true');
  assert.equal(labels['cpu-feature.node.kubevirt.io/a-b'], 'true');
  assert.equal(labels['cpu-vendor.node.kubevirt.io/Weird-Vendor-Inc'], 'true');
});

test('schedulable rule: KVM and tun are required, vhost/vsock/uffd are not', () => {
  const base = { kvm: kvmOk, tun: dev('/dev/net/tun'), cpu: intelCpu, memoryTotalBytes: 2 ** 30, procRoot: '/proc' };
  assert.deepEqual(assessSchedulable(base), { schedulable: true, reasons: [] });

  const noKvm = assessSchedulable({ ...base, kvm: kvmDown });
  assert.equal(noKvm.schedulable, false);
  assert.match(noKvm.reasons[0] ?? '', /^KVM unavailable \[ENOENT\]: \/dev\/kvm missing/);

  assert.match(assessSchedulable({ ...base, tun: missing('/dev/net/tun') }).reasons[0] ?? '', /TUN unavailable: \/dev\/net\/tun missing.*modprobe tun/);
  assert.match(assessSchedulable({ ...base, tun: dev('/dev/net/tun', { kind: 'file' }) }).reasons[0] ?? '', /not a character device/);
  assert.match(assessSchedulable({ ...base, tun: dev('/dev/net/tun', { accessible: false, mode: '0600' }) }).reasons[0] ?? '', /mode 0600/);

  const nothing = assessSchedulable({ ...base, kvm: kvmDown, tun: missing('/x/net/tun'), cpu: parseCpuinfo(''), memoryTotalBytes: 0 });
  assert.equal(nothing.reasons.length, 4);
});
