/**
 * The DataVolume controller with the blank importer and with a fake Importer (the test seam for
 * http/registry/upload/pvc sources until the real importer is wired): CDI's phases, progress,
 * conditions and events; bounded concurrency; retry and failure reasons; idempotent create;
 * delete refused while a VMI uses the claim; uploads staged and capped; crash recovery of an
 * interrupted import; the record store (0600 files, atomic, corrupt records moved aside).
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { isVhError } from '../../src/errors';
import { DataVolumeController } from '../../src/volumes/datavolume-controller';
import { DataVolumeStore } from '../../src/volumes/datavolume-store';
import { ImportError, type ImportRequest, type ImportResult, type Importer } from '../../src/volumes/importer/types';

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vh-dv-')));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
let n = 0;

function setup(importer?: Importer, users: string[] = []): { c: DataVolumeController; state: string; root: string; users: string[] } {
  const base = path.join(TMP, `t${++n}`);
  const state = path.join(base, 'state');
  const root = path.join(base, 'volumes');
  const c = new DataVolumeController({
    stateDir: state, claimRoot: root, logger: pino({ level: 'silent' }), claimUsers: () => users,
    restarts: { max: 2, backoff: { initialMs: 10, maxMs: 20, stableMs: 0 } }, ...(importer ? { importer } : {}),
  });
  c.start();
  return { c, state, root, users };
}

const manifest = (name: string, source: Record<string, unknown>, size = '16Mi'): string =>
  JSON.stringify({ apiVersion: 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: { name, namespace: 'ns' }, spec: { source, storage: { resources: { requests: { storage: size } } } } });

async function until(what: string, f: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** An importer whose runs wait for release(); it records every request and reports 45 %. */
function gated(): Importer & { reqs: ImportRequest[]; release: (r?: Error) => void } {
  const waiters: Array<(e?: Error) => void> = [];
  const reqs: ImportRequest[] = [];
  return {
    reqs,
    release: (e) => waiters.splice(0).forEach((w) => w(e)),
    run: (req) => {
      reqs.push(req);
      req.onProgress({ stage: 'Downloading', percent: 45, bytesDone: 45, bytesTotal: 100, attempt: 1 });
      const aborted = new Promise<never>((_, reject) => req.signal.addEventListener('abort', () => reject(new ImportError('Canceled', 'import canceled', false)), { once: true }));
      return Promise.race([aborted, new Promise<ImportResult>((resolve, reject) => waiters.push((e) => {
        if (req.signal.aborted) return;
        if (e) return reject(e);
        fs.writeFileSync(path.join(req.targetDir, 'disk.img'), 'x');
        resolve({ path: path.join(req.targetDir, 'disk.img'), virtualSizeBytes: req.sizeBytes, sourceFormat: 'raw', sourceSha256: '', attempts: 1, durationMs: 1 });
      }))]);
    },
  };
}

test('blank (built-in importer): Pending -> Succeeded, a sparse disk.img of the size, Bound/Ready/Running, 0600 record; create is idempotent', async () => {
  const { c, state, root } = setup();
  const { dv, changed } = c.create(manifest('blank-a', { blank: {} }));
  assert.equal(changed, true);
  assert.equal(dv.status.claimName, 'blank-a');
  await until('Succeeded', () => c.get('ns', 'blank-a').status.phase === 'Succeeded');
  const v = c.get('ns', 'blank-a');
  assert.equal(v.status.progress, '100.00%');
  const cond = Object.fromEntries(v.status.conditions.map((x) => [x.type, `${x.status}/${x.reason}`]));
  assert.deepEqual(cond, { Ready: 'True/', Running: 'False/Completed', Bound: 'True/Bound' });
  assert.deepEqual(v.events.map((e) => e.reason), ['Bound', 'ImportInProgress', 'ImportSucceeded']);
  const img = path.join(root, 'ns/blank-a/disk.img');
  assert.equal(fs.statSync(img).size, 16 * 2 ** 20);
  assert.ok(fs.statSync(img).blocks * 512 < 2 ** 20, 'sparse');
  assert.equal(fs.statSync(path.join(state, 'datavolumes/ns_blank-a.json')).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(state, 'datavolumes')).mode & 0o777, 0o700);
  assert.equal(c.create(manifest('blank-a', { blank: {} })).changed, false);
  assert.throws(() => c.create(manifest('blank-a', { blank: {} }, '32Mi')), (e) => isVhError(e, 'VH_ERR_ALREADY_EXISTS') && /different spec/.test(e.message));
  fs.mkdirSync(path.join(root, 'ns/admin-claim'), { recursive: true });
  assert.throws(() => c.create(manifest('admin-claim', { blank: {} })), (e) => isVhError(e, 'VH_ERR_ALREADY_EXISTS') && /a PersistentVolumeClaim of that name/.test(e.message));
  assert.throws(() => c.create(manifest('bad', { s3: { url: 's3://x' } })), (e) => isVhError(e, 'VH_ERR_INVALID_ARGUMENT') && /spec\.source\.s3/.test(e.message));
  assert.equal(c.list().length, 1, 'refused creates changed nothing');
  assert.equal(fs.existsSync(path.join(root, 'ns/bad')), false);
  // without an importer for http, the built-in one fails it (not retryable)
  c.create(manifest('web', { http: { url: 'https://example.org/x.img' } }));
  await until('Failed', () => c.get('ns', 'web').status.phase === 'Failed');
  assert.deepEqual(c.readiness('ns', 'web'), { phase: 'Failed', progress: '0.00%', message: 'SourceMissing: no importer for http sources on this build (only blank)' });
  await c.stop();
});

