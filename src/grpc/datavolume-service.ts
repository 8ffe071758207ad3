/**
 * virthandler.v1.DataVolumeService (proto/virthandler/v1/datavolume.proto) on top of the
 * DataVolume controller: request checks, the wire shape of a DataVolume (dataVolumeToWire: the
 * view, header values already redacted) and the Upload byte stream. Errors go through
 * toGrpcStatus, as for VmiService.
 */
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import type { Logger } from '../log';
import { isDnsLabel, isDnsSubdomain } from '../vmi/spec/ids';
import type { DataVolumeController } from '../volumes/datavolume-controller';
import type { DataVolumeView } from '../volumes/datavolume-types';
import { MalformedRequest, toGrpcStatus, unaryHandler } from './errors';

const MAX_MANIFEST = 1024 * 1024;

export function dataVolumeToWire(v: DataVolumeView): Record<string, unknown> {
  return {
    uid: v.uid,
    namespace: v.namespace,
    name: v.name,
    specJson: JSON.stringify(v.manifest),
    status: { ...v.status },
    createdAt: v.createdAt,
    deleting: v.deleting,
    events: v.events,
  };
}

/** A DataVolumeRef from the wire; INVALID_ARGUMENT names the field. */
export function checkDataVolumeRef(raw: unknown): { namespace: string; name: string } {
  const r = (raw ?? {}) as Record<string, unknown>;
  const namespace = typeof r.namespace === 'string' && r.namespace !== '' ? r.namespace : 'default';
  const name = typeof r.name === 'string' ? r.name : '';
  if (!name) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name: required', { field: 'name' });
  if (!isDnsSubdomain(name)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name: must be a DNS-1123 subdomain', { field: 'name' });
  if (!isDnsLabel(namespace)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'namespace: must be a DNS-1123 label', { field: 'namespace' });
  return { namespace, name };
}

export function dataVolumeServiceImplementation(c: DataVolumeController, log: Logger): grpc.UntypedServiceImplementation {
  const unary = unaryHandler(log, 'DataVolumeService');
  return {
    CreateDataVolume: unary((req) => {
      const manifest = req.manifest;
      if (typeof manifest !== 'string' || manifest.trim() === '') throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'manifest: required (a DataVolume as JSON or YAML)', { field: 'manifest' });
      if (Buffer.byteLength(manifest) > MAX_MANIFEST) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `manifest: larger than ${MAX_MANIFEST} bytes`, { field: 'manifest' });
      const { dv, changed } = c.create(manifest);
      return { dataVolume: dataVolumeToWire(dv), changed };
    }),
    GetDataVolume: unary((req) => {
      const ref = checkDataVolumeRef(req);
      return dataVolumeToWire(c.get(ref.namespace, ref.name));
    }),
    ListDataVolumes: unary((req) => {
      const ns = typeof req.namespace === 'string' ? req.namespace : '';
      if (ns && !isDnsLabel(ns)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'namespace: must be a DNS-1123 label', { field: 'namespace' });
      return { dataVolumes: c.list(ns || undefined).map(dataVolumeToWire) };
    }),
    DeleteDataVolume: unary(async (req) => {
      const ref = checkDataVolumeRef(req);
      return dataVolumeToWire(await c.delete(ref.namespace, ref.name));
    }),
    Upload: (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>): void => {
      let first = true;
      let ref: { namespace: string; name: string } | null = null;
      const it = (call as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      // The bytes after the first message, from the same iterator; the ref is checked before any byte is staged.
      async function* chunks(): AsyncGenerator<Buffer> {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          if (r.value instanceof MalformedRequest) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed upload message: ${r.value.reason}`);
          const m = (r.value ?? {}) as { data?: Buffer };
          if (m.data && m.data.length > 0) yield m.data;
        }
      }
      void (async () => {
        try {
          const head = await it.next();
          if (head.done) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'ref: the first upload message must name the DataVolume', { field: 'ref' });
          if (head.value instanceof MalformedRequest) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed upload message: ${head.value.reason}`);
          const m = (head.value ?? {}) as { ref?: unknown; data?: Buffer };
          if (!m.ref) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'ref: the first upload message must name the DataVolume', { field: 'ref' });
          ref = checkDataVolumeRef(m.ref);
          first = false;
          const headData = m.data && m.data.length > 0 ? m.data : null;
          async function* all(): AsyncGenerator<Buffer> {
            if (headData) yield headData;
            yield* chunks();
          }
          const r = await c.upload(ref.namespace, ref.name, all());
          cb(null, { dataVolume: dataVolumeToWire(r.dv), bytes: r.bytes });
        } catch (e) {
          if (!(e instanceof VhError)) log.error({ err: e, first, ref }, 'DataVolume upload failed');
          cb(toGrpcStatus(e));
        }
      })();
    },
  };
}
