/**
 * Helpers for the real-libvirtd tests in test/libvirt/ (run by scripts/test-libvirt.sh, which
 * starts a private libvirtd, builds the tiny guest and exports the VHTEST_* variables read
 * here). Not a test file: importing it has no side effects.
 *
 * - testEnv(): the environment, or a clear error telling how to run these tests;
 * - guestName()/tinyGuestXml(): the tiny TCG guest (kernel + initramfs, serial console to a file);
 * - makeRunDir()/removeRunDir(): a per-test directory QEMU can write its serial log into;
 * - waitForSerial()/waitFor(): polling with a deadline and a useful failure message;
 * - cleanupDomain()/virshRemoveDomain(): best-effort removal for after() hooks;
 * - mallocInUse(): glibc's count of malloc'd bytes in use (leak checks that RSS cannot make);
 * - libvirtdCtl()/stopDaemon()/startDaemon()/daemonStatus(): drive scripts/libvirt/libvirtd-env.sh
 *   (argument arrays, no shell) for tests that restart the daemon (test/libvirt/reconnect.test.ts).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Connection } from '../../src/libvirt/connection';
import { LibvirtError } from '../../src/libvirt/errors';

export { type TinyGuestOptions, tinyGuestXml, xmlEscape } from '../../scripts/lib/tiny-guest';

/** What scripts/test-libvirt.sh exports. */
export interface LibvirtTestEnv {
  /** VHTEST_LIBVIRT_URI: the private daemon, e.g. qemu+unix:///system?socket=/tmp/vh-libvirtd/sock/libvirt-sock. */
  uri: string;
  /** VHTEST_LIBVIRTD_ENV: path of scripts/libvirt/libvirtd-env.sh. */
  envScript: string;
  /** VHTEST_GUEST_KERNEL: the tiny guest's uncompressed vmlinux. */
  kernel: string;
  /** VHTEST_GUEST_INITRD: the tiny guest's initramfs. */
  initrd: string;
  /** VHTEST_LIBVIRT_DIR: the daemon's private directory (VHDEV_LIBVIRT_DIR of libvirtd-env.sh). */
  libvirtDir: string;
}

const ENV_VARS = {
  uri: 'VHTEST_LIBVIRT_URI',
  envScript: 'VHTEST_LIBVIRTD_ENV',
  kernel: 'VHTEST_GUEST_KERNEL',
  initrd: 'VHTEST_GUEST_INITRD',
  libvirtDir: 'VHTEST_LIBVIRT_DIR',
} as const satisfies Record<keyof LibvirtTestEnv, string>;

/** Reads the VHTEST_* variables; throws (naming the missing ones and the fix) when any is unset. */
export function testEnv(): LibvirtTestEnv {
  const missing = Object.values(ENV_VARS).filter((v) => !process.env[v]);
  if (missing.length > 0) {
    throw new Error(
      `real-libvirtd tests need ${missing.join(', ')}: run them through scripts/test-libvirt.sh ` +
        '(bash scripts/test-libvirt.sh, or npm run test:libvirt, as root), which starts the private libvirtd, ' +
        'builds the tiny guest and exports these variables',
    );
  }
  const get = (k: keyof LibvirtTestEnv): string => process.env[ENV_VARS[k]] as string;
  return { uri: get('uri'), envScript: get('envScript'), kernel: get('kernel'), initrd: get('initrd'), libvirtDir: get('libvirtDir') };
}

/** Prefix of every domain these tests create; scripts/test-libvirt.sh removes leftovers by it. */
export const DOMAIN_PREFIX = 'vh-test-';

/** `vh-test-<suffix>`; the suffix is restricted so the name is safe in paths and logs too. */
export function guestName(suffix: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$/.test(suffix)) throw new RangeError(`bad guest name suffix: '${suffix}'`);
  return DOMAIN_PREFIX + suffix;
}

/** A suffix unique to this process and moment: `<tag>-<pid>-<base36 time>`. */
export function uniqueSuffix(tag: string): string {
  return `${tag}-${process.pid}-${Date.now().toString(36)}`;
}

/** A fresh temp directory (mode 0755 so QEMU can write into it); remove with removeRunDir. */
export async function makeRunDir(tag: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `vh-libvirt-${tag}-`));
  await fs.chmod(dir, 0o755);
  return dir;
}

