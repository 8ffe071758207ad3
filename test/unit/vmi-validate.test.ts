import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseManifest, MAX_MANIFEST_BYTES } from '../../src/vmi/spec/manifest';
import { parseBytes, parseMilli } from '../../src/vmi/spec/quantity';
import { validateVmi } from '../../src/vmi/spec/validate';
import type { FieldViolation, NormalizedVmi, ValidationContext, ValidationResult } from '../../src/vmi/spec/types';
import { mulberry32 } from '../lib/prng';

// ---------------------------------------------------------------------------------------------
// A host tree: images/ is the image root, host/ and linkroot (-> host2) are host path roots,
// outside/ is not a root.
// ---------------------------------------------------------------------------------------------

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmi-validate-')));
const IMAGES = path.join(TMP, 'images');
const HOST = path.join(TMP, 'host');
const HOST2 = path.join(TMP, 'host2');
const LINKROOT = path.join(TMP, 'linkroot');
const OUTSIDE = path.join(TMP, 'outside');
for (const dir of [IMAGES, path.join(IMAGES, 'sub'), HOST, path.join(HOST, 'newdir'), HOST2, OUTSIDE]) fs.mkdirSync(dir, { recursive: true });
for (const file of ['base.qcow2', 'vmlinuz', 'initrd.img', 'sub/nested.qcow2']) fs.writeFileSync(path.join(IMAGES, file), 'x');
fs.writeFileSync(path.join(HOST, 'disk.img'), 'x');
fs.writeFileSync(path.join(HOST2, 'disk2.img'), 'x');
fs.writeFileSync(path.join(OUTSIDE, 'secret.img'), 'x');
fs.symlinkSync(path.join(OUTSIDE, 'secret.img'), path.join(IMAGES, 'escape.qcow2'));
fs.symlinkSync('../outside', path.join(IMAGES, 'escapedir'));
fs.symlinkSync('base.qcow2', path.join(IMAGES, 'inner-link.qcow2'));
fs.symlinkSync('../host/disk.img', path.join(IMAGES, 'to-host.img'));
fs.symlinkSync(path.join(OUTSIDE, 'nothing-here.img'), path.join(HOST, 'dangling.img'));
fs.symlinkSync('loop2', path.join(IMAGES, 'loop1'));
fs.symlinkSync('loop1', path.join(IMAGES, 'loop2'));
fs.symlinkSync(OUTSIDE, path.join(HOST, 'out-dir'));
fs.symlinkSync(HOST2, LINKROOT);
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

const CTX: ValidationContext = { imageRoot: IMAGES, hostPathRoots: [HOST, LINKROOT] };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;

/** A valid VMI touching most features; every case mutates a fresh copy. */
function base(): Spec {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: {
      name: 'vm1', namespace: 'ns1', uid: '123e4567-e89b-42d3-a456-426614174000', generation: 3,
      labels: { app: 'web', 'kubevirt.io/domain': 'vm1' }, annotations: { note: 'line1\nline2\ttab' },
    },
    spec: {
      domain: {
        cpu: { cores: 2, sockets: 1, threads: 1, model: 'host-model' },
        memory: { guest: '1Gi' },
        resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '2Gi' } },
        firmware: { bootloader: { bios: {} } },
        machine: { type: 'q35' },
        features: { acpi: {}, apic: { enabled: true } },
        devices: {
          disks: [{ name: 'root', disk: { bus: 'virtio' }, bootOrder: 1 }, { name: 'data', serial: 'DATA-1' }, { name: 'cloudinit', cdrom: {} }],
          interfaces: [{ name: 'default', masquerade: {}, macAddress: '02:AB:cd:00:00:01' }],
          rng: {},
        },
      },
      volumes: [
        { name: 'root', containerDisk: { path: 'base.qcow2' } },
        { name: 'data', emptyDisk: { capacity: '10Gi' } },
        { name: 'cloudinit', cloudInitNoCloud: { userData: '#cloud-config\npassword: x\n' } },
      ],
      networks: [{ name: 'default', pod: {} }],
    },
  };
}

function validate(spec: unknown, ctx: ValidationContext = CTX): ValidationResult {
  return validateVmi(spec, ctx);
}

function fieldsOf(violations: FieldViolation[]): string[] {
  return [...new Set(violations.map((v) => v.field))].sort();
}

function expectOk(spec: unknown, ctx: ValidationContext = CTX): NormalizedVmi {
  const r = validate(spec, ctx);
  if (!r.ok) assert.fail(`expected ok, got ${JSON.stringify(r.violations)}`);
  return r.vmi;
}

function expectViolations(spec: unknown, fields: string[], message?: RegExp, ctx: ValidationContext = CTX): FieldViolation[] {
  const r = validate(spec, ctx);
  if (r.ok) assert.fail(`expected violations on ${fields.join(', ')}, got ok`);
  assert.deepEqual(fieldsOf(r.violations), [...fields].sort(), JSON.stringify(r.violations));
  if (message !== undefined) {
    assert.ok(r.violations.some((v) => message.test(v.message)), `no message matching ${message}: ${JSON.stringify(r.violations)}`);
  }
  return r.violations;
}

test('the base spec normalizes with every default applied', () => {
  const vmi = expectOk(base());
  assert.deepEqual(vmi, {
    uid: '123e4567-e89b-42d3-a456-426614174000', namespace: 'ns1', name: 'vm1', generation: 3,
    labels: { app: 'web', 'kubevirt.io/domain': 'vm1' }, annotations: { note: 'line1\nline2\ttab' },
    cpu: { sockets: 1, cores: 2, threads: 1, vcpus: 2, model: 'host-model', dedicated: false },
    memory: { guestBytes: 2 ** 30, hugepageSizeBytes: null },
    firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null },
    machineType: 'q35',
    features: { acpi: true, apic: true },
    disks: [
      { name: 'root', device: 'disk', bus: 'virtio', bootOrder: 1, serial: null, readonly: false, cache: null, io: null,
        volume: { kind: 'containerDisk', name: 'root', path: path.join(IMAGES, 'base.qcow2') } },
      { name: 'data', device: 'disk', bus: 'virtio', bootOrder: null, serial: 'DATA-1', readonly: false, cache: null, io: null,
        volume: { kind: 'emptyDisk', name: 'data', capacityBytes: 10 * 2 ** 30 } },
      { name: 'cloudinit', device: 'cdrom', bus: 'sata', bootOrder: null, serial: null, readonly: true, cache: null, io: null,
        volume: { kind: 'cloudInitNoCloud', name: 'cloudinit', userData: '#cloud-config\npassword: x\n', networkData: null } },
    ],
    interfaces: [{ name: 'default', binding: 'masquerade', macAddress: '02:ab:cd:00:00:01', model: 'virtio', bootOrder: null }],
    rng: true,
    autoattachSerialConsole: true,
    runStrategy: 'Always',
    terminationGracePeriodSeconds: 30,
    requirements: [],
  });
});

