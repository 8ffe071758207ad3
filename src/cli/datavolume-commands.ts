/**
 * vhctl's DataVolume commands over virthandler.v1.DataVolumeService: `get dv [NAME]`,
 * `delete dv NAME`, `upload dv NAME --image-path FILE`, and the creation create.ts uses for
 * DataVolume documents and a VirtualMachine's dataVolumeTemplates.
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CliError, EXIT, describeCallError, isServiceError, newClient, preflight, table, unary, withClient } from './common';
import { decodeViolations, render, type VmiOptions } from './vmi-commands';

export interface WireDataVolume {
  uid: string;
  namespace: string;
  name: string;
  specJson: string;
  createdAt: string;
  deleting: boolean;
  status: { phase: string; progress: string; restartCount: number; claimName: string; conditions: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }> } | null;
  events: Array<{ type: string; reason: string; message: string; time: string }>;
}

export interface DataVolumeOptions extends VmiOptions {
  /** upload: the image file. */
  imagePath: string;
}

/** Resource words that name DataVolumes on the command line (kubectl's short name and plural). */
export const DV_WORDS = ['dv', 'dvs', 'datavolume', 'datavolumes'];

const UPLOAD_CHUNK = 1024 * 1024;

/** The DataVolume as vhctl shows it in json/yaml: a CDI-like object. */
export function displayDataVolume(v: WireDataVolume): Record<string, unknown> {
  let manifest: Record<string, unknown> = {};
  try {
    manifest = JSON.parse(v.specJson) as Record<string, unknown>;
  } catch {
    /* not from this daemon */
  }
  return {
    apiVersion: 'cdi.kubevirt.io/v1beta1',
    kind: 'DataVolume',
    metadata: { name: v.name, namespace: v.namespace, uid: v.uid, creationTimestamp: v.createdAt, ...(v.deleting ? { deletionTimestamp: 'pending' } : {}) },
    spec: manifest.spec,
    status: v.status,
    events: v.events,
  };
}

export function age(createdAt: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(createdAt)) / 1000));
  if (!Number.isFinite(s)) return '-';
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** kubectl's DataVolume columns: NAME PHASE PROGRESS RESTARTS AGE. */
export function renderDataVolumeTable(dvs: readonly WireDataVolume[], withNamespace: boolean): string {
  const head = [...(withNamespace ? ['NAMESPACE'] : []), 'NAME', 'PHASE', 'PROGRESS', 'RESTARTS', 'AGE'];
  const rows = dvs.map((d) => [...(withNamespace ? [d.namespace] : []), d.name, d.status?.phase ?? 'Unknown', d.status?.progress || 'N/A', String(d.status?.restartCount ?? 0), age(d.createdAt)]);
  return table([head, ...rows]).join('\n') + '\n';
}

export type CreateOutcome = { ok: true; dv: WireDataVolume; changed: boolean } | { ok: false; violations: Array<{ field: string; message: string }>; message: string };

/** CreateDataVolume; INVALID_ARGUMENT and ALREADY_EXISTS become refusals, other failures throw CliError. */
export async function createDataVolume(client: grpc.Client, manifest: string, opts: VmiOptions): Promise<CreateOutcome> {
  try {
    const res = await unary<{ dataVolume: WireDataVolume | null; changed: boolean }>(client, 'CreateDataVolume', { manifest }, opts.timeoutMs);
    if (!res.dataVolume) throw new CliError('virt-handler answered CreateDataVolume without a DataVolume');
    return { ok: true, dv: res.dataVolume, changed: res.changed };
  } catch (err) {
    if (!isServiceError(err)) throw err;
    if (err.code === grpc.status.INVALID_ARGUMENT || err.code === grpc.status.ALREADY_EXISTS) return { ok: false, violations: decodeViolations(err.metadata), message: err.details };
    throw new CliError(describeCallError(err, { socket: opts.socket, timeoutMs: opts.timeoutMs, action: 'create DataVolume' }));
  }
}

