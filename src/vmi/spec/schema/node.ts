/**
 * The declarative field schema: every field kubevirt.io/v1 accepts, with its kind, in one tree
 * (built from the area files beside this one), and the walker that checks a manifest against it.
 *
 * The walker reports, with full field paths and all at once: unknown fields (objects are strict),
 * values of the wrong kind, enum values out of range. It also lists the fields this node accepts
 * but cannot honour (`needs`): such a field is not an error, it is a requirement the VMI waits on.
 * Range checks, cross-references and host paths of the fields the node honours stay in
 * validate.ts, which reads those fields itself; the messages for a wrong kind are the same words
 * as the FieldReader's, so a problem both see is reported once (Violations folds duplicates).
 */
import { parseQuantity } from '../quantity';
import { MAX_LIST_ITEMS, child, isPlainObject, q, type Violations } from '../field-reader';
import type { VmiRequirement } from '../types';

/** What the node lacks for a field: a fixed text, or one built from the field's value (null: nothing lacking). */
export type Needs = string | ((value: unknown) => string | null);

interface Base {
  /** Set: the field is accepted but this node cannot honour it. */
  needs?: Needs;
}
type LeafKind = 'string' | 'int' | 'bool' | 'quantity' | 'intOrString' | 'number';
export interface LeafNode<K extends LeafKind = LeafKind, E extends string = string> extends Base {
  t: K;
  enum?: readonly E[];
}
export interface ObjectNode<F extends Readonly<Record<string, SchemaNode>> = Readonly<Record<string, SchemaNode>>> extends Base {
  t: 'object';
  fields: F;
}
export interface ArrayNode<I extends SchemaNode = SchemaNode> extends Base {
  t: 'array';
  // eslint-disable-next-line no-use-before-define
  items: I;
}
export interface MapNode<V extends SchemaNode = SchemaNode> extends Base {
  t: 'map';
  values: V;
}
// The generic defaults keep the tree's literal shape, so Infer<> can turn it into TypeScript types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SchemaNode = LeafNode | ObjectNode<any> | ArrayNode<any> | MapNode<any>;

/** The TypeScript type of the values a schema node accepts (every object field optional, as in a manifest). */
export type Infer<N> =
  N extends ObjectNode<infer F> ? { [K in keyof F]?: Infer<F[K]> } :
  N extends ArrayNode<infer I> ? Array<Infer<I>> :
  N extends MapNode<infer V> ? Record<string, Infer<V>> :
  N extends LeafNode<'string', infer E> ? (string extends E ? string : E) :
  N extends LeafNode<'int' | 'number'> ? number :
  N extends LeafNode<'bool'> ? boolean :
  N extends LeafNode<'quantity' | 'intOrString'> ? string | number :
  never;

// ----- builders (the area files read like the API reference) ---------------------------------

export const str = (): LeafNode<'string'> => ({ t: 'string' });
export const int = (): LeafNode<'int'> => ({ t: 'int' });
export const num = (): LeafNode<'number'> => ({ t: 'number' });
export const bool = (): LeafNode<'bool'> => ({ t: 'bool' });
export const qty = (): LeafNode<'quantity'> => ({ t: 'quantity' });
/** Kubernetes IntOrString (probe ports). */
export const intOrStr = (): LeafNode<'intOrString'> => ({ t: 'intOrString' });
export const oneOf = <const E extends string>(values: readonly E[]): LeafNode<'string', E> => ({ t: 'string', enum: values });
export const obj = <const F extends Readonly<Record<string, SchemaNode>>>(fields: F): ObjectNode<F> => ({ t: 'object', fields });
/** An object with no fields, e.g. `pod: {}`, `masquerade: {}`. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export const empty = (): ObjectNode<{}> => obj({});
export const arr = <I extends SchemaNode>(items: I): ArrayNode<I> => ({ t: 'array', items });
export const map = <V extends SchemaNode>(values: V): MapNode<V> => ({ t: 'map', values });
/** The same node, accepted but not honoured on this node. */
export function needs<T extends SchemaNode>(node: T, what: Needs): T {
  return { ...node, needs: what };
}
/** Kubernetes' {name} reference (LocalObjectReference). */
export const localRef = () => obj({ name: str() });
/** FeatureState: `{enabled?: bool}`. */
export const featureState = () => obj({ enabled: bool() });

// ----- the walker ---------------------------------------------------------------------------

/** Checks `value` at `field` against `node`; adds violations and (outside a needing parent) requirements. */
export function checkNode(node: SchemaNode, value: unknown, field: string, v: Violations, reqs: VmiRequirement[] | null): void {
  let inner = reqs;
  if (node.needs !== undefined && reqs !== null) {
    const text = typeof node.needs === 'string' ? node.needs : node.needs(value);
    if (text !== null) {
      reqs.push({ field, needs: text });
      inner = null; // the field as a whole is the requirement; its parts are not listed again
    }
  }
  switch (node.t) {
    case 'object': {
      if (!isPlainObject(value)) return v.add(field, 'must be an object');
      for (const key of Object.keys(value)) {
        const sub = Object.hasOwn(node.fields, key) ? node.fields[key] : undefined;
        const f = child(field, key);
        if (sub === undefined) v.add(f, 'unknown field');
        else checkNode(sub, ownValue(value, key), f, v, inner);
      }
      return;
    }
    case 'array': {
      if (!Array.isArray(value)) return v.add(field, 'must be a list');
      const n = Math.min(value.length, MAX_LIST_ITEMS);
      for (let i = 0; i < n; i++) checkNode(node.items, Object.hasOwn(value, i) ? value[i] : undefined, `${field}[${i}]`, v, inner);
      return;
    }
    case 'map': {
      if (!isPlainObject(value)) return v.add(field, 'must be an object');
      for (const key of Object.keys(value)) checkNode(node.values, ownValue(value, key), child(field, key), v, inner);
      return;
    }
    default:
      checkLeaf(node, value, field, v);
  }
}

function ownValue(o: object, key: string): unknown {
  const desc = Object.getOwnPropertyDescriptor(o, key);
  return desc !== undefined && 'value' in desc ? (desc.value as unknown) : undefined;
}

function checkLeaf(node: LeafNode, value: unknown, field: string, v: Violations): void {
  switch (node.t) {
    case 'string':
      if (typeof value !== 'string') return v.add(field, 'must be a string');
      if (node.enum !== undefined && !node.enum.includes(value)) v.add(field, `must be one of ${node.enum.join(', ')} (got ${q(value)})`);
      return;
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) v.add(field, 'must be an integer');
      return;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) v.add(field, 'must be a number');
      return;
    case 'bool':
      if (typeof value !== 'boolean') v.add(field, 'must be true or false');
      return;
    case 'intOrString':
      if (typeof value !== 'string' && !(typeof value === 'number' && Number.isSafeInteger(value))) v.add(field, 'must be an integer or a string');
      return;
    case 'quantity': {
      // Syntax only, in quantity.ts's words (so validate.ts, which reads the quantities this node
      // honours exactly, reports the same message once); precision and range are its business.
      const r = parseQuantity(value, { scale: 0 });
      if (!r.ok && !/is not a whole|is too large/.test(r.error)) v.add(field, r.error);
      return;
    }
  }
}
