import { describe, it, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCapabilities, parseDomainCapabilities } from '../../src/libvirt/capabilities';
import { ACCELERATOR_LABEL, buildCapabilityLabels } from '../../src/libvirt/capability-labels';
import { isValidLabel } from '../../src/node/labels';
import { type CapabilitySource, chooseVirtType, readNodeCapabilities, summarizeCapabilities } from '../../src/libvirt/node-capabilities';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/libvirt');
const read = (name: string): string => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

const host = parseCapabilities(read('capabilities_qemu.xml'));
const q35 = parseDomainCapabilities(read('domcapabilities_qemu_q35.xml'));
const pc = parseDomainCapabilities(read('domcapabilities_qemu_pc.xml'));
const kvmQ35 = parseDomainCapabilities(read('domcapabilities_kvm_q35.xml'));

const TCG_USABLE = [
  'qemu64', 'qemu32', 'pentium3', 'pentium2', 'pentium', 'n270', 'kvm64', 'kvm32', 'coreduo', 'core2duo',
  'athlon', 'Westmere', 'Penryn', 'Opteron_G2', 'Opteron_G1', 'Nehalem', 'Conroe', '486',
];

test('capabilities: host CPU, arch and the x86_64 machine types with aliases', () => {
  assert.deepEqual(host.warnings, []);
  assert.equal(host.arch, 'x86_64');
  assert.deepEqual(host.cpu, { vendor: 'AMD', model: 'kvm64' });
  assert.deepEqual(host.domainTypes, ['qemu', 'kvm']);
  assert.equal(host.machineTypes.length, 60);
  const byName = new Map(host.machineTypes.map((m) => [m.name, m]));
  assert.deepEqual(byName.get('pc-q35-7.2'), { name: 'pc-q35-7.2', canonical: null, maxCpus: 288, deprecated: false });
  assert.deepEqual(byName.get('pc-i440fx-7.2'), { name: 'pc-i440fx-7.2', canonical: null, maxCpus: 255, deprecated: false });
  assert.equal(byName.get('q35')?.canonical, 'pc-q35-7.2');
  assert.equal(byName.get('pc')?.canonical, 'pc-i440fx-7.2');
  assert.equal(byName.get('pc-i440fx-1.4')?.deprecated, true);
  assert.equal(byName.get('isapc')?.maxCpus, 1);
});

test('capabilities: the test driver (i686 only, no machines) degrades with a warning', () => {
  const caps = parseCapabilities(read('capabilities_test_default.xml'));
  assert.equal(caps.arch, 'i686');
  assert.deepEqual(caps.cpu, { vendor: '', model: '' });
  assert.deepEqual(caps.domainTypes, ['test']);
  assert.deepEqual(caps.machineTypes, []);
  assert.equal(caps.warnings.length, 1);
  assert.match(caps.warnings[0] ?? '', /lists no machine types/);
});

test('domcapabilities qemu q35: tcg, models split as in the XML, host-model EPYC', () => {
  assert.deepEqual(q35.warnings, []);
  assert.equal(q35.accelerator, 'tcg');
  assert.equal(q35.domainType, 'qemu');
  assert.equal(q35.machine, 'pc-q35-7.2');
  assert.equal(q35.arch, 'x86_64');
  assert.equal(q35.emulator, '/usr/bin/qemu-system-x86_64');
  assert.equal(q35.maxVcpus, 288);
  assert.equal(q35.hostPassthrough, false);
  assert.deepEqual(q35.cpuModels.usable.map((m) => m.name), TCG_USABLE);
  assert.equal(q35.cpuModels.unusable.length, 35);
  assert.deepEqual(q35.cpuModels.unusable.slice(0, 2), [
    { name: 'phenom', vendor: 'AMD' }, { name: 'Westmere-IBRS', vendor: 'Intel' },
  ]);
  assert.ok(q35.cpuModels.unusable.some((m) => m.name === 'EPYC'));
  assert.equal(q35.hostModel.supported, true);
  assert.equal(q35.hostModel.name, 'EPYC');
  assert.equal(q35.hostModel.vendor, 'AMD');
  assert.equal(q35.hostModel.features.filter((f) => f.policy === 'require').length, 18);
  assert.equal(q35.hostModel.features.filter((f) => f.policy === 'disable').length, 10);
  assert.deepEqual(q35.hostModel.features[0], { name: 'acpi', policy: 'require' });
  assert.deepEqual(q35.hostModel.features.at(-1), { name: 'nrip-save', policy: 'disable' });
});

test('domcapabilities: firmware (no OVMF installed here), devices and features', () => {
  assert.deepEqual(q35.firmware, { bios: true, efi: false, secureBoot: false, loaderTypes: ['rom', 'pflash'], loaderPaths: [] });
  assert.equal(q35.devices.disk, true);
  assert.equal(q35.devices.tpm, true);
  assert.equal(q35.virtiofs, true);
  assert.equal(q35.features.sev, false);
  assert.equal(q35.features.hyperv, true);
});

