/**
 * Chaos on the real stack (daemon + launchers + private libvirtd + QEMU TCG), three VMIs:
 *  1. kill -9 of the handler: launchers keep their guests and retry with backoff; the restarted
 *     handler re-adopts every VMI from its record and live launcher; no VMI is ever reported
 *     anything but Running; same QEMU processes, the guests' uptime counters keep going, no reboot.
 *  2. kill -9 of an adopted launcher (not the new handler's child): Failed with a reason within
 *     2 s, the leftover QEMU destroyed, restarted by runStrategy Always.
 *  3. libvirtd stopped and restarted: guests keep running, launchers reconnect to it, status
 *     returns to Running and commands work again.
 *  4. Per-VMI metrics from real QEMU; a SIGSTOPped launcher cannot stall a scrape.
 * Then everything is deleted: no launcher, QEMU, domain or record left.
 * Run through scripts/test-libvirt.sh.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView, qemuPids, stageTinyImages, tinyVmi } from '../lib/daemon';
import { type LibvirtTestEnv, daemonStatus, startDaemon, stopDaemon, testEnv, waitFor } from './guest';

const NS = 'chaos';
const NAMES = ['a', 'b', 'c'];
const READY = 'VH-GUEST-READY';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`);

describe('chaos: handler, launcher and libvirtd killed under running VMIs', { timeout: 600_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let h: HandlerUnderTest;
  const uids = new Map<string, string>();

  const serial = (name: string): string => path.join(h.stateDir, 'vmis', uids.get(name) as string, 'serial.log');
  const launcherLog = (name: string): string => path.join(h.stateDir, 'vmis', uids.get(name) as string, 'launcher.log');
  const readyCount = (name: string): number => (fs.readFileSync(serial(name), 'utf8').match(new RegExp(READY, 'g')) ?? []).length;
  /** The uptime the guest's current boot last printed (after its last READY marker), or -1. */
  const uptimeNow = (name: string): number => {
    let text = '';
    try {
      text = fs.readFileSync(serial(name), 'utf8');
    } catch {
      return -1;
    }
    const all = [...text.slice(text.lastIndexOf(READY)).matchAll(/vh-guest: uptime (\d+)/g)];
    return all.length === 0 ? -1 : Number((all.at(-1) as RegExpMatchArray)[1]);
  };
  const list = async (): Promise<VmiView[]> => (await h.call<{ vmis: VmiView[] }>('ListVMIs', { namespace: NS })).vmis;
  const connected = (v: VmiView): boolean => v.status.conditions.some((c) => c.type === 'LauncherConnected' && c.status === 'True');

  before(async () => {
    env = testEnv();
    if ((await daemonStatus(env)) !== 'running') await startDaemon(env);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-chaos-'));
    stageTinyImages(tmp, env);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: env.uri, nodeName: 'chaos-node', waitLibvirt: true });
    for (const n of NAMES) {
      const r = await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: tinyVmi(n, NS) });
      uids.set(n, r.vmi.uid);
    }
    for (const n of NAMES) await h.waitPhase(NS, n, ['Running'], 120_000);
    for (const n of NAMES) await waitFor(async () => uptimeNow(n) >= 1, 120_000, `${n}: the guest's uptime counter`, 200);
  });

  after(async () => {
    if ((await daemonStatus(env).catch(() => 'stopped')) !== 'running') await startDaemon(env).catch(() => undefined);
    await h?.killLeftovers();
    for (const n of NAMES) {
      for (const pid of qemuPids(`${NS}_${n}`)) process.kill(pid, 'SIGKILL');
      spawnSync('virsh', ['-c', env.uri, 'undefine', `${NS}_${n}`], { encoding: 'utf8' });
    }
    if (process.env.VHTEST_KEEP) console.log(`kept ${tmp}`);
    else if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('kill -9 of the handler: every VMI re-adopted, Running throughout, no guest stopped or rebooted', async () => {
    const before = new Map<string, { launcher: number; qemu: number[]; uptime: number }>();
    for (const v of await list()) {
      before.set(v.name, { launcher: v.status.launcherPid, qemu: qemuPids(`${NS}_${v.name}`), uptime: uptimeNow(v.name) });
      assert.equal(before.get(v.name)!.qemu.length, 1, `${v.name}: one QEMU`);
    }
    const oldHandler = h.pid;
    const tKill = Date.now();
    await h.kill9();
    assert.ok(!alive(oldHandler));

    // The handler is gone for 3 s: launchers and guests carry on, launchers retry with backoff.
    await sleep(3000);
    for (const [n, b] of before) {
      assert.ok(alive(b.launcher), `${n}: launcher ${b.launcher} survived the handler`);
      assert.ok(b.qemu.every(alive), `${n}: QEMU survived the handler`);
      assert.ok(uptimeNow(n) > b.uptime, `${n}: the guest kept counting`);
    }

    const tStart = Date.now();
    await h.restart();
    const readyMs = Date.now() - tStart;
    // From the first answer on, every VMI must read Running (the record's last phase), and each
    // must reconnect with its own launcher.
    const seen: string[] = [];
    let adoptedMs = -1;
    await waitFor(
      async () => {
        const vs = await list();
        for (const v of vs) if (v.status.phase !== 'Running') seen.push(`${v.name}: ${v.status.phase} ${v.status.reason}`);
        const done = vs.length === NAMES.length && vs.every((v) => connected(v) && v.status.launcherPid === before.get(v.name)!.launcher && v.status.reason === '');
        if (done) adoptedMs = Date.now() - tStart;
        return done;
      },
      30_000,
      `all VMIs re-adopted\n${h.tail()}`,
      50,
    );
    assert.deepEqual(seen, [], 'no VMI was reported anything but Running during re-adoption');
    for (const [n, b] of before) {
      assert.deepEqual(qemuPids(`${NS}_${n}`), b.qemu, `${n}: the same QEMU process`);
      assert.equal(readyCount(n), 1, `${n}: the guest did not reboot`);
      const up = uptimeNow(n);
      assert.ok(up >= b.uptime + 3, `${n}: uptime ${b.uptime} -> ${up} s, continuous`);
      // Backoff, not a storm: the launcher's attempts while the handler was away.
      const attempts = fs
        .readFileSync(launcherLog(n), 'utf8')
        .split('\n')
        .filter((l) => l.includes('handler link down') && Date.parse(JSON.parse(l).time as string) >= tKill)
        .map((l) => (JSON.parse(l) as { attempt: number }).attempt);
      assert.ok(attempts.length >= 1 && attempts.length <= 10, `${n}: ${attempts.length} reconnect attempts in ~${Math.round((Date.now() - tKill) / 1000)} s`);
    }
    // When each launcher re-registered, from its own log (ms after the restart began).
    const registeredAt = NAMES.map((n) => {
      const line = fs
        .readFileSync(launcherLog(n), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { msg: string; time: string })
        .find((j) => j.msg === 'registered with the handler' && Date.parse(j.time) >= tStart);
      return line ? Date.parse(line.time) - tStart : -1;
    });
    console.log(`# handler kill -9: restarted daemon ready in ${readyMs} ms, launchers re-registered at ${registeredAt.join('/')} ms, all ${NAMES.length} VMIs re-adopted ${adoptedMs} ms after start`);
    for (const [i, n] of NAMES.entries()) {
      if ((registeredAt[i] as number) - readyMs < 1000) continue;
      // A slow re-registration: show what the launcher's link did (diagnostics only).
      const lines = fs.readFileSync(launcherLog(n), 'utf8').split('\n').filter((l) => l.includes('handler') && Date.parse((/"time":"([^"]+)"/.exec(l) ?? [])[1] ?? '') >= tKill);
      console.log(`# slow re-registration of ${n}:\n${lines.map((l) => `#   ${l.slice(0, 400)}`).join('\n')}`);
    }
  });

  it('kill -9 of an adopted launcher: Failed with a reason within 2 s, QEMU cleaned up, restarted (Always)', async () => {
    const v = await h.call<VmiView>('GetVMI', { namespace: NS, name: 'a' });
    const launcher = v.status.launcherPid;
    const qemu = qemuPids(`${NS}_a`);
    assert.equal(qemu.length, 1);
    const { revision } = await h.call<{ revision: string | number }>('ListVMIs', { namespace: NS });
    const client = h.vmiClient();
    const stream = (client.WatchVMIs as (r: unknown) => unknown).call(client, { namespace: NS, sinceRevision: revision }) as grpc.ClientReadableStream<{ type: string; vmi: VmiView }>;
    const failedAt = new Promise<{ at: number; reason: string }>((resolve) => {
      stream.on('data', (ev: { vmi: VmiView }) => {
        if (ev.vmi.name === 'a' && ev.vmi.status.phase === 'Failed') resolve({ at: Date.now(), reason: ev.vmi.status.reason });
      });
    });
    stream.on('error', () => undefined);
    const tKill = Date.now();
    process.kill(launcher, 'SIGKILL');
    try {
      const failed = await Promise.race([failedAt, sleep(10_000).then(() => null)]);
      assert.ok(failed, `no Failed event within 10 s\n${h.tail()}`);
      const detectMs = failed.at - tKill;
      assert.match(failed.reason, /launcher/, failed.reason);
      assert.ok(detectMs <= 2000, `detected in ${detectMs} ms (target <= 2000)`);
      await waitFor(() => !qemu.some(alive), 15_000, 'the leftover QEMU destroyed');
      const back = await h.waitPhase(NS, 'a', ['Running'], 60_000);
      const runningMs = Date.now() - tKill;
      assert.notEqual(back.status.launcherPid, launcher, 'a new launcher');
      const qemu2 = qemuPids(`${NS}_a`);
      assert.equal(qemu2.length, 1, 'one new QEMU');
      assert.notDeepEqual(qemu2, qemu);
      // A fresh boot: a second marker in the same serial log, then its own uptime counter.
      await waitFor(() => readyCount('a') === 2 && uptimeNow('a') >= 1, 120_000, 'the restarted guest booted', 200);
      console.log(`# launcher kill -9: Failed after ${detectMs} ms ("${failed.reason}"), Running again (new launcher and QEMU) after ${runningMs} ms, the new guest booted after ${Date.now() - tKill} ms`);
    } finally {
      stream.cancel();
    }
  });

  it('libvirtd restart: guests keep running, launchers reconnect, Running again and commands work', async () => {
    for (const n of NAMES) await waitFor(async () => uptimeNow(n) >= 1, 60_000, `${n} counting`, 200);
    const before = new Map<string, { qemu: number[]; uptime: number }>();
    for (const n of NAMES) before.set(n, { qemu: qemuPids(`${NS}_${n}`), uptime: uptimeNow(n) });
    const tStop = Date.now();
    await stopDaemon(env);
    const during: string[] = [];
    await waitFor(
      async () => {
        for (const v of await list()) if (v.status.phase !== 'Running') during.push(`${v.name}: ${v.status.phase} ${v.status.reason}`);
        return Date.now() - tStop > 3000;
      },
      10_000,
      'libvirtd down for 3 s',
      100,
    );
    for (const [n, b] of before) {
      assert.ok(b.qemu.every(alive), `${n}: QEMU survived libvirtd`);
      assert.ok(uptimeNow(n) > b.uptime, `${n}: the guest kept counting`);
    }
    const tStart = Date.now();
    await startDaemon(env);
    await waitFor(
      async () => {
        const vs = await list();
        for (const v of vs) if (v.status.phase !== 'Running') during.push(`${v.name}: ${v.status.phase} ${v.status.reason}`);
        return vs.every((v) => v.status.phase === 'Running' && v.status.reason === '' && v.status.domainState.startsWith('running'));
      },
      60_000,
      `all Running after libvirtd came back\n${h.tail()}`,
      100,
    );
    const backMs = Date.now() - tStart;
    assert.deepEqual(during, [], 'no VMI left Running while libvirtd restarted');
    // The launchers' new libvirt connections carry commands.
    const paused = await h.call<VmiView>('Pause', { namespace: NS, name: 'b' });
    assert.equal(paused.name, 'b');
    await waitFor(async () => (await h.call<VmiView>('GetVMI', { namespace: NS, name: 'b' })).status.domainState.startsWith('paused'), 10_000, 'b paused');
    await h.call('Unpause', { namespace: NS, name: 'b' });
    await waitFor(async () => (await h.call<VmiView>('GetVMI', { namespace: NS, name: 'b' })).status.domainState.startsWith('running'), 10_000, 'b running');
    for (const [n, b] of before) {
      assert.deepEqual(qemuPids(`${NS}_${n}`), b.qemu, `${n}: the same QEMU`);
      assert.ok(uptimeNow(n) > b.uptime + 2, `${n}: still counting`);
    }
    console.log(`# libvirtd restart: status Running with the new connections ${backMs} ms after libvirtd started`);
  });

  it('metrics: kubevirt_vmi_* for every VMI from real QEMU; a frozen launcher cannot stall the scrape', async () => {
    const scrape = async (): Promise<{ text: string; ms: number }> => {
      const t0 = Date.now();
      const r = await h.http('GET', '/metrics');
      assert.equal(r.status, 200);
      return { text: r.body, ms: Date.now() - t0 };
    };
    const value = (text: string, metric: string, name: string): number | null => {
      const line = text.split('\n').find((l) => l.startsWith(`${metric}{`) && l.includes(`name="${name}"`) && l.includes(`namespace="${NS}"`));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : null;
    };
    // Right after the libvirtd restart a launcher may still be re-opening its connection: the
    // first sample of each VMI must come within a few scrapes.
    const tFirst = Date.now();
    let first = await scrape();
    const missingAtFirst = NAMES.filter((n) => value(first.text, 'kubevirt_vmi_cpu_usage_seconds_total', n) === null);
    await waitFor(
      async () => {
        first = await scrape();
        return NAMES.every((n) => value(first.text, 'kubevirt_vmi_cpu_usage_seconds_total', n) !== null);
      },
      20_000,
      'a first stats sample of every VMI',
      500,
    ).catch((e: Error) => {
      const collector = first.text.split('\n').filter((l) => l.startsWith('virt_handler_vmi_stats_')).join('\n');
      throw new Error(`${e.message}\n${collector}\n${h.tail()}`);
    });
    const sampledMs = Date.now() - tFirst;
    if (missingAtFirst.length > 0) {
      // Diagnostics: why a launcher had no sample yet (the collector logs failures at debug).
      const why = h.out.split('\n').filter((l) => /stats/i.test(l) && Date.parse((/"time":"([^"]+)"/.exec(l) ?? [])[1] ?? '') >= tFirst - 1000);
      console.log(`# stats failures right after the libvirtd restart:\n${why.slice(0, 8).map((l) => `#   ${l.slice(0, 400)}`).join('\n')}`);
    }
    await sleep(1500);
    const second = await scrape();
    for (const n of NAMES) {
      const c1 = value(first.text, 'kubevirt_vmi_cpu_usage_seconds_total', n);
      const c2 = value(second.text, 'kubevirt_vmi_cpu_usage_seconds_total', n);
      assert.ok(c1 !== null && c1 > 0, `${n}: cpu usage reported (${c1})`);
      assert.ok(c2 !== null && c2 > c1, `${n}: cpu usage rises (${c1} -> ${c2})`);
      assert.ok((value(second.text, 'kubevirt_vmi_vcpu_seconds_total', n) ?? 0) > 0, `${n}: vcpu time`);
      assert.ok((value(second.text, 'kubevirt_vmi_memory_domain_bytes', n) ?? 0) >= 128 * 2 ** 20, `${n}: 128 MiB domain memory`);
      assert.equal(value(second.text, 'virt_handler_vmi_stats_sample_age_seconds', n), 0, `${n}: fresh sample`);
    }
    // SIGSTOP one launcher: the scrape still ends within the collector's deadline and serves
    // that VMI's last sample with its age.
    const frozen = (await h.call<VmiView>('GetVMI', { namespace: NS, name: 'c' })).status.launcherPid;
    process.kill(frozen, 'SIGSTOP');
    try {
      await sleep(1100);
      const third = await scrape();
      assert.ok(third.ms < 4000, `scrape with a frozen launcher took ${third.ms} ms`);
      assert.ok((value(third.text, 'virt_handler_vmi_stats_sample_age_seconds', 'c') ?? 0) > 0, 'c: a stale sample, with its age');
      assert.ok(value(third.text, 'kubevirt_vmi_cpu_usage_seconds_total', 'c') !== null, 'c: still reported');
      assert.equal(value(third.text, 'virt_handler_vmi_stats_sample_age_seconds', 'a'), 0, 'a: fresh');
      console.log(`# metrics: every VMI sampled ${sampledMs} ms after the first scrape (missing at first: ${missingAtFirst.join(',') || 'none'}); scrape ${second.ms} ms with ${NAMES.length} VMIs, ${third.ms} ms with one launcher frozen`);
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
  });

  it('deleting every VMI leaves no launcher, QEMU, domain or record', async () => {
    const pids = [...h.launcherPids().values()];
    for (const n of NAMES) await h.call('DeleteVMI', { namespace: NS, name: n });
    await waitFor(async () => (await list()).length === 0, 90_000, `all deleted\n${h.tail()}`, 200);
    await waitFor(() => pids.every((p) => !alive(p)), 10_000, 'launchers gone');
    for (const n of NAMES) assert.deepEqual(qemuPids(`${NS}_${n}`), [], `${n}: no QEMU`);
    const domains = spawnSync('virsh', ['-c', env.uri, 'list', '--all', '--name'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(domains, /chaos_/);
    // Only the revision high-water file stays: no VMI directory.
    assert.deepEqual(fs.readdirSync(path.join(h.stateDir, 'vmis')).filter((f) => f !== 'revision'), []);
  });
});
