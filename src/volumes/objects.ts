/**
 * The Kubernetes objects this node serves as volumes (ConfigMaps, Secrets, service accounts),
 * read from the node's object root, one file per key, as kubelet projects them into a pod:
 *
 *   <root>/<namespace>/configmaps/<name>/<key>
 *   <root>/<namespace>/secrets/<name>/<key>
 *   <root>/<namespace>/serviceaccounts/<name>/{token,ca.crt,namespace}
 *
 * The root is filled by whoever owns the objects (a DaemonSet syncing them into a hostPath, or
 * the operator of a standalone node); this module only reads, as root, and trusts nothing it
 * finds: a path that resolves outside the root (a symlink leading out) is refused, so are
 * special files, directories where keys should be, key names Kubernetes would not allow and
 * objects larger than Kubernetes allows (1 MiB). Symlinks that stay inside the root are
 * followed (kubelet's atomic writer makes `key -> ..data/key`); entries starting with '..' are
 * that writer's bookkeeping and are skipped.
 *
 * Content may be secret: it is returned, never logged, and errors name keys, never values.
 */
import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

export type ObjectKind = 'configmaps' | 'secrets' | 'serviceaccounts';

export interface ObjectRef {
  namespace: string;
  kind: ObjectKind;
  name: string;
}

/** What the root holds for a reference: the keys (sorted) and their bytes, or nothing at `dir`. */
export type ObjectRead = { found: true; dir: string; keys: Array<{ key: string; data: Buffer }> } | { found: false; dir: string };

/** Kubernetes' limit for a ConfigMap or Secret (etcd's request size). */
export const MAX_OBJECT_BYTES = 1024 * 1024;
/** Keys per object (a bound against a root filled with junk). */
export const MAX_OBJECT_KEYS = 1024;
/** Kubernetes' ConfigMap/Secret key: [-._a-zA-Z0-9]+, at most 253, not '.' or '..'. */
const KEY_RE = /^[-._a-zA-Z0-9]{1,253}$/;
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** An object that exists but cannot be served as it is; the message says what to fix. */
export class ObjectError extends Error {
  override name = 'ObjectError';
}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** The object's directory under `root` (the names are checked: they become path components). */
export function objectDir(root: string, ref: ObjectRef): string {
  if (!NAMESPACE_RE.test(ref.namespace)) throw new ObjectError(`namespace ${JSON.stringify(ref.namespace)} is not a DNS-1123 label`);
  if (ref.name.length > 253 || !NAME_RE.test(ref.name)) throw new ObjectError(`${ref.kind} name ${JSON.stringify(ref.name)} is not a DNS-1123 subdomain`);
  return path.join(root, ref.namespace, ref.kind, ref.name);
}

/** Reads one object; `found: false` when its directory does not exist. Throws ObjectError for an unusable one. */
export async function readObject(root: string, ref: ObjectRef, maxBytes = MAX_OBJECT_BYTES): Promise<ObjectRead> {
  const dir = objectDir(root, ref);
  let realRoot: string;
  let realDir: string;
  try {
    realRoot = await fs.realpath(root);
    realDir = await fs.realpath(dir);
  } catch (e) {
    if (code(e) === 'ENOENT') return { found: false, dir };
    if (code(e) === 'ENOTDIR') throw new ObjectError(`${dir}: a path component is not a directory`);
    throw new ObjectError(`${dir}: ${(e as Error).message}`);
  }
  if (!inside(realRoot, realDir)) throw new ObjectError(`${dir} resolves to ${realDir}, outside the object root ${realRoot}`);
  if (!(await fs.stat(realDir)).isDirectory()) throw new ObjectError(`${dir} is not a directory (an object is a directory with one file per key)`);
  const names = (await fs.readdir(realDir)).filter((n) => !n.startsWith('..')).sort();
  if (names.length > MAX_OBJECT_KEYS) throw new ObjectError(`${dir} has ${names.length} entries; at most ${MAX_OBJECT_KEYS} keys are served`);
  const keys: Array<{ key: string; data: Buffer }> = [];
  let total = 0;
  for (const key of names) {
    if (!KEY_RE.test(key) || key === '.') throw new ObjectError(`${dir}: ${JSON.stringify(key)} is not a valid key (Kubernetes allows [-._a-zA-Z0-9], at most 253 characters)`);
    const file = path.join(realDir, key);
    let real: string;
    try {
      real = await fs.realpath(file);
    } catch (e) {
      throw new ObjectError(`${dir}: key ${key}: ${code(e) === 'ENOENT' ? 'a dangling symlink' : (e as Error).message}`);
    }
    if (!inside(realRoot, real)) throw new ObjectError(`${dir}: key ${key} resolves to ${real}, outside the object root ${realRoot}`);
    const data = await readBounded(real, maxBytes - total, `${dir}: key ${key}`, maxBytes);
    total += data.length;
    keys.push({ key, data });
  }
  return { found: true, dir, keys };
}

/** A regular file's bytes, at most `room`; O_NOFOLLOW: a file swapped for a symlink after realpath is refused. */
async function readBounded(file: string, room: number, what: string, maxBytes: number): Promise<Buffer> {
  let fh;
  try {
    fh = await fs.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    throw new ObjectError(`${what}: ${code(e) === 'ELOOP' ? 'became a symlink while being read' : (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ObjectError(`${what} is not a regular file`);
    const tooBig = (): ObjectError => new ObjectError(`${what}: the object holds more than ${maxBytes} bytes (Kubernetes' limit for a ConfigMap or Secret)`);
    if (st.size > room) throw tooBig();
    // One byte more than fstat said: a file that grew meanwhile is noticed, never read unbounded.
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > st.size) throw new ObjectError(`${what} grew while being read`);
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}
