/**
 * Config volumes served as ISO disks: validation (configMap, secret, serviceAccount,
 * downwardAPI, sysprep, cloudInitConfigDrive and the cloud-init secretRefs: references only,
 * each mistake a violation with its path), the node's object reader (missing, optional, symlink
 * escapes, oversize, bad keys, special files, kubelet's ..data layout), and the disk plan:
 * which files each image holds, in KubeVirt's layout (config-2 OpenStack tree, kubelet's
 * downward API format), labels, and that nothing secret reaches the normalized VMI.
 */
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VhError } from '../../src/errors';
import { planDisks } from '../../src/vmi/render/disk-plan';
import { configDriveMetaData, formatMap, goQuote, type ResolvedObjects } from '../../src/vmi/render/iso-volumes';
import { defaultVmi } from '../../src/vmi/spec/defaults';
import { validateVmi } from '../../src/vmi/spec/validate';
import type { NormalizedVmi, ValidationContext } from '../../src/vmi/spec/types';
import { MAX_OBJECT_BYTES, ObjectError, readObject } from '../../src/volumes/objects';

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmi-objvol-')));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
const CTX: ValidationContext = { imageRoot: TMP, hostPathRoots: [TMP], requirements: 'pending' };
const UID = '0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;

function manifest(volumes: Spec[], metadata: Spec = {}): Spec {
  return {
    apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance',
    metadata: { name: 'web', namespace: 'apps', uid: UID, ...metadata },
    spec: { domain: { resources: { requests: { memory: '64Mi' } }, devices: { disks: volumes.map((v: { name: string }) => ({ name: v.name, disk: {} })) } }, volumes },
  };
}
function accept(volumes: Spec[], metadata: Spec = {}): NormalizedVmi {
  const r = validateVmi(defaultVmi(manifest(volumes, metadata)), CTX);
  if (!r.ok) assert.fail(`expected ok, got ${JSON.stringify(r.violations, null, 1)}`);
  return r.vmi;
}
function refused(volumes: Spec[]): string[] {
  const r = validateVmi(defaultVmi(manifest(volumes)), CTX);
  assert.equal(r.ok, false, 'expected violations');
  return r.ok ? [] : r.violations.map((x) => `${x.field}: ${x.message}`);
}

