/**
 * Config volumes on the real private libvirtd with a QEMU (TCG) guest: a VMI with a ConfigMap
 * as a virtio disk and a cloud-init config drive (user data from a Secret) as a SATA cdrom
 * reaches Running and boots; the live domain has both ISO files attached (the cdrom read-only),
 * QEMU has them open at their full size (virsh domblkinfo), and their content is what the
 * objects hold (isoinfo). Run through scripts/test-libvirt.sh.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView, stageTinyImages, tinyVmi } from '../lib/daemon';
import { isoRead, isoVolumeId } from '../lib/iso';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

const NS = 'cfgvol';

describe('config volumes on a real QEMU guest', { timeout: 600_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let h: HandlerUnderTest;

  before(async () => {
    env = testEnv();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-cfgvol-'));
    stageTinyImages(tmp, env);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: env.uri, nodeName: 'cfgvol-node', waitLibvirt: true });
  });

  after(async () => {
    await h?.killLeftovers();
    await h?.stop().catch(() => undefined);
    if (process.env.VHTEST_KEEP) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('a ConfigMap disk and a config drive cdrom: attached, opened by QEMU, holding the objects', async () => {
    const put = (rel: string, data: string): void => {
      const f = path.join(h.stateDir, 'objects', NS, rel);
      fs.mkdirSync(path.dirname(f), { recursive: true, mode: 0o700 });
      fs.writeFileSync(f, data, { mode: 0o600 });
    };
    put('configmaps/app/app.properties', 'color=blue\n');
    put('secrets/ud/userData', '#cloud-config\nhostname: cfgvol\n');
    const m = JSON.parse(tinyVmi('web', NS)) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
    m.spec.domain.devices.disks = [{ name: 'cfg', disk: { bus: 'virtio' } }, { name: 'drive', cdrom: { bus: 'sata' } }];
    m.spec.volumes = [{ name: 'cfg', configMap: { name: 'app' } }, { name: 'drive', cloudInitConfigDrive: { secretRef: { name: 'ud' } } }];
    const { vmi } = await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: JSON.stringify(m) });
    await h.waitPhase(NS, 'web', ['Running'], 120_000);
    const dir = path.join(h.stateDir, 'vmis', vmi.uid);
    await waitFor(() => fs.existsSync(path.join(dir, 'serial.log')) && fs.readFileSync(path.join(dir, 'serial.log'), 'utf8').includes('VH-GUEST-READY'), 120_000, 'guest marker');
    const cfg = path.join(dir, 'disks', 'cfg.iso');
    const drive = path.join(dir, 'disks', 'drive-configdrive.iso');
    assert.equal(isoVolumeId(cfg), 'cfgdata');
    assert.equal(isoRead(cfg, '/app.properties').toString(), 'color=blue\n');
    assert.equal(isoVolumeId(drive), 'config-2');
    assert.equal(isoRead(drive, '/openstack/latest/user_data').toString(), '#cloud-config\nhostname: cfgvol\n');

    const domain = `${NS}_web`;
    const list = spawnSync('virsh', ['-q', '-c', env.uri, 'domblklist', '--details', domain], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    const rows = list.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
    const byFile = new Map(rows.map((r) => [r[3], { device: r[1], target: r[2] }]));
    assert.deepEqual(byFile.get(cfg)?.device, 'disk', list.stdout);
    assert.deepEqual(byFile.get(drive)?.device, 'cdrom', list.stdout);
    for (const f of [cfg, drive]) {
      const info = spawnSync('virsh', ['-c', env.uri, 'domblkinfo', domain, byFile.get(f)?.target as string], { encoding: 'utf8' });
      assert.equal(info.status, 0, info.stderr);
      assert.match(info.stdout, new RegExp(`Capacity:\\s+${fs.statSync(f).size}\\b`), `QEMU has ${f} open: ${info.stdout}`);
    }
    const view = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/web`)).body) as { domainXml: string };
    const cdrom = /<disk type=['"]file['"] device=['"]cdrom['"]>[\s\S]*?<\/disk>/.exec(view.domainXml)?.[0] ?? '';
    assert.match(cdrom, /<readonly\/>/, 'the cdrom is read-only');
    assert.match(cdrom, /type=['"]raw['"]/);

    await h.call('DeleteVMI', { namespace: NS, name: 'web' });
    await waitFor(() => !fs.existsSync(dir), 60_000, 'VMI removed', 200);
  });
});
