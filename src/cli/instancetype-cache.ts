/**
 * The instancetypes and preferences vhctl has created on this node, kept so that a later
 * `vhctl create` of a VirtualMachine naming one can be expanded (virt-controller reads them
 * from the API server; a node has none). vhctl expands VMs itself, so the daemon never sees
 * these objects: one JSON file per object under
 *   $XDG_CACHE_HOME/virt-handler/instancetypes/<kind>/[<namespace>/]<name>.json
 * ($XDG_CACHE_HOME defaults to ~/.cache), written 0600 in 0700 directories, atomically.
 * A cached file is untrusted input: it is checked again on every read.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type InstancetypeKind, type PreferenceKind } from '../vmi/spec/documents';
import { readInstancetype, readPreference, type ClusterObject, type Instancetype, type Preference } from '../vmi/spec/instancetype';

/** The cache directory for this environment. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'virt-handler', 'instancetypes');
}

export class InstancetypeCache {
  constructor(readonly dir: string) {}

  fileOf(kind: string, namespace: string | null, name: string): string {
    return path.join(this.dir, kind, ...(namespace === null ? [] : [namespace]), `${name}.json`);
  }

  /** Records an object (its document as given); returns the file written. */
  put(o: ClusterObject<string>, document: unknown): string {
    const file = this.fileOf(o.kind, o.namespace, o.name);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(document, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
    return file;
  }

  instancetype(kind: InstancetypeKind, namespace: string | null, name: string): Instancetype | null {
    const value = this.read(kind, namespace, name);
    if (value === null) return null;
    const r = readInstancetype(value, kind);
    return r.ok && r.object.name === name ? r.object : null;
  }

  preference(kind: PreferenceKind, namespace: string | null, name: string): Preference | null {
    const value = this.read(kind, namespace, name);
    if (value === null) return null;
    const r = readPreference(value, kind);
    return r.ok && r.object.name === name ? r.object : null;
  }

  private read(kind: string, namespace: string | null, name: string): Record<string, unknown> | null {
    if (!/^[a-z0-9][a-z0-9.-]*$/.test(name) || (namespace !== null && !/^[a-z0-9][a-z0-9-]*$/.test(namespace))) return null;
    try {
      const value = JSON.parse(fs.readFileSync(this.fileOf(kind, namespace, name), 'utf8')) as unknown;
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
    } catch {
      return null; // absent or unreadable: the VM is refused naming the missing object
    }
  }
}
