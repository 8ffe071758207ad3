/**
 * Host path confinement for VMI volumes and kernel boot files: both the path as written (relative
 * ones joined onto imageRoot) and its realpath must lie strictly inside a root (imageRoot or a
 * hostPathRoot, taken as given or as realpath); only regular files; no `..` components, NUL or
 * control characters; DiskOrCreate on a missing file needs an existing parent inside the roots
 * and no dangling symlink at the path. A pre-check: whoever opens the file later must still open
 * the realpath with O_NOFOLLOW. Messages never echo a symlink's target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errnoFacts } from '../../errors';
import { CONTROL_RE, type Violations, q } from './field-reader';

const MAX_PATH = 4096;

interface Roots {
  lexical: string[];
  real: string[];
}

export class HostPaths {
  readonly imageRoot: string;
  private readonly roots: Roots;

  constructor(
    private readonly v: Violations,
    ctx: { imageRoot?: unknown; hostPathRoots?: unknown },
  ) {
    this.imageRoot = path.resolve(typeof ctx.imageRoot === 'string' ? ctx.imageRoot : '/nonexistent');
    const hostRoots = Array.isArray(ctx.hostPathRoots) ? ctx.hostPathRoots.filter((r): r is string => typeof r === 'string') : [];
    const lexical = [this.imageRoot, ...hostRoots.map((r) => path.resolve(r))];
    const real: string[] = [];
    for (const root of lexical) {
      try {
        real.push(fs.realpathSync(root));
      } catch {
        // A root that does not exist cannot contain anything.
      }
    }
    this.roots = { lexical: [...lexical, ...real], real };
  }

  private inside(p: string, roots: readonly string[]): boolean {
    return roots.some((root) => {
      const rel = path.relative(root, p);
      return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
    });
  }

  /**
   * A host path confined to the roots, resolved to its realpath. With `mayCreate`, a missing file
   * is accepted when its parent directory exists inside the roots (exists: false).
   */
  check(value: unknown, field: string, mayCreate: boolean): { path: string; exists: boolean } | undefined {
    if (typeof value !== 'string') {
      this.v.add(field, 'must be a string');
      return undefined;
    }
    if (value === '') return this.refuse(field, 'must not be empty');
    if (value.length > MAX_PATH) return this.refuse(field, `must be at most ${MAX_PATH} characters`);
    if (value.includes('\0')) return this.refuse(field, 'must not contain NUL');
    if (CONTROL_RE.test(value)) return this.refuse(field, 'must not contain control characters (including newlines)');
    if (value.split('/').includes('..')) return this.refuse(field, `${q(value)} must not contain ".." components`);
    const lexical = path.isAbsolute(value) ? path.normalize(value) : path.join(this.imageRoot, value);
    if (!this.inside(lexical, this.roots.lexical)) return this.refuse(field, `${q(value)} is outside the allowed host path roots`);
    let real: string;
    try {
      real = fs.realpathSync(lexical);
    } catch (e) {
      const code = errnoFacts(e)?.code ?? 'unknown error';
      if (code === 'ENOENT' && mayCreate) return this.toCreate(lexical, value, field);
      if (code === 'ENOENT') return this.refuse(field, `${q(value)} does not exist`);
      if (code === 'ELOOP') return this.refuse(field, `${q(value)} has a symlink loop`);
      return this.refuse(field, `${q(value)} cannot be resolved (${code})`);
    }
    if (!this.inside(real, this.roots.real)) {
      // The symlink target is not echoed: messages reach whoever submitted the manifest.
      return this.refuse(field, `${q(value)} resolves (through a symlink) outside the allowed host path roots`);
    }
    let isFile = false;
    try {
      isFile = fs.statSync(real).isFile();
    } catch (e) {
      return this.refuse(field, `${q(value)} cannot be read (${errnoFacts(e)?.code ?? 'unknown error'})`);
    }
    if (!isFile) return this.refuse(field, `${q(value)} is not a regular file`);
    return { path: real, exists: true };
  }

  private toCreate(lexical: string, value: string, field: string): { path: string; exists: boolean } | undefined {
    try {
      fs.lstatSync(lexical);
      return this.refuse(field, `${q(value)} is a dangling symlink`);
    } catch {
      // Expected: nothing at all at the path.
    }
    let parent: string;
    try {
      parent = fs.realpathSync(path.dirname(lexical));
      if (!fs.statSync(parent).isDirectory()) return this.refuse(field, `the parent of ${q(value)} is not a directory`);
    } catch {
      return this.refuse(field, `the parent directory of ${q(value)} does not exist`);
    }
    const target = path.join(parent, path.basename(lexical));
    if (!this.inside(target, this.roots.real)) {
      return this.refuse(field, `${q(value)} resolves (through a symlink) outside the allowed host path roots`);
    }
    return { path: target, exists: false };
  }

  private refuse(field: string, message: string): undefined {
    this.v.add(field, message);
    return undefined;
  }
}
