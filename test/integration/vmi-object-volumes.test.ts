/**
 * Config volumes end to end, on a real daemon and launcher with libvirt's test driver: a VMI
 * with a configMap volume whose object is not on the node yet waits Pending with a reason naming
 * the object and where the node looked; once the object's files are written under the object
 * root it reaches Running, and the VMI's directory holds the ISO (read back with isoinfo: label
 * and bytes exact). The same VMI's config drive takes its user data from a Secret: the image
 * holds it, while the VMI view, its events, the record, every other file of the state directory
 * and the daemon's output never do.
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView, killEverything, makeRoot, testDriverVmi, waitFor } from '../lib/daemon';
import { isoFiles, isoRead, isoVolumeId } from '../lib/iso';

const ROOT = makeRoot('vh-objvol-');
const NS = 'objs';
const SECRET = 'pa55-word-never-shown';
let d: HandlerUnderTest | null = null;

after(async () => {
  await d?.stop().catch(() => undefined);
  await killEverything(ROOT);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

function objectVmi(name: string): string {
  const m = testDriverVmi(name, NS) as { metadata: Record<string, unknown>; spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
  m.metadata.labels = { app: 'web' };
  m.spec.domain.devices.disks = [{ name: 'cfg', disk: {} }, { name: 'drive', cdrom: {} }, { name: 'meta', disk: {} }];
  m.spec.volumes = [
    { name: 'cfg', configMap: { name: 'app-config', volumeLabel: 'APPCFG' } },
    { name: 'drive', cloudInitConfigDrive: { secretRef: { name: 'user-data' } } },
    { name: 'meta', downwardAPI: { fields: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] } },
  ];
  return JSON.stringify(m);
}

/** Writes one object the way an operator (or a syncing DaemonSet) does: directories 0700, files 0600. */
function writeObject(stateDir: string, kind: string, name: string, keys: Record<string, string>): void {
  const dir = path.join(stateDir, 'objects', NS, kind, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [k, v] of Object.entries(keys)) fs.writeFileSync(path.join(dir, k), v, { mode: 0o600 });
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('object volumes', { timeout: 120_000 }, () => {
  test('Pending while the ConfigMap is missing, Running once written; the ISOs hold the objects, nothing else holds the Secret', async () => {
    d = await HandlerUnderTest.start({ tmp: ROOT, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'debug' });
    const h = d;
    writeObject(h.stateDir, 'secrets', 'user-data', { userdata: `#cloud-config\npassword: ${SECRET}\n` });

    const created = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: objectVmi('web') })).vmi;
    const looked = path.join(h.stateDir, 'objects', NS, 'configmaps', 'app-config');
    const pending = await waitFor('Pending on the ConfigMap', async () => {
      const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'web' });
      return v.status.reason.includes('app-config') ? v : undefined;
    }, 30_000);
    assert.equal(pending.status.phase, 'Pending');
    assert.equal(pending.status.reason, `ConfigMap ${NS}/app-config (volume cfg) not found: this node looked for it in ${looked}`);
    assert.equal(pending.status.launcherPid, 0, 'no launcher while waiting');
    const ev = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/web/events`)).body) as { items: Array<{ reason: string; message: string }> };
    assert.ok(ev.items.some((e) => e.reason === 'FailedMount' && e.message === 'MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found'), JSON.stringify(ev.items));

    writeObject(h.stateDir, 'configmaps', 'app-config', { 'app.properties': 'color=blue\n', 'empty': '' });
    await h.waitPhase(NS, 'web', ['Running'], 30_000);

    const disks = path.join(h.stateDir, 'vmis', created.uid, 'disks');
    const cfg = path.join(disks, 'cfg.iso');
    assert.equal(isoVolumeId(cfg), 'APPCFG');
    assert.deepEqual(isoFiles(cfg), new Map([['/app.properties', 0o644], ['/empty', 0o644]]));
    assert.equal(isoRead(cfg, '/app.properties').toString(), 'color=blue\n');
    const drive = path.join(disks, 'drive-configdrive.iso');
    assert.equal(isoVolumeId(drive), 'config-2');
    assert.equal(isoRead(drive, '/openstack/latest/user_data').toString(), `#cloud-config\npassword: ${SECRET}\n`);
    assert.deepEqual(JSON.parse(isoRead(drive, '/openstack/latest/meta_data.json').toString()), { instance_id: `web.${NS}`, hostname: 'web', uuid: created.uid });
    const meta = path.join(disks, 'meta.iso');
    assert.equal(isoVolumeId(meta), 'cfgdata');
    assert.equal(isoRead(meta, '/labels').toString(), 'app="web"');
    assert.equal(isoRead(meta, '/name').toString(), 'web');
    for (const f of [cfg, drive, meta]) assert.equal(fs.statSync(f).mode & 0o777, 0o600);

    // The Secret is on the image only: not in the view, the events, the record or any other state file, nor in the logs.
    const view = await h.http('GET', `/v1/vmis/${NS}/web`);
    const events = await h.http('GET', `/v1/vmis/${NS}/web/events`);
    assert.doesNotMatch(view.body + events.body, new RegExp(SECRET));
    const leaks = filesUnder(h.stateDir).filter((f) => f !== drive && !f.startsWith(path.join(h.stateDir, 'objects')) && fs.readFileSync(f).includes(SECRET));
    assert.deepEqual(leaks, []);
    assert.doesNotMatch(h.out, new RegExp(SECRET));

    await h.call('DeleteVMI', { namespace: NS, name: 'web' });
    await waitFor('VMI gone', async () => ((await h.call<{ vmis: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).length === 0 || undefined, 60_000);
    assert.equal(fs.existsSync(drive), false, 'the images go with the VMI');
  });
});
