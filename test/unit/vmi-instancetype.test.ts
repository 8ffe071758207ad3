/**
 * Instancetype and preference expansion (src/vmi/spec/instancetype.ts) through vmToVmi, with
 * csmall/clarge-like objects written in KubeVirt's instancetype.kubevirt.io/v1beta1 shapes.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { readInstancetype, readPreference, type Instancetype, type Preference } from '../../src/vmi/spec/instancetype';
import { vmToVmi, type ObjectLookup } from '../../src/vmi/spec/virtual-machine';
import { legacyFirmwareUuid } from '../../src/vmi/spec/defaults';

const CSMALL = { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineInstancetype', metadata: { name: 'csmall' }, spec: { cpu: { guest: 1 }, memory: { guest: '128Mi' } } };
const CLARGE = { apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterInstancetype', metadata: { name: 'clarge' }, spec: { cpu: { guest: 4 }, memory: { guest: '2Gi' } } };
const VIRTIO = {
  apiVersion: 'instancetype.kubevirt.io/v1beta1', kind: 'VirtualMachineClusterPreference', metadata: { name: 'virtio' },
  spec: {
    cpu: { preferredCPUTopology: 'cores' },
    devices: { preferredDiskBus: 'virtio', preferredInterfaceModel: 'virtio', preferredAutoattachSerialConsole: true },
    machine: { preferredMachineType: 'q35' },
    firmware: { preferredUseEfi: true, preferredUseSecureBoot: false },
    features: { preferredApic: { enabled: true } },
    preferredTerminationGracePeriodSeconds: 15,
  },
};

function objects(...docs: Array<Record<string, unknown>>): ObjectLookup {
  const its: Instancetype[] = [];
  const prefs: Preference[] = [];
  for (const d of docs) {
    const kind = d.kind as string;
    if (kind.endsWith('Instancetype')) {
      const r = readInstancetype(d, kind as Instancetype['kind']);
      assert.ok(r.ok, JSON.stringify(r));
      its.push(r.object);
    } else {
      const r = readPreference(d, kind as Preference['kind']);
      assert.ok(r.ok, JSON.stringify(r));
      prefs.push(r.object);
    }
  }
  return {
    instancetype: (kind, ns, name) => its.find((o) => o.kind === kind && o.namespace === ns && o.name === name) ?? null,
    preference: (kind, ns, name) => prefs.find((o) => o.kind === kind && o.namespace === ns && o.name === name) ?? null,
  };
}

function vm(spec: Record<string, unknown>, domain: Record<string, unknown> = { devices: {} }, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'vm' }, spec: { runStrategy: 'Always', template: { spec: { domain, ...extra } }, ...spec } };
}

describe('instancetype expansion', () => {
  it('csmall-like: cpu.guest 1 -> 1x1x1, memory.guest, annotation naming it', () => {
    const r = vmToVmi(vm({ instancetype: { kind: 'VirtualMachineInstancetype', name: 'csmall' } }), objects(CSMALL));
    assert.ok(r.ok, JSON.stringify(r));
    const spec = r.vmi.spec as { domain: Record<string, unknown> };
    assert.deepEqual(spec.domain.cpu, { sockets: 1, cores: 1, threads: 1 });
    assert.deepEqual(spec.domain.memory, { guest: '128Mi' });
    assert.equal((r.vmi.metadata as { annotations: Record<string, string> }).annotations['kubevirt.io/instancetype-name'], 'csmall');
  });

  it('clarge-like + preference: 4 vCPUs as cores (preferredCPUTopology), preferences fill only unset fields', () => {
    const domain = {
      devices: {
        disks: [{ name: 'root' }, { name: 'data', disk: { bus: 'sata' } }, { name: 'iso', cdrom: {} }],
        interfaces: [{ name: 'default', masquerade: {} }],
      },
      machine: { type: 'pc' },
    };
    const r = vmToVmi(vm({ instancetype: { name: 'clarge' }, preference: { name: 'virtio' } }, domain), objects(CLARGE, VIRTIO));
    assert.ok(r.ok, JSON.stringify(r));
    const spec = r.vmi.spec as { domain: Record<string, any>; terminationGracePeriodSeconds: number };
    assert.deepEqual(spec.domain.cpu, { sockets: 1, cores: 4, threads: 1 });
    assert.deepEqual(spec.domain.memory, { guest: '2Gi' });
    assert.deepEqual(spec.domain.devices.disks, [{ name: 'root', disk: { bus: 'virtio' } }, { name: 'data', disk: { bus: 'sata' } }, { name: 'iso', cdrom: {} }]);
    assert.equal(spec.domain.devices.interfaces[0].model, 'virtio');
    assert.equal(spec.domain.devices.autoattachSerialConsole, true);
    assert.deepEqual(spec.domain.machine, { type: 'pc' }, 'the VM set it: the preference does not override');
    // uuid: virt-controller's stable firmware UUID of a VM (SHA-1 of the VM name).
    assert.deepEqual(spec.domain.firmware, { bootloader: { efi: { secureBoot: false } }, uuid: legacyFirmwareUuid('vm') });
    assert.deepEqual(spec.domain.features, { apic: { enabled: true } });
    assert.equal(spec.terminationGracePeriodSeconds, 15);
    const ann = (r.vmi.metadata as { annotations: Record<string, string> }).annotations;
    assert.equal(ann['kubevirt.io/cluster-instancetype-name'], 'clarge');
    assert.equal(ann['kubevirt.io/cluster-preference-name'], 'virtio');
  });

  it('default topology is sockets; spread splits sockets and cores', () => {
    const spread = { ...VIRTIO, metadata: { name: 'spread' }, spec: { cpu: { preferredCPUTopology: 'spread' } } };
    let r = vmToVmi(vm({ instancetype: { name: 'clarge' } }), objects(CLARGE));
    assert.deepEqual(r.ok && (r.vmi.spec as { domain: { cpu: unknown } }).domain.cpu, { sockets: 4, cores: 1, threads: 1 });
    r = vmToVmi(vm({ instancetype: { name: 'clarge' }, preference: { name: 'spread' } }), objects(CLARGE, spread));
    assert.deepEqual(r.ok && (r.vmi.spec as { domain: { cpu: unknown } }).domain.cpu, { sockets: 2, cores: 2, threads: 1 });
  });

  it('conflicts with the instancetype are errors naming each field', () => {
    const domain = { cpu: { sockets: 2 }, memory: { guest: '64Mi' }, resources: { requests: { memory: '64Mi' } }, devices: {} };
    const r = vmToVmi(vm({ instancetype: { kind: 'VirtualMachineInstancetype', name: 'csmall' } }, domain), objects(CSMALL));
    assert.equal(r.ok, false);
    assert.deepEqual(r.ok ? [] : r.violations.map((v) => v.field), [
      'spec.template.spec.domain.cpu.sockets',
      'spec.template.spec.domain.memory.guest',
      'spec.template.spec.domain.resources.requests.memory',
    ]);
    assert.match(r.ok ? '' : r.violations[0]!.message, /conflicts with VirtualMachineInstancetype default\/csmall/);
  });

  it('preference requirements are checked against the result', () => {
    const needy = { ...VIRTIO, metadata: { name: 'needy' }, spec: { requirements: { cpu: { guest: 2 }, memory: { guest: '1Gi' } } } };
    const r = vmToVmi(vm({ instancetype: { kind: 'VirtualMachineInstancetype', name: 'csmall' }, preference: { name: 'needy' } }), objects(CSMALL, needy));
    assert.equal(r.ok, false);
    assert.deepEqual(r.ok ? [] : r.violations.map((v) => `${v.field}: ${v.message}`), [
      'spec.instancetype.name: 1 vCPU(s) provided by VirtualMachineInstancetype default/csmall; VirtualMachineClusterPreference needy requires 2',
      'spec.instancetype.name: guest memory 128Mi provided by VirtualMachineInstancetype default/csmall; VirtualMachineClusterPreference needy requires 1Gi',
    ]);
  });

  it('instancetype documents are checked strictly', () => {
    const r = readInstancetype({ ...CSMALL, spec: { cpu: {}, memory: { guest: 'lots' }, bogus: 1 } }, 'VirtualMachineInstancetype');
    assert.equal(r.ok, false);
    assert.deepEqual(r.ok ? [] : r.violations.map((v) => v.field), ['spec.bogus', 'spec.cpu.guest', 'spec.memory.guest']);
    const c = readInstancetype({ ...CLARGE, metadata: { name: 'clarge', namespace: 'x' } }, 'VirtualMachineClusterInstancetype');
    assert.deepEqual(c.ok ? [] : c.violations.map((v) => v.field), ['metadata.namespace']);
  });
});