test('domcapabilities qemu pc: i440fx with 255 vCPUs and the same models as q35', () => {
  assert.equal(pc.accelerator, 'tcg');
  assert.equal(pc.machine, 'pc-i440fx-7.2');
  assert.equal(pc.maxVcpus, 255);
  assert.deepEqual(pc.cpuModels.usable.map((m) => m.name), TCG_USABLE);
});

test('domcapabilities kvm q35 (libvirt offers kvm on this paravirtual host): kvm, host-model EPYC-Milan', () => {
  assert.equal(kvmQ35.accelerator, 'kvm');
  assert.equal(kvmQ35.hostPassthrough, true);
  assert.equal(kvmQ35.hostModel.name, 'EPYC-Milan');
  assert.deepEqual(kvmQ35.cpuModels.usable.map((m) => m.name), ['pentium3', 'pentium2', 'pentium', '486']);
  assert.equal(kvmQ35.cpuModels.unusable.length, 49);
});

test('garbage, truncated, wrong-root and non-string input: empty values and warnings, never a throw', () => {
  const inputs: unknown[] = [
    '', 'not xml at all', '<capabilities><host>', '<domainCapabilities><cpu></domainCapabilities>',
    '<other/>', '<capabilities/>', '<domainCapabilities/>', null, 42, read('capabilities_qemu.xml').slice(0, 500),
  ];
  for (const input of inputs) {
    const caps = parseCapabilities(input as string);
    assert.deepEqual(caps.machineTypes, [], String(input));
    assert.ok(caps.warnings.length > 0, `capabilities warnings for ${String(input)}`);
    const dom = parseDomainCapabilities(input as string);
    assert.equal(dom.accelerator, null);
    assert.deepEqual(dom.cpuModels, { usable: [], unusable: [] });
    assert.equal(dom.maxVcpus, 0);
    assert.ok(dom.warnings.length > 0, `domcapabilities warnings for ${String(input)}`);
  }
  assert.match(parseCapabilities('<capabilities><host>').warnings[0] ?? '', /malformed XML/);
});

test('domcapabilities: odd values degrade per element', () => {
  const dom = parseDomainCapabilities(`<domainCapabilities><domain>xen</domain><vcpu max='lots'/>
    <cpu><mode name='host-model' supported='yes'><model>Foo</model><feature policy='optional' name='x'/></mode>
    <mode name='custom' supported='yes'><model usable='unknown'>Bar</model><model usable='yes'/></mode></cpu>
    </domainCapabilities>`);
  assert.equal(dom.accelerator, null);
  assert.equal(dom.maxVcpus, 0);
  assert.equal(dom.hostModel.name, 'Foo');
  assert.deepEqual(dom.hostModel.features, []);
  assert.deepEqual(dom.cpuModels, { usable: [], unusable: [{ name: 'Bar', vendor: '' }] });
  assert.equal(dom.warnings.length, 3);
});

test('labels: KubeVirt names from the q35 + pc TCG fixtures, all valid', () => {
  const labels = buildCapabilityLabels({ host, domains: [q35, pc] });
  for (const [k, v] of Object.entries(labels)) assert.ok(isValidLabel(k, v), `${k}=${v}`);
  assert.equal(labels[ACCELERATOR_LABEL], 'tcg');
  assert.equal(labels['machine-type.node.kubevirt.io/pc-q35-7.2'], 'true');
  assert.equal(labels['machine-type.node.kubevirt.io/pc-i440fx-7.2'], 'true');
  assert.equal(labels['machine-type.node.kubevirt.io/q35'], 'true');
  assert.equal(labels['machine-type.node.kubevirt.io/pc'], 'true');
  assert.equal(labels['cpu-model.node.kubevirt.io/Opteron_G2'], 'true');
  assert.equal(labels['cpu-model.node.kubevirt.io/486'], 'true');
  assert.equal(labels['cpu-model.node.kubevirt.io/EPYC'], undefined);
  assert.equal(labels['host-model-cpu.node.kubevirt.io/EPYC'], 'true');
  assert.equal(labels['host-model-required-features.node.kubevirt.io/svme-addr-chk'], 'true');
  assert.equal(labels['host-model-required-features.node.kubevirt.io/vme'], undefined);
  assert.equal(labels['node.kubevirt.io/firmware-bios'], 'true');
  assert.equal(labels['node.kubevirt.io/firmware-efi'], 'false');
  const count = (prefix: string): number => Object.keys(labels).filter((k) => k.startsWith(prefix)).length;
  assert.equal(count('cpu-model.node.kubevirt.io/'), 18);
  assert.equal(count('machine-type.node.kubevirt.io/'), 60);
  assert.equal(count('host-model-required-features.node.kubevirt.io/'), 18);
});

