/**
 * Executes a VMI's disk plan (DiskPrep[], checked by src/launcher-protocol/validate.ts
 * checkDiskPlan against the VMI directory) before its domain is defined.
 *
 * Idempotent by design: a launcher restarted after a crash runs the same plan again, and a disk
 * that already exists with the right kind is kept as it is (it holds the guest's writes). A file
 * of the wrong kind is an error, never overwritten. The exception is an IsoDisk (config drive,
 * object volumes): read-only data from objects that may have changed, rebuilt on every run and
 * renamed over the previous image (QEMU keeps the old inode it has open). New files are written to `<path>.tmp` and
 * renamed into place, so a crash mid-way leaves no half-made disk under the final name.
 *
 * External tools run through execFile with argument arrays (no shell) and a timeout; failures
 * name the disk and carry the tool's stderr. Every path must lie inside the VMI directory,
 * except hostDisk paths, which the handler already confined to the VMI's allowed host paths.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { LauncherLogger as Logger } from './log';
import type { DiskPrep } from '../launcher-protocol/messages';
import { isInside, isoPathProblem } from '../launcher-protocol/validate';

/** Per external command. qemu-img create and genisoimage take milliseconds; this only bounds a hang. */
export const TOOL_TIMEOUT_MS = 60_000;
const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // 'QFI\xfb'
const ISO_MAGIC_OFFSET = 0x8001; // 'CD001' of the primary volume descriptor

/** Preparing one disk failed; `disk` names it. */
export class DiskPrepError extends Error {
  override name = 'DiskPrepError';
  constructor(
    readonly disk: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`disk '${disk}': ${message}`, options);
  }
}

export interface PrepareOptions {
  vmiDir: string;
  logger: Logger;
  timeoutMs?: number;
}

/** Runs the plan in order; throws DiskPrepError at the first disk that fails. */
export async function prepareDisks(plan: readonly DiskPrep[], opts: PrepareOptions): Promise<void> {
  const realVmiDir = await fs.realpath(opts.vmiDir);
  for (const d of plan) {
    const t0 = Date.now();
    try {
      const made = await prepareOne(d, realVmiDir, opts);
      opts.logger.info({ disk: d.disk, kind: d.kind, path: d.path, created: made, ms: Date.now() - t0 }, made ? 'disk prepared' : 'disk already present; kept');
    } catch (e) {
      if (e instanceof DiskPrepError) throw e;
      throw new DiskPrepError(d.disk, (e as Error).message, { cause: e });
    }
  }
}

