/**
 * vhctl's VMI commands over virthandler.v1.VmiService: get, list, delete, pause, unpause,
 * soft-reboot, shutdown. (create lives in create.ts, console in console.ts.)
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { loadProtos } from '../grpc/proto';
import { MAX_SEND_BYTES } from '../grpc/server';
import { redactSecret, redactSecrets } from '../vmi/spec/redact';
import { CliError, EXIT, describeCallError, isServiceError, newClient, preflight, table, unary, withClient, type CommonOptions } from './common';

/** Trailing-metadata key of the serialized virthandler.v1.FieldViolations on INVALID_ARGUMENT. */
export const VIOLATIONS_TRAILER = 'vh-field-violations-bin';
/** delete --wait without --timeout waits this long. */
export const DEFAULT_WAIT_MS = 120_000;

export type VmiOutput = 'table' | 'wide' | 'json' | 'yaml';

export interface VmiOptions extends CommonOptions {
  output: VmiOutput;
  namespace: string;
  allNamespaces: boolean;
  name: string;
  /** create: every -f, in order. */
  files: string[];
  /** create: validate and print, change nothing. */
  dryRun: boolean;
  wait: boolean;
}

/** A decoded virthandler.v1.Vmi (LOADER_OPTIONS: camelCase, defaults filled, int64 as number). */
export interface WireVmi {
  uid: string;
  namespace: string;
  name: string;
  generation: number;
  specJson: string;
  status: {
    phase: string;
    reason: string;
    conditions: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }>;
    nodeName: string;
    launcherPid: number;
    interfaces: Array<{ name: string; mac: string; ipAddress: string }>;
    domainState: string;
  } | null;
  revision: number;
  deleting: boolean;
}

interface WatchEvent {
  type: string;
  vmi: WireVmi | null;
  revision: number;
}

/**
 * The VMI as vhctl shows it in json/yaml: a kubevirt-like object with the spec parsed. Secrets
 * are redacted here too (`<redacted: N bytes, sha256:HEX>`): the daemon already does, but a
 * terminal, a pasted bug report or CI log must not get them from an older daemon either.
 */
export function displayObject(v: WireVmi): Record<string, unknown> {
  let spec: unknown;
  try {
    const parsed = JSON.parse(v.specJson) as Record<string, unknown> | null;
    // spec_json is "the stored desired state": accept a whole manifest as well as a bare spec.
    spec = redactSecrets(parsed && typeof parsed === 'object' && 'spec' in parsed && 'metadata' in parsed ? parsed.spec : parsed);
  } catch {
    // not JSON (not from this daemon): it cannot be redacted field by field, so not shown at all
    spec = redactSecret(v.specJson);
  }
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name: v.name, namespace: v.namespace, uid: v.uid, generation: v.generation, revision: v.revision, deleting: v.deleting },
    spec,
    status: v.status,
  };
}

export function phaseOf(v: WireVmi): string {
  const phase = v.status?.phase || 'Unknown';
  return v.deleting ? `${phase} (deleting)` : phase;
}

