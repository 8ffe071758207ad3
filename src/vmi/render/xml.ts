/**
 * A tiny XML builder where escaping happens by construction.
 *
 * - `element(name, attrs, ...children)` builds a tree; attribute values and text children are
 *   DATA: they are always escaped on output (&, <, >, ", ' plus \t \n \r inside attributes and
 *   \r inside text, so every value re-parses to exactly the same string).
 * - Element and attribute names come from code, never from users: they are checked against a
 *   strict regex and an invalid one throws (a programming error).
 * - Characters XML 1.0 does not allow (C0 controls other than \t \n \r, lone surrogates,
 *   U+FFFE/U+FFFF) cannot be represented at all, not even escaped: they are rejected with a
 *   VhError(INVALID_ARGUMENT) naming where they were found, because they arrive from manifests.
 * - Serialization is deterministic: two-space indentation, attributes in the order given,
 *   double-quoted; `undefined`/`null` attributes and `undefined`/`null`/`false` children are
 *   skipped. An element whose children are all elements is printed one child per line; an
 *   element holding any text is printed on one line with no whitespace added (so text survives
 *   byte for byte).
 */

import { ErrorCodes, VhError } from '../../errors';

export type XmlAttrValue = string | number | boolean | null | undefined;
export type XmlAttrs = Readonly<Record<string, XmlAttrValue>>;

export interface XmlElement {
  readonly kind: 'element';
  readonly name: string;
  /** [name, value] in output order; values not yet escaped. */
  readonly attrs: ReadonlyArray<readonly [string, string]>;
  readonly children: ReadonlyArray<XmlNode>;
}

export interface XmlText {
  readonly kind: 'text';
  readonly text: string;
}

export type XmlNode = XmlElement | XmlText;

/** What may be passed as a child: nodes, text (strings/numbers), nested arrays, or nothing. */
export type XmlChild = XmlNode | string | number | null | undefined | false | ReadonlyArray<XmlChild>;

/**
 * XML names restricted to ASCII: a letter or `_` first, then letters, digits, `_ . -`; at most
 * one `:` separating a prefix (for `xmlns:vh`, `vh:uid`). Stricter than XML on purpose.
 */
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*(?::[A-Za-z_][A-Za-z0-9_.-]*)?$/;

/**
 * Characters outside XML 1.0's Char production: C0 controls except TAB/LF/CR, unpaired
 * surrogates, U+FFFE and U+FFFF.
 */
const INVALID_CHAR_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkName(name: string, what: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TypeError(`invalid XML ${what} name: ${JSON.stringify(name)}`);
  }
}

/** Throws VhError(INVALID_ARGUMENT) when `value` holds a character XML 1.0 cannot carry. */
export function assertXmlChars(value: string, where: string): void {
  const m = INVALID_CHAR_RE.exec(value);
  if (m) {
    const code = m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${where} contains U+${code} at offset ${m.index}, a character XML 1.0 does not allow`, {
      where,
      offset: m.index,
      codePoint: `U+${code}`,
    });
  }
}

/** True when every character of `value` is allowed in XML 1.0. */
export function isXmlSafe(value: string): boolean {
  return !INVALID_CHAR_RE.test(value);
}

/** A text node (also what plain strings/numbers among children become). */
export function text(value: string | number): XmlText {
  const s = typeof value === 'number' ? numberText(value) : value;
  if (typeof s !== 'string') throw new TypeError(`XML text must be a string or number, got ${typeof value}`);
  assertXmlChars(s, 'text');
  return { kind: 'text', text: s };
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`XML number must be finite, got ${n}`);
  return String(n);
}

function attrText(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return numberText(v);
  return v;
}

function pushChildren(out: XmlNode[], child: XmlChild): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child as ReadonlyArray<XmlChild>) pushChildren(out, c);
    return;
  }
  if (typeof child === 'string' || typeof child === 'number') {
    const t = text(child);
    if (t.text !== '') out.push(t);
    return;
  }
  const node = child as XmlNode;
  if (node.kind !== 'element' && node.kind !== 'text') throw new TypeError('not an XML node');
  out.push(node);
}

/**
 * An element. Attribute values: strings/numbers as given, booleans as yes/no, null/undefined
 * skipped. Children: elements, text, arrays of those; null/undefined/false skipped.
 */
export function element(name: string, attrs?: XmlAttrs | null, ...children: XmlChild[]): XmlElement {
  checkName(name, 'element');
  const outAttrs: Array<readonly [string, string]> = [];
  const seen = new Set<string>();
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      checkName(k, 'attribute');
      if (v === null || v === undefined) continue;
      if (seen.has(k)) throw new TypeError(`duplicate XML attribute ${k}`);
      seen.add(k);
      const s = attrText(v);
      assertXmlChars(s, `attribute ${name}/@${k}`);
      outAttrs.push([k, s]);
    }
  }
  const outChildren: XmlNode[] = [];
  for (const c of children) pushChildren(outChildren, c);
  return { kind: 'element', name, attrs: outAttrs, children: outChildren };
}

/** Escapes element text: & < > " ' and CR (which parsers would otherwise turn into LF). */
export function escapeText(s: string): string {
  return s.replace(/[&<>"'\r]/g, (c) => ESCAPES[c] as string);
}

/** Escapes an attribute value: as text, plus TAB/LF (attribute normalisation would make them spaces). */
export function escapeAttr(s: string): string {
  return s.replace(/[&<>"'\t\n\r]/g, (c) => ESCAPES[c] as string);
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

function openTag(el: XmlElement): string {
  let s = `<${el.name}`;
  for (const [k, v] of el.attrs) s += ` ${k}="${escapeAttr(v)}"`;
  return s;
}

function inline(node: XmlNode): string {
  if (node.kind === 'text') return escapeText(node.text);
  if (node.children.length === 0) return `${openTag(node)}/>`;
  return `${openTag(node)}>${node.children.map(inline).join('')}</${node.name}>`;
}

function pretty(el: XmlElement, depth: number, out: string[]): void {
  const pad = '  '.repeat(depth);
  if (el.children.length === 0 || el.children.some((c) => c.kind === 'text')) {
    out.push(pad + inline(el));
    return;
  }
  out.push(`${pad}${openTag(el)}>`);
  for (const c of el.children) pretty(c as XmlElement, depth + 1, out);
  out.push(`${pad}</${el.name}>`);
}

/** Serializes a tree: two-space indentation, LF line ends, a final newline, no XML declaration. */
export function serialize(root: XmlElement): string {
  const out: string[] = [];
  pretty(root, 0, out);
  return out.join('\n') + '\n';
}
