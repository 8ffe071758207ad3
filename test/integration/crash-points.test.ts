/**
 * Crash points (issue 6.4): the daemon is killed like `kill -9` (failpoints armed through the test
 * entry, test/lib/test-daemon.ts; src/vmi/control/failpoints.ts) between each step of create and
 * delete, restarted on the same state and run directories without failpoints, and must finish or roll back what was half done: a created VMI ends
 * Running with exactly one launcher (never a second one, never the dead handler's spawn left
 * over), a deleted one ends with no record, no directory and no launcher process.
 *
 * Runs VMIs on libvirt's test driver inside each launcher: there the "QEMU" is the launcher
 * process itself, so "no orphan QEMU" is "no process with the VMI's uid in its command line".
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { FAILPOINTS, type FailpointName } from '../../src/vmi/control/failpoints';
import { HandlerUnderTest, type VmiView, killEverything, makeRoot, pidsWithCmdline, recordUids, sleep, testDriverVmi, waitFor } from '../lib/daemon';

const ROOT = makeRoot('vh-crash-');
after(async () => {
  await killEverything(ROOT);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

/** Short waits, so a launcher that never registers is given up in seconds, not the production 20-30 s. */
const TIMING = { registerTimeoutMs: 4000, readoptMs: 6000, livenessPollMs: 250 };

const CREATE: FailpointName[] = ['sync-after-record-write', 'launcher-after-record', 'launcher-after-spawn', 'launcher-after-pid-record', 'launcher-registered', 'domain-start-sent'];
const DELETE: FailpointName[] = ['delete-after-record-write', 'teardown-sent', 'launcher-exited', 'record-remove-before', 'record-remove-after'];

