/**
 * VmiService and Launcher contracts (proto/virthandler/v1/vmi.proto, launcher.proto) against a real
 * GrpcServer and a real VmiController wired as app.ts wires them. libvirt is off, so VMIs stay
 * Pending and no launcher is ever spawned. Every refused request must change nothing: the
 * ListVMIs revision and count, and the record files on disk.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { VIOLATIONS_TRAILER } from '../../src/grpc/errors';
import { loadProtos } from '../../src/grpc/proto';
import { GrpcServer } from '../../src/grpc/server';
import { vmiServiceImplementation } from '../../src/grpc/vmi-service';
import { launcherServiceImplementation } from '../../src/grpc/launcher-service';
import { VmiController } from '../../src/vmi/control/controller';

const TMP = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vh-vmic-')));
const IMAGES = path.join(TMP, 'images');
const STATE = path.join(TMP, 'state');
const SOCK = path.join(TMP, 'g.sock');
fs.mkdirSync(IMAGES, { recursive: true });
fs.writeFileSync(path.join(IMAGES, 'vmlinuz'), 'kernel');
const log = pino({ level: 'silent' });
const protos = loadProtos();

function newManager(): VmiController {
  return new VmiController({
    stateDir: STATE, nodeName: 'node-a', handlerSocket: SOCK, logger: log, logLevel: 'warn',
    validation: { imageRoot: IMAGES, hostPathRoots: [] }, allowTcg: false, maxVmis: 3, bridge: null, workers: 2,
    libvirtUri: null,
    embedFallback: false, libvirt: () => null, capabilities: () => null, nodeInfo: () => null,
  });
}

async function startServer(m: VmiController): Promise<GrpcServer> {
  const s = new GrpcServer({
    socketPath: SOCK, logger: log, nodeInfo: () => null,
    services: () => [
      { definition: protos.vmiService, implementation: vmiServiceImplementation(m, log) },
      { definition: protos.launcherService, implementation: launcherServiceImplementation(m, log) },
    ],
  });
  await s.start();
  return s;
}

interface WireVmi { uid: string; namespace: string; name: string; generation: number; specJson: string; revision: number; deleting: boolean; status: { phase: string; reason: string } }
type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

function call<T = unknown>(client: grpc.Client, method: string, req: unknown): Promise<T> {
  const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
  return new Promise((resolve, reject) => fn(req, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res as T))));
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status, details?: RegExp): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    assert.equal(err.code, code, `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    if (details) assert.match(err.details, details);
    return err;
  }
  assert.fail(`expected ${grpc.status[code]}, the call succeeded`);
}

function manifest(name: string, over: { uid?: string; generation?: number; memory?: string; runStrategy?: string; labels?: Record<string, string>; namespace?: string } = {}): string {
  return JSON.stringify({
    apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance',
    metadata: { name, namespace: over.namespace ?? 'default', ...(over.uid ? { uid: over.uid } : {}), ...(over.generation ? { generation: over.generation } : {}), ...(over.labels ? { labels: over.labels } : {}) },
    spec: { domain: { memory: { guest: over.memory ?? '64Mi' }, firmware: { kernelBoot: { kernel: 'vmlinuz' } } }, runStrategy: over.runStrategy ?? 'Always' },
  });
}

/** Everything a refused request must leave alone. */
interface Snap { revision: number; count: number; files: Record<string, string> }

function readTree(dir: string, out: Record<string, string> = {}, rel = ''): Record<string, string> {
  if (!fs.existsSync(dir)) return out;
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    const r = rel ? `${rel}/${name}` : name;
    if (fs.statSync(p).isDirectory()) {
      out[`${r}/`] = '';
      readTree(p, out, r);
    } else out[r] = fs.readFileSync(p, 'utf8');
  }
  return out;
}

