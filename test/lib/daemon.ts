/**
 * The one daemon-under-test harness, for the integration suites (test/integration/: VMIs on
 * libvirt's test driver, each "VM" living inside its launcher) and the real-libvirt suites
 * (test/libvirt/vmi-*.test.ts, chaos: QEMU guests through a private libvirtd or the embedded
 * driver). Not a test file: importing it has no side effects.
 *
 * - HandlerUnderTest.start(): the daemon as a process with its own state/, run/ and images/
 *   under `tmp`, HTTP and gRPC on its unix sockets, waited for until /readyz (and the libvirt
 *   connection if asked); kill9()/stop()/restart() on the same directories; call() for
 *   VmiService; http(); waitPhase(); launcherPids() from the durable records; killLeftovers().
 *   It runs what production runs (package.json's bin, the bundle dist/virt-handler.cjs), unless
 *   `seams` are given: then the test entry (test/lib/test-daemon.ts) with VHTEST_* variables.
 * - makeRoot() (empty tiny images for the test driver), stageTinyImages() (the real tiny guest),
 *   testDriverVmi() / tinyVmi() manifests;
 * - process bookkeeping (killEverything(), pidsWithCmdline(), qemuPids(), recordUids(),
 *   procFigures()), because launchers outlive the daemon by design.
 */
import * as grpc from '@grpc/grpc-js';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadProtos } from '../../src/grpc/proto';
import { type Seams, seamEnv } from './seams';

export type { Seams } from './seams';

export const REPO = path.resolve(__dirname, '../../..');
const BIN = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;
/** What production runs (systemd, the DaemonSet): package.json's bin, the bundle dist/virt-handler.cjs. */
export const SHIPPED_DAEMON = path.join(REPO, BIN['virt-handler'] as string);
/** The launcher production spawns (the bundle next to the daemon's). */
export const SHIPPED_LAUNCHER = path.join(REPO, BIN['virt-launcher'] as string);
/** The test entry: the same process plus injected seams. */
export const TEST_DAEMON = path.join(REPO, 'dist/test/lib/test-daemon.js');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type Client = grpc.Client & Record<string, unknown>;

export interface HandlerOptions {
  /** Parent of state/, run/ and images/ (makeRoot, stageTinyImages). Short: run/ holds unix sockets. */
  tmp: string;
  /** libvirt.uri: test:///default, the private libvirtd's URI, or 'off'. */
  libvirtUri: string;
  nodeName?: string;
  /** Default debug. */
  logLevel?: string;
  /** Default <tmp>/state (e.g. a small tmpfs for the full-disk test). */
  stateDir?: string;
  /** Wait for "libvirt capabilities read" after /readyz. */
  waitLibvirt?: boolean;
  /** Run the test entry with these seams (test/lib/seams.ts) instead of the shipped daemon. */
  seams?: Seams;
  /** More environment (after the runner's own VH_*, VHTEST_* and NOTIFY_SOCKET are removed). */
  env?: Record<string, string>;
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export interface VmiView {
  uid: string;
  name: string;
  namespace: string;
  deleting: boolean;
  status: {
    phase: string;
    reason: string;
    launcherPid: number;
    domainState: string;
    conditions: Array<{ type: string; status: string; reason: string; message: string }>;
  };
}

/** Every daemon process this module started, so killEverything() can end what a failed test left. */
const started = new Set<ChildProcess>();
/** Output kept per daemon: the tail is what a failure message shows. */
const OUT_CAP = 2_000_000;

export class HandlerUnderTest {
  proc!: ChildProcess;
  /** stdout + stderr of the current process (the last ~2 MB). */
  out = '';
  /** Characters dropped from the front of `out`. */
  private dropped = 0;
  private exitPromise!: Promise<Exit>;
  private client: Client | null = null;
  readonly stateDir: string;
  readonly runDir: string;
  readonly grpcSocket: string;
  readonly httpSocket: string;

  private constructor(readonly opts: HandlerOptions) {
    this.stateDir = opts.stateDir ?? path.join(opts.tmp, 'state');
    this.runDir = path.join(opts.tmp, 'run');
    this.grpcSocket = path.join(this.runDir, 'grpc.sock');
    this.httpSocket = path.join(this.runDir, 'http.sock');
    this.spawn();
  }

  /** Spawns the daemon and waits until it is ready. */
  static async start(opts: HandlerOptions): Promise<HandlerUnderTest> {
    const h = new HandlerUnderTest(opts);
    await h.waitReady();
    return h;
  }

