/** RecordStore: round trip, atomic writes, corrupt/torn records moved aside, remove, write failures. */
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, isVhError } from '../../src/errors';
import { RECORD_VERSION, RecordStore, type VmiRecord } from '../../src/vmi/control/store';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'vmi-store-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

const UID_A = '11111111-2222-4333-8444-555555555555';
const UID_B = '66666666-7777-4888-9999-aaaaaaaaaaaa';

function rec(uid: string, over: Partial<VmiRecord> = {}): VmiRecord {
  return {
    version: RECORD_VERSION, uid, namespace: 'default', name: `vm-${uid.slice(0, 4)}`, generation: 1,
    manifest: { metadata: { name: `vm-${uid.slice(0, 4)}`, uid }, spec: { domain: {} } },
    deleting: false, wantRunning: true, launcher: null, phase: 'Pending', reason: 'accepted', restarts: 0, revision: 1, updatedAt: '',
    ...over,
  };
}

function freshStore(): { store: RecordStore; stateDir: string } {
  const stateDir = fs.mkdtempSync(path.join(TMP, 'state-'));
  return { store: new RecordStore(stateDir), stateDir };
}

function strip(r: VmiRecord): Omit<VmiRecord, 'updatedAt'> {
  const { updatedAt: _u, ...rest } = r;
  return rest;
}

