/**
 * Multi-document manifests (src/vmi/spec/documents.ts) and VirtualMachine -> VMI
 * (src/vmi/spec/virtual-machine.ts), with manifests in KubeVirt's shapes.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseDocuments, type Document } from '../../src/vmi/spec/documents';
import { vmToVmi, vmFieldPath, OWNER_ANNOTATION, type ObjectLookup } from '../../src/vmi/spec/virtual-machine';
import { legacyFirmwareUuid } from '../../src/vmi/spec/defaults';

const NONE: ObjectLookup = { instancetype: () => null, preference: () => null };

const VM = `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: vm-small
  labels:
    kubevirt.io/vm: vm-small
spec:
  runStrategy: Always
  template:
    metadata:
      labels:
        kubevirt.io/vm: vm-small
      annotations:
        team: blue
    spec:
      domain:
        cpu: {cores: 2}
        memory: {guest: 128Mi}
        devices: {}
      terminationGracePeriodSeconds: 0
`;

const VMI = `apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: plain
spec:
  domain: {devices: {}}
`;

function docs(text: string): Document[] {
  const r = parseDocuments(text);
  assert.ok(r.ok, JSON.stringify(r));
  return r.documents;
}

function vm(over: Record<string, unknown> = {}, template: Record<string, unknown> = { spec: { domain: { devices: {} } } }): Record<string, unknown> {
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'v' }, spec: { template, ...over } };
}

describe('parseDocuments', () => {
  it('a VMI and a VM in one file, empty documents skipped, numbered from 1', () => {
    const d = docs(`---\n${VMI}---\n${VM}---\n`);
    assert.deepEqual(d.map((x) => [x.index, x.type, x.name]), [[1, 'vmi', 'plain'], [2, 'vm', 'vm-small']]);
    assert.equal(d[1]!.label, 'document 2 (kind VirtualMachine "vm-small")');
  });

  it('cluster-only kinds are refused per document, saying why; others still classified', () => {
    const pool = 'apiVersion: pool.kubevirt.io/v1alpha1\nkind: VirtualMachinePool\nmetadata:\n  name: vm-pool-cirros\nspec: {}\n';
    const rs = 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceReplicaSet\nmetadata:\n  name: rs\n';
    const preset = 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstancePreset\nmetadata:\n  name: small\n';
    const prio = 'apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n';
    const d = docs([VM, pool, rs, preset, prio].join('---\n'));
    assert.equal(d[0]!.type, 'vm');
    const refused = d.slice(1).map((x) => (x.type === 'refused' ? `${x.label}: ${x.message}` : x.type));
    assert.equal(refused[0], 'document 2 (kind VirtualMachinePool "vm-pool-cirros"): not a node-level object: a cluster controller expands pools into VirtualMachines; give this node the VirtualMachine(s) instead');
    for (const r of refused.slice(1)) assert.match(r, /: not a node-level object: /);
  });

  it('DataVolume (v1beta1, v1alpha1) taken; a wrong CDI version and migrations refused; unknown kinds named with their apiVersion', () => {
    const d = docs('apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: dv}\n---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceMigration\nmetadata: {name: m}\n---\napiVersion: example.com/v2\nkind: Gadget\nmetadata: {name: g}\n---\napiVersion: cdi.kubevirt.io/v1alpha1\nkind: DataVolume\nmetadata: {name: old}\n---\napiVersion: cdi.kubevirt.io/v2\nkind: DataVolume\nmetadata: {name: x}\n');
    const msg = d.map((x) => (x.type === 'refused' ? x.message : ''));
    assert.deepEqual(d.map((x) => x.type), ['dataVolume', 'refused', 'refused', 'dataVolume', 'refused']);
    assert.equal(msg[4], 'apiVersion "cdi.kubevirt.io/v2" is not served for kind DataVolume (expected cdi.kubevirt.io/v1beta1 or cdi.kubevirt.io/v1alpha1)');
    assert.match(msg[1]!, /^not supported yet/);
    assert.match(msg[2]!, /^unknown kind "Gadget" \(apiVersion "example\.com\/v2"\)/);
  });

  it('a wrong apiVersion for a node kind is refused', () => {
    const d = docs('apiVersion: kubevirt.io/v2\nkind: VirtualMachine\nmetadata: {name: x}\n');
    assert.equal(d[0]!.type, 'refused');
    assert.match((d[0] as { message: string }).message, /apiVersion "kubevirt.io\/v2" is not served for kind VirtualMachine/);
  });

  it('JSON objects and kind: List', () => {
    const d = docs(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ kind: 'VirtualMachineInstance', metadata: { name: 'a' } }, { kind: 'VirtualMachine', metadata: { name: 'b' } }] }));
    assert.deepEqual(d.map((x) => x.type), ['vmi', 'vm']);
  });

  it('keeps manifest.ts safety rules: aliases, tags, duplicate keys refused with positions', () => {
    for (const [text, re] of [
      [`${VMI}---\na: &x 1\nb: *x\n`, /line 9, column 4: YAML aliases are not allowed/],
      [`${VMI}---\na: !custom 1\n`, /!custom/],
      ['a: 1\na: 2\n', /invalid YAML: Map keys must be unique/],
    ] as const) {
      const r = parseDocuments(text);
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.violations[0]!.message, re);
    }
    const big = parseDocuments('a: "' + 'x'.repeat(1024 * 1024) + '"\n');
    assert.equal(big.ok, false);
  });
});

describe('vmToVmi', () => {
  it('template -> VMI: name/namespace from the VM, template labels and annotations, owner annotation, runStrategy', () => {
    const d = docs(VM)[0]!;
    assert.equal(d.type, 'vm');
    const r = vmToVmi((d as { value: Record<string, unknown> }).value, NONE);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.vmi, {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: { name: 'vm-small', labels: { 'kubevirt.io/vm': 'vm-small' }, annotations: { team: 'blue', [OWNER_ANNOTATION]: 'VirtualMachine/vm-small' } },
      // firmware.uuid: virt-controller's stable UUID of a VM's VMI (SHA-1 of the VM name).
      spec: { domain: { cpu: { cores: 2 }, memory: { guest: '128Mi' }, devices: {}, firmware: { uuid: legacyFirmwareUuid('vm-small') } }, terminationGracePeriodSeconds: 0, runStrategy: 'Always' },
    });
  });

  it('running: true -> Always, false -> Halted, neither -> Halted (KubeVirt default), both -> refused', () => {
    const strategy = (over: Record<string, unknown>): string => {
      const r = vmToVmi(vm(over), NONE);
      return r.ok ? r.runStrategy : r.violations.map((v) => `${v.field}: ${v.message}`).join('; ');
    };
    assert.equal(strategy({ running: true }), 'Always');
    assert.equal(strategy({ running: false }), 'Halted');
    assert.equal(strategy({}), 'Halted');
    assert.equal(strategy({ runStrategy: 'RerunOnFailure' }), 'RerunOnFailure');
    assert.match(strategy({ running: true, runStrategy: 'Always' }), /^spec\.running: running and runStrategy are mutually exclusive/);
    assert.match(strategy({ runStrategy: 'Sometimes' }), /^spec\.runStrategy: must be one of/);
  });

  it('strict: unknown fields, status, a template runStrategy and a dataVolumeTemplate without spec each reported with their path', () => {
    const r = vmToVmi({ ...vm({ foo: 1, dataVolumeTemplates: [{ metadata: { name: 'dv' } }] }, { metadata: { bar: 'x' }, spec: { domain: {}, runStrategy: 'Always' } }), status: {} }, NONE);
    assert.equal(r.ok, false);
    const fields = r.ok ? [] : r.violations.map((v) => `${v.field}: ${v.message}`);
    assert.ok(fields.includes('spec.foo: unknown field'), fields.join('\n'));
    assert.ok(fields.includes('status: server-populated: remove it'), fields.join('\n'));
    assert.ok(fields.includes('spec.template.metadata.bar: unknown field'), fields.join('\n'));
    assert.ok(fields.some((f) => f.startsWith('spec.template.spec.runStrategy: set it on the VirtualMachine')), fields.join('\n'));
    assert.ok(fields.includes('spec.dataVolumeTemplates[0].spec: required: the DataVolume spec'), fields.join('\n'));
  });

  it('dataVolumeTemplates become DataVolume manifests in the VM\'s namespace (names required and unique)', () => {
    const spec = { source: { blank: {} }, storage: { resources: { requests: { storage: '1Gi' } } } };
    const r = vmToVmi({ ...vm({ dataVolumeTemplates: [{ metadata: { name: 'root', labels: { a: 'b' } }, spec }] }, { spec: { domain: {}, volumes: [{ name: 'root', dataVolume: { name: 'root' } }] } }), metadata: { name: 'vm1', namespace: 'vms' } }, NONE);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.dataVolumes, [{ apiVersion: 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: { name: 'root', namespace: 'vms', labels: { a: 'b' } }, spec }]);
    const bad = vmToVmi(vm({ dataVolumeTemplates: [{ metadata: {}, spec }, { metadata: { name: 'x' }, spec }, { metadata: { name: 'x' }, spec }] }), NONE);
    const fields = bad.ok ? [] : bad.violations.map((v) => `${v.field}: ${v.message}`);
    assert.ok(fields.some((f) => f.startsWith('spec.dataVolumeTemplates[0].metadata.name: required')), fields.join('\n'));
    assert.ok(fields.includes('spec.dataVolumeTemplates[2].metadata.name: duplicate DataVolume name "x"'), fields.join('\n'));
  });

  it('a volume no disk names gets a disk, as virt-controller\'s SetDefaultVolumeDisk does', () => {
    const r = vmToVmi(vm({}, { spec: { domain: { devices: { disks: [{ name: 'a', disk: { bus: 'sata' } }] } }, volumes: [{ name: 'a', emptyDisk: { capacity: '1Gi' } }, { name: 'b', emptyDisk: { capacity: '1Gi' } }] } }), NONE);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual((r.vmi.spec as { domain: { devices: unknown } }).domain.devices, { disks: [{ name: 'a', disk: { bus: 'sata' } }, { name: 'b' }] });
  });

  it('creationTimestamp: null (what Go clients print) is accepted; a real one is not', () => {
    assert.ok(vmToVmi(vm({}, { metadata: { creationTimestamp: null }, spec: { domain: {} } }), NONE).ok);
    const r = vmToVmi({ ...vm(), metadata: { name: 'v', creationTimestamp: '2024-01-01T00:00:00Z' } }, NONE);
    assert.deepEqual(r.ok ? [] : r.violations.map((v) => v.field), ['metadata.creationTimestamp']);
  });

  it('a missing instancetype and preference are named', () => {
    const r = vmToVmi(vm({ instancetype: { kind: 'VirtualMachineInstancetype', name: 'csmall' }, preference: { name: 'fedora' } }), NONE);
    assert.equal(r.ok, false);
    const msgs = r.ok ? [] : r.violations.map((v) => `${v.field}: ${v.message}`);
    assert.match(msgs[0]!, /^spec\.instancetype\.name: VirtualMachineInstancetype default\/csmall not found/);
    assert.match(msgs[1]!, /^spec\.preference\.name: VirtualMachineClusterPreference fedora not found/);
  });

  it('vmFieldPath maps VMI paths back into the VM', () => {
    assert.equal(vmFieldPath('spec.domain.devices.disks[1].name'), 'spec.template.spec.domain.devices.disks[1].name');
    assert.equal(vmFieldPath('metadata.labels["a/b"]'), 'spec.template.metadata.labels["a/b"]');
    assert.equal(vmFieldPath('metadata.name'), 'metadata.name');
    assert.equal(vmFieldPath('spec.runStrategy'), 'spec.runStrategy');
  });
});
