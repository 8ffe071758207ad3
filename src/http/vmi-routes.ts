/**
 * GET /v1/vmis, GET /v1/vmis/:namespace/:name and GET /v1/vmis/:namespace/:name/events:
 * read-only views of the VMIs this node runs and of their recent events.
 * Every parameter is checked strictly (a DNS-1123 label, at most 63 characters) before it
 * reaches the read model; failures are VhErrors, turned into `{code, message}` by errors.ts.
 * Unix socket only (not ON_TCP). Every answer passes through redactSecrets: cloud-init user and
 * network data show as `<redacted: N bytes, sha256:HEX>`, even if the read model forgot to.
 *
 * The item route is a wildcard parsed here rather than `/:namespace/:name`: find-my-way
 * answers an over-long parametric segment (maxParamLength, 100) with a bare 404, and an
 * operator who typed a 200-character name deserves "name: at most 63 characters" instead.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCodes, VhError } from '../errors';
import type { VmiReadModel, VmiView } from '../vmi/spec/types';
import { DNS_LABEL_MAX, isDnsLabel } from '../vmi/spec/ids';
import { redactSecrets } from '../vmi/spec/redact';

/** How a rejected value is echoed back: JSON-quoted (control bytes escaped) and bounded. */
function quote(value: string): string {
  const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
  return JSON.stringify(shown);
}

/** Returns `value` when it is a valid DNS-1123 label; throws INVALID_ARGUMENT naming `param` otherwise. */
export function checkLabel(param: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${param}: expected a single value`, { param });
  }
  if (value === '') throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${param}: must not be empty`, { param });
  if (value.length > DNS_LABEL_MAX) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${param}: at most ${DNS_LABEL_MAX} characters, got ${value.length}`, { param });
  }
  if (!isDnsLabel(value)) {
    throw new VhError(
      ErrorCodes.INVALID_ARGUMENT,
      `${param}: must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit), got ${quote(value)}`,
      { param },
    );
  }
  return value;
}

/** Rejects any query parameter not in `allowed` (a typo must not silently widen the answer). */
function checkQueryKeys(req: FastifyRequest, allowed: readonly string[]): Record<string, unknown> {
  const query = (req.query ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(query)) {
    if (!allowed.includes(key)) {
      const expected = allowed.length ? `; expected ${allowed.join(', ')}` : '';
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `unknown query parameter ${quote(key)}${expected}`, { param: key });
    }
  }
  return query;
}

function requireModel(vmis: VmiReadModel | undefined): VmiReadModel {
  if (!vmis) throw new VhError(ErrorCodes.NOT_READY, 'VMI support is not enabled on this virt-handler');
  return vmis;
}

/**
 * Splits the wildcard rest of `/v1/vmis/<namespace>/<name>` into its two decoded segments.
 * Decoding is done here, segment by segment, so an encoded '/' (%2F) stays inside its segment
 * (and is then refused by the label check) instead of shifting namespace and name.
 */
function splitRef(rawUrl: string): { namespace: string; name: string; sub: 'events' | null } | null {
  const pathPart = rawUrl.split('?')[0] ?? '';
  const rest = pathPart.slice('/v1/vmis/'.length);
  const segments = rest.split('/');
  let sub: 'events' | null = null;
  if (segments.length === 3 && segments[2] === 'events') {
    sub = 'events';
    segments.pop();
  }
  if (segments.length !== 2) return null;
  const decoded = segments.map((s, i) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${i === 0 ? 'namespace' : 'name'}: malformed percent-encoding`, { param: i === 0 ? 'namespace' : 'name' });
    }
  });
  return { namespace: decoded[0]!, name: decoded[1]!, sub };
}

function byNamespaceAndName(a: VmiView, b: VmiView): number {
  return a.namespace === b.namespace ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.namespace < b.namespace ? -1 : 1;
}

/** Registers the VMI routes. Without a read model (VMI support off) both answer 503 NOT_READY. */
export function registerVmiRoutes(app: FastifyInstance, vmis: VmiReadModel | undefined): void {
  app.get('/v1/vmis', async (req) => {
    const query = checkQueryKeys(req, ['namespace']);
    const namespace = query.namespace === undefined ? undefined : checkLabel('namespace', query.namespace);
    const model = requireModel(vmis);
    const items = model.list(namespace).filter((v) => namespace === undefined || v.namespace === namespace);
    return { items: [...items].sort(byNamespaceAndName).map(redactSecrets) };
  });

  app.get('/v1/vmis/*', async (req) => {
    checkQueryKeys(req, []);
    const ref = splitRef(req.url);
    if (!ref) {
      throw new VhError(ErrorCodes.NOT_FOUND, `no route for GET ${req.url.split('?')[0]}; use GET /v1/vmis, /v1/vmis/<namespace>/<name> or /v1/vmis/<namespace>/<name>/events`);
    }
    const namespace = checkLabel('namespace', ref.namespace);
    const name = checkLabel('name', ref.name);
    const view = requireModel(vmis).get(namespace, name);
    if (!view) throw new VhError(ErrorCodes.NOT_FOUND, `vmi ${namespace}/${name} not found`, { namespace, name });
    // Events oldest first (by last occurrence), repeats folded with count/first/lastTimestamp.
    if (ref.sub === 'events') return redactSecrets({ namespace, name, uid: view.uid, items: view.events });
    return redactSecrets(view);
  });
}
