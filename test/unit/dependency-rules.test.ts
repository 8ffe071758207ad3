/**
 * The layer rules (.dependency-cruiser.cjs, `npm run lint:deps`) are themselves tested: the real
 * config file runs, through the same depcruise CLI as `npm test`, against a small fixture tree
 * laid out like src/ with one violation of each rule (a cycle, spec -> control, a type-only
 * import included) next to imports the layers allow. Each violation must be reported and the
 * exit code must be non-zero (what fails scripts/test.sh); the allowed tree alone must pass.
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '../../..');
const CONFIG = path.join(REPO, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(REPO, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-depcruise-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Tree = Record<string, string[]>;

/** Writes `src/<file>` for each entry, importing the listed src-relative files (`type:` = type-only). */
function writeTree(name: string, tree: Tree): string {
  const root = path.join(tmp, name);
  for (const [file, imports] of Object.entries(tree)) {
    const abs = path.join(root, 'src', file);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    const lines = imports.map((target, i) => {
      const typeOnly = target.startsWith('type:');
      const to = typeOnly ? target.slice(5) : target;
      let rel = path.relative(path.dirname(abs), path.join(root, 'src', to)).replace(/\.ts$/, '');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      return typeOnly ? `import type { T } from '${rel}';\nexport type U${i} = T;` : `import { v as v${i} } from '${rel}';\nexport const u${i} = v${i};`;
    });
    fs.writeFileSync(abs, `${lines.join('\n')}\nexport const v = 1;\nexport type T = number;\n`);
  }
  return root;
}

interface Violation {
  rule: string;
  from: string;
  to: string;
  /** For no-circular: the modules of the cycle, starting after `from`. */
  cycle: string[];
}

/** Runs `depcruise src --config <ours> [...extra]` in `root`, as `npm run lint:deps` does in the checkout. */
function depcruise(root: string, extra: string[] = []): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, ...extra], { cwd: root, encoding: 'utf8' });
}

/** The violations depcruise finds in `root` (from its JSON report). */
function violations(root: string): Violation[] {
  const r = depcruise(root, ['--output-type', 'json']);
  assert.ok(r.stdout.startsWith('{'), `depcruise printed no JSON (exit ${r.status}): ${r.stderr}${r.stdout}`);
  const out = JSON.parse(r.stdout) as { summary: { violations: Array<{ rule: { name: string }; from: string; to: string; cycle?: Array<{ name: string }> }> } };
  return out.summary.violations.map((v) => ({ rule: v.rule.name, from: v.from, to: v.to, cycle: (v.cycle ?? []).map((c) => c.name) }));
}

/** Imports every layer allows (a rule that over-matches, e.g. launcher/ vs launcher-protocol/, shows up here). */
const ALLOWED: Tree = {
  'errors/index.ts': [],
  'util/ids.ts': ['errors/index.ts'],
  'config/load.ts': ['util/ids.ts', 'errors/index.ts'],
  'kvm/vm.ts': ['kvm/vcpu.ts', 'native/loader.ts'],
  'kvm/vcpu.ts': ['errors/index.ts'],
  'native/loader.ts': [],
  'vmi/spec/types.ts': ['util/ids.ts'],
  'vmi/render/domain-xml.ts': ['vmi/spec/types.ts'],
  'vmi/control/controller.ts': ['vmi/render/domain-xml.ts', 'vmi/spec/types.ts', 'launcher-protocol/messages.ts'],
  'launcher-protocol/messages.ts': ['vmi/spec/types.ts'],
  'launcher/main.ts': ['launcher-protocol/messages.ts', 'vmi/render/domain-xml.ts', 'config/load.ts'],
  'grpc/vmi-service.ts': ['vmi/control/controller.ts', 'launcher-protocol/messages.ts'],
  'http/server.ts': ['vmi/control/controller.ts'],
  'app.ts': ['grpc/vmi-service.ts', 'http/server.ts', 'config/load.ts', 'kvm/vm.ts'],
  'main.ts': ['config/load.ts', 'type:app.ts'],
};

