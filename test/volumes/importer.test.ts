/**
 * The CDI-style importer with real parts: images made by qemu-img here, served by a node:http
 * server on 127.0.0.1 (test/volumes/http-server.ts) that can fail, reset, stall and redirect;
 * real qemu-img and xz children. Each case checks the resulting disk.img bytes (against the
 * source's raw content padded to the claim size) or the failure reason, and lists the target and
 * scratch directories: nothing half-written is ever left.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createImporter, ImportError, type ImportFailureReason, type ImportProgress, type ImportRequest, type ImportSource, type ImporterDeps } from '../../src/volumes/importer';
import { FileServer } from './http-server';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-importer-'));
const SERVED = path.join(ROOT, 'served');
const MIB = 1 << 20;
const SIZE = 16 * MIB; // the claim size used unless a case says otherwise
const TOKEN = 'sekret-token-value';
const RETRY = { attempts: 5, baseDelayMs: 10, maxDelayMs: 40 };
let srv: FileServer;
let caseN = 0;
let rawSha = '';
let pulled: string[] = [];

const deps: ImporterDeps = {
  async pullImage(ref) {
    pulled.push(ref);
    if (ref === 'registry.local/missing:1') throw new Error('manifest unknown');
    return { path: path.join(SERVED, 'disk.qcow2'), format: 'qcow2' };
  },
};
const importer = createImporter(deps, { progressIntervalMs: 0 });

const qemuImg = (...args: string[]): void => void execFileSync('qemu-img', args);

/** sha256 of `file`'s bytes followed by zeros up to `size` (a raw disk as the guest sees it). */
function paddedSha(file: string, size: number): string {
  const h = createHash('sha256');
  const data = fs.readFileSync(file);
  h.update(data);
  const zeros = Buffer.alloc(MIB);
  for (let left = size - data.length; left > 0; left -= Math.min(left, MIB)) h.update(zeros.subarray(0, Math.min(left, MIB)));
  return h.digest('hex');
}
const fileSha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

interface Run {
  req: ImportRequest;
  progress: ImportProgress[];
  target: string;
  scratch: string;
}

function newRun(source: ImportSource, over: Partial<ImportRequest> = {}): Run {
  const dir = path.join(ROOT, `case-${caseN++}`);
  const target = path.join(dir, 'claim');
  const scratch = path.join(dir, 'scratch');
  fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  fs.mkdirSync(scratch, { mode: 0o700 });
  const progress: ImportProgress[] = [];
  const req: ImportRequest = { source, targetDir: target, scratchDir: scratch, sizeBytes: SIZE, signal: new AbortController().signal, onProgress: (p) => progress.push(p), retry: RETRY, ...over };
  return { req, progress, target, scratch };
}

const http = (name: string, extra: Partial<Extract<ImportSource, { kind: 'http' }>> = {}): ImportSource => ({ kind: 'http', url: `${srv.url}/${name}`, checksum: null, extraHeaders: [], ...extra });

/** Imports and checks the result: disk.img alone in the claim dir, sized to the claim, with the source's raw bytes. */
async function expectDisk(r: Run, expectedSha = paddedSha(path.join(SERVED, 'disk.raw'), r.req.sizeBytes)) {
  const res = await importer.run(r.req);
  assert.deepEqual(fs.readdirSync(r.target), ['disk.img']);
  assert.deepEqual(fs.readdirSync(r.scratch), []);
  assert.equal(res.path, path.join(r.target, 'disk.img'));
  const st = fs.statSync(res.path);
  assert.equal(st.size, r.req.sizeBytes);
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(fileSha(res.path), expectedSha, 'disk.img holds the source raw content, zero-padded to the claim size');
  return res;
}

