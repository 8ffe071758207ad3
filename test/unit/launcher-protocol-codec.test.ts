/**
 * The launcher's own protobuf codec (src/launcher-protocol/codec.ts, wire.ts) against protobufjs
 * reading proto/virthandler/v1/launcher.proto (test-only here; the handler's grpc-js decodes with
 * protobufjs too): the schema matches the .proto field by field, both encode the same bytes and
 * decode each other's bytes to the same objects, unknown fields of every wire type are skipped,
 * truncated or garbage input is refused with a WireError (never another exception), and the
 * size limit holds. The launcher's HTTP/2 client is tested in launcher-http2.test.ts.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { SCHEMA, type MessageSpec, decode, decodeHandlerMessage, encode, encodeHandlerMessage, encodeLauncherMessage } from '../../src/launcher-protocol/codec';
import { MAX_MESSAGE_BYTES } from '../../src/launcher-protocol/limits';
import { type DiskPrep, type HandlerMessage, type LauncherMessage, commandToWire } from '../../src/launcher-protocol/messages';
import { WireError } from '../../src/launcher-protocol/wire';
import { findProtoDir } from '../../src/grpc/proto';
import { mulberry32 } from '../lib/prng';

const root = new protobuf.Root().loadSync(path.join(findProtoDir(), 'virthandler/v1/launcher.proto'), { keepCase: false });
root.resolveAll();
const PB_OPTS: protobuf.IConversionOptions = { longs: Number, enums: Number, defaults: true, arrays: true, objects: true, oneofs: false };
const pbType = (name: string): protobuf.Type => root.lookupType(`virthandler.v1.${name}`);
const spec = (name: string): MessageSpec => SCHEMA.get(name) as MessageSpec;
/** protobufjs takes 64-bit values as numbers or decimal strings, not bigints. */
const isJsonBuffer = (v: unknown): v is { type: 'Buffer'; data: number[] } => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data);
/** ... and bytes as base64 (JSON turns a Buffer into {type, data}). */
const forPb = (o: unknown): Record<string, unknown> =>
  JSON.parse(JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : isJsonBuffer(v) ? Buffer.from(v.data).toString('base64') : v))) as Record<string, unknown>;
const pbEncode = (name: string, o: unknown): Buffer => Buffer.from(pbType(name).encode(pbType(name).fromObject(forPb(o))).finish());
const pbDecode = (name: string, b: Uint8Array): unknown => pbType(name).toObject(pbType(name).decode(b), PB_OPTS);

/** `o` without plain scalars at their default (what a canonical proto3 encoder leaves out; protobufjs writes what it is given). */
function canonical(m: MessageSpec, o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const fd of m.fields) {
    const v = o[fd.name];
    if (v === undefined || v === null) continue;
    if (typeof fd.type !== 'string') {
      const sub = fd.type;
      out[fd.name] = fd.repeated ? (v as Record<string, unknown>[]).map((x) => canonical(sub, x)) : canonical(sub, v as Record<string, unknown>);
    } else if (fd.optional || fd.oneof || fd.repeated || !(v === '' || v === 0 || v === 0n || v === false || (v instanceof Uint8Array && v.length === 0))) out[fd.name] = v;
  }
  return out;
}

const UID = '6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c';
const disks: DiskPrep[] = [
  { kind: 'overlay', disk: 'root', path: '/v/d/root.qcow2', backingFile: '/img/base.qcow2', backingFormat: 'qcow2' },
  { kind: 'overlay', disk: 'raw', path: '/v/d/raw.qcow2', backingFile: '/img/base.raw', backingFormat: 'raw' },
  { kind: 'sparse', disk: 'scratch', path: '/v/d/s.qcow2', sizeBytes: 2 ** 40 },
  { kind: 'hostDisk', disk: 'h1', path: '/srv/h1.img', sizeBytes: null, create: false },
  { kind: 'hostDisk', disk: 'h2', path: '/srv/h2.img', sizeBytes: 1 << 30, create: true },
  { kind: 'cloudInit', disk: 'ci', path: '/v/ci/seed.iso', userData: '#cloud-config\npassword: é€😀\n', metaData: 'instance-id: x\n', networkData: null },
  { kind: 'cloudInit', disk: 'ci2', path: '/v/ci/seed2.iso', userData: '', metaData: '', networkData: '' },
  {
    kind: 'iso', disk: 'cfg', path: '/v/d/cfg.iso', volumeLabel: 'config-2',
    files: [
      { path: 'openstack/latest/user_data', data: Buffer.from([0, 0xff, 0x80, 0x0a]), mode: 0o600 },
      { path: 'empty', data: Buffer.alloc(0), mode: null },
      { path: 'mode0', data: Buffer.from('é'), mode: 0 },
    ],
  },
  { kind: 'iso', disk: 'none', path: '/v/d/none.iso', volumeLabel: 'cfgdata', files: [] },
];

