/**
 * Durable per-VMI records (KubeVirt's "ghost records", done so that nothing is ever lost):
 * `<stateDir>/vmis/<uid>/record.json`, written BEFORE any side effect it describes and removed
 * only at full teardown.
 *
 * Writes are atomic: the JSON goes to a temporary file in the same directory, is fsync'ed,
 * renamed over record.json and the directory is fsync'ed. A crash at any point leaves either
 * the old record or the new one, never a torn file. Status-only writes (phase, reason, launcher
 * pid, revision: `{ sync: false }`) skip the two fsyncs: tmp + rename is still atomic for a
 * crash of the daemon (the page cache survives it), and what a power loss could lose is status
 * that died with the launchers and guests anyway. Decisions (a VMI accepted, deleting, a spawn
 * token, a session) are always fsync'ed. A burst of 200 VMIs spent 16 of 37 s of handler time
 * in those fsyncs before this split (bench:scale with --handler-prof); a failed write (ENOSPC, EROFS) throws
 * STATE_WRITE_FAILED and the last good record stays. A record that cannot be parsed at load is
 * never deleted: it is renamed to record.json.corrupt-<time> and reported, so an operator can
 * look at it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, VhError, errnoFacts } from '../../errors';
import { fsyncDir, moveAside, writeFileAtomic } from '../../util/atomic-file';
import type { VirtualMachineInstance, VmiPhase } from '../spec/types';
import { isUuid } from '../spec/ids';

export const RECORD_VERSION = 1;

/** What the handler knows about a launcher it spawned (or re-adopted). */
export interface LauncherRecord {
  /** 0 until the spawn returned a pid (a crash in between leaves 0: the launcher may still register). */
  pid: number;
  /** /proc/<pid>/stat starttime, so a recycled pid is never mistaken for our launcher. */
  startTime: number;
  /** sha256 (hex) of the one-time spawn token; '' once used. */
  spawnTokenHash: string;
  /** sha256 (hex) of the session token handed out at registration; '' before. */
  sessionTokenHash: string;
  spawnedAt: string;
  /** The libvirt this launcher was told to use (node libvirtd, or qemu:///embed in the VMI dir). */
  libvirtUri?: string;
}

export interface VmiRecord {
  version: number;
  uid: string;
  namespace: string;
  name: string;
  generation: number;
  /** The accepted manifest (uid filled in). */
  manifest: VirtualMachineInstance;
  /** DeleteVMI accepted: tear down, then remove this record. */
  deleting: boolean;
  /** False once the VMI must not run again (Halted, Once finished, Shutdown under Manual...). */
  wantRunning: boolean;
  launcher: LauncherRecord | null;
  /** Last reported phase and reason, restored after a handler restart. */
  phase: VmiPhase;
  reason: string;
  /** Launcher/guest restarts so far (runStrategy). */
  restarts: number;
  /** Digests of the images the VMI's disks are backed by (written with the spawn; image GC keeps them). */
  images?: string[];
  /** Per containerDisk volume name (or '@kernelBoot'), the digest its launcher was started with (a re-adoption resolves by it). */
  imageDigests?: Record<string, string>;
  revision: number;
  updatedAt: string;
}

export interface LoadResult {
  records: VmiRecord[];
  /** Problems met (corrupt records moved aside, stray entries). */
  problems: string[];
}

/** The on-disk record store. Methods are synchronous: records are small, and ordering matters more than latency. */
export class RecordStore {
  readonly root: string;

  constructor(stateDir: string) {
    this.root = path.join(stateDir, 'vmis');
  }

  /** The VMI's directory (disks, console socket and log, launcher log, record). */
  dir(uid: string): string {
    if (!isUuid(uid)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `uid ${JSON.stringify(uid)} is not a UUID`);
    return path.join(this.root, uid);
  }