test('a minimal spec gets KubeVirt defaults', () => {
  const vmi = expectOk({ metadata: { name: 'tiny' }, spec: { domain: { resources: { requests: { memory: '64Mi' } } } } });
  assert.equal(vmi.namespace, 'default');
  assert.equal(vmi.uid, '');
  assert.equal(vmi.generation, 1);
  assert.equal(vmi.memory.guestBytes, 64 * 2 ** 20);
  assert.equal(vmi.machineType, 'q35');
  assert.deepEqual(vmi.cpu, { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: null, dedicated: false });
  assert.deepEqual(vmi.disks, []);
  assert.deepEqual(vmi.interfaces, []);
  assert.equal(vmi.rng, false);
  assert.equal(vmi.runStrategy, 'Always');
});

// ---------------------------------------------------------------------------------------------
// The table: each case mutates base() and names the exact set of violation fields.
// ---------------------------------------------------------------------------------------------

interface Case {
  name: string;
  mutate: (s: Spec) => void;
  /** [] = valid. */
  fields: string[];
  message?: RegExp;
  check?: (vmi: NormalizedVmi) => void;
}

const D = 'spec.domain';
const DISKS = 'spec.domain.devices.disks';
const IFACES = 'spec.domain.devices.interfaces';

const cases: Case[] = [
  // ----- top level and metadata
  { name: 'apiVersion v1alpha3 accepted', mutate: (s) => { s.apiVersion = 'kubevirt.io/v1alpha3'; }, fields: [] },
  { name: 'apiVersion and kind may be omitted', mutate: (s) => { delete s.apiVersion; delete s.kind; }, fields: [] },
  { name: 'wrong apiVersion', mutate: (s) => { s.apiVersion = 'v1'; }, fields: ['apiVersion'], message: /kubevirt\.io\/v1/ },
  { name: 'wrong kind', mutate: (s) => { s.kind = 'VirtualMachine'; }, fields: ['kind'], message: /VirtualMachineInstance/ },
  { name: 'unknown top-level field', mutate: (s) => { s.status = {}; }, fields: ['status'], message: /unknown field/ },
  { name: 'typo in a nested field', mutate: (s) => { s.spec.domain.cpu.core = 2; }, fields: [`${D}.cpu.core`], message: /unknown field/ },
  { name: 'unknown field with an odd name is quoted', mutate: (s) => { s.spec.domain['bad key\n'] = 1; }, fields: [`${D}["bad key\\n"]`] },
  { name: 'metadata missing', mutate: (s) => { delete s.metadata; }, fields: ['metadata'], message: /required/ },
  { name: 'spec missing', mutate: (s) => { delete s.spec; }, fields: ['spec'], message: /required/ },
  { name: 'domain missing', mutate: (s) => { s.spec.domain = undefined; delete s.spec.domain; delete s.spec.volumes; delete s.spec.networks; }, fields: [`${D}`] },
  { name: 'name missing', mutate: (s) => { delete s.metadata.name; }, fields: ['metadata.name'], message: /required/ },
  { name: 'name upper-case', mutate: (s) => { s.metadata.name = 'VM1'; }, fields: ['metadata.name'], message: /DNS-1123/ },
  { name: 'name too long', mutate: (s) => { s.metadata.name = 'a'.repeat(64); }, fields: ['metadata.name'] },
  { name: 'name with a newline', mutate: (s) => { s.metadata.name = 'vm\n1'; }, fields: ['metadata.name'], message: /control/ },
  { name: 'namespace invalid', mutate: (s) => { s.metadata.namespace = 'my_ns'; }, fields: ['metadata.namespace'] },
  { name: 'namespace defaults', mutate: (s) => { delete s.metadata.namespace; }, fields: [], check: (v) => assert.equal(v.namespace, 'default') },
  { name: 'uid upper-case refused', mutate: (s) => { s.metadata.uid = '123E4567-E89B-42D3-A456-426614174000'; }, fields: ['metadata.uid'], message: /UUID/ },
  { name: 'uid not a uuid', mutate: (s) => { s.metadata.uid = '../../etc'; }, fields: ['metadata.uid'] },
  { name: 'nil uid refused', mutate: (s) => { s.metadata.uid = '00000000-0000-0000-0000-000000000000'; }, fields: ['metadata.uid'], message: /nil/ },
  { name: 'uid absent leaves it to the caller', mutate: (s) => { delete s.metadata.uid; }, fields: [], check: (v) => assert.equal(v.uid, '') },
  { name: 'generation negative', mutate: (s) => { s.metadata.generation = -1; }, fields: ['metadata.generation'] },
  { name: 'generation fractional', mutate: (s) => { s.metadata.generation = 1.5; }, fields: ['metadata.generation'], message: /integer/ },
  { name: 'generation as a string', mutate: (s) => { s.metadata.generation = '2'; }, fields: ['metadata.generation'] },
  { name: 'generation defaults to 1', mutate: (s) => { delete s.metadata.generation; }, fields: [], check: (v) => assert.equal(v.generation, 1) },
  { name: 'label key invalid', mutate: (s) => { s.metadata.labels['-bad'] = 'x'; }, fields: ['metadata.labels["-bad"]'], message: /key/ },
  { name: 'label value invalid', mutate: (s) => { s.metadata.labels.app = 'has space'; }, fields: ['metadata.labels.app'], message: /label value/ },
  { name: 'label value not a string', mutate: (s) => { s.metadata.labels.app = 5; }, fields: ['metadata.labels.app'], message: /string/ },
  { name: 'too many labels', mutate: (s) => { for (let i = 0; i < 300; i++) s.metadata.labels[`l${i}`] = 'v'; }, fields: ['metadata.labels'], message: /at most 256/ },
  { name: 'annotation with a NUL', mutate: (s) => { s.metadata.annotations.note = 'a\u0000b'; }, fields: ['metadata.annotations.note'], message: /control/ },
  { name: 'annotations over 256 KiB in total', mutate: (s) => { for (let i = 0; i < 5; i++) s.metadata.annotations[`a${i}`] = 'x'.repeat(60 * 1024); }, fields: ['metadata.annotations'], message: /256 KiB/ },
  { name: '__proto__ label key refused without pollution', mutate: (s) => { s.metadata.labels = JSON.parse('{"__proto__": "x"}'); }, fields: ['metadata.labels.__proto__'] },

  // ----- cpu
  { name: 'cpu cores zero', mutate: (s) => { s.spec.domain.cpu.cores = 0; }, fields: [`${D}.cpu.cores`], message: /between 1/ },
  { name: 'cpu threads fractional', mutate: (s) => { s.spec.domain.cpu.threads = 1.5; }, fields: [`${D}.cpu.threads`] },
  { name: 'cpu product over the limit', mutate: (s) => { Object.assign(s.spec.domain.cpu, { sockets: 4, cores: 8, threads: 4 }); }, fields: [`${D}.cpu`], message: /128 exceeds .* 64 vCPUs/ },
  { name: 'cpu product at the limit', mutate: (s) => { Object.assign(s.spec.domain.cpu, { sockets: 2, cores: 16, threads: 2 }); }, fields: [], check: (v) => assert.equal(v.cpu.vcpus, 64) },
  { name: 'cpu model host-passthrough', mutate: (s) => { s.spec.domain.cpu.model = 'host-passthrough'; }, fields: [] },
  { name: 'cpu model named', mutate: (s) => { s.spec.domain.cpu.model = 'Skylake-Client-IBRS'; }, fields: [], check: (v) => assert.equal(v.cpu.model, 'Skylake-Client-IBRS') },
  { name: 'cpu model with XML junk', mutate: (s) => { s.spec.domain.cpu.model = 'x"/><evil'; }, fields: [`${D}.cpu.model`] },
  { name: 'dedicatedCpuPlacement not boolean', mutate: (s) => { s.spec.domain.cpu.dedicatedCpuPlacement = 'true'; }, fields: [`${D}.cpu.dedicatedCpuPlacement`], message: /true or false/ },

  // ----- memory and resources
  { name: 'guest memory below 16Mi', mutate: (s) => { s.spec.domain.memory.guest = '8Mi'; }, fields: [`${D}.memory.guest`], message: /at least 16Mi/ },
  { name: 'guest memory over the node limit', mutate: (s) => { s.spec.domain.memory.guest = '65Gi'; delete s.spec.domain.resources.limits; }, fields: [`${D}.memory.guest`], message: /at most 64Gi/ },
  { name: 'guest memory junk', mutate: (s) => { s.spec.domain.memory.guest = '1 GB'; }, fields: [`${D}.memory.guest`], message: /not a valid quantity/ },
  { name: 'guest memory missing and no request', mutate: (s) => { delete s.spec.domain.memory.guest; delete s.spec.domain.resources.requests.memory; }, fields: [`${D}.memory.guest`], message: /required/ },
  { name: 'guest memory from requests', mutate: (s) => { delete s.spec.domain.memory; s.spec.domain.resources.requests.memory = '512Mi'; }, fields: [], check: (v) => assert.equal(v.memory.guestBytes, 512 * 2 ** 20) },
  { name: 'requests.memory too small to be guest memory', mutate: (s) => { delete s.spec.domain.memory; s.spec.domain.resources.requests.memory = '1Mi'; }, fields: [`${D}.resources.requests.memory`], message: /16Mi/ },
  { name: 'guest above limits.memory', mutate: (s) => { s.spec.domain.memory.guest = '4Gi'; }, fields: [`${D}.memory.guest`], message: /limits\.memory/ },
  { name: 'request above limit', mutate: (s) => { s.spec.domain.resources.requests.cpu = '3'; }, fields: [`${D}.resources.requests.cpu`], message: /must not exceed/ },
  { name: 'unsupported resource', mutate: (s) => { s.spec.domain.resources.limits['nvidia.com/gpu'] = '1'; }, fields: [`${D}.resources.limits["nvidia.com/gpu"]`], message: /only cpu and memory/ },
  { name: 'cpu request junk', mutate: (s) => { s.spec.domain.resources.requests.cpu = '0.0001'; }, fields: [`${D}.resources.requests.cpu`] },
  { name: 'hugepages 2Mi', mutate: (s) => { s.spec.domain.memory.hugepages = { pageSize: '2Mi' }; }, fields: [], check: (v) => assert.equal(v.memory.hugepageSizeBytes, 2 ** 21) },
  { name: 'hugepages 4Mi refused', mutate: (s) => { s.spec.domain.memory.hugepages = { pageSize: '4Mi' }; }, fields: [`${D}.memory.hugepages.pageSize`], message: /2Mi or 1Gi/ },
  { name: 'guest not a multiple of the 1Gi page', mutate: (s) => { s.spec.domain.memory = { guest: '1536Mi', hugepages: { pageSize: '1Gi' } }; }, fields: [`${D}.memory.guest`], message: /multiple of the hugepage size 1Gi/ },

  // ----- firmware, machine, features
  { name: 'efi with secureBoot', mutate: (s) => { s.spec.domain.firmware.bootloader = { efi: { secureBoot: true } }; }, fields: [], check: (v) => { assert.equal(v.firmware.bootloader, 'efi'); assert.equal(v.firmware.secureBoot, true); } },
  { name: 'both bios and efi', mutate: (s) => { s.spec.domain.firmware.bootloader.efi = {}; }, fields: [`${D}.firmware.bootloader`], message: /exactly one of bios, efi/ },
  { name: 'empty bootloader', mutate: (s) => { s.spec.domain.firmware.bootloader = {}; }, fields: [`${D}.firmware.bootloader`] },
  { name: 'secureBoot outside efi is unknown', mutate: (s) => { s.spec.domain.firmware.bootloader.bios = { secureBoot: true }; }, fields: [`${D}.firmware.bootloader.bios.secureBoot`] },
  { name: 'kernelBoot valid', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernel: 'vmlinuz', initrd: path.join(IMAGES, 'initrd.img'), kernelArgs: 'console=ttyS0 root=/dev/vda1' }; }, fields: [], check: (v) => assert.deepEqual(v.firmware.kernelBoot, { kernel: path.join(IMAGES, 'vmlinuz'), initrd: path.join(IMAGES, 'initrd.img'), kernelArgs: 'console=ttyS0 root=/dev/vda1' }) },
  { name: 'kernelBoot without kernel', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernelArgs: 'quiet' }; }, fields: [`${D}.firmware.kernelBoot.kernel`], message: /required/ },
  { name: 'kernelArgs with a newline', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernel: 'vmlinuz', kernelArgs: 'a\nb' }; }, fields: [`${D}.firmware.kernelBoot.kernelArgs`] },
  { name: 'kernelArgs non-ASCII', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernel: 'vmlinuz', kernelArgs: 'é' }; }, fields: [`${D}.firmware.kernelBoot.kernelArgs`], message: /ASCII/ },
  { name: 'kernelArgs too long', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernel: 'vmlinuz', kernelArgs: 'a'.repeat(1025) }; }, fields: [`${D}.firmware.kernelBoot.kernelArgs`], message: /1024/ },
  { name: 'kernel is a directory', mutate: (s) => { s.spec.domain.firmware.kernelBoot = { kernel: 'sub' }; }, fields: [`${D}.firmware.kernelBoot.kernel`], message: /regular file/ },
  { name: 'machine pc-q35-8.2', mutate: (s) => { s.spec.domain.machine.type = 'pc-q35-8.2'; }, fields: [], check: (v) => assert.equal(v.machineType, 'pc-q35-8.2') },
  { name: 'machine pc-i440fx-2.12', mutate: (s) => { s.spec.domain.machine.type = 'pc-i440fx-2.12'; }, fields: [] },
  { name: 'machine unknown', mutate: (s) => { s.spec.domain.machine.type = 'virt'; }, fields: [`${D}.machine.type`] },
  { name: 'acpi disabled', mutate: (s) => { s.spec.domain.features.acpi = { enabled: false }; }, fields: [], check: (v) => assert.deepEqual(v.features, { acpi: false, apic: true }) },
  { name: 'apic enabled not boolean', mutate: (s) => { s.spec.domain.features.apic.enabled = 1; }, fields: [`${D}.features.apic.enabled`] },

  // ----- disks and volumes
  { name: 'disk with no volume', mutate: (s) => { s.spec.domain.devices.disks.push({ name: 'extra' }); }, fields: [`${DISKS}[3].name`], message: /^no volume named "extra"$/ },
  { name: 'volume with no disk', mutate: (s) => { s.spec.volumes.push({ name: 'spare', emptyDisk: { capacity: '1Gi' } }); }, fields: ['spec.volumes[3].name'], message: /no disk uses volume "spare"/ },
  { name: 'duplicate disk names', mutate: (s) => { s.spec.domain.devices.disks[1].name = 'root'; }, fields: [`${DISKS}[1].name`, 'spec.volumes[1].name'], message: /duplicate disk name/ },
  { name: 'duplicate volume names', mutate: (s) => { s.spec.volumes[1].name = 'root'; }, fields: ['spec.volumes[1].name', `${DISKS}[1].name`], message: /duplicate volume name/ },
  { name: 'disk and cdrom both set', mutate: (s) => { s.spec.domain.devices.disks[0].cdrom = {}; }, fields: [`${DISKS}[0]`], message: /at most one of disk, cdrom/ },
  { name: 'bad disk bus', mutate: (s) => { s.spec.domain.devices.disks[0].disk.bus = 'ide'; }, fields: [`${DISKS}[0].disk.bus`], message: /virtio, sata, scsi/ },
  { name: 'cdrom on virtio refused', mutate: (s) => { s.spec.domain.devices.disks[2].cdrom.bus = 'virtio'; }, fields: [`${DISKS}[2].cdrom.bus`] },
  { name: 'cdrom readonly false refused', mutate: (s) => { s.spec.domain.devices.disks[2].cdrom.readonly = false; }, fields: [`${DISKS}[2].cdrom.readonly`], message: /read-only/ },
  { name: 'cloudInit as a disk is fine', mutate: (s) => { s.spec.domain.devices.disks[2] = { name: 'cloudinit', disk: {} }; }, fields: [] },
  { name: 'emptyDisk as cdrom refused', mutate: (s) => { s.spec.domain.devices.disks[1].cdrom = {}; }, fields: [`${DISKS}[1].cdrom`] },
  { name: 'duplicate bootOrder', mutate: (s) => { s.spec.domain.devices.disks[1].bootOrder = 1; }, fields: [`${DISKS}[1].bootOrder`], message: /duplicate bootOrder 1/ },
  { name: 'bootOrder zero', mutate: (s) => { s.spec.domain.devices.disks[1].bootOrder = 0; }, fields: [`${DISKS}[1].bootOrder`] },
  { name: 'serial too long', mutate: (s) => { s.spec.domain.devices.disks[1].serial = 'x'.repeat(21); }, fields: [`${DISKS}[1].serial`] },
  { name: 'serial with XML junk', mutate: (s) => { s.spec.domain.devices.disks[1].serial = '<a>'; }, fields: [`${DISKS}[1].serial`] },
  { name: 'disk name invalid', mutate: (s) => { s.spec.domain.devices.disks[1].name = 'Data'; s.spec.volumes[1].name = 'Data'; }, fields: [`${DISKS}[1].name`, 'spec.volumes[1].name'] },
  { name: 'too many disks', mutate: (s) => { for (let i = 0; i < 14; i++) { s.spec.domain.devices.disks.push({ name: `e${i}` }); s.spec.volumes.push({ name: `e${i}`, emptyDisk: { capacity: '1Mi' } }); } }, fields: [DISKS], message: /17 disks exceed .* 16/ },
  { name: 'disks not a list', mutate: (s) => { s.spec.domain.devices.disks = { name: 'root' }; }, fields: [DISKS, 'spec.volumes[0].name', 'spec.volumes[1].name', 'spec.volumes[2].name'], message: /must be a list/ },
  { name: 'volume with two sources', mutate: (s) => { s.spec.volumes[1].containerDisk = { path: 'base.qcow2' }; }, fields: ['spec.volumes[1]'], message: /exactly one volume source/ },
  { name: 'volume with no source', mutate: (s) => { delete s.spec.volumes[1].emptyDisk; }, fields: ['spec.volumes[1]'] },
  { name: 'emptyDisk too small', mutate: (s) => { s.spec.volumes[1].emptyDisk.capacity = '512Ki'; }, fields: ['spec.volumes[1].emptyDisk.capacity'], message: /at least 1Mi/ },
  { name: 'emptyDisk too large', mutate: (s) => { s.spec.volumes[1].emptyDisk.capacity = '2Ti'; }, fields: ['spec.volumes[1].emptyDisk.capacity'], message: /at most 1Ti/ },
  { name: 'emptyDisk capacity missing', mutate: (s) => { s.spec.volumes[1].emptyDisk = {}; }, fields: ['spec.volumes[1].emptyDisk.capacity'] },
  { name: 'userData missing', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud = {}; }, fields: ['spec.volumes[2].cloudInitNoCloud.userData'], message: /required/ },
  { name: 'userData is a redaction marker read back from a view', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.userData = `<redacted: 27 bytes, sha256:${'a'.repeat(64)}>`; }, fields: ['spec.volumes[2].cloudInitNoCloud.userData'], message: /redaction marker/ },
  { name: 'networkData is a redaction marker', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.networkData = `<redacted: 3 bytes, sha256:${'b'.repeat(64)}>\n`; }, fields: ['spec.volumes[2].cloudInitNoCloud.networkData'], message: /redaction marker/ },
  { name: 'userData over 64 KiB', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.userData = 'x'.repeat(64 * 1024 + 1); }, fields: ['spec.volumes[2].cloudInitNoCloud.userData'] },
  { name: 'userData multi-byte over 64 KiB', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.userData = 'é'.repeat(40 * 1024); }, fields: ['spec.volumes[2].cloudInitNoCloud.userData'], message: /bytes/ },
  { name: 'userData with an escape character', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.userData = '\u001b[31m'; }, fields: ['spec.volumes[2].cloudInitNoCloud.userData'], message: /control/ },
  { name: 'networkData kept', mutate: (s) => { s.spec.volumes[2].cloudInitNoCloud.networkData = 'version: 2\n'; }, fields: [], check: (v) => assert.equal((v.disks[2]!.volume as { networkData: string | null }).networkData, 'version: 2\n') },

  // ----- host paths
  { name: 'containerDisk absolute inside the image root', mutate: (s) => { s.spec.volumes[0].containerDisk.path = path.join(IMAGES, 'sub/nested.qcow2'); }, fields: [] },
  { name: 'containerDisk symlink inside the roots resolves', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'inner-link.qcow2'; }, fields: [], check: (v) => assert.equal((v.disks[0]!.volume as { path: string }).path, path.join(IMAGES, 'base.qcow2')) },
  { name: 'containerDisk symlink into another root', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'to-host.img'; }, fields: [], check: (v) => assert.equal((v.disks[0]!.volume as { path: string }).path, path.join(HOST, 'disk.img')) },
  { name: 'containerDisk symlink escaping', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'escape.qcow2'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /resolves \(through a symlink\) outside/ },
  { name: 'containerDisk through an escaping directory symlink', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'escapedir/secret.img'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /outside/ },
  { name: 'containerDisk with ..', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'sub/../base.qcow2'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /"\.\." components/ },
  { name: 'containerDisk absolute outside', mutate: (s) => { s.spec.volumes[0].containerDisk.path = path.join(OUTSIDE, 'secret.img'); }, fields: ['spec.volumes[0].containerDisk.path'], message: /outside/ },
  { name: 'containerDisk /etc/passwd', mutate: (s) => { s.spec.volumes[0].containerDisk.path = '/etc/passwd'; }, fields: ['spec.volumes[0].containerDisk.path'] },
  { name: 'containerDisk missing file', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'nope.qcow2'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /does not exist/ },
  { name: 'containerDisk symlink loop', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'loop1'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /loop/ },
  { name: 'containerDisk NUL', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'base\u0000.qcow2'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /NUL/ },
  { name: 'containerDisk newline', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'base\n.qcow2'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /control/ },
  { name: 'containerDisk path too long', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'a/'.repeat(2100); }, fields: ['spec.volumes[0].containerDisk.path'], message: /4096/ },
  { name: 'containerDisk is a directory', mutate: (s) => { s.spec.volumes[0].containerDisk.path = 'sub'; }, fields: ['spec.volumes[0].containerDisk.path'], message: /regular file/ },
  { name: 'containerDisk through a symlinked root', mutate: (s) => { s.spec.volumes[0].containerDisk.path = path.join(LINKROOT, 'disk2.img'); }, fields: [], check: (v) => assert.equal((v.disks[0]!.volume as { path: string }).path, path.join(HOST2, 'disk2.img')) },
  { name: 'hostDisk Disk existing', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'disk.img'), type: 'Disk' } }; }, fields: [], check: (v) => assert.deepEqual(v.disks[1]!.volume, { kind: 'hostDisk', name: 'data', path: path.join(HOST, 'disk.img'), type: 'Disk', capacityBytes: null }) },
  { name: 'hostDisk Disk missing', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'none.img'), type: 'Disk' } }; }, fields: ['spec.volumes[1].hostDisk.path'], message: /does not exist/ },
  { name: 'hostDisk DiskOrCreate new file', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'newdir/new.img'), type: 'DiskOrCreate', capacity: '1Gi' } }; }, fields: [], check: (v) => assert.deepEqual(v.disks[1]!.volume, { kind: 'hostDisk', name: 'data', path: path.join(HOST, 'newdir/new.img'), type: 'DiskOrCreate', capacityBytes: 2 ** 30 }) },
  { name: 'hostDisk DiskOrCreate new file without capacity', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'newdir/new.img'), type: 'DiskOrCreate' } }; }, fields: ['spec.volumes[1].hostDisk.capacity'], message: /required/ },
  { name: 'hostDisk DiskOrCreate missing parent', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'nodir/new.img'), type: 'DiskOrCreate', capacity: '1Gi' } }; }, fields: ['spec.volumes[1].hostDisk.path'], message: /parent directory/ },
  { name: 'hostDisk DiskOrCreate through an escaping dir', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'out-dir/new.img'), type: 'DiskOrCreate', capacity: '1Gi' } }; }, fields: ['spec.volumes[1].hostDisk.path'], message: /outside/ },
  { name: 'hostDisk DiskOrCreate dangling symlink', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'dangling.img'), type: 'DiskOrCreate', capacity: '1Gi' } }; }, fields: ['spec.volumes[1].hostDisk.path'], message: /dangling/ },
  { name: 'hostDisk bad type', mutate: (s) => { s.spec.volumes[1] = { name: 'data', hostDisk: { path: path.join(HOST, 'disk.img'), type: 'Directory' } }; }, fields: ['spec.volumes[1].hostDisk.type'] },

  // ----- interfaces and networks
  { name: 'interface with no network', mutate: (s) => { s.spec.domain.devices.interfaces[0].name = 'other'; }, fields: [`${IFACES}[0].name`, 'spec.networks[0].name'], message: /^no network named "other"$/ },
  { name: 'network with no interface', mutate: (s) => { s.spec.domain.devices.interfaces = []; }, fields: ['spec.networks[0].name'], message: /no interface named "default"/ },
  { name: 'two bindings', mutate: (s) => { s.spec.domain.devices.interfaces[0].bridge = {}; }, fields: [`${IFACES}[0]`], message: /exactly one of masquerade, bridge/ },
  { name: 'no binding', mutate: (s) => { delete s.spec.domain.devices.interfaces[0].masquerade; }, fields: [`${IFACES}[0]`] },
  { name: 'bridge binding', mutate: (s) => { s.spec.domain.devices.interfaces[0] = { name: 'default', bridge: {}, model: 'e1000e' }; }, fields: [], check: (v) => assert.deepEqual(v.interfaces[0], { name: 'default', binding: 'bridge', macAddress: null, model: 'e1000e', bootOrder: null }) },
  { name: 'multicast MAC', mutate: (s) => { s.spec.domain.devices.interfaces[0].macAddress = '01:00:5e:00:00:01'; }, fields: [`${IFACES}[0].macAddress`], message: /multicast/ },
  { name: 'all-zero MAC', mutate: (s) => { s.spec.domain.devices.interfaces[0].macAddress = '00:00:00:00:00:00'; }, fields: [`${IFACES}[0].macAddress`], message: /zeros/ },
  { name: 'malformed MAC', mutate: (s) => { s.spec.domain.devices.interfaces[0].macAddress = '02-00-00-00-00-01'; }, fields: [`${IFACES}[0].macAddress`] },
  { name: 'bad NIC model', mutate: (s) => { s.spec.domain.devices.interfaces[0].model = 'ne2k_pci'; }, fields: [`${IFACES}[0].model`] },
  { name: 'duplicate interface names', mutate: (s) => { s.spec.domain.devices.interfaces.push({ name: 'default', masquerade: {} }); }, fields: [`${IFACES}[1].name`], message: /duplicate interface name/ },
  { name: 'duplicate MAC addresses', mutate: (s) => {
    s.spec.networks.push({ name: 'second', pod: {} });
    s.spec.domain.devices.interfaces.push({ name: 'second', masquerade: {}, macAddress: '02:ab:cd:00:00:01' });
  }, fields: [`${IFACES}[1].macAddress`, 'spec.networks[1].pod'] },
  { name: 'multus network unsupported', mutate: (s) => { s.spec.networks[0] = { name: 'default', multus: { networkName: 'x' } }; }, fields: ['spec.networks[0].multus'], message: /cannot honour it: needs Multus network x/ },
  { name: 'pod with options refused', mutate: (s) => { s.spec.networks[0].pod = { vmNetworkCIDR: '10.0.0.0/24' }; }, fields: ['spec.networks[0].pod.vmNetworkCIDR'] },
  { name: 'too many interfaces', mutate: (s) => {
    for (let i = 1; i < 9; i++) s.spec.domain.devices.interfaces.push({ name: `n${i}`, masquerade: {} });
  }, fields: [IFACES, ...Array.from({ length: 8 }, (_, i) => `${IFACES}[${i + 1}].name`)], message: /9 interfaces exceed .* 8/ },

  // ----- run strategy, grace period
  { name: 'runStrategy Manual', mutate: (s) => { s.spec.runStrategy = 'Manual'; }, fields: [], check: (v) => assert.equal(v.runStrategy, 'Manual') },
  { name: 'runStrategy unknown', mutate: (s) => { s.spec.runStrategy = 'Sometimes'; }, fields: ['spec.runStrategy'], message: /Always/ },
  { name: 'grace period too long', mutate: (s) => { s.spec.terminationGracePeriodSeconds = 3601; }, fields: ['spec.terminationGracePeriodSeconds'] },
  { name: 'grace period zero', mutate: (s) => { s.spec.terminationGracePeriodSeconds = 0; }, fields: [], check: (v) => assert.equal(v.terminationGracePeriodSeconds, 0) },
  { name: 'autoattachSerialConsole false', mutate: (s) => { s.spec.domain.devices.autoattachSerialConsole = false; }, fields: [], check: (v) => assert.equal(v.autoattachSerialConsole, false) },
  { name: 'rng with options refused', mutate: (s) => { s.spec.domain.devices.rng = { source: '/dev/random' }; }, fields: [`${D}.devices.rng.source`] },
];