async function expectFailure(r: Run, reason: ImportFailureReason, retryable?: boolean): Promise<ImportError> {
  const err = await importer.run(r.req).then(
    () => assert.fail(`expected ${reason}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ImportError, `an ImportError, got ${String(err)}`);
  assert.equal(err.reason, reason, err.message);
  if (retryable !== undefined) assert.equal(err.retryable, retryable);
  assert.deepEqual(fs.readdirSync(r.target), [], 'no disk.img or temporary file left');
  assert.deepEqual(fs.readdirSync(r.scratch), [], 'no scratch file left');
  return err;
}

function assertProgress(p: ImportProgress[]): void {
  assert.ok(p.length >= 3, `progress reported (${p.length})`);
  for (let i = 1; i < p.length; i++) assert.ok((p[i] as ImportProgress).percent >= (p[i - 1] as ImportProgress).percent, `monotonic at ${i}: ${JSON.stringify(p.slice(i - 1, i + 1))}`);
  const last = p[p.length - 1] as ImportProgress;
  assert.equal(last.percent, 100);
  assert.equal(last.stage, 'Done');
}

before(async () => {
  fs.mkdirSync(SERVED);
  // 2 MiB random, 2 MiB zeros (stays sparse), 2 MiB random, then an odd tail.
  const raw = Buffer.concat([randomBytes(2 * MIB), Buffer.alloc(2 * MIB), randomBytes(2 * MIB)]);
  fs.writeFileSync(path.join(SERVED, 'disk.raw'), raw);
  rawSha = fileSha(path.join(SERVED, 'disk.raw'));
  fs.writeFileSync(path.join(SERVED, 'big.raw'), randomBytes(8 * MIB));
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', path.join(SERVED, 'disk.raw'), path.join(SERVED, 'disk.qcow2'));
  fs.writeFileSync(path.join(SERVED, 'disk.qcow2.gz'), zlib.gzipSync(fs.readFileSync(path.join(SERVED, 'disk.qcow2'))));
  fs.writeFileSync(path.join(SERVED, 'disk.raw.gz'), zlib.gzipSync(raw));
  execFileSync('xz', ['-k', '-T1', '-1', path.join(SERVED, 'disk.raw')]);
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', path.join(SERVED, 'hostile.qcow2'), '6M');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(SERVED, 'data.bin')},data_file_raw=on`, path.join(SERVED, 'datafile.qcow2'), '6M');
  qemuImg('convert', '-f', 'raw', '-O', 'vmdk', path.join(SERVED, 'disk.raw'), path.join(SERVED, 'disk.vmdk'));
  qemuImg('create', '-q', '-f', 'qcow2', path.join(SERVED, 'huge.qcow2'), '64M');
  srv = await new FileServer(SERVED, TOKEN).start();
});

after(async () => {
  await srv?.stop();
  fs.rmSync(ROOT, { recursive: true, force: true });
});