test('at most two imports at once (ImportScheduled), progress "45.00%", the source handed to the importer', async () => {
  const imp = gated();
  const { c, root } = setup(imp);
  c.create(manifest('a', { http: { url: 'https://h/a.img', extraHeaders: ['Authorization: Bearer s3cr3t'] } }));
  c.create(manifest('b', { registry: { url: 'docker://r/b:1' } }));
  c.create(manifest('c', { blank: {} }));
  await until('two running', () => imp.reqs.length === 2);
  assert.deepEqual(c.list().map((d) => [d.name, d.status.phase, d.status.progress]), [['a', 'ImportInProgress', '45.00%'], ['b', 'ImportInProgress', '45.00%'], ['c', 'ImportScheduled', 'N/A']]);
  assert.deepEqual(imp.reqs.map((r) => r.source), [{ kind: 'http', url: 'https://h/a.img', checksum: null, extraHeaders: ['Authorization: Bearer s3cr3t'] }, { kind: 'registry', url: 'docker://r/b:1' }]);
  assert.equal(imp.reqs[0]!.targetDir, path.join(root, 'ns/a'));
  assert.equal(imp.reqs[0]!.sizeBytes, 16 * 2 ** 20);
  assert.doesNotMatch(JSON.stringify(c.get('ns', 'a')), /s3cr3t/, 'header values are redacted in views');
  assert.match(JSON.stringify(c.get('ns', 'a').manifest), /Authorization: <redacted: 13 bytes, sha256:/);
  imp.release();
  await until('third running', () => imp.reqs.length === 3);
  imp.release();
  await until('all Succeeded', () => c.list().every((d) => d.status.phase === 'Succeeded'));
  await c.stop();
});

test('a retryable failure restarts the import (restartCount, backoff) until maxRestarts, then Failed; a permanent one fails at once', async () => {
  const imp = gated();
  const { c } = setup(imp);
  c.create(manifest('flaky', { http: { url: 'https://h/x' } }));
  await until('first run', () => imp.reqs.length === 1);
  imp.release(new ImportError('ConnectionFailed', 'connection reset', true));
  await until('second run', () => imp.reqs.length === 2);
  assert.equal(c.get('ns', 'flaky').status.restartCount, 1);
  assert.ok(c.get('ns', 'flaky').events.some((e) => e.type === 'Warning' && /^ConnectionFailed: connection reset; retrying in \d+ s \(restart 1 of 2\)$/.test(e.message)));
  imp.release(new ImportError('HttpError', 'HTTP 503', true));
  await until('third run', () => imp.reqs.length === 3);
  imp.release(new ImportError('HttpError', 'HTTP 503', true));
  await until('Failed', () => c.get('ns', 'flaky').status.phase === 'Failed');
  const v = c.get('ns', 'flaky');
  assert.equal(v.status.restartCount, 2);
  assert.deepEqual(v.status.conditions.find((x) => x.type === 'Running'), { ...v.status.conditions.find((x) => x.type === 'Running')!, status: 'False', reason: 'HttpError', message: 'HTTP 503' });

  c.create(manifest('gone', { http: { url: 'https://h/404' } }));
  await until('run', () => imp.reqs.length === 4);
  imp.release(new ImportError('NotFound', 'https://h/404: 404 Not Found', false));
  await until('Failed', () => c.get('ns', 'gone').status.phase === 'Failed');
  assert.equal(c.get('ns', 'gone').status.restartCount, 0);
  assert.equal(c.readiness('ns', 'gone')?.message, 'NotFound: https://h/404: 404 Not Found');
  await c.stop();
});

test('delete: refused while a VMI uses the claim (naming it); otherwise the claim directory and record go', async () => {
  const users: string[] = ['ns/vm1'];
  const { c, root, state } = setup(undefined, users);
  c.create(manifest('used', { blank: {} }));
  await until('Succeeded', () => c.get('ns', 'used').status.phase === 'Succeeded');
  await assert.rejects(c.delete('ns', 'used'), (e) => isVhError(e, 'VH_ERR_FAILED_PRECONDITION') && e.message === 'DataVolume ns/used is in use by VMI ns/vm1: delete the VMI first');
  assert.ok(fs.existsSync(path.join(root, 'ns/used/disk.img')));
  users.length = 0;
  await c.delete('ns', 'used');
  assert.equal(fs.existsSync(path.join(root, 'ns/used')), false);
  assert.equal(fs.existsSync(path.join(state, 'datavolumes/ns_used.json')), false);
  assert.throws(() => c.get('ns', 'used'), (e) => isVhError(e, 'VH_ERR_NOT_FOUND'));
  await c.stop();
});