/** A daemon on `dir` through the test entry: short waits, and `failpoint` armed if given. */
function daemon(dir: string, failpoint?: string): Promise<HandlerUnderTest> {
  return HandlerUnderTest.start({ tmp: dir, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info', seams: { vmiTiming: TIMING, failpoints: failpoint } });
}

async function diedOfSigkill(d: HandlerUnderTest, point: string): Promise<void> {
  const exit = await Promise.race([d.exit, sleep(20_000).then(() => null)]);
  assert.ok(exit, `daemon did not die at ${point}\n${d.tail(60)}`);
  assert.equal(exit.signal, 'SIGKILL', `daemon exit at ${point}: ${JSON.stringify(exit)}\n${d.tail(60)}`);
  assert.match(d.out, new RegExp(`failpoint ${point}: SIGKILL`));
}

/** A directory of its own and a daemon armed with `point`. */
async function firstDaemon(point: string): Promise<{ dir: string; d1: HandlerUnderTest }> {
  const dir = path.join(ROOT, point);
  fs.mkdirSync(dir);
  fs.cpSync(path.join(ROOT, 'images'), path.join(dir, 'images'), { recursive: true });
  return { dir, d1: await daemon(dir, point) };
}

async function get(d: HandlerUnderTest, name: string): Promise<VmiView | null> {
  try {
    return await d.call<VmiView>('GetVMI', { namespace: 'crash', name }, 10_000);
  } catch (e) {
    if ((e as grpc.ServiceError).code === 5) return null;
    throw e;
  }
}

/** Waits until the VMI is Running with one live launcher, and stays so. */
async function convergedRunning(d: HandlerUnderTest, name: string, point: string): Promise<void> {
  const vmi = await waitFor(`${point}: Running`, async () => {
    const v = await get(d, name);
    return v && v.status.phase === 'Running' && v.status.launcherPid > 0 ? v : undefined;
  }, 30_000).catch(async (e: Error) => {
    throw new Error(`${e.message}; last: ${JSON.stringify(await get(d, name).catch(String))}\n${d.tail(80)}`);
  });
  await sleep(1500); // a stray or a second launcher would show up (or be killed) by now
  const again = await get(d, name);
  assert.equal(again?.status.phase, 'Running', `${point}: left Running: ${JSON.stringify(again?.status)}`);
  assert.equal(again?.status.launcherPid, vmi.status.launcherPid, `${point}: launcher changed`);
  assert.deepEqual(await waitFor(`${point}: one launcher`, () => {
    const p = pidsWithCmdline(vmi.uid);
    return p.length === 1 ? p : undefined;
  }, 5000).catch(() => pidsWithCmdline(vmi.uid)), [vmi.status.launcherPid], `${point}: processes for the uid`);
  assert.deepEqual(recordUids(d.stateDir), [vmi.uid], `${point}: records`);
  const rec = JSON.parse(fs.readFileSync(path.join(d.stateDir, 'vmis', vmi.uid, 'record.json'), 'utf8')) as { launcher: { pid: number } };
  assert.equal(rec.launcher.pid, vmi.status.launcherPid);
}

async function convergedGone(d: HandlerUnderTest, name: string, uid: string, point: string): Promise<void> {
  await waitFor(`${point}: gone`, async () => ((await get(d, name)) === null && !fs.existsSync(path.join(d.stateDir, 'vmis', uid)) ? true : undefined), 30_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${d.tail(80)}`);
  });
  await waitFor(`${point}: no process for ${uid}`, () => (pidsWithCmdline(uid).length === 0 ? true : undefined), 5000);
}

describe('crash points', { timeout: 170_000 }, () => {
  test('every failpoint is covered', () => {
    assert.deepEqual([...CREATE, ...DELETE].sort(), [...FAILPOINTS].sort());
  });

  for (const point of CREATE) {
    test(`create: crash at ${point} -> Running with one launcher`, async () => {
      const t0 = Date.now();
      const { dir, d1 } = await firstDaemon(point);
      await d1.call('SyncVMI', { manifest: JSON.stringify(testDriverVmi('vm', 'crash')) }, 10_000).catch(() => undefined); // sync-after-record-write dies mid-call
      await diedOfSigkill(d1, point);
      await d1.kill9(); // closes its client
      assert.equal(recordUids(d1.stateDir).length, 1, `${point}: the accepted VMI's record survives the crash`);
      const uid0 = recordUids(d1.stateDir)[0] as string;
      const spawnedBeforeCrash = pidsWithCmdline(uid0);
      const spawned = CREATE.indexOf(point) >= CREATE.indexOf('launcher-after-spawn');
      assert.equal(spawnedBeforeCrash.length, spawned ? 1 : 0, `${point}: launchers at the crash`);
      const d2 = await daemon(dir);
      await convergedRunning(d2, 'vm', point);
      const uid = recordUids(d2.stateDir)[0] as string;
      const rec = JSON.parse(fs.readFileSync(path.join(d2.stateDir, 'vmis', uid, 'record.json'), 'utf8')) as { restarts: number; launcher: { pid: number } };
      // A launcher the dead handler spawned is adopted, not killed and replaced; nothing counts as a failure.
      if (spawned) assert.deepEqual([rec.launcher.pid], spawnedBeforeCrash, `${point}: the launcher spawned before the crash is the one running`);
      assert.equal(rec.restarts, 0, `${point}: restarts`);
      await d2.call('DeleteVMI', { namespace: 'crash', name: 'vm' });
      await convergedGone(d2, 'vm', uid, `${point} (clean delete after)`);
      assert.equal((await d2.stop()).code, 0);
      console.log(`crash point ${point}: converged in ${Date.now() - t0} ms`);
    });
  }

  for (const point of DELETE) {
    test(`delete: crash at ${point} -> record, directory and launcher gone`, async () => {
      const t0 = Date.now();
      const { dir, d1 } = await firstDaemon(point);
      await d1.call('SyncVMI', { manifest: JSON.stringify(testDriverVmi('vm', 'crash')) });
      const running = await waitFor('Running', async () => {
        const v = await get(d1, 'vm');
        return v?.status.phase === 'Running' ? v : undefined;
      });
      await d1.call('DeleteVMI', { namespace: 'crash', name: 'vm' }, 10_000).catch(() => undefined);
      await diedOfSigkill(d1, point);
      await d1.kill9(); // closes its client
      const d2 = await daemon(dir);
      await convergedGone(d2, 'vm', running.uid, point);
      assert.deepEqual(recordUids(d2.stateDir), []);
      assert.equal((await d2.stop()).code, 0);
      console.log(`crash point ${point}: converged in ${Date.now() - t0} ms`);
    });
  }
});
