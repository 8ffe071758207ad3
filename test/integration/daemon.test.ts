/**
 * The real daemon as a process: `node dist/virt-handler.cjs` (the bundle production runs, the
 * package.json bin) with temp dirs, real sockets, real signals.
 */
import { test, describe, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { SHIPPED_DAEMON as MAIN } from '../lib/daemon';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-it-'));
after(() => fs.rmSync(ROOT, { recursive: true, force: true }));
let seq = 0;

/**
 * A clean environment: no VH_* or NOTIFY_SOCKET leaking in from the test runner. libvirt is off
 * unless a test asks for it (a flag beats the env), so the other tests never touch the host's.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'NOTIFY_SOCKET'));
  return { ...env, NODE_NAME: 'it-node', VH_LIBVIRT_URI: 'off', ...extra };
}

interface Daemon {
  child: ChildProcess;
  dir: string;
  httpSock: string;
  grpcSock: string;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first stdout JSON line whose msg matches. */
  line: (msg: string, timeoutMs?: number) => Promise<Record<string, unknown>>;
}

function start(args: string[] = [], opts: { dir?: string; env?: Record<string, string> } = {}): Daemon {
  const dir = opts.dir ?? path.join(ROOT, `d${seq++}`);
  const base = ['--state-dir', path.join(dir, 'state'), '--run-dir', path.join(dir, 'run'), '--http-tcp-port', '0', '--log-level', 'debug'];
  const child = spawn(process.execPath, [MAIN, ...base, ...args], { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const line = async (msg: string, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const l of out.split('\n')) {
        if (!l.startsWith('{')) continue;
        const j = JSON.parse(l) as Record<string, unknown>;
        if (j.msg === msg) return j;
      }
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no log line "${msg}"; stdout:\n${out}\nstderr:\n${err}`);
      await sleep(20);
    }
  };
  return { child, dir, httpSock: path.join(dir, 'run/http.sock'), grpcSock: path.join(dir, 'run/grpc.sock'), stdout: () => out, stderr: () => err, exit, line };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function get(target: { socketPath: string } | { host: string; port: number }, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

async function waitReady(target: { socketPath: string } | { host: string; port: number }, d: Daemon, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (d.child.exitCode !== null) break;
    try {
      const r = await get(target, '/readyz');
      if (r.status === 200) return;
      last = r.body;
    } catch (e) {
      last = String(e);
    }
    await sleep(25);
  }
  throw new Error(`not ready: ${last}\nstdout:\n${d.stdout()}\nstderr:\n${d.stderr()}`);
}

async function tcpOf(d: Daemon): Promise<{ host: string; port: number }> {
  const l = await d.line('http listening on tcp');
  return { host: String(l.host), port: Number(l.port) };
}

describe('daemon lifecycle', { timeout: 60_000 }, () => {
  test('ready over unix socket and TCP, sockets 0660, SIGTERM -> exit 0 and sockets removed', async () => {
    const d = start();
    await waitReady({ socketPath: d.httpSock }, d);
    const tcp = await tcpOf(d);
    assert.equal(tcp.host, '127.0.0.1');
    assert.equal((await get(tcp, '/readyz')).status, 200);
    assert.equal(fs.statSync(d.httpSock).mode & 0o777, 0o660);
    assert.equal(fs.statSync(d.grpcSock).mode & 0o777, 0o660);
    assert.equal((await get(tcp, '/v1/node')).status, 404, 'views are not on loopback TCP');
    const node = JSON.parse((await get({ socketPath: d.httpSock }, '/v1/node')).body) as { nodeName: string };
    assert.equal(node.nodeName, 'it-node');
    const metrics = await get({ socketPath: d.httpSock }, '/metrics');
    assert.match(metrics.body, /^kubevirt_virt_handler_ready_status 1$/m);
    d.child.kill('SIGTERM');
    const { code } = await d.exit;
    assert.equal(code, 0, d.stderr());
    assert.equal(fs.existsSync(d.httpSock), false);
    assert.equal(fs.existsSync(d.grpcSock), false);
    await d.line('stopped', 0);
    assert.doesNotMatch(d.stdout(), /"level":"info"[^\n]*"msg":"request"/, 'requests are logged at debug');
  });

  test('libvirt (test:///default, required): connected in /readyz, /v1/node and /metrics; capability labels merged', async () => {
    const d = start(['--libvirt-uri', 'test:///default', '--libvirt-required']);
    try {
      await waitReady({ socketPath: d.httpSock }, d);
      assert.ok(Number((await d.line('virt-handler starting')).threadpool) >= 16, 'libuv threadpool raised for libvirt calls');
      await d.line('libvirt capabilities read');
      const ready = JSON.parse((await get({ socketPath: d.httpSock }, '/readyz')).body) as { components: { libvirt: Record<string, unknown> } };
      assert.equal(ready.components.libvirt.state, 'connected');
      assert.equal(ready.components.libvirt.required, true);
      assert.equal(ready.components.libvirt.connects, 1);
      const node = JSON.parse((await get({ socketPath: d.httpSock }, '/v1/node')).body) as { labels: Record<string, string>; libvirt: { state: string; capabilities: { virtType: string; virtTypeReason: string } } };
      assert.equal(node.libvirt.state, 'connected');
      // The test driver has no kvm domain type, so guests would be TCG whatever /dev/kvm is.
      assert.equal(node.libvirt.capabilities.virtType, 'qemu');
      assert.ok(node.labels['kubevirt.io/schedulable'] !== undefined, 'probe labels are kept');
      const metrics = (await get({ socketPath: d.httpSock }, '/metrics')).body;
      assert.match(metrics, /^virt_handler_libvirt_connected 1$/m);
      assert.match(metrics, /^virt_handler_libvirt_state\{state="connected"\} 1$/m);
      assert.match(metrics, /^virt_handler_libvirt_disconnects_total 0$/m);
    } finally {
      d.child.kill('SIGTERM');
      assert.equal((await d.exit).code, 0, d.stderr());
    }
  });

  test('libvirt unreachable: required -> not ready naming libvirt; optional -> ready, state shown; exits cleanly while retrying', async () => {
    const sock = path.join(ROOT, 'no-such-libvirt.sock');
    const uri = `qemu+unix:///system?socket=${sock}`;
    const req = start(['--libvirt-uri', uri, '--libvirt-required']);
    const opt = start(['--libvirt-uri', uri]);
    try {
      await waitReady({ socketPath: opt.httpSock }, opt);
      const o = JSON.parse((await get({ socketPath: opt.httpSock }, '/readyz')).body) as { components: { libvirt: { state: string; lastError: string } } };
      assert.equal(o.components.libvirt.state, 'connecting');
      assert.match(o.components.libvirt.lastError, /no-such-libvirt\.sock/);
      await req.line('libvirt connect failed; retrying with backoff');
      let r = await get({ socketPath: req.httpSock }, '/readyz');
      // Until the node probe finishes, 'probe running' is listed first; the libvirt reason must then stand alone.
      for (let i = 0; i < 200 && (!r.body.includes('libvirt') || r.body.includes('probe running')); i++) {
        await sleep(50);
        r = await get({ socketPath: req.httpSock }, '/readyz');
      }
      assert.equal(r.status, 503);
      assert.match(r.body, new RegExp(`"reasons":\\["libvirt qemu\\+unix:///system\\?socket=[^"]*: connecting`));
    } finally {
      for (const d of [req, opt]) {
        d.child.kill('SIGTERM');
        assert.equal((await d.exit).code, 0, d.stderr());
      }
    }
  });

  test('a second daemon on the same socket exits 3 and leaves the first alone', async () => {
    const first = start();
    await waitReady({ socketPath: first.httpSock }, first);
    const second = start([], { dir: first.dir });
    const { code } = await second.exit;
    assert.equal(code, 3);
    assert.match(second.stderr(), /virt-handler: startup failed: .*http\.sock is in use by a running process/);
    assert.equal((await get({ socketPath: first.httpSock }, '/readyz')).status, 200);
    first.child.kill('SIGTERM');
    assert.equal((await first.exit).code, 0);
  });

  test('gRPC socket in use after HTTP bound -> exit 3 and the HTTP socket is removed again', async () => {
    const first = start();
    await waitReady({ socketPath: first.httpSock }, first);
    const otherHttp = path.join(first.dir, 'run/other-http.sock');
    const second = start(['--http-socket', otherHttp], { dir: first.dir });
    assert.equal((await second.exit).code, 3);
    assert.match(second.stderr(), /grpc\.sock is in use by a running process/);
    assert.equal(fs.existsSync(otherHttp), false, 'nothing half-started');
    first.child.kill('SIGTERM');
    assert.equal((await first.exit).code, 0);
  });

  test('stale sockets left by a killed daemon are replaced', async () => {
    const first = start();
    await waitReady({ socketPath: first.httpSock }, first);
    first.child.kill('SIGKILL');
    await first.exit;
    assert.ok(fs.lstatSync(first.httpSock).isSocket(), 'SIGKILL leaves the socket file behind');
    const second = start([], { dir: first.dir });
    await waitReady({ socketPath: second.httpSock }, second);
    second.child.kill('SIGTERM');
    assert.equal((await second.exit).code, 0);
  });

  test('drain waits for an in-flight request until the deadline, then exits 0', async () => {
    const d = start(['--shutdown-drain-timeout-ms', '400']);
    const tcp = await tcpOf(d);
    await waitReady(tcp, d);
    const sock = net.connect(tcp.port, tcp.host);
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /readyz HTTP/1.1\r\nHost: x\r\n'); // headers never finished: an active, not idle, connection
    await sleep(50);
    const t0 = Date.now();
    d.child.kill('SIGTERM');
    const { code } = await d.exit;
    const took = Date.now() - t0;
    sock.destroy();
    assert.equal(code, 0);
    assert.ok(took >= 350, `exited after ${took} ms, before the drain deadline`);
    await d.line('drain deadline passed; closing remaining connections', 0);
  });

  test('a second signal while draining forces exit 130', async () => {
    const d = start(['--shutdown-drain-timeout-ms', '30000']);
    const tcp = await tcpOf(d);
    await waitReady(tcp, d);
    const sock = net.connect(tcp.port, tcp.host);
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /readyz HTTP/1.1\r\n');
    await sleep(50);
    d.child.kill('SIGTERM');
    await d.line('shutting down');
    d.child.kill('SIGINT');
    const { code } = await d.exit;
    sock.destroy();
    assert.equal(code, 130);
    assert.match(d.stderr(), /second SIGINT, exiting without draining/);
  });
});

