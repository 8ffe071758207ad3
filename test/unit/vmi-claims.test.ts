/**
 * persistentVolumeClaim / ephemeral / dataVolume volumes: validation (claim names are confined
 * path components, hotplug is a requirement), claim lookup under the claim root (disk.img raw or
 * qcow2, a block device node `disk`, symlink escapes refused, missing claims), the wait at start
 * (DataVolumesReady, FailedPvcNotFound, backoff) and the rendered disks (file, block, readOnly,
 * ephemeral overlay), with a golden domain XML checked by virt-xml-validate.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { type ClaimSource, type DataVolumeReadiness, claimsOf, lookupClaim, resolveClaims } from '../../src/vmi/control/claims';
import { buildStartCommand, type NodeFacts } from '../../src/vmi/control/launch-plan';
import type { ReconcileHost } from '../../src/vmi/control/reconcile-host';
import type { VmiRecord } from '../../src/vmi/control/store';
import { VmiState, initialStatus } from '../../src/vmi/control/vmi-state';
import { defaultVmi } from '../../src/vmi/spec/defaults';
import type { NormalizedVmi, ValidationContext, VirtualMachineInstance } from '../../src/vmi/spec/types';
import { validateVmi } from '../../src/vmi/spec/validate';

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vh-claims-')));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
const ROOT = path.join(TMP, 'volumes');
const OUTSIDE = path.join(TMP, 'outside');
fs.mkdirSync(path.join(ROOT, 'ns'), { recursive: true });
fs.mkdirSync(OUTSIDE);
const GOLDEN = path.resolve(__dirname, '../../../test/fixtures/vmi/golden/claims-file-block.xml');
const UPDATE = process.env.VHTEST_UPDATE_GOLDEN === '1';
const CTX: ValidationContext = { imageRoot: TMP, hostPathRoots: [], requirements: 'pending' };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;
const manifest = (volumes: Spec[], disks?: Spec[]): Spec => ({
  apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name: 'vm', namespace: 'ns', uid: '0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4' },
  spec: { domain: { resources: { requests: { memory: '64Mi' } }, devices: { disks: disks ?? volumes.map((v: { name: string }) => ({ name: v.name, disk: { bus: 'virtio' } })) } }, volumes },
});

function claimDir(name: string): string {
  const d = path.join(ROOT, 'ns', name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

test('validation: claims are DNS-1123 names (no path tricks), field paths named; hotplug a requirement; readOnly and ephemeral kept', () => {
  const bad = validateVmi(defaultVmi(manifest([
    { name: 'a', persistentVolumeClaim: { claimName: '../etc' } },
    { name: 'b', dataVolume: { name: 'x/y' } },
    { name: 'c', ephemeral: { persistentVolumeClaim: {} } },
    { name: 'd', persistentVolumeClaim: { claimName: 'ok', readOnly: 'yes' } },
  ])), CTX);
  assert.equal(bad.ok, false);
  const fields = bad.ok ? [] : bad.violations.map((v) => `${v.field}: ${v.message}`);
  assert.ok(fields.some((f) => f.startsWith('spec.volumes[0].persistentVolumeClaim.claimName: "../etc" must be a DNS-1123 subdomain')), fields.join('\n'));
  assert.ok(fields.some((f) => f.startsWith('spec.volumes[1].dataVolume.name: "x/y" must be a DNS-1123 subdomain')), fields.join('\n'));
  assert.ok(fields.includes('spec.volumes[2].ephemeral.persistentVolumeClaim.claimName: required'), fields.join('\n'));
  assert.ok(fields.some((f) => f.startsWith('spec.volumes[3].persistentVolumeClaim.readOnly')), fields.join('\n'));

  const ok = validateVmi(defaultVmi(manifest([
    { name: 'a', persistentVolumeClaim: { claimName: 'root.disk', readOnly: true } },
    { name: 'b', dataVolume: { name: 'dv1', hotpluggable: true } },
  ])), CTX);
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.violations));
  assert.deepEqual(ok.vmi.requirements.map((r) => r.field), ['spec.volumes[1].dataVolume.hotpluggable']);
  assert.deepEqual(claimsOf(ok.vmi), ['root.disk', 'dv1']);
});

test('lookup: missing, raw and qcow2 disk.img, a block device node, symlink escapes and wrong kinds', () => {
  const miss = lookupClaim(ROOT, 'ns', 'nothing');
  assert.equal(miss.ok, false);
  assert.equal(!miss.ok && miss.missing, true);
  assert.equal(!miss.ok && miss.reason, `PersistentVolumeClaim ns/nothing not found under ${ROOT} (no ${ROOT}/ns/nothing/disk.img or block device ${ROOT}/ns/nothing/disk)`);
  assert.equal(lookupClaim(path.join(TMP, 'no-root'), 'ns', 'x').ok, false);

  fs.writeFileSync(path.join(claimDir('raw'), 'disk.img'), Buffer.alloc(4096));
  assert.deepEqual(lookupClaim(ROOT, 'ns', 'raw'), { ok: true, path: path.join(ROOT, 'ns/raw/disk.img'), format: 'raw', block: false });
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(claimDir('q'), 'disk.img'), '1M']);
  assert.deepEqual(lookupClaim(ROOT, 'ns', 'q'), { ok: true, path: path.join(ROOT, 'ns/q/disk.img'), format: 'qcow2', block: false });

  // A block node only has to stat as one (this test runs as root, as the suites do).
  assert.equal(process.getuid?.(), 0, 'the block-mode test makes a device node with mknod: run as root');
  execFileSync('mknod', [path.join(claimDir('blk'), 'disk'), 'b', '7', '200']);
  assert.deepEqual(lookupClaim(ROOT, 'ns', 'blk'), { ok: true, path: path.join(ROOT, 'ns/blk/disk'), format: 'raw', block: true });

  fs.writeFileSync(path.join(OUTSIDE, 'secret.img'), 'x');
  fs.symlinkSync(path.join(OUTSIDE, 'secret.img'), path.join(claimDir('esc'), 'disk.img'));
  const esc = lookupClaim(ROOT, 'ns', 'esc');
  assert.equal(esc.ok, false);
  assert.match(!esc.ok ? esc.reason : '', /resolves to .*outside\/secret\.img, outside the claim root .*; refused$/);
  fs.mkdirSync(path.join(OUTSIDE, 'd'));
  fs.writeFileSync(path.join(OUTSIDE, 'd', 'disk.img'), 'x');
  fs.symlinkSync(path.join(OUTSIDE, 'd'), path.join(ROOT, 'ns', 'escdir'));
  assert.match(!lookupClaim(ROOT, 'ns', 'escdir').ok ? (lookupClaim(ROOT, 'ns', 'escdir') as { reason: string }).reason : '', /outside the claim root/);
  // a symlink inside the root is fine: the realpath is used
  fs.symlinkSync(path.join(ROOT, 'ns/raw'), path.join(ROOT, 'ns', 'alias'));
  assert.deepEqual(lookupClaim(ROOT, 'ns', 'alias'), { ok: true, path: path.join(ROOT, 'ns/raw/disk.img'), format: 'raw', block: false });

  fs.mkdirSync(path.join(claimDir('dir'), 'disk.img'));
  assert.match((lookupClaim(ROOT, 'ns', 'dir') as { reason: string }).reason, /disk\.img is not a regular file$/);
  fs.writeFileSync(path.join(claimDir('notblk'), 'disk'), 'x');
  assert.match((lookupClaim(ROOT, 'ns', 'notblk') as { reason: string }).reason, /disk is not a block device$/);
});

const REC: VmiRecord = {
  version: 1, uid: 'u1', namespace: 'ns', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm' } } as VirtualMachineInstance,
  deleting: false, wantRunning: true, launcher: null, phase: 'Pending', reason: '', restarts: 0, revision: 1, updatedAt: '',
};

function host(dvs: Map<string, DataVolumeReadiness>): { h: ReconcileHost; requeues: number[] } {
  const requeues: number[] = [];
  const claims: ClaimSource = { root: ROOT, dataVolume: (ns, name) => dvs.get(`${ns}/${name}`) ?? null };
  const h = { log: pino({ level: 'silent' }), claims, requeue: (_uid: string, ms: number) => requeues.push(ms), publish: () => undefined } as unknown as ReconcileHost;
  return { h, requeues };
}

function normalized(volumes: Spec[], disks?: Spec[]): NormalizedVmi {
  const r = validateVmi(defaultVmi(manifest(volumes, disks)), CTX);
  if (!r.ok) assert.fail(JSON.stringify(r.violations));
  return r.vmi;
}

test('at start: a DataVolume not found / importing / failed keeps the VMI Pending (DataVolumesReady=False); Succeeded resolves its claim', () => {
  const dvs = new Map<string, DataVolumeReadiness>();
  const { h, requeues } = host(dvs);
  const s = new VmiState(REC, normalized([{ name: 'root', dataVolume: { name: 'imported' } }]), initialStatus('n'));
  const cond = (): unknown => s.status.conditions.find((c) => c.type === 'DataVolumesReady');

  assert.equal(resolveClaims(h, s), null);
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.reason, 'DataVolume ns/imported not found');
  assert.equal(requeues.length, 1);

  dvs.set('ns/imported', { phase: 'ImportInProgress', progress: '45.00%', message: '' });
  assert.equal(resolveClaims(h, s), null);
  assert.equal(s.status.reason, 'DataVolume imported is ImportInProgress (45.00%)');
  assert.deepEqual({ ...(cond() as object), lastTransitionTime: undefined }, { type: 'DataVolumesReady', status: 'False', reason: 'NotAllDVsReady', message: 'DataVolume imported is ImportInProgress (45.00%)', lastTransitionTime: undefined });
  const events = s.events.length;
  dvs.set('ns/imported', { phase: 'ImportInProgress', progress: '46.50%', message: '' });
  resolveClaims(h, s);
  assert.equal(s.status.reason, 'DataVolume imported is ImportInProgress (46.50%)');
  assert.equal(s.events.length, events, 'progress updates the reason without an event each time');
  assert.equal(requeues.at(-1), 2_000);

  dvs.set('ns/imported', { phase: 'Failed', progress: 'N/A', message: 'NotFound: http://x/y: 404' });
  assert.equal(resolveClaims(h, s), null);
  assert.equal(s.status.reason, 'DataVolume imported failed: NotFound: http://x/y: 404');

  dvs.set('ns/imported', { phase: 'Succeeded', progress: '100.0%', message: '' });
  fs.writeFileSync(path.join(claimDir('imported'), 'disk.img'), Buffer.alloc(512));
  assert.deepEqual(resolveClaims(h, s), { root: { path: path.join(ROOT, 'ns/imported/disk.img'), format: 'raw', block: false } });
  assert.equal((cond() as { status: string; reason: string }).status, 'True');
  assert.equal((cond() as { reason: string }).reason, 'AllDVsReady');
});

test('at start: a claim that is not there waits with FailedPvcNotFound and a growing backoff; once created it resolves', () => {
  const { h, requeues } = host(new Map());
  const s = new VmiState(REC, normalized([{ name: 'data', persistentVolumeClaim: { claimName: 'later' } }]), initialStatus('n'));
  assert.equal(resolveClaims(h, s), null);
  assert.equal(resolveClaims(h, s), null);
  assert.equal(resolveClaims(h, s), null);
  assert.match(s.status.reason, /^PersistentVolumeClaim ns\/later not found under /);
  assert.equal(s.events.filter((e) => e.reason === 'FailedPvcNotFound').length, 1, 'one event per wait, not per look');
  assert.ok(requeues[0]! >= 500 && requeues[0]! <= 1_000 && requeues[2]! >= 2_000 && requeues[2]! <= 4_000, requeues.join(','));
  fs.writeFileSync(path.join(claimDir('later'), 'disk.img'), Buffer.alloc(512));
  assert.deepEqual(resolveClaims(h, s), { data: { path: path.join(ROOT, 'ns/later/disk.img'), format: 'raw', block: false } });
  assert.equal(s.status.conditions.find((c) => c.type === 'DataVolumesReady'), undefined, 'no DataVolume, no DataVolumesReady condition');
});

function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` })));
}

test('rendered: a file claim (qcow2 detected), a readOnly raw claim, a block claim and an ephemeral overlay; golden XML valid for libvirt', async () => {
  const vmi = normalized(
    [
      { name: 'root', dataVolume: { name: 'q' } },
      { name: 'ro', persistentVolumeClaim: { claimName: 'raw', readOnly: true } },
      { name: 'blk', persistentVolumeClaim: { claimName: 'blk' } },
      { name: 'eph', ephemeral: { persistentVolumeClaim: { claimName: 'raw' } } },
    ],
    [{ name: 'root', bootOrder: 1, disk: { bus: 'virtio' } }, { name: 'ro', disk: { bus: 'virtio' } }, { name: 'blk', disk: { bus: 'scsi' } }, { name: 'eph', disk: { bus: 'sata' } }],
  );
  // fixed paths so the golden file does not depend on the temp dir
  const resolvedClaims = {
    root: { path: '/var/lib/virt-handler/volumes/ns/q/disk.img', format: 'qcow2' as const, block: false },
    ro: { path: '/var/lib/virt-handler/volumes/ns/raw/disk.img', format: 'raw' as const, block: false },
    blk: { path: '/var/lib/virt-handler/volumes/ns/blk/disk', format: 'raw' as const, block: true },
    eph: { path: '/var/lib/virt-handler/volumes/ns/raw/disk.img', format: 'raw' as const, block: false },
  };
  const facts: NodeFacts = { libvirtUri: 'test:///default', nodeLibvirtConnected: false, capabilities: null, nodeInfo: null, handlerSocket: '/run/vh/g.sock', bridge: null };
  const vmiDir = '/var/lib/virt-handler/vmis/0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4';
  const start = buildStartCommand(facts, { vmi, namespace: 'ns', name: 'vm', vmiDir, pinnedCpus: [], libvirtUri: 'test:///default', resolvedClaims });
  assert.deepEqual(start.disks, [{ kind: 'overlay', disk: 'eph', path: `${vmiDir}/disks/eph.qcow2`, backingFile: '/var/lib/virt-handler/volumes/ns/raw/disk.img', backingFormat: 'raw' }]);
  const xml = start.domainXml;
  assert.match(xml, /<disk type="file" device="disk">\s*<driver name="qemu" type="qcow2"\/>\s*<source file="\/var\/lib\/virt-handler\/volumes\/ns\/q\/disk.img"\/>/);
  assert.match(xml, /<source file="\/var\/lib\/virt-handler\/volumes\/ns\/raw\/disk.img"\/>\s*<target dev="vdb" bus="virtio"\/>\s*<readonly\/>/);
  assert.match(xml, /<disk type="block" device="disk">\s*<driver name="qemu" type="raw"\/>\s*<source dev="\/var\/lib\/virt-handler\/volumes\/ns\/blk\/disk"\/>\s*<target dev="sda" bus="scsi"\/>/);
  if (UPDATE) fs.writeFileSync(GOLDEN, xml);
  assert.equal(xml, fs.readFileSync(GOLDEN, 'utf8'), `${GOLDEN} differs (VHTEST_UPDATE_GOLDEN=1 rewrites it)`);
  const r = await run('virt-xml-validate', [GOLDEN, 'domain']);
  assert.equal(r.code, 0, r.out);
  // the same claim twice without ephemeral is refused (two writers of one disk)
  const twice = normalized([{ name: 'a', persistentVolumeClaim: { claimName: 'raw' } }, { name: 'b', persistentVolumeClaim: { claimName: 'raw' } }]);
  const p = resolvedClaims.ro;
  assert.throws(() => buildStartCommand(facts, { vmi: twice, namespace: 'ns', name: 'vm', vmiDir, pinnedCpus: [], libvirtUri: 'x', resolvedClaims: { a: p, b: p } }), /disks a and b would both use/);
});

test('lun: SCSI passthrough of a block-mode claim (<disk type=block device=lun>, scsi); refused on other volumes, other buses, file claims; reservation a requirement', async () => {
  const vmi = normalized([{ name: 'pt', persistentVolumeClaim: { claimName: 'blk' } }], [{ name: 'pt', lun: { bus: 'scsi', readonly: true } }]);
  assert.deepEqual([vmi.disks[0]!.device, vmi.disks[0]!.bus, vmi.disks[0]!.readonly], ['lun', 'scsi', true]);
  const facts: NodeFacts = { libvirtUri: 'test:///default', nodeLibvirtConnected: false, capabilities: null, nodeInfo: null, handlerSocket: '/run/vh/g.sock', bridge: null };
  const target = { vmi, namespace: 'ns', name: 'vm', vmiDir: '/var/lib/virt-handler/vmis/x', pinnedCpus: [], libvirtUri: 'test:///default' };
  const xml = buildStartCommand(facts, { ...target, resolvedClaims: { pt: { path: '/var/lib/virt-handler/volumes/ns/blk/disk', format: 'raw', block: true } } }).domainXml;
  assert.match(xml, /<disk type="block" device="lun">\s*<driver name="qemu" type="raw"\/>\s*<source dev="\/var\/lib\/virt-handler\/volumes\/ns\/blk\/disk"\/>\s*<target dev="sda" bus="scsi"\/>\s*<readonly\/>/);
  assert.match(xml, /<controller type="scsi" index="0" model="virtio-scsi"\/>/);
  const file = path.join(TMP, 'lun.xml');
  fs.writeFileSync(file, xml);
  const r = await run('virt-xml-validate', [file, 'domain']);
  assert.equal(r.code, 0, r.out);
  assert.throws(() => buildStartCommand(facts, { ...target, resolvedClaims: { pt: { path: '/v/ns/f/disk.img', format: 'raw', block: false } } }), /disk pt: a lun passes a block device through on the scsi bus; its claim is a file \(\/v\/ns\/f\/disk\.img\), not a block device/);

  const bad = validateVmi(defaultVmi(manifest(
    [{ name: 'a', emptyDisk: { capacity: '1Gi' } }, { name: 'b', persistentVolumeClaim: { claimName: 'c' } }, { name: 'e', ephemeral: { persistentVolumeClaim: { claimName: 'c' } } }],
    [{ name: 'a', lun: { bus: 'scsi' } }, { name: 'b', lun: {} }, { name: 'e', lun: { bus: 'scsi' } }],
  )), CTX);
  const fields = bad.ok ? [] : bad.violations.map((v) => `${v.field}: ${v.message}`);
  assert.ok(fields.includes('spec.domain.devices.disks[0].lun: can only be mapped to a DataVolume or PersistentVolumeClaim volume (a block-mode claim; not ephemeral)'), fields.join('\n'));
  assert.ok(fields.includes('spec.domain.devices.disks[1].lun.bus: a lun is SCSI passthrough: bus must be scsi (got "sata")'), fields.join('\n'));
  assert.ok(fields.some((f) => f.startsWith('spec.domain.devices.disks[2].lun: can only be mapped')), fields.join('\n'));
  const res = normalized([{ name: 'r', dataVolume: { name: 'd' } }], [{ name: 'r', lun: { bus: 'scsi', reservation: true } }]);
  assert.deepEqual(res.requirements.map((x) => `${x.field}: ${x.needs}`), ['spec.domain.devices.disks[0].lun.reservation: SCSI persistent reservations (this node runs no qemu-pr-helper)']);
});
