/**
 * GET /v1/datavolumes[?namespace=NS] and GET /v1/datavolumes/<namespace>/<name>: read-only views
 * of the node's DataVolumes (the same views DataVolumeService answers with; extraHeaders values
 * redacted). Unix socket only (not ON_TCP); parameters checked before they reach the model.
 */
import type { FastifyInstance } from 'fastify';
import { ErrorCodes, VhError } from '../errors';
import { isDnsSubdomain } from '../vmi/spec/ids';
import type { DataVolumeView } from '../volumes/datavolume-types';
import { checkLabel } from './vmi-routes';

/** What the routes read (the DataVolume controller). */
export interface DataVolumeReadModel {
  list(namespace?: string): DataVolumeView[];
  /** Throws NOT_FOUND. */
  get(namespace: string, name: string): DataVolumeView;
}

export function registerDataVolumeRoutes(app: FastifyInstance, model: DataVolumeReadModel): void {
  app.get('/v1/datavolumes', async (req) => {
    const query = (req.query ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(query)) if (key !== 'namespace') throw new VhError(ErrorCodes.INVALID_ARGUMENT, `unknown query parameter ${JSON.stringify(key.slice(0, 40))}; expected namespace`, { param: key });
    const namespace = query.namespace === undefined ? undefined : checkLabel('namespace', query.namespace);
    return { items: model.list(namespace) };
  });
  app.get('/v1/datavolumes/*', async (req) => {
    const segments = (req.url.split('?')[0] ?? '').slice('/v1/datavolumes/'.length).split('/');
    if (segments.length !== 2) throw new VhError(ErrorCodes.NOT_FOUND, `no route for GET ${req.url.split('?')[0]}; use GET /v1/datavolumes or /v1/datavolumes/<namespace>/<name>`);
    let namespace: string;
    let name: string;
    try {
      namespace = decodeURIComponent(segments[0]!);
      name = decodeURIComponent(segments[1]!);
    } catch {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'malformed percent-encoding', { param: 'name' });
    }
    checkLabel('namespace', namespace);
    if (!isDnsSubdomain(name)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `name: must be a DNS-1123 subdomain, got ${JSON.stringify(name.slice(0, 40))}`, { param: 'name' });
    return model.get(namespace, name);
  });
}