for (const c of cases) {
  test(`case: ${c.name}`, () => {
    const spec = base();
    c.mutate(spec);
    if (c.fields.length === 0) {
      const vmi = expectOk(spec);
      c.check?.(vmi);
    } else {
      expectViolations(spec, c.fields, c.message);
    }
  });
}

test('the table has at least 60 cases', () => {
  assert.ok(cases.length >= 60, String(cases.length));
});

test('every violation is reported at once', () => {
  const spec = base();
  spec.metadata.name = 'Bad_Name';
  spec.spec.domain.cpu.cores = 0;
  spec.spec.domain.memory.guest = '1.5';
  spec.spec.domain.devices.disks[1].name = 'other';
  spec.spec.runStrategy = 'Never';
  const violations = expectViolations(spec, [
    'metadata.name', `${D}.cpu.cores`, `${D}.memory.guest`, `${DISKS}[1].name`, 'spec.volumes[1].name', 'spec.runStrategy',
  ]);
  assert.equal(violations.length, 6);
  const disk = violations.find((v) => v.field === `${DISKS}[1].name`);
  assert.equal(disk?.message, 'no volume named "other"');
});

test('five independent problems give five violations', () => {
  const spec = base();
  spec.apiVersion = 'v2';
  spec.metadata.generation = -5;
  spec.spec.domain.machine.type = 'virt';
  spec.spec.domain.devices.interfaces[0].model = 'pcnet';
  spec.spec.terminationGracePeriodSeconds = 'soon';
  const r = validate(spec);
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.violations.length, 5, JSON.stringify(r.violations));
});