describe('validation: object volumes are honoured, only references are checked', () => {
  it('normalizes each kind, with no requirement and no content', () => {
    const v = accept([
      { name: 'cm', configMap: { name: 'app-config', optional: true, volumeLabel: 'APPCFG' } },
      { name: 'sec', secret: { secretName: 'app.secret' } },
      { name: 'sa', serviceAccount: { serviceAccountName: 'default' } },
      { name: 'dapi', downwardAPI: { fields: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'meta/name', mode: 0o600, fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } }] } },
      { name: 'unattend', sysprep: { secret: { name: 'win-answers' } } },
      { name: 'cd', cloudInitConfigDrive: { secretRef: { name: 'ud' }, networkData: 'version: 2\n' } },
      { name: 'nc', cloudInitNoCloud: { userData: '#cloud-config\n', networkDataSecretRef: { name: 'nd' } } },
    ]);
    assert.deepEqual(v.requirements, []);
    assert.deepEqual(v.disks.map((d) => d.volume), [
      { kind: 'configMap', name: 'cm', object: 'app-config', optional: true, volumeLabel: 'APPCFG' },
      { kind: 'secret', name: 'sec', object: 'app.secret', optional: false, volumeLabel: null },
      { kind: 'serviceAccount', name: 'sa', object: 'default' },
      { kind: 'downwardAPI', name: 'dapi', volumeLabel: null, fields: [{ path: 'labels', fieldPath: 'metadata.labels', mode: null }, { path: 'meta/name', fieldPath: 'metadata.name', mode: 0o600 }] },
      { kind: 'sysprep', name: 'unattend', source: 'secret', object: 'win-answers' },
      { kind: 'cloudInitConfigDrive', name: 'cd', userData: '', networkData: 'version: 2\n', userDataSecret: 'ud' },
      { kind: 'cloudInitNoCloud', name: 'nc', userData: '#cloud-config\n', networkData: null, networkDataSecret: 'nd' },
    ]);
  });

  it('a container resource in the downward API stays a requirement (it needs a pod)', () => {
    const v = accept([{ name: 'dapi', downwardAPI: { fields: [{ path: 'cpu', resourceFieldRef: { resource: 'limits.cpu' } }] } }]);
    assert.equal(v.requirements.length, 1);
    assert.match(v.requirements[0]?.needs ?? '', /container resource \(limits\.cpu\).*runs no pod/);
    assert.equal(v.requirements[0]?.field, 'spec.volumes[0].downwardAPI.fields[0].resourceFieldRef');
  });

  it('refuses bad references with their paths', () => {
    const out = refused([
      { name: 'a', configMap: { name: '../etc' } },
      { name: 'b', configMap: {} },
      { name: 'c', secret: { secretName: 'UPPER' } },
      { name: 'd', secret: { secretName: 's', volumeLabel: 'x'.repeat(33) } },
      { name: 'e', serviceAccount: { serviceAccountName: 'default' } },
      { name: 'f', serviceAccount: { serviceAccountName: 'other' } },
      { name: 'g', sysprep: { configMap: { name: 'a' }, secret: { name: 'b' } } },
      { name: 'h', downwardAPI: { fields: [{ path: '../x', fieldRef: { fieldPath: 'metadata.name' } }, { path: 'y', fieldRef: { fieldPath: 'spec.nodeName' } }, { path: 'z' }] } },
      { name: 'i', cloudInitConfigDrive: { userData: 'x', secretRef: { name: 'ud' } } },
      { name: 'j', cloudInitNoCloud: { networkDataSecretRef: { name: 'a/b' } } },
    ]).join('\n');
    for (const re of [
      /^spec\.volumes\[0\]\.configMap\.name: "\.\.\/etc" must be a DNS-1123 subdomain/m,
      /^spec\.volumes\[1\]\.configMap\.name: required/m,
      /^spec\.volumes\[2\]\.secret\.secretName: "UPPER" must be a DNS-1123 subdomain/m,
      /^spec\.volumes\[3\]\.secret\.volumeLabel: "x{33}" must be 1-32 characters/m,
      /^spec\.volumes\[5\]\.serviceAccount: only one serviceAccount volume is allowed/m,
      /^spec\.volumes\[6\]\.sysprep: must set exactly one of configMap, secret/m,
      /^spec\.volumes\[7\]\.downwardAPI\.fields\[0\]\.path: must not start with '\.\.'/m,
      /^spec\.volumes\[7\]\.downwardAPI\.fields\[1\]\.fieldRef\.fieldPath: "spec\.nodeName" is not supported in a downward API volume/m,
      /^spec\.volumes\[7\]\.downwardAPI\.fields\[2\]: must set exactly one of fieldRef, resourceFieldRef/m,
      /^spec\.volumes\[8\]\.cloudInitConfigDrive: must set at most one of userData, userDataBase64, secretRef/m,
      /^spec\.volumes\[9\]\.cloudInitNoCloud\.networkDataSecretRef\.name: "a\/b" must be a DNS-1123 subdomain/m,
    ]) assert.match(out, re);
    assert.doesNotMatch(out, /spec\.volumes\[4\]/, 'the first serviceAccount is fine');
  });
});

describe('the node object reader', () => {
  const root = path.join(TMP, 'objects');
  const put = (rel: string, data: string | Buffer, mode = 0o600): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(root, rel), data, { mode });
  };
  const cm = (name: string) => ({ namespace: 'apps', kind: 'configmaps' as const, name });
  const refuses = async (name: string, re: RegExp) => assert.rejects(readObject(root, cm(name)), (e: unknown) => e instanceof ObjectError && re.test(e.message), String(re));

  it('reads keys sorted, follows links that stay inside the root (kubelet ..data), says where it looked when missing', async () => {
    put('apps/configmaps/app/b.conf', 'bee');
    put('apps/configmaps/app/a.conf', Buffer.from([0, 1, 0xff]));
    put('apps/configmaps/app/..2026_12_06/z', 'zed');
    fs.symlinkSync('..2026_12_06', path.join(root, 'apps/configmaps/app/..data'));
    fs.symlinkSync('..data/z', path.join(root, 'apps/configmaps/app/z'));
    const r = await readObject(root, cm('app'));
    assert.ok(r.found);
    assert.deepEqual(r.keys.map((k) => [k.key, k.data.toString('hex')]), [['a.conf', '0001ff'], ['b.conf', Buffer.from('bee').toString('hex')], ['z', Buffer.from('zed').toString('hex')]]);
    assert.deepEqual(await readObject(root, cm('absent')), { found: false, dir: path.join(root, 'apps/configmaps/absent') });
    assert.deepEqual(await readObject(path.join(TMP, 'no-root'), cm('app')), { found: false, dir: path.join(TMP, 'no-root/apps/configmaps/app') });
  });

  it('refuses symlink escapes, oversize objects, bad keys, directories and special files', async () => {
    fs.writeFileSync(path.join(TMP, 'shadow'), 'secret outside the root');
    put('apps/configmaps/esc/ok', 'x');
    fs.symlinkSync(path.join(TMP, 'shadow'), path.join(root, 'apps/configmaps/esc/leak'));
    await refuses('esc', /key leak resolves to .*shadow, outside the object root/);
    fs.mkdirSync(path.join(root, 'apps/configmaps'), { recursive: true });
    fs.symlinkSync(TMP, path.join(root, 'apps/configmaps/dirlink'));
    await refuses('dirlink', /resolves to .*, outside the object root/);
    put('apps/configmaps/big/a', Buffer.alloc(MAX_OBJECT_BYTES - 10));
    put('apps/configmaps/big/b', Buffer.alloc(11));
    await refuses('big', /key b: the object holds more than 1048576 bytes/);
    put('apps/configmaps/badkey/has space', 'x');
    await refuses('badkey', /"has space" is not a valid key/);
    put('apps/configmaps/nested/sub/x', 'x');
    await refuses('nested', /key sub is not a regular file/);
    put('apps/configmaps/fifo/x', 'x');
    execFileSync('mkfifo', [path.join(root, 'apps/configmaps/fifo/pipe')]);
    await refuses('fifo', /key pipe is not a regular file/);
    put('apps/configmaps/dangling/x', 'x');
    fs.symlinkSync('nowhere', path.join(root, 'apps/configmaps/dangling/y'));
    await refuses('dangling', /key y: a dangling symlink/);
    put('apps/configmaps/afile', 'x');
    await refuses('afile', /is not a directory/);
    await assert.rejects(readObject(root, { namespace: 'apps', kind: 'secrets', name: '..' }), /not a DNS-1123 subdomain/);
    await assert.rejects(readObject(root, { namespace: '../x', kind: 'secrets', name: 'a' }), /namespace "..\/x" is not a DNS-1123 label/);
  });
});

