/**
 * The image as skopeo's `dir:` transport writes it: `manifest.json` (the registry's bytes, so its
 * sha256 is the image digest) and one file per blob named by its hex digest. We trust none of it:
 * the manifest, the config and every layer are hashed here (layers while they are extracted, so
 * each is read once) and compared with their descriptors' digest and size.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageError } from './errors';

/** One layer to extract, in order (lowest first). */
export interface LayerRef {
  digest: string;
  size: number;
  compression: 'none' | 'gzip';
  file: string;
}

/** A verified image in a `dir:` layout. */
export interface DirImage {
  /** sha256 of the manifest bytes: the image's identity in the store. */
  digest: string;
  mediaType: string;
  layers: LayerRef[];
  /** Sum of the layers' (compressed) sizes. */
  layersSize: number;
}

const MAX_JSON = 4 << 20;
const DIGEST = /^sha256:([a-f0-9]{64})$/;

const LAYER_TYPES: Record<string, LayerRef['compression']> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
};
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function readSmall(file: string, what: string): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new ImageError('BadLayout', `the image has no ${what} (${path.basename(file)} missing)`, {}, { cause: e });
  }
  if (!st.isFile() || st.size > MAX_JSON) throw new ImageError('BadLayout', `the image's ${what} is not a file under ${MAX_JSON} bytes`);
  return fs.readFileSync(file);
}

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
}

function descriptor(d: Descriptor | undefined, what: string): { digest: string; hex: string; size: number; mediaType: string } {
  const m = typeof d?.digest === 'string' ? DIGEST.exec(d.digest) : null;
  if (d === undefined || m === null || typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ImageError('BadLayout', `the image manifest's ${what} descriptor has no valid sha256 digest and size`);
  }
  return { digest: d.digest as string, hex: m[1] as string, size: d.size, mediaType: typeof d.mediaType === 'string' ? d.mediaType : '' };
}

/** Reads and verifies the manifest and config of a `dir:` layout; layers are verified by the extractor. */
export function readDirImage(dir: string): DirImage {
  const raw = readSmall(path.join(dir, 'manifest.json'), 'manifest');
  let m: { schemaVersion?: unknown; mediaType?: unknown; config?: Descriptor; layers?: unknown };
  try {
    m = JSON.parse(raw.toString('utf8')) as typeof m;
  } catch (e) {
    throw new ImageError('BadLayout', `the image manifest is not JSON: ${(e as Error).message}`);
  }
  const mediaType = typeof m.mediaType === 'string' ? m.mediaType : 'application/vnd.oci.image.manifest.v1+json';
  if (m.schemaVersion !== 2 || !MANIFEST_TYPES.has(mediaType)) {
    throw new ImageError('BadLayout', `unsupported manifest (schemaVersion ${String(m.schemaVersion)}, mediaType ${mediaType}): an OCI or Docker v2 image manifest is needed`);
  }
  const config = descriptor(m.config, 'config');
  const configBytes = readSmall(path.join(dir, config.hex), 'config blob');
  if (configBytes.length !== config.size) throw new ImageError('Truncated', `the image config is ${configBytes.length} bytes, its descriptor says ${config.size}`);
  if (sha256(configBytes) !== config.digest) throw new ImageError('DigestMismatch', `the image config does not hash to ${config.digest}`);
  if (!Array.isArray(m.layers) || m.layers.length === 0) throw new ImageError('BadLayout', 'the image has no layers');
  const layers: LayerRef[] = (m.layers as Descriptor[]).map((l, i) => {
    const d = descriptor(l, `layer ${i}`);
    const compression = LAYER_TYPES[d.mediaType];
    if (compression === undefined) {
      throw new ImageError('BadLayout', `layer ${i} has media type ${JSON.stringify(d.mediaType)}: only tar and tar+gzip layers are supported (zstd: re-push with gzip)`);
    }
    const file = path.join(dir, d.hex);
    // docker-archive (docker save) layers are plain tars that skopeo describes with Docker's
    // ".tar.gzip" type: for Docker types the bytes decide. The digest covers the bytes either way.
    return { digest: d.digest, size: d.size, compression: d.mediaType.startsWith('application/vnd.docker.') ? sniffCompression(file, compression) : compression, file };
  });
  return { digest: sha256(raw), mediaType, layers, layersSize: layers.reduce((a, l) => a + l.size, 0) };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ppc64: 'ppc64le', s390x: 's390x' };

/**
 * The digest skopeo's `dir:` copy of `raw` (what a registry serves for a reference) would have:
 * its own sha256 for an image manifest, this node's linux platform entry for an index or
 * manifest list; null when the list has no entry for this node (then only a copy can tell).
 */
export function nodeManifestDigest(raw: Buffer): string | null {
  let m: { manifests?: Array<{ digest?: unknown; platform?: { os?: unknown; architecture?: unknown } }> };
  try {
    m = JSON.parse(raw.toString('utf8')) as typeof m;
  } catch {
    return null;
  }
  if (!Array.isArray(m.manifests)) return sha256(raw);
  const arch = ARCH[process.arch] ?? process.arch;
  const hit = m.manifests.find((d) => d.platform?.os === 'linux' && d.platform.architecture === arch && typeof d.digest === 'string' && DIGEST.test(d.digest));
  return (hit?.digest as string | undefined) ?? null;
}

/** gzip by its magic, a plain tar by "ustar" at 257; otherwise what the media type said. */
function sniffCompression(file: string, declared: LayerRef['compression']): LayerRef['compression'] {
  const head = Buffer.alloc(262);
  let n = 0;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      n = fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return declared; // missing: the extraction reports it
  }
  if (n >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (n >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'none';
  return declared;
}
