/**
 * The node image store against a real registry (Debian's docker-registry on 127.0.0.1) with
 * images built here as OCI layouts and pushed with skopeo: pull + verify + extract, one pull for
 * 20 concurrent ensure() calls (skopeo runs counted by a wrapper), pull policies, rewrites and
 * mirrors, air-gapped import, list/remove/gc, crash leftovers, and hostile images and registries
 * (each refused with its reason, the store unchanged).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { ImageStore, defaultPullPolicy, type ImageStoreOptions } from '../../src/images/image-store';
import { isImageError, type ImageFailureReason } from '../../src/images/errors';
import { extractLayers } from '../../src/images/extract';
import { BlobFollower } from '../../src/images/follow';
import { buildImage, makeDisk, push, saveArchive, type Entry } from './oci-build';
import { TestRegistry } from './registry';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-images-'));
const LAYOUT = path.join(ROOT, 'layout');
const log = pino({ level: 'silent' });
let reg: TestRegistry;
let storeN = 0;
const digests: Record<string, { manifest: string; layers: string[] }> = {};
const diskSha: Record<string, string> = {};

/** A skopeo wrapper that logs each run's arguments to `countFile`. */
function countingSkopeo(dir: string): { binary: string; runs: () => string[] } {
  const countFile = path.join(dir, 'skopeo-runs');
  const binary = path.join(dir, 'skopeo-counting');
  fs.writeFileSync(binary, `#!/bin/sh\necho "$*" >> '${countFile}'\nexec skopeo "$@"\n`, { mode: 0o755 });
  return { binary, runs: () => (fs.existsSync(countFile) ? fs.readFileSync(countFile, 'utf8').trim().split('\n').filter((l) => l.includes(' copy ')) : []) };
}

function newStore(o: ImageStoreOptions = {}, root?: string): ImageStore {
  return new ImageStore(root ?? path.join(ROOT, `store-${storeN++}`), log, { insecureRegistries: [reg.host, '127.0.0.1:1'], ...o });
}

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every path under `root` (except skopeo's config dir) with its size: "nothing half-written" is "this did not change". */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(root, p);
      if (rel === 'skopeo') continue;
      out.push(`${rel} ${e.isDirectory() ? 'd' : fs.statSync(p).size}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

async function image(tag: string, layers: Entry[][]): Promise<void> {
  const r = await buildImage(LAYOUT, tag, layers);
  digests[tag] = { manifest: r.manifest.digest, layers: r.layers.map((l) => l.digest) };
  await push(LAYOUT, tag, `${reg.host}/vh/disk:${tag}`);
}

async function rejectsWith(p: Promise<unknown>, reason: ImageFailureReason, re?: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(isImageError(e), `expected an ImageError, got ${String(e)}`);
    assert.equal(e.reason, reason, `reason of: ${e.message}`);
    if (re !== undefined) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${reason}`);
}