export async function cmdGetDataVolumes(opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  if (opts.name) {
    const v = await withClient(opts, 'DataVolumeClient', (c) => unary<WireDataVolume>(c, 'GetDataVolume', { namespace: opts.namespace, name: opts.name }, opts.timeoutMs), { subject: `datavolume ${opts.namespace}/${opts.name}`, action: 'get' });
    process.stdout.write(opts.output === 'json' || opts.output === 'yaml' ? render(displayDataVolume(v), opts.output) : renderDataVolumeTable([v], false));
    return EXIT.OK;
  }
  const namespace = opts.allNamespaces ? '' : opts.namespace;
  const res = await withClient(opts, 'DataVolumeClient', (c) => unary<{ dataVolumes: WireDataVolume[] }>(c, 'ListDataVolumes', { namespace }, opts.timeoutMs), { action: 'list DataVolumes' });
  if (opts.output === 'json' || opts.output === 'yaml') process.stdout.write(render({ items: res.dataVolumes.map(displayDataVolume) }, opts.output));
  else if (res.dataVolumes.length === 0) process.stderr.write(opts.allNamespaces ? 'No DataVolumes found.\n' : `No DataVolumes found in namespace ${namespace}.\n`);
  else process.stdout.write(renderDataVolumeTable(res.dataVolumes, opts.allNamespaces));
  return EXIT.OK;
}

export async function cmdDeleteDataVolume(opts: VmiOptions): Promise<number> {
  preflight(opts.socket);
  await withClient(opts, 'DataVolumeClient', (c) => unary<WireDataVolume>(c, 'DeleteDataVolume', { namespace: opts.namespace, name: opts.name }, opts.timeoutMs), { subject: `datavolume ${opts.namespace}/${opts.name}`, action: 'delete' });
  process.stdout.write(`datavolume ${opts.namespace}/${opts.name} deleted\n`);
  return EXIT.OK;
}

/** Streams the file (1 MiB messages), printing progress to stderr; then reports the phase. */
export async function cmdUploadDataVolume(opts: DataVolumeOptions): Promise<number> {
  preflight(opts.socket);
  let size: number;
  try {
    const st = fs.statSync(opts.imagePath);
    if (!st.isFile()) throw new CliError(`--image-path ${opts.imagePath}: not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`--image-path ${opts.imagePath}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const client = newClient(opts.socket, 'DataVolumeClient');
  const subject = `datavolume ${opts.namespace}/${opts.name}`;
  try {
    const res = await new Promise<{ dataVolume: WireDataVolume | null; bytes: number }>((resolve, reject) => {
      const fn = (client as unknown as Record<string, (o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: { dataVolume: WireDataVolume | null; bytes: number }) => void) => grpc.ClientWritableStream<object>>).Upload!;
      const call = fn.call(client, {}, (err, v) => (err ? reject(err) : resolve(v!)));
      void (async () => {
        let sent = 0;
        let lastPrint = 0;
        let first = true;
        try {
          for await (const chunk of fs.createReadStream(opts.imagePath, { highWaterMark: UPLOAD_CHUNK })) {
            const data = chunk as Buffer;
            const msg = first ? { ref: { namespace: opts.namespace, name: opts.name }, data } : { data };
            first = false;
            if (!call.write(msg)) await new Promise((r) => call.once('drain', r));
            sent += data.length;
            if (Date.now() - lastPrint > 500 || sent === size) {
              lastPrint = Date.now();
              process.stderr.write(`uploading ${subject}: ${sent}/${size} bytes (${size > 0 ? ((sent / size) * 100).toFixed(2) : '100.00'}%)\n`);
            }
          }
          if (first) call.write({ ref: { namespace: opts.namespace, name: opts.name } });
          call.end();
        } catch (e) {
          call.cancel();
          reject(new CliError(`reading ${opts.imagePath}: ${(e as Error).message}`));
        }
      })();
    });
    process.stdout.write(`${subject}: uploaded ${res.bytes} bytes; phase ${res.dataVolume?.status?.phase ?? 'Unknown'} (watch with: vhctl get dv ${opts.name} -n ${opts.namespace})\n`);
    return EXIT.OK;
  } catch (e) {
    if (isServiceError(e)) throw new CliError(describeCallError(e, { socket: opts.socket, timeoutMs: opts.timeoutMs, subject, action: 'upload to' }));
    throw e;
  } finally {
    client.close();
  }
}
