/**
 * vmi/control/images.ts against a fake store: kubelet's events and reasons, the backoff, the
 * bases handed to the disk plan. The real registry, store and daemon: test/integration/vmi-images.test.ts.
 */
import { mock, test } from 'node:test';
import * as assert from 'node:assert/strict';
import pino from 'pino';
import { ImageError } from '../../src/images/errors';
import type { EnsureOptions, EnsuredImage } from '../../src/images/types';
import { IMAGE_PULL_BACKOFF, KERNEL_BOOT_KEY, imageUsers, imagesConsumed, resolveImages } from '../../src/vmi/control/images';
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
const state = (disks: NormalizedDisk[]): VmiState =>
  new VmiState(rec, { runStrategy: 'Always', interfaces: [], disks, firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null } } as unknown as NormalizedVmi, initialStatus('n'));

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
    byKey: { 'root-vol': 'sha256:aa', 'data-vol': 'sha256:bb', 'again-vol': 'sha256:aa' },
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
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const s = state([imageDisk('root', 'r/x:nope')]);
  assert.equal(await resolveImages(h, s), null);
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.reason, 'ImagePullBackOff: r/x:nope: manifest unknown');
  assert.ok(s.events.some((e) => e.type === 'Warning' && e.reason === 'Failed' && e.message === 'Failed to pull image "r/x:nope": r/x:nope: manifest unknown'));
  // Before the backoff ends, a reconcile (e.g. a watch event) does not pull again: it waits the rest.
  mock.timers.tick(1000);
  assert.equal(await resolveImages(h, s), null);
  assert.equal(requeues[1], (requeues[0] as number) - 1000);
  requeues.splice(1, 1);
  mock.timers.tick(IMAGE_PULL_BACKOFF.initialMs);
  assert.equal(await resolveImages(h, s), null);
  mock.timers.tick(2 * IMAGE_PULL_BACKOFF.initialMs);
  assert.equal(await resolveImages(h, s), null);
  const [a, b, c] = requeues as [number, number, number];
  assert.ok(a >= IMAGE_PULL_BACKOFF.initialMs / 2 && a <= IMAGE_PULL_BACKOFF.initialMs, `${a}`);
  assert.ok(b >= IMAGE_PULL_BACKOFF.initialMs && b <= 2 * IMAGE_PULL_BACKOFF.initialMs, `${b}`);
  assert.ok(c >= 2 * IMAGE_PULL_BACKOFF.initialMs && c <= 4 * IMAGE_PULL_BACKOFF.initialMs, `${c}`);

  fail = new ImageError('NotPresent', 'r/x:nope is not in the store (imagePullPolicy Never)');
  mock.timers.tick(4 * IMAGE_PULL_BACKOFF.initialMs);
  assert.equal(await resolveImages(h, s), null);
  assert.equal(s.status.reason, 'ErrImageNeverPull: r/x:nope is not in the store (imagePullPolicy Never)');
  assert.ok(s.events.some((e) => e.reason === 'ErrImageNeverPull'));

  fail = null;
  mock.timers.tick(IMAGE_PULL_BACKOFF.maxMs);
  assert.deepEqual(await resolveImages(h, s), { resolved: { 'root-vol': { path: '/store/a', format: 'raw' } }, digests: ['sha256:aa'], byKey: { 'root-vol': 'sha256:aa' } });
  mock.timers.reset();
  assert.equal(s.imagePullFailures, 0, 'a success resets the backoff');
});

/** A pull the test finishes by hand. */
function slowPull(): { pull: (ref: string, o: EnsureOptions) => Promise<EnsuredImage>; asked: string[]; finish: (err?: Error) => void } {
  const asked: string[] = [];
  let done: ((v: EnsuredImage) => void) | null = null;
  let failed: ((e: Error) => void) | null = null;
  return {
    asked,
    pull: (ref, o) => {
      asked.push(ref);
      o.onProgress?.({ ref, phase: 'pulling', message: 'copying' });
      return new Promise((resolve, reject) => {
        done = resolve;
        failed = reject;
      });
    },
    finish: (err) => (err ? failed?.(err) : done?.({ ref: 'r', digest: 'sha256:aa', diskPath: '/store/a', format: 'qcow2', pulled: true })),
  };
}