/** Every message the launcher sends (some with explicit defaults). */
const LAUNCHER: Array<[string, LauncherMessage]> = [
  ['register', { register: { vmiUid: UID, token: 'tok-ěš', pid: 4_194_304, version: '0.1.0' } }],
  ['heartbeat', { heartbeat: { seq: 2 ** 40 + 3 } }],
  ['heartbeat 0 (oneof member with defaults)', { heartbeat: { seq: 0 } }],
  ['status', { status: { state: 'running', reason: 'booted', domainUuid: UID, lastEvent: 'STARTED/booted', error: 'e', domainXml: `<domain>${'x'.repeat(70_000)}</domain>` } }],
  ['empty status', { status: {} as never }],
  ['result', { result: { id: 'c1', ok: true } as never }],
  ['failed result', { result: { id: 'c2', error: 'no domain yet' } as never }],
  [
    'stats',
    {
      result: {
        id: 'c3',
        ok: true,
        error: '',
        stats: {
          takenAtMs: 1_733_000_000_000,
          state: { state: 1, reason: 0 },
          cpu: { timeNs: 2n ** 64n - 1n, userNs: 0n, systemNs: 2 ** 53 + 2 },
          balloon: { currentKib: 1n, maximumKib: 2n, swapInKib: 0, swapOutKib: 4, majorFault: 5, minorFault: 6, unusedKib: 7, availableKib: 8, usableKib: 9, rssKib: 10, diskCachesKib: 11 },
          vcpuCurrent: 0,
          vcpus: [{ id: 0, state: 1, timeNs: 1n, waitNs: 0n, delayNs: 3n }, { id: 4095 }],
          net: [{ name: 'vnet0', rxBytes: 1, rxPackets: 2, rxErrs: 3, rxDrop: 4, txBytes: 5, txPackets: 6, txErrs: 7, txDrop: 8 }, { name: '' }],
          block: [{ name: 'vda', rdReqs: 1, rdBytes: 2, rdTimesNs: 3, wrReqs: 4, wrBytes: 5, wrTimesNs: 6, flReqs: 7, flTimesNs: 8 }],
        },
      },
    },
  ],
  ['stats, nothing reported', { result: { id: 'c4', ok: true, error: '', stats: { takenAtMs: 1, state: null, cpu: null, balloon: null, vcpus: [], net: [], block: [] } } }],
];

/** Every message the handler sends. */
const HANDLER: Array<[string, HandlerMessage]> = [
  ['registered', { registered: { sessionToken: 's', heartbeatIntervalMs: 1000 } }],
  ['start', { command: commandToWire('c1', { start: { domainXml: '<domain/>', libvirtUri: 'qemu:///embed?root=/run/vh/e/0123', disks } }) }],
  ['start without disks', { command: commandToWire('c2', { start: { domainXml: '<d/>', libvirtUri: 'test:///default', disks: [] } }) }],
  ['shutdown', { command: { id: 'c3', shutdown: { gracePeriodSeconds: 30 } } }],
  ['shutdown, negative grace (10-byte varint)', { command: { id: 'c4', shutdown: { gracePeriodSeconds: -1 } } }],
  ...(['pause', 'unpause', 'softReboot', 'destroy', 'teardown', 'getStatus', 'getStats'] as const).map((k, i): [string, HandlerMessage] => [k, { command: { id: `e${i}`, [k]: {} } }]),
  ['a command with no member (a newer handler)', { command: { id: 'c9' } }],
  ['unknown enum value', { command: { id: 'c10', start: { domainXml: 'x', libvirtUri: 'u', disks: [{ disk: 'a', path: '/a', overlay: { backingFile: '/b', backingFormat: 7 } }] } } }],
];

