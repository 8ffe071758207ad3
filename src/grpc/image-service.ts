/**
 * virthandler.v1.ImageService (proto/virthandler/v1/image.proto) on top of the node image store:
 * request checks, the wire shape of a stored image (with the VMIs that use it), the pull's
 * progress stream and the import's upload stream. Errors go through toGrpcStatus.
 */
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import type { ImageStore } from '../images/image-store';
import { formatReference, parseReference } from '../images/reference';
import type { ImageSelection, PullPolicy, StoredImage } from '../images/types';
import type { Logger } from '../log';
import { MalformedRequest, toGrpcStatus, unaryHandler } from './errors';

const POLICIES: readonly PullPolicy[] = ['Always', 'IfNotPresent', 'Never'];
const FORMATS = ['oci-archive', 'docker-archive'] as const;

/** What the service needs besides the store: who uses which digest (namespace/name per digest). */
export interface ImageServiceDeps {
  store: ImageStore;
  users: () => ReadonlyMap<string, readonly string[]>;
  log: Logger;
}

/** The wire form of a stored image (image.proto's Image, camelCase). */
export function imageToWire(i: StoredImage, users: ReadonlyMap<string, readonly string[]>): Record<string, unknown> {
  return {
    digest: i.digest,
    references: i.refs,
    pulledAs: i.pulledAs,
    pulledAt: i.pulledAt,
    lastUsed: i.lastUsed ?? '',
    sizeBytes: i.sizeBytes,
    allocatedBytes: i.allocatedBytes,
    inUseBy: [...(users.get(i.digest) ?? [])],
    artifacts: i.artifacts.map((a) => a.name),
  };
}

/** An image path from a request: absolute, no '..', no NUL; `field` names it in the error. */
function imagePath(raw: unknown, field: string): string | undefined {
  if (typeof raw !== 'string' || raw === '') return undefined;
  if (!raw.startsWith('/') || raw.includes('\0') || raw.split('/').includes('..')) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${field}: must be an absolute path inside the image without '..', got ${JSON.stringify(raw.slice(0, 200))}`, { field });
  }
  return raw;
}

/** ImageSelection from the wire; kernel_path/initrd_path select a kernelBoot.container. */
export function selectionFromWire(raw: unknown, prefix: string): ImageSelection {
  const r = (raw ?? {}) as Record<string, unknown>;
  const disk = imagePath(r.diskPath, `${prefix}.disk_path`);
  const kernel = imagePath(r.kernelPath, `${prefix}.kernel_path`);
  const initrd = imagePath(r.initrdPath, `${prefix}.initrd_path`);
  if (kernel !== undefined || initrd !== undefined) {
    if (disk !== undefined) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${prefix}.disk_path: a disk and a kernel/initrd exclude each other`, { field: `${prefix}.disk_path` });
    return { kind: 'kernelBoot', ...(kernel !== undefined ? { kernelPath: kernel } : {}), ...(initrd !== undefined ? { initrdPath: initrd } : {}) };
  }
  return { kind: 'containerDisk', ...(disk !== undefined ? { path: disk } : {}) };
}

function reference(raw: unknown, field: string): string {
  if (typeof raw !== 'string' || raw.trim() === '') throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${field}: required (an image reference, e.g. quay.io/containerdisks/fedora:40)`, { field });
  if (raw.length > 1024) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${field}: longer than 1024 characters`, { field });
  return raw;
}