test('non-object inputs never throw', () => {
  const inputs: unknown[] = [null, undefined, 0, 1, 'vmi', true, [], [base()], () => 1, Symbol('x'), new Date(), new Map(), 10n];
  for (const input of inputs) {
    const r = validate(input);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.violations.length >= 1 && r.violations.every((v) => v.field !== ''));
  }
});

test('node limits from the context apply', () => {
  const spec = base();
  const ctx: ValidationContext = { ...CTX, limits: { maxVcpus: 1, maxDisks: 2, maxMemoryBytes: 512 * 2 ** 20 } };
  expectViolations(spec, [`${D}.cpu.cores`, DISKS, `${D}.memory.guest`], undefined, ctx);
});

test('a hostile object with getters, __proto__ and a huge key count does not throw or pollute', () => {
  const spec = base();
  Object.defineProperty(spec.spec.domain.cpu, 'cores', { get: () => { throw new Error('boom'); }, enumerable: true });
  const hostile = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}');
  spec.spec.domain.features = hostile;
  for (let i = 0; i < 5000; i++) spec.metadata[`k${i}`] = i;
  const r = validate(spec);
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.ok(r.violations.length <= 1000);
    assert.match(r.violations[r.violations.length - 1]!.message, /further violations not shown/);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

// ---------------------------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------------------------

const quantities: Array<[unknown, number | RegExp]> = [
  ['0', 0], ['1', 1], ['128', 128], ['1k', 1000], ['1M', 1e6], ['2G', 2e9], ['1T', 1e12], ['1P', 1e15],
  ['1Ki', 1024], ['128Mi', 128 * 2 ** 20], ['1.5Gi', 1.5 * 2 ** 30], ['1Ti', 2 ** 40], ['4Pi', 4 * 2 ** 50],
  ['.5Ki', 512], ['1e3', 1000], ['1E6', 1e6], ['5e0', 5], ['2.5e2', 250], ['+1Ki', 1024], [4096, 4096],
  ['9007199254740991', Number.MAX_SAFE_INTEGER],
  ['-1', /negative/], ['-1Gi', /negative/], ['0.5', /whole number/], ['1e-3', /whole number/], ['500m', /whole number/],
  ['1.1Ki', /whole number/], ['1Ei', /too large/], ['9007199254740992', /too large/], ['1e400', /out of range/],
  ['1K', /not a valid quantity/], ['1 Gi', /not a valid quantity/], ['Gi', /not a valid quantity/], ['', /empty/],
  ['1GiB', /not a valid quantity/], ['0x10', /not a valid quantity/], ['1.2.3', /not a valid quantity/],
  [null, /quantity string/], [{}, /quantity string/], [Number.NaN, /finite/], ['1'.repeat(100), /longer than/],
  ['１２', /not a valid quantity/],
];

for (const [input, expected] of quantities) {
  test(`quantity ${JSON.stringify(input) ?? String(input)}`, () => {
    const r = parseBytes(input);
    if (typeof expected === 'number') assert.deepEqual(r, { ok: true, value: expected });
    else {
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, expected);
    }
  });
}

