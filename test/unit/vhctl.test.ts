/** The shipped vhctl binary (package.json bin: the bundle) against an in-process GrpcServer: output, exit codes, error messages. */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultSocket, formatBytes } from '../../src/cli/vhctl';
import { TestServer, sampleNodeInfo, startTestServer, unschedulableNodeInfo } from './grpc-fixture';
import { stageForUnprivileged } from '../lib/unprivileged';

const REPO = path.resolve(__dirname, '../../..');
const VHCTL = path.join(REPO, (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.vhctl!);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs vhctl asynchronously (the server under test lives in this process's event loop). */
function vhctl(args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; bin?: string } = {}): Promise<Result> {
  // Drop VH_* from the parent so the defaults under test are not overridden by accident.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [opts.bin ?? VHCTL, ...args], { env: { ...base, ...opts.env }, uid: opts.uid, gid: opts.gid, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('vhctl against a running server', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it('node: exit 1 with the reason while the probe runs', async () => {
    ts.setInfo(null);
    const r = await vhctl(['node', '--socket', ts.socketPath]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /probe is still running/);
  });

  it('node -o json prints exactly the probed NodeInfo', async () => {
    ts.setInfo(sampleNodeInfo());
    const r = await vhctl(['node', '-o', 'json', '--socket', ts.socketPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), sampleNodeInfo());
  });

  it('node (table) shows the key facts and labels', async () => {
    ts.setInfo(sampleNodeInfo());
    const r = await vhctl(['node', '--socket', ts.socketPath]);
    assert.equal(r.code, 0, r.stderr);
    for (const want of [
      /^NODE\s+node-a$/m, /^SCHEDULABLE\s+yes$/m, /^KVM\s+available, API version 12/m, /GenuineIntel Intel\(R\) Xeon/,
      /1 socket\(s\) x 8 core\(s\) x 2 thread\(s\) = 16 logical CPUs/, /^MEMORY\s+64 GiB total, 48 GiB available$/m,
      /2 MiB: 500\/512 free; 1 GiB: 0\/0 free/, /enabled=madvise defrag=madvise/,
      /^\/dev\/kvm\s+yes\s+char\s+0660\s+0:36\s+rw$/m, /^\/dev\/vhost-vsock\s+no\s+missing\s+-\s+-\s+no$/m,
      /^LABELS \(2\)$/m, /^ {2}kubevirt\.io\/schedulable=true$/m,
    ]) assert.match(r.stdout, want);
  });

  it('node (table) explains an unschedulable node', async () => {
    ts.setInfo(unschedulableNodeInfo());
    const r = await vhctl(['node', '--socket', ts.socketPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SCHEDULABLE\s+no$/m);
    assert.match(r.stdout, /^\s+- kvm: \/dev\/kvm is missing$/m);
    assert.match(r.stdout, /^KVM\s+unavailable: \/dev\/kvm is missing: is CONFIG_KVM enabled\? \(ENOENT\)$/m);
  });

  it('health: exit 0 only when SERVING; table and json', async () => {
    ts.server.setServing(false);
    let r = await vhctl(['health', '--socket', ts.socketPath]);
    assert.deepEqual([r.code, r.stdout], [1, 'NOT_SERVING\n']);
    ts.server.setServing(true);
    r = await vhctl(['health', '--socket', ts.socketPath]);
    assert.deepEqual([r.code, r.stdout], [0, 'SERVING\n']);
    r = await vhctl(['health', '-o', 'json', '--socket', ts.socketPath]);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), { status: 'SERVING', socket: ts.socketPath });
  });

  it('finds the socket through $VH_GRPC_SOCKET and $VH_RUN_DIR', async () => {
    ts.server.setServing(true);
    assert.equal((await vhctl(['health'], { env: { VH_GRPC_SOCKET: ts.socketPath } })).code, 0);
    assert.equal((await vhctl(['health'], { env: { VH_RUN_DIR: ts.dir } })).code, 0);
  });

  it('permission problems get a message that says so (as an unprivileged user)', { skip: process.getuid?.() !== 0 && 'needs root to drop to uid 65534' }, async (t) => {
    // vhctl from a copy uid 65534 can reach even when the checkout sits under a 0700 directory.
    const staged = stageForUnprivileged();
    t.after(() => staged.remove());
    const nobody = { uid: 65534, gid: 65534, bin: path.join(staged.root, 'dist/vhctl.cjs') };
    const dirMode = fs.statSync(ts.dir).mode & 0o777; // mkdtemp: 0700, so the socket is unreachable
    let r = await vhctl(['node', '--socket', ts.socketPath], nobody);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /permission denied: cannot reach .*run as root/);
    fs.chmodSync(ts.dir, 0o755);
    try {
      r = await vhctl(['node', '--socket', ts.socketPath], nobody);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /permission denied on .*grpc\.sock \(mode 0660, owner 0:0\)/);
    } finally {
      fs.chmodSync(ts.dir, dirMode);
    }
  });
});