describe('http source', () => {
  test('a raw image: disk.img has its bytes, progress climbs to 100, sha256 of the bytes as received', async () => {
    const r = newRun(http('files/disk.raw'));
    const res = await expectDisk(r);
    assert.equal(res.sourceFormat, 'raw');
    assert.equal(res.virtualSizeBytes, 6 * MIB);
    assert.equal(res.sourceSha256, rawSha);
    assert.equal(res.attempts, 1);
    assertProgress(r.progress);
    const dl = r.progress.filter((p) => p.stage === 'Downloading');
    assert.equal(dl[dl.length - 1]?.bytesTotal, 6 * MIB);
    assert.equal(dl[dl.length - 1]?.bytesDone, 6 * MIB);
    assert.ok(dl[dl.length - 1]!.percent <= 90, 'the download owns 0..90');
    assert.deepEqual([...new Set(r.progress.map((p) => p.stage))], ['Downloading', 'Verifying', 'Converting', 'Resizing', 'Done']);
  });

  test('a gzip-compressed qcow2, with a sha256 checksum of the compressed bytes', async () => {
    const gz = path.join(SERVED, 'disk.qcow2.gz');
    const r = newRun(http('files/disk.qcow2.gz', { checksum: `sha256:${fileSha(gz)}` }));
    const res = await expectDisk(r);
    assert.equal(res.sourceFormat, 'qcow2');
    assert.equal(res.sourceSha256, fileSha(gz));
    assertProgress(r.progress);
  });

  test('a gzip raw and an xz raw (sha512 and md5 checksums)', async () => {
    const gz = fs.readFileSync(path.join(SERVED, 'disk.raw.gz'));
    await expectDisk(newRun(http('files/disk.raw.gz', { checksum: `sha512:${createHash('sha512').update(gz).digest('hex')}` })));
    const xz = fs.readFileSync(path.join(SERVED, 'disk.raw.xz'));
    const res = await expectDisk(newRun(http('files/disk.raw.xz', { checksum: `md5:${createHash('md5').update(xz).digest('hex')}` })));
    assert.equal(res.sourceFormat, 'raw');
  });

  test('a checksum mismatch is ChecksumMismatch, not retried', async () => {
    const before = srv.requests('/files/disk.qcow2').length;
    const err = await expectFailure(newRun(http('files/disk.qcow2', { checksum: `sha256:${'0'.repeat(64)}` })), 'ChecksumMismatch', false);
    assert.match(err.message, /source\.http\.checksum/);
    assert.equal(srv.requests('/files/disk.qcow2').length - before, 1);
  });

  test('404 is NotFound after one request', async () => {
    await expectFailure(newRun(http('files/nope.raw')), 'NotFound', false);
    assert.equal(srv.requests('/files/nope.raw').length, 1);
  });

  test('401 is Unauthorized; the extra header gets through, and its value is never in the error', async () => {
    const err = await expectFailure(newRun(http('auth/disk.raw', { extraHeaders: ['X-Token: wrong-secret-value'] })), 'Unauthorized', false);
    assert.doesNotMatch(err.message, /wrong-secret-value/);
    await expectDisk(newRun(http('auth/disk.raw', { extraHeaders: [`X-Token: ${TOKEN}`] })));
  });

  test('503 twice, then the file: three attempts, reported in progress and the result', async () => {
    const r = newRun(http('flaky/2/disk.qcow2'));
    const res = await expectDisk(r);
    assert.equal(res.attempts, 3);
    assert.deepEqual(srv.requests('/flaky/2/').map((l) => l.status), [503, 503, 200]);
    assert.deepEqual([...new Set(r.progress.filter((p) => p.stage === 'Downloading').map((p) => p.attempt))], [1, 2, 3]);
    assertProgress(r.progress);
  });

  test('503 on every try: gives up after req.retry.attempts, retryable HttpError', async () => {
    const err = await expectFailure(newRun(http('flaky/99/disk.raw'), { retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 10 } }), 'HttpError', true);
    assert.match(err.message, /after 3 attempts/);
    assert.equal(srv.requests('/flaky/99/').length, 3);
  });

  test('a connection reset mid-body is retried and resumed with Range', async () => {
    const r = newRun(http('reset/disk.raw'));
    const res = await expectDisk(r);
    assert.equal(res.attempts, 2);
    assert.equal(res.sourceSha256, rawSha, 'the resumed bytes hash like one pass');
    const reqs = srv.requests('/reset/');
    assert.equal(reqs.length, 2);
    assert.equal(reqs[0]?.range, undefined);
    assert.match(reqs[1]?.range ?? '', /^bytes=[1-9]\d*-$/);
    assert.equal(reqs[1]?.status, 206);
    assertProgress(r.progress);
    // The same through gunzip: the decompressor carries on across the resume.
    const gz = await expectDisk(newRun(http('reset/disk.qcow2.gz')));
    assert.equal(gz.attempts, 2);
    assert.equal(srv.requests('/reset/disk.qcow2.gz')[1]?.status, 206);
  });

  test('a redirect is followed', async () => {
    await expectDisk(newRun(http('redirect/disk.qcow2')));
    assert.deepEqual(srv.requests('/redirect/disk.qcow2').map((l) => l.status), [302]);
  });

  test('bad source fields are refused by name before any request', async () => {
    const n = srv.log.length;
    assert.match((await expectFailure(newRun(http('x', { url: 'ftp://127.0.0.1/x' })), 'HttpError', false)).message, /source\.http\.url/);
    assert.match((await expectFailure(newRun(http('files/disk.raw', { extraHeaders: ['no colon'] })), 'HttpError', false)).message, /source\.http\.extraHeaders\[0\]/);
    assert.match((await expectFailure(newRun(http('files/disk.raw', { checksum: 'sha256:abc' })), 'HttpError', false)).message, /source\.http\.checksum/);
    assert.equal(srv.log.length, n);
  });

  test('abort mid-download (a stalled body): Canceled, the claim and scratch directories empty', async () => {
    const ac = new AbortController();
    const r = newRun(http('stall/big.raw'), { signal: ac.signal });
    r.req.onProgress = (p) => {
      if (p.bytesDone > 0) ac.abort();
    };
    await expectFailure(r, 'Canceled', false);
  });

  test('abort when conversion starts: Canceled, no temporary file left', async () => {
    const ac = new AbortController();
    const r = newRun(http('files/disk.qcow2'), { signal: ac.signal });
    r.req.onProgress = (p) => {
      if (p.stage === 'Converting') ac.abort();
    };
    await expectFailure(r, 'Canceled', false);
  });
});

describe('image checks', () => {
  test('a qcow2 backed by /etc/shadow is InvalidImage', async () => {
    const err = await expectFailure(newRun(http('files/hostile.qcow2')), 'InvalidImage', false);
    assert.match(err.message, /backing file/);
  });

  test('a qcow2 with an external data file is InvalidImage', async () => {
    assert.match((await expectFailure(newRun({ kind: 'upload', file: path.join(SERVED, 'datafile.qcow2') }), 'InvalidImage', false)).message, /data file/);
  });

  test('a vmdk (over http and as an upload) is InvalidImage', async () => {
    assert.match((await expectFailure(newRun(http('files/disk.vmdk')), 'InvalidImage', false)).message, /vmdk/);
    await expectFailure(newRun({ kind: 'upload', file: path.join(SERVED, 'disk.vmdk') }), 'InvalidImage', false);
  });

  test('an image larger than the claim is TooLarge', async () => {
    const err = await expectFailure(newRun(http('files/huge.qcow2'), { sizeBytes: 32 * MIB }), 'TooLarge', false);
    assert.match(err.message, /67108864/);
  });

  test('a corrupt gzip is InvalidImage', async () => {
    const bad = zlib.gzipSync(fs.readFileSync(path.join(SERVED, 'disk.raw'))).subarray(0, 4096);
    fs.writeFileSync(path.join(SERVED, 'cut.raw.gz'), bad);
    await expectFailure(newRun(http('files/cut.raw.gz')), 'InvalidImage', false);
  });
});