test('delete during an import aborts it and waits for it before the claim goes', async () => {
  const imp = gated();
  const { c, root } = setup(imp);
  c.create(manifest('busy', { http: { url: 'https://h/x' } }));
  await until('running', () => imp.reqs.length === 1);
  assert.equal(imp.reqs[0]!.signal.aborted, false);
  await c.delete('ns', 'busy');
  assert.equal(imp.reqs[0]!.signal.aborted, true);
  assert.equal(fs.existsSync(path.join(root, 'ns/busy')), false);
  assert.deepEqual(c.list(), []);
  await c.stop();
});

async function* bytes(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
}

test('upload: UploadReady, bytes staged (0600) and handed over as {kind: upload, file}; over the size refused with nothing left', async () => {
  const imp = gated();
  const { c, root } = setup(imp);
  c.create(manifest('up', { upload: {} }, '1Mi'));
  assert.equal(c.get('ns', 'up').status.phase, 'UploadReady');
  await assert.rejects(c.upload('ns', 'up', bytes(Buffer.alloc(2 ** 20), Buffer.alloc(1))), (e) => isVhError(e, 'VH_ERR_RESOURCE_EXHAUSTED'));
  assert.deepEqual(fs.readdirSync(path.join(root, '.upload')), [], 'an oversize upload leaves nothing');
  assert.equal(c.get('ns', 'up').status.phase, 'UploadReady');
  const r = await c.upload('ns', 'up', bytes(Buffer.from('QFI'), Buffer.from([0xfb, 1, 2])));
  assert.equal(r.bytes, 6);
  await until('import started', () => imp.reqs.length === 1);
  const src = imp.reqs[0]!.source as { kind: string; file: string };
  assert.equal(src.kind, 'upload');
  assert.deepEqual(fs.readFileSync(src.file), Buffer.from([0x51, 0x46, 0x49, 0xfb, 1, 2]));
  assert.equal(fs.statSync(src.file).mode & 0o777, 0o600);
  await assert.rejects(c.upload('ns', 'up', bytes(Buffer.from('x'))), (e) => isVhError(e, 'VH_ERR_FAILED_PRECONDITION') && /ImportInProgress, not UploadReady/.test(e.message));
  imp.release();
  await until('Succeeded', () => c.get('ns', 'up').status.phase === 'Succeeded');
  assert.equal(fs.existsSync(src.file), false, 'the staged file is removed after the import');
  c.create(manifest('blank-b', { blank: {} }));
  await assert.rejects(c.upload('ns', 'blank-b', bytes(Buffer.from('x'))), (e) => isVhError(e, 'VH_ERR_FAILED_PRECONDITION') && /has no upload source/.test(e.message));
  await c.stop();
});

test('crash during an import: the next start removes temporaries and scratch and imports again (restartCount + 1)', async () => {
  const imp = gated();
  const first = setup(imp);
  first.c.create(manifest('mid', { http: { url: 'https://h/big' } }));
  await until('running', () => imp.reqs.length === 1);
  // the handler dies here: leave what a killed importer leaves behind
  const dir = path.join(first.root, 'ns/mid');
  fs.writeFileSync(path.join(dir, '.disk.img.tmp-123'), 'partial');
  fs.writeFileSync(path.join(first.root, '.scratch/ns_mid/download'), 'partial');
  const imp2 = gated();
  const again = new DataVolumeController({ stateDir: first.state, claimRoot: first.root, logger: pino({ level: 'silent' }), claimUsers: () => [], importer: imp2 });
  again.start();
  await until('re-run', () => imp2.reqs.length === 1);
  assert.deepEqual(fs.readdirSync(dir), []);
  assert.deepEqual(fs.readdirSync(path.join(first.root, '.scratch/ns_mid')), []);
  const v = again.get('ns', 'mid');
  assert.equal(v.status.restartCount, 1);
  assert.ok(v.events.some((e) => e.reason === 'ImportRestarted'));
  imp2.release();
  await until('Succeeded', () => again.get('ns', 'mid').status.phase === 'Succeeded');
  await again.stop();
  await first.c.stop();
  imp.release(new Error('abandoned'));
});

test('store: a corrupt record is moved aside and reported; a leftover temporary is removed', () => {
  const dir = path.join(TMP, 'store');
  const s = new DataVolumeStore(dir);
  fs.mkdirSync(s.dir, { recursive: true });
  fs.writeFileSync(path.join(s.dir, 'ns_broken.json'), '{"version":1');
  fs.writeFileSync(path.join(s.dir, 'ns_x.json.tmp-99'), '{}');
  const { records, problems } = s.load();
  assert.deepEqual(records, []);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /ns_broken\.json: not JSON .*; moved to .*\.corrupt-\d+$/);
  assert.deepEqual(fs.readdirSync(s.dir).map((f) => f.replace(/\d+$/, 'N')), ['ns_broken.json.corrupt-N']);
});
