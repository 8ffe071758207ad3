/**
 * virthandler.v1.ImageService through a real GrpcServer on a unix socket, on an ImageStore in a
 * temp dir and a loopback registry (Debian's docker-registry): ListImages with the VMIs using an
 * image, PullImage's progress stream and result, ImportImage of a good archive in many chunks and
 * of hostile ones (refused with their reason, the store unchanged, nothing staged left behind),
 * RemoveImage refused while a VMI uses the image (naming it), GcImages.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { imageServiceImplementation } from '../../src/grpc/image-service';
import { loadProtos } from '../../src/grpc/proto';
import { GrpcServer, servedOverTcp } from '../../src/grpc/server';
import { ImageStore } from '../../src/images/image-store';
import { buildImage, push, saveArchive, type Entry } from './oci-build';
import { TestRegistry } from './registry';

const execFileP = promisify(execFile);
const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-imgsvc-'));
const LAYOUT = path.join(ROOT, 'layout');
const SOCKET = path.join(ROOT, 'grpc.sock');
const log = pino({ level: 'silent' });
let reg: TestRegistry;
let store: ImageStore;
let server: GrpcServer;
let client: grpc.Client;
const users = new Map<string, string[]>();
const archives: Record<string, { file: string; digest: string }> = {};
let goodLayer = '';

type Any = Record<string, any>;

function call<T = Any>(method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: object, o: object, cb: (e: grpc.ServiceError | null, v?: T) => void) => void>)[method]!.call(client, req, { deadline: Date.now() + 60_000 }, (e, v) => (e ? reject(e) : resolve(v as T)));
  });
}

function pull(req: object): Promise<Any[]> {
  return new Promise((resolve, reject) => {
    const events: Any[] = [];
    const s = (client as unknown as { PullImage(r: object): grpc.ClientReadableStream<Any> }).PullImage(req);
    s.on('data', (e: Any) => events.push(e));
    s.on('error', reject);
    s.on('end', () => resolve(events));
  });
}

/** Streams `messages` (metadata first, then chunks) to ImportImage. */
function importImage(messages: object[]): Promise<Any> {
  return new Promise((resolve, reject) => {
    const s = (client as unknown as { ImportImage(cb: (e: grpc.ServiceError | null, r?: Any) => void): grpc.ClientWritableStream<object> }).ImportImage((e, r) => (e ? reject(e) : resolve(r as Any)));
    for (const m of messages) s.write(m);
    s.end();
  });
}

function chunksOf(file: string, size: number): object[] {
  const b = fs.readFileSync(file);
  const out: object[] = [];
  for (let i = 0; i < b.length; i += size) out.push({ chunk: b.subarray(i, i + size) });
  return out;
}

async function rejectsCode(p: Promise<unknown>, code: grpc.status, re: RegExp): Promise<void> {
  const e = (await p.then(() => null, (x: unknown) => x)) as grpc.ServiceError | null;
  assert.ok(e, 'expected the call to fail');
  assert.equal(e.code, code, `${grpc.status[e.code]}: ${e.details}`);
  assert.match(e.details, re);
}

function storeFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (path.relative(store.root, p) === 'skopeo') continue;
      out.push(path.relative(store.root, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(store.root);
  return out.sort();
}

async function archive(tag: string, layers: Entry[][]): Promise<void> {
  const r = await buildImage(LAYOUT, tag, layers);
  if (tag === 'good') goodLayer = r.layers[0]!.digest;
  const file = path.join(ROOT, `${tag}.oci.tar`);
  await saveArchive(LAYOUT, tag, file);
  archives[tag] = { file, digest: r.manifest.digest };
}

before(async () => {
  reg = await TestRegistry.start(ROOT);
  const disk = { name: 'disk/disk.img', data: randomBytes(3 << 20) };
  await archive('good', [[disk]]);
  await archive('dotdot', [[{ name: '../../etc/cron.d/evil', data: Buffer.from('x') }, disk]]);
  await archive('device', [[{ name: 'dev/sda', type: 'block-device' }, disk]]);
  await archive('kernel', [[{ name: 'boot/vmlinuz', data: randomBytes(4096) }, { name: 'boot/initramfs', data: randomBytes(2048) }]]);
  await buildImage(LAYOUT, 'remote', [[{ name: 'disk/disk.img', data: randomBytes(2 << 20) }]]);
  await push(LAYOUT, 'remote', `${reg.host}/vh/remote:1`);
  store = new ImageStore(path.join(ROOT, 'store'), log, { insecureRegistries: [reg.host], maxImageSize: 32 << 20 });
  server = new GrpcServer({
    socketPath: SOCKET,
    logger: log,
    nodeInfo: () => null,
    services: () => [{ definition: loadProtos().imageService, implementation: imageServiceImplementation({ store, users: () => users, log }) }],
  });
  await server.start();
  client = new (loadProtos().ImageClient)(`unix:${SOCKET}`, grpc.credentials.createInsecure());
}, { timeout: 120_000 });

after(async () => {
  client?.close();
  await server?.shutdown(1000);
  await reg?.stop();
  fs.rmSync(ROOT, { recursive: true, force: true });
});

describe('ImageService', { timeout: 120_000 }, () => {
  test('is local only: never on the mTLS TCP listener', () => {
    assert.equal(servedOverTcp(loadProtos().imageService), false);
    assert.equal(servedOverTcp(loadProtos().vmiService), true);
  });

  test('ImportImage: a good archive in 64 KiB chunks is stored under its tag; nothing staged is left', async () => {
    const a = archives.good!;
    const res = await importImage([{ metadata: { reference: 'registry:5000/air/good:1', sizeBytes: fs.statSync(a.file).size } }, ...chunksOf(a.file, 64 << 10)]);
    assert.equal(res.image.digest, a.digest);
    assert.deepEqual(res.image.references, ['registry:5000/air/good:1']);
    assert.equal(res.receivedBytes, fs.statSync(a.file).size);
    assert.deepEqual(fs.readdirSync(path.join(store.root, 'tmp')), [], 'the staged archive is removed');
    // pullPolicy Never finds it now (an air-gapped node).
    const events = await pull({ reference: 'registry:5000/air/good:1', pullPolicy: 'Never' });
    const result = events.find((e) => e.result)?.result;
    assert.equal(result.pulled, false);
    assert.equal(result.image.digest, a.digest);
  });

  test('ImportImage: a docker-archive (docker save format)', async () => {
    const file = path.join(ROOT, 'good.docker.tar');
    await execFileP('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${LAYOUT}:good`, `docker-archive:${file}:registry:5000/air/docker:1`], { timeout: 120_000 });
    const res = await importImage([{ metadata: { reference: 'registry:5000/air/docker:1', format: 'docker-archive' } }, ...chunksOf(file, 1 << 20)]);
    assert.deepEqual(res.image.references, ['registry:5000/air/docker:1']);
    assert.deepEqual(res.image.artifacts, ['disk']);
    assert.ok(res.image.sizeBytes >= 3 << 20);
    users.clear();
    const removed = await call('RemoveImage', { image: 'registry:5000/air/docker:1' });
    assert.equal(removed.removed.digest, res.image.digest);
  });

  test('ImportImage: a kernelBoot selection takes the kernel and initrd out', async () => {
    const a = archives.kernel!;
    const res = await importImage([{ metadata: { reference: 'registry:5000/air/kernel:1', select: { kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initramfs' } } }, ...chunksOf(a.file, 1 << 20)]);
    assert.equal(res.image.digest, a.digest);
    assert.ok(res.image.artifacts.some((n: string) => n.startsWith('boot-')), JSON.stringify(res.image.artifacts));
  });

  test('ImportImage: an archive whose layer does not match its digest is refused, the store unchanged', async () => {
    const before = storeFiles();
    const bytes = fs.readFileSync(archives.good!.file);
    // The tar holds the gzip layer verbatim: flip a byte in the middle of the largest run of it.
    const layer = fs.readFileSync(path.join(LAYOUT, 'blobs', 'sha256', goodLayer.slice(7)));
    const at = bytes.indexOf(layer.subarray(0, 64));
    assert.ok(at > 0, 'the layer is in the archive');
    const i = at + (layer.length >> 1);
    bytes.writeUInt8(bytes.readUInt8(i) ^ 0xff, i);
    const bad = path.join(ROOT, 'bad-digest.oci.tar');
    fs.writeFileSync(bad, bytes);
    await rejectsCode(importImage([{ metadata: { reference: 'registry:5000/air/bad:1' } }, ...chunksOf(bad, 1 << 20)]), grpc.status.FAILED_PRECONDITION, /digest|does not match/);
    assert.deepEqual(storeFiles(), before);
  });

  for (const [tag, re] of [['dotdot', /'\.\.'.*path traversal/], ['device', /block-device "dev\/sda"/]] as const) {
    test(`ImportImage: a hostile archive (${tag}) is refused with its reason and changes nothing`, async () => {
      const before = storeFiles();
      await rejectsCode(importImage([{ metadata: { reference: `registry:5000/air/${tag}:1` } }, ...chunksOf(archives[tag]!.file, 1 << 20)]), grpc.status.FAILED_PRECONDITION, re);
      assert.deepEqual(storeFiles(), before);
    });
  }

  test('ImportImage: bad first message, bad format, bad path, over maxImageSize (declared and streamed)', async () => {
    const before = storeFiles();
    await rejectsCode(importImage([{ chunk: Buffer.from('x') }]), grpc.status.INVALID_ARGUMENT, /first ImportImage message must carry the metadata/);
    await rejectsCode(importImage([{ metadata: { reference: 'x/y:1', format: 'tarball' } }]), grpc.status.INVALID_ARGUMENT, /metadata\.format: expected oci-archive or docker-archive/);
    await rejectsCode(importImage([{ metadata: { reference: 'x/y:1', select: { kernelPath: '/boot/../../etc/shadow' } } }]), grpc.status.INVALID_ARGUMENT, /metadata\.select\.kernel_path: must be an absolute path inside the image without '\.\.'/);
    await rejectsCode(importImage([{ metadata: { reference: 'x/y:1', sizeBytes: 64 << 20 } }]), grpc.status.RESOURCE_EXHAUSTED, /larger than images\.maxImageSize/);
    const big = Array.from({ length: 40 }, () => ({ chunk: Buffer.alloc(1 << 20) }));
    await rejectsCode(importImage([{ metadata: { reference: 'x/y:1' } }, ...big]), grpc.status.RESOURCE_EXHAUSTED, /images\.maxImageSize/);
    await rejectsCode(importImage([{ metadata: { reference: 'x/y:1' } }, { chunk: Buffer.from('not a tar archive at all') }]), grpc.status.FAILED_PRECONDITION, /the archive is truncated or not a tar archive copying oci-archive:.*unexpected EOF/);
    assert.deepEqual(storeFiles(), before);
  });

  test('PullImage: progress, then the result; a second pull is a cache hit; Never for an absent image is NOT_FOUND', async () => {
    const ref = `${reg.host}/vh/remote:1`;
    const events = await pull({ reference: ref });
    assert.ok(events.some((e) => e.progress?.phase === 'pulling'), JSON.stringify(events));
    const last = events[events.length - 1]!;
    assert.equal(last.result.pulled, true);
    assert.deepEqual(last.result.image.references, [ref]);
    const again = await pull({ reference: ref, pullPolicy: 'IfNotPresent' });
    assert.equal(again.find((e) => e.progress)?.progress.phase, 'cached');
    assert.equal(again[again.length - 1]!.result.pulled, false);
    await rejectsCode(pull({ reference: `${reg.host}/vh/absent:1`, pullPolicy: 'Never' }), grpc.status.NOT_FOUND, /imagePullPolicy is Never/);
    await rejectsCode(pull({ reference: ref, pullPolicy: 'Sometimes' }), grpc.status.INVALID_ARGUMENT, /pull_policy: expected Always, IfNotPresent, Never/);
    await rejectsCode(pull({ reference: `${reg.host}/vh/absent:1` }), grpc.status.NOT_FOUND, /not found/i);
  });

  test('ListImages names the VMIs using each image; RemoveImage is refused for those, naming them; GcImages removes the rest', async () => {
    const good = archives.good!.digest;
    users.set(good, ['default/vm1']);
    const list = (await call('ListImages', {})).images as Any[];
    assert.equal(list.length, 3);
    const g = list.find((i) => i.digest === good)!;
    assert.deepEqual(g.inUseBy, ['default/vm1']);
    assert.ok(g.sizeBytes >= 3 << 20 && g.pulledAt !== '' && g.lastUsed !== '');
    await rejectsCode(call('RemoveImage', { image: 'registry:5000/air/good:1' }), grpc.status.FAILED_PRECONDITION, /in use by VMI default\/vm1/);
    await rejectsCode(call('RemoveImage', { image: good }), grpc.status.FAILED_PRECONDITION, /in use by VMI default\/vm1/);
    await rejectsCode(call('RemoveImage', { image: 'registry:5000/air/none:1' }), grpc.status.NOT_FOUND, /no image/);
    const removed = await call('RemoveImage', { image: 'registry:5000/air/kernel:1' });
    assert.equal(removed.removed.digest, archives.kernel!.digest);
    const gc = await call('GcImages', {});
    assert.equal(gc.removed.length, 1, 'the remote image, used by no VMI');
    assert.ok(gc.freedBytes > 0);
    assert.deepEqual(((await call('ListImages', {})).images as Any[]).map((i) => i.digest), [good]);
    users.clear();
    assert.equal((await call('GcImages', {})).removed[0].digest, good);
  });
});
