/**
 * The image store's user surface through the real daemon (libvirt's test driver) and vhctl: pull
 * with progress, list (table and json), import of an oci-archive for an air-gapped node, rm
 * refused while a VMI uses the image (naming it), gc; kernelBoot.container (the domain boots the
 * store's kernel and initrd); and a pull that stalls (a node:http proxy in front of the loopback
 * registry holds the blobs) while its VMI is deleted: the delete completes promptly.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { HandlerUnderTest, type VmiView, killEverything, makeRoot, sleep, testDriverVmi, waitFor } from '../lib/daemon';
import { runVhctl } from '../lib/vhctl';
import { buildImage, makeDisk, push, saveArchive } from '../images/oci-build';
import { TestRegistry } from '../images/registry';

const ROOT = makeRoot('vh-imgcli-');
const NS = 'imgcli';
let reg: TestRegistry;
let proxy: StallingProxy;
let d: HandlerUnderTest | null = null;
const digests: Record<string, string> = {};
const ARCHIVE = path.join(ROOT, 'air.oci.tar');

/** Forwards to the registry; while `stall` is on, blob GETs are held until release(). */
class StallingProxy {
  stall = false;
  private held: Array<() => void> = [];
  private constructor(private readonly server: http.Server, readonly host: string) {}

  static async start(target: string): Promise<StallingProxy> {
    const [thost, tport] = target.split(':') as [string, string];
    let self: StallingProxy | null = null;
    const server = http.createServer((req, res) => {
      const forward = (): void => {
        const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      };
      if (self?.stall && req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '')) self.held.push(forward);
      else forward();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new StallingProxy(server, `127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  get holding(): number {
    return this.held.length;
  }

  release(): void {
    this.stall = false;
    for (const f of this.held.splice(0)) f();
  }

  async stop(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

before(async () => {
  reg = await TestRegistry.start(ROOT);
  proxy = await StallingProxy.start(reg.host);
  const layout = path.join(ROOT, 'layout');
  const disk = path.join(ROOT, 'disk.qcow2');
  await makeDisk(disk, 'qcow2', 16);
  digests.disk = (await buildImage(layout, 'disk', [[{ name: 'disk/disk.qcow2', file: disk }]])).manifest.digest;
  await push(layout, 'disk', `${reg.host}/test/disk:1`);
  digests.kernel = (await buildImage(layout, 'kernel', [[{ name: 'boot/vmlinuz', data: randomBytes(8192) }, { name: 'boot/initramfs', data: randomBytes(4096) }]])).manifest.digest;
  await push(layout, 'kernel', `${reg.host}/test/kernel:1`);
  digests.slow = (await buildImage(layout, 'slow', [[{ name: 'disk/disk.img', data: randomBytes(1 << 20) }]])).manifest.digest;
  await push(layout, 'slow', `${reg.host}/test/slow:1`);
  digests.air = (await buildImage(layout, 'air', [[{ name: 'disk/disk.img', data: randomBytes(2 << 20) }]])).manifest.digest;
  await saveArchive(layout, 'air', ARCHIVE);
}, { timeout: 180_000 });

after(async () => {
  await d?.stop().catch(() => undefined);
  await killEverything(ROOT);
  await proxy?.stop();
  await reg?.stop();
  fs.rmSync(ROOT, { recursive: true, force: true });
});

function imageVmi(name: string, image: string): string {
  const m = testDriverVmi(name, NS) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
  m.spec.domain.devices.disks = [{ name: 'root', disk: { bus: 'virtio' } }];
  m.spec.volumes = [{ name: 'root', containerDisk: { image } }];
  return JSON.stringify(m);
}

function kernelBootVmi(name: string, image: string): string {
  const m = testDriverVmi(name, NS) as { spec: { domain: { firmware: unknown } } };
  m.spec.domain.firmware = { kernelBoot: { kernelArgs: 'console=ttyS0', container: { image, kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initramfs' } } };
  return JSON.stringify(m);
}

describe('vhctl image and the daemon', { timeout: 300_000 }, () => {
  test('pull, list, import, rm refused while in use, kernelBoot.container, a delete during a stalled pull, gc', async () => {
    d = await HandlerUnderTest.start({
      tmp: ROOT, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info',
      env: { VH_IMAGES_INSECURE_REGISTRIES: `${reg.host},${proxy.host}` },
    });
    const h = d;
    const vh = (...args: string[]): ReturnType<typeof runVhctl> => runVhctl([...args, '--socket', h.grpcSocket]);
    const diskRef = `${reg.host}/test/disk:1`;

    // 1. vhctl image pull: progress on stderr, the digest on stdout; a second pull is a store hit.
    const pulled = await vh('image', 'pull', diskRef);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, new RegExp(`^Pulled ${diskRef.replace(/\./g, '\\.')} ${digests.disk} \\(\\d`));
    assert.match(pulled.stderr, /Pulling image/);
    const again = await vh('image', 'pull', diskRef, '--policy', 'IfNotPresent');
    assert.match(again.stdout, /^Present /);

    // 2. vhctl image import: an oci-archive streamed to the daemon, tagged for VMIs to name.
    const imported = await vh('image', 'import', ARCHIVE, '--tag', 'registry:5000/air/disk:1');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, new RegExp(`^Imported registry:5000/air/disk:1 ${digests.air}`));
    assert.deepEqual(fs.readdirSync(path.join(h.stateDir, 'image-store', 'tmp')), [], 'nothing staged is left');

    // 3. A VMI on each: the pulled one (IfNotPresent) and the imported one (Never: air-gapped).
    await h.call('SyncVMI', { manifest: imageVmi('a', diskRef) });
    const air = JSON.parse(imageVmi('air', 'registry:5000/air/disk:1')) as { spec: { volumes: Array<{ containerDisk: Record<string, string> }> } };
    air.spec.volumes[0]!.containerDisk.imagePullPolicy = 'Never';
    await h.call('SyncVMI', { manifest: JSON.stringify(air) });
    await h.waitPhase(NS, 'a', ['Running'], 60_000);
    await h.waitPhase(NS, 'air', ['Running'], 60_000);

    // 4. list: table and json, with the VMIs using each image.
    const table = await vh('image', 'list');
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^REFERENCE\s+DIGEST\s+SIZE\s+IN-USE\s+AGE$/);
    assert.ok(lines.some((l) => l.startsWith(diskRef) && l.includes(digests.disk!.slice(7, 19)) && l.includes(`${NS}/a`)), table.stdout);
    const json = JSON.parse((await vh('image', 'list', '-o', 'json')).stdout) as Array<{ digest: string; references: string[]; inUseBy: string[] }>;
    assert.deepEqual(json.find((i) => i.digest === digests.air)?.inUseBy, [`${NS}/air`]);

    // 5. rm refused while a VMI uses the image, naming it; the image stays.
    const rm = await vh('image', 'rm', diskRef);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, new RegExp(`in use by VMI ${NS}/a`));
    assert.ok(fs.existsSync(path.join(h.stateDir, 'image-store', 'sha256', digests.disk!.slice(7))));

    // 6. kernelBoot.container: the domain boots the store's kernel and initrd.
    await h.call('SyncVMI', { manifest: kernelBootVmi('kb', `${reg.host}/test/kernel:1`) });
    await h.waitPhase(NS, 'kb', ['Running'], 60_000);
    const view = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/kb`)).body) as { domainXml: string; uid: string };
    const storeDir = path.join(h.stateDir, 'image-store', 'sha256', digests.kernel!.slice(7));
    const kernel = new RegExp(`<kernel>(${storeDir.replace(/[.]/g, '\\.')}/boot-[0-9a-f]{12}/kernel)</kernel>`).exec(view.domainXml);
    assert.ok(kernel, view.domainXml);
    assert.ok(view.domainXml.includes(`<initrd>${path.dirname(kernel[1]!)}/initrd</initrd>`), view.domainXml);
    assert.ok(view.domainXml.includes('<cmdline>console=ttyS0</cmdline>'), view.domainXml);
    assert.equal(fs.statSync(kernel[1]!).size, 8192);
    const rec = JSON.parse(fs.readFileSync(path.join(h.stateDir, 'vmis', view.uid, 'record.json'), 'utf8')) as { images?: string[]; imageDigests?: Record<string, string> };
    assert.deepEqual(rec.imageDigests, { '@kernelBoot': digests.kernel });

    // 7. A pull that stalls: the VMI waits Pending "Pulling image", other VMIs are served, and a
    //    delete completes while the blobs are still held.
    proxy.stall = true;
    const slowRef = `${proxy.host}/test/slow:1`;
    await h.call('SyncVMI', { manifest: imageVmi('slow', slowRef) });
    await waitFor('the slow pull to hold a blob', () => proxy.holding > 0 || undefined, 30_000);
    const pending = await waitFor('slow Pending pulling', async () => {
      const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'slow' });
      return v.status.reason.startsWith('Pulling image') ? v : undefined;
    }, 20_000);
    assert.equal(pending.status.phase, 'Pending');
    assert.equal(pending.status.reason, `Pulling image "${slowRef}"`);
    await h.call('SyncVMI', { manifest: imageVmi('b', diskRef) });
    await h.waitPhase(NS, 'b', ['Running'], 30_000); // the worker is not held by the pull
    const t0 = Date.now();
    await h.call('DeleteVMI', { namespace: NS, name: 'slow' });
    await waitFor('slow gone', async () => ((await h.call<{ vmis?: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).every((v) => v.name !== 'slow') || undefined, 15_000);
    const deleteMs = Date.now() - t0;
    assert.ok(proxy.holding > 0, 'the delete finished while the pull was still stalled');
    process.stdout.write(`# delete during a stalled pull: ${deleteMs} ms\n`);
    proxy.release();
    await waitFor('the stalled pull to finish into the store', () => h.out.split('\n').some((l) => l.includes('"msg":"image pulled"') && l.includes('/test/slow:1')) || undefined, 60_000);

    // 8. Delete the VMIs; gc removes every image now (no idle period).
    for (const name of ['a', 'air', 'kb', 'b']) await h.call('DeleteVMI', { namespace: NS, name });
    await waitFor('VMIs gone', async () => ((await h.call<{ vmis?: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).length === 0 || undefined, 60_000);
    const gc = await vh('image', 'gc');
    assert.equal(gc.code, 0, gc.stderr);
    assert.match(gc.stdout, /^4 image\(s\) removed, .* freed$/m);
    assert.equal(JSON.parse((await vh('image', 'list', '-o', 'json')).stdout).length, 0);
    const rmGone = await vh('image', 'rm', diskRef);
    assert.equal(rmGone.code, 1);
    assert.match(rmGone.stderr, /not found/);
  });

  test('a launcher re-adopted before its domain started resolves by the recorded digest, not the moved tag', async () => {
    const dir = path.join(ROOT, 'readopt');
    fs.mkdirSync(dir);
    fs.cpSync(path.join(ROOT, 'images'), path.join(dir, 'images'), { recursive: true });
    const layout = path.join(ROOT, 'layout-readopt');
    const disk = path.join(ROOT, 'moving.qcow2');
    await makeDisk(disk, 'qcow2', 8);
    const first = (await buildImage(layout, 'one', [[{ name: 'disk/disk.qcow2', file: disk }]])).manifest.digest;
    const ref = `${reg.host}/test/moving:1`;
    await push(layout, 'one', ref);
    const start = (failpoints?: string): Promise<HandlerUnderTest> => HandlerUnderTest.start({
      tmp: dir, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info', env: { VH_IMAGES_INSECURE_REGISTRIES: reg.host },
      seams: { vmiTiming: { registerTimeoutMs: 4000, readoptMs: 6000, livenessPollMs: 250 }, ...(failpoints ? { failpoints } : {}) },
    });
    // 1. The handler dies (kill -9) after the launcher registered, before the domain start was sent.
    const d1 = await start('launcher-registered');
    const m = JSON.parse(imageVmi('moving', ref)) as { spec: { volumes: Array<{ containerDisk: Record<string, string> }> } };
    m.spec.volumes[0]!.containerDisk.imagePullPolicy = 'Always';
    await d1.call('SyncVMI', { manifest: JSON.stringify(m) }).catch(() => undefined);
    const exit = await Promise.race([d1.exit, sleep(30_000).then(() => null)]);
    assert.equal(exit?.signal, 'SIGKILL', d1.tail(40));
    // 2. The tag moves to another image.
    fs.writeFileSync(path.join(ROOT, 'other.raw'), randomBytes(1 << 20));
    const second = (await buildImage(layout, 'two', [[{ name: 'disk/disk.img', file: path.join(ROOT, 'other.raw') }]])).manifest.digest;
    await push(layout, 'two', ref);
    assert.notEqual(first, second);
    // 3. The restarted handler re-adopts the launcher and starts the domain on the recorded digest.
    const d2 = await start();
    try {
      const v = await d2.waitPhase(NS, 'moving', ['Running'], 60_000);
      const rec = JSON.parse(fs.readFileSync(path.join(d2.stateDir, 'vmis', v.uid, 'record.json'), 'utf8')) as { imageDigests?: Record<string, string> };
      assert.deepEqual(rec.imageDigests, { root: first });
      assert.match(d2.out, /re-?adopt|adopted/i);
      const overlay = path.join(d2.stateDir, 'vmis', v.uid, 'disks', 'root.qcow2');
      const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', overlay], { encoding: 'utf8' })) as Record<string, unknown>;
      assert.equal(info['backing-filename'], path.join(d2.stateDir, 'image-store', 'sha256', first.slice(7), 'disk', 'disk.qcow2'));
      assert.ok(!fs.existsSync(path.join(d2.stateDir, 'image-store', 'sha256', second.slice(7))), 'the moved tag was not pulled');
      await d2.call('DeleteVMI', { namespace: NS, name: 'moving' });
      await waitFor('moving gone', async () => ((await d2.call<{ vmis?: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).length === 0 || undefined, 30_000);
    } finally {
      await d2.stop().catch(() => undefined);
      await killEverything(dir);
    }
  });
});
