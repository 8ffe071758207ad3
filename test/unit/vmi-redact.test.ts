/** src/vmi/spec/redact.ts: the one redaction format, the deep copy that applies it, and the places that apply it. */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { SECRET_FIELDS, isRedactionMarker, redactSecret, redactSecrets } from '../../src/vmi/spec/redact';
import type { DiskPrep } from '../../src/launcher-protocol/messages';
import { displayObject, type WireVmi } from '../../src/cli/vmi-commands';
import { vmiToWire } from '../../src/grpc/vmi-service';
import type { VirtualMachineInstance, VmiView } from '../../src/vmi/spec/types';

const USER_DATA = '#cloud-config\npassword: hunter2-ünïcode\nchpasswd: { expire: false }\n';
const sha = (s: string): string => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');

function manifest(): VirtualMachineInstance {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name: 'vm', namespace: 'ns', annotations: { note: 'kept' } },
    spec: {
      domain: { firmware: { kernelBoot: { kernel: 'k', kernelArgs: 'console=ttyS0' } } },
      volumes: [
        { name: 'root', containerDisk: { path: 'base.qcow2' } },
        { name: 'ci', cloudInitNoCloud: { userData: USER_DATA, networkData: 'version: 2\n' } },
      ],
    },
  };
}

describe('redactSecret', () => {
  test('`<redacted: N bytes, sha256:HEX>`: UTF-8 byte length and the full sha256 of the bytes', () => {
    const m = redactSecret(USER_DATA);
    assert.equal(m, `<redacted: ${Buffer.byteLength(USER_DATA)} bytes, sha256:${sha(USER_DATA)}>`);
    assert.notEqual(Buffer.byteLength(USER_DATA), USER_DATA.length, 'the fixture has multi-byte characters');
    assert.equal(redactSecret(''), `<redacted: 0 bytes, sha256:${sha('')}>`);
    assert.ok(!m.includes('hunter2'));
  });

  test('idempotent: a marker is kept as it is, so views redacted twice still show the original hash', () => {
    const m = redactSecret(USER_DATA);
    assert.ok(isRedactionMarker(m));
    assert.equal(redactSecret(m), m);
    assert.equal(redactSecrets(redactSecrets(manifest())).spec.volumes?.[1]?.cloudInitNoCloud?.userData, m);
  });

  test('only an exact marker counts as one', () => {
    for (const s of ['<redacted: 3 bytes, sha256:abc>', `x<redacted: 1 bytes, sha256:${sha('x')}>`, `<redacted: 1 bytes, sha256:${sha('x').toUpperCase()}>`, `<redacted: 1 bytes, sha256:${sha('x')}>\n`]) {
      assert.equal(isRedactionMarker(s), false, s);
      assert.notEqual(redactSecret(s), s);
    }
  });
});

describe('redactSecrets', () => {
  test('a manifest: userData and networkData replaced, everything else equal, the input untouched', () => {
    const input = manifest();
    const before = structuredClone(input);
    const out = redactSecrets(input);
    assert.deepEqual(input, before, 'the input is not modified');
    const ci = out.spec.volumes?.[1]?.cloudInitNoCloud;
    assert.equal(ci?.userData, redactSecret(USER_DATA));
    assert.equal(ci?.networkData, redactSecret('version: 2\n'));
    const expected = structuredClone(before);
    expected.spec.volumes![1]!.cloudInitNoCloud = { userData: redactSecret(USER_DATA), networkData: redactSecret('version: 2\n') };
    assert.deepEqual(out, expected);
    assert.ok(!JSON.stringify(out).includes('hunter2'));
    out.spec.volumes![0]!.name = 'changed';
    assert.equal(input.spec.volumes![0]!.name, 'root', 'a deep copy, not shared');
  });

  test('every secret field name, at any depth (bare specs, views, DiskPrep lists, unknown volume kinds)', () => {
    assert.deepEqual([...SECRET_FIELDS].sort(), ['networkData', 'networkDataBase64', 'userData', 'userDataBase64']);
    const secret = 'c2VjcmV0LXBhc3N3b3Jk';
    const deep = { a: [{ b: { cloudInitConfigDrive: { userDataBase64: secret, networkDataBase64: secret } } }], view: { manifest: { spec: { volumes: [{ cloudInitNoCloud: { userData: secret } }] } } } };
    assert.ok(!JSON.stringify(redactSecrets(deep)).includes(secret));
    const preps: DiskPrep[] = [
      { kind: 'sparse', disk: 'd', path: '/x/d.qcow2', sizeBytes: 1 },
      { kind: 'cloudInit', disk: 'ci', path: '/x/ci.iso', userData: USER_DATA, networkData: null, metaData: 'instance-id: x\n' },
    ];
    const out = redactSecrets(preps);
    assert.deepEqual(out[0], preps[0]);
    assert.deepEqual(out[1], { ...preps[1]!, userData: redactSecret(USER_DATA) }, 'null networkData and metaData stay');
  });

  test('non-string values under a secret name, primitives and class instances pass through', () => {
    const when = new Date(0);
    assert.deepEqual(redactSecrets({ userData: null, networkData: 3, at: when }), { userData: null, networkData: 3, at: when });
    assert.equal(redactSecrets('userData'), 'userData');
    assert.equal(redactSecrets(null), null);
  });

  test('an own "__proto__" key (as JSON.parse makes them) stays plain data', () => {
    const parsed = JSON.parse('{"__proto__": {"userData": "pw"}, "x": 1}') as Record<string, unknown>;
    const out = redactSecrets(parsed);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.keys(out), ['__proto__', 'x']);
    assert.equal(JSON.stringify(out), `{"__proto__":{"userData":"${redactSecret('pw')}"},"x":1}`);
  });
});

describe('applied where VMI views leave the process', () => {
  const view = (): VmiView => ({
    uid: 'u', namespace: 'ns', name: 'vm', generation: 1, manifest: manifest(),
    status: { phase: 'Running', reason: '', conditions: [], nodeName: 'n', launcherPid: 1, interfaces: [], domainState: 'running' },
    revision: 3, deleting: false, events: [], domainXml: null,
  });

  test('gRPC: vmiToWire (every VmiService reply that carries a VMI) redacts spec_json', () => {
    const wire = vmiToWire(view());
    assert.ok(!String(wire.specJson).includes('hunter2'));
    const spec = JSON.parse(String(wire.specJson)) as VirtualMachineInstance;
    assert.deepEqual(spec, redactSecrets(manifest()));
  });

  test('vhctl get/list/create -o json|yaml: displayObject redacts, also a bare spec and what is not JSON', () => {
    const wire = { ...(vmiToWire(view()) as unknown as WireVmi), specJson: JSON.stringify(manifest()) }; // an older daemon's answer
    assert.deepEqual(displayObject(wire).spec, redactSecrets(manifest()).spec);
    assert.deepEqual(displayObject({ ...wire, specJson: JSON.stringify(manifest().spec) }).spec, redactSecrets(manifest()).spec);
    const yaml = `spec:\n  userData: "${USER_DATA}"`;
    assert.equal(displayObject({ ...wire, specJson: yaml }).spec, redactSecret(yaml));
  });
});