before(async () => {
  reg = await TestRegistry.start(ROOT);
  const files = path.join(ROOT, 'files');
  fs.mkdirSync(files);
  const qcow2 = path.join(files, 'disk.qcow2');
  await makeDisk(qcow2, 'qcow2', 16);
  execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 1M', qcow2], { stdio: 'ignore' });
  diskSha.qcow2 = sha(qcow2);
  const raw = path.join(files, 'disk.img');
  fs.writeFileSync(raw, randomBytes(2 << 20));
  diskSha.raw = sha(raw);
  const uniqueDisk = (name: string, n = 256 << 10): Entry => ({ name, data: randomBytes(n) });
  const backing = path.join(files, 'backing.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/hostname', '-F', 'raw', backing, '1M']);
  await image('qcow2', [[{ name: 'disk', type: 'directory' }, { name: 'disk/disk.qcow2', file: qcow2 }]]);
  await image('raw', [[{ name: './disk/disk.img', file: raw }, { name: 'etc/abs-link', type: 'symlink', linkname: '/etc/passwd' }]]);
  await image('kernel', [[{ name: 'boot/vmlinuz', data: Buffer.from('kernel') }, { name: 'boot/initrd.img', data: Buffer.from('initrd') }]]);
  await image('whiteout', [[{ name: 'disk/old.qcow2', file: qcow2 }], [{ name: 'disk/.wh.old.qcow2', data: Buffer.alloc(0) }, { name: 'disk/new.img', file: raw }]]);
  await image('two-disks', [[{ name: 'disk/a.img', file: raw }, { name: 'disk/b.qcow2', file: qcow2 }]]);
  await image('dotdot', [[{ name: '../../etc/cron.d/evil', data: Buffer.from('x') }, { name: 'disk/disk.img', file: raw }]]);
  await image('device', [[{ name: 'dev/sda', type: 'block-device' }, { name: 'disk/disk.img', file: raw }]]);
  await image('symlink', [[{ name: 'disk/disk.img', file: raw }, { name: 'disk/escape', type: 'symlink', linkname: '../../../etc/shadow' }]]);
  await image('hardlink', [[{ name: 'disk/disk.img', file: raw }, { name: 'disk/h', type: 'link', linkname: '../etc/shadow' }]]);
  await image('disk-symlink', [[{ name: 'disk/disk.img', type: 'symlink', linkname: '/etc/shadow' }]]);
  await image('backing', [[{ name: 'disk/disk.qcow2', file: backing }]]);
  await image('corrupt', [[uniqueDisk('disk/disk.img')]]);
  await image('truncated', [[uniqueDisk('disk/disk.img')]]);
  await image('big', [[uniqueDisk('disk/disk.img', 3 << 20)]]);
  await image('zeros', [[{ name: 'disk/disk.img', data: Buffer.alloc(64 << 20) }]]);
}, { timeout: 180_000 });

after(async () => {
  await reg?.stop();
  try {
    execFileSync('umount', [path.join(ROOT, 'tiny')], { stdio: 'ignore' });
  } catch {
    /* not mounted */
  }
  fs.rmSync(ROOT, { recursive: true, force: true });
});

