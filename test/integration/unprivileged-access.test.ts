/**
 * What an unprivileged local user (uid 65534) can get from a running virt-handler, and what
 * even root gets of a VMI's secrets: the real daemon bundle on libvirt's test driver, one VMI
 * whose cloud-init user data holds a password (created as root over the gRPC socket).
 *
 * - uid 65534, over loopback TCP: every route the daemon registers (its own route table, from
 *   the "http listening on unix socket" log line: a new route is covered without touching this
 *   file) answers 404 - one body, whether the route exists or not - except GET/HEAD /healthz,
 *   /readyz and /metrics; /metrics holds no user data;
 * - uid 65534 cannot connect to the HTTP or gRPC unix sockets (EACCES), with the run directory as
 *   the daemon made it and with every directory above the sockets opened to 0755 (so the 0660
 *   socket mode alone refuses it), nor read the VMI's record, launcher log or seed ISO;
 * - root, over the unix socket (every GET route) and gRPC (SyncVMI, GetVMI, ListVMIs, WatchVMIs,
 *   DeleteVMI) and vhctl: the password is in no answer, the redaction marker with the right
 *   length and sha256 is; nor is it in the daemon's log (at trace) or the launcher's log. Only
 *   the durable record keeps the full manifest (the launcher needs it).
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { credentials } from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';
import { REPO, SHIPPED_DAEMON, type Client, call, httpGet, killEverything, makeRoot, recordUids, testDriverVmi, vmiClient, waitFor } from '../lib/daemon';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const NET_SECRET = `psk-${randomBytes(12).toString('hex')}`;
const USER_DATA = `#cloud-config\npassword: ${PASSWORD}\nchpasswd: { expire: false }\nssh_pwauth: true\n`;
const NETWORK_DATA = `version: 2\nwifis:\n  wlan0:\n    access-points:\n      home: { password: ${NET_SECRET} }\n`;
const marker = (s: string): string => `<redacted: ${Buffer.byteLength(s)} bytes, sha256:${createHash('sha256').update(s).digest('hex')}>`;
const NS = 'tenant';
const NAME = 'secret-vm';

/** The requests TCP serves (the contract under test); everything else must be 404 there. */
const TCP_SERVES = new Set(['GET /healthz', 'HEAD /healthz', 'GET /readyz', 'HEAD /readyz', 'GET /metrics', 'HEAD /metrics']);

interface HttpResult { method: string; url: string; status: number; body: string }
interface NobodyReport { uid: number; gid: number; groups: number[]; http: HttpResult[]; sockets: Record<string, string>; files: Record<string, string> }

/**
 * Runs as uid/gid 65534 (no supplementary groups: libuv drops them with setgroups(0)): node
 * itself with builtins only, so nothing needs staging. Reports every answer and errno.
 */
const NOBODY_SCRIPT = `
const http = require('node:http'), net = require('node:net'), fs = require('node:fs');
const job = JSON.parse(process.env.JOB);
const request = (r) => new Promise((resolve) => {
  const req = http.request({ host: '127.0.0.1', port: job.port, method: r.method, path: r.url, agent: false }, (res) => {
    let body = '';
    res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve({ ...r, status: res.statusCode, body }));
  });
  req.on('error', (e) => resolve({ ...r, status: 0, body: String(e) }));
  req.end();
});
const connect = (p) => new Promise((resolve) => {
  const s = net.connect({ path: p });
  s.on('connect', () => { s.destroy(); resolve('connected'); });
  s.on('error', (e) => resolve(e.code));
});
const read = (p) => { try { fs.readFileSync(p); return 'read'; } catch (e) { return e.code; } };
(async () => {
  const out = { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), http: [], sockets: {}, files: {} };
  for (const r of job.requests) out.http.push(await request(r));
  for (const p of job.sockets) out.sockets[p] = await connect(p);
  for (const p of job.files) out.files[p] = read(p);
  process.stdout.write(JSON.stringify(out));
})();
`;