describe('the disk plan of ISO volumes', () => {
  const VMI_DIR = '/var/lib/virt-handler/vmis/x';
  const labels = { app: 'web', 'kubevirt.io/domain': 'web' };
  const vmi = accept([
    { name: 'cm', configMap: { name: 'app-config' } },
    { name: 'opt', configMap: { name: 'gone', optional: true, volumeLabel: 'OPT' } },
    { name: 'sa', serviceAccount: { serviceAccountName: 'default' } },
    { name: 'dapi', downwardAPI: { volumeLabel: 'META', fields: [
      { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
      { path: 'm/name', fieldRef: { fieldPath: 'metadata.name' } },
      { path: 'ns', fieldRef: { fieldPath: 'metadata.namespace' } },
      { path: 'uid', mode: 0o400, fieldRef: { fieldPath: 'metadata.uid' } },
      { path: 'app', fieldRef: { fieldPath: "metadata.labels['app']" } },
      { path: 'ann', fieldRef: { fieldPath: 'metadata.annotations' } },
    ] } },
    { name: 'cd', cloudInitConfigDrive: { secretRef: { name: 'ud' }, networkDataBase64: Buffer.from('{"links":[]}').toString('base64') } },
    { name: 'nc', cloudInitNoCloud: { secretRef: { name: 'ud' } } },
    { name: 'inline', cloudInitNoCloud: { userData: '#cloud-config\n' } },
    { name: 'win', sysprep: { configMap: { name: 'answers' } } },
  ], { labels, annotations: { 'kubevirt.io/instancetype-name': 'u1.small', note: 'say "hi" \\ é' } });
  const resolved: ResolvedObjects = {
    cm: { kind: 'files', files: [{ key: 'app.properties', data: Buffer.from('a=1\n') }] },
    opt: { kind: 'files', files: [] },
    sa: { kind: 'files', files: [{ key: 'ca.crt', data: Buffer.from('CA') }, { key: 'namespace', data: Buffer.from('apps') }, { key: 'token', data: Buffer.from('tok') }] },
    cd: { kind: 'cloudInit', userData: Buffer.from([0x1f, 0x8b, 0]), networkData: null },
    nc: { kind: 'cloudInit', userData: Buffer.from('#cloud-config\nsecret: 1\n'), networkData: null },
    win: { kind: 'files', files: [{ key: 'Autounattend.xml', data: Buffer.from('<unattend/>') }] },
  };
  const plan = planDisks(vmi, VMI_DIR, {}, {}, resolved);
  const prep = (disk: string) => {
    const p = plan.preps.find((x) => x.disk === disk);
    assert.ok(p, disk);
    return p;
  };
  const files = (disk: string): Record<string, string> => {
    const p = prep(disk);
    assert.equal(p.kind, 'iso');
    return p.kind === 'iso' ? Object.fromEntries(p.files.map((f) => [f.path, Buffer.from(f.data).toString('latin1')])) : {};
  };

  it('labels, file names and raw disks', () => {
    assert.deepEqual(plan.preps.map((p) => [p.disk, p.kind, p.path.slice(VMI_DIR.length + 1), p.kind === 'iso' ? p.volumeLabel : '']), [
      ['cm', 'iso', 'disks/cm.iso', 'cfgdata'],
      ['opt', 'iso', 'disks/opt.iso', 'OPT'],
      ['sa', 'iso', 'disks/sa.iso', 'cfgdata'],
      ['dapi', 'iso', 'disks/dapi.iso', 'META'],
      ['cd', 'iso', 'disks/cd-configdrive.iso', 'config-2'],
      ['nc', 'iso', 'disks/nc-cidata.iso', 'cidata'],
      ['inline', 'cloudInit', 'disks/inline-cidata.iso', ''], // the older prep: every launcher version builds it
      ['win', 'iso', 'disks/win.iso', 'unattendCD'],
    ]);
    for (const d of vmi.disks) assert.deepEqual(plan.diskPaths[d.name], { path: prep(d.name).path, format: 'raw' });
  });

  it('object keys become files; an optional missing object an empty image', () => {
    assert.deepEqual(files('cm'), { 'app.properties': 'a=1\n' });
    assert.deepEqual(files('opt'), {});
    assert.deepEqual(files('sa'), { 'ca.crt': 'CA', namespace: 'apps', token: 'tok' });
    assert.deepEqual(files('win'), { 'Autounattend.xml': '<unattend/>' });
  });

  it("the downward API in kubelet's format", () => {
    assert.deepEqual(files('dapi'), {
      labels: 'app="web"\nkubevirt.io/domain="web"',
      'm/name': 'web',
      ns: 'apps',
      uid: UID,
      app: 'web',
      ann: Buffer.from('kubevirt.io/instancetype-name="u1.small"\nnote="say \\"hi\\" \\\\ é"').toString('latin1'),
    });
    const p = prep('dapi');
    assert.equal(p.kind === 'iso' ? p.files.find((f) => f.path === 'uid')?.mode : undefined, 0o400);
    assert.equal(goQuote('tab\there \x01 \x7f \u0085 ü \\'), '"tab\\there \\x01 \\x7f \\u0085 ü \\\\"');
    assert.equal(formatMap({ b: '2', a: '1' }), 'a="1"\nb="2"');
  });

  it('the config drive: OpenStack layout, KubeVirt meta_data.json, user data from the Secret byte for byte', () => {
    const meta = JSON.stringify({ instance_type: 'u1.small', instance_id: 'web.apps', hostname: 'web', uuid: UID });
    assert.equal(configDriveMetaData(vmi), meta);
    assert.deepEqual(files('cd'), {
      'openstack/latest/meta_data.json': meta,
      'openstack/latest/user_data': '\x1f\x8b\x00',
      'openstack/latest/network_data.json': '{"links":[]}',
    });
    assert.deepEqual(files('nc'), { 'user-data': '#cloud-config\nsecret: 1\n', 'meta-data': `instance-id: ${UID}\nlocal-hostname: web\n` });
    const inline = prep('inline');
    assert.equal(inline.kind === 'cloudInit' ? inline.metaData : '', `instance-id: ${UID}\nlocal-hostname: web\n`, 'both NoCloud forms write the same meta-data');
  });

  it('nothing read from an object is in the normalized VMI; an unresolved volume or an oversized plan is refused', () => {
    assert.doesNotMatch(JSON.stringify(vmi), /secret: 1|tok|a=1/);
    assert.throws(() => planDisks(vmi, VMI_DIR, {}, {}, { ...resolved, cm: undefined as never }), (e: unknown) => e instanceof VhError && /disk cm: the object of volume cm has not been read/.test(e.message));
    // The launcher's checks run on the handler's side too: a bad key name never reaches a launcher.
    assert.throws(() => planDisks(vmi, VMI_DIR, {}, {}, { ...resolved, cm: { kind: 'files', files: [{ key: '../x', data: Buffer.from('') }] } }), (e: unknown) => e instanceof VhError && /^disk cm: disks\[0\]\.iso\.files\[0\]\.path: "\.\.\/x" has a '\.\.' component/.test(e.message));
    // An inline config drive reads no object.
    const inline = accept([{ name: 'cd', cloudInitConfigDrive: { userDataBase64: Buffer.from('#!/bin/sh\n').toString('base64') } }]);
    const p = planDisks(inline, VMI_DIR).preps[0];
    assert.deepEqual(p?.kind === 'iso' ? p.files.map((f) => [f.path, Buffer.from(f.data).toString()]) : [], [['openstack/latest/meta_data.json', JSON.stringify({ instance_id: 'web.apps', hostname: 'web', uuid: UID })], ['openstack/latest/user_data', '#!/bin/sh\n']]);
    const huge = { kind: 'files' as const, files: [{ key: 'k', data: Buffer.alloc(2 * 1024 * 1024) }] };
    assert.throws(() => planDisks(vmi, VMI_DIR, {}, {}, { ...resolved, cm: huge, opt: huge }), (e: unknown) => e instanceof VhError && /hold more than 3145728 bytes together \(reached at disk opt\)/.test(e.message));
  });
});
