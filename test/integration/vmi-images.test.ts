/**
 * containerDisk.image end to end (issue 11): a loopback docker-registry holding a tiny qcow2
 * containerDisk (built and pushed as test/images/ does), the daemon on libvirt's test driver
 * with images.insecureRegistries pointing at it. A VMI naming the image reaches Running with
 * kubelet's Pulling/Pulled events, its record names the digest, its overlay is backed by the
 * store's base; a second VMI with the same image pulls nothing; a missing tag waits Pending
 * (ImagePullBackOff); deleting the VMIs removes the overlays and keeps the base, which the GC at
 * the next start (test seam: min idle 0) removes once no record names it.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView, killEverything, makeRoot, testDriverVmi, waitFor } from '../lib/daemon';
import { buildImage, makeDisk, push } from '../images/oci-build';
import { TestRegistry } from '../images/registry';

const ROOT = makeRoot('vh-img-');
const NS = 'img';
let reg: TestRegistry;
let digest = '';
let d: HandlerUnderTest | null = null;

before(async () => {
  reg = await TestRegistry.start(ROOT);
  const layout = path.join(ROOT, 'layout');
  const disk = path.join(ROOT, 'disk.qcow2');
  await makeDisk(disk, 'qcow2', 16);
  const built = await buildImage(layout, 'disk1', [[{ name: 'disk', type: 'directory' }, { name: 'disk/disk.qcow2', file: disk }]]);
  digest = built.manifest.digest;
  await push(layout, 'disk1', `${reg.host}/test/disk:1`);
}, { timeout: 180_000 });

after(async () => {
  await d?.stop().catch(() => undefined);
  await killEverything(ROOT);
  await reg?.stop();
  fs.rmSync(ROOT, { recursive: true, force: true });
});

interface Event {
  type: string;
  reason: string;
  message: string;
}

function imageVmi(name: string, image: string): string {
  const m = testDriverVmi(name, NS) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
  m.spec.domain.devices.disks = [{ name: 'root', disk: { bus: 'virtio' } }];
  m.spec.volumes = [{ name: 'root', containerDisk: { image } }];
  return JSON.stringify(m);
}

async function events(h: HandlerUnderTest, name: string): Promise<Event[]> {
  const r = await h.http('GET', `/v1/vmis/${NS}/${name}/events`);
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as { items: Event[] }).items;
}

function start(): Promise<HandlerUnderTest> {
  return HandlerUnderTest.start({
    tmp: ROOT, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info',
    env: { VH_IMAGES_INSECURE_REGISTRIES: reg.host },
    seams: { imageGc: { minIdleMs: 0 } },
  });
}

describe('containerDisk.image', { timeout: 240_000 }, () => {
  test('pulled once, backs the overlays, kept while named by a record, collected after', async () => {
    d = await start();
    const h = d;
    const image = `${reg.host}/test/disk:1`;
    const storeBase = path.join(h.stateDir, 'image-store', 'sha256', digest.slice(7), 'disk', 'disk.qcow2');

    // 1. The first VMI pulls the image and runs on an overlay of the store's base.
    const a = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: imageVmi('a', image) })).vmi;
    await h.waitPhase(NS, 'a', ['Running'], 60_000);
    const evA = await events(h, 'a');
    assert.ok(evA.some((e) => e.reason === 'Pulling' && e.message === `Pulling image "${image}"`), JSON.stringify(evA));
    const pulled = evA.find((e) => e.reason === 'Pulled');
    assert.match(pulled?.message ?? '', new RegExp(`^Successfully pulled image "${image.replace(/\./g, '\\.')}" \\(${digest}, \\d+ bytes\\) in \\d+ ms$`));
    const record = JSON.parse(fs.readFileSync(path.join(h.stateDir, 'vmis', a.uid, 'record.json'), 'utf8')) as { images?: string[] };
    assert.deepEqual(record.images, [digest]);
    const overlayA = path.join(h.stateDir, 'vmis', a.uid, 'disks', 'root.qcow2');
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', overlayA], { encoding: 'utf8' })) as Record<string, unknown>;
    assert.equal(info.format, 'qcow2');
    assert.equal(info['backing-filename'], storeBase);
    assert.equal(info['backing-filename-format'], 'qcow2');

    // 2. A second VMI with the same image: found in the store, no second pull.
    const b = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: imageVmi('b', image) })).vmi;
    await h.waitPhase(NS, 'b', ['Running'], 60_000);
    const evB = await events(h, 'b');
    assert.ok(!evB.some((e) => e.reason === 'Pulling'), JSON.stringify(evB));
    assert.ok(evB.some((e) => e.reason === 'Pulled' && e.message === `Container image "${image}" already present on machine (${digest})`), JSON.stringify(evB));
    assert.equal(h.out.split('\n').filter((l) => l.includes('"msg":"image pull failed"')).length, 0);

    // 3. A tag the registry does not have: Pending, kubelet's ImagePullBackOff, no launcher.
    await h.call('SyncVMI', { manifest: imageVmi('missing', `${reg.host}/test/disk:nope`) });
    const missing = await waitFor('missing in ImagePullBackOff', async () => {
      const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'missing' });
      return v.status.reason.startsWith('ImagePullBackOff: ') ? v : undefined;
    }, 60_000);
    assert.equal(missing.status.phase, 'Pending');
    assert.equal(missing.status.launcherPid, 0);
    assert.ok((await events(h, 'missing')).some((e) => e.type === 'Warning' && e.reason === 'Failed' && e.message.startsWith(`Failed to pull image "${reg.host}/test/disk:nope"`)));

    // 4. Deleting removes the overlays; the base stays (the store's, not the VMI's).
    for (const name of ['a', 'b', 'missing']) await h.call('DeleteVMI', { namespace: NS, name });
    await waitFor('VMIs gone', async () => ((await h.call<{ vmis: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).length === 0 || undefined, 60_000);
    assert.ok(!fs.existsSync(overlayA) && !fs.existsSync(path.join(h.stateDir, 'vmis', b.uid)), 'overlays removed with their VMIs');
    assert.ok(fs.existsSync(storeBase), 'the base stays in the store');

    // 5. The GC at the next start (min idle 0 through the test seam): no record names it, it goes.
    await h.restart();
    await waitFor('image collected', () => !fs.existsSync(storeBase) || undefined, 20_000);
    assert.match(h.out, /"msg":"image gc"/);
  });
});
