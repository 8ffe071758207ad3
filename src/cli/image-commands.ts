/**
 * vhctl's image commands over virthandler.v1.ImageService: list, pull (with progress), import
 * (streams an oci-archive or docker-archive file to the daemon, for air-gapped nodes), rm, gc.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { CliError, EXIT, UsageError, preflight, table, unary, withClient, type CommonOptions } from './common';

export const IMAGE_SUBCOMMANDS = ['list', 'pull', 'import', 'rm', 'gc'] as const;
export type ImageSubcommand = (typeof IMAGE_SUBCOMMANDS)[number];
const POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
/** Bytes per ImportImage chunk (the daemon takes messages up to 4 MiB). */
export const IMPORT_CHUNK = 1024 * 1024;

/** What `vhctl image ...` was asked. */
export interface ImageArgs {
  sub: ImageSubcommand;
  /** pull: the reference; import: the file; rm: the reference or digest. */
  target: string;
  policy: string;
  tag: string;
  format: 'oci-archive' | 'docker-archive';
  select: { diskPath: string; kernelPath: string; initrdPath: string };
}

export interface ImageOptions extends CommonOptions {
  output: string;
  image: ImageArgs;
}

/** The raw option values parseCli hands over for `image`. */
export interface ImageFlagValues {
  policy?: string | undefined;
  tag?: string | undefined;
  format?: string | undefined;
  'disk-path'?: string | undefined;
  'kernel-path'?: string | undefined;
  'initrd-path'?: string | undefined;
}

/** Parses `image SUB [ARG]` and its flags; UsageError names what is wrong. */
export function parseImageArgs(positionals: readonly string[], v: ImageFlagValues): ImageArgs {
  const sub = positionals[0] as ImageSubcommand | undefined;
  if (sub === undefined) throw new UsageError(`image: missing subcommand (${IMAGE_SUBCOMMANDS.join(', ')})`);
  if (!IMAGE_SUBCOMMANDS.includes(sub)) throw new UsageError(`image: unknown subcommand '${sub}' (expected ${IMAGE_SUBCOMMANDS.join(', ')})`);
  const needs = sub === 'pull' ? 'REF' : sub === 'import' ? 'FILE' : sub === 'rm' ? 'REF|DIGEST' : null;
  const want = needs ? 2 : 1;
  if (positionals.length < want) throw new UsageError(`image ${sub}: missing ${needs}`);
  if (positionals.length > want) throw new UsageError(`unexpected argument '${positionals[want]}'`);
  const allowed: Record<ImageSubcommand, ReadonlyArray<keyof ImageFlagValues>> = {
    list: [], rm: [], gc: [],
    pull: ['policy', 'disk-path', 'kernel-path', 'initrd-path'],
    import: ['tag', 'format', 'disk-path', 'kernel-path', 'initrd-path'],
  };
  for (const k of Object.keys(v) as Array<keyof ImageFlagValues>) {
    if (v[k] !== undefined && !allowed[sub].includes(k)) throw new UsageError(`option --${k} is not valid for 'image ${sub}'`);
  }
  if (v.policy !== undefined && !(POLICIES as readonly string[]).includes(v.policy)) throw new UsageError(`--policy: expected ${POLICIES.join(', ')}, got '${v.policy}'`);
  const format = v.format ?? 'oci-archive';
  if (format !== 'oci-archive' && format !== 'docker-archive') throw new UsageError(`--format: expected oci-archive or docker-archive, got '${format}'`);
  for (const k of ['disk-path', 'kernel-path', 'initrd-path'] as const) {
    const p = v[k];
    if (p !== undefined && (!p.startsWith('/') || p.split('/').includes('..'))) throw new UsageError(`--${k}: expected an absolute path inside the image without '..', got '${p}'`);
  }
  if (v['disk-path'] !== undefined && (v['kernel-path'] !== undefined || v['initrd-path'] !== undefined)) throw new UsageError('--disk-path excludes --kernel-path/--initrd-path');
  const target = positionals[1] ?? '';
  return {
    sub,
    target,
    policy: v.policy ?? '',
    tag: v.tag ?? '',
    format,
    select: { diskPath: v['disk-path'] ?? '', kernelPath: v['kernel-path'] ?? '', initrdPath: v['initrd-path'] ?? '' },
  };
}