/** Removes a run directory (set VHTEST_KEEP=1 to keep it for a post-mortem; its path is printed). */
export async function removeRunDir(dir: string | undefined): Promise<void> {
  if (!dir) return;
  if (process.env.VHTEST_KEEP) {
    console.log(`kept ${dir}`);
    return;
  }
  await fs.rm(dir, { recursive: true, force: true });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readOrEmpty(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}

/** The last `n` lines of a text. */
export function tail(text: string, n = 15): string {
  return text.replace(/\r/g, '').split('\n').slice(-n).join('\n');
}

export interface WaitForSerialOptions {
  /** Poll interval, default 100 ms. */
  pollMs?: number;
  /** Called about once a second while waiting; throw from it to give up early (e.g. the domain died). */
  check?: () => Promise<void>;
}

/**
 * Polls `file` until it contains `marker`; resolves with the line holding it and the time
 * taken. Rejects after `timeoutMs` with the last lines of the log.
 */
export async function waitForSerial(file: string, marker: string, timeoutMs: number, opts: WaitForSerialOptions = {}): Promise<{ line: string; ms: number }> {
  const t0 = Date.now();
  const poll = opts.pollMs ?? 100;
  let lastCheck = t0;
  let text = '';
  for (;;) {
    text = await readOrEmpty(file);
    const at = text.indexOf(marker);
    if (at >= 0) {
      const start = text.lastIndexOf('\n', at) + 1;
      const end = text.indexOf('\n', at);
      return { line: text.slice(start, end < 0 ? undefined : end).replace(/\r/g, ''), ms: Date.now() - t0 };
    }
    if (Date.now() - t0 >= timeoutMs) {
      throw new Error(`no '${marker}' in ${file} within ${timeoutMs} ms; last lines:\n${tail(text) || '(empty)'}`);
    }
    if (opts.check && Date.now() - lastCheck >= 1000) {
      lastCheck = Date.now();
      await opts.check();
    }
    await sleep(poll);
  }
}

/** Polls `cond` until true; rejects after `timeoutMs` with `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** Whether `e` is libvirt's "no such domain" error. */
export function isNoDomain(e: unknown): boolean {
  return e instanceof LibvirtError && e.codeName === 'VIR_ERR_NO_DOMAIN';
}

/**
 * Best-effort removal through the library: destroy when active, undefine, free. A domain that
 * is already gone is fine. Returns the errors met (for logging) instead of throwing, so an
 * after() hook can go on with the rest of its cleanup.
 */
export async function cleanupDomain(conn: Connection | undefined, name: string): Promise<unknown[]> {
  const errors: unknown[] = [];
  if (!conn) return errors;
  let dom;
  try {
    dom = await conn.lookupByName(name);
  } catch (e) {
    if (!isNoDomain(e)) errors.push(e);
    return errors;
  }
  try {
    const st = await dom.getState().catch(() => null);
    if (st && st.state !== 'shutoff') await dom.destroy().catch((e: unknown) => errors.push(e));
    await dom.undefine().catch((e: unknown) => (isNoDomain(e) ? undefined : errors.push(e)));
  } finally {
    await dom.free().catch((e: unknown) => errors.push(e));
  }
  return errors;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program (argument array, no shell); resolves with its exit code and output, never rejects on a non-zero exit. */
export function run(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
        reject(new Error(`${file}: ${err.message}`)); // could not run at all (ENOENT...)
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Last resort for after() hooks when the library connection is unusable: virsh destroy + undefine. */
export async function virshRemoveDomain(env: LibvirtTestEnv, name: string): Promise<void> {
  await run('virsh', ['-q', '-c', env.uri, 'destroy', '--', name]).catch(() => undefined);
  await run('virsh', ['-q', '-c', env.uri, 'undefine', '--', name]).catch(() => undefined);
}

/**
 * Runs scripts/libvirt/libvirtd-env.sh (VHTEST_LIBVIRTD_ENV) with `args` for the test daemon
 * (VHDEV_LIBVIRT_DIR = VHTEST_LIBVIRT_DIR).
 */
export function libvirtdCtl(env: LibvirtTestEnv, args: readonly string[]): Promise<ExecResult> {
  return run(env.envScript, args, { env: { ...process.env, VHDEV_LIBVIRT_DIR: env.libvirtDir } });
}

async function ctlOrThrow(env: LibvirtTestEnv, args: readonly string[]): Promise<ExecResult> {
  const r = await libvirtdCtl(env, args);
  if (r.code !== 0) throw new Error(`libvirtd-env.sh ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}

/** Stops the test daemon (guests keep running unless destroyDomains). */
export function stopDaemon(env: LibvirtTestEnv, opts: { destroyDomains?: boolean } = {}): Promise<ExecResult> {
  return ctlOrThrow(env, opts.destroyDomains ? ['stop', '--destroy-domains'] : ['stop']);
}

/** Starts the test daemon (no-op when it answers) and waits until it answers. */
export function startDaemon(env: LibvirtTestEnv): Promise<ExecResult> {
  return ctlOrThrow(env, ['start']);
}

/** 'running' | 'not-answering' | 'stopped', from libvirtd-env.sh status. */
export async function daemonStatus(env: LibvirtTestEnv): Promise<'running' | 'not-answering' | 'stopped'> {
  const r = await libvirtdCtl(env, ['status']);
  if (r.code === 0) return 'running';
  return r.code === 1 ? 'not-answering' : 'stopped';
}

type MallinfoFn = () => { uordblks: number | bigint; hblkhd: number | bigint };
let mallinfo2: MallinfoFn | null = null;

/**
 * Bytes the C heap has handed out and not freed (glibc mallinfo2: uordblks + hblkhd), across all
 * arenas. Unlike RSS it does not jump when glibc creates or grows a per-thread arena, so a slow
 * per-call leak in libvirt or the binding shows up as a steady rise. glibc >= 2.33 (Debian 12: 2.36).
 */
export function mallocInUse(): number {
  if (!mallinfo2) {
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    const t = koffi.struct('vh_test_mallinfo2', {
      arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t',
      usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t',
    });
    mallinfo2 = libc.func('mallinfo2', t, []) as MallinfoFn;
  }
  const m = mallinfo2();
  return Number(m.uordblks) + Number(m.hblkhd);
}

/** The last "vh-guest: uptime N" the tiny guest printed to its serial log, or -1 before the first. */
export async function guestUptime(serialPath: string): Promise<number> {
  const text = await fs.readFile(serialPath, 'utf8').catch(() => '');
  const all = [...text.matchAll(/vh-guest: uptime (\d+)/g)];
  return all.length === 0 ? -1 : Number((all.at(-1) as RegExpMatchArray)[1]);
}

/** The test libvirtd's pid (from its pidfile). */
export async function libvirtdPid(env: LibvirtTestEnv): Promise<number> {
  const pid = Number((await fs.readFile(path.join(env.libvirtDir, 'libvirtd.pid'), 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`bad libvirtd pid ${pid}`);
  return pid;
}
