/**
 * Claims with every part real: the daemon, a launcher, the private libvirtd and a QEMU (TCG)
 * guest. The tiny guest boots with three claim disks: a raw disk.img (filesystem mode, readOnly),
 * an ephemeral overlay on a qcow2 disk.img, and a block-mode claim whose `disk` node is a loop
 * device (made with losetup + mknod under the claim root). libvirt's live XML shows the file and
 * block sources QEMU opened. Run through scripts/test-libvirt.sh.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView, stageTinyImages, tinyVmi } from '../lib/daemon';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

const NS = 'claims';

describe('claims on a real QEMU guest', { timeout: 300_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let h: HandlerUnderTest;
  let loop = '';

  before(async () => {
    env = testEnv();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-claims-'));
    stageTinyImages(tmp, env);
    const root = path.join(tmp, 'state', 'volumes', NS);
    fs.mkdirSync(path.join(root, 'data'), { recursive: true });
    fs.writeFileSync(path.join(root, 'data', 'disk.img'), Buffer.alloc(4 * 2 ** 20));
    fs.mkdirSync(path.join(root, 'base'), { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(root, 'base', 'disk.img'), '16M']);
    // A block-mode claim: a loop device over a file, its node made under the claim root.
    const backing = path.join(tmp, 'loop.img');
    fs.writeFileSync(backing, Buffer.alloc(8 * 2 ** 20));
    loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
    const [major, minor] = execFileSync('stat', ['-c', '%t %T', loop], { encoding: 'utf8' }).trim().split(' ').map((x) => String(parseInt(x, 16)));
    fs.mkdirSync(path.join(root, 'blk'), { recursive: true });
    execFileSync('mknod', [path.join(root, 'blk', 'disk'), 'b', major!, minor!]);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: env.uri, nodeName: 'claims-node', waitLibvirt: true });
  });

  after(async () => {
    await h?.killLeftovers();
    if (loop) spawnSync('losetup', ['-d', loop]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('file (readOnly), ephemeral and block claims are the disks QEMU opened', async () => {
    const m = JSON.parse(tinyVmi('vm', NS)) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
    m.spec.domain.devices.disks = [{ name: 'data', disk: { bus: 'virtio' } }, { name: 'eph', disk: { bus: 'virtio' } }, { name: 'blk', disk: { bus: 'virtio' } }];
    m.spec.volumes = [
      { name: 'data', persistentVolumeClaim: { claimName: 'data', readOnly: true } },
      { name: 'eph', ephemeral: { persistentVolumeClaim: { claimName: 'base' } } },
      { name: 'blk', persistentVolumeClaim: { claimName: 'blk' } },
    ];
    const vmi = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: JSON.stringify(m) })).vmi;
    await h.waitPhase(NS, 'vm', ['Running'], 120_000);
    const xml = execFileSync('virsh', ['-c', env.uri, 'dumpxml', `${NS}_vm`], { encoding: 'utf8' });
    const root = fs.realpathSync(path.join(h.stateDir, 'volumes', NS));
    assert.match(xml, new RegExp(`<disk type='file' device='disk'>\\s*<driver name='qemu' type='raw'/>\\s*<source file='${root}/data/disk.img'[^>]*/>[\\s\\S]*?<readonly/>`));
    assert.match(xml, new RegExp(`<source file='${h.stateDir}/vmis/${vmi.uid}/disks/eph.qcow2'`));
    assert.match(xml, new RegExp(`<disk type='block' device='disk'>\\s*<driver name='qemu' type='raw'/>\\s*<source dev='${root}/blk/disk'`));
    await h.call('DeleteVMI', { namespace: NS, name: 'vm' });
    await waitFor(async () => h.call('GetVMI', { namespace: NS, name: 'vm' }).then(() => false, () => true), 60_000, 'vm deleted');
  });
});
