/**
 * `vhctl create -f FILE [-f FILE...] [--dry-run]`: every document of every file, in order.
 * VirtualMachineInstances go to the daemon as they are (SyncVMI); VirtualMachines are expanded
 * to their VMI here, with the instancetypes/preferences of this call or of the cache of earlier
 * calls (instancetype-cache.ts), then sent the same way; instancetypes and preferences are
 * recorded in that cache. Kinds a node does not take are refused one by one. A file that does
 * not parse refuses the whole call before anything is sent.
 *
 * --dry-run changes nothing (no call, no cache write): each VMI gets KubeVirt's defaults
 * (defaultVmi) and is checked by validateVmi, the daemon's own validator, against this node's
 * configuration as the daemon would load it (VH_CONFIG and VH_* variables), then printed as
 * YAML with secrets redacted.
 */
import * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { parseCommandLine } from '../config';
import { processContext } from '../config/defaults';
import { parseDocuments, type Document } from '../vmi/spec/documents';
import { readInstancetype, readPreference, describeObject, type Instancetype, type Preference } from '../vmi/spec/instancetype';
import { vmToVmi, vmFieldPath, type ObjectLookup } from '../vmi/spec/virtual-machine';
import { validateVmi } from '../vmi/spec/validate';
import { defaultVmi } from '../vmi/spec/defaults';
import { redactSecrets } from '../vmi/spec/redact';
import type { FieldViolation, ValidationContext } from '../vmi/spec/types';
import { CliError, EXIT, describeCallError, isServiceError, newClient, preflight, table, unary } from './common';
import { InstancetypeCache, cacheDir } from './instancetype-cache';
import { decodeViolations, displayObject, phaseOf, readManifest, render, type VmiOptions, type WireVmi } from './vmi-commands';
import { createDataVolume, displayDataVolume } from './datavolume-commands';
import { validateDataVolume } from '../volumes/datavolume-validate';

interface Entry {
  file: string;
  doc: Document;
  /** The whole file's text when this is its only document (sent as written: the daemon's positions match). */
  text: string | null;
}

/** What happened to one document, for -o json|yaml. */
interface Outcome {
  document: number;
  file: string;
  kind: string;
  name: string;
  result: 'configured' | 'unchanged' | 'recorded' | 'valid' | 'refused';
  vmi?: unknown;
  /** DataVolumes created for this document (a DataVolume, or a VirtualMachine's dataVolumeTemplates). */
  dataVolumes?: unknown[];
  violations?: FieldViolation[];
  message?: string;
}

const key = (kind: string, namespace: string | null, name: string): string => `${kind}/${namespace ?? ''}/${name}`;

function where(file: string): string {
  return file === '-' ? 'stdin' : file;
}

function violationLines(header: string, violations: readonly FieldViolation[]): string {
  const n = violations.length;
  return [`${header} (${n} violation${n === 1 ? '' : 's'}):`, ...violations.map((v) => `  ${v.field || '(manifest)'}: ${v.message}`)].join('\n');
}

/** The daemon's ValidationContext, from the same configuration sources the daemon reads. */
function localValidation(): ValidationContext {
  try {
    const cmd = parseCommandLine([], processContext());
    if (cmd.kind !== 'run') throw new Error(`unexpected ${cmd.kind}`);
    return { imageRoot: cmd.config.vmi.imageRoot, hostPathRoots: cmd.config.vmi.hostPathRoots };
  } catch (e) {
    throw new CliError(`--dry-run: cannot load this node's configuration (VH_CONFIG, VH_*): ${(e as Error).message}`);
  }
}

