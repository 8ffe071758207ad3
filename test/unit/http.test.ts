import { test, describe, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { ErrorCodes, VhError } from '../../src/errors';
import { toHttpError } from '../../src/http/errors';
import { Metrics } from '../../src/http/metrics';
import { HttpServer, type HttpServerOptions } from '../../src/http/server';
import { createLogger } from '../../src/log';
import type { NodeInfo } from '../../src/node/types';
import { Readiness } from '../../src/util/readiness';
import type { VmiView } from '../../src/vmi/spec/types';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-http-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FAKE_INFO = {
  nodeName: 'node-a', probedAt: new Date(0).toISOString(), probeDurationMs: 42,
  kvm: { available: true, reason: null }, schedulable: false, reasons: ['no hugepages'], labels: { 'kubevirt.io/schedulable': 'false' },
} as unknown as NodeInfo;

let socketSeq = 0;
function fixture(over: Partial<HttpServerOptions> = {}) {
  const state = { info: null as NodeInfo | null };
  const readiness = new Readiness({ listeners: 'listeners not bound', probe: 'probe running' });
  const metrics = new Metrics({ version: '9.9.9', nodeName: 'node-a', ready: () => readiness.ready, nodeInfo: () => state.info });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const server = new HttpServer({
    logger: createLogger({ level: 'silent', nodeName: 'node-a', destination: sink }),
    socketPath: path.join(tmp, `h${socketSeq++}.sock`),
    tcp: { host: '127.0.0.1', port: 0 },
    readiness, metrics, nodeInfo: () => state.info,
    ...over,
  });
  return { server, readiness, state, socketPath: over.socketPath ?? path.join(tmp, `h${socketSeq - 1}.sock`) };
}

type Target = { socketPath: string } | { host: string; port: number };
function request(target: Target, method: string, urlPath: string, agent: http.Agent | false = false): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, method, path: urlPath, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('routes via inject', () => {
  test('/healthz: 200 ok with lag and uptime; 503 when lag exceeds the threshold', async () => {
    const { server } = fixture();
    const res = await server.app.inject('/healthz');
    assert.equal(res.statusCode, 200);
    const body = res.json() as { status: string; eventLoopLagMs: number; uptimeS: number };
    assert.equal(body.status, 'ok');
    assert.equal(typeof body.eventLoopLagMs, 'number');
    assert.ok(body.uptimeS >= 0);
    assert.equal(res.headers['cache-control'], 'no-store');
    const sick = fixture({ maxEventLoopLagMs: -1 }).server;
    const res2 = await sick.app.inject('/healthz');
    assert.equal(res2.statusCode, 503);
    assert.equal(res2.json().status, 'unhealthy');
  });

  test('/readyz: 503 with reasons until listeners and probe are done, 200, then 503 draining', async () => {
    const { server, readiness } = fixture();
    let res = await server.app.inject('/readyz');
    assert.equal(res.statusCode, 503);
    assert.deepEqual(res.json(), { ready: false, reasons: ['listeners not bound', 'probe running'], components: {} });
    readiness.ok('listeners');
    assert.deepEqual((await server.app.inject('/readyz')).json(), { ready: false, reasons: ['probe running'], components: {} });
    readiness.ok('probe');
    res = await server.app.inject('/readyz');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { ready: true, reasons: [], components: {} });
    readiness.block('draining', 'draining');
    res = await server.app.inject('/readyz');
    assert.equal(res.statusCode, 503);
    assert.deepEqual(res.json(), { ready: false, reasons: ['draining'], components: {} });
  });

  test('/readyz shows component states (e.g. a non-blocking libvirt outage) without changing readiness', async () => {
    const libvirt = { state: 'reconnecting', required: false, lastError: 'connection lost (eof)' };
    const { server, readiness } = fixture({ components: () => ({ libvirt }) });
    readiness.ok('listeners');
    readiness.ok('probe');
    const res = await server.app.inject('/readyz');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { ready: true, reasons: [], components: { libvirt } });
  });

  test('/v1/vmis: 503 NOT_READY without a VMI read model, the views with one', async () => {
    let res = await fixture().server.app.inject('/v1/vmis');
    assert.equal(res.statusCode, 503);
    assert.equal(res.json().code, ErrorCodes.NOT_READY);
    const vmis = { list: () => [], get: () => null };
    const { server } = fixture({ vmis });
    res = await server.app.inject('/v1/vmis');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { items: [] });
    res = await server.app.inject('/v1/vmis/default/absent');
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { code: ErrorCodes.NOT_FOUND, message: 'vmi default/absent not found' });
  });

  test('/v1/node: 503 NOT_READY while probing, then the NodeInfo', async () => {
    const { server, state } = fixture();
    let res = await server.app.inject('/v1/node');
    assert.equal(res.statusCode, 503);
    assert.equal(res.json().code, ErrorCodes.NOT_READY);
    assert.match(res.json().message, /probe still running/);
    state.info = FAKE_INFO;
    res = await server.app.inject('/v1/node');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), FAKE_INFO);
  });

  test('/metrics: private registry with default, ready, probe and build series', async () => {
    const { server, readiness, state } = fixture();
    let res = await server.app.inject('/metrics');
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^virt_handler_ready_status 0$/m);
    assert.match(res.body, /^kubevirt_virt_handler_ready_status 0$/m);
    assert.match(res.body, /^process_cpu_seconds_total /m);
    assert.match(res.body, /^nodejs_eventloop_lag_seconds /m);
    assert.match(res.body, /^virt_handler_build_info\{version="9\.9\.9",node="node-a"\} 1$/m);
    assert.doesNotMatch(res.body, /^virt_handler_kvm_available /m, 'absent until probed');
    state.info = FAKE_INFO;
    readiness.ok('listeners');
    readiness.ok('probe');
    res = await server.app.inject('/metrics');
    assert.match(res.body, /^virt_handler_ready_status 1$/m);
    assert.match(res.body, /^kubevirt_virt_handler_ready_status 1$/m);
    assert.match(res.body, /^virt_handler_kvm_available 1$/m);
    assert.match(res.body, /^virt_handler_node_schedulable 0$/m);
    assert.match(res.body, /^virt_handler_probe_duration_seconds 0\.042$/m);
    // Two daemons in one process do not share series (no global registry).
    assert.match((await fixture().server.app.inject('/metrics')).body, /^virt_handler_ready_status 0$/m);
  });

  test('unknown route: 404 JSON; wrong method: 405 JSON with Allow', async () => {
    const { server } = fixture();
    let res = await server.app.inject('/nope?x=1');
    assert.equal(res.statusCode, 404);
    assert.match(String(res.headers['content-type']), /application\/json/);
    assert.deepEqual(Object.keys(res.json()).sort(), ['code', 'message']);
    assert.equal(res.json().code, ErrorCodes.NOT_FOUND);
    res = await server.app.inject({ method: 'DELETE', url: '/readyz' });
    assert.equal(res.statusCode, 405);
    assert.equal(res.headers.allow, 'GET, HEAD');
    assert.equal(res.json().code, ErrorCodes.INVALID_ARGUMENT);
  });

  test("fastify's own errors and thrown errors go through the one mapper", async () => {
    const { server } = fixture();
    server.app.post('/test/echo', async (req) => req.body);
    server.app.get('/test/boom', async () => {
      throw new Error('secret internal detail');
    });
    server.app.get('/test/kvm', async () => {
      throw new VhError(ErrorCodes.KVM_MISSING, '/dev/kvm is absent; is CONFIG_KVM enabled?');
    });
    let res = await server.app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'text/xml' }, payload: '<a/>' });
    assert.equal(res.statusCode, 415);
    assert.equal(res.json().code, ErrorCodes.INVALID_ARGUMENT);
    res = await server.app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/json' }, payload: '{bad' });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, ErrorCodes.INVALID_ARGUMENT);
    res = await server.app.inject('/test/boom');
    assert.equal(res.statusCode, 500);
    assert.deepEqual(res.json(), { code: ErrorCodes.INTERNAL, message: 'internal error; see the virt-handler log' });
    res = await server.app.inject('/test/kvm');
    assert.equal(res.statusCode, 503);
    assert.deepEqual(res.json(), { code: ErrorCodes.KVM_MISSING, message: '/dev/kvm is absent; is CONFIG_KVM enabled?' });
  });

  test('schema validation still works although the compilers load lazily', async () => {
    const { server } = fixture();
    const schema = { body: { type: 'object', required: ['a'], properties: { a: { type: 'integer' } } }, response: { 200: { type: 'object', properties: { a: { type: 'integer' } } } } };
    server.app.post('/test/typed', { schema }, async (req) => ({ ...(req.body as object), dropped: true }));
    let res = await server.app.inject({ method: 'POST', url: '/test/typed', payload: { a: 'x' } });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), { code: ErrorCodes.INVALID_ARGUMENT, message: 'body/a must be integer' });
    res = await server.app.inject({ method: 'POST', url: '/test/typed', payload: { a: 1 } });
    assert.deepEqual(res.json(), { a: 1 }, 'the response schema serialised it');
  });

  test('toHttpError maps every registry code to a status', () => {
    for (const code of Object.values(ErrorCodes)) {
      const { status, body } = toHttpError(new VhError(code, 'm'));
      assert.ok(status >= 400 && status < 600, code);
      assert.equal(body.code, code);
    }
  });
});

