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
import * as os from 'node:os';
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

/**
 * libuv threads a launcher gets (src/launcher/main.ts says why 4). Node flags for launchers were
 * measured and none is set: --max-semi-space-size=1, --jitless, --lite-mode, --v8-pool-size=0
 * and --single-threaded-gc saved no memory beyond noise and most cost CPU (bench:scale notes).
 */
export const LAUNCHER_THREADPOOL_SIZE = 4;

/** Where the launcher entry point is: next to the daemon bundle, or the tsc output in a checkout. */
export function defaultLauncherCommand(fromDir: string = __dirname): string[] {
  const candidates = [
    path.join(fromDir, 'virt-launcher.cjs'), // running from dist/virt-handler.bundle.js
    path.resolve(fromDir, '../../../virt-launcher.cjs'), // dist/src/vmi/control -> dist/
    path.resolve(fromDir, '../../launcher/main.js'), // dist/src/vmi/control -> dist/src/launcher (no bundle)
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
  const log = fs.openSync(path.join(o.vmiDir, 'launcher.log'), 'a', 0o600);
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
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', VH_LAUNCHER_TOKEN: token, UV_THREADPOOL_SIZE: String(LAUNCHER_THREADPOOL_SIZE) },
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

/** The launcher log's last warning, error or plain-text line (for "launcher exited 1: ..." reasons). */
/** Log lines carry the level as a label ('warn'; src/log, src/launcher/log.ts) or, from older launchers, pino's number. */
function isWarningOrWorse(level: number | string | undefined): boolean {
  return typeof level === 'number' ? level >= 40 : level === 'warn' || level === 'error' || level === 'fatal';
}

export function lastLogLine(vmiDir: string, maxBytes = 4096): string {
  try {
    const file = path.join(vmiDir, 'launcher.log');
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.min(size, maxBytes));
      fs.readSync(fd, buf, 0, buf.length, size - buf.length);
      const lines = buf.toString('utf8').split('\n');
      if (buf.length < size) lines.shift(); // the window began mid-line
      for (let i = 0; i < lines.length; i++) lines[i] = (lines[i] as string).trim();
      // Launcher logs are pino JSON: the last warning or error (message and error, not the whole
      // object), or the last plain-text line (an uncaught exception's stack). Info lines say
      // nothing about why a launcher died.
      for (let i = lines.length - 1; i >= 0; i--) {
        const line = lines[i] as string;
        if (!line) continue;
        type PinoLine = { level?: number | string; msg?: string; err?: { message?: string } } | null;
        let j: PinoLine;
        try {
          j = JSON.parse(line) as PinoLine;
        } catch {
          if (/^(Node\.js v\d|at |\^|\})/.test(line)) continue; // stack frames and node's footer
          return line.slice(0, 300);
        }
        if (j && typeof j === 'object' && isWarningOrWorse(j.level)) return [j.msg, j.err?.message].filter(Boolean).join(': ').slice(0, 300);
      }
      return '';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

/**
 * Live launcher processes of VMI `uid` for the handler at `handlerSocket`, found by their command
 * line (`--vmi-uid UID --handler-socket SOCK`, set by spawnLauncher). A handler killed between
 * spawning a launcher and recording its pid knows no pid: this is how its successor finds it.
 */
export function findLauncherProcesses(uid: string, handlerSocket: string, procRoot = '/proc'): Array<{ pid: number; startTime: number }> {
  return scanLauncherProcesses(handlerSocket, procRoot).get(uid) ?? [];
}

/** Every live launcher process of the handler at `handlerSocket`, by VMI uid: one pass over /proc. */
export function scanLauncherProcesses(handlerSocket: string, procRoot = '/proc'): Map<string, Array<{ pid: number; startTime: number }>> {
  const out = new Map<string, Array<{ pid: number; startTime: number }>>();
  let names: string[];
  try {
    names = fs.readdirSync(procRoot);
  } catch {
    return out;
  }
  for (const n of names) {
    const pid = Number(n);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(path.join(procRoot, n, 'cmdline'), 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = (flag: string): string | undefined => argv[argv.indexOf(flag) + 1];
    const uid = argv.includes('--vmi-uid') ? at('--vmi-uid') : undefined;
    if (!uid || at('--handler-socket') !== handlerSocket) continue;
    const startTime = procStartTime(pid, procRoot);
    if (startTime === null) continue;
    const list = out.get(uid) ?? [];
    list.push({ pid, startTime });
    out.set(uid, list);
  }
  return out;
}

/**
 * Bounds how many launchers are starting at once (spawned, not yet registered). A launcher's
 * start is CPU-bound (~0.2-0.3 s of node start, bundle load, libvirt open); started all at once,
 * N launchers share the CPUs fairly, so every one of them is late by ~N x that, and past the
 * registration timeouts (20 s here, 15 s in the launcher) a burst of 200 on 2 CPUs turned into a
 * kill-and-respawn storm. Gated, the CPUs stay just as busy but launchers finish one batch after
 * another, each within the timeouts. Waiters are served in arrival order; `wake` requeues one
 * when a slot frees.
 */
export class LauncherStartGate {
  private readonly holders = new Set<string>();
  private readonly waiting = new Set<string>();

  constructor(
    readonly limit: number,
    private readonly wake: (uid: string) => void,
  ) {}

  /** Takes a start slot for `uid` (true), or queues it behind earlier waiters (false). */
  tryAcquire(uid: string): boolean {
    if (this.holders.has(uid)) return true;
    const free = this.limit - this.holders.size;
    let ahead = 0;
    for (const w of this.waiting) {
      if (w === uid) break;
      ahead++;
    }
    if (free > 0 && ahead < free) {
      this.waiting.delete(uid);
      this.holders.add(uid);
      return true;
    }
    this.waiting.add(uid);
    return false;
  }

  /** `uid`'s launcher registered or is gone: frees its slot (a waiter keeps its place). */
  release(uid: string): void {
    if (!this.holders.delete(uid)) return;
    let n = 0;
    for (const w of this.waiting) {
      if (n++ >= this.limit - this.holders.size) break;
      this.wake(w);
    }
  }

  /** `uid` is being deleted: frees its slot and its place in the line. */
  forget(uid: string): void {
    this.waiting.delete(uid);
    this.release(uid);
  }

  stats(): { starting: number; waiting: number } {
    return { starting: this.holders.size, waiting: this.waiting.size };
  }
}

/** Launchers starting at once: two per CPU keeps every CPU busy while some wait on I/O. */
export function defaultStartConcurrency(): number {
  return Math.max(2, 2 * os.availableParallelism());
}
