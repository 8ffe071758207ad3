/**
 * Dev tool: which KubeVirt example manifests this node accepts, and what each one would wait for.
 *
 *   git -C <kubevirt repo> archive HEAD examples | tar -x -C /tmp/kv
 *   node dist/scripts/dev/check-kubevirt-examples.js /tmp/kv/examples [--labels k=v,k2=v2]
 *
 * For every VirtualMachineInstance in the directory's YAML files (and, naively, the spec.template
 * of a VirtualMachine, VirtualMachineInstanceReplicaSet or VirtualMachinePool: its metadata gets
 * the owner's name), it defaults and validates the VMI as the daemon does (requirements listed,
 * not refused; host paths under a throw-away image root) and prints one line per VMI: valid or
 * not, then each violation or requirement. Other kinds are counted and skipped.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { defaultVmi } from '../../src/vmi/spec/defaults';
import { validateVmi } from '../../src/vmi/spec/validate';

const TEMPLATE_KINDS = new Set(['VirtualMachine', 'VirtualMachineInstanceReplicaSet', 'VirtualMachinePool']);
type Obj = Record<string, unknown>;

function asObj(v: unknown): Obj | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : null;
}

/** The VMI manifest a document stands for, or null for another kind. */
function vmiOf(doc: Obj): { label: string; manifest: unknown } | null {
  const kind = typeof doc.kind === 'string' ? doc.kind : '?';
  const name = String(asObj(doc.metadata)?.name ?? '?');
  if (kind === 'VirtualMachineInstance') return { label: `VMI ${name}`, manifest: doc };
  if (!TEMPLATE_KINDS.has(kind)) return null;
  const spec = asObj(doc.spec);
  const template = asObj(spec?.template) ?? asObj(asObj(spec?.virtualMachineTemplate)?.spec)?.template;
  const t = asObj(template);
  if (t === null) return { label: `${kind} ${name} (no template)`, manifest: null };
  const meta = { ...(asObj(t.metadata) ?? {}), name };
  return { label: `${kind} ${name} template`, manifest: { apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: meta, spec: t.spec } };
}

function main(): void {
  const args = process.argv.slice(2);
  const dir = args.find((a) => !a.startsWith('--'));
  if (dir === undefined) {
    process.stderr.write('usage: check-kubevirt-examples <dir of YAML files> [--labels k=v,...]\n');
    process.exit(2);
  }
  const labelsArg = args.indexOf('--labels') >= 0 ? args[args.indexOf('--labels') + 1] ?? '' : '';
  const nodeLabels = Object.fromEntries(labelsArg.split(',').filter((s) => s.includes('=')).map((s) => s.split('=', 2) as [string, string]));
  const imageRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-examples-'));
  const ctx = { imageRoot, hostPathRoots: [], nodeLabels, requirements: 'pending' as const };
  const counts = { valid: 0, runnable: 0, invalid: 0, skipped: 0 };
  try {
    for (const file of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
      const docs = parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'));
      for (const d of Array.isArray(docs) ? docs : []) {
        const doc = asObj(d.toJS());
        const vmi = doc === null ? null : vmiOf(doc);
        if (vmi === null) {
          counts.skipped += 1;
          continue;
        }
        const r = validateVmi(defaultVmi(vmi.manifest), ctx);
        if (!r.ok) {
          counts.invalid += 1;
          process.stdout.write(`${file}\t${vmi.label}\tINVALID\n`);
          for (const v of r.violations) process.stdout.write(`\t\tviolation ${v.field}: ${v.message}\n`);
          continue;
        }
        counts.valid += 1;
        if (r.vmi.requirements.length === 0) counts.runnable += 1;
        process.stdout.write(`${file}\t${vmi.label}\tvalid, ${r.vmi.requirements.length === 0 ? 'runs here' : `waits on ${r.vmi.requirements.length}`}\n`);
        for (const q of r.vmi.requirements) process.stdout.write(`\t\tneeds ${q.field}: ${q.needs}\n`);
      }
    }
  } finally {
    fs.rmSync(imageRoot, { recursive: true, force: true });
  }
  process.stdout.write(`\n${counts.valid} valid (${counts.runnable} runnable here), ${counts.invalid} invalid, ${counts.skipped} other documents skipped\n`);
}

main();
