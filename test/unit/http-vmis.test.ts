/** GET /v1/vmis and /v1/vmis/:namespace/:name via app.inject against a fake VmiReadModel. */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { ErrorCodes } from '../../src/errors';
import { Metrics } from '../../src/http/metrics';
import { HttpServer } from '../../src/http/server';
import { createLogger } from '../../src/log';
import { Readiness } from '../../src/util/readiness';
import { redactSecret } from '../../src/vmi/spec/redact';
import type { VmiReadModel, VmiView } from '../../src/vmi/spec/types';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-http-vmis-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function view(namespace: string, name: string, over: Partial<VmiView> = {}): VmiView {
  return {
    uid: `uid-${namespace}-${name}`,
    namespace,
    name,
    generation: 1,
    manifest: { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name, namespace }, spec: { domain: { cpu: { cores: 1 } } } },
    status: { phase: 'Running', reason: '', conditions: [], nodeName: 'node-a', launcherPid: 4242, interfaces: [], domainState: 'running/booted' },
    revision: 7,
    deleting: false,
    events: [{ time: '2026-01-01T00:00:00.000Z', type: 'Normal', reason: 'Started', message: 'domain started' }],
    domainXml: `<domain type="kvm"><name>${namespace}_${name}</name></domain>`,
    ...over,
  };
}

const VIEWS = [view('prod', 'web'), view('default', 'b'), view('default', 'a', { status: { ...view('x', 'y').status, phase: 'Pending', launcherPid: null } })];

/** A fake read model that also records what it was asked. */
function fakeModel(): VmiReadModel & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    list(namespace) {
      calls.push(`list ${namespace ?? '*'}`);
      return VIEWS.filter((v) => namespace === undefined || v.namespace === namespace);
    },
    get(namespace, name) {
      calls.push(`get ${namespace}/${name}`);
      return VIEWS.find((v) => v.namespace === namespace && v.name === name) ?? null;
    },
  };
}

