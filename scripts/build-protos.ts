/**
 * Build step (`npm run build:ts`, after tsc): parses the .proto contracts under proto/ once and
 * writes them as protobufjs JSON next to the compiled src/grpc/proto.js, which loads that file
 * with protobufjs/light at startup instead of parsing .proto text with @grpc/proto-loader
 * (~60 ms of every daemon and vhctl start). proto/ stays the single source of truth: the JSON is
 * generated, never committed, and test/unit/grpc-contracts.test.ts fails when it is stale.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { LOADER_OPTIONS, PROTO_FILES, contractsPath, findProtoDir } from '../src/grpc/proto';

/**
 * The contracts in `protoDir` as protobufjs JSON, parsed the way @grpc/proto-loader's loadSync
 * parses them with LOADER_OPTIONS (keepCase is the one option applied at parse time; the others
 * apply when decoding, at runtime). Comments are dropped.
 */
export function compileContracts(protoDir: string): protobuf.INamespace {
  const root = new protobuf.Root();
  // Imports resolve against proto/ only, as with proto-loader's includeDirs: [protoDir].
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(protoDir, target));
  root.loadSync(PROTO_FILES.slice(), { keepCase: LOADER_OPTIONS.keepCase ?? false });
  root.resolveAll();
  return root.toJSON();
}

function main(): void {
  const out = contractsPath();
  const json = `${JSON.stringify(compileContracts(findProtoDir()))}\n`;
  fs.writeFileSync(`${out}.tmp`, json);
  fs.renameSync(`${out}.tmp`, out);
  process.stderr.write(`build-protos: wrote ${path.relative(process.cwd(), out)} (${json.length} bytes)\n`);
}

if (require.main === module) main();
