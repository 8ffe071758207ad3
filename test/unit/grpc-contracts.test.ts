/**
 * The compiled gRPC contracts (scripts/build-protos.ts -> contracts.json, loaded by
 * src/grpc/proto.ts) against the .proto files read the way they used to be read at runtime,
 * with @grpc/proto-loader: the JSON must be current, and the service definitions built from it
 * must put the same bytes on the wire and decode them to the same objects.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { compileContracts } from '../../scripts/build-protos';
import { DATA_VOLUME_SERVICE, HEALTH_SERVICE, IMAGE_SERVICE, LAUNCHER_SERVICE, LOADER_OPTIONS, NODE_SERVICE, PROTO_FILES, contractsPath, findProtoDir, loadProtos } from '../../src/grpc/proto';
import { sampleNodeInfo, unschedulableNodeInfo } from './grpc-fixture';

type Methods = Record<string, grpc.MethodDefinition<object, object>>;

function protoLoaderServices(): Record<string, Methods> {
  const defs = protoLoader.loadSync(PROTO_FILES.slice(), { ...LOADER_OPTIONS, includeDirs: [findProtoDir()] });
  return { [NODE_SERVICE]: defs[NODE_SERVICE] as unknown as Methods, [HEALTH_SERVICE]: defs[HEALTH_SERVICE] as unknown as Methods, [LAUNCHER_SERVICE]: defs[LAUNCHER_SERVICE] as unknown as Methods, [IMAGE_SERVICE]: defs[IMAGE_SERVICE] as unknown as Methods, [DATA_VOLUME_SERVICE]: defs[DATA_VOLUME_SERVICE] as unknown as Methods };
}

function compiledServices(): Record<string, Methods> {
  const p = loadProtos();
  return { [NODE_SERVICE]: p.nodeService as unknown as Methods, [HEALTH_SERVICE]: p.healthService as unknown as Methods, [LAUNCHER_SERVICE]: p.launcherService as unknown as Methods, [IMAGE_SERVICE]: p.imageService as unknown as Methods, [DATA_VOLUME_SERVICE]: p.dataVolumeService as unknown as Methods };
}

const SERVICES = [NODE_SERVICE, HEALTH_SERVICE, LAUNCHER_SERVICE, IMAGE_SERVICE, DATA_VOLUME_SERVICE];

const DV_WIRE = {
  uid: 'u', namespace: 'ns', name: 'dv', specJson: '{}', createdAt: 't', deleting: false,
  status: { phase: 'ImportInProgress', progress: '45.00%', restartCount: 1, claimName: 'dv', conditions: [{ type: 'Ready', status: 'False', reason: 'TransferRunning', message: 'm', lastTransitionTime: 't' }] },
  events: [{ type: 'Normal', reason: 'Bound', message: 'PVC dv Bound', time: 't' }],
};

/** A message of every shape each method carries, including the empty one. */
const SAMPLES: Record<string, { request: object[]; response: object[] }> = {
  [`/${NODE_SERVICE}/GetNodeInfo`]: {
    request: [{}],
    response: [{ node: sampleNodeInfo() }, { node: unschedulableNodeInfo() }, {}],
  },
  [`/${HEALTH_SERVICE}/Check`]: { request: [{ service: '' }, { service: NODE_SERVICE }], response: [{ status: 'SERVING' }, { status: 'NOT_SERVING' }, {}] },
  [`/${HEALTH_SERVICE}/Watch`]: { request: [{ service: NODE_SERVICE }], response: [{ status: 'SERVICE_UNKNOWN' }] },
  [`/${LAUNCHER_SERVICE}/Connect`]: {
    request: [
      { register: { vmiUid: '6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c', token: 't', pid: 7, version: '0.1.0' } },
      { status: { state: 'running', reason: 'booted', domainUuid: '', lastEvent: 'STARTED/booted', error: '', domainXml: '<domain/>' } },
      { result: { id: 'c1', ok: true, error: '', stats: { takenAtMs: 1, cpu: { timeNs: 5 }, vcpus: [{ id: 1, timeNs: 2 }], net: [{ name: 'vnet0', rxBytes: 9 }], block: [] } } },
    ],
    response: [
      { registered: { sessionToken: 's', heartbeatIntervalMs: 1000 } },
      { command: { id: 'c2', start: { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [{ disk: 'root', path: '/v/r.qcow2', overlay: { backingFile: '/b', backingFormat: 1 } }, { disk: 'h', path: '/h', hostDisk: { create: false } }] } } },
      { command: { id: 'c3', getStats: {} } },
    ],
  },
};

