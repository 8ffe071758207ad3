/**
 * defaultVmi (src/vmi/spec/defaults.ts): what KubeVirt's mutating webhook writes into a new VMI
 * on amd64, on a copy of the manifest, before validation.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { defaultVmi, legacyFirmwareUuid } from '../../src/vmi/spec/defaults';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;
const UID = '0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4';

test('a minimal VMI: machine q35, topology 1/1/1, guest memory from the request, pod network, firmware uuid = uid', () => {
  const input = { metadata: { name: 'tiny', uid: UID }, spec: { domain: { resources: { requests: { memory: '64Mi' } }, devices: {} } } };
  const before = structuredClone(input);
  const out = defaultVmi(input) as Spec;
  assert.deepEqual(input, before, 'the input is not modified');
  assert.deepEqual(out, {
    metadata: { name: 'tiny', uid: UID },
    spec: {
      architecture: 'amd64',
      domain: {
        machine: { type: 'q35' },
        resources: { requests: { memory: '64Mi' } },
        memory: { guest: '64Mi' },
        cpu: { sockets: 1, cores: 1, threads: 1 },
        devices: { interfaces: [{ name: 'default', masquerade: {} }] },
        firmware: { uuid: UID },
        features: {},
      },
      networks: [{ name: 'default', pod: {} }],
    },
  });
});

test('machine type "" becomes q35; a given one is kept', () => {
  assert.equal((defaultVmi({ spec: { domain: { machine: { type: '' } } } }) as Spec).spec.domain.machine.type, 'q35');
  assert.equal((defaultVmi({ spec: { domain: { machine: { type: 'pc' } } } }) as Spec).spec.domain.machine.type, 'pc');
});

test('CPU: sockets from the limit, else the request, rounded up; a given topology is kept; requests.cpu from limits.cpu', () => {
  const d = (domain: Spec): Spec => (defaultVmi({ spec: { domain } }) as Spec).spec.domain;
  assert.deepEqual(d({ resources: { limits: { cpu: '3' } } }).cpu, { sockets: 3, cores: 1, threads: 1 });
  assert.deepEqual(d({ resources: { limits: { cpu: '3' } } }).resources.requests, { cpu: '3' });
  assert.deepEqual(d({ resources: { requests: { cpu: '1500m' } } }).cpu, { sockets: 2, cores: 1, threads: 1 });
  assert.deepEqual(d({ cpu: { cores: 4 } }).cpu, { cores: 4 });
  assert.deepEqual(d({ cpu: { model: 'host-passthrough' } }).cpu, { model: 'host-passthrough', sockets: 1, cores: 1, threads: 1 });
});

test('guest memory: from requests, else limits, else the hugepage size; a given guest is kept', () => {
  const d = (domain: Spec): Spec => (defaultVmi({ spec: { domain } }) as Spec).spec.domain;
  assert.equal(d({ resources: { limits: { memory: '1Gi' } } }).memory.guest, '1Gi');
  assert.equal(d({ memory: { hugepages: { pageSize: '2Mi' } } }).memory.guest, '2Mi');
  assert.equal(d({ memory: { guest: '512Mi' }, resources: { requests: { memory: '1Gi' } } }).memory.guest, '512Mi');
});

test('disks: a volume without a disk gets one; target disk when none; bus sata (amd64); cdrom readonly + tray closed', () => {
  const out = defaultVmi({
    spec: {
      domain: { devices: { disks: [{ name: 'a' }, { name: 'b', cdrom: {} }, { name: 'c', disk: { bus: 'virtio' } }], filesystems: [{ name: 'fs', virtiofs: {} }] } },
      volumes: [{ name: 'a', emptyDisk: { capacity: '1Gi' } }, { name: 'extra', emptyDisk: { capacity: '1Gi' } }, { name: 'fs', persistentVolumeClaim: { claimName: 'x' } }],
    },
  }) as Spec;
  assert.deepEqual(out.spec.domain.devices.disks, [
    { name: 'a', disk: { bus: 'sata' } },
    { name: 'b', cdrom: { bus: 'sata', readonly: true, tray: 'closed' } },
    { name: 'c', disk: { bus: 'virtio' } },
    { name: 'extra', disk: { bus: 'sata' } },
  ]);
});

test('no pod interface when autoattachPodInterface is false or any network/interface is given', () => {
  const devices = (spec: Spec): Spec => (defaultVmi({ spec }) as Spec).spec;
  assert.equal(devices({ domain: { devices: { autoattachPodInterface: false } } }).networks, undefined);
  assert.deepEqual(devices({ domain: { devices: {} }, networks: [{ name: 'm', multus: { networkName: 'x' } }] }).domain.devices.interfaces, undefined);
});

test('containerDisk pull policy: Always for :latest or untagged images, IfNotPresent otherwise', () => {
  const v = (image: string): string => (defaultVmi({ spec: { domain: {}, volumes: [{ name: 'r', containerDisk: { image } }] } }) as Spec).spec.volumes[0].containerDisk.imagePullPolicy;
  assert.equal(v('quay.io/x/fedora'), 'Always');
  assert.equal(v('quay.io/x/fedora:latest'), 'Always');
  assert.equal(v('registry:5000/kubevirt/cirros:devel'), 'IfNotPresent');
  assert.equal(v('quay.io/x/fedora@sha256:abcd'), 'IfNotPresent');
});

test('features, Hyper-V, timers, watchdog, inputs and probes get KubeVirt\'s defaults', () => {
  const out = defaultVmi({
    spec: {
      domain: {
        features: { acpi: {}, smm: { enabled: false }, hyperv: { relaxed: {}, spinlocks: {}, synictimer: { direct: {} } } },
        clock: { utc: {}, timer: { hpet: { present: false }, rtc: { tickPolicy: 'catchup' } } },
        devices: { watchdog: { name: 'w' }, inputs: [{ name: 't' }] },
      },
      readinessProbe: { tcpSocket: { port: 22 } },
    },
  }) as Spec;
  const d = out.spec.domain;
  assert.deepEqual(d.features, { acpi: { enabled: true }, smm: { enabled: false }, hyperv: { relaxed: { enabled: true }, spinlocks: { enabled: true, spinlocks: 4096 }, synictimer: { enabled: true, direct: { enabled: true } } } });
  assert.deepEqual(d.clock.timer, { hpet: { present: false }, rtc: { tickPolicy: 'catchup', present: true } });
  assert.deepEqual(d.devices.watchdog, { name: 'w', i6300esb: { action: 'reset' } });
  assert.deepEqual(d.devices.inputs, [{ name: 't', bus: 'usb', type: 'tablet' }]);
  assert.deepEqual(out.spec.readinessProbe, { tcpSocket: { port: 22 }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 });
});

test('the legacy firmware UUID of a VirtualMachine is KubeVirt\'s UUID v5 of its name', () => {
  // uuid.uuid5(UUID('6a1a24a1-4061-4607-8bf4-a3963d0c5895'), 'testvm') in Python
  assert.equal(legacyFirmwareUuid('testvm'), '5a9fc181-957e-5c32-9e5a-2de5e9673531');
});

test('malformed input is left for validation, never thrown on; accessors are not invoked', () => {
  for (const bad of [null, 1, 'x', [], { spec: 1 }, { spec: { domain: [] } }, { spec: { domain: { cpu: 'x', memory: 3, devices: { disks: 'x' } }, volumes: 'x' } }]) {
    assert.doesNotThrow(() => defaultVmi(bad));
  }
  let called = false;
  const hostile = { spec: { domain: {} } };
  Object.defineProperty(hostile.spec.domain, 'cpu', { enumerable: true, get: () => { called = true; return {}; } });
  const out = defaultVmi(hostile) as Spec;
  assert.equal(called, false);
  assert.deepEqual(out.spec.domain.cpu, { sockets: 1, cores: 1, threads: 1 });
});

test('defaulting is idempotent (a stored, defaulted manifest re-submitted is unchanged)', () => {
  const input = {
    metadata: { name: 'f', uid: UID },
    spec: {
      domain: { resources: { limits: { cpu: '2', memory: '1Gi' } }, devices: { disks: [{ name: 'root' }], watchdog: { name: 'w' } }, features: { hyperv: { spinlocks: {} } } },
      volumes: [{ name: 'root', containerDisk: { image: 'quay.io/x/y' } }, { name: 'ci', cloudInitNoCloud: { userData: 'x' } }],
    },
  };
  const once = defaultVmi(input);
  assert.deepEqual(defaultVmi(once), once);
});

test('efi without secureBoot means secure boot (KubeVirt reads nil as on), and secure boot turns an unset SMM on', () => {
  const base = (firmware: unknown, features?: unknown): Spec => defaultVmi({ metadata: { name: 'e', uid: UID }, spec: { domain: { firmware, ...(features === undefined ? {} : { features }), devices: {} } } });
  let d = base({ bootloader: { efi: {} } }).spec.domain;
  assert.deepEqual(d.firmware, { bootloader: { efi: { secureBoot: true } }, uuid: UID });
  assert.deepEqual(d.features.smm, { enabled: true });
  d = base({ bootloader: { efi: { secureBoot: false } } }).spec.domain;
  assert.equal(d.features.smm, undefined, 'no secure boot: SMM stays as given (unset)');
  d = base({ bootloader: { efi: {} } }, { smm: { enabled: false } }).spec.domain;
  assert.deepEqual(d.features.smm, { enabled: false }, 'an explicit SMM off is kept for validation to refuse');
  d = base({ bootloader: { bios: {} } }).spec.domain;
  assert.equal(d.features.smm, undefined);
});

test('a VirtualMachine\'s VMI gets the stable, name-derived firmware UUID (virt-controller setupStableFirmwareUUID); an explicit one is kept', async () => {
  const { vmToVmi } = await import('../../src/vmi/spec/virtual-machine');
  const lookup = { instancetype: () => null, preference: () => null };
  const vm = (firmware?: unknown): Spec => ({
    apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachine', metadata: { name: 'testvm' },
    spec: { runStrategy: 'Always', template: { spec: { domain: { ...(firmware === undefined ? {} : { firmware }), devices: {} } } } },
  });
  const r = vmToVmi(vm(), lookup);
  assert.ok(r.ok);
  assert.equal((r.vmi.spec as Spec).domain.firmware.uuid, '5a9fc181-957e-5c32-9e5a-2de5e9673531');
  // defaultVmi with the record's uid does not replace it.
  assert.equal((defaultVmi(r.vmi, { uid: UID }) as Spec).spec.domain.firmware.uuid, '5a9fc181-957e-5c32-9e5a-2de5e9673531');
  const own = vmToVmi(vm({ uuid: '11111111-2222-4333-8444-555555555555' }), lookup);
  assert.ok(own.ok);
  assert.equal((own.vmi.spec as Spec).domain.firmware.uuid, '11111111-2222-4333-8444-555555555555');
});
