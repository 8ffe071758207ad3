/**
 * libvirtd dies under a running guest: `kill -9` of the real daemon while the tiny guest runs.
 * The supervisor must notice (close callback / keepalive), keep backing off while the daemon is
 * down, reconnect once it is back, and re-register events; the guest must have kept running the
 * whole time (its serial uptime counter never restarts) and be listed and controllable again.
 * Run through scripts/test-libvirt.sh.
 */
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { Connection } from '../../src/libvirt/connection';
import type { LifecycleEvent } from '../../src/libvirt/events';
import { LibvirtSupervisor } from '../../src/libvirt/supervisor';
import { createLogger } from '../../src/log';
import {
  type LibvirtTestEnv,
  cleanupDomain,
  daemonStatus,
  guestName,
  guestUptime,
  libvirtdPid,
  makeRunDir,
  removeRunDir,
  startDaemon,
  testEnv,
  tinyGuestXml,
  uniqueSuffix,
  virshRemoveDomain,
  waitFor,
  waitForSerial,
} from './guest';

const READY = 'VH-GUEST-READY';

describe('libvirtd killed and restarted under a running guest', () => {
  const name = guestName(uniqueSuffix('reconnect'));
  let env: LibvirtTestEnv;
  let sup: LibvirtSupervisor | undefined;
  let runDir: string | undefined;
  let serial = '';
  const logLines: Array<Record<string, unknown>> = [];

  before(async () => {
    env = testEnv();
    runDir = await makeRunDir('reconnect');
    serial = path.join(runDir, 'serial.log');
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l) logLines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    sup = new LibvirtSupervisor({
      uri: env.uri,
      logger: createLogger({ level: 'debug', nodeName: 't', destination }),
      lanes: 2,
      backoff: { initialMs: 100, maxMs: 1000, stableMs: 5000 },
    });
    sup.start();
  });

  after(async () => {
    // The daemon must be up for later test files whatever happened here.
    if ((await daemonStatus(env)) !== 'running') await startDaemon(env);
    const c = (await sup?.whenConnected(30_000).catch(() => undefined)) as Connection | undefined;
    const errors = await cleanupDomain(c, name);
    if (errors.length > 0) await virshRemoveDomain(env, name);
    await sup?.stop();
    await removeRunDir(runDir);
  });

  it('reconnects, re-registers events, and the guest never stopped', { timeout: 240_000 }, async () => {
    const s = sup as LibvirtSupervisor;
    const conn = (await s.whenConnected(30_000)) as Connection;
    const dom = await conn.defineXML(tinyGuestXml({ name, kernel: env.kernel, initrd: env.initrd, serialPath: serial }));
    await dom.create();
    const uuid = dom.uuid;
    await dom.free();
    const boot = await waitForSerial(serial, READY, 120_000);
    await waitFor(async () => (await guestUptime(serial)) >= 1, 30_000, 'the guest uptime counter');
    const uptimeBefore = await guestUptime(serial);

    const lost = new Promise<string>((resolve) => s.once('disconnected', resolve));
    const pid = await libvirtdPid(env);
    const tKill = Date.now();
    process.kill(pid, 'SIGKILL');
    const reason = await Promise.race([lost, new Promise<string>((_, rej) => setTimeout(() => rej(new Error('no disconnect within 10 s of kill -9')), 10_000))]);
    const detectMs = Date.now() - tKill;
    assert.equal(s.state, 'reconnecting');
    assert.equal(s.connection, null);
    await waitFor(async () => (await daemonStatus(env)) === 'stopped', 10_000, 'libvirtd gone');

    // While the daemon is down: attempts keep failing with backoff and the guest keeps running.
    await waitFor(() => s.status().failedAttempts >= 2, 10_000, 'two failed reconnect attempts');
    const downUptime = await guestUptime(serial);
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok((await guestUptime(serial)) > downUptime, 'the guest kept counting while libvirtd was dead');

    const tStart = Date.now();
    await startDaemon(env);
    const daemonUpMs = Date.now() - tStart;
    const conn2 = (await s.whenConnected(30_000)) as Connection;
    const reconnectMs = Date.now() - tStart;
    assert.notEqual(conn2, conn, 'a new connection');
    assert.equal(s.status().connects, 2);
    assert.equal(s.status().disconnects, 1);

    // Listed again, still running, same uuid, and the counter did not restart (no reboot).
    const all = await conn2.listAllDomains();
    const listed = all.find((d) => d.name === name);
    try {
      assert.ok(listed, `${name} listed after reconnect`);
      assert.equal(listed.uuid, uuid);
      const st = await listed.getState();
      assert.equal(st.state, 'running');
    } finally {
      await Promise.all(all.map((d) => d.free()));
    }
    const uptimeAfter = await guestUptime(serial);
    assert.ok(uptimeAfter > uptimeBefore, `uptime ${uptimeBefore} -> ${uptimeAfter}: the guest never restarted`);

    // Events were registered again on the new connection and reach the supervisor's listeners.
    const seen: LifecycleEvent[] = [];
    const onEv = (ev: LifecycleEvent): void => {
      if (ev.domain === name) seen.push(ev);
    };
    s.on('lifecycle', onEv);
    try {
      const d = await conn2.lookupByName(name);
      await d.suspend();
      await d.resume();
      await d.free();
      await waitFor(() => seen.length >= 2, 10_000, 'SUSPENDED and RESUMED after reconnect');
      assert.deepEqual(
        seen.map((e) => `${e.event}/${e.detail}`),
        ['SUSPENDED/paused', 'RESUMED/unpaused'],
      );
    } finally {
      s.off('lifecycle', onEv);
    }
    const warnings = logLines.filter((l) => l.msg === 'libvirt connect failed; retrying with backoff').length;
    console.log(
      `libvirtd kill -9: disconnect seen after ${detectMs} ms (${reason}); daemon restart ${daemonUpMs} ms; ` +
        `reconnected ${reconnectMs} ms after restart began; ${s.status().failedAttempts} failed attempts logged as ${warnings} warning(s); ` +
        `guest booted in ${boot.ms} ms, uptime ${uptimeBefore} -> ${uptimeAfter} s`,
    );
    assert.ok(detectMs < 2000, `disconnect detected after ${detectMs} ms`);
    assert.ok(warnings <= 2, `${warnings} warnings for one outage: repeated identical errors must go to debug`);
  });
});
