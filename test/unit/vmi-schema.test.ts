/**
 * The kubevirt.io/v1 field schema (src/vmi/spec/schema/) through validateVmi: KubeVirt-style
 * manifests in the shapes of KubeVirt's published examples are accepted, after defaultVmi as the
 * daemon does it, each with exactly the requirements (accepted fields this node cannot honour)
 * expected; unknown fields and wrong kinds are still every violation at once, with full paths.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultVmi } from '../../src/vmi/spec/defaults';
import { validateVmi } from '../../src/vmi/spec/validate';
import type { NormalizedVmi, ValidationContext } from '../../src/vmi/spec/types';
import type { KubevirtVmi, KubevirtVmiSpec } from '../../src/vmi/spec/schema';

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmi-schema-')));
const IMAGES = path.join(TMP, 'images');
const HOST = path.join(TMP, 'host');
fs.mkdirSync(IMAGES);
fs.mkdirSync(HOST);
fs.writeFileSync(path.join(IMAGES, 'cirros.qcow2'), 'x');
fs.writeFileSync(path.join(HOST, 'disk.img'), 'x');
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

const UID = '0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4';
const CTX: ValidationContext = { imageRoot: IMAGES, hostPathRoots: [HOST], requirements: 'pending', nodeLabels: { 'kubernetes.io/arch': 'amd64', zone: 'a' } };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;

function vmi(name: string, spec: Spec, metadata: Spec = {}): Spec {
  return { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name, uid: UID, ...metadata }, spec };
}

function accept(manifest: Spec, ctx: ValidationContext = CTX): NormalizedVmi {
  const r = validateVmi(defaultVmi(manifest), ctx);
  if (!r.ok) assert.fail(`expected ok, got ${JSON.stringify(r.violations, null, 1)}`);
  return r.vmi;
}

function needs(v: NormalizedVmi): Record<string, string> {
  return Object.fromEntries(v.requirements.map((r) => [r.field, r.needs]));
}

const CIRROS_IMAGE = 'registry:5000/kubevirt/cirros-container-disk-demo:devel';
const IMAGE_NEEDS = (image: string): string => `${image} (pulling container disk images is not implemented yet on this node)`;

test('cirros: containerDisk image + cloudInitNoCloud userDataBase64, machine type "" defaulted', () => {
  const v = accept(vmi('vmi-nocloud', {
    terminationGracePeriodSeconds: 0,
    domain: {
      machine: { type: '' },
      resources: { requests: { memory: '128Mi' } },
      devices: { disks: [{ name: 'containerdisk', disk: { bus: 'virtio' } }, { name: 'cloudinitdisk', disk: { bus: 'virtio' } }] },
    },
    volumes: [
      { name: 'containerdisk', containerDisk: { image: CIRROS_IMAGE } },
      { name: 'cloudinitdisk', cloudInitNoCloud: { userDataBase64: Buffer.from('#!/bin/sh\necho hi\n').toString('base64') } },
    ],
  }));
  assert.equal(v.machineType, 'q35');
  assert.deepEqual(needs(v), { 'spec.volumes[0].containerDisk.image': IMAGE_NEEDS(CIRROS_IMAGE) });
  assert.equal(v.disks.length, 1, 'the image disk waits; the cloud-init disk is there');
  assert.deepEqual(v.disks[0]?.volume, { kind: 'cloudInitNoCloud', name: 'cloudinitdisk', userData: '#!/bin/sh\necho hi\n', networkData: null });
  assert.deepEqual(v.interfaces, [{ name: 'default', binding: 'masquerade', macAddress: null, model: 'virtio', bootOrder: null }]);
  assert.equal(v.memory.guestBytes, 128 * 2 ** 20);
});

test('fedora: containerDisk image, cloud-init userData, ports on masquerade, rng, tolerations and affinity kept', () => {
  const v = accept(vmi('vmi-fedora', {
    domain: {
      devices: {
        disks: [{ name: 'containerdisk', disk: { bus: 'virtio' } }, { name: 'cloudinitdisk', disk: { bus: 'virtio' } }],
        interfaces: [{ name: 'default', masquerade: {}, ports: [{ name: 'http', port: 80 }] }],
        rng: {},
      },
      resources: { requests: { memory: '1024M' } },
    },
    networks: [{ name: 'default', pod: {} }],
    tolerations: [{ key: 'node-role', operator: 'Exists', effect: 'NoSchedule' }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }] } } },
    evictionStrategy: 'LiveMigrate', priorityClassName: 'high', schedulerName: 'default-scheduler', hostname: 'fed', subdomain: 'svc',
    volumes: [
      { name: 'containerdisk', containerDisk: { image: 'quay.io/containerdisks/fedora:latest' } },
      { name: 'cloudinitdisk', cloudInitNoCloud: { userData: '#cloud-config\npassword: fedora\n' } },
    ],
  }));
  assert.deepEqual(needs(v), {
    'spec.domain.devices.interfaces[0].ports': 'inbound port forwarding (masquerade here is outbound-only user-mode NAT)',
    'spec.volumes[0].containerDisk.image': IMAGE_NEEDS('quay.io/containerdisks/fedora:latest'),
  });
  assert.equal(v.rng, true);
});

test('pvc, dataVolume, ephemeral volumes: node-local claims, honoured (no requirement)', () => {
  const names = ['pvc', 'dv', 'eph'];
  const v = accept(vmi('vmi-pvc', {
    domain: { resources: { requests: { memory: '64M' } }, devices: { disks: names.map((name) => ({ name, disk: {} })) } },
    volumes: [
      { name: 'pvc', persistentVolumeClaim: { claimName: 'disk-alpine' } },
      { name: 'dv', dataVolume: { name: 'alpine-dv' } },
      { name: 'eph', ephemeral: { persistentVolumeClaim: { claimName: 'base' } } },
    ],
  }));
  assert.deepEqual(needs(v), {
  });
  assert.deepEqual(v.disks.map((d) => d.volume), [
    { kind: 'persistentVolumeClaim', name: 'pvc', claimName: 'disk-alpine', readOnly: false, ephemeral: false },
    { kind: 'dataVolume', name: 'dv', dataVolumeName: 'alpine-dv' },
    { kind: 'persistentVolumeClaim', name: 'eph', claimName: 'base', readOnly: false, ephemeral: true },
  ]);
});
// configMap, secret, serviceAccount, downwardAPI, sysprep and cloudInitConfigDrive: vmi-object-volumes.test.ts.

test('kernel boot from a container image: a requirement; this node\'s host-path kernel still works', () => {
  const v = accept(vmi('vmi-kernel-boot', {
    domain: {
      firmware: { kernelBoot: { kernelArgs: 'console=ttyS0', container: { image: 'registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel', kernelPath: '/boot/vmlinuz-virt', initrdPath: '/boot/initramfs-virt' } } },
      resources: { requests: { memory: '1Gi' } },
    },
  }));
  assert.deepEqual(Object.keys(needs(v)), ['spec.domain.firmware.kernelBoot.container.image']);
  assert.match(v.requirements[0]!.needs, /kernel boot container registry:5000\/kubevirt\/alpine-ext-kernel-boot-demo:devel \(this node has no image store\)/);
});

test('kernel boot from a container image with imagePulls: kernelBootContainer (pulled at start); bad paths and mixed forms refused', () => {
  const pulls: ValidationContext = { ...CTX, imagePulls: true };
  const spec = (kb: Spec): Spec => vmi('kb', { domain: { firmware: { kernelBoot: kb }, resources: { requests: { memory: '64Mi' } } } });
  const image = 'registry:5000/kubevirt/alpine-ext-kernel-boot-demo:devel';
  const v = accept(spec({ kernelArgs: 'console=ttyS0', container: { image, kernelPath: '/boot/vmlinuz-virt', initrdPath: '/boot/initramfs-virt' } }), pulls);
  assert.deepEqual(v.requirements, []);
  assert.equal(v.firmware.kernelBoot, null);
  assert.deepEqual(v.firmware.kernelBootContainer, { image, pullPolicy: 'IfNotPresent', kernelPath: '/boot/vmlinuz-virt', initrdPath: '/boot/initramfs-virt', kernelArgs: 'console=ttyS0' });
  assert.equal(accept(spec({ container: { image: 'quay.io/k/boot:latest', kernelPath: '/vmlinuz' } }), pulls).firmware.kernelBootContainer?.pullPolicy, 'Always');
  const refused = (kb: Spec): string => {
    const r = validateVmi(defaultVmi(spec(kb)), pulls);
    return r.ok ? '' : r.violations.map((x) => `${x.field}: ${x.message}`).join('\n');
  };
  const base = 'spec.domain.firmware.kernelBoot.container';
  assert.match(refused({ container: { image, kernelPath: 'boot/vmlinuz' } }), new RegExp(`^${base.replace(/\./g, '\\.')}\\.kernelPath: must be an absolute file path inside the image without '\\.\\.'`, 'm'));
  assert.match(refused({ container: { image, kernelPath: '/boot/../../etc/shadow' } }), /container\.kernelPath: must be an absolute file path inside the image without '\.\.'/);
  assert.match(refused({ container: { image, kernelPath: '/boot/vmlinuz', initrdPath: '/boot/../x' } }), /container\.initrdPath: must be an absolute file path/);
  assert.match(refused({ container: { image, initrdPath: '/boot/initrd' } }), /container\.kernelPath: required \(the kernel's path inside the image/);
  assert.match(refused({ container: { kernelPath: '/boot/vmlinuz' } }), /container\.image: required/);
  assert.match(refused({ container: { image: 'Not A Ref', kernelPath: '/boot/vmlinuz' } }), /container\.image: image reference "Not A Ref"/);
  assert.match(refused({ container: { image, kernelPath: '/boot/vmlinuz', imagePullPolicy: 'Sometimes' } }), /container\.imagePullPolicy/);
  assert.match(refused({ kernel: 'vmlinuz', container: { image, kernelPath: '/boot/vmlinuz' } }), /kernelBoot\.container: kernelBoot\.container excludes kernelBoot\.kernel\/initrd/);
});

test('multus and SR-IOV: secondary networks and the sriov binding are requirements', () => {
  const v = accept(vmi('vmi-sriov', {
    domain: {
      resources: { requests: { memory: '1Gi' } },
      devices: { interfaces: [{ name: 'default', masquerade: {} }, { name: 'sriov-net', sriov: {} }, { name: 'ptp', bridge: {} }] },
    },
    networks: [{ name: 'default', pod: {} }, { name: 'sriov-net', multus: { networkName: 'sriov/sriov-network' } }, { name: 'ptp', multus: { networkName: 'ptp-conf' } }],
  }));
  assert.deepEqual(needs(v), {
    'spec.domain.devices.interfaces[1].sriov': 'an SR-IOV virtual function (this node has no SR-IOV devices)',
    'spec.networks[1].multus': 'Multus network sriov/sriov-network (this node has no secondary networks)',
    'spec.networks[2].multus': 'Multus network ptp-conf (this node has no secondary networks)',
  });
});

test('GPUs, host devices, launchSecurity, a persistent TPM, a filesystem\'s PVC: named with what the node lacks', () => {
  const v = accept(vmi('vmi-gpu', {
    domain: {
      resources: { requests: { memory: '1Gi' } },
      launchSecurity: { sev: {} },
      devices: {
        gpus: [{ name: 'gpu1', deviceName: 'nvidia.com/GA102' }],
        hostDevices: [{ name: 'usb', deviceName: 'kubevirt.io/storage' }],
        filesystems: [{ name: 'shared', virtiofs: {} }],
        tpm: { persistent: true },
      },
    },
    volumes: [{ name: 'shared', persistentVolumeClaim: { claimName: 'fs' } }],
  }));
  assert.deepEqual(needs(v), {
    'spec.domain.launchSecurity.sev': 'AMD SEV (not available on this node)',
    'spec.domain.devices.gpus[0]': 'GPU device nvidia.com/GA102 (this node exposes no GPUs)',
    'spec.domain.devices.hostDevices[0]': 'host device kubevirt.io/storage (this node exposes no host devices)',
    'spec.domain.devices.filesystems[0]': 'a virtiofs share of the persistentVolumeClaim volume "shared" (this node serves that volume kind as a disk image, not as a directory)',
    'spec.domain.devices.tpm': 'persistent TPM state (KubeVirt keeps it on backend storage, a PVC that follows the VM; this node has no backend storage)',
  });
});

test('host disk, emptyDisk and a plain containerDisk path run here without requirements', () => {
  const v = accept(vmi('vmi-host-disk', {
    domain: { resources: { requests: { memory: '64M' } }, devices: { disks: [{ name: 'host', disk: { bus: 'virtio' } }, { name: 'root', disk: {} }, { name: 'scratch', cdrom: {} }] } },
    volumes: [
      { name: 'host', hostDisk: { path: path.join(HOST, 'disk.img'), type: 'Disk' } },
      { name: 'root', containerDisk: { path: 'cirros.qcow2' } },
      { name: 'scratch', cloudInitNoCloud: { userData: '#cloud-config\n' } },
    ],
  }));
  assert.deepEqual(v.requirements, []);
  assert.deepEqual(v.disks.map((d) => [d.name, d.device, d.bus]), [['host', 'disk', 'virtio'], ['root', 'disk', 'sata'], ['scratch', 'cdrom', 'sata']]);
});

test('nodeSelector: a label this node lacks or has otherwise is a requirement, a match is not', () => {
  const v = accept(vmi('sel', { domain: { resources: { requests: { memory: '64M' } } }, nodeSelector: { zone: 'b', gpu: 'true', 'kubernetes.io/arch': 'amd64' } }));
  assert.deepEqual(needs(v), { 'spec.nodeSelector.zone': 'node label zone=b (this node has zone=a)', 'spec.nodeSelector.gpu': 'node label gpu=true (this node has no such label)' });
});

test('sidecar hook annotations are a requirement; other annotations are kept', () => {
  const v = accept(vmi('hooked', { domain: { resources: { requests: { memory: '64M' } } } }, { annotations: { 'hooks.kubevirt.io/hookSidecars': '[{"image": "x"}]', note: 'x' } }));
  assert.deepEqual(Object.keys(needs(v)), ['metadata.annotations["hooks.kubevirt.io/hookSidecars"]']);
});

test('extended resources are requirements; cpu and memory are honoured', () => {
  const v = accept(vmi('res', { domain: { resources: { requests: { memory: '64M', cpu: '2', 'nvidia.com/gpu': '1' }, limits: { 'nvidia.com/gpu': '1' } } } }));
  assert.deepEqual(needs(v), {
    'spec.domain.resources.requests["nvidia.com/gpu"]': 'resource nvidia.com/gpu (this node offers only cpu and memory)',
    'spec.domain.resources.limits["nvidia.com/gpu"]': 'resource nvidia.com/gpu (this node offers only cpu and memory)',
  });
  assert.equal(v.cpu.sockets, 2, 'sockets from the CPU request, as KubeVirt does');
});

test('an explicit firmware UUID is honoured (the guest\'s SMBIOS and domain UUID); the default is the uid', () => {
  const fw = accept(vmi('fw', { domain: { resources: { requests: { memory: '64M' } }, firmware: { uuid: '5D307CA9-b3ef-428c-8861-06e72d69f223' } } }));
  assert.deepEqual(fw.requirements, []);
  assert.equal(fw.firmware.uuid, '5d307ca9-b3ef-428c-8861-06e72d69f223');
  const plain = accept(vmi('fw', { domain: { resources: { requests: { memory: '64M' } } } }));
  assert.equal(plain.firmware.uuid, UID);
  assert.deepEqual(plain.requirements, []);
});

test('default mode refuses requirements as violations naming what the node lacks (never "unknown field")', () => {
  const r = validateVmi(defaultVmi(vmi('g', { domain: { resources: { requests: { memory: '64M' } }, devices: { gpus: [{ name: 'g', deviceName: 'nvidia.com/GA102' }] } } })), { imageRoot: IMAGES, hostPathRoots: [] });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(r.violations, [{ field: 'spec.domain.devices.gpus[0]', message: 'accepted by KubeVirt, but this node cannot honour it: needs GPU device nvidia.com/GA102 (this node exposes no GPUs)' }]);
});

test('unknown fields anywhere in the KubeVirt tree and wrong kinds: every one, with its full path', () => {
  const r = validateVmi(vmi('bad', {
    domain: {
      resources: { requests: { memory: '64M' } },
      devices: { gpus: [{ name: 'g', deviceNme: 'x' }], disks: [{ name: 'd', disk: { bus: 'ide' }, cache: 'unsafe' }], interfaces: [{ name: 'n', masquerade: {}, ports: [{ port: '80' }] }] },
      clock: { utc: { offset: 1 } },
      features: { hyperv: { relaxed: { enabled: 'yes' } } },
    },
    tolerations: [{ operator: 'Maybe' }],
    nodeSelector: { zone: 1 },
    volumes: [{ name: 'd', containerDisk: { image: 'x', pulPolicy: 'Always' } }],
    networks: [{ name: 'n', pod: {} }],
    priorityClass: 'x',
  }), CTX);
  assert.equal(r.ok, false);
  if (r.ok) return;
  const fields = r.violations.map((x) => `${x.field}: ${x.message}`).sort();
  assert.deepEqual(fields, [
    'spec.domain.clock.utc.offset: unknown field',
    'spec.domain.devices.disks[0].cache: must be one of none, writethrough, writeback (got "unsafe")',
    'spec.domain.devices.disks[0].disk.bus: must be one of virtio, sata, scsi, usb (got "ide")',
    'spec.domain.devices.gpus[0].deviceNme: unknown field',
    'spec.domain.devices.interfaces[0].ports[0].port: must be an integer',
    'spec.domain.features.hyperv.relaxed.enabled: must be true or false',
    'spec.nodeSelector.zone: must be a string',
    'spec.priorityClass: unknown field',
    'spec.tolerations[0].operator: must be one of Exists, Equal (got "Maybe")',
    'spec.volumes[0].containerDisk.pulPolicy: unknown field',
  ]);
});

test('windows: Hyper-V, SMM, clock with timers, firmware serial and chassis are honoured (normalized for render)', () => {
  const v = accept(vmi('vmi-windows', {
    domain: {
      clock: { utc: {}, timer: { hpet: { present: false }, pit: { tickPolicy: 'delay' }, rtc: { tickPolicy: 'catchup' }, hyperv: {} } },
      cpu: { cores: 2 },
      devices: { disks: [{ name: 'pvcdisk', disk: { bus: 'sata' } }], interfaces: [{ name: 'default', masquerade: {}, model: 'e1000' }] },
      features: {
        acpi: {}, apic: {}, smm: {},
        hyperv: { relaxed: {}, spinlocks: { spinlocks: 8191 }, vapic: {}, synictimer: { direct: {} }, vendorid: { vendorid: 'KubeVirt' }, tlbflush: { direct: {} } },
      },
      firmware: { bootloader: { efi: { secureBoot: true } }, serial: 'WIN-1' },
      chassis: { manufacturer: 'Example' },
      resources: { requests: { memory: '2Gi' } },
    },
    networks: [{ name: 'default', pod: {} }],
    volumes: [{ name: 'pvcdisk', hostDisk: { path: path.join(HOST, 'disk.img'), type: 'Disk' } }],
  }));
  assert.deepEqual(needs(v), { 'spec.domain.features.hyperv.tlbflush.direct': 'Hyper-V direct TLB flush (not rendered by this node yet)' });
  assert.deepEqual(v.features, {
    acpi: true, apic: true, smm: true,
    hyperv: { relaxed: true, vapic: true, synictimer: { enabled: true, direct: true }, spinlocks: { enabled: true, retries: 8191 }, vendorId: { enabled: true, value: 'KubeVirt' }, tlbflush: { enabled: true } },
  });
  assert.deepEqual(v.clock, {
    offset: { kind: 'utc', adjustmentSeconds: null },
    timers: [{ name: 'hpet', present: false }, { name: 'pit', present: true, tickPolicy: 'delay' }, { name: 'rtc', present: true, tickPolicy: 'catchup' }, { name: 'hyperv', present: true }],
  });
  assert.deepEqual(v.sysinfo, { serial: 'WIN-1', chassis: { manufacturer: 'Example' } });
  assert.equal(v.firmware.secureBoot, true);
});

test('domain settings: semantic checks on values of the right kind', () => {
  const r = validateVmi(vmi('bad', {
    domain: {
      resources: { requests: { memory: '64M' } },
      clock: { timezone: '../etc/passwd', utc: {} },
      features: { smm: { enabled: false }, hyperv: { spinlocks: { spinlocks: 10 }, vendorid: { vendorid: 'much-too-long-vendor' } } },
      firmware: { bootloader: { efi: { secureBoot: true } }, serial: 'tab\there' },
    },
  }), CTX);
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(r.violations.map((x) => x.field).sort(), [
    'spec.domain.clock', 'spec.domain.clock.timezone', 'spec.domain.features.hyperv.spinlocks.spinlocks', 'spec.domain.features.hyperv.vendorid.vendorid',
    'spec.domain.features.smm.enabled', 'spec.domain.firmware.serial',
  ]);
});

test('devices: watchdog (defaulted to i6300esb reset), inputs (defaulted usb tablet), no balloon, CPU features, bios useSerial', () => {
  const v = accept(vmi('devs', {
    domain: {
      resources: { requests: { memory: '64M' } },
      cpu: { features: [{ name: 'vmx' }, { name: 'pcid', policy: 'disable' }] },
      firmware: { bootloader: { bios: { useSerial: true } } },
      devices: { watchdog: { name: 'wd' }, inputs: [{ name: 'tablet' }], autoattachMemBalloon: false, autoattachGraphicsDevice: false },
    },
  }));
  assert.deepEqual(v.requirements, []);
  assert.deepEqual(v.watchdog, { name: 'wd', action: 'reset' });
  assert.deepEqual(v.inputs, [{ name: 'tablet', type: 'tablet', bus: 'usb' }]);
  assert.equal(v.memBalloon, false);
  assert.deepEqual(v.cpu.features, [{ name: 'vmx', policy: 'require' }, { name: 'pcid', policy: 'disable' }]);
  assert.equal(v.firmware.biosUseSerial, true);
});

test('I/O: ioThreadsPolicy shared, dedicatedIOThread, blockMultiQueue and graphics are honoured; auto stays a requirement', () => {
  const spec = (policy: string): Spec => vmi('io', {
    domain: {
      resources: { requests: { memory: '64M' } },
      ioThreadsPolicy: policy,
      devices: { blockMultiQueue: true, autoattachGraphicsDevice: true, disks: [{ name: 'd', disk: { bus: 'virtio' }, dedicatedIOThread: true }] },
    },
    volumes: [{ name: 'd', emptyDisk: { capacity: '1Gi' } }],
  });
  const v = accept(spec('shared'));
  assert.deepEqual(v.requirements, []);
  assert.equal(v.ioThreadsShared, true);
  assert.equal(v.blockMultiQueue, true);
  assert.equal(v.graphics, true);
  assert.equal(v.disks[0]?.dedicatedIOThread, true);
  assert.deepEqual(needs(accept(spec('auto'))), { 'spec.domain.ioThreadsPolicy': 'I/O threads policy "auto" (not rendered by this node yet; shared is)' });
});

test('required node affinity is checked against the node labels (terms ORed, expressions ANDed); preferred terms are kept only', () => {
  const withAffinity = (terms: Spec): NormalizedVmi => accept(vmi('aff', {
    domain: { resources: { requests: { memory: '64M' } } },
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } }],
      },
    },
  }));
  assert.deepEqual(withAffinity([{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }, { key: 'gpu', operator: 'DoesNotExist' }] }]).requirements, []);
  assert.deepEqual(withAffinity([{ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, { matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }]).requirements, []);
  assert.deepEqual(needs(withAffinity([{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] }, { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }])), {
    'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution': "a node matching one of 2 required node selector terms (this node's labels match none)",
  });
});

test('USB disks, error policies, an open cdrom tray, a link that starts down and an ACPI index are honoured; state absent is a requirement', () => {
  const v = accept(vmi('usb', {
    domain: {
      resources: { requests: { memory: '64M' } },
      devices: {
        disks: [{ name: 'stick', disk: { bus: 'usb' }, errorPolicy: 'report' }, { name: 'media', cdrom: { tray: 'open' } }],
        interfaces: [{ name: 'default', masquerade: {}, state: 'down', acpiIndex: 2 }, { name: 'gone', bridge: {}, state: 'absent' }],
      },
    },
    networks: [{ name: 'default', pod: {} }, { name: 'gone', multus: { networkName: 'x' } }],
    volumes: [{ name: 'stick', emptyDisk: { capacity: '1Gi' } }, { name: 'media', containerDisk: { path: 'cirros.qcow2' } }],
  }));
  assert.deepEqual(v.disks.map((d) => [d.name, d.bus, d.errorPolicy, d.trayOpen]), [['stick', 'usb', 'report', undefined], ['media', 'sata', undefined, true]]);
  assert.deepEqual(v.interfaces[0], { name: 'default', binding: 'masquerade', macAddress: null, model: 'virtio', bootOrder: null, linkDown: true, acpiIndex: 2 });
  assert.deepEqual(Object.keys(needs(v)).sort(), ['spec.domain.devices.interfaces[1].state', 'spec.networks[1].multus']);
});

test('the TypeScript types derived from the schema describe KubeVirt manifests (checked at compile time)', () => {
  const m: KubevirtVmi = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name: 'typed', labels: { a: 'b' } },
    spec: {
      domain: {
        cpu: { cores: 2, features: [{ name: 'vmx', policy: 'require' }] },
        devices: { disks: [{ name: 'root', disk: { bus: 'virtio' }, cache: 'none' }], interfaces: [{ name: 'default', masquerade: {} }] },
        features: { hyperv: { spinlocks: { spinlocks: 8191 } } },
        resources: { requests: { memory: '64M' } },
      },
      networks: [{ name: 'default', pod: {} }],
      volumes: [{ name: 'root', containerDisk: { image: 'quay.io/x/y:1' } }],
      tolerations: [{ operator: 'Exists' }],
    },
  };
  // @ts-expect-error a disk bus KubeVirt does not have
  const bad: KubevirtVmiSpec = { domain: { devices: { disks: [{ name: 'd', disk: { bus: 'ide' } }] } } };
  // @ts-expect-error an unknown field
  const typo: KubevirtVmiSpec = { domain: { cpu: { core: 2 } } };
  assert.ok(bad !== undefined && typo !== undefined);
  assert.equal(accept(m).cpu.cores, 2);
});

test('containerDisk image with imagePulls: a containerDiskImage volume, not a requirement; path-based containerDisks unchanged', () => {
  const pulls: ValidationContext = { ...CTX, imagePulls: true };
  const spec = (cd: Spec): Spec => vmi('pull', {
    domain: { resources: { requests: { memory: '64Mi' } }, devices: { disks: [{ name: 'root', disk: {} }, { name: 'local', disk: {} }] } },
    volumes: [{ name: 'root', containerDisk: cd }, { name: 'local', containerDisk: { path: 'cirros.qcow2' } }],
  });
  const v = accept(spec({ image: CIRROS_IMAGE }), pulls);
  assert.deepEqual(v.requirements, []);
  assert.deepEqual(v.disks.map((d) => d.volume), [
    { kind: 'containerDiskImage', name: 'root', image: CIRROS_IMAGE, pullPolicy: 'IfNotPresent', path: null },
    { kind: 'containerDisk', name: 'local', path: path.join(IMAGES, 'cirros.qcow2') },
  ]);
  // The same manifest without image pulls: as before (a requirement; the path-based disk as it was).
  const before = accept(spec({ image: CIRROS_IMAGE }));
  assert.deepEqual(needs(before), { 'spec.volumes[0].containerDisk.image': IMAGE_NEEDS(CIRROS_IMAGE) });
  assert.deepEqual(before.disks.map((d) => d.volume), [{ kind: 'containerDisk', name: 'local', path: path.join(IMAGES, 'cirros.qcow2') }]);

  const latest = accept(spec({ image: 'quay.io/containerdisks/fedora:latest', path: '/disk/fedora.qcow2' }), pulls).disks[0]?.volume;
  assert.deepEqual(latest, { kind: 'containerDiskImage', name: 'root', image: 'quay.io/containerdisks/fedora:latest', pullPolicy: 'Always', path: '/disk/fedora.qcow2' });
  const never = accept(spec({ image: CIRROS_IMAGE, imagePullPolicy: 'Never' }), pulls).disks[0]?.volume;
  assert.equal(never?.kind === 'containerDiskImage' && never.pullPolicy, 'Never');

  const refused = (cd: Spec): string[] => {
    const r = validateVmi(defaultVmi(spec(cd)), pulls);
    return r.ok ? [] : r.violations.map((x) => `${x.field}: ${x.message}`);
  };
  assert.match(refused({ image: 'Not A Ref' }).join('\n'), /^spec\.volumes\[0\]\.containerDisk\.image: image reference "Not A Ref"/m);
  assert.match(refused({ image: CIRROS_IMAGE, path: 'disk/x.qcow2' }).join('\n'), /^spec\.volumes\[0\]\.containerDisk\.path: must be an absolute path inside the image/m);
  assert.match(refused({ image: CIRROS_IMAGE, path: '/disk/../etc/shadow' }).join('\n'), /containerDisk\.path: must be an absolute path inside the image without '\.\.'/);
  // A pull Secret is a Kubernetes object: a requirement (credentials are the node's images.authFile).
  const secret = accept(spec({ image: CIRROS_IMAGE, imagePullSecret: 'regcred' }), pulls);
  assert.match(needs(secret)['spec.volumes[0].containerDisk.imagePullSecret'] ?? '', /^image pull Secret regcred \(this node does not read pull Secrets\); registry credentials come from the node's images\.authFile$/);
});
