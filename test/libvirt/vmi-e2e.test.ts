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
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';
import { VIOLATIONS_TRAILER } from '../../src/grpc/errors';
import { procStartTime } from '../../src/vmi/launcher-process';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

const ROOT = path.resolve(__dirname, '../../..');
const DAEMON = path.join(ROOT, 'dist', 'virt-handler.cjs');

type Vmi = { uid: string; name: string; namespace: string; status: { phase: string; reason: string; launcherPid: number; domainState: string } };
type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

function manifest(name: string, opts: { runStrategy?: string; kernelArgs?: string } = {}): string {
  return JSON.stringify({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name, namespace: 'e2e' },
    spec: {
      runStrategy: opts.runStrategy ?? 'Always',
      terminationGracePeriodSeconds: 3,
      domain: {
        memory: { guest: '128Mi' },
        machine: { type: 'pc' },
        firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz', kernelArgs: opts.kernelArgs ?? 'panic=-1' } },
        devices: { autoattachSerialConsole: true },
      },
    },
  });
}

function call<T>(c: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(c, req, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

function getReadyz(sock: string): Promise<number> {
  return new Promise((resolve) => {
    const r = http.get({ socketPath: sock, path: '/readyz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', () => resolve(0));
  });
}

describe('VMI lifecycle end to end (daemon + launcher + libvirtd + QEMU TCG)', { timeout: 600_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let daemon: ChildProcess;
  let out = '';
  let client: Client;
  let stateDir: string;

  before(async () => {
    env = testEnv();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-e2e-'));
    stateDir = path.join(tmp, 'state');
    const images = path.join(tmp, 'images', 'tiny');
    fs.mkdirSync(images, { recursive: true });
    fs.copyFileSync(env.kernel, path.join(images, 'vmlinux'));
    fs.copyFileSync(env.initrd, path.join(images, 'initrd.gz'));
    // A small base image for the containerDisk test (a qcow2, so the overlay's backing format is checked).
    const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(tmp, 'images', 'base.qcow2'), '64M'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const args = ['--state-dir', stateDir, '--run-dir', path.join(tmp, 'run'), '--http-tcp=off', '--libvirt-uri', env.uri, '--vmi-image-root', path.join(tmp, 'images'), '--log-level', 'debug'];
    const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_')));
    daemon = spawn(process.execPath, [DAEMON, ...args], { env: { ...cleanEnv, NODE_NAME: 'e2e-node' }, stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor(async () => (await getReadyz(path.join(tmp, 'run', 'http.sock'))) === 200, 30_000, 'daemon ready');
    await waitFor(() => out.includes('libvirt capabilities read'), 30_000, 'libvirt connected');
    const { VmiClient } = loadProtos();
    client = new VmiClient(`unix:${path.join(tmp, 'run', 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
  });

  after(async () => {
    client?.close();
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    // Leave nothing running: launchers of VMIs a failed test did not delete.
    for (const uid of fs.existsSync(path.join(stateDir, 'vmis')) ? fs.readdirSync(path.join(stateDir, 'vmis')) : []) {
      try {
        const rec = JSON.parse(fs.readFileSync(path.join(stateDir, 'vmis', uid, 'record.json'), 'utf8')) as { launcher?: { pid: number } };
        if (rec.launcher?.pid) process.kill(rec.launcher.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (process.env.VH_TEST_KEEP) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function waitPhase(name: string, phases: string[], timeoutMs: number): Promise<Vmi> {
    let last: Vmi | null = null;
    await waitFor(
      async () => {
        last = await call<Vmi>(client, 'GetVMI', { namespace: 'e2e', name });
        return phases.includes(last.status.phase);
      },
      timeoutMs,
      `${name} in ${phases.join('|')} (last: ${JSON.stringify(last)})`,
      200,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n--- daemon log tail ---\n${out.split('\n').slice(-30).join('\n')}`);
    });
    return last as unknown as Vmi;
  }

  it('create -> Running -> console -> pause/unpause -> delete leaves nothing behind', async () => {
    const t0 = Date.now();
    const created = await call<{ vmi: Vmi; changed: boolean }>(client, 'SyncVMI', { manifest: manifest('tiny') });
    assert.equal(created.changed, true);
    const uid = created.vmi.uid;
    assert.match(uid, /^[0-9a-f-]{36}$/);
    const again = await call<{ changed: boolean }>(client, 'SyncVMI', { manifest: manifest('tiny') });
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

    await call(client, 'Pause', { namespace: 'e2e', name: 'tiny' });
    await waitFor(async () => (await call<Vmi>(client, 'GetVMI', { namespace: 'e2e', name: 'tiny' })).status.domainState.startsWith('paused'), 10_000, 'paused');
    await assert.rejects(call(client, 'Pause', { namespace: 'e2e', name: 'tiny' }), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION);
    await call(client, 'Unpause', { namespace: 'e2e', name: 'tiny' });
    await waitFor(async () => (await call<Vmi>(client, 'GetVMI', { namespace: 'e2e', name: 'tiny' })).status.domainState.startsWith('running'), 10_000, 'running again');

    const tDel = Date.now();
    await call(client, 'DeleteVMI', { namespace: 'e2e', name: 'tiny' });
    await waitFor(
      async () => {
        try {
          await call(client, 'GetVMI', { namespace: 'e2e', name: 'tiny' });
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
    await call(client, 'SyncVMI', { manifest: manifest('once', { runStrategy: 'Once', kernelArgs: 'panic=-1 vh.poweroff=2' }) });
    await call(client, 'SyncVMI', { manifest: manifest('always', { runStrategy: 'Always', kernelArgs: 'panic=-1 vh.poweroff=2' }) });
    const once = await waitPhase('once', ['Succeeded', 'Failed'], 180_000);
    assert.equal(once.status.phase, 'Succeeded', once.status.reason);
    // Always: after the power-off it runs again; the restart is counted in its durable record.
    const always = await call<Vmi>(client, 'GetVMI', { namespace: 'e2e', name: 'always' });
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
    const stillOnce = await call<Vmi>(client, 'GetVMI', { namespace: 'e2e', name: 'once' });
    assert.equal(stillOnce.status.phase, 'Succeeded', 'Once is never restarted');
    assert.equal(stillOnce.status.launcherPid, 0);
    for (const name of ['once', 'always']) await call(client, 'DeleteVMI', { namespace: 'e2e', name });
    await waitFor(async () => (await call<{ vmis: unknown[] }>(client, 'ListVMIs', { namespace: 'e2e' })).vmis.length === 0, 90_000, 'both deleted', 250);
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
    const { vmi } = await call<{ vmi: Vmi }>(client, 'SyncVMI', { manifest: JSON.stringify(full) });
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
    await call(client, 'DeleteVMI', { namespace: 'e2e', name: 'full' });
    await waitFor(() => !fs.existsSync(dir), 60_000, 'full removed', 200);
    assert.deepEqual(fs.readFileSync(base), baseBefore, 'the base image was never written');
  });

  it('a bad manifest: INVALID_ARGUMENT with every violation, nothing stored', async () => {
    const before = await call<{ vmis: unknown[]; revision: number }>(client, 'ListVMIs', {});
    const bad = JSON.stringify({ metadata: { name: 'Bad_Name' }, spec: { domain: { memory: { guest: 'lots' }, devices: { disks: [{ name: 'data' }] } } } });
    const err = await call(client, 'SyncVMI', { manifest: bad }).then(
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
    const afterList = await call<{ vmis: unknown[]; revision: number }>(client, 'ListVMIs', {});
    assert.equal(afterList.revision, before.revision, 'nothing changed');
    assert.equal(afterList.vmis.length, before.vmis.length);
  });
});
