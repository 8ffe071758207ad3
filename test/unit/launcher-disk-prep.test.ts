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
import { DiskPrepError, prepareDisks, removePreparedDisks } from '../../src/launcher/disk-prep';
import { createLauncherLogger } from '../../src/launcher/log';
import { type DiskPrep, diskPrepToWire } from '../../src/launcher-protocol/messages';
import { ProtocolViolation, checkDiskPlan } from '../../src/launcher-protocol/validate';

const logger = createLauncherLogger({ level: 'silent', nodeName: 'test' });

describe('launcher disk preparation', () => {
  let root: string;
  let vmiDir: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-diskprep-'));
    vmiDir = path.join(root, 'vmi');
    fs.mkdirSync(vmiDir);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('checks the plan and confines paths to the VMI directory (hostDisk excepted)', () => {
    const good: DiskPrep[] = [
      { kind: 'hostDisk', disk: 'h', path: '/srv/data/h.img', sizeBytes: null, create: false },
      { kind: 'overlay', disk: 'o', path: path.join(vmiDir, 'o.qcow2'), backingFile: '/b.img', backingFormat: 'qcow2' },
      { kind: 'sparse', disk: 's', path: path.join(vmiDir, 's.qcow2'), sizeBytes: 1 << 20 },
      { kind: 'cloudInit', disk: 'c', path: path.join(vmiDir, 'seed.iso'), userData: 'u', metaData: 'm', networkData: null },
    ];
    assert.deepEqual(checkDiskPlan(good.map(diskPrepToWire), vmiDir), good, 'wire form and back');
    const sparse = (over: object) => ({ disk: 'a', path: path.join(vmiDir, 'a'), sparse: { sizeBytes: 1 }, ...over });
    const bad: Array<[unknown, RegExp]> = [
      [{ disks: [] }, /^disks: must be a list of DiskPrep/],
      [[{ disk: 'o', path: path.join(vmiDir, 'o.qcow2'), overlay: { backingFile: 'rel.img', backingFormat: 1 } }], /disks\[0\]\.overlay\.backing_file: 'rel.img' must be absolute/],
      [[{ disk: 'o', path: path.join(vmiDir, 'o.qcow2'), overlay: { backingFile: '/b.img', backingFormat: 0 } }], /overlay\.backing_format: must be FORMAT_QCOW2 or FORMAT_RAW/],
      [[{ disk: 'h', path: '/srv/h.img', hostDisk: { create: true } }], /host_disk\.size_bytes: is required when create is true/],
      [[{ disk: 'c', path: vmiDir, cloudInit: { userData: '', metaData: '' } }], /outside the VMI directory/],
      [[sparse({}), sparse({ disk: 'b' })], /disks\[1\]\.path: .* appears twice/],
      [[sparse({ disk: '' })], /disks\[0\]\.disk: must be a name/],
      [[sparse({ sparse: { sizeBytes: -1 } })], /disks\[0\]\.sparse\.size_bytes: must be a positive integer/],
      [[sparse({ sparse: { sizeBytes: 2 ** 60 } })], /size_bytes: must be a positive integer/],
      [[sparse({ path: `${vmiDir}/../x.qcow2` })], /must be absolute and normalised/],
      [[sparse({ path: path.join(vmiDir, 'x\0y') })], /must be absolute and normalised/],
      [[sparse({ path: '/' + 'a'.repeat(5000) })], /longer than 4096 bytes/],
      [[{ disk: 'a', path: path.join(vmiDir, 'a') }], /disks\[0\]: must have exactly one kind of overlay, sparse, host_disk, cloud_init, iso \(has 0\)/],
      [[sparse({ hostDisk: { create: false } })], /\(has 2\)/],
      [[sparse({ cloudInit: { userData: 'x'.repeat((1 << 20) + 1), metaData: '' }, sparse: undefined })], /cloud_init\.user_data: longer than/],
      [Array.from({ length: 257 }, (_, i) => sparse({ path: path.join(vmiDir, `d${i}`) })), /^disks: more than 256 entries/],
      [[null], /disks\[0\]: must be a message/],
    ];
    for (const [plan, re] of bad) assert.throws(() => checkDiskPlan(plan, vmiDir), (e: unknown) => e instanceof ProtocolViolation && re.test(e.message), String(re));
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
