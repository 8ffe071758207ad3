/**
 * Test knobs are injected, not read by the product; tooling variables can never stop it.
 *
 * - The bundles production runs hold none of the test variables' names (nothing in them could
 *   read one).
 * - VHTEST_FAILPOINTS kills the test entry (test/lib/test-daemon.ts) at the first step of a
 *   SyncVMI; the shipped daemon started with that variable, the other seams' variables set to
 *   values that would break it (a 1 ms registration timeout, /bin/false as the launcher) and
 *   every VHDEV_* and VHTEST_* variable the repository names, starts, runs a VMI to Running, deletes
 *   it and drains: none of them is read.
 * - VH_ is the daemon's configuration namespace: the scripts' old names (VH_LIBVIRT_LOG_LEVEL,
 *   the case from the issue, now VHDEV_LIBVIRT_LOG_LEVEL) stop startup with exit 2 naming the
 *   variable, and no script, test helper or doc still uses a VH_ name that is not a daemon key.
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KEYS, envName } from '../../src/config/defaults';
import { META_ENV } from '../../src/config/load';
import { TOKEN_ENV } from '../../src/launcher/args';
import { HandlerUnderTest, REPO, SHIPPED_DAEMON, type VmiView, killEverything, makeRoot, pidsWithCmdline, sleep, testDriverVmi, waitFor } from '../lib/daemon';
import { SEAM_ENV } from '../lib/seams';

const ROOT = makeRoot('vh-seams-');
after(async () => {
  await killEverything(ROOT);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

/** Text files under `rel` (a file or a directory of the repository). */
function files(rel: string): string[] {
  const abs = path.join(REPO, rel);
  if (!fs.existsSync(abs)) return [];
  if (fs.statSync(abs).isFile()) return [rel];
  return fs.readdirSync(abs, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(rel, e.name)) : /\.(ts|sh|md|json|py)$|^run$/.test(e.name) ? [path.join(rel, e.name)] : []));
}

/** Where tooling and test variables are read or documented. */
const TOOLING = ['scripts', '.ci', 'test', 'README.md', 'package.json'].flatMap(files).filter((f) => !f.startsWith('test/fixtures/'));

/** name -> files naming it, for names matching `re` (global) in `list`. */
function names(re: RegExp, list: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of list) {
    for (const [n] of fs.readFileSync(path.join(REPO, f), 'utf8').matchAll(re)) out.set(n, [...new Set([...(out.get(n) ?? []), f])]);
  }
  return out;
}

const TOOLING_VARS = names(/\bVH(DEV|TEST)_[A-Z0-9_]*[A-Z0-9]\b/g, TOOLING);

/** One dir per daemon: state/, run/ and a copy of the images. */
function dir(name: string): string {
  const d = path.join(ROOT, name);
  fs.mkdirSync(d);
  fs.cpSync(path.join(ROOT, 'images'), path.join(d, 'images'), { recursive: true });
  return d;
}

