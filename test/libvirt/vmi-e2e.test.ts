/**
 * The VMI lifecycle end to end, with every part real: the daemon (dist/virt-handler.cjs) as a
 * process, gRPC over its unix socket, a launcher process per VMI, the private libvirtd and a
 * QEMU (TCG) guest.
 *   create -> Running -> console marker (and typed input echoed) -> pause -> unpause ->
 *   delete -> launcher gone, domain gone, record removed;
 *   runStrategy with a guest that powers itself off (Once stays Succeeded, Always restarts);
 *   a bad manifest gets INVALID_ARGUMENT with field violations and changes nothing.
 * Run through scripts/test-libvirt.sh.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { VIOLATIONS_TRAILER } from '../../src/grpc/errors';
import { loadProtos } from '../../src/grpc/proto';
import { procStartTime } from '../../src/vmi/control/launcher-process';
import { type Client, HandlerUnderTest, type VmiView, stageTinyImages, tinyVmi } from '../lib/daemon';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

type Vmi = VmiView;

function manifest(name: string, opts: { runStrategy?: string; kernelArgs?: string } = {}): string {
  return tinyVmi(name, 'e2e', opts);
}

describe('VMI lifecycle end to end (daemon + launcher + libvirtd + QEMU TCG)', { timeout: 600_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let h: HandlerUnderTest;
  let client: Client;
  let stateDir: string;

  before(async () => {
    env = testEnv();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-e2e-'));
    stageTinyImages(tmp, env);
    // A small base image for the containerDisk test (a qcow2, so the overlay's backing format is checked).
    const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(tmp, 'images', 'base.qcow2'), '64M'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: env.uri, nodeName: 'e2e-node', waitLibvirt: true });
    stateDir = h.stateDir;
    client = h.vmiClient();
  });

  after(async () => {
    // Leave nothing running: launchers of VMIs a failed test did not delete.
    await h?.killLeftovers();
    if (process.env.VHTEST_KEEP) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  });

  const waitPhase = (name: string, phases: string[], timeoutMs: number): Promise<Vmi> => h.waitPhase('e2e', name, phases, timeoutMs);

  it('create -> Running -> console -> pause/unpause -> delete leaves nothing behind', async () => {
    const t0 = Date.now();
    const created = await h.call<{ vmi: Vmi; changed: boolean }>('SyncVMI', { manifest: manifest('tiny') });
    assert.equal(created.changed, true);
    const uid = created.vmi.uid;
    assert.match(uid, /^[0-9a-f-]{36}$/);
    const again = await h.call<{ changed: boolean }>('SyncVMI', { manifest: manifest('tiny') });
    assert.equal(again.changed, false, 'the same manifest again changes nothing');

    const running = await waitPhase('tiny', ['Running'], 120_000);
    const toRunning = Date.now() - t0;
    const launcherPid = running.status.launcherPid;
    assert.ok(launcherPid > 0);
    const vmiDir = path.join(stateDir, 'vmis', uid);
    assert.ok(fs.existsSync(path.join(vmiDir, 'record.json')));
    await waitFor(() => fs.existsSync(path.join(vmiDir, 'serial.log')) && fs.readFileSync(path.join(vmiDir, 'serial.log'), 'utf8').includes('VH-GUEST-READY'), 120_000, 'guest marker in serial.log');
    const toMarker = Date.now() - t0;

    // Console: output flows, and typed input reaches the guest.
    const stream = (client.Console as () => grpc.ClientDuplexStream<unknown, { data: Buffer }>).call(client);
    let text = '';
    stream.on('data', (m: { data: Buffer }) => (text += m.data.toString('utf8')));
    stream.on('error', () => undefined);
    stream.write({ ref: { namespace: 'e2e', name: 'tiny' } });
    await waitFor(() => /vh-guest: uptime/.test(text), 10_000, 'console output');
    stream.write({ data: Buffer.from('hello-from-console\n') });
    await waitFor(() => text.includes('vh-guest: echo hello-from-console'), 10_000, 'console echo');
    // A second console while one is attached is refused.
    const second = (client.Console as () => grpc.ClientDuplexStream<unknown, unknown>).call(client);
    const refused = new Promise<grpc.ServiceError>((resolve) => second.on('error', resolve));
    second.on('data', () => undefined);
    second.write({ ref: { namespace: 'e2e', name: 'tiny' } });
    assert.equal((await refused).code, grpc.status.FAILED_PRECONDITION);
    stream.end();
    stream.cancel();

    await h.call('Pause', { namespace: 'e2e', name: 'tiny' });
    await waitFor(async () => (await h.call<Vmi>('GetVMI', { namespace: 'e2e', name: 'tiny' })).status.domainState.startsWith('paused'), 10_000, 'paused');
    await assert.rejects(h.call('Pause', { namespace: 'e2e', name: 'tiny' }), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION);
    await h.call('Unpause', { namespace: 'e2e', name: 'tiny' });
    await waitFor(async () => (await h.call<Vmi>('GetVMI', { namespace: 'e2e', name: 'tiny' })).status.domainState.startsWith('running'), 10_000, 'running again');

    const tDel = Date.now();
    await h.call('DeleteVMI', { namespace: 'e2e', name: 'tiny' });
    await waitFor(
      async () => {
        try {
          await h.call('GetVMI', { namespace: 'e2e', name: 'tiny' });
          return false;
        } catch (e) {
          return (e as grpc.ServiceError).code === grpc.status.NOT_FOUND;
        }
      },
      60_000,
      'VMI removed',
      200,
    );
    const delMs = Date.now() - tDel;
    await waitFor(() => procStartTime(launcherPid) === null, 5_000, 'launcher exited');
    assert.equal(fs.existsSync(vmiDir), false, 'the VMI directory and its record are gone');
    const virsh = await new Promise<string>((resolve) => {
      const p = spawn('virsh', ['-c', env.uri, 'list', '--all', '--name']);
      let s = '';
      p.stdout.on('data', (b: Buffer) => (s += b.toString()));
      p.on('exit', () => resolve(s));
    });
    assert.doesNotMatch(virsh, /e2e_tiny/, 'the domain is gone from libvirt');
    console.log(`vmi e2e: SyncVMI -> Running ${toRunning} ms, -> guest marker ${toMarker} ms, delete -> gone ${delMs} ms`);
  });

  it('runStrategy: Once stays Succeeded after the guest powers off; Always restarts it', async () => {
    await h.call('SyncVMI', { manifest: manifest('once', { runStrategy: 'Once', kernelArgs: 'panic=-1 vh.poweroff=2' }) });
    await h.call('SyncVMI', { manifest: manifest('always', { runStrategy: 'Always', kernelArgs: 'panic=-1 vh.poweroff=2' }) });
    const once = await waitPhase('once', ['Succeeded', 'Failed'], 180_000);
    assert.equal(once.status.phase, 'Succeeded', once.status.reason);
    // Always: after the power-off it runs again; the restart is counted in its durable record.
    const always = await h.call<Vmi>('GetVMI', { namespace: 'e2e', name: 'always' });
    const recFile = path.join(stateDir, 'vmis', always.uid, 'record.json');
    const restarts = (): number => {
      try {
        return (JSON.parse(fs.readFileSync(recFile, 'utf8')) as { restarts: number }).restarts;
      } catch {
        return 0;
      }
    };
    await waitFor(() => restarts() >= 1, 180_000, 'Always restarted after power-off', 250);
    await waitPhase('always', ['Running'], 120_000);
    await new Promise((r) => setTimeout(r, 3000));
    const stillOnce = await h.call<Vmi>('GetVMI', { namespace: 'e2e', name: 'once' });
    assert.equal(stillOnce.status.phase, 'Succeeded', 'Once is never restarted');
    assert.equal(stillOnce.status.launcherPid, 0);
    for (const name of ['once', 'always']) await h.call('DeleteVMI', { namespace: 'e2e', name });
    await waitFor(async () => (await h.call<{ vmis: unknown[] }>('ListVMIs', { namespace: 'e2e' })).vmis.length === 0, 90_000, 'both deleted', 250);
  });

  it('disks, cloud-init and a NIC: overlay on the read-only base, sparse scratch, NoCloud seed, user-mode NAT; all removed on delete', async () => {
    const base = path.join(tmp, 'images', 'base.qcow2');
    const baseBefore = fs.readFileSync(base);
    const full = {
      metadata: { name: 'full', namespace: 'e2e' },
      spec: {
        runStrategy: 'Manual',
        terminationGracePeriodSeconds: 2,
        domain: {
          memory: { guest: '128Mi' },
          machine: { type: 'q35' },
          firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz', kernelArgs: 'panic=-1' } },
          devices: {
            autoattachSerialConsole: true,
            rng: {},
            disks: [
              { name: 'root', disk: { bus: 'virtio' }, serial: 'root-1' },
              { name: 'scratch', disk: { bus: 'virtio' } },
              { name: 'cloudinit', cdrom: { bus: 'sata' } },
            ],
            interfaces: [{ name: 'default', masquerade: {} }],
          },
        },
        networks: [{ name: 'default', pod: {} }],
        volumes: [
          { name: 'root', containerDisk: { path: 'base.qcow2' } },
          { name: 'scratch', emptyDisk: { capacity: '64Mi' } },
          { name: 'cloudinit', cloudInitNoCloud: { userData: '#cloud-config\nhostname: full\n' } },
        ],
      },
    };
    const { vmi } = await h.call<{ vmi: Vmi }>('SyncVMI', { manifest: JSON.stringify(full) });
    await waitPhase('full', ['Running'], 120_000);
    const dir = path.join(stateDir, 'vmis', vmi.uid);
    await waitFor(() => fs.existsSync(path.join(dir, 'serial.log')) && fs.readFileSync(path.join(dir, 'serial.log'), 'utf8').includes('VH-GUEST-READY'), 120_000, 'full guest marker');
    const info = spawnSync('qemu-img', ['info', '--output=json', '-U', path.join(dir, 'disks', 'root.qcow2')], { encoding: 'utf8' });
    assert.equal(info.status, 0, info.stderr);
    const j = JSON.parse(info.stdout) as { 'backing-filename'?: string; 'backing-filename-format'?: string };
    assert.equal(j['backing-filename'], base);
    assert.equal(j['backing-filename-format'], 'qcow2');
    assert.ok(fs.existsSync(path.join(dir, 'disks', 'scratch.qcow2')));
    const iso = fs.readdirSync(path.join(dir, 'disks')).find((f) => f.endsWith('.iso'));
    assert.ok(iso, 'the NoCloud seed ISO');
    assert.equal(fs.readFileSync(path.join(dir, 'disks', iso)).subarray(0x8028, 0x802e).toString('latin1'), 'cidata', 'ISO volume id cidata');
    const http1 = await new Promise<string>((resolve, reject) => {
      http.get({ socketPath: path.join(tmp, 'run', 'http.sock'), path: '/v1/vmis/e2e/full', agent: false }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    const view = JSON.parse(http1) as { domainXml: string; status: { interfaces: Array<{ name: string; mac: string }> } };
    assert.equal((view.domainXml.match(/<disk /g) ?? []).length, 3, 'three disks in the live domain');
    assert.match(view.domainXml, /<interface type=['"]user['"]/);
    assert.match(view.domainXml, /<rng model=['"]virtio['"]/);
    assert.equal(view.status.interfaces[0]?.name, 'default');
    assert.match(view.status.interfaces[0]?.mac ?? '', /^52:54:00(:[0-9a-f]{2}){3}$/);
    await h.call('DeleteVMI', { namespace: 'e2e', name: 'full' });
    await waitFor(() => !fs.existsSync(dir), 60_000, 'full removed', 200);
    assert.deepEqual(fs.readFileSync(base), baseBefore, 'the base image was never written');
  });

  it('a bad manifest: INVALID_ARGUMENT with every violation, nothing stored', async () => {
    const before = await h.call<{ vmis: unknown[]; revision: number }>('ListVMIs', {});
    const bad = JSON.stringify({ metadata: { name: 'Bad_Name' }, spec: { domain: { memory: { guest: 'lots' }, devices: { disks: [{ name: 'data' }] } } } });
    const err = await h.call('SyncVMI', { manifest: bad }).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    assert.ok(err);
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const raw = err.metadata.get(VIOLATIONS_TRAILER)[0] as Buffer;
    const type = loadProtos().messageType('virthandler.v1.FieldViolations');
    const decoded = type.toObject(type.decode(raw)) as { violations: Array<{ field: string; message: string }> };
    const fields = decoded.violations.map((v) => v.field);
    assert.ok(fields.includes('metadata.name'), fields.join(','));
    assert.ok(fields.some((f) => f.startsWith('spec.domain.memory')), fields.join(','));
    assert.ok(fields.includes('spec.domain.devices.disks[0].name'), fields.join(','));
    const afterList = await h.call<{ vmis: unknown[]; revision: number }>('ListVMIs', {});
    assert.equal(afterList.revision, before.revision, 'nothing changed');
    assert.equal(afterList.vmis.length, before.vmis.length);
  });
});