describe('RecordStore', () => {
  it('write then load round-trips every field (version and updatedAt filled in)', () => {
    const { store } = freshStore();
    const a = rec(UID_A, { launcher: { pid: 42, startTime: 7, spawnTokenHash: 'ab', sessionTokenHash: '', spawnedAt: '2026-01-01T00:00:00.000Z' }, revision: 5, generation: 3 });
    const b = rec(UID_B, { deleting: true, wantRunning: false, phase: 'Failed', reason: 'x' });
    store.write(a);
    store.write(b);
    const { records, problems } = store.load();
    assert.deepEqual(problems, []);
    assert.equal(records.length, 2);
    const byUid = new Map(records.map((r) => [r.uid, r]));
    assert.deepEqual(strip(byUid.get(UID_A)!), strip(a));
    assert.deepEqual(strip(byUid.get(UID_B)!), strip(b));
    assert.ok(!Number.isNaN(Date.parse(byUid.get(UID_A)!.updatedAt)));
    const dir = store.dir(UID_A);
    assert.equal(fs.statSync(path.join(dir, 'record.json')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(fs.readdirSync(dir), ['record.json'], 'no temporary file left behind');
  });

  it('load narrows VMI directories an older version made 0750 (the records hold cloud-init secrets)', () => {
    const { store } = freshStore();
    store.write(rec(UID_A));
    const dir = store.dir(UID_A);
    fs.chmodSync(dir, 0o750);
    fs.chmodSync(path.dirname(dir), 0o750);
    assert.equal(store.load().records.length, 1);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.dirname(dir)).mode & 0o777, 0o700);
  });

  it('a later write replaces the record', () => {
    const { store } = freshStore();
    store.write(rec(UID_A, { generation: 1 }));
    store.write(rec(UID_A, { generation: 2, revision: 9 }));
    const [r] = store.load().records;
    assert.equal(r!.generation, 2);
    assert.equal(r!.revision, 9);
  });

  it('load on a missing root is empty, not an error', () => {
    const store = new RecordStore(path.join(TMP, 'never-created'));
    assert.deepEqual(store.load(), { records: [], problems: [] });
  });

  it('cleans leftover record.json.tmp-* at load and keeps the good record', () => {
    const { store } = freshStore();
    store.write(rec(UID_A));
    const dir = store.dir(UID_A);
    fs.writeFileSync(path.join(dir, 'record.json.tmp-12345'), '{"half":');
    fs.writeFileSync(path.join(dir, 'record.json.tmp-1'), '');
    const { records, problems } = store.load();
    assert.equal(records.length, 1);
    assert.deepEqual(problems, []);
    assert.deepEqual(fs.readdirSync(dir), ['record.json']);
  });

  for (const [what, text] of [
    ['garbage', 'not json at all \u0000\u0001'],
    ['torn (truncated) JSON', JSON.stringify(rec(UID_A), null, 1).slice(0, 60)],
    ['an empty file', ''],
    ['a JSON array', '[]'],
    ['an unsupported version', JSON.stringify({ ...rec(UID_A), version: 99 })],
    ['missing bookkeeping fields', JSON.stringify({ ...rec(UID_A), deleting: 'no' })],
  ] as const) {
    it(`moves ${what} aside to record.json.corrupt-*, reports it, never deletes it`, () => {
      const { store } = freshStore();
      store.write(rec(UID_B));
      const dir = store.dir(UID_A);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'record.json'), text);
      const { records, problems } = store.load();
      assert.deepEqual(records.map((r) => r.uid), [UID_B], 'the good record still loads');
      assert.equal(problems.length, 1);
      assert.match(problems[0]!, new RegExp(`${UID_A}/record\\.json: .*moved to .*record\\.json\\.corrupt-\\d+`));
      const files = fs.readdirSync(dir);
      assert.equal(files.length, 1);
      assert.match(files[0]!, /^record\.json\.corrupt-\d+$/);
      assert.equal(fs.readFileSync(path.join(dir, files[0]!), 'utf8'), text, 'content kept byte for byte');
    });
  }

  it('a moved-aside corrupt record survives the NEXT load too (never deleted)', () => {
    const { store } = freshStore();
    const dir = store.dir(UID_A);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'record.json'), 'garbage');
    fs.writeFileSync(path.join(dir, 'disk.qcow2'), 'guest data');
    store.load();
    const files = fs.readdirSync(dir).sort();
    assert.equal(files.length, 2);
    const again = store.load(); // e.g. the next handler restart
    assert.deepEqual(again.records, []);
    assert.ok(fs.existsSync(dir), `the second load removed ${dir} with its corrupt record: ${JSON.stringify(again.problems)}`);
    assert.deepEqual(fs.readdirSync(dir).sort(), files);
  });

  it('refuses a record whose uid does not match its directory', () => {
    const { store } = freshStore();
    const dir = store.dir(UID_A);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'record.json'), JSON.stringify(rec(UID_B)));
    const { records, problems } = store.load();
    assert.deepEqual(records, []);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /does not match its directory/);
    assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('record.json.corrupt-')));
  });

  it('ignores (and reports, never deletes) entries that are not UUID directories', () => {
    const { store } = freshStore();
    store.write(rec(UID_A));
    fs.mkdirSync(path.join(store.root, 'not-a-uid'));
    fs.writeFileSync(path.join(store.root, 'not-a-uid', 'keep'), 'x');
    const upper = UID_B.toUpperCase();
    fs.mkdirSync(path.join(store.root, upper));
    const { records, problems } = store.load();
    assert.deepEqual(records.map((r) => r.uid), [UID_A]);
    assert.equal(problems.length, 2);
    assert.ok(fs.existsSync(path.join(store.root, 'not-a-uid', 'keep')));
    assert.ok(fs.existsSync(path.join(store.root, upper)));
  });

  it('a VMI directory without a record (interrupted teardown) is reported and removed', () => {
    const { store } = freshStore();
    const dir = store.dir(UID_A);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'disk.qcow2'), 'x');
    const { records, problems } = store.load();
    assert.deepEqual(records, []);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /no record/);
    assert.equal(fs.existsSync(dir), false);
  });

  it('remove() deletes the record and the whole VMI directory; a missing one is fine', () => {
    const { store } = freshStore();
    store.write(rec(UID_A));
    store.write(rec(UID_B));
    fs.writeFileSync(path.join(store.dir(UID_A), 'serial.log'), 'boot');
    store.remove(UID_A);
    assert.equal(fs.existsSync(store.dir(UID_A)), false);
    assert.deepEqual(store.load().records.map((r) => r.uid), [UID_B]);
  });

  it('dir() refuses anything that is not a lower-case UUID (no path escapes)', () => {
    const { store } = freshStore();
    for (const bad of ['..', '../etc', UID_B.toUpperCase(), `${UID_A}/..`, '', 'x'.repeat(36)]) {
      assert.throws(() => store.dir(bad), (e) => isVhError(e, ErrorCodes.INVALID_ARGUMENT), bad);
      assert.throws(() => store.write(rec(bad)), (e) => isVhError(e, ErrorCodes.INVALID_ARGUMENT), bad);
    }
  });
});

