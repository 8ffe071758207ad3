/**
 * The CDI-style importer: fills `<targetDir>/disk.img` (raw) from an http(s) URL, a registry
 * image, nothing (blank), an uploaded file or another claim's disk. Every source ends the same
 * way (convert.ts): inspect the image without letting qemu-img probe (probe.ts), refuse what is
 * too large or unsafe, convert into a temporary file beside disk.img, resize, fsync, rename.
 * Scratch and temporary files are removed on success, failure and abort alike; a previous
 * crash's temporary files beside disk.img are removed when the next import of the same claim
 * starts (one import per claim at a time is the controller's rule). The scratch directory may
 * be shared, so only this import's own scratch file is ever removed there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ImportError, type ImportRequest, type ImportResult, type ImportStage, type Importer, type ImporterDeps } from './types';
import { canceled } from './exec';
import { checkHttpSource, download, parseChecksum } from './http-source';
import { inspectImage, type ImageInfo } from './probe';
import { convertInto, createSparse, finalize, localFailure, TEMP_PREFIX, tempPath } from './convert';
import { ProgressReporter } from './progress';
import { hashFile } from './hasher';

export * from './types';
export { checkHttpSource, parseChecksum } from './http-source';

/** Tools, timeouts and seams; every field has a production default. */
export interface ImporterOptions {
  qemuImg?: string;
  xz?: string;
  /** qemu-img info (ms). */
  infoTimeoutMs?: number;
  /** qemu-img convert and xz (ms): a bound on a wedged tool, not on a slow import. */
  convertTimeoutMs?: number;
  /** An http response that sends nothing for this long is retried (ms). */
  idleTimeoutMs?: number;
  maxRedirects?: number;
  progressIntervalMs?: number;
  /** Used when the request has no `retry`. */
  retry?: { attempts: number; baseDelayMs: number; maxDelayMs: number };
  random?: () => number;
  /**
   * Hash an uncompressed download as it streams (on a worker) rather than from the scratch file
   * beside qemu-img convert. Compressed downloads are always hashed in the stream.
   */
  hashInStream?: boolean;
}

const SCRATCH_PREFIX = 'import-';

/** Builds an importer; `deps.pullImage` serves registry sources. */
export function createImporter(deps: ImporterDeps, opts: ImporterOptions = {}): Importer {
  const o = {
    qemuImg: opts.qemuImg ?? 'qemu-img',
    xz: opts.xz ?? 'xz',
    infoTimeoutMs: opts.infoTimeoutMs ?? 60_000,
    convertTimeoutMs: opts.convertTimeoutMs ?? 6 * 3600_000,
    idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
    maxRedirects: opts.maxRedirects ?? 10,
    progressIntervalMs: opts.progressIntervalMs ?? 250,
    retry: opts.retry ?? { attempts: 5, baseDelayMs: 1_000, maxDelayMs: 30_000 },
    random: opts.random ?? Math.random,
    hashInStream: opts.hashInStream ?? false,
  };
  return { run: (req) => runImport(deps, o, req) };
}

type Opts = Required<ImporterOptions>;

interface Ctx {
  req: ImportRequest;
  o: Opts;
  tmp: string;
  scratch: string;
  progress: ProgressReporter;
  step(stage: ImportStage, band: readonly [number, number], fraction: number, done?: number, total?: number | null): void;
  attempt: number;
}

type Outcome = Omit<ImportResult, 'path' | 'durationMs'>;

