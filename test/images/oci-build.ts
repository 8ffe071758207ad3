/**
 * Builds OCI images for the image tests and bench without a container engine: layers written
 * with tar-stream (any entry, hostile ones included), an OCI image layout (oci-layout,
 * index.json, blobs/sha256/...), then pushed to a registry or saved as an oci-archive with skopeo.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';

const execFileP = promisify(execFile);

/** One tar entry: data from a buffer or a file; any type, any name (hostile ones welcome). */
export interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  data?: Buffer;
  /** Streamed into the entry (big disks). */
  file?: string;
  linkname?: string;
  mode?: number;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function hasher(h: ReturnType<typeof createHash>, count: { n: number }): Transform {
  return new Transform({
    transform(c: Buffer, _e, cb) {
      h.update(c);
      count.n += c.length;
      cb(null, c);
    },
  });
}

/** Writes one layer blob into `blobs`; gzip (level 1) unless `gzip` is false. */
export async function writeLayer(blobs: string, entries: readonly Entry[], gzip = true): Promise<Descriptor & { diffId: string }> {
  const pack = tar.pack();
  const tmp = path.join(blobs, `tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
  const raw = createHash('sha256');
  const rawCount = { n: 0 };
  const out = createHash('sha256');
  const outCount = { n: 0 };
  const stages: NodeJS.ReadWriteStream[] = [hasher(raw, rawCount)];
  if (gzip) stages.push(zlib.createGzip({ level: 1, chunkSize: 1 << 20 }));
  stages.push(hasher(out, outCount));
  const written = pipeline(pack, ...(stages as [Transform]), fs.createWriteStream(tmp));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const base = { name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), mtime: new Date(0), ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) };
    if (e.file !== undefined) {
      const size = fs.statSync(e.file).size;
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ ...base, size }, (err) => (err ? reject(err) : resolve()));
        fs.createReadStream(e.file as string, { highWaterMark: 1 << 20 }).pipe(sink as unknown as PassThrough);
      });
    } else if (type === 'file') {
      await new Promise<void>((resolve, reject) => pack.entry(base, e.data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
    } else {
      await new Promise<void>((resolve, reject) => pack.entry({ ...base, size: 0, ...(type.endsWith('device') ? { devmajor: 1, devminor: 3 } : {}) }, (err) => (err ? reject(err) : resolve())));
    }
  }
  pack.finalize();
  await written;
  const digest = `sha256:${out.digest('hex')}`;
  fs.renameSync(tmp, path.join(blobs, digest.slice(7)));
  return {
    mediaType: gzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar',
    digest,
    size: outCount.n,
    diffId: `sha256:${raw.digest('hex')}`,
  };
}

function writeBlob(blobs: string, data: Buffer, mediaType: string): Descriptor {
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  fs.writeFileSync(path.join(blobs, digest.slice(7)), data);
  return { mediaType, digest, size: data.length };
}

/** An OCI image layout at `dir` holding one image tagged `tag` made of `layers` (lowest first). */
export async function buildImage(dir: string, tag: string, layers: ReadonlyArray<readonly Entry[]>, o: { gzip?: boolean } = {}): Promise<{ manifest: Descriptor; layers: Descriptor[] }> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const ls = [];
  for (const l of layers) ls.push(await writeLayer(blobs, l, o.gzip ?? true));
  const config = writeBlob(
    blobs,
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: ls.map((l) => l.diffId) } })),
    'application/vnd.oci.image.config.v1+json',
  );
  const layerDescs = ls.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
  const manifest = writeBlob(
    blobs,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: layerDescs })),
    'application/vnd.oci.image.manifest.v1+json',
  );
  const indexFile = path.join(dir, 'index.json');
  const index = fs.existsSync(indexFile) ? (JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: unknown[] }) : { schemaVersion: 2, manifests: [] as unknown[] };
  index.manifests.push({ ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(index));
  return { manifest, layers: layerDescs };
}

/** Pushes `oci:<dir>:<tag>` to `docker://<dest>` over plain HTTP (loopback registry). */
export async function push(dir: string, tag: string, dest: string): Promise<void> {
  await execFileP('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:${tag}`, `docker://${dest}`], { maxBuffer: 1 << 20, timeout: 300_000 });
}

/** Saves `oci:<dir>:<tag>` as an oci-archive tarball. */
export async function saveArchive(dir: string, tag: string, archive: string): Promise<void> {
  await execFileP('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${dir}:${tag}`, `oci-archive:${archive}`], { maxBuffer: 1 << 20, timeout: 300_000 });
}

/** An empty qcow2 or raw disk of `mib` MiB made by qemu-img. */
export async function makeDisk(file: string, format: 'qcow2' | 'raw', mib: number): Promise<void> {
  await execFileP('qemu-img', ['create', '-q', '-f', format, file, `${mib}M`], { timeout: 60_000 });
}