describe('RecordStore on a full file system (tmpfs)', () => {
  const mnt = path.join(TMP, 'tiny');
  let mounted = false;
  try {
    fs.mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    mounted = false;
  }
  after(() => {
    if (mounted) execFileSync('umount', [mnt], { stdio: 'ignore' });
  });

  const fill = (dir: string, leaveBytes: number): void => {
    // Fill page by page, then free enough to leave about `leaveBytes`.
    const filler = path.join(dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    try {
      const page = Buffer.alloc(4096, 1);
      for (;;) {
        try {
          if (fs.writeSync(fd, page) < page.length) break;
        } catch {
          break;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    if (leaveBytes > 0) fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - leaveBytes));
  };

  it('ENOSPC: STATE_WRITE_FAILED naming ENOSPC, the previous record intact, no temp file left', { skip: !mounted && 'mount -t tmpfs not permitted' }, () => {
    const stateDir = path.join(mnt, 'a');
    const store = new RecordStore(stateDir);
    store.write(rec(UID_A, { generation: 1 }));
    const before = fs.readFileSync(path.join(store.dir(UID_A), 'record.json'), 'utf8');
    fill(mnt, 0);
    let err: unknown;
    try {
      store.write(rec(UID_A, { generation: 2, reason: 'r'.repeat(8000) }));
    } catch (e) {
      err = e;
    }
    assert.ok(isVhError(err, ErrorCodes.STATE_WRITE_FAILED), `expected STATE_WRITE_FAILED, got ${String(err)}`);
    assert.match((err as Error).message, /ENOSPC/);
    assert.equal((err as unknown as { details: { code: string } }).details.code, 'ENOSPC');
    assert.equal(fs.readFileSync(path.join(store.dir(UID_A), 'record.json'), 'utf8'), before, 'the last good record stays');
    assert.deepEqual(fs.readdirSync(store.dir(UID_A)), ['record.json']);
    assert.equal(store.load().records[0]!.generation, 1);
    fs.rmSync(path.join(mnt, 'filler'));
    fs.rmSync(stateDir, { recursive: true });
  });

  it('a short write (some space left, less than the record) never replaces the record with a torn one', { skip: !mounted && 'mount -t tmpfs not permitted' }, () => {
    const stateDir = path.join(mnt, 'b');
    const store = new RecordStore(stateDir);
    store.write(rec(UID_B, { generation: 1 }));
    const file = path.join(store.dir(UID_B), 'record.json');
    const before = fs.readFileSync(file, 'utf8');
    fill(mnt, 4096); // one page free: write(2) returns a short count instead of ENOSPC
    let err: unknown;
    try {
      store.write(rec(UID_B, { generation: 2, reason: 'r'.repeat(12_000) }));
    } catch (e) {
      err = e;
    }
    const now = fs.readFileSync(file, 'utf8');
    const parsed = (() => {
      try {
        return JSON.parse(now) as VmiRecord;
      } catch {
        return null;
      }
    })();
    assert.ok(parsed !== null, `record.json is torn after a short write (${now.length} bytes, err=${String(err)})`);
    if (parsed.generation === 1) {
      assert.equal(now, before);
      assert.ok(isVhError(err, ErrorCodes.STATE_WRITE_FAILED), `the failed write must throw STATE_WRITE_FAILED, got ${String(err)}`);
    } else {
      assert.equal(parsed.generation, 2);
      assert.equal(err, undefined);
    }
    fs.rmSync(path.join(mnt, 'filler'));
    fs.rmSync(stateDir, { recursive: true });
  });
});
