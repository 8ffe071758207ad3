/**
 * DataVolume imports through the shipped daemon with its real importer (no test seam): an http
 * source served by a loopback file server (gzip-compressed qcow2, checked against a sha256), a
 * 404 that fails with NotFound, and a vhctl upload of a raw image. Each Succeeded claim's
 * disk.img holds exactly the source's raw bytes, grown to the requested size.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';
import { FileServer } from '../volumes/http-server';
import { HandlerUnderTest, call, killEverything, makeRoot, waitFor } from '../lib/daemon';
import { runVhctl } from '../lib/vhctl';

const ROOT = makeRoot('vh-dvi-');
const NS = 'imports';
const SIZE = 16 * 2 ** 20;

interface WireDv {
  status: { phase: string; progress: string; conditions: Array<{ type: string; status: string; reason: string; message: string }> };
  events: Array<{ reason: string; message: string }>;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('DataVolume imports with the real importer (shipped daemon)', { timeout: 180_000 }, () => {
  let h: HandlerUnderTest;
  let server: FileServer;
  let client: grpc.Client;
  const raw = Buffer.concat([randomBytes(3 * 2 ** 20), Buffer.alloc(2 ** 20, 7)]);
  const claimRoot = path.join(ROOT, 'claims');
  const files = path.join(ROOT, 'files');

  before(async () => {
    fs.mkdirSync(files);
    fs.writeFileSync(path.join(ROOT, 'src.raw'), raw);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', path.join(ROOT, 'src.raw'), path.join(ROOT, 'src.qcow2')]);
    fs.writeFileSync(path.join(files, 'disk.qcow2.gz'), zlib.gzipSync(fs.readFileSync(path.join(ROOT, 'src.qcow2')), { level: 1 }));
    server = await new FileServer(files).start();
    h = await HandlerUnderTest.start({ tmp: ROOT, libvirtUri: 'test:///default', logLevel: 'info', env: { VH_VOLUMES_CLAIM_ROOT: claimRoot } });
    client = new (loadProtos().DataVolumeClient)(`unix:${h.grpcSocket}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await h?.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await killEverything(ROOT);
    fs.rmSync(ROOT, { recursive: true, force: true });
  });

  const create = (name: string, source: unknown): Promise<unknown> =>
    call(client as never, 'CreateDataVolume', { manifest: JSON.stringify({ apiVersion: 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: { name, namespace: NS }, spec: { source, storage: { resources: { requests: { storage: '16Mi' } } } } }) });
  const ended = (name: string): Promise<WireDv> =>
    waitFor(`DataVolume ${name} ends\n${h.tail(40)}`, async () => {
      const dv = await call<WireDv>(client as never, 'GetDataVolume', { namespace: NS, name });
      return dv.status.phase === 'Succeeded' || dv.status.phase === 'Failed' ? dv : undefined;
    }, 120_000, 200);
  const disk = (name: string): Buffer => fs.readFileSync(path.join(claimRoot, NS, name, 'disk.img'));

  test('http: a gzip qcow2 with its sha256 becomes a raw disk.img of the claim size', async () => {
    const gz = fs.readFileSync(path.join(files, 'disk.qcow2.gz'));
    await create('web', { http: { url: `${server.url}/files/disk.qcow2.gz`, checksum: `sha256:${sha(gz)}` } });
    const dv = await ended('web');
    assert.equal(dv.status.phase, 'Succeeded', JSON.stringify(dv.status));
    assert.equal(dv.status.progress, '100.00%');
    const out = disk('web');
    assert.equal(out.length, SIZE);
    assert.equal(sha(out), sha(Buffer.concat([raw, Buffer.alloc(SIZE - raw.length)])));
    assert.deepEqual(fs.readdirSync(path.join(claimRoot, NS, 'web')), ['disk.img'], 'no temporary left beside the disk');
  });

  test('http 404: Failed, the reason says NotFound, no disk.img', async () => {
    await create('missing', { http: { url: `${server.url}/files/nope.img` } });
    const dv = await ended('missing');
    assert.equal(dv.status.phase, 'Failed');
    assert.match(JSON.stringify(dv), /NotFound/);
    assert.equal(fs.existsSync(path.join(claimRoot, NS, 'missing', 'disk.img')), false);
  });

  test('vhctl upload: a raw image streamed in, imported, checksum equal', async () => {
    await create('up', { upload: {} });
    const image = path.join(ROOT, 'src.raw');
    const r = await runVhctl(['upload', 'dv', 'up', '-n', NS, '--image-path', image, '--socket', h.grpcSocket, '--timeout', '60s']);
    assert.equal(r.code, 0, r.stderr);
    const dv = await ended('up');
    assert.equal(dv.status.phase, 'Succeeded', JSON.stringify(dv.status));
    assert.equal(sha(disk('up')), sha(Buffer.concat([raw, Buffer.alloc(SIZE - raw.length)])));
  });
});