describe('real listeners', () => {
  test('unix socket (0660) and TCP serve the probes from the same app; close removes the socket', async () => {
    const { server, readiness, socketPath } = fixture();
    await server.listen();
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o660);
    const tcp = server.tcpAddress;
    assert.ok(tcp && tcp.port > 0 && tcp.host === '127.0.0.1');
    assert.equal((await request({ socketPath }, 'GET', '/readyz')).status, 503);
    readiness.ok('listeners');
    readiness.ok('probe');
    const viaUnix = await request({ socketPath }, 'GET', '/readyz');
    const viaTcp = await request(tcp, 'GET', '/readyz');
    assert.equal(viaUnix.status, 200);
    assert.equal(viaTcp.status, 200);
    assert.equal((await request(tcp, 'GET', '/nope')).status, 404);
    assert.equal((await request(tcp, 'HEAD', '/metrics')).status, 200);
    await server.close(1000);
    assert.equal(fs.existsSync(socketPath), false);
    await assert.rejects(request(tcp, 'GET', '/readyz'), /ECONNREFUSED/);
  });

  test('TCP serves only the ON_TCP routes; every other route, known or not, gets one and the same 404', async () => {
    const vm = { uid: 'u', namespace: 'default', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm' }, spec: { domain: {} } }, status: {}, revision: 1, deleting: false, events: [], domainXml: null } as unknown as VmiView;
    const vmis = { list: () => [vm], get: (ns: string, name: string) => (ns === 'default' && name === 'vm' ? vm : null) };
    const { server, readiness, state, socketPath } = fixture({ vmis });
    server.app.post('/test/unix-only', async () => ({ private: true }));
    readiness.ok('listeners');
    readiness.ok('probe');
    state.info = FAKE_INFO;
    await server.listen();
    try {
      const tcp = server.tcpAddress!;
      const routes = server.routes;
      assert.ok(routes.length >= 10, 'the route table is read from fastify');
      assert.deepEqual(routes.filter((r) => r.tcp).map((r) => `${r.method} ${r.url}`), ['GET /healthz', 'HEAD /healthz', 'GET /readyz', 'HEAD /readyz', 'GET /metrics', 'HEAD /metrics']);
      const concrete = (url: string): string => url.replace('*', 'default/vm');
      for (const r of routes) {
        const url = concrete(r.url);
        const viaTcp = await request(tcp, r.method, url);
        const viaUnix = await request({ socketPath }, r.method, url);
        if (r.tcp) {
          assert.equal(viaTcp.status, 200, `${r.method} ${url} over TCP`);
          continue;
        }
        assert.equal(viaUnix.status, 200, `${r.method} ${url} over the unix socket`);
        assert.equal(viaTcp.status, 404, `${r.method} ${url} over TCP`);
        if (r.method !== 'HEAD') {
          assert.deepEqual(JSON.parse(viaTcp.body), {
            code: ErrorCodes.NOT_FOUND,
            message: `no route for ${r.method} ${url}; this TCP listener serves only GET /healthz, GET /readyz, GET /metrics (the rest of the API is on the unix socket)`,
          });
        }
      }
      // Unknown paths, wrong methods (405 on the unix socket), trailing slashes, bad
      // percent-encoding (400 on the unix socket), query strings: the same 404 shape over TCP.
      for (const [method, url, unixStatus] of [['GET', '/nope', 404], ['DELETE', '/readyz', 405], ['POST', '/v1/node', 405], ['GET', '/healthz/', 404], ['GET', '/%zz', 400], ['GET', '/v1/vmis?namespace=x', 200]] as const) {
        assert.equal((await request({ socketPath }, method, url)).status, unixStatus, `${method} ${url} over unix`);
        const res = await request(tcp, method, url);
        assert.equal(res.status, 404, `${method} ${url} over TCP`);
        assert.match(JSON.parse(res.body).message, new RegExp(`^no route for ${method} ${url.split('?')[0]!.replace(/[/?%]/g, '\\$&')}; this TCP listener serves only`));
      }
      // A keep-alive TCP connection stays a TCP connection for its later requests.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      assert.equal((await request(tcp, 'GET', '/healthz', agent)).status, 200);
      assert.equal((await request(tcp, 'GET', '/v1/node', agent)).status, 404);
      agent.destroy();
    } finally {
      await server.close(1000);
    }
  });

  test('the listen log lines name the routes each listener serves', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    const { server } = fixture({ logger: createLogger({ level: 'info', nodeName: 'node-a', destination: sink }) });
    await server.listen();
    await server.close(1000);
    const byMsg = (msg: string): { routes: string[] } => JSON.parse(lines.find((l) => JSON.parse(l).msg === msg)!);
    assert.deepEqual(byMsg('http listening on unix socket').routes, server.routes.map((r) => `${r.method} ${r.url}`));
    assert.deepEqual(byMsg('http listening on tcp').routes, ['GET /healthz', 'HEAD /healthz', 'GET /readyz', 'HEAD /readyz', 'GET /metrics', 'HEAD /metrics']);
  });

  test('a socket held by a live server is refused and left alone', async () => {
    const first = fixture();
    await first.server.listen();
    const second = fixture({ socketPath: first.socketPath });
    await assert.rejects(second.server.listen(), (e: unknown) => e instanceof VhError && e.code === ErrorCodes.SOCKET_IN_USE);
    assert.equal((await request({ socketPath: first.socketPath }, 'GET', '/healthz')).status, 200);
    await first.server.close(1000);
  });

  test('a TCP port in use fails with LISTEN_FAILED and unbinds the unix socket again', async () => {
    const first = fixture();
    await first.server.listen();
    const second = fixture({ tcp: first.server.tcpAddress });
    await assert.rejects(second.server.listen(), (e: unknown) => e instanceof VhError && e.code === ErrorCodes.LISTEN_FAILED && /EADDRINUSE/.test(e.message));
    assert.equal(fs.existsSync(second.socketPath), false, 'nothing half-started');
    await first.server.close(1000);
  });

  test('drain: in-flight requests finish, keep-alive is told to close, the deadline cuts stragglers', async () => {
    const { server, socketPath } = fixture({ tcp: null });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.app.get('/test/slow', async () => {
      await gate;
      return { done: true };
    });
    server.app.get('/test/stuck', () => new Promise(() => {}));
    await server.listen();
    const agent = new http.Agent({ keepAlive: true });
    const inflight = request({ socketPath }, 'GET', '/test/slow', agent);
    await new Promise((r) => setTimeout(r, 50));
    const closing = server.close(5000);
    await new Promise((r) => setTimeout(r, 50));
    release();
    const res = await inflight;
    assert.equal(res.status, 200);
    assert.equal(res.headers.connection, 'close');
    await closing;
    agent.destroy();

    const stuck = fixture({ tcp: null });
    stuck.server.app.get('/test/stuck', () => new Promise(() => {}));
    await stuck.server.listen();
    const hanging = request({ socketPath: stuck.socketPath }, 'GET', '/test/stuck').catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await stuck.server.close(150);
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 2000, `closed after ${took} ms`);
    assert.ok((await hanging) instanceof Error, 'the stuck request was cut');
  });
});
