/**
 * The safe tar reader: takes only the wanted files out of an image's layers, never materialises
 * the image's tree (so no entry can write outside our directory whatever its name or links) and
 * still refuses hostile layers outright, so a bad image fails loudly rather than half-working:
 * `..` in a name, device nodes and FIFOs, symlinks whose relative target climbs above the image
 * root, hard links outside it. A wanted path must be a regular file. OCI whiteouts (`.wh.name`,
 * `.wh..wh..opq`) from upper layers remove what lower layers provided. Each layer is read once:
 * its bytes are hashed while they are parsed, and the sha256 and size must match the manifest.
 * Before a wanted file is written its size is checked against the store's limit and the file
 * system's free space (statfs).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { ImageError, isImageError } from './errors';
import type { LayerRef } from './layout';

/** A wanted file taken out of the layers. */
export interface ExtractedFile {
  /** Its path in the image, without the leading `/`. */
  imagePath: string;
  /** Where it was written (inside outDir). */
  file: string;
  size: number;
}

/** Bounds checked before a wanted file is written. */
export interface ExtractLimits {
  /** Total bytes of wanted files. */
  maxBytes: number;
  /** Free bytes of the destination file system now. */
  freeBytes: () => number;
}

/** Canonical in-image path of a tar entry name; throws UnsafePath for `..` and NUL. */
export function entryPath(name: string): string {
  if (name.includes('\0')) throw new ImageError('UnsafePath', `a layer has an entry name with a NUL byte`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ImageError('UnsafePath', `a layer has an entry ${JSON.stringify(name)} with '..': refused (path traversal)`, { entry: name });
  return parts.join('/');
}

/** True when a symlink at `at` with target `target` stays inside the image root. */
function linkStaysInside(at: string, target: string): boolean {
  if (target.startsWith('/')) return true; // container semantics: absolute targets resolve under the image root
  let depth = at.split('/').length - 1;
  for (const p of target.split('/')) {
    if (p === '' || p === '.') continue;
    depth += p === '..' ? -1 : 1;
    if (depth < 0) return false;
  }
  return true;
}

function drain(s: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    s.on('end', resolve);
    s.on('error', reject);
    s.resume();
  });
}

