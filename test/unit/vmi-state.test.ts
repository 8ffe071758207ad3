/** VmiState: the one owner of a VMI's state; its stages move only along the legal transitions. */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type { VmiRecord } from '../../src/vmi/control/store';
import { VmiState, initialStatus } from '../../src/vmi/control/vmi-state';
import type { LauncherChannel } from '../../src/vmi/control/launcher-port';
import type { NormalizedVmi, VirtualMachineInstance } from '../../src/vmi/spec/types';

const launcher = { pid: 0, startTime: 0, spawnTokenHash: 'h', sessionTokenHash: '', spawnedAt: '', libvirtUri: 'test:///default' };

function rec(over: Partial<VmiRecord> = {}): VmiRecord {
  return {
    version: 1, uid: 'u1', namespace: 'ns', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm' } } as VirtualMachineInstance,
    deleting: false, wantRunning: true, launcher: null, phase: 'Pending', reason: '', restarts: 0, revision: 1, updatedAt: '', ...over,
  };
}
const vmi = { runStrategy: 'Always', interfaces: [], terminationGracePeriodSeconds: 30 } as unknown as NormalizedVmi;
const child = {} as ChildProcess;
const plan = { domainXml: '<domain/>', disks: [], libvirtUri: 'test:///default' };
const channel = (pid: number): LauncherChannel => ({ uid: 'u1', pid, isOpen: true, lastHeartbeatAt: Date.now(), send: async () => undefined, stats: async () => { throw new Error('no stats in this test'); }, end: () => undefined });

describe('VmiState stages', () => {
  test('a record decides the stage it loads in: no launcher Idle, pid 0 Spawning, a pid Launching', () => {
    assert.equal(new VmiState(rec(), vmi, initialStatus('n')).stage, 'Idle');
    assert.equal(new VmiState(rec({ launcher }), vmi, initialStatus('n')).stage, 'Spawning');
    assert.equal(new VmiState(rec({ launcher: { ...launcher, pid: 42 } }), vmi, initialStatus('n')).stage, 'Launching');
  });

  test('the whole life: spawn, start, shut down, tear down, cleared; restarts counted by runStrategy', () => {
    const s = new VmiState(rec(), vmi, initialStatus('n'));
    s.beginSpawn(rec({ launcher }), plan);
    assert.equal(s.stage, 'Spawning');
    assert.equal(s.status.phase, 'Scheduling');
    s.spawned(42, 7, child);
    assert.equal(s.stage, 'Launching');
    assert.deepEqual([s.rec.launcher?.pid, s.rec.launcher?.startTime, s.status.launcherPid], [42, 7, 42]);
    assert.equal(s.connect(channel(42)), null);
    assert.equal(s.linked, true);
    s.domainStarted();
    const seen = s.observeDomain({ state: 'running', reason: 'booted', domainUuid: '', lastEvent: '', error: '', domainXml: '' });
    assert.deepEqual(seen, { changed: true, requeue: false });
    assert.equal(s.status.phase, 'Running');
    s.beginShutdown(30);
    assert.equal(s.stage, 'ShuttingDown');
    // While stopping, a running domain no longer makes the VMI Running, and every status requeues.
    assert.equal(s.observeDomain({ state: 'shutoff', reason: 'shutdown', domainUuid: '', lastEvent: '', error: '', domainXml: '' }).requeue, true);
    s.beginTeardown();
    s.beginTeardown(); // asked again: no error, still TearingDown
    assert.equal(s.stage, 'TearingDown');
    assert.equal(s.startPlan, plan, 'the StartDomain planned at spawn is kept for the launcher');
    s.launcherCleared('exited 0');
    assert.equal(s.stage, 'Idle');
    assert.equal(s.startPlan, null);
    assert.deepEqual([s.rec.launcher, s.channel, s.status.launcherPid, s.domain], [null, null, null, null]);
    s.afterStop(false);
    assert.equal(s.rec.restarts, 1, 'runStrategy Always restarts');
  });

  test('illegal transitions throw and change nothing', () => {
    const s = new VmiState(rec(), vmi, initialStatus('n'));
    assert.throws(() => s.domainStarted(), /no transition Idle -> Started/);
    assert.throws(() => s.beginShutdown(30), /no transition Idle -> ShuttingDown/);
    assert.equal(s.stage, 'Idle');
    s.beginSpawn(rec({ launcher }), plan);
    assert.throws(() => s.domainStarted(), /Spawning -> Started/);
    s.spawnFailed();
    assert.equal(s.stage, 'Idle');
    assert.equal(s.rec.launcher, null);
  });

  test('a record for another VMI is never committed', () => {
    const s = new VmiState(rec(), vmi, initialStatus('n'));
    assert.throws(() => s.commitRecord(rec({ uid: 'u2' })), /record of u2 committed to u1/);
    assert.equal(s.uid, 'u1');
  });

  test('a replaced connection is handed back to be closed; a stale one cannot disconnect the current', () => {
    const s = new VmiState(rec({ launcher: { ...launcher, pid: 42 } }), vmi, initialStatus('n'));
    const a = channel(42);
    const b = channel(42);
    s.connect(a);
    assert.equal(s.connect(b), a);
    assert.equal(s.disconnect(a, 'old stream ended'), false);
    assert.equal(s.channel, b);
    assert.equal(s.disconnect(b, 'ended'), true);
    assert.equal(s.linked, false);
  });

  test('one console at a time; release is idempotent', () => {
    const s = new VmiState(rec(), vmi, initialStatus('n'));
    const release = s.attachConsole();
    assert.ok(release);
    assert.equal(s.attachConsole(), null);
    release();
    release();
    const again = s.attachConsole();
    assert.ok(again);
    release(); // a stale release does not free the new attachment
    assert.equal(s.attachConsole(), null);
  });
});