async function runImport(deps: ImporterDeps, o: Opts, req: ImportRequest): Promise<ImportResult> {
  const started = Date.now();
  if (!Number.isSafeInteger(req.sizeBytes) || req.sizeBytes <= 0) throw new ImportError('InvalidImage', `sizeBytes: ${req.sizeBytes} is not a positive integer`, false);
  for (const [name, dir] of [['targetDir', req.targetDir], ['scratchDir', req.scratchDir]] as const) {
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) throw new ImportError('ConversionFailed', `${name}: ${dir} is not a directory`, false);
  }
  if (req.signal.aborted) throw canceled();
  removeLeftovers(req.targetDir, TEMP_PREFIX);
  const progress = new ProgressReporter(req.onProgress, o.progressIntervalMs);
  const ctx: Ctx = {
    req,
    o,
    tmp: tempPath(req.targetDir),
    scratch: path.join(req.scratchDir, `${SCRATCH_PREFIX}${randomBytes(6).toString('hex')}.part`),
    progress,
    attempt: 1,
    step(stage, band, fraction, done = 0, total = null) {
      progress.report(stage, band, fraction, done, total, this.attempt);
    },
  };
  try {
    const out = await importSource(deps, ctx);
    if (req.signal.aborted) throw canceled();
    ctx.step('Resizing', [99, 99], 1);
    let file: string;
    try {
      file = finalize(ctx.tmp, req.targetDir, req.sizeBytes);
    } catch (e) {
      throw localFailure(e, 'writing disk.img');
    }
    ctx.step('Done', [100, 100], 1);
    return { path: file, durationMs: Date.now() - started, ...out };
  } catch (e) {
    if (req.signal.aborted) throw canceled();
    throw localFailure(e, 'the import');
  } finally {
    fs.rmSync(ctx.tmp, { force: true });
    fs.rmSync(ctx.scratch, { force: true });
  }
}

async function importSource(deps: ImporterDeps, ctx: Ctx): Promise<Outcome> {
  const { req } = ctx;
  const src = req.source;
  switch (src.kind) {
    case 'blank':
      ctx.step('Converting', [0, 99], 0);
      createSparse(ctx.tmp, req.sizeBytes);
      return { virtualSizeBytes: req.sizeBytes, sourceFormat: 'raw', sourceSha256: '', attempts: 1 };
    case 'http':
      return importHttp(ctx, src.url, src.extraHeaders, src.checksum);
    case 'registry': {
      const ref = src.url.replace(/^docker:\/\//, '');
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) throw new ImportError('RegistryPullFailed', `source.registry.url: only docker:// references are supported`, false);
      ctx.step('Downloading', [0, 10], 0);
      let pulled: { path: string; format: 'qcow2' | 'raw' };
      try {
        pulled = await deps.pullImage(ref, req.signal);
      } catch (e) {
        if (req.signal.aborted) throw canceled();
        if (e instanceof ImportError) throw e;
        throw new ImportError('RegistryPullFailed', `pulling ${ref} failed: ${(e as Error).message}`, true, { cause: e });
      }
      return importFile(ctx, pulled.path, `the disk of ${ref}`, [10, 99], pulled.format);
    }
    case 'upload':
      return importFile(ctx, src.file, 'the uploaded image', [0, 99], null);
    case 'pvc':
      return importFile(ctx, src.sourceFile, 'the source claim disk', [0, 99], null);
  }
}

async function importHttp(ctx: Ctx, url: string, extraHeaders: readonly string[], checksum: string | null): Promise<Outcome> {
  const { req, o } = ctx;
  const bad = checkHttpSource(url, extraHeaders, checksum);
  if (bad !== null) throw new ImportError('HttpError', bad, false);
  const want = checksum === null ? null : parseChecksum(checksum);
  ctx.step('Downloading', [0, 90], 0);
  const dl = await download({
    url,
    extraHeaders,
    file: ctx.scratch,
    extraAlgorithm: want === null || want.algorithm === 'sha256' ? null : want.algorithm,
    retry: req.retry ?? o.retry,
    signal: req.signal,
    idleTimeoutMs: o.idleTimeoutMs,
    maxRedirects: o.maxRedirects,
    xzBinary: o.xz,
    childTimeoutMs: o.convertTimeoutMs,
    random: o.random,
    hashInStream: o.hashInStream,
    onProgress: (done, total, attempt) => {
      ctx.attempt = attempt;
      ctx.step('Downloading', [0, 90], total === null || total === 0 ? 0 : done / total, done, total);
    },
  });
  ctx.step('Verifying', [90, 90], 1, dl.bytes, dl.bytes);
  // An uncompressed download is hashed from the scratch file beside the conversion; the
  // checksum is still checked before anything is called disk.img.
  const algorithms = want === null || want.algorithm === 'sha256' ? ['sha256'] : ['sha256', want.algorithm];
  const { sha256, extra, info } = await besideHash(ctx, ctx.scratch, algorithms, dl.digests, async () => {
    const info = await inspect(ctx, ctx.scratch, 'the downloaded image');
    await convert(ctx, ctx.scratch, info, [91, 99]);
    return info;
  });
  if (want !== null) {
    const got = want.algorithm === 'sha256' ? sha256 : (extra as string);
    if (got !== want.hex) throw new ImportError('ChecksumMismatch', `source.http.checksum: the download's ${want.algorithm} is ${got}, ${want.hex} was expected`, false);
  }
  fs.rmSync(ctx.scratch, { force: true });
  return { virtualSizeBytes: info.virtualSizeBytes, sourceFormat: info.format, sourceSha256: sha256, attempts: dl.attempts };
}