describe('test seams and tooling variables', { timeout: 120_000 }, () => {
  test('the shipped bundles contain no test variable', () => {
    for (const bundle of ['dist/virt-handler.bundle.js', 'dist/virt-launcher.bundle.js']) {
      const text = fs.readFileSync(path.join(REPO, bundle), 'utf8');
      for (const needle of ['VHTEST_', 'VH_TEST_', 'VH_FAILPOINTS', 'VHDEV_']) assert.ok(!text.includes(needle), `${bundle} contains ${needle}`);
    }
    assert.ok(fs.readFileSync(SHIPPED_DAEMON, 'utf8').includes('virt-handler.bundle.js'), 'the shipped bin loads that bundle');
  });

  test('no script, test helper or doc uses a VH_ variable that is not a daemon key', () => {
    const daemon = new Set<string>([...KEYS.map((k) => envName(k.key)), ...META_ENV, TOKEN_ENV]);
    // Names the tests feed the daemon or the sandbox on purpose (typos, the old names), per file;
    // this file names them all.
    const fixtures: Record<string, string[]> = {
      'test/integration/daemon.test.ts': ['VH_LOG_LEVLE'],
      'test/unit/config.test.ts': ['VH_LIBVIRT_DIRR', 'VH_LIBVIRT_LOG_LEVEL', 'VH_HTTP_TCP_PROT', 'VH_PROBE_EVERYTHING', 'VH_STAT_DIR', 'VH_CACHE_DIR'],
      'test/unit/sandbox-harness.test.ts': ['VH_SOMETHING'],
    };
    const stray: string[] = [];
    for (const f of TOOLING.filter((f) => f !== 'test/integration/test-seams.test.ts')) {
      for (const [n] of fs.readFileSync(path.join(REPO, f), 'utf8').matchAll(/\bVH_[A-Z0-9_]+/g)) {
        if (!daemon.has(n) && !n.startsWith('VH_ERR_') && !fixtures[f]?.includes(n)) stray.push(`${f}: ${n}`);
      }
    }
    assert.deepEqual([...new Set(stray)], [], 'tooling variables use VHDEV_ (scripts) or VHTEST_ (tests); VH_ is the daemon configuration');
  });

  test('the libvirtd log level of scripts/libvirt/libvirtd-env.sh is VHDEV_LIBVIRT_LOG_LEVEL', () => {
    const script = fs.readFileSync(path.join(REPO, 'scripts/libvirt/libvirtd-env.sh'), 'utf8');
    assert.match(script, /\$\{VHDEV_LIBVIRT_LOG_LEVEL:-3\}/);
    assert.doesNotMatch(script, /\bVH_LIBVIRT/);
    assert.ok(TOOLING_VARS.has('VHDEV_LIBVIRT_LOG_LEVEL') && TOOLING_VARS.has('VHDEV_LIBVIRT_DIR') && TOOLING_VARS.has(SEAM_ENV.failpoints), [...TOOLING_VARS.keys()].join(' '));
  });

  test('VHTEST_FAILPOINTS arms the test entry: it dies at the first step of SyncVMI', async () => {
    const h = await HandlerUnderTest.start({ tmp: dir('test-entry'), libvirtUri: 'test:///default', logLevel: 'info', seams: { failpoints: 'sync-after-record-write' } });
    await h.call('SyncVMI', { manifest: JSON.stringify(testDriverVmi('vm', 'seams')) }, 10_000).catch(() => undefined);
    const exit = await Promise.race([h.exit, sleep(20_000).then(() => null)]);
    assert.equal(exit?.signal, 'SIGKILL', `${JSON.stringify(exit)}\n${h.tail()}`);
    assert.match(h.out, /failpoint sync-after-record-write: SIGKILL/);
    await h.kill9();
  });

  test('the shipped daemon with every VHDEV_*/VHTEST_* variable set runs a VMI and drains: none is read', async () => {
    const env: Record<string, string> = Object.fromEntries([...TOOLING_VARS.keys()].map((n) => [n, '1']));
    env[SEAM_ENV.failpoints] = 'sync-after-record-write,launcher-after-spawn,domain-start-sent';
    env[SEAM_ENV.vmiTiming] = JSON.stringify({ registerTimeoutMs: 1, readoptMs: 1 });
    env[SEAM_ENV.launcherCommand] = JSON.stringify(['/bin/false']);
    env.VHDEV_LIBVIRT_LOG_LEVEL = '1';
    // The bin loader (not the bundle) writes its code cache where this points at exit: a temp
    // file, never './1' in the working directory.
    const tmp = dir('shipped');
    env.VHDEV_CODE_CACHE_WRITE = path.join(tmp, 'code-cache-out');
    const h = await HandlerUnderTest.start({ tmp, libvirtUri: 'test:///default', logLevel: 'info', env });
    const created = (await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: JSON.stringify(testDriverVmi('vm', 'seams')) })).vmi;
    const running = await h.waitPhase('seams', 'vm', ['Running'], 20_000);
    assert.ok(running.status.launcherPid > 0);
    await sleep(500); // a 1 ms registration timeout would have failed it by now
    assert.equal((await h.call<VmiView>('GetVMI', { namespace: 'seams', name: 'vm' })).status.phase, 'Running');
    await h.call('DeleteVMI', { namespace: 'seams', name: 'vm' });
    await waitFor('VMI gone', async () => ((await h.call<{ vmis: unknown[] }>('ListVMIs', { namespace: 'seams' })).vmis.length === 0 && pidsWithCmdline(created.uid).length === 0 ? true : undefined));
    assert.doesNotMatch(h.out, /failpoint|test seams/i);
    assert.equal((await h.stop()).code, 0, h.tail());
    console.log(`shipped daemon ignored ${Object.keys(env).length} tooling/test variables: ${Object.keys(env).sort().join(' ')}`);
  });

  test("the scripts' old VH_ names stop the daemon with exit 2, naming the variable", () => {
    for (const name of ['VH_LIBVIRT_LOG_LEVEL', 'VH_FAILPOINTS']) {
      const r = spawnSync(process.execPath, [SHIPPED_DAEMON, '--profile', 'dev', '--state-dir', path.join(ROOT, 'old', 'state'), '--run-dir', path.join(ROOT, 'old', 'run')], {
        env: { PATH: process.env.PATH, [name]: '1' },
        encoding: 'utf8',
      });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^virt-handler: ${name}: unknown environment variable`));
    }
  });
});
