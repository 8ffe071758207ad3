/**
 * The node image store (KubeVirt containerDisk / kernelBoot.container): pulls an image once,
 * keeps one read-only base per image digest that every VMI shares (each VMI gets its own qcow2
 * overlay on it, made by the launcher), and forgets images nobody uses. Registry protocol and
 * auth are skopeo's (skopeo.ts); verification and the safe extraction are ours (layout.ts,
 * extract.ts); the on-disk state and its atomicity are in store-files.ts.
 *
 * Concurrency: ensure() calls for the same reference and selection share one pull (single
 * flight); the first caller's pull policy decides. remove() and gc() never touch an image an
 * ensure() is resolving.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ErrorCodes, VhError, errorMessage } from '../errors';
import type { Logger } from '../log';
import { ImageError, isImageError } from './errors';
import { extractLayers, entryPath, type ExtractedFile, type LayerResult } from './extract';
import { BlobFollower } from './follow';
import { nodeManifestDigest, readDirImage, type DirImage } from './layout';
import { type ImageRef, formatReference, isLoopbackRegistry, parseReference, rewriteReference } from './reference';
import { prepareSkopeoConfig, skopeoCopy, skopeoInspectRaw, type SkopeoOptions } from './skopeo';
import { type ArtifactMeta, StoreFiles, rmTree, treeSize } from './store-files';
import type { EnsureOptions, EnsuredImage, ImageSelection, ImageStoreOptions, ImageStoreStats, PullPolicy, PullProgress, StoredImage } from './types';

export type { EnsureOptions, EnsuredImage, ImageSelection, ImageStoreOptions, ImageStoreStats, PullPolicy, PullProgress, StoredImage } from './types';

const execFileP = promisify(execFile);

const DISK = /^disk\/[^/]+\.(qcow2|img)$/;

export class ImageStore {
  private readonly files: StoreFiles;
  private readonly refs: Map<string, string>;
  private readonly inflight = new Map<string, Promise<EnsuredImage>>();
  /** Digests an ensure() is resolving or has just placed (gc/remove keep their hands off). */
  private readonly busy = new Map<string, number>();
  private readonly skopeo: SkopeoOptions;
  private readonly maxImageSize: number;
  private readonly insecure: ReadonlySet<string>;
  private readonly counters: ImageStoreStats = { pulls: 0, pullFailures: 0, cacheHits: 0, joinedPulls: 0 };

  /** Opens (creating) the store at `root`; removes what an interrupted pull left. */
  constructor(
    root: string,
    private readonly log: Logger,
    private readonly opts: ImageStoreOptions = {},
  ) {
    for (const h of opts.insecureRegistries ?? []) {
      if (!isLoopbackRegistry(h)) throw new VhError(ErrorCodes.CONFIG_INVALID, `images.insecureRegistries: ${JSON.stringify(h)} is not a loopback registry; only 127.0.0.0/8, [::1] and localhost may be used without TLS`);
    }
    if (opts.authFile !== undefined && !fs.statSync(opts.authFile, { throwIfNoEntry: false })?.isFile()) {
      throw new VhError(ErrorCodes.CONFIG_INVALID, `images.authFile: ${opts.authFile} is not a file`);
    }
    this.insecure = new Set(opts.insecureRegistries ?? []);
    this.maxImageSize = opts.maxImageSize ?? 64 * 2 ** 30;
    this.files = new StoreFiles(path.resolve(root));
    const leftovers = this.files.init();
    if (leftovers.length > 0) this.log.info({ removed: leftovers }, 'image store: removed interrupted pulls');
    prepareSkopeoConfig(this.files.skopeo);
    this.skopeo = { binary: opts.skopeoBinary ?? 'skopeo', configDir: this.files.skopeo, timeoutMs: opts.pullTimeoutMs ?? 30 * 60_000, ...(opts.authFile !== undefined ? { authFile: opts.authFile } : {}) };
    const present = new Set(this.files.digests());
    this.refs = new Map([...this.files.readRefs()].filter(([, d]) => present.has(d)));
  }

  /** The store's root directory. */
  get root(): string {
    return this.files.root;
  }

  /** Counters since open. */
  stats(): ImageStoreStats {
    return { ...this.counters };
  }

  /** Makes `ref` available per the pull policy and returns its read-only files. */
  ensure(ref: string, o: EnsureOptions = {}): Promise<EnsuredImage> {
    let canonical: string;
    let key: string;
    const select = o.select ?? { kind: 'containerDisk' };
    try {
      canonical = formatReference(parseReference(ref));
      key = `${canonical}\0${artifactName(select)}`;
    } catch (e) {
      return Promise.reject(e);
    }
    const running = this.inflight.get(key);
    if (running !== undefined) {
      this.counters.joinedPulls++;
      return running;
    }
    const p = this.resolve(canonical, select, o.pullPolicy ?? defaultPullPolicy(canonical), o.onProgress ?? (() => undefined)).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Imports an OCI archive (`oci-archive`, e.g. from `skopeo copy ... oci-archive:x.tar`) for air-gapped nodes; `ref` names it in the store. */
  async importArchive(archive: string, o: { ref?: string; select?: ImageSelection; format?: 'oci-archive' | 'docker-archive' } = {}): Promise<EnsuredImage> {
    const abs = path.resolve(archive);
    if (abs.includes(':')) throw new ImageError('InvalidReference', `archive path ${JSON.stringify(abs)} may not contain ':'`);
    if (!fs.statSync(abs, { throwIfNoEntry: false })?.isFile()) throw new ImageError('NotFound', `archive ${abs} is not a file`);
    const ref = o.ref !== undefined ? formatReference(parseReference(o.ref)) : `archive:${path.basename(abs)}`;
    return this.fetch(ref, `${o.format ?? 'oci-archive'}:${abs}`, [], o.select ?? { kind: 'containerDisk' }, () => undefined, o.ref !== undefined);
  }

  /**
   * Imports an archive that arrives as a byte stream (vhctl image import over gRPC): the bytes
   * are staged in a private file (0600) under the store's tmp/, at most images.maxImageSize of
   * them, then imported as importArchive does; the staged copy is removed whatever happens.
   */
  async importStream(chunks: AsyncIterable<Buffer>, o: { ref?: string; select?: ImageSelection; format?: 'oci-archive' | 'docker-archive' }): Promise<EnsuredImage & { receivedBytes: number }> {
    const ref = o.ref !== undefined ? formatReference(parseReference(o.ref)) : 'an imported archive';
    const tmp = this.files.mkTemp('import');
    const file = path.join(tmp, 'archive.tar');
    let received = 0;
    try {
      const fh = await fs.promises.open(file, 'wx', 0o600);
      try {
        for await (const chunk of chunks) {
          received += chunk.length;
          if (received > this.maxImageSize) throw new ImageError('TooLarge', `archive for ${ref} passed ${this.maxImageSize} bytes (images.maxImageSize)`, { ref });
          await fh.write(chunk);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const img = await this.importArchive(file, { ...(o.ref !== undefined ? { ref } : {}), ...(o.select ? { select: o.select } : {}), ...(o.format ? { format: o.format } : {}) });
      return { ...img, receivedBytes: received };
    } finally {
      rmTree(tmp);
    }
  }

  /** The largest image (and import) the store takes, in bytes (images.maxImageSize). */
  get maxBytes(): number {
    return this.maxImageSize;
  }

  /** Every image in the store with its references, sizes and last use. */
  list(): StoredImage[] {
    const out: StoredImage[] = [];
    for (const digest of this.files.digests()) {
      const meta = this.files.readMeta(digest);
      const size = treeSize(this.files.imageDir(digest));
      const artifacts = this.files.artifacts(digest).flatMap((name) => {
        const a = this.files.readArtifact(digest, name);
        return a === null ? [] : [{ name, ...a }];
      });
      out.push({
        digest,
        refs: [...this.refs].filter(([, d]) => d === digest).map(([r]) => r),
        pulledAs: meta?.ref ?? '',
        pulledAt: meta?.pulledAt ?? '',
        lastUsed: this.files.lastUsed(digest)?.toISOString() ?? null,
        sizeBytes: size.bytes,
        allocatedBytes: size.allocated,
        artifacts,
      });
    }
    return out;
  }

  /** Removes an image by digest or reference; refused (InUse) when `inUse` holds its digest. */
  remove(digestOrRef: string, inUse: ReadonlySet<string>): StoredImage {
    const digest = /^sha256:[a-f0-9]{64}$/.test(digestOrRef) ? digestOrRef : this.refs.get(formatReference(parseReference(digestOrRef)));
    const img = this.list().find((i) => i.digest === digest);
    if (digest === undefined || img === undefined) throw new ImageError('NotFound', `no image ${JSON.stringify(digestOrRef)} in the store`);
    if (inUse.has(digest) || this.busy.has(digest)) throw new ImageError('InUse', `image ${digest} (${img.refs.join(', ') || img.pulledAs}) is in use by a VMI; delete the VMI first`, { digest });
    this.drop(digest);
    this.log.info({ digest, refs: img.refs, bytes: img.allocatedBytes }, 'image removed');
    return img;
  }

  /** Removes every image not in `inUse` and not used for `minIdleMs`; returns what it removed. */
  gc(inUse: ReadonlySet<string>, o: { minIdleMs?: number } = {}): StoredImage[] {
    const cutoff = Date.now() - (o.minIdleMs ?? 0);
    const removed: StoredImage[] = [];
    for (const img of this.list()) {
      if (inUse.has(img.digest) || this.busy.has(img.digest)) continue;
      if (img.lastUsed !== null && Date.parse(img.lastUsed) > cutoff) continue;
      this.drop(img.digest);
      removed.push(img);
    }
    if (removed.length > 0) this.log.info({ removed: removed.map((i) => i.digest), bytes: removed.reduce((a, i) => a + i.allocatedBytes, 0) }, 'image gc');
    return removed;
  }

  private drop(digest: string): void {
    for (const [r, d] of this.refs) if (d === digest) this.refs.delete(r);
    this.files.writeRefs(this.refs);
    this.files.removeImage(digest);
  }

  private async resolve(canonical: string, select: ImageSelection, policy: PullPolicy, progress: (p: PullProgress) => void): Promise<EnsuredImage> {
    if (policy !== 'Always') {
      // A pinned digest is its own reference: any earlier pull of that digest will do.
      const have = this.refs.get(canonical) ?? parseReference(canonical).digest;
      const hit = have !== undefined ? this.cached(canonical, have, select) : null;
      if (hit !== null) {
        this.counters.cacheHits++;
        progress({ ref: canonical, phase: 'cached', message: `Image ${canonical} already present on the node (${hit.digest})` });
        return hit;
      }
      if (policy === 'Never') {
        throw new ImageError('NotPresent', `image ${canonical} is not in the node's image store and imagePullPolicy is Never (import it with vhctl image import, or use IfNotPresent)`, { ref: canonical });
      }
    }
    const target = rewriteReference(canonical, this.opts.rewrites ?? {});
    const sources = [...(this.opts.mirrors?.[target.registry] ?? []).map((m) => ({ ...target, registry: m })), target];
    if (policy === 'Always') {
      // Always means "ask the registry", not "download again": an unchanged digest is a cache hit.
      const now = await this.remoteDigest(sources);
      const hit = now !== null ? this.cached(canonical, now, select) : null;
      if (now !== null && hit !== null) {
        if (this.refs.get(canonical) !== now) {
          this.refs.set(canonical, now);
          this.files.writeRefs(this.refs);
        }
        this.counters.cacheHits++;
        progress({ ref: canonical, phase: 'cached', message: `Image ${canonical} is up to date on the node (${now})` });
        return hit;
      }
    }
    return this.fetch(canonical, '', sources, select, progress, true);
  }

  /** The digest the first answering source serves for the reference now (null: none answered; the copy will say why). */
  private async remoteDigest(sources: readonly ImageRef[]): Promise<string | null> {
    for (const s of sources) {
      try {
        return nodeManifestDigest(await skopeoInspectRaw(this.skopeo, `docker://${sourceName(s)}`, this.insecure.has(s.registry)));
      } catch {
        /* next source; the copy reports the failure */
      }
    }
    return null;
  }

  private cached(ref: string, digest: string, select: ImageSelection): EnsuredImage | null {
    const art = this.files.readArtifact(digest, artifactName(select));
    if (art === null) return null;
    this.files.touch(digest);
    return this.ensured(ref, digest, artifactName(select), art, false);
  }

  /** Pulls from `sources` in order (or copies `archive` when given), verifies, extracts, places. */
  private async fetch(ref: string, archive: string, sources: readonly ImageRef[], select: ImageSelection, progress: (p: PullProgress) => void, recordRef: boolean): Promise<EnsuredImage> {
    const started = Date.now();
    const tmp = this.files.mkTemp('pull');
    let digest: string | undefined;
    try {
      const layout = path.join(tmp, 'layout');
      const want = wanted(select);
      let pre: Map<string, LayerResult>;
      let from = archive;
      if (archive !== '') pre = await this.copyFollowing(tmp, layout, want, progress, ref, () => skopeoCopy(this.skopeo, { src: archive, dest: `dir:${layout}` }));
      else [from, pre] = await this.copyFromSources(ref, sources, tmp, layout, want, progress);
      const copied = Date.now();
      this.counters.pulls++;
      const img = readDirImage(layout);
      digest = img.digest;
      this.busy.set(digest, (this.busy.get(digest) ?? 0) + 1);
      const name = artifactName(select);
      let art = this.files.readArtifact(digest, name);
      if (art === null) {
        art = await this.build(img, select, tmp, pre, ref);
        this.place(img, ref, name, path.join(tmp, 'artifact'));
      }
      if (recordRef) {
        this.refs.set(ref, digest);
        this.files.writeRefs(this.refs);
      }
      this.files.touch(digest);
      const out: EnsuredImage = { ...this.ensured(ref, digest, name, art, true), timings: { copyMs: copied - started, placeMs: Date.now() - copied, layersReadDuringCopy: img.layers.filter((l) => pre.get(l.digest)?.size === l.size).length } };
      this.log.info({ ref, from, digest, ms: Date.now() - started, ...out.timings }, 'image pulled');
      progress({ ref, phase: 'done', message: `Pulled image ${ref} (${digest}) in ${((Date.now() - started) / 1000).toFixed(1)} s` });
      return out;
    } catch (e) {
      this.counters.pullFailures++;
      this.log.warn({ ref, err: { message: errorMessage(e), reason: isImageError(e) ? e.reason : undefined } }, 'image pull failed');
      throw e;
    } finally {
      if (digest !== undefined) {
        const n = (this.busy.get(digest) ?? 1) - 1;
        if (n <= 0) this.busy.delete(digest);
        else this.busy.set(digest, n);
      }
      rmTree(tmp);
    }
  }

  /** Copies from the first source that works; returns it and the layers read during the copy. */
  private async copyFromSources(ref: string, sources: readonly ImageRef[], tmp: string, layout: string, want: (p: string) => boolean, progress: (p: PullProgress) => void): Promise<[string, Map<string, LayerResult>]> {
    let last: unknown;
    for (const s of sources) {
      const src = `docker://${sourceName(s)}`;
      progress({ ref, phase: 'pulling', bytes: 0, message: `Pulling image ${ref} from ${src.slice(9)}` });
      try {
        return [src, await this.copyFollowing(tmp, layout, want, progress, ref, (signal) => skopeoCopy(this.skopeo, { src, dest: `dir:${layout}`, srcInsecure: this.insecure.has(s.registry), signal }))];
      } catch (e) {
        last = e;
        if (isImageError(e, 'TooLarge')) break;
        rmTree(layout);
        if (s !== sources[sources.length - 1]) this.log.warn({ ref, src, err: { message: errorMessage(e) } }, 'image mirror failed; trying the next source');
      }
    }
    throw last;
  }

  /** Runs one copy into `layout` with a size watchdog (maxImageSize) and a BlobFollower reading layers as they arrive. */
  private async copyFollowing(tmp: string, layout: string, want: (p: string) => boolean, progress: (p: PullProgress) => void, ref: string, copy: (signal: AbortSignal) => Promise<void>): Promise<Map<string, LayerResult>> {
    const ac = new AbortController();
    let over: ImageError | null = null;
    let read = 0;
    const limits = { maxBytes: this.maxImageSize, freeBytes: () => freeBytes(this.files.root) };
    const follower = new BlobFollower(layout, fs.mkdtempSync(path.join(tmp, 'follow-')), want, limits, (n) => (read += n));
    const watch = setInterval(() => {
      const got = fs.existsSync(layout) ? treeSize(layout).bytes : 0;
      if (got > this.maxImageSize) {
        over = new ImageError('TooLarge', `image ${ref} passed ${this.maxImageSize} bytes while pulling (images.maxImageSize)`, { ref });
        ac.abort();
      }
      progress({ ref, phase: 'pulling', bytes: got, message: `Pulling image ${ref}: ${(got / 2 ** 20).toFixed(1)} MiB received, ${(read / 2 ** 20).toFixed(1)} MiB verified` });
    }, 500);
    try {
      await copy(ac.signal);
    } catch (e) {
      await follower.abort();
      throw over ?? e;
    } finally {
      clearInterval(watch);
    }
    return follower.finish();
  }

  /** Extracts and checks the selected files into <tmp>/artifact; returns its metadata. */
  private async build(img: DirImage, select: ImageSelection, tmp: string, pre: ReadonlyMap<string, LayerResult>, ref: string): Promise<ArtifactMeta> {
    const want = wanted(select);
    const work = path.join(tmp, 'extract');
    const out = path.join(tmp, 'artifact');
    fs.mkdirSync(work);
    fs.mkdirSync(out);
    const files = await extractLayers(img.layers, want, work, { maxBytes: this.maxImageSize, freeBytes: () => freeBytes(this.files.root) }, undefined, pre);
    const meta: ArtifactMeta = { kind: select.kind, files: {}, sizeBytes: 0 };
    const take = (f: ExtractedFile, name: string): void => {
      fs.renameSync(f.file, path.join(out, name));
      fs.chmodSync(path.join(out, name), 0o444);
      meta.files[`/${f.imagePath}`] = name;
      meta.sizeBytes += f.size;
    };
    if (select.kind === 'containerDisk') {
      const disks = [...files.values()];
      if (disks.length !== 1) {
        throw new ImageError('BadLayout', disks.length === 0 ? `image ${ref} has no ${select.path ?? '/disk/*.qcow2 or /disk/*.img'} file (KubeVirt containerDisk layout)` : `image ${ref} has several disks (${disks.map((d) => '/' + d.imagePath).join(', ')}); name one with containerDisk.path`);
      }
      const disk = disks[0] as ExtractedFile;
      meta.format = await this.diskFormat(disk.file, ref);
      meta.diskFile = meta.format === 'qcow2' ? 'disk.qcow2' : 'disk.raw';
      take(disk, meta.diskFile);
    } else {
      for (const [which, p] of [['kernel', select.kernelPath], ['initrd', select.initrdPath]] as const) {
        if (p === undefined) continue;
        const f = files.get(entryPath(p));
        if (f === undefined) throw new ImageError('BadLayout', `image ${ref} has no ${which} at ${p} (kernelBoot.container.${which}Path)`);
        take(f, which);
        if (which === 'kernel') meta.kernelFile = which;
        else meta.initrdFile = which;
      }
    }
    fs.writeFileSync(path.join(out, 'artifact.json'), JSON.stringify(meta) + '\n', { mode: 0o444 });
    return meta;
  }

  /** qemu-img's probe: raw, or a qcow2 with no backing or external data file (either could read host files). */
  private async diskFormat(file: string, ref: string): Promise<'qcow2' | 'raw'> {
    let info: { format?: string; 'backing-filename'?: string; 'format-specific'?: { data?: { 'data-file'?: string } } };
    try {
      const { stdout } = await execFileP(this.opts.qemuImgBinary ?? 'qemu-img', ['info', '--output=json', file], { timeout: 60_000 });
      info = JSON.parse(stdout) as typeof info;
    } catch (e) {
      throw new ImageError('BadDiskFormat', `qemu-img cannot read the disk of ${ref}: ${errorMessage(e).split('\n')[0]}`, { ref }, { cause: e });
    }
    if (info.format !== 'qcow2' && info.format !== 'raw') throw new ImageError('BadDiskFormat', `the disk of ${ref} is ${info.format ?? 'unknown'}: qcow2 or raw is needed`, { ref, format: info.format });
    if (info['backing-filename'] !== undefined || info['format-specific']?.data?.['data-file'] !== undefined) {
      throw new ImageError('BadDiskFormat', `the qcow2 disk of ${ref} names a backing or data file: refused (it could read host files)`, { ref });
    }
    return info.format;
  }

  /** Moves a built artifact into sha256/<hex>/ (creating the image directory first). */
  private place(img: DirImage, ref: string, name: string, built: string): void {
    const dir = this.files.imageDir(img.digest);
    if (!fs.existsSync(dir)) {
      const stage = this.files.mkTemp('image');
      fs.chmodSync(stage, 0o755);
      fs.writeFileSync(path.join(stage, 'image.json'), JSON.stringify({ digest: img.digest, mediaType: img.mediaType, layersSize: img.layersSize, ref, pulledAt: new Date().toISOString() }) + '\n', { mode: 0o444 });
      fs.writeFileSync(path.join(stage, 'last-used'), '');
      try {
        fs.renameSync(stage, dir);
      } catch (e) {
        rmTree(stage);
        if (!fs.existsSync(dir)) throw e;
      }
    }
    try {
      fs.renameSync(built, path.join(dir, name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e; // placed by a concurrent pull of another reference: same bytes
    }
  }

  private ensured(ref: string, digest: string, name: string, art: ArtifactMeta, pulled: boolean): EnsuredImage {
    const dir = path.join(this.files.imageDir(digest), name);
    return {
      ref,
      digest,
      pulled,
      ...(art.diskFile !== undefined ? { diskPath: path.join(dir, art.diskFile) } : {}),
      ...(art.format !== undefined ? { format: art.format } : {}),
      ...(art.kernelFile !== undefined ? { kernelPath: path.join(dir, art.kernelFile) } : {}),
      ...(art.initrdFile !== undefined ? { initrdPath: path.join(dir, art.initrdFile) } : {}),
    };
  }
}

/** Kubernetes' default: Always for `:latest` (or no tag), IfNotPresent otherwise (a digest never changes). */
export function defaultPullPolicy(ref: string): PullPolicy {
  const r = parseReference(ref);
  return r.digest === undefined && r.tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** skopeo's docker reference: a digest wins over a tag (it refuses both). */
function sourceName(s: ImageRef): string {
  return formatReference(s.digest !== undefined ? { registry: s.registry, repository: s.repository, digest: s.digest } : s);
}

/** Directory name of what `select` takes out of an image. */
function artifactName(select: ImageSelection): string {
  if (select.kind === 'containerDisk') return select.path === undefined ? 'disk' : `disk-${shortHash(entryPath(select.path))}`;
  return `boot-${shortHash(`${select.kernelPath ?? ''}\0${select.initrdPath ?? ''}`)}`;
}

function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}

function wanted(select: ImageSelection): (p: string) => boolean {
  if (select.kind === 'containerDisk') {
    if (select.path === undefined) return (p) => DISK.test(p);
    const want = entryPath(select.path);
    return (p) => p === want;
  }
  const paths = new Set([select.kernelPath, select.initrdPath].filter((p): p is string => p !== undefined).map(entryPath));
  if (paths.size === 0) throw new ImageError('InvalidReference', 'kernelBoot.container needs a kernelPath or an initrdPath');
  return (p) => paths.has(p);
}

function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

