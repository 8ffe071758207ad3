/**
 * The daemon's and the launcher's bins (dist/virt-handler.cjs, dist/virt-launcher.cjs) are loaders
 * that run dist/<bin>.bundle.js with the build-time V8 code cache (scripts/build-bundle.ts). A
 * missing, corrupt or stale cache must only cost speed: the loader compiles without it and the
 * program answers as usual.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '../../..');
const PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };

/** Each bin that is a code-cache loader, and a quick command that exercises it without side effects. */
const LOADERS = [
  { bin: 'virt-handler', args: ['--version'], expect: (): string => `virt-handler ${PKG.version}\n` },
  // The launcher's --help is fixed text: compare with the bundle run directly.
  { bin: 'virt-launcher', args: ['--help'], expect: (dist: string): string => execFileSync(process.execPath, [path.join(dist, 'virt-launcher.bundle.js'), '--help'], { encoding: 'utf8' }) },
];

for (const { bin, args, expect } of LOADERS) {
  const LOADER = path.join(REPO, PKG.bin[bin]!);
  const DIST = path.dirname(LOADER);
  const BUNDLE = `${bin}.bundle.js`;
  const CACHE = `${bin}.bundle.vcache`;

  const runWithStderr = (dir: string): { stdout: string; stderr: string } => {
    const env: NodeJS.ProcessEnv = { ...process.env, VHDEV_CODE_CACHE_DEBUG: '1' };
    delete env.NODE_OPTIONS;
    const r = spawnSync(process.execPath, [path.join(dir, path.basename(LOADER)), ...args], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return { stdout: r.stdout, stderr: r.stderr };
  };

  describe(`${bin} loader and its V8 code cache`, () => {
    let dir: string;
    let expected: string;
    before(() => {
      // Inside dist/ so packageVersion() and node_modules resolution still walk up to the package root.
      dir = fs.mkdtempSync(path.join(DIST, '.code-cache-test-'));
      for (const f of [path.basename(LOADER), BUNDLE]) fs.copyFileSync(path.join(DIST, f), path.join(dir, f));
      expected = expect(DIST);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('the build produced a cache this node accepts', { skip: !fs.existsSync(path.join(DIST, CACHE)) && 'no cache built (see build-bundle warning)' }, () => {
      fs.copyFileSync(path.join(DIST, CACHE), path.join(dir, CACHE));
      const r = runWithStderr(dir);
      assert.equal(r.stdout, expected);
      assert.match(r.stderr, /code cache: used/);
    });

    it('runs without a cache file', () => {
      fs.rmSync(path.join(dir, CACHE), { force: true });
      const r = runWithStderr(dir);
      assert.equal(r.stdout, expected);
      assert.match(r.stderr, /code cache: none/);
    });

    it('ignores a corrupt cache file (right bundle id, garbage V8 data)', () => {
      const id = fs.readFileSync(path.join(dir, path.basename(LOADER)), 'utf8').match(/const ID = "([0-9a-f]{64})"/)![1]!;
      fs.writeFileSync(path.join(dir, CACHE), Buffer.concat([Buffer.from(`${id}\n`), Buffer.alloc(64 * 1024, 0xa5)]));
      const r = runWithStderr(dir);
      assert.equal(r.stdout, expected);
      assert.match(r.stderr, /code cache: rejected/);
    });

    it('ignores a cache made for another build of the bundle, and a truncated file', () => {
      fs.writeFileSync(path.join(dir, CACHE), Buffer.concat([Buffer.from(`${'0'.repeat(64)}\n`), Buffer.alloc(1024, 1)]));
      assert.match(runWithStderr(dir).stderr, /code cache: none/);
      fs.writeFileSync(path.join(dir, CACHE), 'abc');
      const r = runWithStderr(dir);
      assert.equal(r.stdout, expected);
      assert.match(r.stderr, /code cache: none/);
    });

    if (bin === 'virt-handler') {
      it('prints the config the same way without the cache', () => {
        fs.rmSync(path.join(dir, CACHE), { force: true });
        const plain = execFileSync(process.execPath, [path.join(DIST, BUNDLE), '--print-config', '--profile=dev'], { encoding: 'utf8' });
        const viaLoader = execFileSync(process.execPath, [path.join(dir, path.basename(LOADER)), '--print-config', '--profile=dev'], { encoding: 'utf8' });
        assert.equal(viaLoader, plain);
      });
    }
  });
}
