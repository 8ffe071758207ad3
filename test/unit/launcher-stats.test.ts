/**
 * The launcher's get_stats command: the real virt-launcher process against a fake handler, with
 * libvirt's in-process test:///default driver. libvirt 9.0's test driver reports only the
 * 'state' group, so the report carries the state and nothing invented for the rest; the handler
 * side then parses it like any launcher's answer.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tryLoadLibvirt } from '../../src/libvirt/ffi';
import { checkDomainStats } from '../../src/launcher-protocol/validate';
import { FakeHandler } from './fake-launcher-handler';

const LAUNCHER = path.resolve(__dirname, '../../src/launcher/main.js');
const UID = '7a2d3c4b-1e5f-4a6b-8c9d-0e1f2a3b4c5d';

describe('virt-launcher get_stats (test:///default)', { skip: tryLoadLibvirt().error ?? false }, () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-launcher-stats-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('answers with the domain stats libvirt reports, before start with an error, and not after teardown', { timeout: 30_000 }, async () => {
    const socket = path.join(dir, 'h.sock');
    const vmiDir = fs.mkdtempSync(path.join(dir, 'vmi-'));
    const fake = new FakeHandler(socket, UID, 'spawn-token-stats');
    await fake.start();
    const env: NodeJS.ProcessEnv = { ...process.env, VH_LAUNCHER_TOKEN: 'spawn-token-stats' };
    const child = spawn(process.execPath, [LAUNCHER, '--vmi-uid', UID, '--handler-socket', socket, '--vmi-dir', vmiDir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.resume();
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await fake.waitFor((r) => !!r.msg.register, 15_000, 'Register');
      await fake.waitFor((r) => !!r.msg.heartbeat, 5_000, 'a heartbeat');

      const early = await fake.command({ getStats: {} });
      assert.equal(early.ok, false);
      assert.match(early.error, /no domain yet/);
      assert.equal((early as { stats?: unknown }).stats, null);

      const name = `vh-launcher-stats-${process.pid}`;
      const xml = `<domain type='test'><name>${name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;
      const started = await fake.command({ start: { domainXml: xml, disks: [], libvirtUri: 'test:///default' } });
      assert.deepEqual(started, { id: started.id, ok: true, error: '', stats: null }, 'other results carry no stats');

      const t0 = Date.now();
      const r = (await fake.command({ getStats: {} })) as { id: string; ok: boolean; error: string; stats?: Record<string, unknown> | null };
      const ms = Date.now() - t0;
      assert.equal(r.ok, true, r.error);
      const raw = r.stats as Record<string, unknown>;
      // The test driver: the state group only (1 = running); the other groups are unset, not zero.
      assert.deepEqual(raw.state, { state: 1, reason: 1 }, 'running/booted');
      for (const k of ['cpu', 'balloon']) assert.equal(raw[k], null, `${k} not reported`);
      for (const k of ['vcpus', 'net', 'block']) assert.deepEqual(raw[k], [], `${k} not reported`);
      assert.equal(raw.vcpuCurrent, undefined);
      assert.ok(typeof raw.takenAtMs === 'number' && Math.abs((raw.takenAtMs as number) - Date.now()) < 10_000);
      assert.deepEqual(checkDomainStats(r.stats), { cpu: {}, vcpus: [], balloon: {}, net: [], block: [] });
      console.log(`launcher get_stats round trip: ${ms} ms`);

      // Paused domains are still active: stats keep coming.
      assert.equal((await fake.command({ pause: {} })).ok, true);
      assert.equal((await fake.command({ getStats: {} })).ok, true);

      const torn = await fake.command({ teardown: {} });
      assert.equal(torn.ok, true, torn.error);
      assert.equal(await exit, 0);
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { cmd?: string; msg?: string });
      assert.ok(lines.some((l) => l.cmd === 'teardown'), 'commands are logged at info');
      assert.deepEqual(lines.filter((l) => l.cmd === 'getStats'), [], 'stats commands (every scrape) only at debug');
    } finally {
      child.kill('SIGKILL');
      await fake.stop();
    }
  });
});