test('labels: a model counts only if every machine type can run it; other accelerators are ignored', () => {
  const narrowed = { ...pc, cpuModels: { usable: pc.cpuModels.usable.filter((m) => m.name !== '486'), unusable: [] } };
  const labels = buildCapabilityLabels({ host, domains: [q35, narrowed, kvmQ35] });
  assert.equal(labels['cpu-model.node.kubevirt.io/486'], undefined);
  assert.equal(labels['cpu-model.node.kubevirt.io/qemu64'], 'true');
  assert.equal(labels[ACCELERATOR_LABEL], 'tcg');
  assert.equal(labels['host-model-cpu.node.kubevirt.io/EPYC-Milan'], undefined);
});

test('labels: empty facts give no labels; invalid names are dropped', () => {
  assert.deepEqual(buildCapabilityLabels({ host: parseCapabilities(''), domains: [] }), {});
  const odd = { ...q35, cpuModels: { usable: [{ name: '###', vendor: '' }, { name: 'x'.repeat(80), vendor: '' }], unusable: [] } };
  const labels = buildCapabilityLabels({ host: parseCapabilities(''), domains: [odd] });
  for (const [k, v] of Object.entries(labels)) assert.ok(isValidLabel(k, v), `${k}=${v}`);
  assert.ok(!Object.keys(labels).some((k) => k.includes('#')));
  assert.equal(labels[`cpu-model.node.kubevirt.io/${'x'.repeat(63)}`], 'true');
});

describe('node capabilities: virt type and the read after connect', () => {
  const hostKvm = parseCapabilities(read('capabilities_qemu.xml')); // offers qemu and kvm
  const src = (over: Partial<Record<'q35' | 'pc', string | Error>> = {}, calls: string[] = []): CapabilitySource => ({
    getCapabilities: async () => read('capabilities_qemu.xml'),
    getDomainCapabilities: async (o) => {
      calls.push(`${o.virttype}/${o.arch}/${o.machine}`);
      const v = over[o.machine as 'q35' | 'pc'] ?? read(`domcapabilities_${o.virttype}_${o.machine}.xml`);
      if (v instanceof Error) throw v;
      return v;
    },
  });

  it('kvm only with a usable /dev/kvm, a vmx/svm CPU flag and libvirt offering kvm', () => {
    assert.equal(chooseVirtType({ kvmAvailable: true, cpuFlags: ['sse2', 'svm'] }, hostKvm).virtType, 'kvm');
    assert.equal(chooseVirtType({ kvmAvailable: true, cpuFlags: ['vmx'] }, hostKvm).reason, 'KVM with vmx');
    const pvm = chooseVirtType({ kvmAvailable: true, cpuFlags: ['sse2', 'hypervisor'] }, hostKvm);
    assert.equal(pvm.virtType, 'qemu');
    assert.match(pvm.reason, /no vmx\/svm flag .*kvm_pvm/);
    assert.match(chooseVirtType({ kvmAvailable: false, cpuFlags: ['svm'] }, hostKvm).reason, /no usable \/dev\/kvm/);
    const noKvmType = { ...hostKvm, domainTypes: ['qemu'] };
    assert.match(chooseVirtType({ kvmAvailable: true, cpuFlags: ['svm'] }, noKvmType).reason, /offers no kvm domain type for x86_64/);
  });

  it('reads q35 and pc with the chosen virt type; labels and summary follow', async () => {
    const calls: string[] = [];
    const caps = await readNodeCapabilities(src({}, calls), { kvmAvailable: true, cpuFlags: [] });
    assert.deepEqual(calls, ['qemu/x86_64/q35', 'qemu/x86_64/pc']);
    assert.equal(caps.virtType, 'qemu');
    assert.equal(caps.domains.length, 2);
    assert.equal(caps.labels[ACCELERATOR_LABEL], 'tcg');
    assert.equal(caps.labels['cpu-model.node.kubevirt.io/qemu64'], 'true');
    const sum = summarizeCapabilities(caps);
    assert.equal(sum.accelerator, 'tcg');
    assert.deepEqual(sum.machineTypes, [q35.machine, pc.machine]);
    assert.ok((sum.usableCpuModels as string[]).includes('qemu64'));
  });

  it('a failing machine type becomes a warning; the rest still labels', async () => {
    const caps = await readNodeCapabilities(src({ pc: new Error('unsupported machine') }), { kvmAvailable: false, cpuFlags: [] });
    assert.equal(caps.domains.length, 1);
    assert.deepEqual(caps.warnings, ['domain capabilities (qemu, pc): unsupported machine']);
    assert.equal(caps.labels[ACCELERATOR_LABEL], 'tcg');
  });

  it('garbage capabilities XML degrades to warnings, never throws', async () => {
    const bad: CapabilitySource = { getCapabilities: async () => '<capabilities><host>', getDomainCapabilities: async () => 'not xml' };
    const caps = await readNodeCapabilities(bad, { kvmAvailable: true, cpuFlags: ['svm'] });
    assert.equal(caps.virtType, 'qemu', 'without a parsable kvm domain type, TCG');
    assert.ok(caps.warnings.length >= 1);
    assert.deepEqual(caps.domains.filter((d) => d.accelerator !== null), []);
  });
});