describe('VmiService + Launcher contracts (libvirt off)', () => {
  let m: VmiController;
  let server: GrpcServer;
  let vmi: grpc.Client;
  let launcher: grpc.Client;
  const uids: Record<string, string> = {};

  const snap = async (): Promise<Snap> => {
    await m.idle();
    const res = await call<{ vmis: WireVmi[]; revision: number }>(vmi, 'ListVMIs', {});
    return { revision: res.revision, count: res.vmis.length, files: readTree(path.join(STATE, 'vmis')) };
  };
  const unchanged = async (before: Snap, what: string): Promise<void> => {
    const now = await snap();
    assert.equal(now.revision, before.revision, `${what}: revision changed`);
    assert.equal(now.count, before.count, `${what}: VMI count changed`);
    assert.deepEqual(Object.keys(now.files), Object.keys(before.files), `${what}: files under stateDir/vmis changed`);
    for (const [f, c] of Object.entries(before.files)) {
      // updatedAt is rewritten on every write; any write at all is a change.
      assert.equal(now.files[f], c, `${what}: ${f} was rewritten`);
    }
  };

  /** A manager on STATE, its gRPC server, and clients for both services. */
  const startAll = async (): Promise<void> => {
    m = newManager();
    m.start();
    server = await startServer(m);
    vmi = new protos.VmiClient(`unix:${SOCK}`, grpc.credentials.createInsecure());
    launcher = new protos.LauncherClient(`unix:${SOCK}`, grpc.credentials.createInsecure());
  };
  /** The daemon restarting: everything stopped, then started again on the same stateDir. */
  const restartAll = async (): Promise<void> => {
    vmi.close();
    launcher.close();
    await server.shutdown(1000);
    await m.stop();
    await startAll();
  };

  before(startAll);
  after(async () => {
    vmi?.close();
    launcher?.close();
    await server?.shutdown(1000);
    await m?.stop();
    fs.rmSync(TMP, { recursive: true, force: true });
  });

  it('accepts a VMI; it stays Pending with a reason that says libvirt is off', async () => {
    const r = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 2 }) });
    assert.equal(r.changed, true);
    assert.match(r.vmi.uid, /^[0-9a-f-]{36}$/);
    assert.equal(r.vmi.generation, 2);
    uids['vm-a'] = r.vmi.uid;
    await m.idle();
    const got = await call<WireVmi>(vmi, 'GetVMI', { name: 'vm-a' });
    assert.equal(got.status.phase, 'Pending');
    assert.match(got.status.reason, /libvirt/i);
    assert.match(got.status.reason, /off/);
    assert.ok(fs.existsSync(path.join(STATE, 'vmis', got.uid, 'record.json')));
    const byUid = await call<WireVmi>(vmi, 'GetVMI', { uid: got.uid });
    assert.equal(byUid.name, 'vm-a');
  });

  it('SyncVMI: empty, garbage and non-VMI manifests are INVALID_ARGUMENT and change nothing', async () => {
    const before = await snap();
    for (const text of ['', '   \n', '42', '[1,2]', 'null', '\u0000\u0001\u0002garbage', '{"metadata": ', 'a: b\n---\nc: d\n', 'kind: [unclosed', '\uFFFD\uFFFD']) {
      await rejectsWith(call(vmi, 'SyncVMI', { manifest: text }), grpc.status.INVALID_ARGUMENT);
    }
    await rejectsWith(call(vmi, 'SyncVMI', {}), grpc.status.INVALID_ARGUMENT, /manifest/);
    await unchanged(before, 'garbage manifests');
  });

  it('SyncVMI: non-string / undecodable request bytes are INVALID_ARGUMENT (not INTERNAL)', async () => {
    const before = await snap();
    const identity = (b: Buffer): Buffer => b;
    const Ctor = grpc.makeGenericClientConstructor({ Raw: { path: '/virthandler.v1.VmiService/SyncVMI', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } }, 'Raw');
    const raw = new Ctor(`unix:${SOCK}`, grpc.credentials.createInsecure());
    // field 1 as a varint; a truncated varint; wire type 7; a length prefix past the end; invalid UTF-8 as the string.
    for (const bytes of [Buffer.from([0x08, 0x05]), Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x0f, 0x00]), Buffer.from([0x0a, 0x7f, 0x61]), Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0xfd])]) {
      await rejectsWith(call(raw, 'Raw', bytes), grpc.status.INVALID_ARGUMENT);
    }
    raw.close();
    await unchanged(before, 'undecodable SyncVMI');
  });

  it('SyncVMI: a YAML alias bomb is refused (INVALID_ARGUMENT naming aliases), nothing changes', async () => {
    const before = await snap();
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 12; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    const t0 = Date.now();
    const err = await rejectsWith(call(vmi, 'SyncVMI', { manifest: lines.join('\n') }), grpc.status.INVALID_ARGUMENT, /alias/i);
    assert.ok(Date.now() - t0 < 2000, 'the bomb was not expanded');
    assert.ok(err.metadata.get(VIOLATIONS_TRAILER).length === 1);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: 'metadata: !!binary aGVsbG8=\n' }), grpc.status.INVALID_ARGUMENT, /tag/);
    await unchanged(before, 'YAML bomb');
  });

  it('SyncVMI: three violations come back in the message and in vh-field-violations-bin', async () => {
    const before = await snap();
    const bad = JSON.stringify({
      apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance',
      metadata: { name: 'Bad_Name', namespace: 'default' },
      spec: { domain: { memory: { guest: 'lots' }, firmware: { kernelBoot: { kernel: 'vmlinuz' } } }, runStrategy: 'Sometimes' },
    });
    const err = await rejectsWith(call(vmi, 'SyncVMI', { manifest: bad }), grpc.status.INVALID_ARGUMENT, /3 problems/);
    const bins = err.metadata.get(VIOLATIONS_TRAILER);
    assert.equal(bins.length, 1);
    const type = protos.messageType('virthandler.v1.FieldViolations');
    const decoded = type.toObject(type.decode(bins[0] as Buffer)) as { violations: Array<{ field: string; message: string }> };
    assert.deepEqual(decoded.violations.map((v) => v.field).sort(), ['metadata.name', 'spec.domain.memory.guest', 'spec.runStrategy']);
    for (const v of decoded.violations) {
      assert.ok(v.message.length > 0);
      assert.ok(err.details.includes(`${v.field}: ${v.message}`), `message lists ${v.field}`);
    }
    assert.deepEqual(err.metadata.get('vh-error-code'), ['VH_ERR_VMI_INVALID']);
    await unchanged(before, '3 violations');
  });

  it('SyncVMI: 2 MiB manifest is INVALID_ARGUMENT (under grpc\'s 4 MiB limit); 5 MiB is RESOURCE_EXHAUSTED; the server keeps serving', async () => {
    const before = await snap();
    const big = `# ${'x'.repeat(2 * 1024 * 1024)}\n${manifest('vm-big')}`;
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: big }), grpc.status.INVALID_ARGUMENT, /larger than 1048576 bytes/);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: 'x'.repeat(5 * 1024 * 1024) }), grpc.status.RESOURCE_EXHAUSTED);
    await unchanged(before, 'oversized manifests');
    assert.equal((await call<WireVmi>(vmi, 'GetVMI', { name: 'vm-a' })).name, 'vm-a');
  });

  it('SyncVMI: same namespace/name with another uid is ALREADY_EXISTS', async () => {
    const before = await snap();
    const other = '0f0f0f0f-1111-4222-8333-444444444444';
    assert.notEqual(other, uids['vm-a']);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-a', { uid: other, generation: 2 }) }), grpc.status.ALREADY_EXISTS, /exists with uid/);
    await unchanged(before, 'ALREADY_EXISTS');
  });

  it('SyncVMI: lower generation and a changed spec.domain are FAILED_PRECONDITION', async () => {
    const before = await snap();
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 1 }) }), grpc.status.FAILED_PRECONDITION, /generation 1 is older than the stored 2/);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 3, memory: '128Mi' }) }), grpc.status.FAILED_PRECONDITION, /only runStrategy/);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-a', { uid: uids['vm-a'], generation: 3, memory: '128Mi' }) }), grpc.status.FAILED_PRECONDITION);
    await unchanged(before, 'refused updates');
  });

  it('SyncVMI: same manifest again is changed=false with the revision unchanged', async () => {
    const before = await snap();
    const r = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 2 }) });
    assert.equal(r.changed, false);
    // With the uid spelled out it is the same desired state too.
    const r2 = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 2, uid: uids['vm-a'] }) });
    assert.equal(r2.changed, false);
    await unchanged(before, 'idempotent sync');
  });

  it('SyncVMI: runStrategy and labels may change (changed=true, revision +1, durable)', async () => {
    const before = await snap();
    const r = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 3, labels: { app: 'web' } }) });
    assert.equal(r.changed, true);
    assert.equal(r.vmi.revision, before.revision + 1);
    assert.equal(r.vmi.generation, 3);
    assert.deepEqual((JSON.parse(r.vmi.specJson) as { metadata: { labels: unknown } }).metadata.labels, { app: 'web' });
    const after1 = await snap();
    assert.equal(after1.revision, before.revision + 1);
    const rec = JSON.parse(fs.readFileSync(path.join(STATE, 'vmis', uids['vm-a']!, 'record.json'), 'utf8')) as { generation: number; revision: number };
    assert.equal(rec.generation, 3);
    assert.equal(rec.revision, before.revision + 1);

    const r2 = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-a', { generation: 4, labels: { app: 'web' }, runStrategy: 'Manual' }) });
    assert.equal(r2.changed, true);
    assert.equal(r2.vmi.revision, before.revision + 2);
    const after2 = await snap();
    assert.equal(after2.revision, before.revision + 2);
    assert.equal(after2.count, before.count);
  });

  it('SyncVMI: one more VMI than maxVmis is RESOURCE_EXHAUSTED', async () => {
    for (const n of ['vm-b', 'vm-c']) {
      const r = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest(n) });
      uids[n] = r.vmi.uid;
    }
    const before = await snap();
    assert.equal(before.count, 3);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-d') }), grpc.status.RESOURCE_EXHAUSTED, /at most 3/);
    await rejectsWith(call(vmi, 'SyncVMI', { manifest: manifest('vm-a', { namespace: 'other' }) }), grpc.status.RESOURCE_EXHAUSTED);
    await unchanged(before, 'maxVmis');
  });

  it('GetVMI / DeleteVMI / Pause / Unpause / SoftReboot / Shutdown of an unknown VMI are NOT_FOUND', async () => {
    const before = await snap();
    for (const method of ['GetVMI', 'DeleteVMI', 'Pause', 'Unpause', 'SoftReboot', 'Shutdown']) {
      await rejectsWith(call(vmi, method, { name: 'nope' }), grpc.status.NOT_FOUND, /not found/);
      await rejectsWith(call(vmi, method, { namespace: 'other', name: 'vm-a' }), grpc.status.NOT_FOUND);
      await rejectsWith(call(vmi, method, { uid: '01234567-89ab-4cde-8f01-23456789abcd' }), grpc.status.NOT_FOUND);
    }
    await unchanged(before, 'NOT_FOUND');
  });

  it('bad refs (.., uppercase, 64 chars, bad uid, empty) are INVALID_ARGUMENT', async () => {
    const before = await snap();
    const bad = [
      {}, { name: '' }, { name: '..' }, { name: '../vm-a' }, { name: 'VM-A' }, { name: 'a'.repeat(64) }, { name: '-a' }, { name: 'a_b' },
      { namespace: 'BAD', name: 'vm-a' }, { namespace: '..', name: 'vm-a' },
      { uid: 'not-a-uuid' }, { uid: uids['vm-a']!.toUpperCase() }, { uid: `${uids['vm-a']}/..` }, { uid: '../../etc' },
    ];
    for (const method of ['GetVMI', 'DeleteVMI', 'Pause', 'Unpause', 'SoftReboot', 'Shutdown']) {
      for (const ref of bad) await rejectsWith(call(vmi, method, ref), grpc.status.INVALID_ARGUMENT);
    }
    await rejectsWith(call(vmi, 'ListVMIs', { namespace: 'Bad' }), grpc.status.INVALID_ARGUMENT);
    assert.equal((await call<WireVmi>(vmi, 'GetVMI', { name: 'a'.repeat(63) }).catch((e: grpc.ServiceError) => ({ name: String(e.code) }))).name, String(grpc.status.NOT_FOUND), '63 chars is a valid label');
    await unchanged(before, 'bad refs');
  });

  it('Pause / Unpause / SoftReboot / Shutdown of a Pending VMI are FAILED_PRECONDITION naming the phase', async () => {
    const before = await snap();
    for (const method of ['Pause', 'Unpause', 'SoftReboot', 'Shutdown']) {
      await rejectsWith(call(vmi, method, { name: 'vm-a' }), grpc.status.FAILED_PRECONDITION, /Pending/);
    }
    await unchanged(before, 'guest commands on Pending');
  });

  it('WatchVMIs from a future revision is OUT_OF_RANGE; a negative one is INVALID_ARGUMENT', async () => {
    const before = await snap();
    for (const [since, code] of [[before.revision + 1, grpc.status.OUT_OF_RANGE], [before.revision + 1000, grpc.status.OUT_OF_RANGE], [-1, grpc.status.INVALID_ARGUMENT]] as const) {
      const stream = (vmi as unknown as { WatchVMIs(r: unknown): grpc.ClientReadableStream<unknown> }).WatchVMIs({ sinceRevision: since });
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        stream.on('data', () => reject(new Error('unexpected event')));
        stream.on('error', resolve);
      });
      assert.equal(err.code, code, `since ${since}: ${err.details}`);
    }
    await unchanged(before, 'bad watches');
  });

  it('Console on a Pending VMI is FAILED_PRECONDITION; without a ref INVALID_ARGUMENT; unknown NOT_FOUND', async () => {
    const before = await snap();
    for (const [first, code, re] of [
      [{ ref: { name: 'vm-a' } }, grpc.status.FAILED_PRECONDITION, /Pending/],
      [{ data: Buffer.from('hello') }, grpc.status.INVALID_ARGUMENT, /ref/],
      [{ ref: { name: 'nope' } }, grpc.status.NOT_FOUND, /not found/],
      [{ ref: { name: '..' } }, grpc.status.INVALID_ARGUMENT, /name/],
    ] as const) {
      const stream = (vmi as unknown as { Console(): grpc.ClientDuplexStream<unknown, unknown> }).Console();
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        stream.on('data', () => reject(new Error('unexpected console data')));
        stream.on('error', resolve);
        stream.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? reject(new Error('console ended OK')) : undefined));
        stream.write(first);
      });
      assert.equal(err.code, code, `${JSON.stringify(first)}: ${err.details}`);
      assert.match(err.details, re);
    }
    await unchanged(before, 'console refusals');
  });

  describe('Launcher.Connect refusals', () => {
    const connect = (): grpc.ClientDuplexStream<unknown, unknown> => (launcher as unknown as { Connect(): grpc.ClientDuplexStream<unknown, unknown> }).Connect();
    const ends = (stream: grpc.ClientDuplexStream<unknown, unknown>): Promise<grpc.ServiceError> =>
      new Promise((resolve, reject) => {
        stream.on('data', (d: unknown) => reject(new Error(`unexpected handler message ${JSON.stringify(d)}`)));
        stream.on('error', resolve);
        stream.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? reject(new Error('stream ended OK')) : undefined));
      });

    const cases: Array<[string, unknown, grpc.status, RegExp]> = [
      ['a heartbeat first', { heartbeat: { seq: 1 } }, grpc.status.INVALID_ARGUMENT, /first message must be register/],
      ['a status first', { status: { state: 'running' } }, grpc.status.INVALID_ARGUMENT, /register/],
      ['an empty message first', {}, grpc.status.INVALID_ARGUMENT, /register/],
      ['an unknown uid', { register: { vmiUid: '01234567-89ab-4cde-8f01-23456789abcd', token: 't'.repeat(43), pid: 4242 } }, grpc.status.UNAUTHENTICATED, /no launcher expected/],
      ['a malformed uid', { register: { vmiUid: 'NOT-A-UID', token: 'x', pid: 4242 } }, grpc.status.INVALID_ARGUMENT, /vmi_uid/],
      ['no token', { register: { vmiUid: '01234567-89ab-4cde-8f01-23456789abcd', token: '', pid: 4242 } }, grpc.status.UNAUTHENTICATED, /token/],
      ['an oversized token', { register: { vmiUid: '01234567-89ab-4cde-8f01-23456789abcd', token: 'x'.repeat(300), pid: 4242 } }, grpc.status.UNAUTHENTICATED, /token/],
      ['pid 0', { register: { vmiUid: '01234567-89ab-4cde-8f01-23456789abcd', token: 'abc', pid: 0 } }, grpc.status.INVALID_ARGUMENT, /pid/],
    ];
    for (const [what, first, code, re] of cases) {
      it(`${what} ends the stream ${grpc.status[code]} and changes nothing`, async () => {
        const before = await snap();
        const s = connect();
        const done = ends(s);
        s.write(first);
        const err = await done;
        assert.equal(err.code, code, err.details);
        assert.match(err.details, re);
        await unchanged(before, what);
      });
    }

    it('a known VMI uid with a bad token is UNAUTHENTICATED (no launcher was spawned)', async () => {
      const before = await snap();
      const s = connect();
      const done = ends(s);
      s.write({ register: { vmiUid: uids['vm-a'], token: 'guess', pid: process.pid } });
      const err = await done;
      assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.details);
      await unchanged(before, 'bad token');
    });

    it('undecodable bytes on the stream end it INVALID_ARGUMENT; the daemon keeps serving', async () => {
      const before = await snap();
      const identity = (b: Buffer): Buffer => b;
      const Ctor = grpc.makeGenericClientConstructor({ Raw: { path: '/virthandler.v1.Launcher/Connect', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } }, 'Raw');
      for (const garbage of [Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x0f, 0x00]), Buffer.from([0x0a, 0x7f, 0x01])]) {
        const raw = new Ctor(`unix:${SOCK}`, grpc.credentials.createInsecure());
        const s = (raw as unknown as { Raw(): grpc.ClientDuplexStream<Buffer, Buffer> }).Raw();
        const done = ends(s as unknown as grpc.ClientDuplexStream<unknown, unknown>);
        s.write(garbage);
        const err = await done;
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${garbage.toString('hex')}: ${err.details}`);
        // protobufjs does not check wire types of known fields: 0x0f 0x00 (field 1, wire type 7) decodes
        // as an empty Register and is refused by the register checks instead of as malformed.
        assert.match(err.details, /malformed|register/, garbage.toString('hex'));
        raw.close();
      }
      await unchanged(before, 'garbage on Connect');
      assert.equal((await call<WireVmi>(vmi, 'GetVMI', { name: 'vm-a' })).name, 'vm-a');
    });

    it('no Register within 5 s ends the stream INVALID_ARGUMENT', async () => {
      const before = await snap();
      const t0 = Date.now();
      const s = connect();
      const err = await ends(s);
      const took = Date.now() - t0;
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /no Register within 5000 ms/);
      assert.ok(took >= 4900 && took < 8000, `took ${took} ms`);
      await unchanged(before, 'register timeout');
    });
  });

  it('restart without a preceding delete: revision, generation, phase/reason all come back', async () => {
    await m.idle();
    const before = await call<{ vmis: WireVmi[]; revision: number }>(vmi, 'ListVMIs', {});
    await restartAll();
    const afterList = await call<{ vmis: WireVmi[]; revision: number }>(vmi, 'ListVMIs', {});
    assert.equal(afterList.revision, before.revision);
    assert.deepEqual(afterList.vmis.map((v) => [v.uid, v.generation, v.status.phase, v.status.reason, v.revision]), before.vmis.map((v) => [v.uid, v.generation, v.status.phase, v.status.reason, v.revision]));
    await m.idle();
    assert.equal((await call<{ revision: number }>(vmi, 'ListVMIs', {})).revision, before.revision, 're-adoption of an unchanged Pending VMI publishes nothing');
  });

  it('WatchVMIs from 0: ADDED for each VMI, then MODIFIED on change, then DELETED; the directory goes', async () => {
    const stream = (vmi as unknown as { WatchVMIs(r: unknown): grpc.ClientReadableStream<{ type: string; vmi: WireVmi; revision: number }> }).WatchVMIs({ sinceRevision: 0 });
    const events: Array<{ type: string; name: string; revision: number; deleting: boolean }> = [];
    stream.on('data', (ev: { type: string; vmi: WireVmi; revision: number }) => events.push({ type: ev.type, name: ev.vmi.name, revision: ev.revision, deleting: ev.vmi.deleting }));
    stream.on('error', () => undefined);
    await waitFor(() => events.length >= 3);
    assert.deepEqual(events.slice(0, 3).map((e) => `${e.type} ${e.name}`), ['ADDED vm-a', 'ADDED vm-b', 'ADDED vm-c']);
    const r = await call<{ vmi: WireVmi; changed: boolean }>(vmi, 'SyncVMI', { manifest: manifest('vm-b', { labels: { x: 'y' } }) });
    assert.equal(r.changed, true);
    await waitFor(() => events.some((e) => e.type === 'MODIFIED' && e.name === 'vm-b'));
    const dir = path.join(STATE, 'vmis', uids['vm-c']!);
    assert.ok(fs.existsSync(dir));
    const del = await call<{ vmi: WireVmi }>(vmi, 'DeleteVMI', { name: 'vm-c' });
    assert.equal(del.vmi.deleting, true);
    await waitFor(() => events.some((e) => e.type === 'DELETED' && e.name === 'vm-c'), 5000);
    assert.equal(fs.existsSync(dir), false, 'the VMI directory is removed');
    await rejectsWith(call(vmi, 'GetVMI', { name: 'vm-c' }), grpc.status.NOT_FOUND);
    const cEvents = events.filter((e) => e.name === 'vm-c');
    assert.ok(cEvents.some((e) => e.type === 'MODIFIED' && e.deleting), 'a MODIFIED with deleting=true precedes DELETED');
    const revs = events.slice(3).map((e) => e.revision);
    assert.deepEqual(revs, [...revs].sort((a, b) => a - b), 'revisions increase');
    // Deleting again after it is gone: NOT_FOUND.
    await rejectsWith(call(vmi, 'DeleteVMI', { name: 'vm-c' }), grpc.status.NOT_FOUND);
    stream.cancel();
    // A watch from the last seen revision replays nothing old.
    const last = events[events.length - 1]!.revision;
    const list = await call<{ revision: number }>(vmi, 'ListVMIs', {});
    assert.equal(list.revision, last);
  });

  it('restart: a new VmiController on the same stateDir brings back VMIs, generation, phase/reason, revision >= previous', async () => {
    await m.idle();
    const before = await call<{ vmis: WireVmi[]; revision: number }>(vmi, 'ListVMIs', {});
    assert.equal(before.vmis.length, 2);
    await restartAll();
    const afterList = await call<{ vmis: WireVmi[]; revision: number }>(vmi, 'ListVMIs', {});
    const pick = (l: { vmis: WireVmi[] }) => l.vmis.map((v) => ({ uid: v.uid, name: v.name, generation: v.generation, phase: v.status.phase, reason: v.status.reason, specJson: v.specJson }));
    assert.deepEqual(pick(afterList), pick(before));
    await m.idle();
    const got = await call<WireVmi>(vmi, 'GetVMI', { name: 'vm-a' });
    assert.equal(got.status.phase, 'Pending');
    assert.match(got.status.reason, /libvirt/);
    // The watch contract across the restart: a client at the old revision is not "in the future".
    const stream = (vmi as unknown as { WatchVMIs(r: unknown): grpc.ClientReadableStream<unknown> }).WatchVMIs({ sinceRevision: before.revision });
    const outcome = await new Promise<string>((resolve) => {
      stream.on('error', (e: grpc.ServiceError) => resolve(`${grpc.status[e.code]}: ${e.details}`));
      stream.on('data', () => resolve('data'));
      setTimeout(() => resolve('open'), 300);
    });
    stream.on('error', () => undefined);
    stream.cancel();
    assert.ok(afterList.revision >= before.revision, `revision went back after a restart: ${afterList.revision} < ${before.revision} (the last change was a DELETED event, which is not in any record); WatchVMIs(since=${before.revision}) then gave: ${outcome}`);
    assert.doesNotMatch(outcome, /in the future/, `WatchVMIs(since=${before.revision}) after restart: ${outcome}`);
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}
