/**
 * A node without a reachable libvirtd: the daemon runs with libvirt.uri=off, so each VMI's
 * launcher runs libvirt's embedded QEMU driver (qemu:///embed?root=<runDir>/e/<12 hex of the uid>) in-process.
 * create -> Running -> console marker -> kill -9 of the launcher -> Failed with a reason, the
 * orphaned QEMU killed, restarted (runStrategy Always) -> delete -> nothing left.
 * Run through scripts/test-libvirt.sh (only for the tiny guest and root; no libvirtd is used).
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerUnderTest, qemuPids, stageTinyImages } from '../lib/daemon';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

describe('VMIs through the embedded libvirt driver (no libvirtd)', { timeout: 300_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let h: HandlerUnderTest;

  before(async () => {
    env = testEnv();
    // Short: the embedded driver's sockets live below <runDir>/e/<12 hex> (107-byte limit).
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhe-'));
    stageTinyImages(tmp, env);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: 'off', nodeName: 'embed-node' });
  });

  after(async () => {
    // Launchers outlive the daemon by design: kill those of VMIs a failed run left behind.
    await h?.killLeftovers();
    for (const pid of qemuPids('embed_tiny')) process.kill(pid, 'SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('runs, survives a launcher kill -9 by restarting cleanly, and is deleted without leftovers', async () => {
    const vhctl = path.resolve(__dirname, '../../..', 'dist', 'vhctl.cjs');
    const manifest = path.join(tmp, 'tiny.json');
    fs.writeFileSync(manifest, JSON.stringify({
      metadata: { name: 'tiny', namespace: 'embed' },
      spec: { runStrategy: 'Always', terminationGracePeriodSeconds: 1, domain: { memory: { guest: '128Mi' }, machine: { type: 'pc' }, firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz', kernelArgs: 'panic=-1' } } } },
    }));
    const created = await new Promise<number | null>((resolve) => spawn(process.execPath, [vhctl, '--socket', path.join(tmp, 'run', 'grpc.sock'), 'create', '-f', manifest], { stdio: 'ignore' }).on('exit', resolve));
    assert.equal(created, 0);
    type View = { uid: string; status: { phase: string; reason: string; launcherPid: number }; domainXml: string | null };
    const view = async (): Promise<View> => JSON.parse((await h.http('GET', '/v1/vmis/embed/tiny')).body) as View;
    await waitFor(async () => (await view()).status.phase === 'Running', 120_000, 'Running', 250).catch(async (e: Error) => {
      const launchers = path.join(tmp, 'state', 'vmis');
      const logs = fs.existsSync(launchers) ? fs.readdirSync(launchers).map((u) => { try { return fs.readFileSync(path.join(launchers, u, 'launcher.log'), 'utf8').slice(-2000); } catch { return ''; } }).join('\n') : '';
      throw new Error(`${e.message}; view ${JSON.stringify(await view().catch(() => null))}\n${h.tail()}\nlauncher: ${logs}`);
    });
    const v = await view();
    const dir = path.join(tmp, 'state', 'vmis', v.uid);
    await waitFor(() => fs.existsSync(path.join(dir, 'serial.log')) && fs.readFileSync(path.join(dir, 'serial.log'), 'utf8').includes('VH-GUEST-READY'), 120_000, 'guest marker');
    const embedRoot = path.join(tmp, 'run', 'e', v.uid.replace(/-/g, '').slice(0, 12));
    assert.ok(fs.existsSync(path.join(embedRoot, 'etc', 'qemu.conf')), 'the embedded driver root is under the runtime directory');
    const qemu1 = qemuPids('embed_tiny');
    assert.equal(qemu1.length, 1, 'one QEMU for the domain');

    // kill -9 of the launcher: the embedded driver dies with it, its QEMU would be orphaned.
    const launcher = v.status.launcherPid;
    process.kill(launcher, 'SIGKILL');
    await waitFor(() => !qemu1.some((p) => fs.existsSync(`/proc/${p}`)), 15_000, 'the orphaned QEMU killed');
    await waitFor(async () => {
      const x = await view();
      return x.status.phase === 'Running' && x.status.launcherPid !== launcher;
    }, 120_000, 'restarted by runStrategy Always', 250);
    const events = (JSON.parse((await h.http('GET', '/v1/vmis/embed/tiny')).body) as { events: Array<{ reason: string; message: string }> }).events;
    assert.ok(events.some((ev) => ev.reason === 'Failed' && /launcher (killed by SIGKILL|exited \(pid \d+ gone\))/.test(ev.message)), JSON.stringify(events));
    assert.ok(events.some((ev) => ev.reason === 'LeftoverCleaned'), 'the orphaned QEMU was cleaned up by the handler');

    await h.http('GET', '/v1/vmis'); // still serving
    const del = await new Promise<number | null>((resolve) => spawn(process.execPath, [vhctl, '--socket', path.join(tmp, 'run', 'grpc.sock'), 'delete', 'tiny', '-n', 'embed', '--wait', '--timeout', '60s'], { stdio: 'ignore' }).on('exit', resolve));
    assert.equal(del, 0);
    assert.equal(fs.existsSync(dir), false);
    assert.equal(fs.existsSync(embedRoot), false, 'the embedded driver root is removed with the VMI');
    await waitFor(() => qemuPids('embed_tiny').length === 0, 10_000, 'no QEMU left');
  });
});