function shorten(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** The get/list table; `wide` adds uid, generation, node, domain state and IPs, and keeps reasons whole. */
export function renderVmiTable(vmis: readonly WireVmi[], wide: boolean): string {
  const head = ['NAMESPACE', 'NAME', 'PHASE', 'REASON', 'LAUNCHER', 'REVISION'];
  if (wide) head.push('UID', 'GENERATION', 'NODE', 'DOMAIN', 'IP');
  const rows = vmis.map((v) => {
    const s = v.status;
    const row = [v.namespace, v.name, phaseOf(v), (wide ? s?.reason : shorten(s?.reason ?? '', 48)) || '-', s?.launcherPid ? String(s.launcherPid) : '-', String(v.revision)];
    if (wide) {
      const ips = (s?.interfaces ?? []).map((i) => i.ipAddress).filter(Boolean).join(',');
      row.push(v.uid || '-', String(v.generation), s?.nodeName || '-', s?.domainState || '-', ips || '-');
    }
    return row;
  });
  return table([head, ...rows]).join('\n') + '\n';
}

export function render(value: unknown, output: 'json' | 'yaml'): string {
  // lineWidth 0: long values (redaction markers, reasons) stay on one line, whole for grep and sha256sum.
  return output === 'json' ? JSON.stringify(value, null, 2) + '\n' : toYaml(value, { lineWidth: 0 });
}

function ref(opts: VmiOptions): { namespace: string; name: string } {
  return { namespace: opts.namespace, name: opts.name };
}

function subject(opts: VmiOptions): string {
  return `vmi ${opts.namespace}/${opts.name}`;
}

/** The violations carried by an INVALID_ARGUMENT's trailing metadata; [] when absent or unreadable. */
export function decodeViolations(metadata: grpc.Metadata | undefined): Array<{ field: string; message: string }> {
  const values = metadata?.get(VIOLATIONS_TRAILER) ?? [];
  const type = loadProtos().messageType('virthandler.v1.FieldViolations');
  const out: Array<{ field: string; message: string }> = [];
  for (const v of values) {
    if (!Buffer.isBuffer(v)) continue;
    try {
      const decoded = type.toObject(type.decode(v), { defaults: true, arrays: true }) as { violations: Array<{ field: string; message: string }> };
      out.push(...decoded.violations);
    } catch {
      // a malformed trailer: the status message still says what is wrong
    }
  }
  return out;
}

/** `manifest rejected ...` with one `  <field>: <message>` line per violation. */
export function describeViolations(err: grpc.ServiceError): string | null {
  if (err.code !== grpc.status.INVALID_ARGUMENT) return null;
  const violations = decodeViolations(err.metadata);
  if (violations.length === 0) return `manifest rejected by virt-handler: ${err.details}`;
  const n = violations.length;
  return [`manifest rejected by virt-handler (${n} violation${n === 1 ? '' : 's'}):`, ...violations.map((v) => `  ${v.field || '(manifest)'}: ${v.message}`)].join('\n');
}

export function readManifest(file: string): string {
  let buf: Buffer;
  try {
    buf = file === '-' ? fs.readFileSync(0) : fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const where = file === '-' ? 'stdin' : file;
    throw new CliError(code === 'ENOENT' ? `cannot read ${where}: no such file` : code === 'EISDIR' ? `cannot read ${where}: is a directory` : `cannot read ${where}: ${(e as Error).message}`);
  }
  if (buf.length > MAX_SEND_BYTES) throw new CliError(`manifest ${file === '-' ? 'on stdin' : file} is ${buf.length} bytes; at most ${MAX_SEND_BYTES}`);
  const text = buf.toString('utf8');
  if (text.trim() === '') throw new CliError(`manifest ${file === '-' ? 'on stdin' : file} is empty`);
  return text;
}

export async function cmdGet(opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  const v = await withClient(opts, 'VmiClient', (c) => unary<WireVmi>(c, 'GetVMI', ref(opts), opts.timeoutMs), { subject: subject(opts), action: 'get' });
  if (opts.output === 'json' || opts.output === 'yaml') process.stdout.write(render(displayObject(v), opts.output));
  else process.stdout.write(renderVmiTable([v], opts.output === 'wide'));
  return EXIT.OK;
}

export async function cmdList(opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  const namespace = opts.allNamespaces ? '' : opts.namespace;
  const res = await withClient(opts, 'VmiClient', (c) => unary<{ vmis: WireVmi[]; revision: number }>(c, 'ListVMIs', { namespace }, opts.timeoutMs), { action: 'list VMIs' });
  const vmis = [...res.vmis].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  if (opts.output === 'json' || opts.output === 'yaml') {
    process.stdout.write(render({ revision: res.revision, items: vmis.map(displayObject) }, opts.output));
  } else if (vmis.length === 0) {
    process.stderr.write(opts.allNamespaces ? 'No VMIs found.\n' : `No VMIs found in namespace ${namespace}.\n`);
  } else {
    process.stdout.write(renderVmiTable(vmis, opts.output === 'wide'));
  }
  return EXIT.OK;
}

/** The gRPC method and the past tense printed on success, per action command. */
export const ACTIONS = {
  pause: { method: 'Pause', done: 'paused' },
  unpause: { method: 'Unpause', done: 'unpaused' },
  'soft-reboot': { method: 'SoftReboot', done: 'soft-rebooted' },
  shutdown: { method: 'Shutdown', done: 'shutting down' },
} as const;
export type ActionCommand = keyof typeof ACTIONS;

export async function cmdAction(action: ActionCommand, opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  const { method, done } = ACTIONS[action];
  const v = await withClient(opts, 'VmiClient', (c) => unary<WireVmi>(c, method, ref(opts), opts.timeoutMs), { subject: subject(opts), action });
  const domain = v.status?.domainState ? `, domain ${v.status.domainState}` : '';
  process.stdout.write(`vmi ${opts.namespace}/${opts.name} ${done} (phase ${phaseOf(v)}${domain})\n`);
  return EXIT.OK;
}

export async function cmdDelete(opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  const ctx = { subject: subject(opts), action: 'delete' };
  const client = newClient(opts.socket, 'VmiClient');
  try {
    // The revision before the delete: watching from it cannot miss the DELETED event.
    const before = opts.wait ? await unary<{ revision: number }>(client, 'ListVMIs', { namespace: opts.namespace }, opts.timeoutMs) : null;
    const res = await unary<{ vmi: WireVmi | null }>(client, 'DeleteVMI', ref(opts), opts.timeoutMs);
    process.stdout.write(`vmi ${opts.namespace}/${opts.name} deleting\n`);
    if (!before) return EXIT.OK;
    const waitMs = opts.timeoutSet ? opts.timeoutMs : DEFAULT_WAIT_MS;
    await waitDeleted(client, opts, res.vmi?.uid ?? '', before.revision, waitMs);
    process.stdout.write(`vmi ${opts.namespace}/${opts.name} deleted\n`);
    return EXIT.OK;
  } catch (e) {
    if (isServiceError(e)) throw new CliError(describeCallError(e, { socket: opts.socket, timeoutMs: opts.timeoutMs, ...ctx }));
    throw e;
  } finally {
    client.close();
  }
}

/** Resolves on the DELETED event for the VMI (by uid when known); CliError on timeout. */
async function waitDeleted(client: grpc.Client, opts: VmiOptions, uid: string, sinceRevision: number, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  const timeoutError = (): CliError => new CliError(`timed out after ${waitMs} ms waiting for vmi ${opts.namespace}/${opts.name} to be deleted (it is still being torn down; raise --timeout?)`);
  const matches = (v: WireVmi | null): boolean => !!v && v.namespace === opts.namespace && v.name === opts.name && (!uid || !v.uid || v.uid === uid);
  const outcome = await new Promise<'deleted' | 'ended' | 'out-of-range'>((resolve, reject) => {
    const watchFn = (client as unknown as Record<string, (r: object, o: grpc.CallOptions) => grpc.ClientReadableStream<WatchEvent>>).WatchVMIs!;
    const call = watchFn.call(client, { sinceRevision, namespace: opts.namespace }, {});
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call.removeAllListeners('data');
      call.on('error', () => {}); // the cancel below surfaces as CANCELLED
      call.cancel();
      f();
    };
    const timer = setTimeout(() => settle(() => reject(timeoutError())), Math.max(0, deadline - Date.now()));
    call.on('data', (ev: WatchEvent) => {
      if (ev.type === 'DELETED' && matches(ev.vmi)) settle(() => resolve('deleted'));
    });
    call.on('error', (err: grpc.ServiceError) => settle(() => (err.code === grpc.status.OUT_OF_RANGE ? resolve('out-of-range') : reject(err))));
    call.on('end', () => settle(() => resolve('ended')));
  });
  if (outcome === 'deleted') return;
  // History too short, or the stream ended: poll until GetVMI says NOT_FOUND.
  for (;;) {
    try {
      const v = await unary<WireVmi>(client, 'GetVMI', { namespace: opts.namespace, name: opts.name }, Math.max(1, Math.min(opts.timeoutMs, deadline - Date.now())));
      if (uid && v.uid && v.uid !== uid) return; // a new VMI with the same name: ours is gone
    } catch (e) {
      if (isServiceError(e) && e.code === grpc.status.NOT_FOUND) return;
      if (!(isServiceError(e) && e.code === grpc.status.DEADLINE_EXCEEDED)) throw e;
    }
    if (Date.now() >= deadline) throw timeoutError();
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
  }
}