  /**
   * Creates the VMI directory (0700: the record holds the full manifest, cloud-init secrets
   * included) if needed. Directories an older version made wider are narrowed once, by load().
   */
  ensureDir(uid: string): string {
    const dir = this.dir(uid);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /** Writes `rec` atomically (tmp + fsync + rename + fsync dir; without the fsyncs for `sync: false`). */
  write(rec: VmiRecord, opts: { sync?: boolean } = {}): void {
    const sync = opts.sync !== false;
    const dir = this.ensureDir(rec.uid);
    const file = path.join(dir, 'record.json');
    const data = `${JSON.stringify({ ...rec, version: RECORD_VERSION, updatedAt: new Date().toISOString() }, null, 1)}\n`;
    try {
      writeFileAtomic(file, data, { sync });
    } catch (e) {
      const code = errnoFacts(e)?.code ?? 'error';
      throw new VhError(ErrorCodes.STATE_WRITE_FAILED, `cannot write VMI record ${file}: ${code}${code === 'ENOSPC' ? ' (disk full; the previous record is kept)' : ''}`, { path: file, code }, { cause: e });
    }
  }

  /** Removes the record and the VMI directory (full teardown). The record goes first: a crash midway leaves only files, no VMI. */
  remove(uid: string): void {
    const dir = this.dir(uid);
    fs.rmSync(path.join(dir, 'record.json'), { force: true });
    fsyncDir(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }

  /** remove(), for undoing a first write that failed: errors are ignored (the disk may be full). */
  removeQuietly(uid: string): void {
    try {
      this.remove(uid);
    } catch {
      /* best effort; load() removes a directory without a record anyway */
    }
  }

  /**
   * The highest revision ever handed out, kept beside the records: a deleted VMI's last
   * revision lives in no record, and revisions must never go backwards across restarts (a
   * watcher resuming from its last revision would miss changes).
   */
  readRevision(): number {
    try {
      const n = Number(fs.readFileSync(path.join(this.root, 'revision'), 'utf8').trim());
      return Number.isSafeInteger(n) && n >= 0 ? n : 0;
    } catch {
      return 0;
    }
  }

  /** Durably records `revision` as the high-water mark (STATE_WRITE_FAILED on failure). */
  writeRevision(revision: number): void {
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const file = path.join(this.root, 'revision');
    try {
      writeFileAtomic(file, `${revision}\n`);
    } catch (e) {
      const code = errnoFacts(e)?.code ?? 'error';
      throw new VhError(ErrorCodes.STATE_WRITE_FAILED, `cannot write ${file}: ${code}`, { path: file, code }, { cause: e });
    }
  }

  /** Every readable record; corrupt ones are moved aside (never deleted) and reported. */
  load(): LoadResult {
    const records: VmiRecord[] = [];
    const problems: string[] = [];
    let entries: string[];
    try {
      entries = fs.readdirSync(this.root);
    } catch (e) {
      if (errnoFacts(e)?.code === 'ENOENT') return { records, problems };
      throw e;
    }
    narrow(this.root, 0o700);
    for (const uid of entries.sort()) {
      const dir = path.join(this.root, uid);
      if (uid === 'revision' || uid.startsWith('revision.tmp-')) continue;
      if (!isUuid(uid)) {
        problems.push(`${dir}: not a VMI directory (ignored)`);
        continue;
      }
      narrow(dir, 0o700); // made by an older version (0750); never widened
      const file = path.join(dir, 'record.json');
      for (const stale of safeReaddir(dir).filter((f) => f.startsWith('record.json.tmp-'))) fs.rmSync(path.join(dir, stale), { force: true });
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (e) {
        if (errnoFacts(e)?.code === 'ENOENT') {
          if (safeReaddir(dir).some((f) => f.startsWith('record.json.corrupt-'))) {
            problems.push(`${dir}: only a corrupt record (kept for inspection; not loaded)`);
            continue;
          }
          // A directory without a record: a teardown that crashed after removing the record.
          problems.push(`${dir}: no record (left by an interrupted teardown; removed)`);
          fs.rmSync(dir, { recursive: true, force: true });
          continue;
        }
        throw e;
      }
      const rec = parseRecord(text, uid);
      if (typeof rec === 'string') {
        moveAside(file, rec, problems);
        continue;
      }
      records.push(rec);
    }
    return { records, problems };
  }
}


/** Narrows an existing directory's mode (never widens it); best effort: a failure only leaves the old mode. */
function narrow(dir: string, mode: number): void {
  try {
    const st = fs.statSync(dir);
    if ((st.mode & 0o777 & ~mode) !== 0) fs.chmodSync(dir, st.mode & 0o777 & mode);
  } catch {
    /* reported by the write that follows, if it matters */
  }
}


function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}


/** Checks the shape of a stored record; returns it, or why it is unusable. */
export function parseRecord(text: string, uid: string): VmiRecord | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const r = v as Partial<VmiRecord>;
  if (r.version !== RECORD_VERSION) return `unsupported version ${JSON.stringify(r.version)}`;
  if (r.uid !== uid) return `uid ${JSON.stringify(r.uid)} does not match its directory`;
  if (typeof r.namespace !== 'string' || typeof r.name !== 'string') return 'namespace/name missing';
  if (typeof r.manifest !== 'object' || r.manifest === null) return 'manifest missing';
  if (typeof r.generation !== 'number' || typeof r.revision !== 'number' || typeof r.deleting !== 'boolean' || typeof r.wantRunning !== 'boolean') return 'bookkeeping fields missing';
  return r as VmiRecord;
}
