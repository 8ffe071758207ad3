/** GrpcServer on a real unix socket: Node + Health services, malformed traffic, lifecycle. */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { ErrorCodes, VhError, isVhError } from '../../src/errors';
import { ERROR_CODE_TRAILER, grpcStatusFor, toGrpcStatus } from '../../src/grpc/errors';
import { nodeInfoFromWire } from '../../src/grpc/node-service';
import { HEALTH_SERVICE, NODE_SERVICE, findProtoDir, loadProtos } from '../../src/grpc/proto';
import { GrpcServer, MAX_RECEIVE_BYTES } from '../../src/grpc/server';
import { TestServer, sampleNodeInfo, startTestServer } from './grpc-fixture';

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

function call(client: grpc.Client, method: string, req: unknown): Promise<unknown> {
  const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
  return new Promise((resolve, reject) => {
    fn(req, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    assert.equal(err.code, code, `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    return err;
  }
  assert.fail(`expected ${grpc.status[code]}, call succeeded`);
}

/** A client that sends raw bytes to any path: the way a buggy or hostile peer would. */
function rawClient(socketPath: string, methodPath: string): grpc.Client {
  const identity = (b: Buffer): Buffer => b;
  const Ctor = grpc.makeGenericClientConstructor(
    { Raw: { path: methodPath, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    'Raw',
  );
  return new Ctor(`unix:${socketPath}`, grpc.credentials.createInsecure());
}

describe('grpc errors mapping', () => {
  it('maps the registry to the five transport statuses', () => {
    assert.equal(grpcStatusFor(ErrorCodes.INVALID_ARGUMENT), grpc.status.INVALID_ARGUMENT);
    assert.equal(grpcStatusFor(ErrorCodes.NOT_FOUND), grpc.status.NOT_FOUND);
    assert.equal(grpcStatusFor(ErrorCodes.KVM_MISSING), grpc.status.FAILED_PRECONDITION);
    assert.equal(grpcStatusFor(ErrorCodes.NOT_READY), grpc.status.UNAVAILABLE);
    assert.equal(grpcStatusFor(ErrorCodes.INTERNAL), grpc.status.INTERNAL);
  });

  it('hides the text of non-VhError failures and tags every status with its registry code', () => {
    const s = toGrpcStatus(new Error('secret /internal/path'));
    assert.equal(s.code, grpc.status.INTERNAL);
    assert.doesNotMatch(String(s.details), /secret/);
    assert.deepEqual(s.metadata?.get(ERROR_CODE_TRAILER), [ErrorCodes.INTERNAL]);
    const v = toGrpcStatus(new VhError(ErrorCodes.NOT_FOUND, 'no such vmi'));
    assert.equal(v.details, 'no such vmi');
  });

  it('names every path tried when proto/ cannot be found', () => {
    assert.throws(() => findProtoDir(['/nonexistent/a', '/nonexistent/b']), (e) => isVhError(e, ErrorCodes.INTERNAL) && /\/nonexistent\/a, \/nonexistent\/b/.test(e.message));
  });
});

describe('GrpcServer', () => {
  let ts: TestServer;
  let node: grpc.Client;
  let health: grpc.Client;

  before(async () => {
    ts = await startTestServer();
    const p = loadProtos();
    node = new p.NodeClient(`unix:${ts.socketPath}`, grpc.credentials.createInsecure());
    health = new p.HealthClient(`unix:${ts.socketPath}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    node.close();
    health.close();
    await ts.close();
  });

  it('creates the socket with mode 0660', () => {
    const st = fs.statSync(ts.socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
  });

  it('answers UNAVAILABLE with a reason and the NOT_READY code while the probe runs', async () => {
    const err = await rejectsWith(call(node, 'GetNodeInfo', {}), grpc.status.UNAVAILABLE);
    assert.match(err.details, /probe is still running/);
    assert.deepEqual(err.metadata.get(ERROR_CODE_TRAILER), [ErrorCodes.NOT_READY]);
  });

  it('returns the probed NodeInfo, nulls and maps intact', async () => {
    const info = sampleNodeInfo();
    ts.setInfo(info);
    const res = (await call(node, 'GetNodeInfo', {})) as { node: unknown };
    assert.deepEqual(nodeInfoFromWire(res.node), info);
    const wire = res.node as { kvm: { capabilities: Record<string, unknown> } };
    assert.equal(typeof wire.kvm.capabilities.NR_VCPUS, 'number', 'longs decode as numbers');
  });

  it('Check reports NOT_SERVING, then SERVING, per service; unknown service is NOT_FOUND', async () => {
    for (const service of ['', NODE_SERVICE]) {
      assert.deepEqual(await call(health, 'Check', { service }), { status: 'NOT_SERVING' });
    }
    ts.server.setServing(true);
    for (const service of ['', NODE_SERVICE]) {
      assert.deepEqual(await call(health, 'Check', { service }), { status: 'SERVING' });
    }
    await rejectsWith(call(health, 'Check', { service: 'nope.v1.Nope' }), grpc.status.NOT_FOUND);
    ts.server.setServing(false);
  });

  it('Watch streams the current status, then each change; unknown service is SERVICE_UNKNOWN', async () => {
    const stream = (health as unknown as { Watch(r: unknown): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: NODE_SERVICE });
    const seen: string[] = [];
    const want = ['NOT_SERVING', 'SERVING', 'NOT_SERVING'];
    await new Promise<void>((resolve, reject) => {
      stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
      stream.on('data', (m: { status: string }) => {
        seen.push(m.status);
        if (seen.length === 1) ts.server.setServing(true);
        if (seen.length === 2) {
          ts.server.setServing(true); // no change: must not produce a message
          ts.server.setServing(false);
        }
        if (seen.length === want.length) resolve();
      });
    });
    stream.cancel();
    assert.deepEqual(seen, want);

    const unknown = (health as unknown as { Watch(r: unknown): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: 'nope.v1.Nope' });
    const first = await new Promise<string>((resolve) => unknown.once('data', (m: { status: string }) => resolve(m.status)));
    unknown.on('error', () => undefined);
    unknown.cancel();
    assert.equal(first, 'SERVICE_UNKNOWN');
  });

  it('answers UNIMPLEMENTED for an unknown method or service', async () => {
    for (const p of [`/${NODE_SERVICE}/Nope`, '/nope.v1.Nope/GetNodeInfo']) {
      const c = rawClient(ts.socketPath, p);
      await rejectsWith(call(c, 'Raw', Buffer.alloc(0)), grpc.status.UNIMPLEMENTED);
      c.close();
    }
  });

  it('answers INVALID_ARGUMENT to garbage bytes and keeps serving', async () => {
    // A truncated varint tag, and field 2 with the invalid wire type 7.
    const garbage = [Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x17, 0x00])];
    for (const p of [`/${NODE_SERVICE}/GetNodeInfo`, `/${HEALTH_SERVICE}/Check`, `/${HEALTH_SERVICE}/Watch`]) {
      for (const bytes of garbage) {
        const c = rawClient(ts.socketPath, p);
        const err = await rejectsWith(call(c, 'Raw', bytes), grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /malformed/);
        c.close();
      }
    }
    ts.setInfo(sampleNodeInfo());
    assert.ok(await call(node, 'GetNodeInfo', {}));
  });

  it('answers RESOURCE_EXHAUSTED to an oversized message and keeps serving', async () => {
    const c = rawClient(ts.socketPath, `/${NODE_SERVICE}/GetNodeInfo`);
    await rejectsWith(call(c, 'Raw', Buffer.alloc(MAX_RECEIVE_BYTES + 1024)), grpc.status.RESOURCE_EXHAUSTED);
    c.close();
    assert.ok(await call(node, 'GetNodeInfo', {}));
  });

  it('refuses a second server on the same live socket with SOCKET_IN_USE', async () => {
    const second = new GrpcServer({ socketPath: ts.socketPath, logger: pino({ level: 'silent' }), nodeInfo: () => null });
    await assert.rejects(second.start(), (e) => isVhError(e, ErrorCodes.SOCKET_IN_USE));
    await second.shutdown(100); // what app.ts does after a failed start
    assert.ok(fs.existsSync(ts.socketPath), 'the live socket is left alone');
    assert.ok(await call(node, 'GetNodeInfo', {}));
  });
});

