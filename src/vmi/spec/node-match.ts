/**
 * Required node affinity against this node's labels, as the Kubernetes scheduler reads it: the
 * node must match at least one nodeSelectorTerm, and a term matches when all its
 * matchExpressions do (In, NotIn, Exists, DoesNotExist, Gt, Lt). matchFields name node fields
 * (metadata.name) this check does not know, so a term using them is taken as not matching.
 * The schema has checked the kinds; anything else malformed simply does not match.
 */
import { isPlainObject } from './field-reader';

type Obj = Record<string, unknown>;

function expressionMatches(e: Obj, labels: Readonly<Record<string, string>>): boolean {
  const key = typeof e.key === 'string' ? e.key : '';
  const values = Array.isArray(e.values) ? e.values.filter((x): x is string => typeof x === 'string') : [];
  const has = Object.hasOwn(labels, key);
  const value = has ? labels[key]! : '';
  switch (e.operator) {
    case 'In': return has && values.includes(value);
    case 'NotIn': return !has || !values.includes(value);
    case 'Exists': return has;
    case 'DoesNotExist': return !has;
    case 'Gt':
    case 'Lt': {
      const [limit] = values;
      if (!has || values.length !== 1 || !/^-?\d+$/.test(value) || !/^-?\d+$/.test(limit!)) return false;
      return e.operator === 'Gt' ? Number(value) > Number(limit) : Number(value) < Number(limit);
    }
    default: return false;
  }
}

/** What the node lacks for spec.affinity's required node affinity, or null when it is satisfied (or absent). */
export function nodeAffinityNeeds(affinity: unknown, labels: Readonly<Record<string, string>>): string | null {
  if (!isPlainObject(affinity)) return null;
  const nodeAffinity = (affinity as Obj).nodeAffinity;
  const required = isPlainObject(nodeAffinity) ? (nodeAffinity as Obj).requiredDuringSchedulingIgnoredDuringExecution : undefined;
  const terms = isPlainObject(required) ? (required as Obj).nodeSelectorTerms : undefined;
  if (!Array.isArray(terms) || terms.length === 0) return null;
  const matches = terms.some((t) => {
    if (!isPlainObject(t)) return false;
    const term = t as Obj;
    if (Array.isArray(term.matchFields) && term.matchFields.length > 0) return false;
    const exprs = Array.isArray(term.matchExpressions) ? term.matchExpressions : [];
    return exprs.length > 0 && exprs.every((e) => isPlainObject(e) && expressionMatches(e as Obj, labels));
  });
  return matches ? null : `a node matching one of ${terms.length} required node selector term${terms.length === 1 ? '' : 's'} (this node's labels match none)`;
}
