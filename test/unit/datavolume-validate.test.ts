/**
 * DataVolume manifests: every CDI v1beta1 field is known; what this node serves normalizes, what
 * it cannot serve is refused with the field path and what the node lacks; exactly one source,
 * URL schemes, size required and bounded.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { validateDataVolume } from '../../src/volumes/datavolume-validate';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Spec = any;
const dv = (spec: Spec, metadata: Spec = { name: 'disk-a', namespace: 'vms' }, apiVersion = 'cdi.kubevirt.io/v1beta1'): Spec => ({ apiVersion, kind: 'DataVolume', metadata, spec });
const storage = { storage: { resources: { requests: { storage: '1Gi' } } } };

function violations(m: Spec): string[] {
  const r = validateDataVolume(m);
  assert.equal(r.ok, false, 'expected violations');
  return r.ok ? [] : r.violations.map((v) => `${v.field}: ${v.message}`);
}

test('served sources normalize: http (headers, checksum), registry, blank, upload, pvc; v1alpha1 too; size from storage or pvc', () => {
  const ok = (m: Spec): Spec => {
    const r = validateDataVolume(m);
    if (!r.ok) assert.fail(JSON.stringify(r.violations));
    return r.dv;
  };
  assert.deepEqual(ok(dv({ source: { http: { url: 'https://example.org/a.qcow2', extraHeaders: ['X-Token: abc'], checksum: `sha256:${'a'.repeat(64)}` } }, ...storage })), {
    namespace: 'vms', name: 'disk-a', source: { kind: 'http', url: 'https://example.org/a.qcow2', checksum: `sha256:${'a'.repeat(64)}`, extraHeaders: ['X-Token: abc'] },
    sizeBytes: 2 ** 30, accessModes: ['ReadWriteOnce'], storageClassName: null,
  });
  assert.deepEqual(ok(dv({ source: { registry: { url: 'docker://quay.io/containerdisks/fedora:40', pullMethod: 'node' } }, ...storage })).source, { kind: 'registry', url: 'docker://quay.io/containerdisks/fedora:40' });
  assert.deepEqual(ok(dv({ source: { blank: {} }, pvc: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '64Mi' } }, storageClassName: 'local' } }, { name: 'b' })), {
    namespace: 'default', name: 'b', source: { kind: 'blank' }, sizeBytes: 64 * 2 ** 20, accessModes: ['ReadWriteOnce'], storageClassName: 'local',
  });
  assert.deepEqual(ok(dv({ source: { upload: {} }, ...storage }, { name: 'u' }, 'cdi.kubevirt.io/v1alpha1')).source, { kind: 'upload' });
  assert.deepEqual(ok(dv({ source: { pvc: { namespace: 'golden', name: 'fedora.base' } }, ...storage, contentType: 'kubevirt', preallocation: false, priorityClassName: 'p' })).source, { kind: 'pvc', namespace: 'golden', name: 'fedora.base' });
});

test('sources the node cannot serve are refused naming the field and what the node lacks', () => {
  const cases: Array<[Spec, string]> = [
    [{ s3: { url: 's3://b/k' } }, 'spec.source.s3: S3 imports are not served: this node has no S3 client'],
    [{ gcs: { url: 'gs://b/k' } }, 'spec.source.gcs: Google Cloud Storage imports are not served'],
    [{ imageio: { url: 'https://engine/api', diskId: 'x' } }, 'spec.source.imageio: oVirt ImageIO imports are not served'],
    [{ vddk: { url: 'https://vcenter', uuid: 'x' } }, 'spec.source.vddk: VMware VDDK imports are not served'],
    [{ snapshot: { namespace: 'a', name: 'b' } }, 'spec.source.snapshot: restoring from a VolumeSnapshot is not served'],
  ];
  for (const [source, want] of cases) {
    const v = violations(dv({ source, ...storage }));
    assert.ok(v.some((x) => x.startsWith(want)), `${want}\n${v.join('\n')}`);
  }
  const ref = violations(dv({ sourceRef: { kind: 'DataSource', name: 'fedora' }, ...storage }));
  assert.ok(ref.includes('spec.sourceRef: DataSource fedora is not served: this node keeps no DataSources (give spec.source)'), ref.join('\n'));
  const misc = violations(dv({ source: { http: { url: 'http://h/x', secretRef: 's', certConfigMap: 'c', secretExtraHeaders: ['s'] } }, ...storage, contentType: 'archive', preallocation: true, checkpoints: [{ previous: '', current: 'c1' }] }));
  for (const f of ['spec.source.http.secretRef', 'spec.source.http.certConfigMap', 'spec.source.http.secretExtraHeaders', 'spec.contentType', 'spec.preallocation', 'spec.checkpoints']) {
    assert.ok(misc.some((x) => x.startsWith(`${f}: `)), `${f}\n${misc.join('\n')}`);
  }
  const blk = violations(dv({ source: { blank: {} }, storage: { volumeMode: 'Block', accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } } }));
  assert.ok(blk.some((x) => x.startsWith('spec.storage.volumeMode: Block is not served')), blk.join('\n'));
  assert.ok(blk.some((x) => x.startsWith('spec.storage.accessModes[0]: ReadWriteMany is not served')), blk.join('\n'));
});

test('exactly one source; URL schemes; sizes required and bounded; names, kinds and unknown fields', () => {
  assert.ok(violations(dv({ source: { blank: {}, upload: {} }, ...storage })).includes('spec.source: must set exactly one source (got blank, upload)'));
  assert.ok(violations(dv({ source: {}, ...storage })).includes('spec.source: must set exactly one source (got none)'));
  assert.ok(violations(dv({ ...storage })).some((x) => x.startsWith('spec.source: required')));
  assert.ok(violations(dv({ source: { http: { url: 'ftp://h/x' } }, ...storage })).includes('spec.source.http.url: scheme "ftp" is not served: http or https only'));
  assert.ok(violations(dv({ source: { http: { url: 'https://u:p@h/x' } }, ...storage })).some((x) => x.startsWith('spec.source.http.url: must not carry credentials')));
  assert.ok(violations(dv({ source: { http: { url: 'https://h/x', extraHeaders: ['no colon'] } }, ...storage })).some((x) => x.startsWith('spec.source.http.extraHeaders[0]: ')));
  assert.ok(violations(dv({ source: { registry: { url: 'quay.io/x:1' } }, ...storage })).some((x) => x.startsWith('spec.source.registry.url: "quay.io/x:1" must be docker://')));
  assert.ok(violations(dv({ source: { blank: {} }, storage: {} })).some((x) => x.startsWith('spec.storage.resources.requests.storage: required')));
  assert.ok(violations(dv({ source: { blank: {} }, storage: { resources: { requests: { storage: '2Ti' } } } })).some((x) => x.startsWith('spec.storage.resources.requests.storage: must be at most')));
  assert.ok(violations(dv({ source: { blank: {} }, storage: { resources: { requests: { storage: '1Ki' } } } })).some((x) => x.startsWith('spec.storage.resources.requests.storage: must be at least')));
  assert.ok(violations(dv({ source: { blank: {} }, ...storage, pvc: {} })).includes('spec: must set exactly one of storage, pvc (got both)'));
  assert.ok(violations(dv({ source: { blank: {} }, pvc: { resources: { requests: { storage: '1Gi' } } } })).includes('spec.pvc.accessModes: required'));
  assert.ok(violations(dv({ source: { pvc: { namespace: 'a', name: '../x' } }, ...storage })).some((x) => x.startsWith('spec.source.pvc.name: "../x" must be a DNS-1123 subdomain')));
  assert.ok(violations(dv({ source: { blank: {} }, ...storage }, { name: 'Bad_Name' })).some((x) => x.startsWith('metadata.name: "Bad_Name" must be a DNS-1123 subdomain')));
  assert.ok(violations({ ...dv({ source: { blank: {} }, ...storage }), kind: 'PersistentVolumeClaim' }).includes('kind: must be DataVolume'));
  assert.ok(violations(dv({ source: { blank: { size: 1 } }, ...storage, foo: 1 })).includes('spec.foo: unknown field'));
  assert.ok(violations(dv({ source: { blank: { size: 1 } }, ...storage })).includes('spec.source.blank.size: unknown field'));
});
