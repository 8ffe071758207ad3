/**
 * Image references as Docker/OCI spell them (`[host[:port]/]path[:tag][@sha256:hex]`), made
 * canonical (docker.io and library/ defaults, `latest` when neither tag nor digest), and the
 * node's rewrites (`registry:5000/` -> `127.0.0.1:5123/`, longest prefix first, at a path
 * boundary) applied before anything is pulled. The canonical string is the key of the store's
 * ref index, so `alpine` and `docker.io/library/alpine:latest` are one image.
 */
import { ImageError } from './errors';

/** A parsed, canonical image reference. */
export interface ImageRef {
  /** Host[:port] of the registry (docker.io for Docker Hub). */
  registry: string;
  /** Repository path inside the registry, e.g. `library/alpine`, `kubevirt/cirros-container-disk-demo`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 hex>` when the reference pins a digest. */
  digest?: string;
}

const DEFAULT_REGISTRY = 'docker.io';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

/** Parses and canonicalises `s`; throws ImageError(InvalidReference) naming the bad part. */
export function parseReference(s: string): ImageRef {
  const bad = (why: string): ImageError => new ImageError('InvalidReference', `image reference ${JSON.stringify(s)}: ${why}`, { ref: s });
  if (s.length === 0 || s.length > 512) throw bad('must be 1-512 characters');
  if (/[\s\x00-\x1f]/.test(s) || s.includes('://')) throw bad('no whitespace, control characters or URL scheme allowed');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('digest must be sha256:<64 lowercase hex>');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag ${JSON.stringify(tag)} is not valid`);
  }
  const parts = rest.split('/');
  let registry = DEFAULT_REGISTRY;
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    registry = first;
    parts.shift();
    if (!HOST.test(registry)) throw bad(`registry host ${JSON.stringify(registry)} is not valid`);
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) throw bad('repository path components must be lowercase [a-z0-9] separated by . _ __ or -');
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift('library');
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: parts.join('/'), ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** The canonical string of `r`: `host/path[:tag][@digest]`. */
export function formatReference(r: ImageRef): string {
  return `${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/**
 * Applies the longest matching rewrite prefix to the canonical form of `s` (a prefix matches up
 * to a `/`, `:` or `@` boundary or the whole name) and parses the result again.
 */
export function rewriteReference(s: string, rewrites: Readonly<Record<string, string>>): ImageRef {
  const canonical = formatReference(parseReference(s));
  let best: [string, string] | undefined;
  for (const [from, to] of Object.entries(rewrites)) {
    const f = from.replace(/\/+$/, '');
    const boundary = canonical.charAt(f.length);
    if (canonical.startsWith(f) && (boundary === '' || boundary === '/' || boundary === ':' || boundary === '@') && (best === undefined || f.length > best[0].length)) {
      best = [f, to.replace(/\/+$/, '')];
    }
  }
  return parseReference(best === undefined ? canonical : best[1] + canonical.slice(best[0].length));
}

/** True for registries on the loopback interface (the only ones allowed without TLS). */
export function isLoopbackRegistry(host: string): boolean {
  const h = host.replace(/:[0-9]+$/, '');
  return h === 'localhost' || h === '[::1]' || /^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/.test(h);
}
