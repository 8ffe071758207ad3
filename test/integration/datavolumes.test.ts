/**
 * DataVolumes and claims end to end: the real daemon (test entry, libvirt's test driver) with the
 * slow-import seam (VHTEST_SLOW_IMPORT_MS: the built-in blank importer after a 3 s wait with
 * progress), driven through vhctl and the gRPC DataVolumeService.
 *
 * - a VirtualMachine with a dataVolumeTemplate (vhctl create -f): the DataVolume is created
 *   first; the VMI waits Pending with DataVolumesReady=False while it imports, then runs on it;
 * - vhctl get dv shows NAME PHASE PROGRESS RESTARTS AGE; delete of a DataVolume in use is refused
 *   naming the VMI; after the VMI is gone it removes the claim;
 * - a VMI naming a claim that does not exist yet waits Pending (FailedPvcNotFound) and runs once
 *   the claim's disk.img appears; an ephemeral volume on it gets a qcow2 overlay backed by it;
 * - kill -9 of the handler during an import: the restarted handler imports again (restartCount 1);
 * - vhctl upload streams a file into an upload DataVolume (this build's importer serves blank
 *   only, so the import then fails with SourceMissing: the staging path is what is shown here).
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';
import { HandlerUnderTest, type VmiView, call, killEverything, makeRoot, testDriverVmi, waitFor } from '../lib/daemon';
import { runVhctl } from '../lib/vhctl';

const ROOT = makeRoot('vh-dv-');
const NS = 'dvs';
let d: HandlerUnderTest | null = null;
let dvc: grpc.Client | null = null;

after(async () => {
  dvc?.close();
  await d?.killLeftovers().catch(() => undefined);
  await killEverything(ROOT);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

interface WireDv {
  name: string;
  status: { phase: string; progress: string; restartCount: number; conditions: Array<{ type: string; status: string; reason: string }> };
  events: Array<{ reason: string; message: string }>;
}

function dvClient(h: HandlerUnderTest): grpc.Client {
  dvc ??= new (loadProtos().DataVolumeClient)(`unix:${h.grpcSocket}`, grpc.credentials.createInsecure());
  return dvc;
}

const getDv = (h: HandlerUnderTest, name: string): Promise<WireDv> => call<WireDv>(dvClient(h) as never, 'GetDataVolume', { namespace: NS, name });

const vhctl = (h: HandlerUnderTest, ...args: string[]): ReturnType<typeof runVhctl> => runVhctl([...args, '--socket', h.grpcSocket, '--timeout', '20s']);

function claimVmi(name: string, volume: Record<string, unknown>): string {
  const m = testDriverVmi(name, NS) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
  m.spec.domain.devices.disks = [{ name: 'root', disk: { bus: 'virtio' } }];
  m.spec.volumes = [{ name: 'root', ...volume }];
  return JSON.stringify(m);
}

const VM = `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm1, namespace: ${NS}}
spec:
  runStrategy: Always
  dataVolumeTemplates:
  - metadata: {name: root-dv}
    spec:
      source: {blank: {}}
      storage: {resources: {requests: {storage: 16Mi}}}
  template:
    spec:
      terminationGracePeriodSeconds: 2
      domain:
        memory: {guest: 64Mi}
        firmware: {kernelBoot: {kernel: tiny/vmlinux, initrd: tiny/initrd.gz}}
        devices: {disks: [{name: root, disk: {bus: virtio}}]}
      volumes: [{name: root, dataVolume: {name: root-dv}}]
`;

describe('DataVolumes and persistent volume claims', { timeout: 240_000 }, () => {
  test('a VM with a dataVolumeTemplate waits for the import (DataVolumesReady), then runs; delete of the DataVolume in use is refused', async () => {
    d = await HandlerUnderTest.start({ tmp: ROOT, libvirtUri: 'test:///default', logLevel: 'info', seams: { slowImportMs: 3_000 } });
    const h = d;
    const file = path.join(ROOT, 'vm.yaml');
    fs.writeFileSync(file, VM);
    const created = await vhctl(h, 'create', '-f', file);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^virtualmachine dvs\/vm1: datavolume dvs\/root-dv created \(phase (Pending|ImportScheduled|ImportInProgress)\)$/m);
    assert.match(created.stdout, /vmi dvs\/vm1 configured/);

    const waiting = await waitFor('VMI waiting for its DataVolume', async () => {
      const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'vm1' });
      return /^DataVolume root-dv is ImportInProgress \(\d+\.\d\d%\)$/.test(v.status.reason) ? v : undefined;
    });
    assert.equal(waiting.status.phase, 'Pending');
    const cond = waiting.status.conditions.find((c) => c.type === 'DataVolumesReady');
    assert.deepEqual([cond?.status, cond?.reason], ['False', 'NotAllDVsReady']);
    assert.equal((await getDv(h, 'root-dv')).status.phase, 'ImportInProgress');

    const running = await h.waitPhase(NS, 'vm1', ['Running'], 60_000);
    assert.equal(running.status.conditions.find((c) => c.type === 'DataVolumesReady')?.status, 'True');
    const img = path.join(h.stateDir, 'volumes', NS, 'root-dv', 'disk.img');
    assert.equal(fs.statSync(img).size, 16 * 2 ** 20);

    const table = await vhctl(h, 'get', 'dv', '-n', NS);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+PHASE\s+PROGRESS\s+RESTARTS\s+AGE\nroot-dv\s+Succeeded\s+100\.00%\s+0\s+\d+s\n$/);
    const yaml = await vhctl(h, 'get', 'dv', 'root-dv', '-n', NS, '-o', 'yaml');
    assert.match(yaml.stdout, /kind: DataVolume/);
    assert.match(yaml.stdout, /phase: Succeeded/);

    // the same VM again: the identical DataVolume is fine
    const again = await vhctl(h, 'create', '-f', file);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /datavolume dvs\/root-dv unchanged/);

    const refused = await vhctl(h, 'delete', 'dv', 'root-dv', '-n', NS);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /DataVolume dvs\/root-dv is in use by VMI dvs\/vm1: delete the VMI first/);
    assert.ok(fs.existsSync(img));

    await h.call('DeleteVMI', { namespace: NS, name: 'vm1' });
    await waitFor('vm1 gone', async () => (await h.call<VmiView>('GetVMI', { namespace: NS, name: 'vm1' }).then(() => false, () => true)) || undefined, 60_000);
    const deleted = await vhctl(h, 'delete', 'dv', 'root-dv', '-n', NS);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(fs.existsSync(path.dirname(img)), false);
  });

  test('a VMI naming a claim that does not exist yet waits (FailedPvcNotFound) and runs once disk.img appears', async () => {
    const h = d!;
    await h.call('SyncVMI', { manifest: claimVmi('late', { persistentVolumeClaim: { claimName: 'late-claim' } }) });
    const root = path.join(h.stateDir, 'volumes');
    const pending = await waitFor('Pending on the claim', async () => {
      const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'late' });
      return v.status.reason.startsWith('PersistentVolumeClaim dvs/late-claim not found under') ? v : undefined;
    });
    assert.equal(pending.status.phase, 'Pending');
    const ev = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/late/events`)).body) as { items: Array<{ reason: string; message: string }> };
    assert.ok(ev.items.some((e) => e.reason === 'FailedPvcNotFound' && e.message === 'PVC dvs/late-claim does not exist, waiting for it to appear'), JSON.stringify(ev.items));
    fs.mkdirSync(path.join(root, NS, 'late-claim'), { recursive: true });
    fs.writeFileSync(path.join(root, NS, 'late-claim', 'disk.img'), Buffer.alloc(2 ** 20));
    await h.waitPhase(NS, 'late', ['Running'], 60_000);
    await h.call('DeleteVMI', { namespace: NS, name: 'late' });

    // ephemeral on the same claim: the launcher makes a qcow2 overlay in the VMI's directory, backed by the claim
    const eph = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: claimVmi('eph', { ephemeral: { persistentVolumeClaim: { claimName: 'late-claim' } } }) })).vmi;
    await h.waitPhase(NS, 'eph', ['Running'], 60_000);
    const overlay = path.join(h.stateDir, 'vmis', eph.uid, 'disks', 'root.qcow2');
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', overlay], { encoding: 'utf8' })) as { format: string; 'backing-filename': string };
    assert.deepEqual([info.format, info['backing-filename']], ['qcow2', path.join(fs.realpathSync(root), NS, 'late-claim', 'disk.img')]);
    await h.call('DeleteVMI', { namespace: NS, name: 'eph' });
  });

  test('kill -9 of the handler during an import: the restarted handler imports again (restartCount 1)', async () => {
    const h = d!;
    const manifest = JSON.stringify({ apiVersion: 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: { name: 'crash', namespace: NS }, spec: { source: { blank: {} }, storage: { resources: { requests: { storage: '8Mi' } } } } });
    await call(dvClient(h) as never, 'CreateDataVolume', { manifest });
    await waitFor('ImportInProgress', async () => ((await getDv(h, 'crash')).status.phase === 'ImportInProgress' ? true : undefined));
    dvc?.close();
    dvc = null;
    const exit = await h.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    const rec = JSON.parse(fs.readFileSync(path.join(h.stateDir, 'datavolumes', `${NS}_crash.json`), 'utf8')) as { status: { phase: string } };
    assert.equal(rec.status.phase, 'ImportInProgress', 'the record says the import was running when the handler died');
    await h.restart();
    const done = await waitFor('Succeeded after the restart', async () => {
      const v = await getDv(h, 'crash');
      return v.status.phase === 'Succeeded' ? v : undefined;
    }, 30_000);
    assert.equal(done.status.restartCount, 1);
    assert.ok(done.events.some((e) => e.reason === 'ImportRestarted'), JSON.stringify(done.events));
    assert.deepEqual(fs.readdirSync(path.join(h.stateDir, 'volumes', NS, 'crash')), ['disk.img']);
  });

  test('vhctl upload streams a file into an upload DataVolume (staged, counted); this build imports blank only', async () => {
    const h = d!;
    const file = path.join(ROOT, 'up.yaml');
    fs.writeFileSync(file, `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: up, namespace: ${NS}}\nspec:\n  source: {upload: {}}\n  storage: {resources: {requests: {storage: 4Mi}}}\n`);
    assert.equal((await vhctl(h, 'create', '-f', file)).code, 0);
    assert.equal((await getDv(h, 'up')).status.phase, 'UploadReady');
    const image = path.join(ROOT, 'image.raw');
    fs.writeFileSync(image, Buffer.alloc(3 * 2 ** 20, 7));
    const up = await vhctl(h, 'upload', 'dv', 'up', '-n', NS, '--image-path', image);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /datavolume dvs\/up: uploaded 3145728 bytes/);
    assert.match(up.stderr, /uploading datavolume dvs\/up: 3145728\/3145728 bytes \(100\.00%\)/);
    const failed = await waitFor('upload import ends', async () => {
      const v = await getDv(h, 'up');
      return v.status.phase === 'Failed' ? v : undefined;
    });
    assert.equal(failed.status.conditions.find((c) => c.type === 'Running')?.reason, 'SourceMissing');
    assert.match((await vhctl(h, 'create', '-f', file)).stdout, /datavolume dvs\/up unchanged/);
    const s3 = path.join(ROOT, 's3.yaml');
    fs.writeFileSync(s3, `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: s3, namespace: ${NS}}\nspec:\n  source: {s3: {url: 's3://bucket/disk.img'}}\n  storage: {resources: {requests: {storage: 4Mi}}}\n`);
    const s3r = await vhctl(h, 'create', '-f', s3);
    assert.equal(s3r.code, 1);
    assert.match(s3r.stderr, /spec\.source\.s3: S3 imports are not served: this node has no S3 client/);
    const list = await vhctl(h, 'get', 'dv', '-A', '-o', 'json');
    const names = (JSON.parse(list.stdout) as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name);
    assert.deepEqual(names, ['crash', 'up']);
    // the unix-socket HTTP views
    const http = await h.http('GET', `/v1/datavolumes?namespace=${NS}`);
    assert.equal(http.status, 200, http.body);
    assert.deepEqual((JSON.parse(http.body) as { items: Array<{ name: string }> }).items.map((i) => i.name), ['crash', 'up']);
    const one = await h.http('GET', `/v1/datavolumes/${NS}/crash`);
    assert.equal((JSON.parse(one.body) as WireDv).status.phase, 'Succeeded');
    assert.equal((await h.http('GET', `/v1/datavolumes/${NS}/nope`)).status, 404);
    assert.equal((await h.http('GET', `/v1/datavolumes/${NS}/..%2Fx`)).status, 400);
  });
});