const IMAGE = { digest: `sha256:${'a'.repeat(64)}`, references: ['quay.io/x/y:1'], pulledAs: 'quay.io/x/y:1', pulledAt: '2026-12-06T00:00:00Z', lastUsed: '', sizeBytes: 5 * 2 ** 30, allocatedBytes: 1, inUseBy: ['default/a'], artifacts: ['disk'] };
Object.assign(SAMPLES, {
  [`/${IMAGE_SERVICE}/ListImages`]: { request: [{}], response: [{ images: [IMAGE] }, {}] },
  [`/${IMAGE_SERVICE}/PullImage`]: {
    request: [{ reference: 'quay.io/x/y:1', pullPolicy: 'Always', select: { kernelPath: '/boot/vmlinuz' } }],
    response: [{ progress: { phase: 'pulling', bytes: 10, totalBytes: 0, message: 'm' } }, { result: { image: IMAGE, pulled: true, durationMs: 3 } }],
  },
  [`/${IMAGE_SERVICE}/ImportImage`]: { request: [{ metadata: { reference: 'r/x:1', format: 'oci-archive', sizeBytes: 9 } }, { chunk: Buffer.from('abc') }], response: [{ image: IMAGE, receivedBytes: 9 }] },
  [`/${IMAGE_SERVICE}/RemoveImage`]: { request: [{ image: 'r/x:1' }], response: [{ removed: IMAGE }] },
  [`/${IMAGE_SERVICE}/GcImages`]: { request: [{}], response: [{ removed: [IMAGE], freedBytes: 1 }] },
});
SAMPLES[`/${DATA_VOLUME_SERVICE}/CreateDataVolume`] = { request: [{ manifest: 'kind: DataVolume' }, {}], response: [{ dataVolume: DV_WIRE, changed: true }, {}] };
SAMPLES[`/${DATA_VOLUME_SERVICE}/GetDataVolume`] = { request: [{ namespace: 'ns', name: 'dv' }], response: [DV_WIRE, {}] };
SAMPLES[`/${DATA_VOLUME_SERVICE}/ListDataVolumes`] = { request: [{ namespace: '' }], response: [{ dataVolumes: [DV_WIRE, DV_WIRE] }] };
SAMPLES[`/${DATA_VOLUME_SERVICE}/DeleteDataVolume`] = { request: [{ name: 'dv' }], response: [DV_WIRE] };
SAMPLES[`/${DATA_VOLUME_SERVICE}/Upload`] = { request: [{ ref: { namespace: 'ns', name: 'dv' }, data: Buffer.from([1, 2, 3]) }, { data: Buffer.alloc(0) }], response: [{ dataVolume: DV_WIRE, bytes: 1048576 }] };

describe('compiled gRPC contracts', () => {
  it('are current: contracts.json is what the build generates from proto/ today', () => {
    const onDisk: unknown = JSON.parse(fs.readFileSync(contractsPath(), 'utf8'));
    const generated: unknown = JSON.parse(JSON.stringify(compileContracts(findProtoDir())));
    assert.deepEqual(onDisk, generated, `${contractsPath()} is stale: run \`npm run build:ts\``);
  });

  it('define the same methods as proto-loader: paths, streaming, client method names', () => {
    const expected = protoLoaderServices();
    const actual = compiledServices();
    for (const service of SERVICES) {
      const shape = (m: Methods): unknown => Object.fromEntries(Object.entries(m).map(([name, d]) =>
        [name, { path: d.path, requestStream: d.requestStream, responseStream: d.responseStream, originalName: d.originalName }]));
      assert.deepEqual(shape(actual[service]!), shape(expected[service]!), service);
    }
  });

  it('encode to the same bytes and decode to the same objects as proto-loader', () => {
    const expected = protoLoaderServices();
    const actual = compiledServices();
    let checked = 0;
    for (const service of SERVICES) {
      for (const [name, want] of Object.entries(expected[service]!)) {
        const got = actual[service]![name]!;
        const samples = SAMPLES[want.path];
        assert.ok(samples, `no samples for ${want.path}: add some to SAMPLES`);
        const pairs = [
          ...samples.request.map((m) => [m, want.requestSerialize, got.requestSerialize, want.requestDeserialize, got.requestDeserialize] as const),
          ...samples.response.map((m) => [m, want.responseSerialize, got.responseSerialize, want.responseDeserialize, got.responseDeserialize] as const),
        ];
        for (const [message, wantEncode, gotEncode, wantDecode, gotDecode] of pairs) {
          const bytes = wantEncode(message);
          assert.deepEqual(Buffer.from(gotEncode(message)), Buffer.from(bytes), `${want.path} encodes ${JSON.stringify(message).slice(0, 60)}`);
          assert.deepEqual(gotDecode(Buffer.from(bytes)), wantDecode(Buffer.from(bytes)), `${want.path} decodes`);
          checked++;
        }
        assert.throws(() => got.requestSerialize([] as unknown as object), /expected object with .* structure, got array instead/);
      }
    }
    assert.equal(checked, 17 + 13 + 14);
  });
});