describe('launcher codec: the schema is launcher.proto', () => {
  it('has every message of launcher.proto, with the same fields, numbers, types, labels and oneofs', () => {
    const pkg = root.lookup('virthandler.v1') as protobuf.Namespace;
    const types: protobuf.Type[] = [];
    const walk = (ns: protobuf.NamespaceBase): void => {
      for (const o of ns.nestedArray) {
        if (o instanceof protobuf.Type) types.push(o);
        if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) walk(o);
      }
    };
    walk(pkg);
    assert.deepEqual(types.map((t) => t.name).sort(), [...SCHEMA.keys()].sort());
    for (const t of types) {
      const ours = spec(t.name);
      const theirs = t.fieldsArray.map((fd) => {
        const optional = !!fd.partOf && fd.partOf.name.startsWith('_') && fd.partOf.oneof.length === 1;
        const type = fd.resolvedType instanceof protobuf.Enum ? 'enum' : fd.resolvedType ? fd.resolvedType.name : fd.type;
        return { no: fd.id, name: fd.name, type, repeated: fd.repeated, optional, oneof: optional ? undefined : fd.partOf?.name };
      });
      const mine = ours.fields.map((fd) => ({ no: fd.no, name: fd.name, type: typeof fd.type === 'string' ? fd.type : fd.type.name, repeated: !!fd.repeated, optional: !!fd.optional, oneof: fd.oneof }));
      const byNo = (a: { no: number }, b: { no: number }) => a.no - b.no;
      assert.deepEqual(mine.sort(byNo), theirs.sort(byNo), t.name);
    }
  });
});

