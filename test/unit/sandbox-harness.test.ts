// Host-side behaviour of scripts/kvm-sandbox.sh with a fake QEMU: the job encoding (argv, env,
// cwd) through the real guest-run.sh, exit statuses, timeout, signals and cleanup. The real VM
// is booted by scripts/test-native.sh on every `npm test`; these stay fast and need no KVM.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const repo = path.resolve(__dirname, '../../..');
const harness = path.join(repo, 'scripts/kvm-sandbox.sh');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-sandbox-harness-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// An image whose base initramfs is empty, so the fake can unpack the job with one gzip | cpio.
const image = path.join(tmp, 'image');
fs.mkdirSync(image);
fs.writeFileSync(path.join(image, 'vmlinux'), '');
fs.writeFileSync(path.join(image, 'initrd.gz'), '');

// Stands in for qemu-system-x86_64: serial 0 = console file, 1 = stdio, 2 = status file (see
// scripts/sandbox/init.sh). FAKE_QEMU_SCENARIO says what the "guest" does.
const fakeQemu = path.join(tmp, 'fake-qemu');
fs.writeFileSync(
  fakeQemu,
  `#!/usr/bin/env bash
set -euo pipefail
serials=() initrd=''
while (($#)); do
    case $1 in
    -serial) serials+=("$2"); shift 2 ;;
    -initrd) initrd=$2; shift 2 ;;
    *) shift ;;
    esac
done
console=\${serials[0]#file:} status=\${serials[2]#file:}
echo $$ >"$FAKE_QEMU_PIDFILE"
case $FAKE_QEMU_SCENARIO in
run)
    root=$(mktemp -d)
    (cd "$root" && gzip -dc "$initrd" | cpio -idm --quiet)
    echo "start 1.00" >>"$status"
    rc=0
    env -i bash "$root/job/run.sh" </dev/null 2>&1 || rc=$?
    echo "exit $rc 2.50" >>"$status"
    rm -rf "$root"
    ;;
die) printf 'vh-init: modules loaded\\nKernel panic - not syncing: fake\\n' >>"$console"; exit 1 ;;
error) echo "error insmod kvm-amd failed" >>"$status" ;;
hang) echo "start 1.00" >>"$status"; exec sleep 60 ;;
esac
`,
  { mode: 0o755 },
);

const runDirs = path.join(tmp, 'runs');
fs.mkdirSync(runDirs);
const pidFile = path.join(tmp, 'qemu.pid');

function sandboxEnv(scenario: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: runDirs,
    VHDEV_SANDBOX_QEMU: fakeQemu,
    VHDEV_SANDBOX_IMAGE: image,
    FAKE_QEMU_SCENARIO: scenario,
    FAKE_QEMU_PIDFILE: pidFile,
    ...extra,
  };
  return env;
}

function sandbox(args: string[], scenario = 'run', extra: Record<string, string> = {}, cwd = repo): SpawnSyncReturns<string> {
  return spawnSync('bash', [harness, ...args], { cwd, env: sandboxEnv(scenario, extra), encoding: 'utf8', timeout: 30_000 });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('argv reaches the command byte for byte, in the same cwd, with its exit status', () => {
  const awkward = ['a b', '', '$(touch /tmp/pwned)', "it's \"quoted\"", 'new\nline', '*', '-e', 'ümlaut\ttab'];
  const cwd = path.join(repo, 'scripts');
  const r = sandbox(['--', 'bash', '-c', 'pwd; printf "<%s>\\n" "$@"; exit 42', 'job', ...awkward], 'run', {}, cwd);
  assert.equal(r.status, 42, r.stderr);
  assert.equal(r.stdout, `${fs.realpathSync(cwd)}\n${awkward.map((a) => `<${a}>\n`).join('')}`);
});

test('environment: PATH, HOME, CI, VH_*, VHDEV_*, VHTEST_* and NODE_* pass through; other variables and the CA bundle do not', () => {
  const r = sandbox(['--', 'env'], 'run', {
    CI: 'true',
    VH_SOMETHING: 'value with spaces=and equals',
    VHDEV_SOMETHING: 'dev',
    VHTEST_SOMETHING: 'test',
    NODE_OPTIONS: '--no-warnings',
    NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
    SECRET_TOKEN: 'must-not-leak',
  });
  assert.equal(r.status, 0, r.stderr);
  const env = new Set(r.stdout.split('\n'));
  for (const line of ['CI=true', 'VH_SOMETHING=value with spaces=and equals', 'VHDEV_SOMETHING=dev', 'VHTEST_SOMETHING=test', 'NODE_OPTIONS=--no-warnings', `HOME=${process.env.HOME}`, `PATH=${process.env.PATH}`]) {
    assert.ok(env.has(line), `${line} missing from:\n${r.stdout}`);
  }
  assert.doesNotMatch(r.stdout, /SECRET_TOKEN|NODE_EXTRA_CA_CERTS/);
  // Our stdout is a pipe here, so the guest is told not to colour its output.
  assert.ok(env.has('NO_COLOR=1') && env.has('TERM=dumb'), r.stdout);
});

test('a command that does not exist exits 127 like in a shell', () => {
  const r = sandbox(['--', 'vh-no-such-command']);
  assert.equal(r.status, 127);
  assert.match(r.stdout, /vh-no-such-command/);
});

test('a VM that stops without a status: 125 and the console tail on stderr', () => {
  const r = sandbox(['--', 'true'], 'die');
  assert.equal(r.status, 125);
  assert.match(r.stderr, /Kernel panic - not syncing: fake/);
  assert.match(r.stderr, /stopped without reporting/);
});

test('a guest that cannot set up the sandbox: 126 with its reason', () => {
  const r = sandbox(['--', 'true'], 'error');
  assert.equal(r.status, 126);
  assert.match(r.stderr, /insmod kvm-amd failed/);
});

test('timeout: 124, and QEMU is killed', () => {
  fs.rmSync(pidFile, { force: true });
  const started = Date.now();
  const r = sandbox(['--timeout', '1', '--', 'true'], 'hang');
  assert.equal(r.status, 124, r.stderr);
  assert.match(r.stderr, /timed out after 1s while the command was running/);
  assert.ok(Date.now() - started < 10_000);
  assert.equal(alive(Number(fs.readFileSync(pidFile, 'utf8'))), false);
});

test('usage errors and a missing QEMU are "unavailable" (126)', () => {
  assert.equal(sandbox(['true']).status, 126);
  assert.equal(sandbox(['--']).status, 126);
  assert.equal(sandbox(['--timeout', '0', '--', 'true']).status, 126);
  assert.equal(sandbox(['--mem', 'lots', '--', 'true']).status, 126);
  const r = sandbox(['--', 'true'], 'run', { VHDEV_SANDBOX_QEMU: path.join(tmp, 'no-such-qemu') });
  assert.equal(r.status, 126);
  assert.match(r.stderr, /apt-get install qemu-system-x86/);
});

test('SIGTERM to the harness kills QEMU and exits 143', async () => {
  fs.rmSync(pidFile, { force: true });
  const child = spawn('bash', [harness, '--', 'true'], { cwd: repo, env: sandboxEnv('hang'), stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(pidFile) || fs.readFileSync(pidFile, 'utf8') === '') {
    assert.ok(Date.now() < deadline, 'the fake QEMU never started');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const qemuPid = Number(fs.readFileSync(pidFile, 'utf8'));
  child.kill('SIGTERM');
  assert.equal(await exited, 143);
  assert.equal(alive(qemuPid), false);
});

test('every run dir is removed afterwards', () => {
  assert.deepEqual(fs.readdirSync(runDirs), []);
});