describe('dependency rules (.dependency-cruiser.cjs)', () => {
  test('npm run lint:deps runs this config over src/', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts['lint:deps'], 'depcruise src --config .dependency-cruiser.cjs');
    assert.match(fs.readFileSync(path.join(REPO, 'scripts/test.sh'), 'utf8'), /^npm run lint:deps$/m);
  });

  test('a tree that keeps the layers passes (exit 0)', () => {
    const root = writeTree('allowed', ALLOWED);
    assert.deepEqual(violations(root), []);
    const r = depcruise(root);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('a cycle, spec -> control and every other forbidden import are each reported, and fail the run', () => {
    const root = writeTree('forbidden', {
        ...ALLOWED,
        // The deliberate cycle: kvm/vcpu -> kvm/errors -> kvm/vm -> kvm/vcpu (vm -> vcpu is allowed on its own).
        'kvm/vcpu.ts': ['kvm/errors.ts'],
        'kvm/errors.ts': ['kvm/vm.ts'],
        'vmi/spec/types.ts': ['vmi/control/controller.ts', 'type:grpc/vmi-service.ts'],
        'vmi/render/domain-xml.ts': ['vmi/spec/types.ts', 'launcher/main.ts'],
        'vmi/control/controller.ts': ['vmi/spec/types.ts', 'type:grpc/vmi-service.ts'],
        'launcher-protocol/messages.ts': ['launcher/main.ts'],
        'launcher/main.ts': ['http/server.ts'],
        'config/load.ts': ['app.ts'],
        'util/ids.ts': ['type:vmi/spec/types.ts'],
    });
    const found = violations(root);
    const rules = new Set(found.map((v) => v.rule));
    const has = (rule: string, from: string, to: string): boolean => found.some((v) => v.rule === rule && v.from === `src/${from}` && v.to === `src/${to}`);
    const kvmCycle = ['src/kvm/errors.ts', 'src/kvm/vcpu.ts', 'src/kvm/vm.ts'];
    assert.ok(
      found.some((v) => v.rule === 'no-circular' && kvmCycle.includes(v.from) && [...v.cycle].sort().join() === kvmCycle.join()),
      `the kvm cycle is reported: ${JSON.stringify(found)}`,
    );
    assert.ok(has('spec-is-the-bottom-of-vmi', 'vmi/spec/types.ts', 'vmi/control/controller.ts'), JSON.stringify(found));
    assert.ok(has('spec-is-the-bottom-of-vmi', 'vmi/spec/types.ts', 'grpc/vmi-service.ts'), 'a type-only import counts');
    assert.ok(has('render-below-control', 'vmi/render/domain-xml.ts', 'launcher/main.ts'));
    assert.ok(has('vmi-never-imports-a-transport', 'vmi/control/controller.ts', 'grpc/vmi-service.ts'));
    assert.ok(has('launcher-protocol-is-a-contract', 'launcher-protocol/messages.ts', 'launcher/main.ts'));
    assert.ok(has('launcher-is-not-the-handler', 'launcher/main.ts', 'http/server.ts'));
    assert.ok(has('lower-layers-never-import-upper', 'config/load.ts', 'app.ts'));
    assert.ok(has('lower-layers-never-import-upper', 'util/ids.ts', 'vmi/spec/types.ts'));
    assert.deepEqual([...rules].sort(), [
      'launcher-is-not-the-handler', 'launcher-protocol-is-a-contract', 'lower-layers-never-import-upper', 'no-circular',
      'render-below-control', 'spec-is-the-bottom-of-vmi', 'vmi-never-imports-a-transport',
    ], 'every rule of the config fired');
    // The plain run, as scripts/test.sh makes it: a non-zero exit fails the suite.
    const r = depcruise(root);
    assert.notEqual(r.status, 0, 'violations fail the run (and so npm test)');
    assert.match(r.stdout, /error no-circular: src\/kvm\//);
    assert.match(r.stdout, /error spec-is-the-bottom-of-vmi: src\/vmi\/spec\/types\.ts → src\/vmi\/control\/controller\.ts/);
  });
});