describe('launcher codec: byte compatibility with protobufjs', () => {
  it('LauncherMessage: same bytes as protobufjs, and each decodes the other', () => {
    for (const [what, m] of LAUNCHER) {
      const ours = encodeLauncherMessage(m);
      assert.deepEqual(ours, pbEncode('LauncherMessage', canonical(spec('LauncherMessage'), m as never)), `${what}: bytes`);
      assert.deepEqual(decode(spec('LauncherMessage'), ours), pbDecode('LauncherMessage', ours), `${what}: decoded`);
    }
  });

  it('HandlerMessage: same bytes as protobufjs, and each decodes the other', () => {
    for (const [what, m] of HANDLER) {
      const ours = encodeHandlerMessage(m);
      assert.deepEqual(ours, pbEncode('HandlerMessage', canonical(spec('HandlerMessage'), m as never)), `${what}: bytes`);
      assert.deepEqual(decodeHandlerMessage(ours), pbDecode('HandlerMessage', ours), `${what}: decoded`);
    }
  });

  it('decodes what protobufjs writes with every default present (as grpc-js sends the handler\'s objects)', () => {
    const full: HandlerMessage = { command: { id: 'c1', start: { domainXml: '', libvirtUri: '', disks: [{ disk: '', path: '', sparse: { sizeBytes: 0 } }] } } };
    const bytes = pbEncode('HandlerMessage', full);
    assert.ok(bytes.length > encodeHandlerMessage(full).length, 'protobufjs writes explicit defaults, we do not');
    assert.deepEqual(decodeHandlerMessage(bytes), pbDecode('HandlerMessage', bytes));
    assert.deepEqual(decodeHandlerMessage(bytes), full);
    const reg = pbEncode('LauncherMessage', { register: { vmiUid: '', token: '', pid: 0, version: '' } });
    assert.deepEqual(decode(spec('LauncherMessage'), reg), { register: { vmiUid: '', token: '', pid: 0, version: '' } });
  });

  it('64-bit values: bigint and number in, the same number out as protobufjs (magnitude kept above 2^53)', () => {
    for (const v of [0n, 1n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]) {
      const m = { sizeBytes: v };
      const ours = encode(spec('SparseDisk'), m);
      assert.deepEqual(ours, pbEncode('SparseDisk', canonical(spec('SparseDisk'), m)), String(v));
      assert.equal((decode(spec('SparseDisk'), ours) as { sizeBytes: number }).sizeBytes, (pbDecode('SparseDisk', ours) as { sizeBytes: number }).sizeBytes, String(v));
    }
    for (const v of [-1, -(2 ** 40), 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      const ours = encode(spec('Heartbeat'), { seq: v });
      assert.deepEqual(ours, pbEncode('Heartbeat', { seq: v }), String(v));
      assert.equal((decode(spec('Heartbeat'), ours) as { seq: number }).seq, v);
    }
    assert.throws(() => encode(spec('SparseDisk'), { sizeBytes: -1 }), /not an integer/);
    assert.throws(() => encode(spec('SparseDisk'), { sizeBytes: 2n ** 64n }), /out of range/);
    assert.throws(() => encode(spec('Register'), { pid: 1.5 }), /Register\.pid: 1\.5 is not an integer/);
    assert.throws(() => encode(spec('Command'), { id: 'x', pause: {}, destroy: {} }), /both pause and destroy set in oneof cmd/);
  });
});

describe('launcher codec: hostile input', () => {
  const sample = encodeHandlerMessage(HANDLER[1]![1]);

  it('skips unknown fields of every wire type, at every level', () => {
    const unknown = Buffer.concat([
      Buffer.from([0x98, 0x06, 0x2a]), // field 99 varint 42
      Buffer.from([0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]), // field 100 fixed64
      Buffer.from([0xad, 0x06, 1, 2, 3, 4]), // field 101 fixed32
      Buffer.from([0xb2, 0x06, 3, 0x61, 0x62, 0x63]), // field 102 length-delimited "abc"
      Buffer.from([0xbb, 0x06, 0x08, 0x01, 0xbc, 0x06]), // field 103 group { field 1 varint 1 }
    ]);
    const withUnknown = Buffer.concat([unknown, sample, unknown]);
    assert.deepEqual(decodeHandlerMessage(withUnknown), decodeHandlerMessage(sample));
    assert.deepEqual(decodeHandlerMessage(withUnknown), pbDecode('HandlerMessage', withUnknown));
    // inside a nested message (Registered)
    const inner = Buffer.concat([Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]), unknown]);
    const outer = Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
    assert.deepEqual(decodeHandlerMessage(outer), { registered: { sessionToken: 'abc', heartbeatIntervalMs: 0 } });
  });

  it('refuses truncated input with a WireError that says where', () => {
    let refused = 0;
    for (let n = 1; n < sample.length; n++) {
      try {
        decodeHandlerMessage(sample.subarray(0, n));
      } catch (e) {
        assert.ok(e instanceof WireError, `prefix ${n}: ${String(e)}`);
        assert.match(e.message, /^HandlerMessage(\.\w+)*: .*(truncated|runs past)/, e.message);
        refused++;
      }
    }
    // The outer message is one field (command), so every proper prefix is cut inside it.
    assert.equal(refused, sample.length - 1);
    assert.throws(() => decodeHandlerMessage(Buffer.from([0x12, 0x05, 0x0a, 0x09, 0x61])), /HandlerMessage\.command: Command\.id: length-delimited field of 9 bytes at byte 4 runs past the end|runs past/);
  });

  it('refuses a known field with the wrong wire type, field number 0, bad wire types, over-long varints', () => {
    assert.throws(() => decodeHandlerMessage(Buffer.from([0x08, 0x01])), (e: unknown) => e instanceof WireError && /HandlerMessage\.registered: wire type 0, expected 2/.test(e.message));
    assert.throws(() => decodeHandlerMessage(Buffer.from([0x00, 0x01])), /invalid field number 0/);
    assert.throws(() => decodeHandlerMessage(Buffer.from([0xff, 0x01])), /invalid wire type 7/);
    assert.throws(() => decodeHandlerMessage(Buffer.from([0x98, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), /varint longer than 10 bytes/);
    assert.throws(() => decodeHandlerMessage(Buffer.from([0xbb, 0x06, 0x08, 0x01])), /unterminated group/);
    assert.throws(() => decodeHandlerMessage(Buffer.from([0xbb, 0x06, 0xc4, 0x06])), /group of field 103 ended by field 104/);
  });

  it('garbage and mutations: a WireError or a decoded message, never another exception', () => {
    const rnd = mulberry32(0x1a2b3c);
    let decoded = 0;
    for (let i = 0; i < 20_000; i++) {
      let b: Buffer;
      if (i % 2) {
        b = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
      } else {
        b = Buffer.from(sample);
        for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      }
      try {
        decodeHandlerMessage(b);
        decoded++;
      } catch (e) {
        assert.ok(e instanceof WireError, `${b.toString('hex')}: ${String(e)}`);
      }
    }
    assert.ok(decoded > 0);
  });

  it('refuses messages above the limit', () => {
    assert.throws(() => decodeHandlerMessage(Buffer.alloc(MAX_MESSAGE_BYTES + 1)), /more than the 4194304-byte limit/);
  });
});