  private spawn(): void {
    const o = this.opts;
    const args = ['--state-dir', this.stateDir, '--run-dir', this.runDir, '--http-tcp=off', `--libvirt-uri=${o.libvirtUri}`, '--vmi-image-root', path.join(o.tmp, 'images'), '--log-level', o.logLevel ?? 'debug'];
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && !k.startsWith('VHTEST_') && k !== 'NOTIFY_SOCKET'));
    const entry = o.seams ? TEST_DAEMON : SHIPPED_DAEMON;
    // The test entry runs the daemon from dist/src, not from the bundle: it is told to spawn the
    // launcher production spawns, rather than look for one beside its own module.
    const seams = o.seams ? seamEnv({ launcherCommand: [process.execPath, SHIPPED_LAUNCHER], ...o.seams }) : {};
    const env = { ...clean, NODE_NAME: o.nodeName ?? 'test-node', ...o.env, ...seams };
    const p = spawn(process.execPath, [entry, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(p);
    this.out = '';
    this.dropped = 0;
    const append = (d: string): void => {
      this.out += d;
      if (this.out.length > 2 * OUT_CAP) {
        this.dropped += this.out.length - OUT_CAP;
        this.out = this.out.slice(-OUT_CAP);
      }
    };
    p.stdout!.setEncoding('utf8').on('data', append);
    p.stderr!.setEncoding('utf8').on('data', append);
    this.exitPromise = new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
    this.proc = p;
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  /** Settles when the current process exits. */
  get exit(): Promise<Exit> {
    return this.exitPromise;
  }

  private get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** /readyz answers 200 (and libvirt is connected when asked); throws with the log tail if the process exits first. */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const since = this.dropped + this.out.length;
    const ready = async (): Promise<boolean> => {
      if (!this.running) throw new Error(`daemon exited (${JSON.stringify(await this.exit)}) before ready\n${this.tail()}`);
      return (await httpGet(this.httpSocket, '/readyz')).status === 200;
    };
    await poll(ready, timeoutMs, () => `daemon ready\n${this.tail()}`);
    if (this.opts.waitLibvirt) await poll(() => this.out.slice(Math.max(0, since - this.dropped)).includes('libvirt capabilities read'), timeoutMs, () => `libvirt connected\n${this.tail()}`);
  }

  vmiClient(): Client {
    this.client ??= vmiClient(this.grpcSocket);
    return this.client;
  }

  /** A VmiService call (60 s deadline). */
  call<T>(method: string, req: unknown, timeoutMs = 60_000): Promise<T> {
    return call<T>(this.vmiClient(), method, req, timeoutMs);
  }

  http(method: string, p: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const r = http.request({ socketPath: this.httpSocket, method, path: p, agent: false }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      r.on('error', reject);
      r.end();
    });
  }

  /** Polls GetVMI until the phase is one of `phases`; the timeout error shows the last view and the log tail. */
  async waitPhase(namespace: string, name: string, phases: string[], timeoutMs: number): Promise<VmiView> {
    let last: VmiView | null = null;
    let lastError = '';
    await poll(
      async () => {
        last = await this.call<VmiView>('GetVMI', { namespace, name }).catch((e: Error) => {
          lastError = e.message;
          return null;
        });
        return last !== null && phases.includes(last.status.phase);
      },
      timeoutMs,
      () => `${namespace}/${name} in ${phases.join('|')}; last view ${JSON.stringify(last)}${lastError ? `, last error ${lastError}` : ''}\n${this.tail()}`,
      100,
    );
    return last as unknown as VmiView;
  }

  tail(lines = 30): string {
    return `--- daemon log tail ---\n${this.out.split('\n').slice(-lines).join('\n')}`;
  }

  /** kill -9: no drain, no goodbye to the launchers. */
  async kill9(): Promise<Exit> {
    this.closeClient();
    if (this.running) this.proc.kill('SIGKILL');
    return this.exit;
  }

  /** SIGTERM and wait (launchers and VMs keep running). */
  async stop(): Promise<Exit> {
    this.closeClient();
    if (this.running) this.proc.kill('SIGTERM');
    return this.exit;
  }

  /** A new daemon process on the same directories, with the same options. */
  async restart(): Promise<void> {
    if (this.running) await this.stop();
    this.spawn();
    await this.waitReady();
  }

  private closeClient(): void {
    this.client?.close();
    this.client = null;
  }

  /** uid -> launcher pid, from the durable records. */
  launcherPids(): Map<string, number> {
    const out = new Map<string, number>();
    for (const uid of recordUids(this.stateDir)) {
      try {
        const pid = (JSON.parse(fs.readFileSync(path.join(this.stateDir, 'vmis', uid, 'record.json'), 'utf8')) as { launcher?: { pid?: number } }).launcher?.pid ?? 0;
        if (pid > 0) out.set(uid, pid);
      } catch {
        /* no record */
      }
    }
    return out;
  }

