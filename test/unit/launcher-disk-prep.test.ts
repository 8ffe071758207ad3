/**
 * The launcher's disk plan executor with the real qemu-img and genisoimage: validation and
 * confinement, idempotence (a restarted launcher keeps existing disks), refusing to overwrite a
 * file of the wrong kind, and errors that name the disk and carry the tool's stderr.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { DiskPlanError, DiskPrepError, parseDiskPlan, prepareDisks, removePreparedDisks } from '../../src/launcher/disk-prep';
import type { DiskPrep } from '../../src/launcher-protocol/messages';

const logger = pino({ level: 'silent' });

describe('launcher disk preparation', () => {
  let root: string;
  let vmiDir: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-diskprep-'));
    vmiDir = path.join(root, 'vmi');
    fs.mkdirSync(vmiDir);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('validates the plan and confines paths to the VMI directory (hostDisk excepted)', () => {
    const ok = parseDiskPlan(JSON.stringify([{ kind: 'hostDisk', disk: 'h', path: '/srv/data/h.img', sizeBytes: null, create: false }]), vmiDir);
    assert.equal(ok[0]?.kind, 'hostDisk');
    const bad: Array<[unknown, RegExp]> = [
      [[{ kind: 'overlay', disk: 'o', path: path.join(vmiDir, 'o.qcow2'), backingFile: 'rel.img', backingFormat: 'qcow2' }], /backingFile must be absolute/],
      [[{ kind: 'overlay', disk: 'o', path: path.join(vmiDir, 'o.qcow2'), backingFile: '/b.img', backingFormat: 'vmdk' }], /backingFormat/],
      [[{ kind: 'hostDisk', disk: 'h', path: '/srv/h.img', sizeBytes: null, create: true }], /sizeBytes is required/],
      [[{ kind: 'cloudInit', disk: 'c', path: vmiDir, userData: '', metaData: '' }], /outside the VMI directory/],
      [[{ kind: 'sparse', disk: 'a', path: path.join(vmiDir, 'a'), sizeBytes: 1 }, { kind: 'sparse', disk: 'b', path: path.join(vmiDir, 'a'), sizeBytes: 1 }], /appears twice/],
      [[{ kind: 'sparse', disk: '', path: path.join(vmiDir, 'a'), sizeBytes: 1 }], /disk must be a non-empty string/],
      [[null], /is not an object/],
    ];
    for (const [plan, re] of bad) assert.throws(() => parseDiskPlan(JSON.stringify(plan), vmiDir), (e) => e instanceof DiskPlanError && re.test(e.message));
  });

  it('creates overlay, sparse, hostDisk and cloudInit, then keeps them on a second run', async () => {
    const base = path.join(root, 'base.raw');
    fs.writeFileSync(base, Buffer.alloc(1 << 20));
    const host = path.join(root, 'host/h.img');
    const plan: DiskPrep[] = [
      { kind: 'overlay', disk: 'root', path: path.join(vmiDir, 'disks/root.qcow2'), backingFile: base, backingFormat: 'raw' },
      { kind: 'sparse', disk: 'scratch', path: path.join(vmiDir, 'disks/scratch.qcow2'), sizeBytes: 16 << 20 },
      { kind: 'hostDisk', disk: 'host', path: host, sizeBytes: 8 << 20, create: true },
      { kind: 'cloudInit', disk: 'ci', path: path.join(vmiDir, 'seed.iso'), userData: '#cloud-config\n', metaData: 'instance-id: a\n', networkData: 'version: 2\n' },
    ];
    await prepareDisks(plan, { vmiDir, logger });
    const st = fs.statSync(host);
    assert.equal(st.size, 8 << 20);
    assert.ok(st.blocks * 512 < st.size, 'the host disk is sparse');
    const inodes = plan.map((d) => fs.statSync(d.path).ino);
    fs.appendFileSync(plan[1]!.path, 'guest writes'); // a disk in use; a rerun must not touch it
    const size = fs.statSync(plan[1]!.path).size;
    await prepareDisks(plan, { vmiDir, logger });
    assert.deepEqual(plan.map((d) => fs.statSync(d.path).ino), inodes);
    assert.equal(fs.statSync(plan[1]!.path).size, size);
    const removed = await removePreparedDisks(plan, vmiDir);
    assert.deepEqual(removed.sort(), [plan[0]!.path, plan[1]!.path, plan[3]!.path].sort());
    assert.ok(fs.existsSync(host), 'host disks are the user’s data and stay');
  });

  it('refuses to overwrite a file of the wrong kind', async () => {
    const p = path.join(vmiDir, 'wrong.qcow2');
    fs.writeFileSync(p, 'not an image');
    await assert.rejects(
      prepareDisks([{ kind: 'sparse', disk: 'wrong', path: p, sizeBytes: 1 << 20 }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && e.disk === 'wrong' && /refusing to overwrite/.test(e.message),
    );
    assert.equal(fs.readFileSync(p, 'utf8'), 'not an image');
  });

  it('names the disk and includes the tool’s stderr when a tool fails', async () => {
    const p = path.join(vmiDir, 'broken.qcow2');
    await assert.rejects(
      prepareDisks([{ kind: 'overlay', disk: 'broken', path: p, backingFile: path.join(root, 'missing.img'), backingFormat: 'qcow2' }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && /^disk 'broken': qemu-img create failed \(exit 1\): .*missing\.img/s.test(e.message),
    );
    assert.equal(fs.existsSync(p), false);
    assert.equal(fs.existsSync(`${p}.tmp`), false);
  });

  it('refuses a directory that leads out of the VMI directory through a symlink', async () => {
    const outside = path.join(root, 'outside');
    fs.mkdirSync(outside);
    fs.symlinkSync(outside, path.join(vmiDir, 'escape'));
    await assert.rejects(
      prepareDisks([{ kind: 'sparse', disk: 'esc', path: path.join(vmiDir, 'escape/x.qcow2'), sizeBytes: 1 << 20 }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && /outside the VMI directory/.test(e.message),
    );
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it('fails a missing hostDisk that is not to be created', async () => {
    await assert.rejects(
      prepareDisks([{ kind: 'hostDisk', disk: 'hd', path: path.join(root, 'nope.img'), sizeBytes: null, create: false }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && /disk 'hd': .* does not exist/.test(e.message),
    );
  });
});