test('cpu quantities are millicores', () => {
  assert.deepEqual(parseMilli('500m'), { ok: true, value: 500 });
  assert.deepEqual(parseMilli('2'), { ok: true, value: 2000 });
  assert.deepEqual(parseMilli('0.25'), { ok: true, value: 250 });
  assert.equal(parseMilli('0.0005').ok, false);
});

// ---------------------------------------------------------------------------------------------
// Manifest text
// ---------------------------------------------------------------------------------------------

const VMI_YAML = `apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: vm1
spec:
  domain:
    memory:
      guest: 128Mi
    devices:
      disks:
        - name: root
      interfaces:
        - name: default
          masquerade: {}
  networks:
    - name: default
      pod: {}
  volumes:
    - name: root
      containerDisk:
        path: base.qcow2
`;

test('manifest: YAML parses and validates', () => {
  const r = parseManifest(VMI_YAML);
  assert.equal(r.ok, true);
  if (r.ok) expectOk(r.value);
});

test('manifest: JSON parses', () => {
  const r = parseManifest(JSON.stringify(base()));
  assert.equal(r.ok, true);
  if (r.ok) expectOk(r.value);
});

test('manifest: invalid JSON is a violation on manifest', () => {
  const r = parseManifest('{"metadata": {"name": "x",}}');
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.violations[0]?.field, 'manifest');
    assert.match(r.violations[0]!.message, /invalid JSON/);
  }
});

