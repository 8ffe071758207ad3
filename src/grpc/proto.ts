/**
 * Loads the .proto contracts under proto/ at runtime with @grpc/proto-loader (no generated
 * code, so the .proto files stay the single source of truth).
 *
 * Loader options, chosen once for server and clients alike:
 * - keepCase: false - snake_case proto fields become camelCase, so decoded messages have the
 *   same shape as the TypeScript model (NodeInfo) and the server encodes that model unchanged.
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
import * as protoLoader from '@grpc/proto-loader';
import { ErrorCodes, VhError } from '../errors';

/** Fully-qualified names of the services this daemon serves (also the health service keys). */
export const NODE_SERVICE = 'virthandler.v1.Node';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

const PROTO_FILES = ['virthandler/v1/node.proto', 'grpc/health/v1/health.proto'];

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
  protoDir: string;
  nodeService: grpc.ServiceDefinition;
  healthService: grpc.ServiceDefinition;
  NodeClient: grpc.ServiceClientConstructor;
  HealthClient: grpc.ServiceClientConstructor;
}

let cached: Protos | null = null;

/**
 * Where proto/ lives. Compiled code runs from dist/src/grpc (repo root is ../../..); code run
 * straight from src/grpc (a TS runner) finds it at ../..; an installed tree keeps the same
 * relative layout (/opt/virt-handler/{dist,proto}).
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
  const protoDir = findProtoDir();
  const defs = protoLoader.loadSync(PROTO_FILES, { ...LOADER_OPTIONS, includeDirs: [protoDir] });
  const pkg = grpc.loadPackageDefinition(defs);
  const NodeClient = lookupClient(pkg, NODE_SERVICE);
  const HealthClient = lookupClient(pkg, HEALTH_SERVICE);
  cached = { protoDir, nodeService: NodeClient.service, healthService: HealthClient.service, NodeClient, HealthClient };
  return cached;
}

function lookupClient(pkg: grpc.GrpcObject, fqName: string): grpc.ServiceClientConstructor {
  let node: unknown = pkg;
  for (const part of fqName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function' || !('service' in node)) {
    throw new VhError(ErrorCodes.INTERNAL, `service ${fqName} missing from the loaded .proto files`);
  }
  return node as grpc.ServiceClientConstructor;
}