describe('GrpcServer shutdown', () => {
  it('ends Watch streams with NOT_SERVING, finishes well before the deadline, removes the socket', async () => {
    const ts = await startTestServer();
    ts.server.setServing(true);
    const health = new (loadProtos().HealthClient)(`unix:${ts.socketPath}`, grpc.credentials.createInsecure());
    const stream = (health as unknown as { Watch(r: unknown): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: '' });
    const seen: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: { status: string }) => seen.push(m.status));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    const t0 = Date.now();
    await ts.server.shutdown(10_000);
    assert.ok(Date.now() - t0 < 5_000, 'an open Watch must not hold shutdown until the deadline');
    await ended;
    assert.deepEqual(seen, ['SERVING', 'NOT_SERVING']);
    assert.equal(fs.existsSync(ts.socketPath), false);
    await ts.server.shutdown(1000); // idempotent
    health.close();
    fs.rmSync(ts.dir, { recursive: true, force: true });
  });

  it('a failed start reports LISTEN_FAILED, and shutdown after it is safe', async () => {
    const tooLong = path.join(os.tmpdir(), 'x'.repeat(120), 'grpc.sock');
    const s = new GrpcServer({ socketPath: tooLong, logger: pino({ level: 'silent' }), nodeInfo: () => null });
    await assert.rejects(s.start(), (e) => isVhError(e, ErrorCodes.LISTEN_FAILED));
    await s.shutdown(100);
  });
});