const refusedManifests: Array<[string, string, RegExp]> = [
  ['multi-document YAML', `${VMI_YAML}---\n${VMI_YAML}`, /2 YAML documents/],
  ['a second empty document', 'a: 1\n---\n', /YAML documents/],
  ['alias bomb', `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n`, /line 2, column \d+: YAML aliases are not allowed/],
  ['a single alias', 'a: &x 1\nb: *x\n', /aliases/],
  ['a custom tag', 'metadata: !secret foo\n', /line 1, column 11: .*(tag|Unresolved)/],
  ['!!binary', 'a: !!binary aGk=\n', /tag/],
  ['!!set', 'a: !!set {x: null}\n', /tag|Unresolved/],
  ['duplicate keys', 'a: 1\na: 2\n', /line 2, column 1: invalid YAML: Map keys must be unique/],
  ['broken YAML', 'a: [1, 2\n', /invalid YAML/],
  ['empty input', '   \n', /empty/],
  ['a comment only', '# nothing here\n', /no YAML document/],
  ['over 1 MiB', `# ${'x'.repeat(MAX_MANIFEST_BYTES)}\na: 1\n`, /1 MiB/],
];

for (const [name, text, message] of refusedManifests) {
  test(`manifest refused: ${name}`, () => {
    const r = parseManifest(text);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.violations.length, 1);
      assert.equal(r.violations[0]!.field, 'manifest');
      assert.match(r.violations[0]!.message, message);
    }
  });
}