/** Creates one disk unless present; returns whether it created it. */
async function prepareOne(d: DiskPrep, realVmiDir: string, opts: PrepareOptions): Promise<boolean> {
  if (d.kind === 'hostDisk') return prepareHostDisk(d);
  const dir = path.dirname(d.path);
  await fs.mkdir(dir, { recursive: true, mode: 0o750 });
  // Lexically inside was checked when parsing; a symlinked directory must not lead out either.
  const realDir = await fs.realpath(dir);
  if (realDir !== realVmiDir && !isInside(realVmiDir, realDir)) {
    throw new DiskPrepError(d.disk, `directory ${dir} resolves to ${realDir}, outside the VMI directory`);
  }
  const existing = await kindOf(d.path);
  // An IsoDisk is rebuilt every time: its objects may have changed since the last run, and
  // the guest cannot have written anything worth keeping to it.
  const rebuild = d.kind === 'iso' && existing === 'iso';
  if (existing !== 'missing' && !rebuild) {
    const want = d.kind === 'cloudInit' || d.kind === 'iso' ? 'iso' : 'qcow2';
    if (existing !== want) throw new DiskPrepError(d.disk, `${d.path} exists but is not a ${want} image (found ${existing}); refusing to overwrite it`);
    return false;
  }
  const tmp = `${d.path}.tmp`;
  await fs.rm(tmp, { force: true, recursive: true });
  try {
    if (d.kind === 'overlay') {
      await tool(d.disk, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-F', d.backingFormat, '-b', d.backingFile, tmp], opts);
    } else if (d.kind === 'sparse') {
      await tool(d.disk, 'qemu-img', ['create', '-q', '-f', 'qcow2', tmp, String(d.sizeBytes)], opts);
    } else if (d.kind === 'iso') {
      await buildIso(d, tmp, opts);
    } else {
      await buildSeedIso(d, tmp, opts);
    }
    await fs.rename(tmp, d.path);
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  return true;
}

async function prepareHostDisk(d: Extract<DiskPrep, { kind: 'hostDisk' }>): Promise<boolean> {
  try {
    const st = await fs.stat(d.path);
    if (!st.isFile() && !st.isBlockDevice()) throw new DiskPrepError(d.disk, `${d.path} exists but is not a file or block device`);
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (!d.create) throw new DiskPrepError(d.disk, `${d.path} does not exist and the disk does not ask to create it`);
  await fs.mkdir(path.dirname(d.path), { recursive: true, mode: 0o750 });
  // 'wx': never truncates a file that appeared meanwhile. ftruncate makes it sparse.
  const fh = await fs.open(d.path, 'wx', 0o640);
  try {
    await fh.truncate(d.sizeBytes as number);
  } catch (e) {
    await fh.close();
    await fs.rm(d.path, { force: true });
    throw e;
  }
  await fh.close();
  return true;
}

/** NoCloud seed: user-data, meta-data (and network-config) on an ISO labelled cidata. */
async function buildSeedIso(d: Extract<DiskPrep, { kind: 'cloudInit' }>, out: string, opts: PrepareOptions): Promise<void> {
  const work = await fs.mkdtemp(path.join(path.dirname(d.path), '.cidata-'));
  try {
    const files: Array<[string, string]> = [
      ['user-data', d.userData],
      ['meta-data', d.metaData],
    ];
    if (d.networkData !== null) files.push(['network-config', d.networkData]);
    for (const [name, body] of files) await fs.writeFile(path.join(work, name), body, { mode: 0o600 });
    await tool(d.disk, 'genisoimage', ['-quiet', '-output', out, '-volid', 'cidata', '-joliet', '-rock', ...files.map(([n]) => n)], opts, work);
    // The seed may carry passwords and keys.
    await fs.chmod(out, 0o600);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * An IsoDisk: its files written below a private work directory (mkdtemp: 0700, so secret
 * files are never readable by others, whatever their mode in the image), then one
 * genisoimage over that tree. Paths were checked when the plan was parsed; they are checked
 * again here against the tree they land in.
 */
async function buildIso(d: Extract<DiskPrep, { kind: 'iso' }>, out: string, opts: PrepareOptions): Promise<void> {
  const work = await fs.mkdtemp(path.join(path.dirname(d.path), '.iso-'));
  try {
    const tree = path.join(work, 'root');
    await fs.mkdir(tree, { mode: 0o755 });
    for (const f of d.files) {
      const problem = isoPathProblem(f.path);
      const target = path.join(tree, ...f.path.split('/'));
      if (problem !== null || !isInside(tree, target)) throw new DiskPrepError(d.disk, `ISO file path ${JSON.stringify(f.path)} leaves the image (${problem ?? 'outside the tree'})`);
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      const mode = f.mode ?? 0o644;
      // 'wx': the tree is new and private; never follow anything already there.
      await fs.writeFile(target, f.data, { mode, flag: 'wx' });
      await fs.chmod(target, mode); // the umask must not change what the guest sees
    }
    await tool(d.disk, 'genisoimage', ['-quiet', '-output', out, '-volid', d.volumeLabel, '-joliet', '-joliet-long', '-rock', tree], opts);
    // Secrets and tokens may be inside.
    await fs.chmod(out, 0o600);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

type FileKind = 'missing' | 'qcow2' | 'iso' | 'other';

async function kindOf(p: string): Promise<FileKind> {
  let fh;
  try {
    fh = await fs.open(p, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return 'other';
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (head.equals(QCOW2_MAGIC)) return 'qcow2';
    const iso = Buffer.alloc(5);
    const { bytesRead } = await fh.read(iso, 0, 5, ISO_MAGIC_OFFSET);
    return bytesRead === 5 && iso.toString('latin1') === 'CD001' ? 'iso' : 'other';
  } finally {
    await fh.close();
  }
}

function tool(disk: string, file: string, args: string[], opts: PrepareOptions, cwd?: string): Promise<void> {
  const timeout = opts.timeoutMs ?? TOOL_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout, killSignal: 'SIGKILL', maxBuffer: 1 << 20, ...(cwd ? { cwd } : {}) }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
      const why = e.code === 'ENOENT' ? `${file} not found (install it: apt-get install ${file === 'genisoimage' ? 'genisoimage' : 'qemu-utils'})`
        : e.killed ? `${file} timed out after ${timeout} ms`
        : `${file} ${args[0]} failed (exit ${String(e.code)})`;
      const detail = String(stderr).trim();
      reject(new DiskPrepError(disk, detail ? `${why}: ${detail}` : why, { cause: err }));
    });
  });
}

/**
 * Removes the files the plan created inside the VMI directory (hostDisks are the user's data and
 * stay). Returns the paths removed; a missing file is fine.
 */
export async function removePreparedDisks(plan: readonly DiskPrep[], vmiDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const d of plan) {
    if (d.kind === 'hostDisk' || !isInside(vmiDir, d.path)) continue;
    for (const p of [d.path, `${d.path}.tmp`]) {
      try {
        await fs.unlink(p);
        removed.push(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }
  return removed;
}
