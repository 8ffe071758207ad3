/**
 * Finds a node-local claim: `<root>/<namespace>/<name>/disk.img` (filesystem mode: a regular
 * file, raw or qcow2 by its magic) or `<root>/<namespace>/<name>/disk` (block mode: a block
 * device node). Its realpath must stay inside the claim root: a symlinked directory or file that
 * leads out is refused. Used by the VMI start (vmi/control/claims.ts) and by DataVolume clones.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { detectImageFormat } from '../vmi/render/disk-plan';

export type ClaimLookup =
  | { ok: true; path: string; format: 'qcow2' | 'raw'; block: boolean }
  | { ok: false; missing: boolean; reason: string };

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * Finds claim `name` of `namespace` under `root`. Both names are DNS-1123 (validated), so they
 * are single path components; the realpath check catches a symlinked directory or file.
 */
export function lookupClaim(root: string, namespace: string, name: string): ClaimLookup {
  const dir = path.join(root, namespace, name);
  const where = `PersistentVolumeClaim ${namespace}/${name}`;
  const missing = { ok: false as const, missing: true, reason: `${where} not found under ${root} (no ${dir}/disk.img or block device ${dir}/disk)` };
  let realRoot: string;
  try {
    realRoot = fs.realpathSync(root);
  } catch {
    return missing;
  }
  for (const [file, block] of [['disk.img', false], ['disk', true]] as const) {
    const p = path.join(dir, file);
    let st: fs.Stats | null;
    let real: string;
    try {
      st = statOrNull(p);
      if (st === null) continue;
      real = fs.realpathSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // a dangling symlink, or a directory being replaced
      return { ok: false, missing: false, reason: `${where}: cannot read ${p}: ${(e as Error).message}` };
    }
    if (!isInside(realRoot, real)) return { ok: false, missing: false, reason: `${where}: ${p} resolves to ${real}, outside the claim root ${realRoot}; refused` };
    const target = fs.statSync(real);
    if (!block && !target.isFile()) return { ok: false, missing: false, reason: `${where}: ${p} is not a regular file` };
    if (block && !target.isBlockDevice()) return { ok: false, missing: false, reason: `${where}: ${p} is not a block device` };
    if (block) return { ok: true, path: real, format: 'raw', block: true };
    try {
      return { ok: true, path: real, format: detectImageFormat(real), block: false };
    } catch (e) {
      return { ok: false, missing: false, reason: `${where}: ${(e as Error).message}` };
    }
  }
  return missing;
}