function asNobody(job: { port: number; requests: Array<{ method: string; url: string }>; sockets: string[]; files: string[] }): Promise<NobodyReport> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', NOBODY_SCRIPT], { uid: NOBODY, gid: NOBODY, cwd: '/', env: { JOB: JSON.stringify(job) }, timeout: 60_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`the uid ${NOBODY} child failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as NobodyReport);
    });
  });
}

function unixRequest(sock: string, method: string, url: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, method, path: url, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ method, url, status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Concrete requests for every registered route: parameters and wildcards filled with the test
 * VMI (a wildcard also with its `events` sub-path), so each one names something that exists.
 */
function concreteRequests(routes: readonly string[]): Array<{ method: string; url: string }> {
  const out: Array<{ method: string; url: string }> = [];
  for (const route of routes) {
    const [method, pattern] = route.split(' ') as [string, string];
    const filled = pattern.replace(':namespace', NS).replace(':name', NAME).replace(/:[A-Za-z]+/g, 'x');
    // VMI views have an events sub-path; DataVolume views do not.
    const sub = pattern.startsWith('/v1/datavolumes') ? [] : [filled.replace('*', `${NS}/${NAME}/events`)];
    const urls = filled.includes('*') ? [filled.replace('*', `${NS}/${NAME}`), ...sub] : [filled];
    for (const url of urls) out.push({ method, url });
  }
  return out;
}

interface WireVmi { uid: string; namespace: string; name: string; specJson: string; status: { phase: string } }

function assertRedacted(what: string, text: string): void {
  assert.ok(!text.includes(PASSWORD), `${what} shows the user-data password`);
  assert.ok(!text.includes(NET_SECRET), `${what} shows the network-data secret`);
}

function assertWireRedacted(what: string, v: WireVmi): void {
  assertRedacted(what, JSON.stringify(v));
  const spec = JSON.parse(v.specJson) as { spec: { volumes: Array<{ cloudInitNoCloud?: { userData: string; networkData: string } }> } };
  assert.deepEqual(spec.spec.volumes[0]?.cloudInitNoCloud, { userData: marker(USER_DATA), networkData: marker(NETWORK_DATA) }, `${what}: the markers`);
}

describe('unprivileged access and secret redaction (real daemon, test:///default)', { skip: isRoot ? false : 'needs root to run a child as uid 65534', timeout: 180_000 }, () => {
  const root = makeRoot('vh-access-');
  const runDir = path.join(root, 'run');
  const stateDir = path.join(root, 'state');
  const httpSock = path.join(runDir, 'http.sock');
  const grpcSock = path.join(runDir, 'grpc.sock');
  let daemon: ChildProcess;
  let out = '';
  let client: Client;
  let manifestText = '';
  let created: { vmi: WireVmi; changed: boolean };
  let uid = '';

  const logLine = (msg: string): Record<string, unknown> | undefined => {
    for (const l of out.split('\n')) {
      if (!l.startsWith('{')) continue;
      const j = JSON.parse(l) as Record<string, unknown>;
      if (j.msg === msg) return j;
    }
    return undefined;
  };
  const tcpPort = (): number => Number(logLine('http listening on tcp')?.port);
  /** The daemon's own route table ("GET /healthz", ...), as it logged it when it bound the unix socket. */
  const routes = (): string[] => logLine('http listening on unix socket')?.routes as string[];

  before(async () => {
    // test/lib/daemon.ts's HandlerUnderTest always passes --http-tcp=off; this suite needs the TCP
    // listener, so it starts the same bundle with the same layout itself.
    const args = ['--state-dir', stateDir, '--run-dir', runDir, '--http-tcp=on', '--http-tcp-port', '0', '--libvirt-uri=test:///default', '--vmi-image-root', path.join(root, 'images'), '--log-level', 'trace'];
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && !k.startsWith('VHTEST_') && k !== 'NOTIFY_SOCKET'));
    daemon = spawn(process.execPath, [SHIPPED_DAEMON, ...args], { env: { ...env, NODE_NAME: 'it-node' }, stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor(`daemon ready\n${out.slice(-3000)}`, async () => ((await httpGet(httpSock, '/readyz')).status === 200 ? true : undefined), 30_000, 50);
    await waitFor('libvirt connected', () => (out.includes('libvirt capabilities read') ? true : undefined), 30_000, 50);

    client = vmiClient(grpcSock);
    const m = testDriverVmi(NAME, NS) as { spec: { domain: { devices: Record<string, unknown> }; volumes?: unknown[] } };
    m.spec.domain.devices.disks = [{ name: 'cloudinit', cdrom: { bus: 'sata' } }];
    m.spec.volumes = [{ name: 'cloudinit', cloudInitNoCloud: { userData: USER_DATA, networkData: NETWORK_DATA } }];
    manifestText = JSON.stringify(m);
    created = await call<{ vmi: WireVmi; changed: boolean }>(client, 'SyncVMI', { manifest: manifestText });
    uid = created.vmi.uid;
    // A DataVolume of the same name, so the DataVolume views name something that exists too.
    const { DataVolumeClient } = loadProtos();
    const dvClient = new DataVolumeClient(`unix:${grpcSock}`, credentials.createInsecure()) as unknown as Client;
    try {
      await call(dvClient, 'CreateDataVolume', { manifest: JSON.stringify({ apiVersion: 'cdi.kubevirt.io/v1beta1', kind: 'DataVolume', metadata: { name: NAME, namespace: NS }, spec: { source: { blank: {} }, storage: { resources: { requests: { storage: '16Mi' } } } } }) });
    } finally {
      dvClient.close();
    }
    await waitFor(`${NS}/${NAME} Running\n${out.slice(-3000)}`, async () => ((await call<WireVmi>(client, 'GetVMI', { namespace: NS, name: NAME })).status.phase === 'Running' ? true : undefined), 30_000, 100);
  });

  after(async () => {
    client?.close();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    await killEverything(root);
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('uid 65534 over TCP: only GET/HEAD /healthz, /readyz, /metrics answer; every other registered route gets the one 404', async () => {
    const table = routes();
    assert.ok(Array.isArray(table) && table.length > TCP_SERVES.size, `the daemon logged its route table: ${JSON.stringify(table)}`);
    for (const r of TCP_SERVES) assert.ok(table.includes(r), `${r} is registered`);
    assert.ok(table.some((r) => r.startsWith('GET /v1/')), 'the /v1 views are registered (else this test proves nothing)');
    assert.deepEqual(logLine('http listening on tcp')?.routes, [...TCP_SERVES], 'the TCP log line names what TCP serves');

    const requests = concreteRequests(table);
    // Not routes at all, and routes with the wrong method (405 on the unix socket): the same 404 on TCP.
    const extras = [{ method: 'GET', url: '/' }, { method: 'GET', url: '/v1/nope' }, { method: 'POST', url: '/healthz' }, { method: 'DELETE', url: `/v1/vmis/${NS}/${NAME}` }, { method: 'GET', url: '/v1/vmis/%zz' }];
    const report = await asNobody({ port: tcpPort(), requests: [...requests, ...extras], sockets: [], files: [] });
    assert.deepEqual([report.uid, report.gid], [NOBODY, NOBODY], 'the child really ran as nobody');
    assert.ok(!report.groups.includes(0), `without root's groups: ${JSON.stringify(report.groups)}`);

    for (const r of report.http) {
      const what = `${r.method} ${r.url} over TCP as uid ${NOBODY}`;
      assertRedacted(what, r.body);
      if (TCP_SERVES.has(`${r.method} ${r.url}`)) {
        assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 300)}`);
        continue;
      }
      assert.equal(r.status, 404, `${what}: ${r.body.slice(0, 300)}`);
      if (r.method === 'HEAD') continue;
      // Byte for byte what an unknown path gets, but for the echoed request line.
      assert.deepEqual(JSON.parse(r.body), { code: 'VH_ERR_NOT_FOUND', message: `no route for ${r.method} ${r.url.split('?')[0]}; this TCP listener serves only GET /healthz, GET /readyz, GET /metrics (the rest of the API is on the unix socket)` }, what);
    }
    const metrics = report.http.find((r) => r.method === 'GET' && r.url === '/metrics')!;
    assert.match(metrics.body, /^kubevirt_vmi_phase_count\{/m, 'per-VMI series are there, so /metrics did describe the VMI');
    assert.doesNotMatch(metrics.body, /userData|networkData|cloudInit|sha256:/i, '/metrics over TCP carries no user data or its marker');

    // The same routes do exist on the unix socket (as root): TCP hides real routes, not absent ones.
    for (const r of requests.filter((q) => !TCP_SERVES.has(`${q.method} ${q.url}`))) {
      assert.equal((await unixRequest(httpSock, r.method, r.url)).status, 200, `${r.method} ${r.url} over the unix socket`);
    }
  });

  test('uid 65534 cannot connect to the HTTP or gRPC unix socket (EACCES), nor read the VMI files, even with every directory above opened to 0755', async () => {
    const vmiDir = path.join(stateDir, 'vmis', uid);
    const iso = path.join(vmiDir, 'disks', 'cloudinit-cidata.iso');
    assert.ok(fs.existsSync(iso), 'the seed ISO exists');
    const files = [path.join(vmiDir, 'record.json'), path.join(vmiDir, 'launcher.log'), iso];
    for (const sock of [httpSock, grpcSock]) {
      const st = fs.statSync(sock);
      assert.deepEqual([st.mode & 0o777, st.uid, st.gid], [0o660, 0, 0], `${sock}: 0660 root:root`);
    }
    let report = await asNobody({ port: tcpPort(), requests: [], sockets: [httpSock, grpcSock], files });
    assert.deepEqual(report.sockets, { [httpSock]: 'EACCES', [grpcSock]: 'EACCES' }, 'as the daemon made the directories');
    assert.deepEqual(report.files, Object.fromEntries(files.map((f) => [f, 'EACCES'])));

    // systemd's RuntimeDirectory is 0755 by default: then only the socket's own mode stands in the way.
    const modes = [root, runDir].map((d) => [d, fs.statSync(d).mode & 0o777] as const);
    try {
      for (const [d] of modes) fs.chmodSync(d, 0o755);
      report = await asNobody({ port: tcpPort(), requests: [], sockets: [httpSock, grpcSock], files });
      assert.deepEqual(report.sockets, { [httpSock]: 'EACCES', [grpcSock]: 'EACCES' }, 'the 0660 socket mode alone refuses uid 65534');
      assert.deepEqual(report.files, Object.fromEntries(files.map((f) => [f, 'EACCES'])), 'the state directory (0750) keeps the files from uid 65534');
    } finally {
      for (const [d, mode] of modes) fs.chmodSync(d, mode);
    }
  });

  test('root over the unix socket: no GET route shows the password; the VMI views show the marker with its length and sha256', async () => {
    const bodies = new Map<string, string>();
    for (const r of concreteRequests(routes()).filter((q) => q.method === 'GET')) {
      const res = await unixRequest(httpSock, r.method, r.url);
      assert.equal(res.status, 200, `${r.url}: ${res.body.slice(0, 300)}`);
      assertRedacted(`GET ${r.url} over the unix socket`, res.body);
      bodies.set(r.url, res.body);
    }
    for (const url of ['/v1/vmis', `/v1/vmis/${NS}/${NAME}`, '/v1/node', `/v1/vmis/${NS}/${NAME}/events`, '/metrics']) assert.ok(bodies.has(url), `${url} was among the routes checked`);
    const view = JSON.parse(bodies.get(`/v1/vmis/${NS}/${NAME}`)!) as { manifest: { spec: { volumes: Array<{ cloudInitNoCloud: unknown }> } }; events: unknown[] };
    assert.deepEqual(view.manifest.spec.volumes[0]?.cloudInitNoCloud, { userData: marker(USER_DATA), networkData: marker(NETWORK_DATA) });
    assert.ok(bodies.get('/v1/vmis')!.includes(marker(USER_DATA)), 'the list shows the marker');
    assert.ok(view.events.length > 0, 'the VMI has events to check');
  });

  test('root over gRPC: SyncVMI, GetVMI, ListVMIs and WatchVMIs replies show the markers, never the secrets; so does vhctl', async () => {
    assertWireRedacted('SyncVMI (create)', created.vmi);
    assert.equal(created.changed, true);
    assertWireRedacted('GetVMI', await call<WireVmi>(client, 'GetVMI', { namespace: NS, name: NAME }));
    const list = await call<{ vmis: WireVmi[] }>(client, 'ListVMIs', { namespace: '' });
    assert.equal(list.vmis.length, 1);
    assertWireRedacted('ListVMIs', list.vmis[0]!);

    const watched = await new Promise<Array<{ type: string; vmi: WireVmi }>>((resolve, reject) => {
      const seen: Array<{ type: string; vmi: WireVmi }> = [];
      const stream = (client.WatchVMIs as (r: object, o: grpc.CallOptions) => grpc.ClientReadableStream<{ type: string; vmi: WireVmi }>).call(client, { sinceRevision: 0 }, {});
      const timer = setTimeout(() => stream.cancel(), 3000); // the history up to now arrives at once
      stream.on('data', (ev: { type: string; vmi: WireVmi }) => seen.push(ev));
      stream.on('error', (e: grpc.ServiceError) => (e.code === 1 ? resolve(seen) : reject(e))); // 1: CANCELLED
      stream.on('end', () => {
        clearTimeout(timer);
        resolve(seen);
      });
    });
    assert.ok(watched.length > 0, 'WatchVMIs replayed the history');
    for (const ev of watched) assertWireRedacted(`WatchVMIs ${ev.type}`, ev.vmi);

    const resync = await call<{ vmi: WireVmi; changed: boolean }>(client, 'SyncVMI', { manifest: manifestText });
    assert.equal(resync.changed, false, 'the same manifest again');
    assertWireRedacted('SyncVMI (unchanged)', resync.vmi);

    for (const format of ['yaml', 'json']) {
      const cli = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, [path.join(REPO, 'dist/vhctl.cjs'), 'get', NAME, '-n', NS, '-o', format, '--socket', grpcSock], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
      });
      assertRedacted(`vhctl get -o ${format}`, cli);
      assert.ok(cli.includes(marker(USER_DATA)), `vhctl get -o ${format} shows the marker`);
    }
  });

  test('the durable record keeps the full manifest (the launcher needs it); the daemon and launcher logs never see the secrets', () => {
    const record = fs.readFileSync(path.join(stateDir, 'vmis', uid, 'record.json'), 'utf8');
    assert.ok(record.includes(JSON.stringify(PASSWORD).slice(1, -1)), 'record.json holds the user data');
    assert.match(out, /"level":"trace"|"level":"debug"/, 'the daemon logged at its most verbose');
    assertRedacted('the daemon log', out);
    const launcherLog = fs.readFileSync(path.join(stateDir, 'vmis', uid, 'launcher.log'), 'utf8');
    assert.match(launcherLog, /disk prepared/, 'the launcher prepared the seed ISO');
    assertRedacted('the launcher log', launcherLog);
  });

  test('record.json is 0600 in a 0700 directory', () => {
    const dir = path.join(stateDir, 'vmis', uid);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700, dir);
    assert.equal(fs.statSync(path.join(dir, 'record.json')).mode & 0o777, 0o600);
  });

  test('DeleteVMI reply is redacted; the daemon log still holds no secret after teardown', async () => {
    const res = await call<{ vmi: WireVmi }>(client, 'DeleteVMI', { namespace: NS, name: NAME });
    assertWireRedacted('DeleteVMI', res.vmi);
    await waitFor('the VMI record removed', () => (recordUids(stateDir).length === 0 ? true : undefined), 30_000, 100);
    assertRedacted('the daemon log', out);
  });
});
