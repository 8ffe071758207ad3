/**
 * virt-launcher (dist/src/launcher/main.js) through a real libvirtd: a fake handler (grpc-js
 * server here) starts the tiny QEMU guest through the launcher, with a prepared qcow2 data disk
 * and a cloud-init seed ISO attached; the launcher is SIGKILLed and the guest keeps running; a
 * second launcher (new spawn token) adopts it; teardown removes domain and disks. Run through
 * scripts/test-libvirt.sh.
 */
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FakeHandler } from '../unit/fake-launcher-handler';
import { Connection } from '../../src/libvirt/connection';
import { type DiskPrep, diskPrepToWire } from '../../src/launcher-protocol/messages';
import {
  type LibvirtTestEnv,
  cleanupDomain,
  daemonStatus,
  guestName,
  isNoDomain,
  makeRunDir,
  removeRunDir,
  startDaemon,
  stopDaemon,
  testEnv,
  tinyGuestXml,
  uniqueSuffix,
  virshRemoveDomain,
  waitFor,
  waitForSerial,
} from './guest';

const LAUNCHER = path.resolve(__dirname, '../../src/launcher/main.js');
const UID = '0b7e4a52-3c1d-4e8f-a9b6-2d5c7e1f3a90';
const BOOT_TIMEOUT_MS = 120_000;
const READY = 'VH-GUEST-READY';


function launch(args: string[], token: string): { child: ChildProcess; lines: () => Array<Record<string, any>>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [LAUNCHER, ...args], { env: { ...process.env, VH_LAUNCHER_TOKEN: token }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const lines = (): Array<Record<string, any>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, any>);
  return { child, lines, exit };
}

