/**
 * Build step (`npm run build:ts`, after tsc and build-protos): bundles the compiled daemon
 * (dist/src/main.js) into dist/virt-handler.cjs, the file systemd, the DaemonSet, the demo, the
 * integration tests and bench:startup all run, and vhctl (dist/src/cli/vhctl.js) into
 * dist/vhctl.cjs. One file instead of ~300 resolved, read and wrapped one by one cuts ~100 ms
 * and ~6 MB off every daemon start, and ~60 ms off every vhctl call (the demo polls `vhctl health`).
 *
 * The bundle stays in dist/ next to package.json's directory tree, so the addon loader and
 * packageVersion() still find the package root by walking up, and the compiled gRPC contracts are
 * inlined (proto.ts requires them by a literal path). node_modules still ships: fastify's schema
 * compilers are resolved from it at runtime (src/http/server.ts). Everything else is bundled:
 * leaving the modules not needed before ready (yaml, prom-client, ...) external did not measurably
 * speed up ready and cost ~3 MB RSS.
 */
import * as path from 'node:path';
import { build } from 'esbuild';

const DIST = path.resolve(__dirname, '..');

/** package.json `bin` entry -> the compiled file it bundles, both relative to dist/. */
const BUNDLES: ReadonlyArray<{ out: string; entry: string }> = [
  { out: 'virt-handler.cjs', entry: 'src/main.js' },
  { out: 'vhctl.cjs', entry: 'src/cli/vhctl.js' },
];

async function main(): Promise<void> {
  for (const { out, entry } of BUNDLES) {
    const outfile = path.join(DIST, out);
    await build({
      entryPoints: [path.join(DIST, entry)],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      sourcemap: 'linked', // `node --enable-source-maps` maps stack traces back to dist/src
      // server.ts resolves fastify's own copy of the schema compilers at runtime, on purpose.
      logOverride: { 'require-resolve-not-external': 'silent' },
      logLevel: 'warning',
    });
    process.stderr.write(`build-bundle: wrote ${path.relative(process.cwd(), outfile)}\n`);
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`build-bundle: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
