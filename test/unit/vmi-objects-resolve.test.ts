/**
 * control/objects.ts with the real object reader on a temporary root: a missing object keeps the
 * VMI Pending with a reason naming the object and where the node looked (and kubelet's
 * FailedMount event), retried with a growing jittered backoff; an optional one is empty; the
 * cloud-init Secret keys are KubeVirt's (userdata before userData); a Secret without them, a
 * service account without a token and a sysprep object without an answer file wait too.
 * Secret bytes never appear in the status, events or log lines.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { OBJECT_BACKOFF, resolveObjects } from '../../src/vmi/control/objects';
import type { ReconcileHost } from '../../src/vmi/control/reconcile-host';
import type { VmiRecord } from '../../src/vmi/control/store';
import { VmiState, initialStatus } from '../../src/vmi/control/vmi-state';
import type { NormalizedDisk, NormalizedVmi, NormalizedVolume, VirtualMachineInstance } from '../../src/vmi/spec/types';
import { readObject } from '../../src/volumes/objects';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-objres-'));
after(() => fs.rmSync(ROOT, { recursive: true, force: true }));
const SECRET = 'hunter2-very-secret';

const rec: VmiRecord = {
  version: 1, uid: 'u1', namespace: 'ns', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm' } } as VirtualMachineInstance,
  deleting: false, wantRunning: true, launcher: null, phase: 'Pending', reason: '', restarts: 0, revision: 1, updatedAt: '',
};
const state = (...vols: NormalizedVolume[]): VmiState =>
  new VmiState(rec, { runStrategy: 'Always', interfaces: [], disks: vols.map((v) => ({ name: v.name, volume: v }) as NormalizedDisk) } as unknown as NormalizedVmi, initialStatus('n'));
const put = (rel: string, data: string): void => {
  fs.mkdirSync(path.dirname(path.join(ROOT, rel)), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(ROOT, rel), data, { mode: 0o600 });
};

function host(): { h: ReconcileHost; requeues: number[]; logs: () => string } {
  const requeues: number[] = [];
  let logs = '';
  const sink = new Writable({ write: (c: Buffer, _e, cb) => ((logs += c.toString()), cb()) });
  const h = { log: pino({ level: 'debug' }, sink), readObject: (ref) => readObject(ROOT, ref), requeue: (_uid: string, ms: number) => requeues.push(ms), publish: () => undefined } as Partial<ReconcileHost> as ReconcileHost;
  return { h, requeues, logs: () => logs };
}

test('a missing ConfigMap: Pending naming it and the directory, FailedMount, growing backoff; then found', async () => {
  const { h, requeues } = host();
  const s = state({ kind: 'configMap', name: 'cfg', object: 'app', optional: false, volumeLabel: null });
  for (let i = 0; i < 3; i++) assert.equal(await resolveObjects(h, s), null);
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.reason, `ConfigMap ns/app (volume cfg) not found: this node looked for it in ${path.join(ROOT, 'ns/configmaps/app')}`);
  const failed = s.events.find((e) => e.reason === 'FailedMount');
  assert.equal(failed?.message, 'MountVolume.SetUp failed for volume "cfg" : configmap "app" not found');
  assert.equal(failed?.count, 3, 'repeats fold into one event');
  const [a, b, c] = requeues as [number, number, number];
  assert.ok(a >= OBJECT_BACKOFF.initialMs / 2 && a <= OBJECT_BACKOFF.initialMs, `${a}`);
  assert.ok(b >= OBJECT_BACKOFF.initialMs && b <= 2 * OBJECT_BACKOFF.initialMs, `${b}`);
  assert.ok(c >= 2 * OBJECT_BACKOFF.initialMs && c <= 4 * OBJECT_BACKOFF.initialMs, `${c}`);
  put('ns/configmaps/app/k', 'v');
  assert.deepEqual(await resolveObjects(h, s), { cfg: { kind: 'files', files: [{ key: 'k', data: Buffer.from('v') }] } });
  assert.equal(await resolveObjects(h, state({ kind: 'configMap', name: 'x', object: 'gone', optional: false, volumeLabel: null })), null);
  assert.ok((requeues.at(-1) as number) <= OBJECT_BACKOFF.initialMs, 'a new VMI starts at the first step');
});

test('optional and missing: an empty image, no waiting', async () => {
  const { h, requeues } = host();
  const s = state({ kind: 'secret', name: 'opt', object: 'nope', optional: true, volumeLabel: null });
  assert.deepEqual(await resolveObjects(h, s), { opt: { kind: 'files', files: [] } });
  assert.deepEqual(requeues, []);
});

test("cloud-init Secrets: KubeVirt's key names, never the content in status, events or logs", async () => {
  put('ns/secrets/ud/userdata', `#cloud-config\npassword: ${SECRET}\n`);
  put('ns/secrets/ud/userData', 'the second choice');
  put('ns/secrets/nd/networkData', `version: 2 # ${SECRET}`);
  put('ns/secrets/empty/other', SECRET);
  const { h, logs } = host();
  const ok = state({ kind: 'cloudInitConfigDrive', name: 'cd', userData: '', networkData: null, userDataSecret: 'ud', networkDataSecret: 'nd' });
  assert.deepEqual(await resolveObjects(h, ok), { cd: { kind: 'cloudInit', userData: Buffer.from(`#cloud-config\npassword: ${SECRET}\n`), networkData: Buffer.from(`version: 2 # ${SECRET}`) } });
  const bad = state({ kind: 'cloudInitNoCloud', name: 'nc', userData: '', networkData: null, userDataSecret: 'empty' });
  assert.equal(await resolveObjects(h, bad), null);
  assert.equal(bad.status.reason, 'Secret ns/empty (volume nc) has no key userdata or userData');
  const missing = state({ kind: 'cloudInitNoCloud', name: 'nc', userData: '#x', networkData: null, networkDataSecret: 'absent' });
  assert.equal(await resolveObjects(h, missing), null);
  assert.match(missing.status.reason, /^Secret ns\/absent \(volume nc\) not found: this node looked for it in .*\/ns\/secrets\/absent$/);
  for (const s of [ok, bad, missing]) assert.doesNotMatch(JSON.stringify({ st: s.status, ev: s.events }), new RegExp(SECRET));
  assert.match(logs(), /waiting for a volume object/);
  assert.doesNotMatch(logs(), new RegExp(SECRET));
});

test('service account without a token, sysprep without an answer file, an escaping symlink: Pending with why', async () => {
  put('ns/serviceaccounts/default/ca.crt', 'CA');
  put('ns/configmaps/win/readme.txt', 'x');
  fs.writeFileSync(path.join(os.tmpdir(), `vh-objres-outside-${process.pid}`), SECRET);
  put('ns/secrets/leak/ok', 'x');
  fs.symlinkSync(path.join(os.tmpdir(), `vh-objres-outside-${process.pid}`), path.join(ROOT, 'ns/secrets/leak/userdata'));
  after(() => fs.rmSync(path.join(os.tmpdir(), `vh-objres-outside-${process.pid}`), { force: true }));
  const { h, logs } = host();
  const sa = state({ kind: 'serviceAccount', name: 'sa', object: 'default' });
  assert.equal(await resolveObjects(h, sa), null);
  assert.equal(sa.status.reason, 'service account ns/default (volume sa) has no token');
  const sp = state({ kind: 'sysprep', name: 'sp', source: 'configMap', object: 'win' });
  assert.equal(await resolveObjects(h, sp), null);
  assert.equal(sp.status.reason, 'ConfigMap ns/win (sysprep volume sp) has neither autounattend.xml nor unattend.xml');
  put('ns/configmaps/win/Autounattend.xml', '<unattend/>');
  assert.equal((await resolveObjects(h, sp))?.sp?.kind, 'files');
  const leak = state({ kind: 'cloudInitNoCloud', name: 'nc', userData: '', networkData: null, userDataSecret: 'leak' });
  assert.equal(await resolveObjects(h, leak), null);
  assert.match(leak.status.reason, /^Secret ns\/leak of volume nc cannot be used: .*key userdata resolves to .*, outside the object root/);
  assert.doesNotMatch(logs() + JSON.stringify(leak.events), new RegExp(SECRET));
});