describe('no space', () => {
  // A 3 MiB tmpfs (the tests run as root, like the libvirt suites) for an image of 6 MiB (4 MiB of it non-zero).
  const withTmpfs = async (fn: (mnt: string) => Promise<void>): Promise<void> => {
    const mnt = fs.mkdtempSync(path.join(ROOT, 'tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m,mode=0700', 'vh-importer-test', mnt]);
    try {
      await fn(mnt);
    } finally {
      execFileSync('umount', [mnt]);
      fs.rmdirSync(mnt);
    }
  };

  test('the download does not fit the scratch space: NoSpace, nothing left', async () => {
    await withTmpfs(async (mnt) => {
      const r = newRun(http('files/disk.raw'), { scratchDir: mnt });
      const err = await expectFailure({ ...r, scratch: mnt }, 'NoSpace', false);
      assert.match(err.message, /no space/);
    });
  });

  test('the converted disk does not fit the claim: NoSpace, nothing left', async () => {
    await withTmpfs(async (mnt) => {
      const r = newRun(http('files/disk.qcow2'), { targetDir: mnt });
      await expectFailure({ ...r, target: mnt }, 'NoSpace', false);
    });
  });
});

describe('other sources', () => {
  test('blank: a sparse zero disk of the claim size', async () => {
    const r = newRun({ kind: 'blank' }, { sizeBytes: 64 * MIB });
    const res = await importer.run(r.req);
    assert.deepEqual(fs.readdirSync(r.target), ['disk.img']);
    const st = fs.statSync(res.path);
    assert.equal(st.size, 64 * MIB);
    assert.ok(st.blocks * 512 < MIB, `sparse (${st.blocks} blocks)`);
    assert.equal(res.sourceSha256, '');
    assertProgress(r.progress);
  });

  test('upload: the staged qcow2 is converted; the staged file is left to its owner', async () => {
    const staged = path.join(ROOT, 'staged.qcow2');
    fs.copyFileSync(path.join(SERVED, 'disk.qcow2'), staged);
    const r = newRun({ kind: 'upload', file: staged });
    const res = await expectDisk(r);
    assert.equal(res.sourceSha256, fileSha(staged));
    assert.ok(fs.existsSync(staged));
    assertProgress(r.progress);
  });

  test('upload of a symlink or a missing file is SourceMissing', async () => {
    const link = path.join(ROOT, 'link.qcow2');
    fs.symlinkSync(path.join(SERVED, 'disk.qcow2'), link);
    await expectFailure(newRun({ kind: 'upload', file: link }), 'SourceMissing', false);
    await expectFailure(newRun({ kind: 'upload', file: path.join(ROOT, 'absent') }), 'SourceMissing', true);
  });

  test('pvc clone: the source claim disk is copied, then grown to the new claim size', async () => {
    const src = newRun(http('files/disk.qcow2'));
    await expectDisk(src);
    const r = newRun({ kind: 'pvc', sourceFile: path.join(src.target, 'disk.img') }, { sizeBytes: 2 * SIZE });
    const res = await expectDisk(r);
    assert.equal(res.virtualSizeBytes, SIZE);
    assert.equal(res.sourceFormat, 'raw');
  });

  test('registry: the pulled base is converted; a failed pull is RegistryPullFailed', async () => {
    pulled = [];
    const r = newRun({ kind: 'registry', url: 'docker://registry.local/disks/fedora:40' });
    const res = await expectDisk(r);
    assert.deepEqual(pulled, ['registry.local/disks/fedora:40']);
    assert.equal(res.sourceFormat, 'qcow2');
    assertProgress(r.progress);
    await expectFailure(newRun({ kind: 'registry', url: 'docker://registry.local/missing:1' }), 'RegistryPullFailed', true);
  });

  test("a crashed import's temporary file beside disk.img is removed by the next import", async () => {
    const r = newRun({ kind: 'blank' });
    fs.writeFileSync(path.join(r.target, '.disk.img.importing-deadbeef'), 'half');
    await importer.run(r.req);
    assert.deepEqual(fs.readdirSync(r.target), ['disk.img']);
  });
});