/** Runs `work` while a worker hashes `file` (unless `known` digests are given); stops the worker if `work` fails. */
async function besideHash<T>(ctx: Ctx, file: string, algorithms: string[], known: { sha256: string; extra: string | null } | null, work: () => Promise<T>): Promise<{ sha256: string; extra: string | null; info: T }> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  ctx.req.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const hashing = known !== null ? Promise.resolve(known.extra === null ? [known.sha256] : [known.sha256, known.extra]) : hashFile(file, algorithms, stop.signal);
    hashing.catch(() => undefined); // awaited below unless work fails first
    const info = await work();
    let digests: string[];
    try {
      digests = await hashing;
    } catch (e) {
      if (ctx.req.signal.aborted) throw canceled();
      throw localFailure(e, 'hashing the image');
    }
    return { sha256: digests[0] as string, extra: digests[1] ?? null, info };
  } finally {
    stop.abort();
    ctx.req.signal.removeEventListener('abort', onAbort);
  }
}

/** A local image file (upload, claim clone, pulled base): must be a regular file or a block device, not a symlink. */
async function importFile(ctx: Ctx, file: string, what: string, band: readonly [number, number], expected: 'raw' | 'qcow2' | null): Promise<Outcome> {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st === undefined) throw new ImportError('SourceMissing', `${what} (${file}) does not exist`, true);
  if (!st.isFile() && !st.isBlockDevice()) throw new ImportError('SourceMissing', `${what} (${file}) is not a regular file or block device`, false);
  ctx.step('Verifying', [band[0], band[0]], 1);
  const info = await inspect(ctx, file, what);
  if (expected !== null && info.format !== expected) throw new ImportError('InvalidImage', `${what} is ${info.format}, the image store said ${expected}`, false);
  // The source's sha256 is read alongside the conversion: both read the same pages.
  const { sha256 } = await besideHash(ctx, file, ['sha256'], null, () => convert(ctx, file, info, band));
  return { virtualSizeBytes: info.virtualSizeBytes, sourceFormat: info.format, sourceSha256: sha256, attempts: 1 };
}

async function inspect(ctx: Ctx, file: string, what: string): Promise<ImageInfo> {
  const info = await inspectImage(ctx.o.qemuImg, file, what, { signal: ctx.req.signal, timeoutMs: ctx.o.infoTimeoutMs });
  if (info.virtualSizeBytes > ctx.req.sizeBytes) {
    throw new ImportError('TooLarge', `${what} has a virtual size of ${info.virtualSizeBytes} bytes, more than the requested ${ctx.req.sizeBytes}`, false);
  }
  return info;
}

async function convert(ctx: Ctx, src: string, info: ImageInfo, band: readonly [number, number]): Promise<void> {
  ctx.step('Converting', band, 0);
  try {
    createSparse(ctx.tmp, info.virtualSizeBytes);
  } catch (e) {
    throw localFailure(e, 'creating the temporary disk');
  }
  await convertInto(src, info.format, ctx.tmp, {
    qemuImg: ctx.o.qemuImg,
    signal: ctx.req.signal,
    timeoutMs: ctx.o.convertTimeoutMs,
    onPercent: (p) => ctx.step('Converting', band, p / 100),
  });
}

/** Removes files a crashed import left (by prefix); never descends into directories. */
function removeLeftovers(dir: string, prefix: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith(prefix) && !e.isDirectory()) fs.rmSync(path.join(dir, e.name), { force: true });
  }
}