test('a slow pull runs off the reconcile: Pending "Pulling image", its end requeues, a retry reuses the result, a new generation asks again', async () => {
  const p = slowPull();
  const { h, requeues } = host(p.pull);
  const s = state([imageDisk('root', 'r/x:1', 'Always')]);
  const t0 = Date.now();
  assert.equal(await resolveImages(h, s), null);
  assert.ok(Date.now() - t0 < 1000, 'returned without waiting for the pull');
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.reason, 'Pulling image "r/x:1"');
  assert.deepEqual(requeues, [], 'nothing to requeue until the pull ends');
  assert.equal(await resolveImages(h, s), null, 'a reconcile while pulling waits for the same pull');
  assert.deepEqual(p.asked, ['r/x:1']);
  p.finish();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(requeues, [0], 'the pull\'s end requeues the VMI');
  const r1 = await resolveImages(h, s);
  assert.deepEqual(r1?.byKey, { 'root-vol': 'sha256:aa' });
  assert.deepEqual(imageUsers([s]), new Map([['sha256:aa', ['ns/vm']]]), 'a resolved image is in use before the spawn records it');
  assert.equal(await resolveImages(h, s), r1, 'a retry (start slot) does not ask the store again');
  assert.deepEqual(p.asked, ['r/x:1']);
  imagesConsumed(s);
  assert.deepEqual(imageUsers([s]), new Map());
  s.acceptSpec({ ...s.rec, generation: 2 }, s.vmi as NormalizedVmi);
  assert.equal(await resolveImages(h, s), null);
  assert.deepEqual(p.asked, ['r/x:1', 'r/x:1'], 'the next start resolves afresh');
});

test('deleted while pulling: the pull\'s failure or success touches nothing', async () => {
  const p = slowPull();
  const { h, requeues, publishes } = host(p.pull);
  const s = state([imageDisk('root', 'r/x:1')]);
  assert.equal(await resolveImages(h, s), null);
  s.commitRecord({ ...s.rec, deleting: true });
  const before = { events: s.events.length, publishes: publishes(), reason: s.status.reason };
  p.finish(new ImageError('NotFound', 'gone'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(requeues, []);
  assert.deepEqual({ events: s.events.length, publishes: publishes(), reason: s.status.reason }, before);
});

test('a re-adopted launcher resolves by the digests its record names, not by the tags', async () => {
  const asked: Array<[string, EnsureOptions['pullPolicy'], EnsureOptions['select']]> = [];
  const { h } = host(async (ref, o) => {
    asked.push([ref, o.pullPolicy, o.select]);
    return { ref, digest: ref.split('@')[1] as string, diskPath: '/store/d', format: 'qcow2', kernelPath: '/store/k', initrdPath: '/store/i', pulled: false };
  });
  const s = state([imageDisk('root', 'registry:5000/r/x:1', 'Always')]);
  const dA = `sha256:${'a'.repeat(64)}`;
  const dK = `sha256:${'b'.repeat(64)}`;
  (s.vmi as { firmware: NormalizedVmi['firmware'] }).firmware = { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null, kernelBootContainer: { image: 'registry:5000/k:latest', pullPolicy: 'Always', kernelPath: '/boot/vmlinuz', initrdPath: null, kernelArgs: '' } };
  const r = await resolveImages(h, s, { pinned: { 'root-vol': dA, [KERNEL_BOOT_KEY]: dK } });
  assert.deepEqual(asked, [
    [`registry:5000/r/x@${dA}`, 'IfNotPresent', { kind: 'containerDisk' }],
    [`registry:5000/k@${dK}`, 'IfNotPresent', { kind: 'kernelBoot', kernelPath: '/boot/vmlinuz' }],
  ]);
  assert.deepEqual(r?.kernelBoot, { kernel: '/store/k', initrd: '/store/i' });
});
