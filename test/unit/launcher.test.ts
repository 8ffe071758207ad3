/**
 * The real virt-launcher process (dist/src/launcher/main.js) against a fake handler: a grpc-js
 * server in this process implementing Launcher.Connect on a temp unix socket, with libvirt's
 * in-process test:///default driver (the domain lives inside the launcher process) and real
 * qemu-img and genisoimage for the disk plan.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tryLoadLibvirt } from '../../src/libvirt/ffi';
import { type DiskPrep, diskPrepToWire } from '../../src/launcher-protocol/messages';
import { FakeHandler } from './fake-launcher-handler';

const LAUNCHER = path.resolve(__dirname, '../../src/launcher/main.js');
const UID = '6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c';


interface Launched {
  child: ChildProcess;
  spawnedAt: number;
  lines: () => Array<Record<string, any>>;
  stderr: () => string;
  exit: Promise<number | null>;
}

function launch(args: string[], token: string | null): Launched {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.VH_LAUNCHER_TOKEN;
  if (token !== null) env.VH_LAUNCHER_TOKEN = token;
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [LAUNCHER, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    spawnedAt,
    exit,
    stderr: () => err,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, any>),
  };
}

function testDomainXml(name: string): string {
  return `<domain type='test'><name>${name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

describe('virt-launcher command line', () => {
  const base = ['--vmi-uid', UID, '--handler-socket', '/tmp/x.sock', '--vmi-dir', os.tmpdir()];
  const cases: Array<[string, string[], string | null, RegExp]> = [
    ['unknown flag', [...base, '--frobnicate', '1'], 'tok', /--frobnicate: unknown flag/],
    ['missing --vmi-uid', base.slice(2), 'tok', /--vmi-uid: is required/],
    ['bad uuid', ['--vmi-uid', 'nope', ...base.slice(2)], 'tok', /--vmi-uid: 'nope' is not a UUID/],
    ['relative socket', ['--vmi-uid', UID, '--handler-socket', 'rel.sock', '--vmi-dir', os.tmpdir()], 'tok', /--handler-socket: 'rel.sock' is not an absolute path/],
    ['missing vmi dir', ['--vmi-uid', UID, '--handler-socket', '/tmp/x.sock', '--vmi-dir', '/nonexistent/vh-launcher'], 'tok', /--vmi-dir: .* is not an existing directory/],
    ['bad log level', [...base, '--log-level', 'loud'], 'tok', /--log-level: 'loud' is not one of/],
    ['flag without value', [...base, '--log-level'], 'tok', /--log-level: needs a value/],
    ['duplicate flag', [...base, '--vmi-uid', UID], 'tok', /--vmi-uid: given more than once/],
    ['no token', base, null, /VH_LAUNCHER_TOKEN: is required/],
  ];
  for (const [title, args, token, re] of cases) {
    it(`exits 2 naming the flag: ${title}`, async () => {
      const l = launch(args, token);
      assert.equal(await withTimeout(l.exit, 10_000, 'exit'), 2);
      assert.match(l.stderr(), re);
    });
  }
});

describe('virt-launcher against a fake handler (test:///default)', { skip: tryLoadLibvirt().error ?? false }, () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-launcher-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps retrying a refused registration and warns once', { timeout: 30_000 }, async () => {
    const socket = path.join(dir, 'refuse.sock');
    const vmiDir = fs.mkdtempSync(path.join(dir, 'vmi-'));
    const fake = new FakeHandler(socket, UID, 'the-right-token');
    await fake.start();
    const l = launch(['--vmi-uid', UID, '--handler-socket', socket, '--vmi-dir', vmiDir], 'a-wrong-token');
    try {
      await fake.waitFor(() => fake.refused.length >= 4, 15_000, '4 refused registrations');
      assert.equal(l.child.exitCode, null, 'the launcher must keep running');
      assert.ok(fake.refused.every((r) => r.token === 'a-wrong-token'));
      const gaps = fake.refused.slice(1).map((r, i) => r.at - (fake.refused[i] as { at: number }).at);
      assert.ok(gaps.every((g) => g >= 100), `backoff between attempts: ${gaps.join(', ')} ms`);
      assert.ok((gaps[2] as number) > (gaps[0] as number), `backoff grows: ${gaps.join(', ')} ms`);
      const warnings = l.lines().filter((x) => x.level === 'warn' && /refused registration/.test(x.msg));
      assert.equal(warnings.length, 1, JSON.stringify(l.lines().filter((x) => x.level === 'warn')));
      assert.match(warnings[0]!.error, /UNAUTHENTICATED/);
      assert.ok(!JSON.stringify(l.lines()).includes('a-wrong-token'), 'the token never reaches the log');
      l.child.kill('SIGTERM');
      assert.equal(await withTimeout(l.exit, 10_000, 'exit after SIGTERM'), 0);
    } finally {
      l.child.kill('SIGKILL');
      await fake.stop();
    }
  });

  it('registers, starts, pauses, survives a dropped stream and tears down', { timeout: 60_000 }, async () => {
    const socket = path.join(dir, 'main.sock');
    const vmiDir = fs.mkdtempSync(path.join(dir, 'vmi-'));
    const fake = new FakeHandler(socket, UID, 'spawn-token-1');
    await fake.start();
    const l = launch(['--vmi-uid', UID, '--handler-socket', socket, '--vmi-dir', vmiDir, '--log-level', 'debug'], 'spawn-token-1');
    try {
      // 00 register
      const reg = await fake.waitFor((r) => !!r.msg.register, 15_000, 'Register');
      const registerMs = reg.at - l.spawnedAt;
      assert.deepEqual({ ...reg.msg.register, version: typeof reg.msg.register.version }, { vmiUid: UID, token: 'spawn-token-1', pid: l.child.pid, version: 'string' });
      await fake.waitFor((r) => !!r.msg.heartbeat, 5_000, 'a heartbeat');

      // 05 commands before StartDomain
      const early = await fake.command({ pause: {} });
      assert.equal(early.ok, false);
      assert.match(early.error, /no domain yet/);
      const unknown = await fake.command({});
      assert.equal(unknown.ok, false);
      assert.match(unknown.error, /no known cmd/);

      // 10 start
      const name = `vh-launcher-${process.pid}`;
      const disks: DiskPrep[] = [
        { kind: 'sparse', disk: 'scratch', path: path.join(vmiDir, 'disks/scratch.qcow2'), sizeBytes: 64 << 20 },
        { kind: 'cloudInit', disk: 'cloudinit', path: path.join(vmiDir, 'cloud-init/seed.iso'), userData: '#cloud-config\npassword: s3cret\n', metaData: 'instance-id: x\n', networkData: null },
      ];
      const from = fake.received.length;
      const t0 = Date.now();
      const started = await fake.command({ start: { domainXml: testDomainXml(name), disks: disks.map(diskPrepToWire), libvirtUri: 'test:///default' } });
      assert.deepEqual(started, { id: started.id, ok: true, error: '', stats: null });
      const running = await fake.waitFor((r) => r.msg.status?.state === 'running' && !!r.msg.status.domainXml, 10_000, 'running status with XML', from);
      const startMs = running.at - t0;
      assert.match(running.msg.status.domainXml, new RegExp(`<name>${name}</name>`));
      assert.match(running.msg.status.domainUuid, /^[0-9a-f-]{36}$/);
      assert.equal(running.msg.status.error, '');
      const qcow = fs.readFileSync(disks[0]!.path);
      assert.equal(qcow.subarray(0, 4).toString('latin1'), 'QFI\xfb');
      const iso = fs.readFileSync(disks[1]!.path);
      assert.equal(iso.toString('latin1', 0x8001, 0x8006), 'CD001');
      assert.equal(iso.toString('latin1', 0x8028, 0x8048).trim(), 'cidata', 'volume id');
      assert.equal(fs.statSync(disks[1]!.path).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.dirname(disks[0]!.path)).mode & 0o777, 0o750);
      assert.deepEqual(fs.readdirSync(path.join(vmiDir, 'cloud-init')), ['seed.iso'], 'no temp files left');

      // 20 pause / unpause
      let mark = fake.received.length;
      assert.equal((await fake.command({ pause: {} })).ok, true);
      const paused = await fake.waitFor((r) => r.msg.status?.state === 'paused', 5_000, 'paused status', mark);
      assert.equal(paused.msg.status.lastEvent, 'SUSPENDED/paused');
      mark = fake.received.length;
      assert.equal((await fake.command({ unpause: {} })).ok, true);
      const resumed = await fake.waitFor((r) => r.msg.status?.state === 'running', 5_000, 'running status', mark);
      assert.equal(resumed.msg.status.lastEvent, 'RESUMED/unpaused');
      assert.equal(resumed.msg.status.domainXml, '', 'the XML is sent once');
      mark = fake.received.length;
      assert.equal((await fake.command({ getStatus: {} })).ok, true);
      assert.ok(fake.statuses(mark).some((s) => s.state === 'running'));
      // A second StartDomain of the same domain (handler restart) is not an error.
      assert.equal((await fake.command({ start: { domainXml: testDomainXml(name), disks: [], libvirtUri: 'test:///default' } })).ok, true);

      // 30 the handler drops the stream: the launcher re-registers with the session token
      mark = fake.received.length;
      const tDrop = Date.now();
      fake.drop();
      const rereg = await fake.waitFor((r) => !!r.msg.register, 10_000, 're-Register', mark);
      assert.equal(rereg.msg.register.token, fake.sessionToken);
      const after = await fake.waitFor((r) => !!r.msg.status && r.stream === rereg.stream, 5_000, 'status after re-register', mark);
      assert.equal(after.msg.status.state, 'running');
      const reconnectMs = rereg.at - tDrop;
      assert.equal(l.child.exitCode, null);

      // 40 teardown: destroy, undefine, disks removed, exit 0
      const torn = await fake.command({ teardown: {} });
      assert.deepEqual(torn, { id: torn.id, ok: true, error: '', stats: null });
      assert.equal(await withTimeout(l.exit, 10_000, 'exit after teardown'), 0);
      for (const d of disks) assert.equal(fs.existsSync(d.path), false, `${d.path} removed`);
      assert.ok(fs.existsSync(vmiDir), 'the VMI directory is the handler’s');
      assert.ok(!JSON.stringify(l.lines()).includes('spawn-token-1'), 'tokens never reach the log');
      assert.ok(!JSON.stringify(l.lines()).includes('s3cret'), 'user-data never reaches the log');
      console.log(`launcher timings: spawn->Register ${registerMs} ms, start->running ${startMs} ms, drop->re-Register ${reconnectMs} ms`);
    } finally {
      l.child.kill('SIGKILL');
      await fake.stop();
    }
  });

  it('SIGTERM shuts the guest down, then exits 0 leaving the definition for teardown', { timeout: 30_000 }, async () => {
    const socket = path.join(dir, 'term.sock');
    const vmiDir = fs.mkdtempSync(path.join(dir, 'vmi-'));
    const fake = new FakeHandler(socket, UID, 'spawn-token-3');
    await fake.start();
    const l = launch(['--vmi-uid', UID, '--handler-socket', socket, '--vmi-dir', vmiDir], 'spawn-token-3');
    try {
      await fake.waitFor((r) => !!r.msg.register, 15_000, 'Register');
      const r = await fake.command({ start: { domainXml: testDomainXml(`vh-launcher-term-${process.pid}`), disks: [], libvirtUri: 'test:///default' } });
      assert.equal(r.ok, true, r.error);
      const mark = fake.received.length;
      l.child.kill('SIGTERM');
      const off = await fake.waitFor((m) => m.msg.status?.state === 'shutoff', 10_000, 'shutoff status', mark);
      assert.equal(off.msg.status.lastEvent, 'STOPPED/shutdown');
      assert.equal(await withTimeout(l.exit, 10_000, 'exit after SIGTERM'), 0);
    } finally {
      l.child.kill('SIGKILL');
      await fake.stop();
    }
  });

  it('answers a malformed disk plan with an error and creates nothing', { timeout: 30_000 }, async () => {
    const socket = path.join(dir, 'bad.sock');
    const vmiDir = fs.mkdtempSync(path.join(dir, 'vmi-'));
    const fake = new FakeHandler(socket, UID, 'spawn-token-2');
    await fake.start();
    const l = launch(['--vmi-uid', UID, '--handler-socket', socket, '--vmi-dir', vmiDir], 'spawn-token-2');
    try {
      await fake.waitFor((r) => !!r.msg.register, 15_000, 'Register');
      await fake.waitFor((r) => !!r.msg.status, 5_000, 'initial status');
      const xml = testDomainXml(`vh-launcher-bad-${process.pid}`);
      const bad: Array<[unknown[], RegExp]> = [
        [[{ disk: 'a', path: path.join(vmiDir, 'a.qcow2'), sparse: { sizeBytes: 0 } }], /^start: disks\[0\]\.sparse\.size_bytes: must be a positive integer/],
        [[{ disk: 'a', path: '/etc/evil.qcow2', sparse: { sizeBytes: 1024 } }], /outside the VMI directory/],
        [[{ disk: 'a', path: `${vmiDir}/../x.qcow2`, sparse: { sizeBytes: 1024 } }], /must be absolute and normalised/],
        [[{ disk: 'a', path: path.join(vmiDir, 'f.img') }], /disks\[0\]: must have exactly one kind/],
        [[{ disk: 'a', path: path.join(vmiDir, 'o.img'), overlay: { backingFile: '/b', backingFormat: 7 } }], /backing_format/],
      ];
      for (const [disks, re] of bad) {
        const r = await fake.command({ start: { domainXml: xml, disks, libvirtUri: 'test:///default' } });
        assert.equal(r.ok, false, JSON.stringify(disks));
        assert.match(r.error, re);
      }
      assert.deepEqual(fs.readdirSync(vmiDir), [], 'nothing created');
      assert.equal(fs.existsSync('/etc/evil.qcow2'), false);
      const torn = await fake.command({ teardown: {} });
      assert.equal(torn.ok, true, torn.error);
      assert.equal(await withTimeout(l.exit, 10_000, 'exit after teardown'), 0);
    } finally {
      l.child.kill('SIGKILL');
      await fake.stop();
    }
  });
});