  /** For after(): stop the daemon, SIGKILL every launcher the records name. */
  async killLeftovers(): Promise<void> {
    await this.stop();
    for (const pid of this.launcherPids().values()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

/** Polls `cond` every `everyMs` until true; a throw from `cond` ends the wait at once. */
async function poll(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: () => string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await sleep(everyMs);
  }
}

/** Polls until `fn` returns a value (not undefined) or the deadline passes; errors from `fn` are retried. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

/** GET over a unix socket; a connection error is status 0 (the daemon is not up yet, or gone). */
export function httpGet(sock: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const r = http.get({ socketPath: sock, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', (e) => resolve({ status: 0, body: String(e) }));
  });
}

/** A VmiService client on a daemon's gRPC socket (the caller closes it). */
export function vmiClient(grpcSocket: string): Client {
  const { VmiClient } = loadProtos();
  return new VmiClient(`unix:${grpcSocket}`, grpc.credentials.createInsecure()) as unknown as Client;
}

export function call<T>(c: Client, method: string, req: unknown, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(
      c, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, v) => (e ? reject(e) : resolve(v)),
    );
  });
}

/** A fresh short directory (run/ holds unix sockets) with the empty images/tiny kernel and initrd the test driver's VMIs name. */
export function makeRoot(prefix: string): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(path.join(root, 'images/tiny'), { recursive: true });
  fs.writeFileSync(path.join(root, 'images/tiny/vmlinux'), '');
  fs.writeFileSync(path.join(root, 'images/tiny/initrd.gz'), '');
  return root;
}

/** Copies the real tiny guest's kernel and initrd to <tmp>/images/tiny/{vmlinux,initrd.gz}; returns the image root. */
export function stageTinyImages(tmp: string, guest: { kernel: string; initrd: string }): string {
  const images = path.join(tmp, 'images');
  fs.mkdirSync(path.join(images, 'tiny'), { recursive: true });
  fs.copyFileSync(guest.kernel, path.join(images, 'tiny', 'vmlinux'));
  fs.copyFileSync(guest.initrd, path.join(images, 'tiny', 'initrd.gz'));
  return images;
}

/** A VMI for libvirt's test driver (its kernel and initrd are never read). */
export function testDriverVmi(name: string, namespace: string): Record<string, unknown> {
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name, namespace },
    spec: {
      runStrategy: 'Always',
      terminationGracePeriodSeconds: 2,
      domain: { memory: { guest: '64Mi' }, firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz' } }, devices: { autoattachSerialConsole: true } },
    },
  };
}

/** A VMI booting the real tiny guest (kernel boot, pc machine, serial console), as JSON. */
export function tinyVmi(name: string, namespace: string, opts: { runStrategy?: string; kernelArgs?: string; grace?: number; memory?: string } = {}): string {
  return JSON.stringify({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachineInstance',
    metadata: { name, namespace },
    spec: {
      runStrategy: opts.runStrategy ?? 'Always',
      terminationGracePeriodSeconds: opts.grace ?? 3,
      domain: {
        memory: { guest: opts.memory ?? '128Mi' },
        machine: { type: 'pc' },
        firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz', kernelArgs: opts.kernelArgs ?? 'panic=-1' } },
        devices: { autoattachSerialConsole: true },
      },
    },
  });
}

/** Pids (not this process, not zombies) whose command line contains `needle`. */
export function pidsWithCmdline(needle: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc')) {
    const pid = Number(n);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const st = fs.readFileSync(`/proc/${n}/stat`, 'utf8');
      if (st.slice(st.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(needle)) out.push(pid);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Pids of QEMU processes running the domain `name` (guest=<name> on their command line). */
export function qemuPids(name: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const args = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return (args[0] ?? '').includes('qemu-system') && args.some((a) => a === `guest=${name}` || a.startsWith(`guest=${name},`));
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Uids that have a record.json under the state dir. */
export function recordUids(stateDir: string): string[] {
  const root = path.join(stateDir, 'vmis');
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).filter((u) => fs.existsSync(path.join(root, u, 'record.json')));
}

/**
 * Kills every daemon this module started and every process whose command line names `root`
 * (launchers: their --handler-socket and --vmi-dir are under it): by pid, all of them ours.
 */
export async function killEverything(root: string): Promise<void> {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const pid of pidsWithCmdline(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await sleep(100);
}

/** RSS (kB) and open fd count of a process. */
export function procFigures(pid: number): { rssKb: number; fds: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { rssKb, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}
