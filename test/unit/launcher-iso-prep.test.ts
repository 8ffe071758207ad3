/**
 * The IsoDisk prep (config drives and object volumes): both ends refuse a bad one before any
 * file is touched (labels, paths that would leave the image, duplicates, sizes, modes), and the
 * launcher builds the image with the real genisoimage, read back with isoinfo: volume id,
 * file list, bytes (binary included) and modes exact; a rerun replaces the image with the new
 * content; a file of another kind is never replaced.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskPrepError, prepareDisks, removePreparedDisks } from '../../src/launcher/disk-prep';
import { createLauncherLogger } from '../../src/launcher/log';
import { type MessageSpec, SCHEMA, decode, decodeHandlerMessage, encode, encodeHandlerMessage } from '../../src/launcher-protocol/codec';
import * as L from '../../src/launcher-protocol/limits';
import { type DiskPrep, commandToWire, diskPrepToWire } from '../../src/launcher-protocol/messages';
import { ProtocolViolation, checkDiskPlan, checkStartDomain } from '../../src/launcher-protocol/validate';
import { isoFiles, isoRead, isoVolumeId } from '../lib/iso';

const logger = createLauncherLogger({ level: 'silent', nodeName: 'test' });

describe('IsoDisk prep', () => {
  let root: string;
  let vmiDir: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-isoprep-'));
    vmiDir = path.join(root, 'vmi');
    fs.mkdirSync(vmiDir);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  const iso = (files: Array<{ path: string; data?: Uint8Array; mode?: number }>, over: object = {}) => ({
    disk: 'cfg', path: path.join(vmiDir, 'disks/cfg.iso'), iso: { volumeLabel: 'cfgdata', files: files.map((f) => ({ data: Buffer.from('x'), ...f })), ...over },
  });

  it('checks labels, paths, duplicates, sizes and modes, naming the field', () => {
    const good: DiskPrep = { kind: 'iso', disk: 'cd', path: path.join(vmiDir, 'cd.iso'), volumeLabel: 'config-2', files: [{ path: 'openstack/latest/user_data', data: Buffer.from('#cloud-config\n'), mode: null }, { path: 'k', data: Buffer.alloc(0), mode: 0o600 }] };
    assert.deepEqual(checkDiskPlan([diskPrepToWire(good)], vmiDir), [good], 'wire form and back');
    const bad: Array<[unknown, RegExp]> = [
      [iso([], { volumeLabel: '' }), /iso\.volume_label: must be 1-32 characters/],
      [iso([], { volumeLabel: 'x'.repeat(33) }), /iso\.volume_label/],
      [iso([], { volumeLabel: 'a\nb' }), /iso\.volume_label/],
      [iso([{ path: '../etc/passwd' }]), /files\[0\]\.path: "\.\.\/etc\/passwd" has a '\.\.' component/],
      [iso([{ path: 'a/../../b' }]), /has a '\.\.' component/],
      [iso([{ path: '/etc/passwd' }]), /must be relative/],
      [iso([{ path: 'a//b' }]), /has a empty component|has a empty/],
      [iso([{ path: './a' }]), /has a '\.' component/],
      [iso([{ path: '' }]), /is empty/],
      [iso([{ path: 'a\0b' }]), /contains NUL/],
      [iso([{ path: 'x'.repeat(256) }]), /component longer than 255 bytes/],
      [iso([{ path: 'a' }, { path: 'a' }]), /files\[1\]\.path: "a" appears twice/],
      [iso([{ path: 'a' }, { path: 'a/b' }]), /files\[1\]\.path: "a\/b" lies below the file "a"/],
      [iso([{ path: 'a/b' }, { path: 'a' }]), /files\[1\]\.path: "a" appears twice \(or is also a directory\)/],
      [iso([{ path: 'a', mode: 0o4755 }]), /files\[0\]\.mode: must be permission bits/],
      [iso([{ path: 'a', data: 'text' as never }]), /files\[0\]\.data: must be bytes/],
      [iso([{ path: 'a', data: Buffer.alloc(L.MAX_ISO_BYTES) }, { path: 'b', data: Buffer.alloc(1) }]), /iso\.files: more than 2097152 bytes/],
      [iso(Array.from({ length: L.MAX_ISO_FILES + 1 }, (_, i) => ({ path: `f${i}` }))), /iso\.files: more than 1024 entries/],
      [{ ...iso([]), path: path.join(root, 'elsewhere.iso') }, /outside the VMI directory/],
    ];
    for (const [d, re] of bad) assert.throws(() => checkDiskPlan([d], vmiDir), (e: unknown) => e instanceof ProtocolViolation && re.test(e.message), String(re));
    // Several ISOs together stay within one StartDomain message.
    const big = (n: number) => ({ ...iso([{ path: 'a', data: Buffer.alloc(L.MAX_ISO_BYTES) }]), disk: `d${n}`, path: path.join(vmiDir, `d${n}.iso`) });
    assert.throws(() => checkDiskPlan([big(1), big(2)], vmiDir), (e: unknown) => e instanceof ProtocolViolation && /disks\[1\]: the plan's ISO files exceed/.test(e.message));
  });

  it('crosses the launcher codec as bytes: binary data, empty files and modes survive', () => {
    const data = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x0a]);
    const d: DiskPrep = { kind: 'iso', disk: 'sec', path: '/v/sec.iso', volumeLabel: 'cfgdata', files: [{ path: 'bin', data, mode: 0o400 }, { path: 'empty', data: Buffer.alloc(0), mode: null }] };
    const wire = encodeHandlerMessage({ command: commandToWire('c1', { start: { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [d] } }) });
    const back = decodeHandlerMessage(wire).command?.start;
    assert.deepEqual(checkStartDomain(back, '/v').disks, [d]);
  });

  it('a launcher from before IsoDisk (no field 7) refuses such a plan instead of building a wrong disk', () => {
    const d: DiskPrep = { kind: 'iso', disk: 'cfg', path: '/v/cfg.iso', volumeLabel: 'cfgdata', files: [{ path: 'k', data: Buffer.from('v'), mode: null }] };
    const bytes = encode(SCHEMA.get('StartDomain') as MessageSpec, { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [diskPrepToWire(d)] });
    const cur = SCHEMA.get('DiskPrep') as MessageSpec;
    const oldDiskPrep: MessageSpec = { ...cur, fields: cur.fields.filter((f) => f.no !== 7) };
    const start = SCHEMA.get('StartDomain') as MessageSpec;
    const oldStart: MessageSpec = { ...start, fields: start.fields.map((f) => (f.name === 'disks' ? { ...f, type: oldDiskPrep } : f)) };
    assert.throws(() => checkStartDomain(decode(oldStart, bytes), '/v'), (e: unknown) => e instanceof ProtocolViolation && /disks\[0\]: must have exactly one kind of .* \(has 0\)/.test(e.message));
  });

  it('builds the image with genisoimage: label, tree, bytes and modes exact; a rerun takes the new content', async () => {
    const binary = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, 0x0d, 0x0a]);
    const d: DiskPrep = {
      kind: 'iso', disk: 'cd', path: path.join(vmiDir, 'disks/cd.iso'), volumeLabel: 'config-2',
      files: [
        { path: 'openstack/latest/meta_data.json', data: Buffer.from('{"uuid":"u"}'), mode: null },
        { path: 'openstack/latest/user_data', data: binary, mode: 0o600 },
        { path: 'a-key.with_dots', data: Buffer.alloc(0), mode: null },
        { path: `k${'y'.repeat(90)}`, data: Buffer.from('long name'), mode: null },
      ],
    };
    await prepareDisks([d], { vmiDir, logger });
    assert.equal(fs.statSync(d.path).mode & 0o777, 0o600, 'the image may hold secrets');
    assert.equal(isoVolumeId(d.path), 'config-2');
    assert.deepEqual(isoFiles(d.path), new Map([
      ['/a-key.with_dots', 0o644],
      [`/k${'y'.repeat(90)}`, 0o644],
      ['/openstack/latest/meta_data.json', 0o644],
      ['/openstack/latest/user_data', 0o600],
    ]));
    assert.deepEqual(isoRead(d.path, '/openstack/latest/user_data'), binary);
    assert.equal(isoRead(d.path, '/openstack/latest/meta_data.json').toString(), '{"uuid":"u"}');
    assert.deepEqual(fs.readdirSync(path.dirname(d.path)).sort(), ['cd.iso'], 'no work directory or temp file left');
    // The object changed: the next run rebuilds the image in place.
    const ino = fs.statSync(d.path).ino;
    await prepareDisks([{ ...d, volumeLabel: 'cfgdata', files: [{ path: 'only', data: Buffer.from('new'), mode: null }] }], { vmiDir, logger });
    assert.equal(isoVolumeId(d.path), 'cfgdata');
    assert.deepEqual([...isoFiles(d.path).keys()], ['/only']);
    assert.notEqual(fs.statSync(d.path).ino, ino, 'renamed into place');
    assert.deepEqual(await removePreparedDisks([d], vmiDir), [d.path]);
  });

  it('an optional object that is missing: an empty image with the label', async () => {
    const d: DiskPrep = { kind: 'iso', disk: 'opt', path: path.join(vmiDir, 'disks/opt.iso'), volumeLabel: 'cfgdata', files: [] };
    await prepareDisks([d], { vmiDir, logger });
    assert.equal(isoVolumeId(d.path), 'cfgdata');
    assert.deepEqual(isoFiles(d.path).size, 0);
  });

  it('never replaces a file that is not an ISO image', async () => {
    const p = path.join(vmiDir, 'disks/guest.iso');
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, 'guest data');
    await assert.rejects(
      prepareDisks([{ kind: 'iso', disk: 'g', path: p, volumeLabel: 'cfgdata', files: [] }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && e.disk === 'g' && /is not a iso image .*refusing to overwrite/.test(e.message),
    );
    assert.equal(fs.readFileSync(p, 'utf8'), 'guest data');
  });

  it('refuses a path that escapes, even when handed past the parser', async () => {
    const p = path.join(vmiDir, 'disks/esc.iso');
    await assert.rejects(
      prepareDisks([{ kind: 'iso', disk: 'esc', path: p, volumeLabel: 'cfgdata', files: [{ path: '../../../escaped', data: Buffer.from('x'), mode: null }] }], { vmiDir, logger }),
      (e) => e instanceof DiskPrepError && /leaves the image/.test(e.message),
    );
    assert.equal(fs.existsSync(p), false);
    assert.equal(fs.existsSync(path.join(root, 'escaped')), false);
    assert.deepEqual(fs.readdirSync(path.dirname(p)).filter((n) => n.startsWith('.iso-')), [], 'the work directory is removed');
  });
});