/** A decoded virthandler.v1.Image. */
export interface WireImage {
  digest: string;
  references: string[];
  pulledAs: string;
  pulledAt: string;
  lastUsed: string;
  sizeBytes: number;
  allocatedBytes: number;
  inUseBy: string[];
  artifacts: string[];
}

/** 1.5 GiB / 2 MiB / 512 B. */
export function humanBytes(n: number): string {
  for (const [unit, size] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size) return `${(n / size).toFixed(1).replace(/\.0$/, '')} ${unit}`;
  }
  return `${n} B`;
}

/** kubectl's AGE: 45s, 12m, 5h, 3d. */
export function age(since: string, now: number = Date.now()): string {
  const t = Date.parse(since);
  if (!Number.isFinite(t)) return '-';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** The `vhctl image list` table: one row per reference (an image no reference names shows <none>). */
export function renderImageTable(images: readonly WireImage[], now: number = Date.now()): string {
  const rows = images.flatMap((i) => {
    const refs = i.references.length > 0 ? i.references : [`<none> (${i.pulledAs || 'unnamed'})`];
    return refs.map((r) => [r, i.digest.replace(/^sha256:/, '').slice(0, 12), humanBytes(i.sizeBytes), i.inUseBy.length > 0 ? i.inUseBy.join(',') : '-', age(i.pulledAt, now)]);
  });
  return table([['REFERENCE', 'DIGEST', 'SIZE', 'IN-USE', 'AGE'], ...rows]).join('\n') + '\n';
}

/** Streaming calls have no deadline unless --timeout was given (pulls and imports take minutes). */
function streamDeadline(opts: ImageOptions): grpc.CallOptions {
  return opts.timeoutSet ? { deadline: Date.now() + opts.timeoutMs } : {};
}

/** A progress line: rewritten in place on a terminal, one line per phase or 10% step otherwise. */
function progressPrinter(): { line(s: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = '';
  let lastAt = 0;
  return {
    line(s) {
      if (s === last) return;
      if (tty) process.stderr.write(`\r\x1b[K${s}`);
      else if (Date.now() - lastAt >= 2000 || !s.startsWith(last.split(':')[0] ?? '')) process.stderr.write(`${s}\n`);
      else return;
      last = s;
      lastAt = Date.now();
    },
    done() {
      if (tty && last !== '') process.stderr.write('\n');
    },
  };
}

async function cmdImageList(opts: ImageOptions): Promise<number> {
  const res = await withClient(opts, 'ImageClient', (c) => unary<{ images: WireImage[] }>(c, 'ListImages', {}, opts.timeoutMs), { action: 'list images' });
  process.stdout.write(opts.output === 'json' ? JSON.stringify(res.images, null, 2) + '\n' : renderImageTable(res.images));
  return EXIT.OK;
}

interface PullEvent {
  progress: { phase: string; bytes: number; totalBytes: number; message: string } | null;
  result: { image: WireImage | null; pulled: boolean; durationMs: number } | null;
}

async function cmdImagePull(opts: ImageOptions): Promise<number> {
  const a = opts.image;
  const p = progressPrinter();
  const result = await withClient(opts, 'ImageClient', (c) => new Promise<NonNullable<PullEvent['result']>>((resolve, reject) => {
    const call = (c as unknown as { PullImage(req: object, o: grpc.CallOptions): grpc.ClientReadableStream<PullEvent> }).PullImage({ reference: a.target, pullPolicy: a.policy, select: a.select }, streamDeadline(opts));
    let got: PullEvent['result'] = null;
    call.on('data', (ev: PullEvent) => {
      if (ev.progress) p.line(ev.progress.message);
      if (ev.result) got = ev.result;
    });
    call.on('error', (e) => reject(e));
    call.on('end', () => (got ? resolve(got) : reject(new CliError(`pull ${a.target}: the daemon ended the stream without a result`))));
  }), { subject: `image ${a.target}`, action: 'pull' });
  p.done();
  if (opts.output === 'json') process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else {
    const img = result.image;
    process.stdout.write(`${result.pulled ? 'Pulled' : 'Present'} ${a.target} ${img?.digest ?? ''} (${humanBytes(img?.sizeBytes ?? 0)}) in ${(result.durationMs / 1000).toFixed(1)} s\n`);
  }
  return EXIT.OK;
}

async function cmdImageImport(opts: ImageOptions): Promise<number> {
  const a = opts.image;
  const file = path.resolve(a.target);
  let size: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new CliError(`${file} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const p = progressPrinter();
  const res = await withClient(opts, 'ImageClient', (c) => new Promise<{ image: WireImage | null; receivedBytes: number }>((resolve, reject) => {
    const call = (c as unknown as { ImportImage(o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { image: WireImage | null; receivedBytes: number }) => void): grpc.ClientWritableStream<object> })
      .ImportImage(streamDeadline(opts), (e, r) => (e ? reject(e) : resolve(r as { image: WireImage | null; receivedBytes: number })));
    call.write({ metadata: { reference: a.tag, format: a.format, select: a.select, sizeBytes: size } });
    const input = fs.createReadStream(file, { highWaterMark: IMPORT_CHUNK });
    let sent = 0;
    input.on('data', (chunk) => {
      sent += chunk.length;
      p.line(`Sending ${path.basename(file)}: ${humanBytes(sent)} of ${humanBytes(size)} (${size > 0 ? Math.floor((sent / size) * 100) : 100}%)`);
      if (!call.write({ chunk })) {
        input.pause();
        call.once('drain', () => input.resume());
      }
    });
    input.on('end', () => {
      p.line(`Sent ${humanBytes(sent)}; the daemon verifies and extracts the image`);
      call.end();
    });
    input.on('error', (e) => {
      call.cancel();
      reject(new CliError(`reading ${file}: ${e.message}`));
    });
  }), { subject: `image ${a.tag}`, action: 'import' });
  p.done();
  if (opts.output === 'json') process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  else process.stdout.write(`Imported ${a.tag} ${res.image?.digest ?? ''} (${humanBytes(res.image?.sizeBytes ?? 0)}; ${humanBytes(res.receivedBytes)} received)\n`);
  return EXIT.OK;
}

async function cmdImageRm(opts: ImageOptions): Promise<number> {
  const a = opts.image;
  const res = await withClient(opts, 'ImageClient', (c) => unary<{ removed: WireImage }>(c, 'RemoveImage', { image: a.target }, opts.timeoutMs), { subject: `image ${a.target}`, action: 'remove' });
  if (opts.output === 'json') process.stdout.write(JSON.stringify(res.removed, null, 2) + '\n');
  else process.stdout.write(`Removed ${res.removed.digest} (${res.removed.references.join(', ') || res.removed.pulledAs}; ${humanBytes(res.removed.allocatedBytes)})\n`);
  return EXIT.OK;
}

async function cmdImageGc(opts: ImageOptions): Promise<number> {
  const res = await withClient(opts, 'ImageClient', (c) => unary<{ removed: WireImage[]; freedBytes: number }>(c, 'GcImages', {}, opts.timeoutMs), { action: 'gc images' });
  if (opts.output === 'json') process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  else {
    for (const r of res.removed) process.stdout.write(`Removed ${r.digest} (${r.references.join(', ') || r.pulledAs})\n`);
    process.stdout.write(`${res.removed.length} image(s) removed, ${humanBytes(res.freedBytes)} freed\n`);
  }
  return EXIT.OK;
}

export async function cmdImage(opts: ImageOptions): Promise<number> {
  preflight(opts.socket);
  switch (opts.image.sub) {
    case 'list': return cmdImageList(opts);
    case 'pull': return cmdImagePull(opts);
    case 'import': return cmdImageImport(opts);
    case 'rm': return cmdImageRm(opts);
    case 'gc': return cmdImageGc(opts);
  }
}