describe('virt-launcher on a real libvirtd (QEMU TCG guest)', () => {
  const name = guestName(uniqueSuffix('launcher'));
  let env: LibvirtTestEnv;
  let runDir: string | undefined;
  let conn: Connection | undefined;
  let fake: FakeHandler | undefined;
  const children: ChildProcess[] = [];

  before(async () => {
    env = testEnv();
    runDir = await makeRunDir('launcher');
    conn = await Connection.open(env.uri, { lanes: 1 });
    fake = new FakeHandler(path.join(runDir, 'handler.sock'), UID, '', undefined, 1000);
    await fake.start();
  });

  after(async () => {
    // A failure between stopDaemon and startDaemon must not leave the next suites without libvirtd.
    if ((await daemonStatus(env)) !== 'running') await startDaemon(env);
    if (!conn) conn = await Connection.open(env.uri, { lanes: 1 }).catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    const errors = await cleanupDomain(conn, name);
    if (errors.length > 0) await virshRemoveDomain(env, name);
    await conn?.close();
    await fake?.stop();
    await removeRunDir(runDir);
  });

  it('boots the guest, survives SIGKILL of the launcher, is adopted by a new launcher and torn down', { timeout: 300_000 }, async () => {
    const dir = runDir as string;
    const h = fake as FakeHandler;
    const serial = path.join(dir, 'serial.log');
    const disks: DiskPrep[] = [
      { kind: 'sparse', disk: 'data', path: path.join(dir, 'disks/data.qcow2'), sizeBytes: 32 << 20 },
      { kind: 'cloudInit', disk: 'cloudinit', path: path.join(dir, 'cloud-init/seed.iso'), userData: '#cloud-config\n', metaData: 'instance-id: launcher\n', networkData: null },
    ];
    const deviceXml =
      `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disks[0]!.path}'/><target dev='vda' bus='virtio'/></disk>` +
      `<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='${disks[1]!.path}'/><target dev='hdc' bus='ide'/><readonly/></disk>`;
    const xml = tinyGuestXml({ name, kernel: env.kernel, initrd: env.initrd, serialPath: serial }).replace('<devices>', `<devices>${deviceXml}`);
    const start = { start: { domainXml: xml, disks: disks.map(diskPrepToWire), libvirtUri: env.uri } };
    const args = ['--vmi-uid', UID, '--handler-socket', h.socket, '--vmi-dir', dir, '--log-level', 'debug'];

    // 10 first launcher: register, start, boot
    h.expectSpawn('spawn-1');
    const t0 = Date.now();
    const l1 = launch(args, 'spawn-1');
    children.push(l1.child);
    const reg1 = await h.waitFor((r) => !!r.msg.register, 15_000, 'first Register');
    const registerMs = reg1.at - t0;
    const tStart = Date.now();
    const started = await h.command(start);
    assert.deepEqual(started, { id: started.id, ok: true, error: '', stats: null });
    const running = await h.waitFor((r) => r.msg.status?.state === 'running' && !!r.msg.status.domainXml, 30_000, 'running status with XML');
    const startMs = running.at - tStart;
    assert.match(running.msg.status.domainXml, /<disk type='file' device='cdrom'>/);
    const uuid = running.msg.status.domainUuid;
    const boot = await waitForSerial(serial, READY, BOOT_TIMEOUT_MS);
    const dataIno = fs.statSync(disks[0]!.path).ino;

    // 20 SIGKILL: QEMU stays under libvirtd
    l1.child.kill('SIGKILL');
    await l1.exit;
    await new Promise((r) => setTimeout(r, 1000));
    const dom = await (conn as Connection).lookupByName(name);
    try {
      assert.equal((await dom.getState()).state, 'running', 'the guest outlives its launcher');
    } finally {
      await dom.free();
    }
    const before2 = fs.readFileSync(serial, 'utf8').length;
    await waitFor(() => fs.readFileSync(serial, 'utf8').length > before2, 5_000, 'the guest still writing to its serial port');

    // 30 second launcher, new token: adopts the running domain
    h.expectSpawn('spawn-2');
    const mark = h.received.length;
    const l2 = launch(args, 'spawn-2');
    children.push(l2.child);
    const reg2 = await h.waitFor((r) => !!r.msg.register, 15_000, 'second Register', mark);
    assert.equal(reg2.msg.register.token, 'spawn-2');
    assert.equal(reg2.msg.register.pid, l2.child.pid);
    const tAdopt = Date.now();
    const adopted = await h.command(start);
    assert.deepEqual(adopted, { id: adopted.id, ok: true, error: '', stats: null });
    const st2 = await h.waitFor((r) => r.msg.status?.state === 'running' && r.stream === reg2.stream && !!r.msg.status.domainXml, 15_000, 'running status after adoption', mark);
    const adoptMs = st2.at - tAdopt;
    assert.equal(st2.msg.status.domainUuid, uuid);
    assert.ok(l2.lines().some((x) => x.msg === 'adopted the running domain'), 'the log says it adopted');
    assert.equal(fs.statSync(disks[0]!.path).ino, dataIno, 'the data disk was kept, not recreated');
    // Still the same QEMU: the guest did not reboot (one READY marker only).
    assert.equal(fs.readFileSync(serial, 'utf8').split(READY).length - 1, 1);

    // 35 libvirtd restarts under the launcher: status reports it, then recovers; the guest runs on
    const m3 = h.received.length;
    const tStop = Date.now();
    await stopDaemon(env);
    const down = await h.waitFor((r) => /^libvirt unavailable: /.test(r.msg.status?.error ?? ''), 30_000, 'libvirt unavailable status', m3);
    const noticeMs = down.at - tStop;
    await (conn as Connection).close().catch(() => undefined);
    conn = undefined;
    await startDaemon(env);
    const tUp = Date.now();
    const m4 = h.received.indexOf(down);
    const back = await h.waitFor((r) => r.msg.status?.state === 'running' && r.msg.status.error === '', 60_000, 'running status after libvirtd restart', m4 + 1);
    const recoverMs = back.at - tUp;
    assert.equal(back.msg.status.domainUuid, uuid);
    conn = await Connection.open(env.uri, { lanes: 1 });

    // 38 Shutdown: answered at once; the tiny guest ignores ACPI, so the grace period ends in destroy
    const m5 = h.received.length;
    const tShut = Date.now();
    const shut = await h.command({ shutdown: { gracePeriodSeconds: 2 } });
    assert.deepEqual(shut, { id: shut.id, ok: true, error: '', stats: null });
    assert.ok(Date.now() - tShut < 2000, 'the result does not wait for the grace period');
    // QEMU reports SHUTDOWN/host just before STOPPED/destroyed, and the status sent for the
    // first may already read shutoff: wait for the destroy itself.
    const offSt = await h.waitFor((r) => r.msg.status?.lastEvent === 'STOPPED/destroyed', 20_000, 'STOPPED/destroyed after the grace period', m5);
    const shutdownMs = offSt.at - tShut;
    assert.ok(shutdownMs >= 2000, `destroyed only after the grace period (${shutdownMs} ms)`);
    assert.equal(offSt.msg.status.state, 'shutoff');

    // 40 teardown: domain destroyed and undefined, disks removed, launcher exits 0
    const torn = await h.command({ teardown: {} });
    assert.deepEqual(torn, { id: torn.id, ok: true, error: '', stats: null });
    assert.equal(await l2.exit, 0);
    await assert.rejects((conn as Connection).lookupByName(name), (e) => isNoDomain(e));
    for (const d of disks) assert.equal(fs.existsSync(d.path), false, `${d.path} removed`);
    console.log(`launcher (real libvirtd): spawn->Register ${registerMs} ms, start->running ${startMs} ms, boot->READY ${boot.ms} ms, adopt->running ${adoptMs} ms, libvirtd stop->status ${noticeMs} ms, libvirtd up->running status ${recoverMs} ms, shutdown(grace 2 s)->shutoff ${shutdownMs} ms`);
  });
});