describe('image store against a loopback registry', { timeout: 300_000 }, () => {
  test('pull: qcow2 base verified, read-only, content identical, recorded; second ensure is a cache hit', async () => {
    const s = newStore();
    const events: string[] = [];
    const img = await s.ensure(`${reg.host}/vh/disk:qcow2`, { onProgress: (p) => events.push(p.phase) });
    assert.equal(img.digest, digests.qcow2?.manifest);
    assert.equal(img.format, 'qcow2');
    assert.equal(img.pulled, true);
    assert.equal(img.diskPath, path.join(s.root, 'sha256', img.digest.slice(7), 'disk', 'disk.qcow2'));
    assert.equal(sha(img.diskPath as string), diskSha.qcow2);
    assert.equal(fs.statSync(img.diskPath as string).mode & 0o777, 0o444);
    assert.ok(events.includes('pulling') && events.at(-1) === 'done', events.join(','));
    const again = await s.ensure(`${reg.host}/vh/disk:qcow2`);
    assert.equal(again.pulled, false);
    assert.equal(again.diskPath, img.diskPath);
    assert.deepEqual(s.stats(), { pulls: 1, pullFailures: 0, cacheHits: 1, joinedPulls: 0 });
    const [listed] = s.list();
    assert.deepEqual(listed?.refs, [`${reg.host}/vh/disk:qcow2`]);
    assert.equal(fs.readdirSync(path.join(s.root, 'tmp')).length, 0);
    // A new store on the same root finds it (IfNotPresent and Never: no pull).
    const reopened = newStore({}, s.root);
    assert.equal((await reopened.ensure(`${reg.host}/vh/disk:qcow2`, { pullPolicy: 'Never' })).diskPath, img.diskPath);
    // The same image pinned by digest (under another name, never pulled as such) needs no pull either.
    assert.equal((await reopened.ensure(`registry:5000/elsewhere@${img.digest}`, { pullPolicy: 'Never' })).diskPath, img.diskPath);
  });

  test('raw .img, whiteouts, containerDisk.path, kernelBoot', async () => {
    const s = newStore();
    const raw = await s.ensure(`${reg.host}/vh/disk:raw`);
    assert.equal(raw.format, 'raw');
    assert.match(raw.diskPath as string, /disk\.raw$/);
    assert.equal(sha(raw.diskPath as string), diskSha.raw);
    const wh = await s.ensure(`${reg.host}/vh/disk:whiteout`);
    assert.equal(wh.format, 'raw', 'disk/old.qcow2 was whited out by the upper layer');
    await rejectsWith(s.ensure(`${reg.host}/vh/disk:two-disks`), 'BadLayout', /several disks.*containerDisk\.path/);
    const picked = await s.ensure(`${reg.host}/vh/disk:two-disks`, { select: { kind: 'containerDisk', path: '/disk/b.qcow2' } });
    assert.equal(picked.format, 'qcow2');
    const k = await s.ensure(`${reg.host}/vh/disk:kernel`, { select: { kind: 'kernelBoot', kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initrd.img' } });
    assert.equal(fs.readFileSync(k.kernelPath as string, 'utf8'), 'kernel');
    assert.equal(fs.readFileSync(k.initrdPath as string, 'utf8'), 'initrd');
    await rejectsWith(s.ensure(`${reg.host}/vh/disk:kernel`, { select: { kind: 'kernelBoot', kernelPath: '/boot/missing' } }), 'BadLayout', /no kernel at \/boot\/missing/);
  });

  test('20 concurrent ensure() of one image: one skopeo run, one base image', async () => {
    const sk = countingSkopeo(fs.mkdtempSync(path.join(ROOT, 'count-')));
    const s = newStore({ skopeoBinary: sk.binary });
    const all = await Promise.all(Array.from({ length: 20 }, () => s.ensure(`${reg.host}/vh/disk:qcow2`)));
    assert.equal(sk.runs().length, 1, sk.runs().join('\n'));
    assert.equal(new Set(all.map((i) => i.diskPath)).size, 1);
    assert.equal(s.list().length, 1);
    assert.equal(s.stats().joinedPulls, 19);
    // Always asks the registry (skopeo inspect) and copies nothing while the digest is unchanged;
    // when the tag moves to another image it pulls that one. Never on a missing image says why.
    const again = await s.ensure(`${reg.host}/vh/disk:qcow2`, { pullPolicy: 'Always' });
    assert.equal(again.pulled, false);
    assert.equal(sk.runs().length, 1);
    await push(LAYOUT, 'raw', `${reg.host}/vh/disk:moving`);
    assert.equal((await s.ensure(`${reg.host}/vh/disk:moving`, { pullPolicy: 'Always' })).digest, digests.raw?.manifest);
    await push(LAYOUT, 'qcow2', `${reg.host}/vh/disk:moving`);
    const moved = await s.ensure(`${reg.host}/vh/disk:moving`, { pullPolicy: 'Always' });
    assert.equal(moved.digest, digests.qcow2?.manifest);
    assert.equal(moved.pulled, false, 'the qcow2 image was already in the store');
    assert.equal(sk.runs().length, 2);
    assert.equal(s.list().length, 2);
    assert.equal(defaultPullPolicy('vh/disk'), 'Always');
    assert.equal(defaultPullPolicy('vh/disk:v1'), 'IfNotPresent');
    await rejectsWith(s.ensure(`${reg.host}/vh/disk:two-disks`, { pullPolicy: 'Never' }), 'NotPresent', /not in the node's image store and imagePullPolicy is Never/);
    assert.equal(sk.runs().length, 2);
  });

  test('rewrites (registry:5000 -> the loopback registry) and mirrors', async () => {
    const s = newStore({ rewrites: { 'registry:5000': reg.host } });
    const img = await s.ensure('registry:5000/vh/disk:qcow2');
    assert.equal(img.digest, digests.qcow2?.manifest);
    assert.deepEqual(s.list()[0]?.refs, ['registry:5000/vh/disk:qcow2']);
    const m = newStore({ rewrites: { 'registry:5000': '127.0.0.1:1' }, mirrors: { '127.0.0.1:1': [reg.host] } });
    assert.equal((await m.ensure('registry:5000/vh/disk:raw')).format, 'raw');
  });

  test('air-gapped import of an oci-archive, then pullPolicy Never finds it', async () => {
    const archive = path.join(ROOT, 'raw.oci.tar');
    await saveArchive(LAYOUT, 'raw', archive);
    const s = newStore();
    const img = await s.importArchive(archive, { ref: 'registry:5000/vh/air:1' });
    assert.equal(img.digest, digests.raw?.manifest);
    assert.equal((await s.ensure('registry:5000/vh/air:1', { pullPolicy: 'Never' })).diskPath, img.diskPath);
  });

  test('list, remove (refused in use), gc; crash leftovers removed at open', async () => {
    const s = newStore();
    const a = await s.ensure(`${reg.host}/vh/disk:qcow2`);
    const b = await s.ensure(`${reg.host}/vh/disk:raw`);
    const c = await s.ensure(`${reg.host}/vh/disk:whiteout`);
    assert.equal(s.list().length, 3);
    assert.ok(s.list().every((i) => i.sizeBytes > 0 && i.lastUsed !== null));
    await rejectsWith(Promise.resolve().then(() => s.remove(a.digest, new Set([a.digest]))), 'InUse', /in use by a VMI/);
    s.remove(`${reg.host}/vh/disk:raw`, new Set([a.digest]));
    assert.deepEqual(s.list().map((i) => i.digest).sort(), [a.digest, c.digest].sort());
    await rejectsWith(Promise.resolve().then(() => s.remove(b.digest, new Set())), 'NotFound');
    const removed = s.gc(new Set([a.digest]));
    assert.deepEqual(removed.map((i) => i.digest), [c.digest]);
    assert.deepEqual(s.list().map((i) => i.digest), [a.digest]);
    assert.deepEqual(s.gc(new Set(), { minIdleMs: 3_600_000 }), [], 'recently used images survive a gc with minIdleMs');
    // A crash mid-pull leaves a tmp dir: the next open removes it and keeps the rest.
    fs.mkdirSync(path.join(s.root, 'tmp', 'pull-crashed', 'layout'), { recursive: true });
    fs.writeFileSync(path.join(s.root, 'tmp', 'pull-crashed', 'layout', 'blob'), 'half');
    const reopened = newStore({}, s.root);
    assert.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
    assert.deepEqual(reopened.list().map((i) => i.digest), [a.digest]);
  });

  describe('hostile images and registries: a clear reason, the store unchanged', () => {
    const cases: Array<[string, string, ImageFailureReason, RegExp, ImageStoreOptions?]> = [
      ['.. in a layer', 'dotdot', 'UnsafePath', /'\.\.'.*path traversal/],
      ['a device node', 'device', 'SpecialFile', /block-device "dev\/sda"/],
      ['a symlink escaping the root', 'symlink', 'LinkEscape', /disk\/escape.*outside the image/],
      ['a hard link outside the root', 'hardlink', 'LinkEscape', /link "disk\/h"/],
      ['the disk is a symlink', 'disk-symlink', 'NotRegularFile', /is a symlink, not a regular file/],
      ['a qcow2 with a backing file', 'backing', 'BadDiskFormat', /backing or data file/],
      ['over maxImageSize', 'big', 'TooLarge', /images\.maxImageSize/, { maxImageSize: 1 << 20 }],
      ['a 404 tag', 'no-such-tag', 'NotFound', /not found/],
    ];
    for (const [what, tag, reason, re, opts] of cases) {
      test(what, async () => {
        const s = newStore(opts);
        await s.ensure(`${reg.host}/vh/disk:kernel`, { select: { kind: 'kernelBoot', kernelPath: '/boot/vmlinuz' } });
        const before = snapshot(s.root);
        await rejectsWith(s.ensure(`${reg.host}/vh/disk:${tag}`), reason, re);
        assert.deepEqual(snapshot(s.root), before);
        assert.equal(s.list().length, 1);
      });
    }

    test('a blob corrupted in the registry (digest mismatch) and a truncated blob', async () => {
      const s = newStore();
      const before = snapshot(s.root);
      const corrupt = reg.blobFile(digests.corrupt?.layers[0] as string);
      const fd = fs.openSync(corrupt, 'r+');
      fs.writeSync(fd, Buffer.from('XXXXXXXX'), 0, 8, 1000);
      fs.closeSync(fd);
      await rejectsWith(s.ensure(`${reg.host}/vh/disk:corrupt`), 'DigestMismatch', /does not match its digest|hashes to/);
      const truncated = reg.blobFile(digests.truncated?.layers[0] as string);
      fs.truncateSync(truncated, 4000);
      const e = await s.ensure(`${reg.host}/vh/disk:truncated`).catch((x: unknown) => x);
      assert.ok(isImageError(e) && ['Truncated', 'DigestMismatch'].includes(e.reason), String(e));
      assert.deepEqual(snapshot(s.root), before);
    });

    test('our own check of what skopeo wrote: a layer that does not match its descriptor', async () => {
      const layer = digests.raw?.layers[0] as string;
      const file = path.join(LAYOUT, 'blobs', 'sha256', layer.slice(7));
      const size = fs.statSync(file).size;
      const out = fs.mkdtempSync(path.join(ROOT, 'x-'));
      const limits = { maxBytes: 1 << 30, freeBytes: () => 1 << 30 };
      const want = (p: string): boolean => p === 'disk/disk.img';
      const wrong = `sha256:${'0'.repeat(64)}`;
      await rejectsWith(extractLayers([{ digest: wrong, size, compression: 'gzip', file }], want, out, limits), 'DigestMismatch', /hashes to sha256:[0-9a-f]{64}, the manifest says sha256:0{64}/);
      const cut = path.join(out, 'cut');
      fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, size >> 1));
      await rejectsWith(extractLayers([{ digest: layer, size, compression: 'gzip', file: cut }], want, out, limits), 'Truncated', /is \d+ bytes, the manifest says \d+/);
      assert.deepEqual(fs.readdirSync(out).sort(), ['cut'], 'a refused layer leaves no extracted file behind');
    });

    test('BlobFollower: a layer read while it is written in pieces and renamed, then verified by its digest', async () => {
      const layer = digests.raw?.layers[0] as string;
      const bytes = fs.readFileSync(path.join(LAYOUT, 'blobs', 'sha256', layer.slice(7)));
      const dir = fs.mkdtempSync(path.join(ROOT, 'follow-'));
      const layout = path.join(dir, 'layout');
      const limits = { maxBytes: 1 << 30, freeBytes: () => 1 << 30 };
      const f = new BlobFollower(layout, path.join(dir, 'work'), (p) => p === 'disk/disk.img', limits);
      await new Promise((r) => setTimeout(r, 30));
      fs.mkdirSync(layout);
      const tmpName = path.join(layout, 'dir-put-blob-123');
      const fd = fs.openSync(tmpName, 'w');
      for (let off = 0; off < bytes.length; off += 100_000) {
        fs.writeSync(fd, bytes.subarray(off, Math.min(bytes.length, off + 100_000)));
        await new Promise((r) => setTimeout(r, 15));
      }
      fs.closeSync(fd);
      fs.renameSync(tmpName, path.join(layout, layer.slice(7)));
      const pre = await f.finish();
      const r = pre.get(layer);
      assert.equal(r?.size, bytes.length);
      assert.equal(sha(r?.files.get('disk/disk.img')?.file as string), diskSha.raw);
      // extractLayers takes the pre-read result for the matching descriptor (the final file is not read again).
      fs.rmSync(path.join(layout, layer.slice(7)));
      const files = await extractLayers([{ digest: layer, size: bytes.length, compression: 'gzip', file: path.join(layout, layer.slice(7)) }], () => true, dir, limits, undefined, pre);
      assert.equal(sha(files.get('disk/disk.img')?.file as string), diskSha.raw);
    });

    test('an unknown registry (nothing listens on 127.0.0.1:1) and a bad reference', async () => {
      const s = newStore();
      await rejectsWith(s.ensure('127.0.0.1:1/vh/disk:qcow2'), 'RegistryUnreachable', /registry unreachable/);
      await rejectsWith(s.ensure('UPPER/case'), 'InvalidReference');
      assert.throws(() => newStore({ insecureRegistries: ['10.0.0.1:5000'] }), /not a loopback registry/);
      assert.deepEqual(s.list(), []);
    });

    test('a disk larger than the free space is refused before it is written', { skip: process.getuid?.() !== 0 && 'needs root for a tmpfs' }, async () => {
      const tiny = path.join(ROOT, 'tiny');
      fs.mkdirSync(tiny);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', tiny]);
      const s = newStore({}, path.join(tiny, 'store'));
      const before = snapshot(s.root);
      await rejectsWith(s.ensure(`${reg.host}/vh/disk:zeros`), 'NoSpace', /67108864 bytes but the image store has \d+ bytes free/);
      assert.deepEqual(snapshot(s.root), before);
    });
  });
});