async function hashFile(file: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of fs.createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

function layerMismatch(l: LayerRef, got: { digest: string; size: number }, i: number): ImageError | null {
  if (got.size !== l.size) return new ImageError('Truncated', `layer ${i} (${l.digest}) is ${got.size} bytes, the manifest says ${l.size}`, { layer: l.digest });
  if (got.digest !== l.digest) return new ImageError('DigestMismatch', `layer ${i} hashes to ${got.digest}, the manifest says ${l.digest}`, { layer: l.digest });
  return null;
}

/** What one layer contributed: its wanted files, its whiteouts, and the digest and size of its bytes. */
export interface LayerResult {
  digest: string;
  size: number;
  compression: LayerRef['compression'];
  files: Map<string, ExtractedFile>;
  whiteouts: string[];
  opaque: string[];
}

/** Files written into an extraction directory, so a failure can remove them all. */
export class ExtractionFiles {
  private seq = 0;
  readonly created: string[] = [];

  constructor(readonly dir: string) {}

  next(): string {
    const f = path.join(this.dir, `extract-${this.seq++}`);
    this.created.push(f);
    return f;
  }

  removeAll(): void {
    for (const f of this.created) fs.rmSync(f, { force: true });
  }
}

/**
 * Reads one layer from `src` (compressed bytes as stored): hashes them and takes out the wanted
 * files. Hostile entries throw; the digest is NOT compared here (the caller knows the descriptor).
 */
export async function readLayer(
  src: Readable,
  compression: LayerRef['compression'],
  label: string,
  want: (imagePath: string) => boolean,
  out: ExtractionFiles,
  limits: ExtractLimits,
  onBytes?: (n: number) => void,
): Promise<LayerResult> {
  const r: LayerResult = { digest: '', size: 0, compression, files: new Map(), whiteouts: [], opaque: [] };
  const hash = createHash('sha256');
  src.on('data', (c: Buffer) => {
    hash.update(c);
    r.size += c.length;
    onBytes?.(c.length);
  });
  const ex = tar.extract();
  const piped = compression === 'gzip' ? pipeline(src, zlib.createGunzip({ chunkSize: 1 << 20 }), ex) : pipeline(src, ex);
  piped.catch(() => undefined); // observed below
  let written = 0;
  try {
    for await (const e of ex) {
      const entry = e as unknown as Readable & { header: tar.Header };
      const h = entry.header;
      const p = entryPath(h.name);
      const type = h.type ?? 'file';
      if (type === 'character-device' || type === 'block-device' || type === 'fifo') {
        throw new ImageError('SpecialFile', `${label} has a ${type} ${JSON.stringify(h.name)}: device nodes and FIFOs are refused in disk images`, { entry: h.name });
      }
      if (type === 'symlink' || type === 'link') {
        const target = h.linkname ?? '';
        const inside = type === 'symlink' ? linkStaysInside(p, target) : !target.split('/').includes('..');
        if (!inside) throw new ImageError('LinkEscape', `${label} has a ${type} ${JSON.stringify(h.name)} -> ${JSON.stringify(target)} pointing outside the image`, { entry: h.name, target });
        if (want(p)) throw new ImageError('NotRegularFile', `${JSON.stringify('/' + p)} in ${label} is a ${type}, not a regular file`, { entry: h.name });
        await drain(entry);
        continue;
      }
      if (type !== 'file' && type !== 'contiguous-file') {
        if (type === 'directory' && want(p)) throw new ImageError('NotRegularFile', `${JSON.stringify('/' + p)} in ${label} is a directory`, { entry: h.name });
        await drain(entry);
        continue;
      }
      const base = path.posix.basename(p);
      if (base === '.wh..wh..opq') {
        r.opaque.push(path.posix.dirname(p));
      } else if (base.startsWith('.wh.')) {
        r.whiteouts.push(path.posix.join(path.posix.dirname(p), base.slice(4)));
      } else if (want(p)) {
        const size = h.size ?? 0;
        if (written + size > limits.maxBytes) {
          throw new ImageError('TooLarge', `${JSON.stringify('/' + p)} is ${size} bytes: over the image store's limit of ${limits.maxBytes} bytes (images.maxImageSize)`, { entry: h.name, size });
        }
        const free = limits.freeBytes();
        if (size > free) throw new ImageError('NoSpace', `${JSON.stringify('/' + p)} is ${size} bytes but the image store has ${free} bytes free`, { entry: h.name, size, free });
        const file = out.next();
        await pipeline(entry, fs.createWriteStream(file, { mode: 0o600, highWaterMark: 1 << 20 }));
        const prev = r.files.get(p);
        if (prev !== undefined) fs.rmSync(prev.file, { force: true });
        r.files.set(p, { imagePath: p, file, size });
        written += size;
        continue;
      }
      await drain(entry);
    }
    await piped;
  } catch (e) {
    src.destroy();
    await piped.catch(() => undefined);
    throw e;
  }
  r.digest = `sha256:${hash.digest('hex')}`;
  return r;
}

/**
 * Reads `layers` in order (or takes a layer's result from `pre`, read while skopeo wrote it, when
 * its digest and size match) and returns the files present in the final image (after whiteouts),
 * keyed by image path. On failure every file it wrote is removed.
 */
export async function extractLayers(
  layers: readonly LayerRef[],
  want: (imagePath: string) => boolean,
  outDir: string,
  limits: ExtractLimits,
  onBytes?: (n: number) => void,
  pre: ReadonlyMap<string, LayerResult> = new Map(),
): Promise<Map<string, ExtractedFile>> {
  const out = new ExtractionFiles(outDir);
  try {
    const result = new Map<string, ExtractedFile>();
    let total = 0;
    for (const [i, layer] of layers.entries()) {
      let r = pre.get(layer.digest);
      if (r === undefined || r.size !== layer.size || r.compression !== layer.compression) r = await readVerified(layer, i, want, out, limits, onBytes);
      const gone = (p: string, dir: string): boolean => dir === '.' || p === dir || p.startsWith(`${dir}/`);
      for (const [p, f] of result) {
        if (r.whiteouts.some((w) => gone(p, w)) || r.opaque.some((d) => gone(p, d) && p !== d)) {
          fs.rmSync(f.file, { force: true });
          result.delete(p);
        }
      }
      for (const [p, f] of r.files) {
        const old = result.get(p);
        if (old !== undefined) fs.rmSync(old.file, { force: true });
        result.set(p, f);
        total += f.size;
      }
      if (total > limits.maxBytes) throw new ImageError('TooLarge', `the wanted files of the image are ${total} bytes: over the image store's limit of ${limits.maxBytes} bytes (images.maxImageSize)`);
    }
    return result;
  } catch (e) {
    out.removeAll();
    for (const r of pre.values()) for (const f of r.files.values()) fs.rmSync(f.file, { force: true });
    throw e;
  }
}

async function readVerified(layer: LayerRef, i: number, want: (p: string) => boolean, out: ExtractionFiles, limits: ExtractLimits, onBytes?: (n: number) => void): Promise<LayerResult> {
  let r: LayerResult;
  try {
    r = await readLayer(fs.createReadStream(layer.file, { highWaterMark: 1 << 20 }), layer.compression, `layer ${i}`, want, out, limits, onBytes);
  } catch (e) {
    // A corrupt layer usually breaks gunzip or the tar parser first; its digest is the real story.
    if (!isImageError(e) || e.reason !== 'TooLarge') {
      const mismatch = layerMismatch(layer, await hashFile(layer.file).catch(() => ({ digest: '', size: -1 })), i);
      if (mismatch !== null) throw mismatch;
    }
    if (isImageError(e)) throw e;
    throw new ImageError('BadLayout', `layer ${i} (${layer.digest}) is not a valid ${layer.compression === 'gzip' ? 'gzip-compressed ' : ''}tar: ${(e as Error).message}`, { layer: layer.digest }, { cause: e });
  }
  const mismatch = layerMismatch(layer, r, i);
  if (mismatch !== null) throw mismatch;
  return r;
}
