/**
 * A full state disk through the daemon's API (issue 6.4; test/unit/vmi-store.test.ts covers the
 * store itself): with the state directory on a small tmpfs filled up, SyncVMI of a new VMI and
 * DeleteVMI of an existing one fail with a clear error (UNAVAILABLE, naming the record path and
 * ENOSPC) and leave nothing half-written; the existing VMI's last good record stays, keeps its
 * VM running, and loads after a restart.
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HandlerUnderTest, type VmiView, killEverything, makeRoot, pidsWithCmdline, recordUids, testDriverVmi, waitFor } from '../lib/daemon';

const ROOT = makeRoot('vh-full-');
const STATE = path.join(ROOT, 'state');
fs.mkdirSync(STATE);
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', STATE], { stdio: 'ignore' });
  mounted = true;
} catch {
  /* not root: skipped */
}
after(async () => {
  await killEverything(ROOT);
  if (mounted) execFileSync('umount', [STATE]);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

/** Fills the file system holding `dir` until ENOSPC. */
function fill(dir: string): void {
  const fd = fs.openSync(path.join(dir, 'filler'), 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

describe('full state disk', { timeout: 90_000 }, () => {
  test('new VMI refused with ENOSPC naming the path; the existing record kept and loaded after a restart', { skip: !mounted && 'mount -t tmpfs not permitted' }, async () => {
    const start = (): Promise<HandlerUnderTest> => HandlerUnderTest.start({ tmp: ROOT, stateDir: STATE, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info' });
    const d = await start();
    const old = (await d.call<{ vmi: VmiView }>('SyncVMI', { manifest: JSON.stringify(testDriverVmi('old', 'disk')) })).vmi;
    const running = await waitFor('old Running', async () => {
      const v = await d.call<VmiView>('GetVMI', { namespace: 'disk', name: 'old' });
      return v.status.phase === 'Running' ? v : undefined;
    });
    const recFile = path.join(STATE, 'vmis', old.uid, 'record.json');
    const good = fs.readFileSync(recFile, 'utf8');

    fill(STATE);
    const err = await d.call('SyncVMI', { manifest: JSON.stringify(testDriverVmi('new', 'disk')) }).then(() => null, (e: grpc.ServiceError) => e);
    assert.ok(err, 'SyncVMI on a full disk must fail');
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
    assert.match(err.details, /cannot write VMI record .*\/state\/vmis\/[0-9a-f-]{36}\/record\.json: ENOSPC \(disk full; the previous record is kept\)/);
    assert.deepEqual(recordUids(STATE), [old.uid], 'no record for the refused VMI');
    assert.deepEqual(fs.readdirSync(path.join(STATE, 'vmis')).filter((f) => f !== 'revision').sort(), [old.uid], 'not even an empty directory for it');
    await assert.rejects(d.call('GetVMI', { namespace: 'disk', name: 'new' }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);

    // A change to the existing VMI cannot be made durable: refused, and nothing acts on it.
    const del = await d.call('DeleteVMI', { namespace: 'disk', name: 'old' }).then(() => null, (e: grpc.ServiceError) => e);
    assert.equal(del?.code, grpc.status.UNAVAILABLE, String(del?.message));
    assert.match(del.details, /ENOSPC/);
    const after1 = JSON.parse(fs.readFileSync(recFile, 'utf8')) as { deleting: boolean; launcher: { pid: number } };
    assert.equal(after1.deleting, false, 'the last good record is kept');
    assert.equal(after1.launcher.pid, running.status.launcherPid);
    assert.deepEqual(JSON.parse(fs.readFileSync(recFile, 'utf8')), JSON.parse(good), 'record unchanged by the failed writes');

    // Restart on the still-full disk: the record loads, the launcher is re-adopted.
    assert.equal((await d.stop()).code, 0);
    const d2 = await start();
    const back = await waitFor('old re-adopted', async () => {
      const v = await d2.call<VmiView>('GetVMI', { namespace: 'disk', name: 'old' });
      const linked = v.status.conditions.some((x) => x.type === 'LauncherConnected' && x.status === 'True');
      return v.status.phase === 'Running' && v.status.launcherPid === running.status.launcherPid && linked ? v : undefined;
    });
    assert.equal(back.uid, old.uid);

    // Space again: the delete goes through, nothing is left.
    fs.rmSync(path.join(STATE, 'filler'));
    await d2.call('DeleteVMI', { namespace: 'disk', name: 'old' });
    await waitFor('old gone', () => (!fs.existsSync(path.join(STATE, 'vmis', old.uid)) && pidsWithCmdline(old.uid).length === 0 ? true : undefined)).catch((e: Error) => {
      throw new Error(`${e.message}; processes ${pidsWithCmdline(old.uid).join(',')}\n${d2.tail(60)}`);
    });
    assert.equal((await d2.stop()).code, 0);
  });
});