describe('vhctl failures', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhctl-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('usage errors exit 2: unknown flag, unknown command, missing command, bad -o, bad --timeout', async () => {
    for (const args of [['node', '--bogus'], ['frobnicate'], [], ['node', '-o', 'yaml'], ['health', '--timeout', 'soon'], ['node', 'extra']]) {
      const r = await vhctl(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Run 'vhctl --help'/);
    }
    assert.match((await vhctl(['node', '--bogus'])).stderr, /unknown option '--bogus'/);
  });

  it('--help exits 0 and lists the commands', async () => {
    const r = await vhctl(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /node\s+node facts/);
    assert.match(r.stdout, /health\s+grpc\.health\.v1/);
  });

  it('a missing socket: exit 1, asks whether virt-handler is running', async () => {
    const sock = path.join(tmp, 'absent.sock');
    let r = await vhctl(['node', '--socket', sock]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `vhctl: is virt-handler running? socket ${sock} not found (set --socket or VH_GRPC_SOCKET)\n`);
    r = await vhctl(['health', '--socket', sock]);
    assert.deepEqual([r.code, r.stdout], [1, 'unreachable\n']);
  });

  it('a stale socket (nobody listening): exit 1, says so', async () => {
    const sock = path.join(tmp, 'stale.sock');
    // Bind without listening, then exit: the file stays, connect(2) gets ECONNREFUSED.
    const child = execFile(process.execPath, ['-e', `const s=require('net').createServer().listen(${JSON.stringify(sock)},()=>process.exit(0))`]);
    await new Promise((resolve) => child.on('exit', resolve));
    assert.ok(fs.statSync(sock).isSocket());
    const r = await vhctl(['node', '--socket', sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nothing is listening on .*stale\.sock/);
  });

  it('a peer that accepts but never answers: deadline exceeded', async () => {
    const sock = path.join(tmp, 'mute.sock');
    const conns: net.Socket[] = [];
    const mute = net.createServer((c) => conns.push(c)).listen(sock);
    await new Promise((resolve) => mute.once('listening', resolve));
    const t0 = Date.now();
    const r = await vhctl(['node', '--socket', sock, '--timeout', '300ms']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /deadline exceeded: no answer from virt-handler at .*mute\.sock within 300 ms/);
    assert.ok(Date.now() - t0 < 10_000);
    for (const c of conns) c.destroy();
    await new Promise((resolve) => mute.close(resolve));
  });
});

describe('vhctl helpers', () => {
  it('defaultSocket: env first, then the system socket if present, then the per-user default', () => {
    assert.equal(defaultSocket({ VH_GRPC_SOCKET: '/x/g.sock', VH_RUN_DIR: '/y' }), '/x/g.sock');
    assert.equal(defaultSocket({ VH_RUN_DIR: '/y' }), '/y/grpc.sock');
    assert.equal(defaultSocket({}, (p) => p === '/run/virt-handler/grpc.sock'), '/run/virt-handler/grpc.sock');
    const fallback = defaultSocket({ XDG_RUNTIME_DIR: '/run/user/1000' }, () => false);
    assert.equal(fallback, process.getuid?.() === 0 ? '/run/virt-handler/grpc.sock' : '/run/user/1000/virt-handler/run/grpc.sock');
  });

  it('formatBytes picks the natural unit', () => {
    assert.deepEqual([formatBytes(512), formatBytes(2097152), formatBytes(1.5 * 1024 ** 3), formatBytes(1024 ** 4)], ['512 B', '2 MiB', '1.5 GiB', '1 TiB']);
  });
});
