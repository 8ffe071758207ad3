/**
 * `npm run demo` (scripts/demo.sh) as a user runs it: it must reach "Press Ctrl-C" with the tiny
 * guest's console marker shown, serve the status URL it prints, and on Ctrl-C (SIGINT to the
 * script) delete the VMI, stop the daemon and exit 0, leaving no launcher or domain behind.
 * Isolated with its own XDG_RUNTIME_DIR (the dev profile's root). Run through
 * scripts/test-libvirt.sh (the private libvirtd is already up, so the demo reuses it).
 */
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { testEnv, waitFor } from './guest';

const ROOT = path.resolve(__dirname, '../../..');

function get(socketPath: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: urlPath, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('npm run demo', { timeout: 300_000 }, () => {
  const xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-demo-'));
  let demo: ChildProcess | null = null;
  let out = '';
  // Whatever happened, nothing of the demo may outlive the test: the script, its daemon (own
  // session, so not reached by signals to the script), launchers (own sessions) and the domain.
  after(async () => {
    if (demo && demo.exitCode === null && demo.signalCode === null) {
      demo.kill('SIGINT');
      const d = demo;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 30_000);
        d.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    }
    const daemonPid = Number(/"pid":(\d+)[^\n]*"msg":"virt-handler starting"/.exec(out)?.[1] ?? 0);
    const pids = [daemonPid];
    const vmis = path.join(xdg, 'virt-handler', 'state', 'vmis');
    for (const uid of fs.existsSync(vmis) ? fs.readdirSync(vmis) : []) {
      try {
        pids.push((JSON.parse(fs.readFileSync(path.join(vmis, uid, 'record.json'), 'utf8')) as { launcher?: { pid?: number } }).launcher?.pid ?? 0);
      } catch {
        /* no record */
      }
    }
    for (const pid of pids) if (pid > 0 && fs.existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
    const uri = process.env.VHTEST_LIBVIRT_URI;
    if (uri) {
      spawnSync('virsh', ['-c', uri, 'destroy', 'default_tiny'], { encoding: 'utf8' });
      spawnSync('virsh', ['-c', uri, 'undefine', 'default_tiny'], { encoding: 'utf8' });
    }
    fs.rmSync(xdg, { recursive: true, force: true });
  });

  it('boots the tiny guest, serves its status URL, and stops cleanly on Ctrl-C', async () => {
    const env = testEnv();
    // No daemon config from the runner; tooling variables (VHDEV_CACHE_DIR, VHDEV_LIBVIRT_DIR) pass.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_')));
    // A free TCP port for the dev daemon (8185 may be taken by a developer's own demo).
    const port = 18000 + (process.pid % 1000);
    const child = spawn('bash', ['scripts/demo.sh'], {
      cwd: ROOT,
      env: { ...clean, XDG_RUNTIME_DIR: xdg, VH_HTTP_TCP_PORT: String(port), VHDEV_DEMO_SKIP_SETUP: '1', VH_LIBVIRT_URI: env.uri },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    demo = child;
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => out.includes('Press Ctrl-C to stop') || child.exitCode !== null, 240_000, 'the demo to come up', 200);
      if (child.exitCode !== null) throw new Error(`the demo exited ${child.exitCode} before it was up`);
    } catch (e) {
      child.kill('SIGKILL');
      throw new Error(`${(e as Error).message}\n${out.slice(-4000)}`);
    }
    assert.match(out, /console\| VH-GUEST-READY/, `the guest console marker was shown:\n${out.slice(-3000)}`);
    const m = /curl --unix-socket (\S+) http:\/\/localhost(\/v1\/vmis\/default\/tiny)/.exec(out);
    assert.ok(m, 'the status URL is printed (on the unix socket: loopback TCP serves only probes and metrics)');
    const res = await get(m[1] as string, m[2] as string);
    assert.equal(res.status, 200, res.body);
    const vmi = JSON.parse(res.body) as { status: { phase: string; launcherPid: number }; uid: string };
    assert.equal(vmi.status.phase, 'Running');
    const launcher = vmi.status.launcherPid;
    assert.ok(launcher > 0);

    child.kill('SIGINT');
    const code = await Promise.race([exited, new Promise<null>((_, rej) => setTimeout(() => rej(new Error(`demo did not stop within 90 s:\n${out.slice(-3000)}`)), 90_000))]);
    assert.equal(code, 0, out.slice(-3000));
    assert.ok(!fs.existsSync(`/proc/${launcher}`), 'the launcher is gone');
    const list = spawnSync('virsh', ['-c', env.uri, 'list', '--all', '--name'], { encoding: 'utf8' });
    assert.doesNotMatch(list.stdout, /default_tiny/, 'the domain is gone');
  });
});
