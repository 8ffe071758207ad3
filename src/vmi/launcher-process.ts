/**
 * Launcher processes from the handler's side: spawning one per VMI (detached, in its own
 * session, stdout/stderr to <vmiDir>/launcher.log, the one-time token in its environment),
 * recognising it later by pid AND /proc start time (a recycled pid is never "our launcher"),
 * and the token hashing used by registration.
 *
 * The token travels in the environment, not argv: /proc/<pid>/environ is readable only by the
 * process owner (root here), while argv is world-readable in ps.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A new random token (256 bits, base64url). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** sha256 hex of a token: the only form that reaches the disk. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented token with a stored hash ('' never matches). */
export function tokenMatches(token: string, storedHash: string): boolean {
  if (storedHash.length !== 64 || typeof token !== 'string' || token.length === 0 || token.length > 256) return false;
  const a = Buffer.from(hashToken(token), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The process start time (clock ticks since boot, /proc/<pid>/stat field 22), or null when the
 * process does not exist. The comm field may contain spaces and parentheses: parse after the
 * last ')'.
 */
export function procStartTime(pid: number, procRoot = '/proc'): number | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let stat: string;
  try {
    stat = fs.readFileSync(path.join(procRoot, String(pid), 'stat'), 'utf8');
  } catch {
    return null;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); field 22 is fields[19].
  if (fields[0] === 'Z') return null; // a zombie is dead for our purposes
  const v = Number(fields[19]);
  return Number.isFinite(v) ? v : null;
}

/** Whether `pid` still is the process that started at `startTime`. */
export function isSameProcess(pid: number, startTime: number): boolean {
  return pid > 0 && procStartTime(pid) === startTime;
}

/** Where the launcher entry point is: next to the daemon bundle, or the tsc output in a checkout. */
export function defaultLauncherCommand(fromDir: string = __dirname): string[] {
  const candidates = [
    path.join(fromDir, 'virt-launcher.cjs'), // running from dist/virt-handler.bundle.js
    path.resolve(fromDir, '../../virt-launcher.cjs'), // dist/src/vmi -> dist/
    path.resolve(fromDir, '../launcher/main.js'), // dist/src/vmi -> dist/src/launcher (no bundle)
    path.join(fromDir, 'src', 'launcher', 'main.js'), // bundle present, launcher bundle not built
  ];
  const found = candidates.find((c) => fs.existsSync(c));
  return [process.execPath, found ?? (candidates[0] as string)];
}

export interface SpawnOptions {
  /** argv prefix: [node, script] (defaultLauncherCommand()). */
  command: readonly string[];
  uid: string;
  vmiDir: string;
  handlerSocket: string;
  logLevel: string;
  /** The one-time token (its hash must already be durable in the record). */
  token: string;
}

export interface SpawnedLauncher {
  pid: number;
  startTime: number;
  token: string;
  child: ChildProcess;
  /** Settles when the process exits: code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a launcher; throws when it could not be started at all. */
export async function spawnLauncher(o: SpawnOptions): Promise<SpawnedLauncher> {
  const [file, ...pre] = o.command;
  if (!file) throw new Error('empty launcher command');
  const token = o.token;
  const log = fs.openSync(path.join(o.vmiDir, 'launcher.log'), 'a', 0o640);
  const devnull = fs.openSync('/dev/null', 'r');
  let child: ChildProcess;
  try {
    child = spawn(file, [...pre, '--vmi-uid', o.uid, '--handler-socket', o.handlerSocket, '--vmi-dir', o.vmiDir, '--log-level', o.logLevel], {
      detached: true, // own session: a handler restart (KillMode=process) or its process group signals leave it alone
      // fds 3 and 4 open at exec: libuv's internal pipe then lands above them. libuv re-creates
      // that pipe in every fork child at the fd numbers it recorded; libvirt's daemonize pipe in
      // the embedded QEMU driver takes fds 3/4 in the child, and a collision there makes guest
      // start fail with "Unable to notify child process: Bad file descriptor".
      stdio: ['ignore', log, log, devnull, devnull],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', VH_LAUNCHER_TOKEN: token, UV_THREADPOOL_SIZE: '16' },
      cwd: o.vmiDir,
    });
  } finally {
    fs.closeSync(log);
    fs.closeSync(devnull);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  child.unref();
  const pid = child.pid as number;
  const startTime = procStartTime(pid);
  if (startTime === null) throw new Error(`launcher ${pid} exited immediately`);
  return { pid, startTime, token, child, exited };
}

/** The last non-empty line of the launcher's log (for "launcher exited 1: ..." reasons). */
export function lastLogLine(vmiDir: string, maxBytes = 4096): string {
  try {
    const file = path.join(vmiDir, 'launcher.log');
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.min(size, maxBytes));
      fs.readSync(fd, buf, 0, buf.length, size - buf.length);
      const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
      const last = lines.at(-1) ?? '';
      // Launcher logs are pino JSON: show the message and error, not the whole object.
      try {
        const j = JSON.parse(last) as { msg?: string; err?: { message?: string } };
        return [j.msg, j.err?.message].filter(Boolean).join(': ').slice(0, 300);
      } catch {
        return last.slice(0, 300);
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}