/** A GET with the path sent byte for byte (no URL normalization on the way). */
function rawGet(socketPath: string, rawPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'GET', path: rawPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let seq = 0;
function server(vmis?: VmiReadModel): HttpServer & { socketPath: string } {
  const readiness = new Readiness({});
  const metrics = new Metrics({ version: '0', nodeName: 'node-a', ready: () => true, nodeInfo: () => null });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const socketPath = path.join(tmp, `v${seq++}.sock`);
  return Object.assign(new HttpServer({
    logger: createLogger({ level: 'silent', nodeName: 'node-a', destination: sink }),
    socketPath,
    tcp: null,
    readiness, metrics, nodeInfo: () => null,
    ...(vmis ? { vmis } : {}),
  }), { socketPath });
}

describe('GET /v1/vmis', () => {
  test('lists every VMI, sorted by namespace then name', async () => {
    const res = await server(fakeModel()).app.inject('/v1/vmis');
    assert.equal(res.statusCode, 200);
    const items = (res.json() as { items: VmiView[] }).items;
    assert.deepEqual(items.map((v) => `${v.namespace}/${v.name}`), ['default/a', 'default/b', 'prod/web']);
    assert.deepEqual(items[2], VIEWS[0]);
  });

  test('?namespace= filters', async () => {
    const model = fakeModel();
    const res = await server(model).app.inject('/v1/vmis?namespace=prod');
    assert.equal(res.statusCode, 200);
    assert.deepEqual((res.json() as { items: VmiView[] }).items.map((v) => v.name), ['web']);
    assert.deepEqual(model.calls, ['list prod']);
    const none = await server(model).app.inject('/v1/vmis?namespace=nothing-here');
    assert.deepEqual(none.json(), { items: [] });
  });

  test('bad query: 400 naming the parameter (hostile values, repeats, unknown keys)', async () => {
    const model = fakeModel();
    const app = server(model).app;
    for (const q of ['namespace=', 'namespace=..', 'namespace=%00', 'namespace=Prod', 'namespace=pr%C3%B6d', `namespace=${'a'.repeat(64)}`, 'namespace=a&namespace=b', 'namespace=-a', 'namespace=a.b']) {
      const res = await app.inject(`/v1/vmis?${q}`);
      assert.equal(res.statusCode, 400, q);
      assert.equal(res.json().code, ErrorCodes.INVALID_ARGUMENT, q);
      assert.match(res.json().message, /^namespace: /, q);
    }
    const unknown = await app.inject('/v1/vmis?ns=prod');
    assert.equal(unknown.statusCode, 400);
    assert.match(unknown.json().message, /unknown query parameter "ns"; expected namespace/);
    assert.deepEqual(model.calls, [], 'the model never sees a rejected request');
  });

  test('a 63-character label is fine, 64 is not', async () => {
    const app = server(fakeModel()).app;
    assert.equal((await app.inject(`/v1/vmis?namespace=${'a'.repeat(63)}`)).statusCode, 200);
    const res = await app.inject(`/v1/vmis?namespace=${'a'.repeat(64)}`);
    assert.equal(res.json().message, 'namespace: at most 63 characters, got 64');
  });
});

describe('GET /v1/vmis/:namespace/:name', () => {
  test('the VmiView: manifest, status, launcher pid, events, domain XML', async () => {
    const res = await server(fakeModel()).app.inject('/v1/vmis/prod/web');
    assert.equal(res.statusCode, 200);
    const body = res.json() as VmiView;
    assert.deepEqual(body, VIEWS[0]);
    assert.equal(body.status.launcherPid, 4242);
    assert.match(body.domainXml ?? '', /<name>prod_web<\/name>/);
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  test('cloud-init user and network data are redacted in the item, the list and the events answer', async () => {
    const userData = '#cloud-config\npassword: s3cret-pw\n';
    const secret = view('prod', 'ci', {
      manifest: { metadata: { name: 'ci', namespace: 'prod' }, spec: { domain: {}, volumes: [{ name: 'ci', cloudInitNoCloud: { userData, networkData: 'version: 2\n' } }] } },
    });
    const model: VmiReadModel = { list: () => [secret], get: () => secret };
    const app = server(model).app;
    for (const url of ['/v1/vmis', '/v1/vmis?namespace=prod', '/v1/vmis/prod/ci', '/v1/vmis/prod/ci/events']) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, 200, url);
      assert.ok(!res.body.includes('s3cret-pw'), `${url} shows no secret`);
    }
    const item = (await app.inject('/v1/vmis/prod/ci')).json() as VmiView;
    assert.deepEqual(item.manifest.spec.volumes?.[0]?.cloudInitNoCloud, { userData: redactSecret(userData), networkData: redactSecret('version: 2\n') });
    assert.deepEqual({ ...item, manifest: null }, { ...secret, manifest: null }, 'nothing else changes');
    assert.equal(secret.manifest.spec.volumes?.[0]?.cloudInitNoCloud?.userData, userData, "the read model's view is not modified");
  });

  test('unknown VMI: 404 NOT_FOUND naming it', async () => {
    const res = await server(fakeModel()).app.inject('/v1/vmis/prod/nope');
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { code: ErrorCodes.NOT_FOUND, message: 'vmi prod/nope not found' });
  });

  test('hostile path parameters: 400 naming the parameter, model untouched', async () => {
    const model = fakeModel();
    const app = server(model).app;
    const cases: Array<[string, 'namespace' | 'name']> = [
      ['/v1/vmis/prod/..x', 'name'],
      ['/v1/vmis/pr%00od/web', 'namespace'],
      ['/v1/vmis/prod/we%00b', 'name'],
      [`/v1/vmis/${'a'.repeat(64)}/web`, 'namespace'],
      [`/v1/vmis/prod/${'n'.repeat(300)}`, 'name'],
      [`/v1/vmis/prod/${'n'.repeat(5000)}`, 'name'],
      ['/v1/vmis/Prod/web', 'namespace'],
      ['/v1/vmis/prod/WEB', 'name'],
      ['/v1/vmis/pr%C3%B6d/web', 'namespace'],
      ['/v1/vmis/prod/%E2%80%AEweb', 'name'],
      ['/v1/vmis/prod/a%2Fb', 'name'],
      ['/v1/vmis/%20/web', 'namespace'],
      ['/v1/vmis/prod/web-', 'name'],
    ];
    for (const [url, param] of cases) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, 400, `${url.slice(0, 80)}: ${res.body.slice(0, 200)}`);
      const body = res.json() as { code: string; message: string };
      assert.equal(body.code, ErrorCodes.INVALID_ARGUMENT);
      assert.ok(body.message.startsWith(`${param}: `), `${url.slice(0, 80)}: ${body.message}`);
      assert.ok(body.message.length < 300, 'the rejected value is not echoed in full');
    }
    assert.deepEqual(model.calls, []);
  });

  test('wrong shapes: too few or too many segments are 404, unknown query keys 400', async () => {
    const app = server(fakeModel()).app;
    for (const url of ['/v1/vmis/prod', '/v1/vmis/prod/web/extra', '/v1/vmis/']) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, 404, url);
      assert.equal(res.json().code, ErrorCodes.NOT_FOUND, url);
    }
    const res = await app.inject('/v1/vmis/prod/web?verbose=1');
    assert.equal(res.statusCode, 400);
    assert.match(res.json().message, /unknown query parameter "verbose"/);
  });

  test('dot segments over a real socket (inject would normalize them away): 400', async () => {
    const model = fakeModel();
    const srv = server(model);
    await srv.listen();
    try {
      for (const [raw, param] of [['/v1/vmis/../web', 'namespace'], ['/v1/vmis/%2E%2E/web', 'namespace'], ['/v1/vmis/prod/..', 'name'], ['/v1/vmis/prod/%2e%2e', 'name']] as const) {
        const res = await rawGet(srv.socketPath, raw);
        assert.equal(res.status, 400, `${raw}: ${res.body}`);
        assert.ok((JSON.parse(res.body) as { message: string }).message.startsWith(`${param}: `), res.body);
      }
      assert.deepEqual(model.calls, []);
    } finally {
      await srv.close(0);
    }
  });
});

describe('VMI support off (no read model)', () => {
  test('both routes answer 503 NOT_READY', async () => {
    const app = server().app;
    for (const url of ['/v1/vmis', '/v1/vmis?namespace=prod', '/v1/vmis/prod/web']) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, 503, url);
      assert.deepEqual(res.json(), { code: ErrorCodes.NOT_READY, message: 'VMI support is not enabled on this virt-handler' });
    }
  });

  test('bad parameters are still 400 first', async () => {
    const res = await server().app.inject('/v1/vmis/Prod/web');
    assert.equal(res.statusCode, 400);
  });
});
