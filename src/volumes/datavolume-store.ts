/**
 * DataVolume records: one JSON file per DataVolume, `<stateDir>/datavolumes/<namespace>_<name>.json`
 * (namespaces are DNS labels and names DNS subdomains, neither holds '_'), 0600 in a 0700
 * directory. A write is atomic and durable: a temporary file beside it, fsync, rename, fsync of
 * the directory; a crash leaves the old record or the new one. Progress-only writes skip the
 * fsyncs (`sync: false`; still atomic). A record that does not parse is moved aside
 * (`.corrupt-<time>`) and reported, never deleted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, VhError, errnoFacts } from '../errors';
import { fsyncDir, moveAside, writeFileAtomic } from '../util/atomic-file';
import type { DataVolumeRecord } from './datavolume-types';

const FILE_RE = /^([a-z0-9-]+)_([a-z0-9.-]+)\.json$/;

export class DataVolumeStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'datavolumes');
  }

  file(namespace: string, name: string): string {
    return path.join(this.dir, `${namespace}_${name}.json`);
  }

  /** Writes `rec` atomically; throws STATE_WRITE_FAILED (the previous record is kept). */
  write(rec: DataVolumeRecord, opts: { sync?: boolean } = {}): void {
    const sync = opts.sync !== false;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(rec.namespace, rec.name);
    try {
      writeFileAtomic(file, `${JSON.stringify(rec, null, 1)}\n`, { sync });
    } catch (e) {
      const code = errnoFacts(e)?.code ?? 'error';
      throw new VhError(ErrorCodes.STATE_WRITE_FAILED, `cannot write DataVolume record ${file}: ${code}`, { path: file, code }, { cause: e });
    }
  }

  remove(namespace: string, name: string): void {
    fs.rmSync(this.file(namespace, name), { force: true });
    if (fs.existsSync(this.dir)) fsyncDir(this.dir);
  }

  /** Every record, and what was wrong with the files that are not. Leftover temporaries are removed. */
  load(): { records: DataVolumeRecord[]; problems: string[] } {
    const records: DataVolumeRecord[] = [];
    const problems: string[] = [];
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return { records, problems };
    }
    for (const n of names) {
      const file = path.join(this.dir, n);
      if (n.includes('.json.tmp-')) {
        fs.rmSync(file, { force: true }); // a write that never reached its rename
        continue;
      }
      const m = FILE_RE.exec(n);
      if (!m) continue;
      const rec = parse(fs.readFileSync(file, 'utf8'), m[1]!, m[2]!);
      if (typeof rec === 'string') {
        moveAside(file, rec, problems);
        continue;
      }
      records.push(rec);
    }
    return { records, problems };
  }
}

function parse(text: string, namespace: string, name: string): DataVolumeRecord | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const r = v as Partial<DataVolumeRecord>;
  if (r.version !== 1) return `unsupported version ${JSON.stringify(r.version)}`;
  if (r.namespace !== namespace || r.name !== name) return 'namespace/name do not match the file name';
  if (typeof r.manifest !== 'object' || r.manifest === null || typeof r.status !== 'object' || r.status === null) return 'manifest or status missing';
  if (typeof r.uid !== 'string' || typeof r.deleting !== 'boolean' || !Array.isArray(r.events)) return 'bookkeeping fields missing';
  return r as DataVolumeRecord;
}