export async function cmdCreate(opts: VmiOptions): Promise<number> {
  const entries: Entry[] = [];
  let unparsable = false;
  for (const file of opts.files) {
    const text = readManifest(file);
    const r = parseDocuments(text);
    if (!r.ok) {
      process.stderr.write(`vhctl: ${violationLines(`${where(file)}: cannot be read`, r.violations)}\n`);
      unparsable = true;
      continue;
    }
    for (const doc of r.documents) entries.push({ file, doc, text: r.whole ? text : null });
  }
  if (unparsable) return EXIT.ERROR;

  // Instancetypes and preferences first: a VM may name one given after it.
  const local = new Map<string, Instancetype | Preference>();
  const checked = new Map<Entry, { object: Instancetype | Preference } | { violations: FieldViolation[] }>();
  for (const e of entries) {
    if (e.doc.type !== 'instancetype' && e.doc.type !== 'preference') continue;
    const r = e.doc.type === 'instancetype' ? readInstancetype(e.doc.value, e.doc.kind) : readPreference(e.doc.value, e.doc.kind);
    checked.set(e, r.ok ? { object: r.object } : { violations: r.violations });
    if (r.ok) local.set(key(r.object.kind, r.object.namespace, r.object.name), r.object);
  }
  const cache = new InstancetypeCache(cacheDir());
  const lookup: ObjectLookup = {
    instancetype: (kind, ns, name) => (local.get(key(kind, ns, name)) as Instancetype | undefined) ?? cache.instancetype(kind, ns, name),
    preference: (kind, ns, name) => (local.get(key(kind, ns, name)) as Preference | undefined) ?? cache.preference(kind, ns, name),
  };
  const validation = opts.dryRun && entries.some((e) => e.doc.type === 'vmi' || e.doc.type === 'vm') ? localValidation() : null;

  // The one document of a one-VMI call keeps vhctl's original output, word for word.
  const plain = entries.length === 1 && entries[0]!.doc.type === 'vmi';
  const outcomes: Outcome[] = [];
  const out: string[] = [];
  let refused = 0;
  let client: grpc.Client | null = null;
  let dvClient: grpc.Client | null = null;
  /** Creates (or, dry run, validates) DataVolume manifests; the refusals with fields under `prefix`, else the results. */
  const dataVolumes = async (manifests: readonly unknown[], prefix: (i: number) => string): Promise<{ refused: FieldViolation[]; message: string } | { made: Array<{ text: string; view: unknown }> }> => {
    const made: Array<{ text: string; view: unknown }> = [];
    for (const [i, m] of manifests.entries()) {
      const meta = (m as { metadata?: { name?: string; namespace?: string } }).metadata;
      const label = `datavolume ${meta?.namespace ?? 'default'}/${meta?.name ?? ''}`;
      if (opts.dryRun) {
        const r = validateDataVolume(m);
        if (!r.ok) return { refused: r.violations.map((v) => ({ ...v, field: `${prefix(i)}${v.field}` })), message: 'rejected by local validation (dry run)' };
        made.push({ text: `# ${label}: valid (dry run: not created)`, view: m });
        continue;
      }
      if (dvClient === null) {
        preflight(opts.socket);
        dvClient = newClient(opts.socket, 'DataVolumeClient');
      }
      const r = await createDataVolume(dvClient, JSON.stringify(m), opts);
      if (!r.ok) return { refused: r.violations.map((v) => ({ ...v, field: `${prefix(i)}${v.field}` })), message: `${label}: ${r.message}` };
      made.push({ text: `${label} ${r.changed ? 'created' : 'unchanged'} (phase ${r.dv.status?.phase ?? 'Unknown'})`, view: displayDataVolume(r.dv) });
    }
    return { made };
  };
  const labelOf = (e: Entry): string => `${e.doc.label}${opts.files.length > 1 ? ` in ${where(e.file)}` : ''}`;
  const refuse = (e: Entry, o: Omit<Outcome, 'document' | 'file' | 'kind' | 'name' | 'result'>, text: string): void => {
    refused += 1;
    outcomes.push({ ...base(e), result: 'refused', ...o });
    process.stderr.write(`vhctl: ${plain ? '' : `${labelOf(e)}: `}${text}\n`);
  };
  try {
    for (const e of entries) {
      const d = e.doc;
      if (d.type === 'refused') {
        refuse(e, { message: d.message }, d.message);
        continue;
      }
      if (d.type === 'instancetype' || d.type === 'preference') {
        const c = checked.get(e)!;
        if ('violations' in c) {
          refuse(e, { violations: c.violations }, violationLines('rejected', c.violations));
          continue;
        }
        if (opts.dryRun) {
          outcomes.push({ ...base(e), result: 'valid' });
          out.push(`# ${labelOf(e)}: valid (dry run: not recorded)\n`);
        } else {
          cache.put(c.object, d.value);
          outcomes.push({ ...base(e), result: 'recorded' });
          out.push(`${d.kind.toLowerCase()} ${describeObject(c.object).replace(/^\S+ /, '')} recorded\n`);
        }
        continue;
      }
      if (d.type === 'dataVolume') {
        const r = await dataVolumes([d.value], () => '');
        if ('refused' in r) {
          refuse(e, { violations: r.refused, message: r.message }, r.refused.length === 0 ? r.message : violationLines(r.message.includes('dry run') ? r.message : 'rejected by virt-handler', r.refused));
          continue;
        }
        outcomes.push({ ...base(e), result: opts.dryRun ? 'valid' : r.made[0]!.text.includes(' created') ? 'configured' : 'unchanged', dataVolumes: r.made.map((x) => x.view) });
        out.push(`${r.made[0]!.text}\n`);
        continue;
      }
      // A VMI as written, or the VMI a VM expands to.
      let vmi: unknown = d.value;
      let fromVm = '';
      if (d.type === 'vm') {
        const r = vmToVmi(d.value, lookup);
        if (!r.ok) {
          refuse(e, { violations: r.violations }, violationLines('rejected', r.violations));
          continue;
        }
        // virt-controller creates the templates' DataVolumes before the VMI; the VMI then waits for them.
        const made = await dataVolumes(r.dataVolumes, (i) => `spec.dataVolumeTemplates[${i}].`);
        if ('refused' in made) {
          refuse(e, { violations: made.refused, message: made.message }, made.refused.length === 0 ? made.message : violationLines(made.message.includes('dry run') ? made.message : 'rejected by virt-handler', made.refused));
          continue;
        }
        for (const m of made.made) out.push(opts.dryRun ? `${m.text}\n` : `virtualmachine ${(r.vmi.metadata as { namespace?: string }).namespace ?? 'default'}/${d.name}: ${m.text}\n`);
        vmi = r.vmi;
        fromVm = ` (runStrategy ${r.runStrategy}${r.instancetype ? `, ${describeObject(r.instancetype)}` : ''}${r.preference ? `, ${describeObject(r.preference)}` : ''})`;
      }
      const mapPath = (vs: readonly FieldViolation[]): FieldViolation[] => (d.type === 'vm' ? vs.map((v) => ({ ...v, field: vmFieldPath(v.field) })) : [...vs]);
      if (validation !== null) {
        // KubeVirt's webhook defaults, as the daemon applies them, so the VMI printed is the one stored.
        vmi = defaultVmi(vmi);
        const r = validateVmi(vmi, validation);
        if (!r.ok) {
          const vs = mapPath(r.violations);
          refuse(e, { violations: vs }, violationLines(plain ? 'manifest rejected by local validation (dry run)' : 'rejected by local validation (dry run)', vs));
          continue;
        }
        outcomes.push({ ...base(e), result: 'valid', vmi: redactSecrets(vmi) });
        out.push(`# ${labelOf(e)}: valid${fromVm}\n${toYaml(redactSecrets(vmi), { lineWidth: 0 })}`);
        continue;
      }
      if (client === null) {
        preflight(opts.socket);
        client = newClient(opts.socket, 'VmiClient');
      }
      const manifest = e.text !== null && d.type === 'vmi' ? e.text : JSON.stringify(vmi);
      let res: { vmi: WireVmi | null; changed: boolean };
      try {
        res = await unary<{ vmi: WireVmi | null; changed: boolean }>(client, 'SyncVMI', { manifest }, opts.timeoutMs);
      } catch (err) {
        if (!isServiceError(err)) throw err;
        if (err.code !== grpc.status.INVALID_ARGUMENT) throw new CliError(describeCallError(err, { socket: opts.socket, timeoutMs: opts.timeoutMs, action: 'create' }));
        const vs = mapPath(decodeViolations(err.metadata));
        const head = plain ? 'manifest rejected by virt-handler' : 'rejected by virt-handler';
        refuse(e, { violations: vs, message: err.details }, vs.length === 0 ? `${head}: ${err.details}` : violationLines(head, vs));
        continue;
      }
      const v = res.vmi;
      if (!v) throw new CliError('virt-handler answered SyncVMI without a VMI');
      const result = res.changed ? 'configured' : 'unchanged';
      outcomes.push({ ...base(e), result, vmi: displayObject(v) });
      if (plain && (opts.output === 'json' || opts.output === 'yaml')) out.push(render({ changed: res.changed, vmi: displayObject(v) }, opts.output));
      else if (plain) out.push(`vmi ${v.namespace}/${v.name} ${result}\n${table([['NAME', 'UID', 'PHASE'], [v.name, v.uid || '-', phaseOf(v)]]).join('\n')}\n`);
      else out.push(`${d.type === 'vm' ? `virtualmachine ${v.namespace}/${d.name}: ` : ''}vmi ${v.namespace}/${v.name} ${result}${fromVm}\n`);
    }
  } finally {
    (client as grpc.Client | null)?.close();
    (dvClient as grpc.Client | null)?.close();
  }
  if (opts.output === 'json' || opts.output === 'yaml') {
    if (!plain) process.stdout.write(render({ items: outcomes }, opts.output));
    else if (opts.dryRun && refused === 0) process.stdout.write(render(outcomes[0]!.vmi, opts.output));
    else process.stdout.write(out.join(''));
  } else {
    process.stdout.write(opts.dryRun ? out.join('---\n') : out.join(''));
  }
  return refused > 0 ? EXIT.ERROR : EXIT.OK;
}

function base(e: Entry): Pick<Outcome, 'document' | 'file' | 'kind' | 'name'> {
  const kind = e.doc.type === 'vmi' ? 'VirtualMachineInstance' : e.doc.type === 'vm' ? 'VirtualMachine' : e.doc.type === 'dataVolume' ? 'DataVolume' : e.doc.kind;
  return { document: e.doc.index, file: where(e.file), kind, name: e.doc.name };
}
