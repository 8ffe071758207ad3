/**
 * The gRPC contracts. proto/ holds the .proto files, the single source of truth; the build
 * (scripts/build-protos.ts, run by `npm run build:ts`) parses them once into protobufjs JSON
 * next to this file, and the process loads that JSON with protobufjs/light. Parsing .proto text
 * at runtime with @grpc/proto-loader cost ~60 ms of every start (its parser, the full
 * protobufjs and the descriptor tables it loads); the definitions built here are the subset of
 * proto-loader's that grpc-js uses, checked against proto-loader by
 * test/unit/grpc-contracts.test.ts.
 *
 * Loader options, chosen once for server and clients alike:
 * - keepCase: false - snake_case proto fields become camelCase, so decoded messages have the
 *   same shape as the TypeScript model (NodeInfo) and the server encodes that model unchanged.
 *   Applied when the build parses the .proto files; the others apply on every decode.
 * - longs: Number - int64/uint64 decode to JS numbers. Every 64-bit field we carry is a byte
 *   count or a KVM capability value, exact below 2^53 (8 PiB), and the TypeScript model types
 *   them as `number`; String would be lossless for larger values but would push a parse step
 *   onto every consumer for values that never get that large. Revisit per field if one can.
 * - enums: String - health status reads as 'SERVING', not 1.
 * - defaults: true, arrays: true, objects: true - absent scalars, lists and maps decode to
 *   '', 0, [] and {} rather than undefined. proto3 `optional` fields are the exception: they
 *   stay absent when unset, which is how null crosses the wire (see nodeInfoFromWire).
 * - oneofs: false - no virtual `_field` keys for proto3 optional fields in decoded objects.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs/light';
import { ErrorCodes, VhError } from '../errors';

/** Fully-qualified names of the services this daemon serves (also the health service keys). */
export const NODE_SERVICE = 'virthandler.v1.Node';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const VMI_SERVICE = 'virthandler.v1.VmiService';
export const LAUNCHER_SERVICE = 'virthandler.v1.Launcher';
export const IMAGE_SERVICE = 'virthandler.v1.ImageService';
export const DATA_VOLUME_SERVICE = 'virthandler.v1.DataVolumeService';

/** The .proto files, relative to proto/, that the build compiles. */
export const PROTO_FILES: readonly string[] = [
  'virthandler/v1/node.proto',
  'virthandler/v1/vmi.proto',
  'virthandler/v1/launcher.proto',
  'grpc/health/v1/health.proto',
  'virthandler/v1/image.proto',
  'virthandler/v1/datavolume.proto',
];

/** The compiled contracts (written by scripts/build-protos.ts), next to the compiled proto.js. */
export function contractsPath(fromDir: string = __dirname): string {
  return path.join(fromDir, 'contracts.json');
}

/** The options every loader in this process uses; exported so tests can decode with the same view. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: false,
};

/** The loaded contracts: service definitions for the server, client constructors for vhctl/tests. */
export interface Protos {
  nodeService: grpc.ServiceDefinition;
  healthService: grpc.ServiceDefinition;
  NodeClient: grpc.ServiceClientConstructor;
  HealthClient: grpc.ServiceClientConstructor;
  vmiService: grpc.ServiceDefinition;
  launcherService: grpc.ServiceDefinition;
  VmiClient: grpc.ServiceClientConstructor;
  LauncherClient: grpc.ServiceClientConstructor;
  imageService: grpc.ServiceDefinition;
  ImageClient: grpc.ServiceClientConstructor;
  dataVolumeService: grpc.ServiceDefinition;
  DataVolumeClient: grpc.ServiceClientConstructor;
  /** A message type by its fully-qualified name (e.g. for status details in metadata). */
  messageType(fqName: string): protobuf.Type;
}

let cached: Protos | null = null;

/**
 * Where proto/ lives (read by the build, not at runtime). Compiled code runs from dist/src/grpc
 * (repo root is ../../..); code run straight from src/grpc (a TS runner) finds it at ../../proto.
 */
export function protoDirCandidates(fromDir: string = __dirname): string[] {
  return [path.resolve(fromDir, '../../../proto'), path.resolve(fromDir, '../../proto')];
}

/** The first candidate that holds our contracts; throws INTERNAL naming every path tried. */
export function findProtoDir(candidates: string[] = protoDirCandidates()): string {
  for (const dir of candidates) {
    if (PROTO_FILES.every((f) => fs.existsSync(path.join(dir, f)))) return dir;
  }
  throw new VhError(
    ErrorCodes.INTERNAL,
    `gRPC contracts not found (tried ${candidates.join(', ')}); install proto/ next to dist/ as in the repository`,
    { tried: candidates },
  );
}

/** Loads (once per process) and returns the service definitions and client constructors. */
export function loadProtos(): Protos {
  if (cached) return cached;
  const file = contractsPath();
  let json: protobuf.INamespace;
  try {
    // A literal require, so scripts/build-bundle.ts inlines the file into dist/virt-handler.cjs.
    json = require('./contracts.json') as protobuf.INamespace;
  } catch (e) {
    throw new VhError(ErrorCodes.INTERNAL, `compiled gRPC contracts ${file} unreadable (${(e as Error).message}); \`npm run build:ts\` generates them from proto/`, { path: file }, { cause: e });
  }
  const root = protobuf.Root.fromJSON(json);
  root.resolveAll();
  const NodeClient = clientFor(root, NODE_SERVICE);
  const HealthClient = clientFor(root, HEALTH_SERVICE);
  const VmiClient = clientFor(root, VMI_SERVICE);
  const LauncherClient = clientFor(root, LAUNCHER_SERVICE);
  const ImageClient = clientFor(root, IMAGE_SERVICE);
  const DataVolumeClient = clientFor(root, DATA_VOLUME_SERVICE);
  cached = {
    nodeService: NodeClient.service,
    healthService: HealthClient.service,
    NodeClient,
    HealthClient,
    vmiService: VmiClient.service,
    launcherService: LauncherClient.service,
    VmiClient,
    LauncherClient,
    imageService: ImageClient.service,
    ImageClient,
    dataVolumeService: DataVolumeClient.service,
    DataVolumeClient,
    messageType: (fqName) => root.lookupType(fqName),
  };
  return cached;
}

function clientFor(root: protobuf.Root, fqName: string): grpc.ServiceClientConstructor {
  const service = root.lookup(fqName);
  if (!(service instanceof protobuf.Service)) {
    throw new VhError(ErrorCodes.INTERNAL, `service ${fqName} missing from the compiled gRPC contracts`);
  }
  return grpc.makeClientConstructor(serviceDefinition(service, fqName), fqName);
}

/**
 * What proto-loader's package definition gives grpc-js for one service, minus the per-message
 * descriptors only reflection reads: paths, streaming flags and the (de)serializers, which
 * encode with fromObject+encode and decode with decode+toObject(LOADER_OPTIONS) as it does.
 */
function serviceDefinition(service: protobuf.Service, fqName: string): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    // resolveAll() above resolved every request and response type (or threw).
    const request = method.resolvedRequestType!;
    const response = method.resolvedResponseType!;
    def[method.name] = {
      path: `/${fqName}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  return def as grpc.ServiceDefinition;
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), LOADER_OPTIONS);
}
