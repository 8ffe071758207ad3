/**
 * Manifest text (JSON or YAML) to a plain value, refusing what a VMI manifest never needs and an
 * attacker likes: more than one document, aliases (billion-laughs expansion), explicit tags other
 * than the YAML core ones (!!binary, !!set, custom !foo), duplicate keys, and inputs over 1 MiB.
 * Text starting with '{' or '[' is JSON (exact JSON semantics); anything else goes through the
 * YAML 1.2 core schema. Failures are FieldViolations on field 'manifest', positioned as
 * "line L, column C: ..." when the parser knows where. The result is still untrusted: it goes to
 * validateVmi next. Never throws.
 */

import { LineCounter, isAlias, isNode, parseAllDocuments, visit } from 'yaml';
import type { FieldViolation } from './types';

export type ManifestResult = { ok: true; value: unknown } | { ok: false; violations: FieldViolation[] };

/** Largest manifest accepted, in UTF-8 bytes. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

/** Explicit tags that only restate what the core schema would infer. */
const ALLOWED_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `tag:yaml.org,2002:${t}`));
const FIELD = 'manifest';

/** Parses one JSON or YAML manifest document. */
export function parseManifest(text: string): ManifestResult {
  try {
    if (typeof text !== 'string') return fail('must be text');
    if (Buffer.byteLength(text, 'utf8') > MAX_MANIFEST_BYTES) {
      return fail(`is larger than ${MAX_MANIFEST_BYTES} bytes (1 MiB)`);
    }
    const body = text.replace(/^\uFEFF/, '');
    if (body.trim() === '') return fail('is empty');
    return /^\s*[[{]/.test(body) ? parseJson(body) : parseYaml(body);
  } catch (e) {
    // Deep nesting can exhaust the stack inside either parser; that is a refusal, not a crash.
    return fail(`cannot be parsed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function fail(message: string, pos?: { line: number; col: number }): ManifestResult {
  const where = pos === undefined ? '' : `line ${pos.line}, column ${pos.col}: `;
  return { ok: false, violations: [{ field: FIELD, message: `${where}${message}` }] };
}

function parseJson(text: string): ManifestResult {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const m = /at position (\d+)/.exec(message);
    const pos = m === null ? undefined : lineCol(text, Number(m[1]));
    return fail(`invalid JSON: ${message.replace(/ in JSON at position \d+.*$/s, '')}`, pos);
  }
}

function lineCol(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, col: offset - before.lastIndexOf('\n') };
}

function parseYaml(text: string): ManifestResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter, prettyErrors: false, uniqueKeys: true, schema: 'core', strict: true,
  });
  const list = Array.isArray(docs) ? docs : [];
  if (list.length === 0) return fail('contains no YAML document');
  if (list.length > 1) {
    const second = list[1]?.range[0] ?? 0;
    return fail(`contains ${list.length} YAML documents; submit exactly one VirtualMachineInstance`, lineCounter.linePos(second));
  }
  const doc = list[0]!;
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem !== undefined) {
    const pos = problem.linePos?.[0] ?? lineCounter.linePos(problem.pos[0]);
    return fail(`invalid YAML: ${problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, pos);
  }
  if (doc.contents === null) return fail('contains no content');
  let refusal: ManifestResult | null = null;
  visit(doc, (_key, node) => {
    if (!isNode(node)) return undefined;
    const pos = node.range === null || node.range === undefined ? undefined : lineCounter.linePos(node.range[0]);
    if (isAlias(node)) {
      refusal = fail(`YAML aliases are not allowed (found *${node.source})`, pos);
      return visit.BREAK;
    }
    if (typeof node.tag === 'string' && !ALLOWED_TAGS.has(node.tag)) {
      refusal = fail(`YAML tag ${JSON.stringify(node.tag)} is not allowed`, pos);
      return visit.BREAK;
    }
    return undefined;
  });
  if (refusal !== null) return refusal;
  return { ok: true, value: doc.toJS({ maxAliasCount: 0 }) as unknown };
}
