/**
 * The identifier syntaxes every entry point checks the same way: the manifest validator, the
 * gRPC and HTTP refs, the record store's directory names and the launcher's registration.
 */

/** A lower-case canonical UUID (what the daemon issues and stores). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Kubernetes' DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 1-63 characters. */
export const DNS_LABEL_MAX = 63;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

export function isDnsLabel(s: string): boolean {
  return s.length > 0 && s.length <= DNS_LABEL_MAX && DNS_LABEL_RE.test(s);
}

/** Kubernetes' DNS-1123 subdomain (object names such as claims): dot-separated labels, at most 253 characters; never '.', '..' or a '/'. */
export const DNS_SUBDOMAIN_MAX = 253;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= DNS_SUBDOMAIN_MAX && DNS_SUBDOMAIN_RE.test(s);
}
