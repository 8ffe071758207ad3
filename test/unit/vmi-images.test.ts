/**
 * vmi/control/images.ts against a fake store: kubelet's events and reasons, the backoff, the
 * bases handed to the disk plan. The real registry, store and daemon: test/integration/vmi-images.test.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import pino from 'pino';
import { ImageError } from '../../src/images/errors';
import type { EnsureOptions, EnsuredImage } from '../../src/images/types';
import { IMAGE_PULL_BACKOFF, resolveImages } from '../../src/vmi/control/images';
import type { ReconcileHost } from '../../src/vmi/control/reconcile-host';
import type { VmiRecord } from '../../src/vmi/control/store';
import { VmiState, initialStatus } from '../../src/vmi/control/vmi-state';
import type { NormalizedDisk, NormalizedVmi, VirtualMachineInstance } from '../../src/vmi/spec/types';

const rec: VmiRecord = {
  version: 1, uid: 'u1', namespace: 'ns', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm' } } as VirtualMachineInstance,
  deleting: false, wantRunning: true, launcher: null, phase: 'Pending', reason: '', restarts: 0, revision: 1, updatedAt: '',
};
const imageDisk = (name: string, image: string, pullPolicy: 'Always' | 'IfNotPresent' | 'Never' = 'IfNotPresent'): NormalizedDisk =>
  ({ name, volume: { kind: 'containerDiskImage', name: `${name}-vol`, image, pullPolicy, path: null } }) as NormalizedDisk;
const state = (disks: NormalizedDisk[]): VmiState => new VmiState(rec, { runStrategy: 'Always', interfaces: [], disks } as unknown as NormalizedVmi, initialStatus('n'));

/** The parts of ReconcileHost images.ts uses, with what it did. */
function host(pull: (ref: string, o: EnsureOptions) => Promise<EnsuredImage>): { h: ReconcileHost; requeues: number[]; publishes: () => number } {
  const requeues: number[] = [];
  let publishes = 0;
  const h = { log: pino({ level: 'silent' }), pullImage: pull, requeue: (_uid: string, ms: number) => requeues.push(ms), publish: () => publishes++ } as unknown as ReconcileHost;
  return { h, requeues, publishes: () => publishes };
}

test('pulled and cached images: Pulling/Pulled events, the bases by volume name, each digest once', async () => {
  const asked: Array<[string, EnsureOptions['pullPolicy']]> = [];
  const { h, requeues } = host(async (ref, o) => {
    asked.push([ref, o.pullPolicy]);
    const cached = ref.endsWith(':cached');
    if (!cached) o.onProgress?.({ ref, phase: 'pulling', message: 'copying' });
    return { ref, digest: cached ? 'sha256:bb' : 'sha256:aa', diskPath: `/store/${ref.slice(-1)}/disk.qcow2`, format: 'qcow2', pulled: !cached };
  });
  const s = state([imageDisk('root', 'r/x:1'), imageDisk('data', 'r/y:cached', 'Never'), imageDisk('again', 'r/x:1')]);
  const r = await resolveImages(h, s);
  assert.deepEqual(asked, [['r/x:1', 'IfNotPresent'], ['r/y:cached', 'Never'], ['r/x:1', 'IfNotPresent']]);
  assert.deepEqual(r, {
    resolved: { 'root-vol': { path: '/store/1/disk.qcow2', format: 'qcow2' }, 'data-vol': { path: '/store/d/disk.qcow2', format: 'qcow2' }, 'again-vol': { path: '/store/1/disk.qcow2', format: 'qcow2' } },
    digests: ['sha256:aa', 'sha256:bb'],
  });
  const ev = s.events.map((e) => `${e.reason}: ${e.message}`);
  assert.ok(ev.includes('Pulling: Pulling image "r/x:1"'), ev.join('\n'));
  assert.ok(ev.some((e) => /^Pulled: Successfully pulled image "r\/x:1" \(sha256:aa\) in \d+ ms$/.test(e)), ev.join('\n'));
  assert.ok(ev.includes('Pulled: Container image "r/y:cached" already present on machine (sha256:bb)'), ev.join('\n'));
  assert.deepEqual(requeues, []);
});

test('failures: ImagePullBackOff / ErrImageNeverPull keep the VMI Pending, with a growing jittered backoff reset by a success', async () => {
  let fail: Error | null = new ImageError('NotFound', 'r/x:nope: manifest unknown');
  const { h, requeues } = host(async (ref) => {
    if (fail) throw fail;
    return { ref, digest: 'sha256:aa', diskPath: '/store/a', format: 'raw', pulled: false };
  });
  const s = state([imageDisk('root', 'r/x:nope')]);
  assert.equal(await resolveImages(h, s), null);
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.reason, 'ImagePullBackOff: r/x:nope: manifest unknown');
  assert.ok(s.events.some((e) => e.type === 'Warning' && e.reason === 'Failed' && e.message === 'Failed to pull image "r/x:nope": r/x:nope: manifest unknown'));
  assert.equal(await resolveImages(h, s), null);
  assert.equal(await resolveImages(h, s), null);
  const [a, b, c] = requeues as [number, number, number];
  assert.ok(a >= IMAGE_PULL_BACKOFF.initialMs / 2 && a <= IMAGE_PULL_BACKOFF.initialMs, `${a}`);
  assert.ok(b >= IMAGE_PULL_BACKOFF.initialMs && b <= 2 * IMAGE_PULL_BACKOFF.initialMs, `${b}`);
  assert.ok(c >= 2 * IMAGE_PULL_BACKOFF.initialMs && c <= 4 * IMAGE_PULL_BACKOFF.initialMs, `${c}`);

  fail = new ImageError('NotPresent', 'r/x:nope is not in the store (imagePullPolicy Never)');
  assert.equal(await resolveImages(h, s), null);
  assert.equal(s.status.reason, 'ErrImageNeverPull: r/x:nope is not in the store (imagePullPolicy Never)');
  assert.ok(s.events.some((e) => e.reason === 'ErrImageNeverPull'));

  fail = null;
  assert.deepEqual(await resolveImages(h, s), { resolved: { 'root-vol': { path: '/store/a', format: 'raw' } }, digests: ['sha256:aa'] });
  assert.equal(s.imagePullFailures, 0, 'a success resets the backoff');
});