test('manifest: explicit core tags are fine', () => {
  const r = parseManifest('a: !!str 1\nb: !!int "2"\n');
  assert.deepEqual(r, { ok: true, value: { a: '1', b: 2 } });
});

test('manifest: deep nesting is refused or parsed, never thrown', () => {
  const deep = `${'['.repeat(200000)}${']'.repeat(200000)}`;
  const r1 = parseManifest(deep);
  if (r1.ok) assert.equal(validate(r1.value).ok, false);
  const deepYaml = `${'a:\n'.replace('a', 'x')}${Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i + 1)}x:`).join('\n')} 1\n`;
  const r2 = parseManifest(deepYaml);
  assert.equal(typeof r2.ok, 'boolean');
});

test('manifest: __proto__ keys stay data', () => {
  const r = parseManifest('{"__proto__": {"polluted": true}, "metadata": {"name": "x"}}');
  assert.equal(r.ok, true);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  if (r.ok) {
    const v = validate(r.value);
    assert.equal(v.ok, false);
    if (!v.ok) assert.ok(v.violations.some((x) => x.field === '__proto__'));
  }
  const y = parseManifest('__proto__:\n  polluted: true\n');
  assert.equal(y.ok, true);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

// ---------------------------------------------------------------------------------------------
// Property-style: random mutations never throw and always explain themselves
// ---------------------------------------------------------------------------------------------


/** Every container (object or array) reachable in a spec, with its keys. */
function containers(v: unknown, out: Array<Record<string, unknown> | unknown[]> = []): Array<Record<string, unknown> | unknown[]> {
  if (typeof v === 'object' && v !== null) {
    out.push(v as Record<string, unknown>);
    for (const child of Object.values(v)) containers(child, out);
  }
  return out;
}

test('2000 random mutations never throw and always give located violations', () => {
  const rand = mulberry32(0xc0ffee);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const randomString = (): string => {
    const alphabet = ['a', 'Z', '0', '-', '.', '/', ' ', '\n', '\u0000', '\u001b', '\u007f', '\u0085', 'é', '漢', '\ud83d\ude00', '\ud800', '"', '<', '&', '..'];
    return Array.from({ length: Math.floor(rand() * 12) }, () => pick(alphabet)).join('');
  };
  let nested: unknown = 1;
  for (let i = 0; i < 2000; i++) nested = { a: [nested] };
  const values = (): unknown => pick([
    null, undefined, 0, -1, 1.5, 2 ** 60, Number.NaN, Number.POSITIVE_INFINITY, true, false, '', 'x', '1Gi', '-1Gi',
    'x'.repeat(100000), [], [1, 'a'], {}, { name: 'root' }, nested, JSON.parse('{"__proto__": {"polluted": 1}}'),
    JSON.parse('{"constructor": {"prototype": {"polluted": 1}}}'), randomString(), randomString(), randomString(),
  ]);
  let valid = 0;
  for (let iter = 0; iter < 2000; iter++) {
    const spec = base();
    const mutations = 1 + Math.floor(rand() * 3);
    for (let m = 0; m < mutations; m++) {
      const target = pick(containers(spec));
      const keys = Object.keys(target);
      const op = rand();
      if (op < 0.3 && keys.length > 0) {
        const key = pick(keys);
        if (Array.isArray(target)) target.splice(Number(key), 1);
        else delete target[key];
      } else if (op < 0.8 && keys.length > 0) {
        (target as Record<string, unknown>)[pick(keys)] = values();
      } else if (!Array.isArray(target)) {
        target[pick([randomString(), 'extra', '__proto__', 'constructor'])] = values();
      } else {
        target.push(values());
      }
    }
    let r: ValidationResult;
    try {
      r = validate(spec);
    } catch (e) {
      assert.fail(`iteration ${iter} threw: ${String(e)}`);
    }
    if (r.ok) valid += 1;
    else {
      assert.ok(r.violations.length >= 1, `iteration ${iter}: no violations`);
      for (const v of r.violations) {
        assert.ok(typeof v.field === 'string' && v.field.length > 0, `iteration ${iter}: empty field`);
        assert.ok(typeof v.message === 'string' && v.message.length > 0, `iteration ${iter}: empty message`);
      }
    }
  }
  assert.ok(valid < 2000);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});
