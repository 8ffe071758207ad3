/**
 * The store's files, and how each change is made atomic:
 *   <root>/sha256/<hex>/image.json        what was pulled (digest, media type, layers size, first ref, pulled at)
 *   <root>/sha256/<hex>/last-used         empty; its mtime is the last ensure() that used the image
 *   <root>/sha256/<hex>/<artifact>/       `disk` (disk.qcow2 | disk.raw) or `boot-<key>` (kernel, initrd):
 *                                         files 0444, built in tmp/ and renamed in whole
 *   <root>/refs.json                      canonical reference -> digest, replaced by rename
 *   <root>/tmp/                           pulls in progress and images being removed; emptied at open
 *   <root>/skopeo/                        skopeo's policy, registries.conf and temporary files
 * A crash leaves at worst a tmp/ entry (removed at the next open) or an image no reference names
 * (a gc candidate); never a half-written artifact under sha256/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** image.json */
export interface ImageMeta {
  digest: string;
  mediaType: string;
  layersSize: number;
  /** The reference that first brought the image (canonical, before rewrites). */
  ref: string;
  pulledAt: string;
}

/** <artifact>/artifact.json */
export interface ArtifactMeta {
  kind: 'containerDisk' | 'kernelBoot';
  /** Image path -> file name in the artifact directory. */
  files: Record<string, string>;
  format?: 'qcow2' | 'raw';
  diskFile?: string;
  kernelFile?: string;
  initrdFile?: string;
  sizeBytes: number;
}

/** Paths of one store root. */
export class StoreFiles {
  readonly images: string;
  readonly tmp: string;
  readonly skopeo: string;
  readonly refsFile: string;

  constructor(readonly root: string) {
    this.images = path.join(root, 'sha256');
    this.tmp = path.join(root, 'tmp');
    this.skopeo = path.join(root, 'skopeo');
    this.refsFile = path.join(root, 'refs.json');
  }

  /** Creates the tree and removes whatever an interrupted pull or removal left in tmp/. Returns what it removed. */
  init(): string[] {
    for (const d of [this.root, this.images, this.tmp, this.skopeo]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
    const left = fs.readdirSync(this.tmp);
    for (const e of left) rmTree(path.join(this.tmp, e));
    return left;
  }

  /** A fresh private directory under tmp/. */
  mkTemp(prefix: string): string {
    const d = path.join(this.tmp, `${prefix}-${Date.now()}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(d, { mode: 0o700 });
    return d;
  }

  imageDir(digest: string): string {
    return path.join(this.images, hexOf(digest));
  }

  /** Digests of every image directory present. */
  digests(): string[] {
    return fs
      .readdirSync(this.images)
      .filter((h) => /^[a-f0-9]{64}$/.test(h))
      .map((h) => `sha256:${h}`);
  }

  readRefs(): Map<string, string> {
    try {
      const o = JSON.parse(fs.readFileSync(this.refsFile, 'utf8')) as { refs?: Record<string, string> };
      return new Map(Object.entries(o.refs ?? {}).filter(([, d]) => typeof d === 'string' && /^sha256:[a-f0-9]{64}$/.test(d)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
  }

  writeRefs(refs: ReadonlyMap<string, string>): void {
    writeAtomic(this.refsFile, JSON.stringify({ version: 1, refs: Object.fromEntries([...refs].sort(([a], [b]) => a.localeCompare(b))) }, null, 1) + '\n', this.tmp);
  }

  readMeta(digest: string): ImageMeta | null {
    return readJson<ImageMeta>(path.join(this.imageDir(digest), 'image.json'));
  }

  readArtifact(digest: string, artifact: string): ArtifactMeta | null {
    return readJson<ArtifactMeta>(path.join(this.imageDir(digest), artifact, 'artifact.json'));
  }

  /** Artifact directory names of an image. */
  artifacts(digest: string): string[] {
    try {
      return fs.readdirSync(this.imageDir(digest)).filter((n) => n === 'disk' || n.startsWith('boot-'));
    } catch {
      return [];
    }
  }

  /** Marks an image used now. */
  touch(digest: string): void {
    const f = path.join(this.imageDir(digest), 'last-used');
    const now = new Date();
    try {
      fs.utimesSync(f, now, now);
    } catch {
      fs.writeFileSync(f, '');
    }
  }

  lastUsed(digest: string): Date | null {
    try {
      return fs.statSync(path.join(this.imageDir(digest), 'last-used')).mtime;
    } catch {
      return null;
    }
  }

  /** Moves an image directory into tmp/ (atomic), then deletes it. */
  removeImage(digest: string): void {
    const dead = path.join(this.tmp, `rm-${hexOf(digest)}-${randomBytes(4).toString('hex')}`);
    fs.renameSync(this.imageDir(digest), dead);
    rmTree(dead);
  }
}

/** Bytes allocated on disk (sparse-aware) and apparent bytes under `p`. */
export function treeSize(p: string): { bytes: number; allocated: number } {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) return { bytes: st.size, allocated: st.blocks * 512 };
  let bytes = 0;
  let allocated = 0;
  for (const e of fs.readdirSync(p)) {
    const s = treeSize(path.join(p, e));
    bytes += s.bytes;
    allocated += s.allocated;
  }
  return { bytes, allocated };
}

export function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

/** Writes `file` through a temporary file in `tmpDir` (same file system) and a rename. */
export function writeAtomic(file: string, data: string, tmpDir: string, mode = 0o644): void {
  const t = path.join(tmpDir, `${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const fd = fs.openSync(t, 'w', mode);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(t, file);
}

/** rm -rf that also removes read-only files and directories (as a non-root user). */
export function rmTree(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    chmodTree(p);
    fs.rmSync(p, { recursive: true, force: true });
  }
}

function chmodTree(p: string): void {
  try {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) {
      fs.chmodSync(p, 0o700);
      for (const e of fs.readdirSync(p)) chmodTree(path.join(p, e));
    }
  } catch {
    /* gone already */
  }
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}