describe('startup failures', { timeout: 60_000 }, () => {
  test('invalid flag value -> exit 2 naming the key', async () => {
    const d = start(['--http-tcp-port', 'abc']);
    assert.equal((await d.exit).code, 2);
    assert.match(d.stderr(), /http\.tcp\.port: must be an integer 0-65535 .*got "abc"/);
  });

  test('invalid config file value -> exit 2 naming the key and the file', async () => {
    const file = path.join(ROOT, 'bad.yaml');
    fs.writeFileSync(file, 'log:\n  level: loud\n');
    const d = start(['--config', file]);
    assert.equal((await d.exit).code, 2);
    assert.match(d.stderr(), /log\.level: must be one of .*got "loud" \(from file .*bad\.yaml\)/);
  });

  test('unknown flag -> exit 2; unknown VH_ variable -> exit 2', async () => {
    const d = start(['--colour']);
    assert.equal((await d.exit).code, 2);
    assert.match(d.stderr(), /--colour: unknown flag/);
    const e = start([], { env: { VH_LOG_LEVLE: 'debug' } });
    assert.equal((await e.exit).code, 2);
    assert.match(e.stderr(), /VH_LOG_LEVLE: unknown environment variable \(did you mean VH_LOG_LEVEL\?\)/);
  });

  test('unwritable state dir (a path under a regular file) -> exit 3, nothing left behind', async () => {
    const dir = path.join(ROOT, `u${seq++}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'file'), '');
    const d = start(['--state-dir', path.join(dir, 'file/state')], { dir });
    assert.equal((await d.exit).code, 3);
    assert.match(d.stderr(), /stateDir .*file\/state: cannot be created or written: ENOTDIR/);
    assert.equal(fs.existsSync(path.join(dir, 'run/http.sock')), false);
  });

  test('--help and --version exit 0', async () => {
    const h = start(['--help']);
    assert.equal((await h.exit).code, 0);
    assert.match(h.stdout(), /--http-tcp-port N/);
    const v = start(['--version']);
    assert.equal((await v.exit).code, 0);
    assert.match(v.stdout(), /^virt-handler \d/);
  });
});

describe('sd_notify', { timeout: 60_000 }, () => {
  const addon = path.resolve(__dirname, '../../../build/Release/virt_handler_native.node');
  test('READY=1 once ready, STOPPING=1 on SIGTERM', { skip: fs.existsSync(addon) ? false : 'native addon not built (npm run build:native)' }, async () => {
    const notifySock = path.join(ROOT, `notify${seq++}.sock`);
    const receiver = spawn('python3', ['-c', [
      'import socket, sys, json',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("bound", flush=True)',
      'while True: print(json.dumps(s.recv(4096).decode()), flush=True)',
    ].join('\n'), notifySock], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    receiver.stdout!.setEncoding('utf8').on('data', (d: string) => (got += d));
    try {
      while (!got.includes('bound')) await sleep(20);
      const d = start([], { env: { NOTIFY_SOCKET: notifySock } });
      await waitReady({ socketPath: d.httpSock }, d);
      const messages = (): string[] => got.split('\n').slice(1).filter(Boolean).map((l) => JSON.parse(l) as string);
      for (let i = 0; i < 100 && !messages().some((m) => m.includes('READY=1')); i++) await sleep(20);
      assert.match(messages()[0] ?? '', /^READY=1\nSTATUS=ready/);
      d.child.kill('SIGTERM');
      assert.equal((await d.exit).code, 0);
      for (let i = 0; i < 100 && !messages().some((m) => m.includes('STOPPING=1')); i++) await sleep(20);
      const all = messages();
      const ready = all.findIndex((m) => m.includes('READY=1'));
      const stopping = all.findIndex((m) => m.includes('STOPPING=1'));
      assert.ok(ready >= 0 && stopping > ready, `messages: ${JSON.stringify(all)}`);
    } finally {
      receiver.kill('SIGTERM');
    }
  });
});