export function imageServiceImplementation(d: ImageServiceDeps): grpc.UntypedServiceImplementation {
  const { store, log } = d;
  const unary = unaryHandler(log, 'ImageService');
  const wire = (digest: string): Record<string, unknown> | null => {
    const img = store.list().find((i) => i.digest === digest);
    return img ? imageToWire(img, d.users()) : null;
  };
  return {
    ListImages: unary(() => {
      const users = d.users();
      const images = store.list().sort((a, b) => (a.refs[0] ?? a.pulledAs).localeCompare(b.refs[0] ?? b.pulledAs));
      return { images: images.map((i) => imageToWire(i, users)) };
    }),
    RemoveImage: unary((req) => {
      const what = reference(req.image, 'image');
      const users = d.users();
      let digest = /^sha256:[a-f0-9]{64}$/.test(what) ? what : undefined;
      if (digest === undefined) {
        const canonical = formatReference(parseReference(what));
        digest = store.list().find((i) => i.refs.includes(canonical))?.digest;
      }
      const by = digest !== undefined ? users.get(digest) : undefined;
      if (digest !== undefined && by !== undefined && by.length > 0) {
        throw new VhError(ErrorCodes.FAILED_PRECONDITION, `image ${what} (${digest}) is in use by VMI ${by.join(', ')}; delete the VMI first`, { reason: 'InUse', digest, vmis: by });
      }
      const removed = store.remove(digest ?? what, new Set(users.keys()));
      return { removed: imageToWire(removed, users) };
    }),
    GcImages: unary(() => {
      const users = d.users();
      const removed = store.gc(new Set(users.keys()), { minIdleMs: 0 });
      return { removed: removed.map((i) => imageToWire(i, users)), freedBytes: removed.reduce((a, i) => a + i.allocatedBytes, 0) };
    }),
    PullImage: (call: grpc.ServerWritableStream<unknown, unknown>): void => {
      const req = (call.request ?? {}) as Record<string, unknown>;
      const started = Date.now();
      Promise.resolve()
        .then(async () => {
          const ref = reference(req.reference, 'reference');
          const policy = typeof req.pullPolicy === 'string' && req.pullPolicy !== '' ? req.pullPolicy : undefined;
          if (policy !== undefined && !POLICIES.includes(policy as PullPolicy)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `pull_policy: expected ${POLICIES.join(', ')} or empty, got ${JSON.stringify(policy)}`, { field: 'pull_policy' });
          const select = selectionFromWire(req.select, 'select');
          const img = await store.ensure(ref, {
            select,
            ...(policy !== undefined ? { pullPolicy: policy as PullPolicy } : {}),
            onProgress: (p) => {
              if (!call.cancelled) call.write({ progress: { phase: p.phase, bytes: p.bytes ?? 0, totalBytes: p.totalBytes ?? 0, message: p.message } });
            },
          });
          if (!call.cancelled) call.write({ result: { image: wire(img.digest), pulled: img.pulled, durationMs: Date.now() - started } });
          call.end();
        })
        .catch((e: unknown) => {
          if (!(e instanceof VhError)) log.error({ err: e }, 'PullImage failed');
          if (!call.cancelled) call.emit('error', toGrpcStatus(e));
        });
    },
    ImportImage: (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>): void => {
      importImage(d, call).then(
        (res) => cb(null, res),
        (e: unknown) => {
          if (!(e instanceof VhError)) log.error({ err: e }, 'ImportImage failed');
          cb(toGrpcStatus(e));
        },
      );
    },
  };
}

/** ImportImage: metadata first, then chunks streamed into the store's staging file. */
async function importImage(d: ImageServiceDeps, call: grpc.ServerReadableStream<unknown, unknown>): Promise<Record<string, unknown>> {
  const it = (call as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  const first = await it.next();
  const m0 = first.done ? undefined : first.value;
  if (m0 instanceof MalformedRequest) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed import message: ${m0.reason}`);
  const meta = (m0 as { metadata?: Record<string, unknown> | null } | undefined)?.metadata;
  if (!meta) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'metadata: the first ImportImage message must carry the metadata (reference, format)', { field: 'metadata' });
  // No reference: the image is stored by digest only (a VMI names it as <repo>@sha256:...).
  const ref = typeof meta.reference === 'string' && meta.reference !== '' ? reference(meta.reference, 'metadata.reference') : undefined;
  const format = typeof meta.format === 'string' && meta.format !== '' ? meta.format : 'oci-archive';
  if (!(FORMATS as readonly string[]).includes(format)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `metadata.format: expected ${FORMATS.join(' or ')}, got ${JSON.stringify(format)}`, { field: 'metadata.format' });
  const select = selectionFromWire(meta.select, 'metadata.select');
  const size = typeof meta.sizeBytes === 'number' ? meta.sizeBytes : 0;
  if (size > d.store.maxBytes) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `metadata.size_bytes: the archive (${size} bytes) is larger than images.maxImageSize (${d.store.maxBytes} bytes)`, { field: 'metadata.size_bytes' });
  async function* chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      const msg = n.value as MalformedRequest | { metadata?: unknown; chunk?: Buffer | Uint8Array };
      if (msg instanceof MalformedRequest) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed import message: ${msg.reason}`);
      if (msg.metadata) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'metadata: only the first ImportImage message may carry metadata', { field: 'metadata' });
      if (msg.chunk && msg.chunk.length > 0) yield Buffer.from(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength);
    }
  }
  const img = await d.store.importStream(chunks(), { ...(ref !== undefined ? { ref } : {}), select, format: format as (typeof FORMATS)[number] });
  const stored = d.store.list().find((i) => i.digest === img.digest);
  return { image: stored ? imageToWire(stored, d.users()) : null, receivedBytes: img.receivedBytes };
}
