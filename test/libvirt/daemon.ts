/**
 * The daemon under test for the real-libvirt VMI tests (test/libvirt/vmi-*.test.ts, chaos):
 * dist/virt-handler.cjs as a process with its own state and run directories, gRPC over its unix
 * socket, HTTP over its unix socket. Not a test file: importing it has no side effects.
 *
 * - stageTinyImages(): the tiny guest's kernel and initramfs under <tmp>/images/tiny;
 * - tinyVmi(): a manifest booting them under TCG;
 * - HandlerUnderTest.start(): spawn and wait for /readyz (and the libvirt connection if asked);
 *   kill9()/stop()/restart() on the same directories; call() for VmiService; http();
 *   launcherPids() from the durable records; killLeftovers() for after() hooks (launchers
 *   outlive the daemon by design, so a failed test would otherwise leave them running).
 */
import * as grpc from '@grpc/grpc-js';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { loadProtos } from '../../src/grpc/proto';
import { type LibvirtTestEnv, waitFor } from './guest';

export const ROOT = path.resolve(__dirname, '../../..');
const DAEMON = path.join(ROOT, 'dist', 'virt-handler.cjs');

export type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

export interface VmiView {
  uid: string;
  name: string;
  namespace: string;
  status: {
    phase: string;
    reason: string;
    launcherPid: number;
    domainState: string;
    conditions: Array<{ type: string; status: string; reason: string; message: string }>;
  };
}

/** Copies the tiny guest's kernel and initrd to <tmp>/images/tiny/{vmlinux,initrd.gz}; returns the image root. */
export function stageTinyImages(tmp: string, env: LibvirtTestEnv): string {
  const images = path.join(tmp, 'images');
  fs.mkdirSync(path.join(images, 'tiny'), { recursive: true });
  fs.copyFileSync(env.kernel, path.join(images, 'tiny', 'vmlinux'));
  fs.copyFileSync(env.initrd, path.join(images, 'tiny', 'initrd.gz'));
  return images;
}

/** A VMI booting the tiny guest (kernel boot, pc machine, serial console). */
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

export interface HandlerOptions {
  /** Parent of state/, run/ and (for stageTinyImages) images/. */
  tmp: string;
  /** libvirt.uri, or 'off'. */
  libvirtUri: string;
  nodeName?: string;
  logLevel?: string;
  /** Wait for "libvirt capabilities read" after /readyz. */
  waitLibvirt?: boolean;
}

export class HandlerUnderTest {
  proc: ChildProcess;
  out = '';
  private client: Client | null = null;
  readonly stateDir: string;
  readonly runDir: string;
  readonly grpcSocket: string;
  readonly httpSocket: string;

  private constructor(readonly opts: HandlerOptions) {
    this.stateDir = path.join(opts.tmp, 'state');
    this.runDir = path.join(opts.tmp, 'run');
    this.grpcSocket = path.join(this.runDir, 'grpc.sock');
    this.httpSocket = path.join(this.runDir, 'http.sock');
    this.proc = this.spawn();
  }

  static async start(opts: HandlerOptions): Promise<HandlerUnderTest> {
    const h = new HandlerUnderTest(opts);
    await h.waitReady();
    return h;
  }

  private spawn(): ChildProcess {
    const o = this.opts;
    const args = ['--state-dir', this.stateDir, '--run-dir', this.runDir, '--http-tcp=off', `--libvirt-uri=${o.libvirtUri}`, '--vmi-image-root', path.join(o.tmp, 'images'), '--log-level', o.logLevel ?? 'debug'];
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_')));
    const p = spawn(process.execPath, [DAEMON, ...args], { env: { ...clean, NODE_NAME: o.nodeName ?? 'test-node' }, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    return p;
  }

  /** /readyz answers 200 (and libvirt is connected when asked). */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const since = this.out.length;
    await waitFor(async () => (await this.http('GET', '/readyz').catch(() => ({ status: 0 }))).status === 200, timeoutMs, `daemon ready\n${this.tail()}`, 50);
    if (this.opts.waitLibvirt) await waitFor(() => this.out.includes('libvirt capabilities read', since), timeoutMs, `libvirt connected\n${this.tail()}`, 50);
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  vmiClient(): Client {
    if (!this.client) {
      const { VmiClient } = loadProtos();
      this.client = new VmiClient(`unix:${this.grpcSocket}`, grpc.credentials.createInsecure()) as unknown as Client;
    }
    return this.client;
  }

  call<T>(method: string, req: unknown): Promise<T> {
    const c = this.vmiClient();
    return new Promise((resolve, reject) => {
      (c[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(c, req, (e, v) => (e ? reject(e) : resolve(v)));
    });
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
    await waitFor(
      async () => {
        last = await this.call<VmiView>('GetVMI', { namespace, name }).catch((e: Error) => {
          lastError = e.message;
          return null;
        });
        return last !== null && phases.includes(last.status.phase);
      },
      timeoutMs,
      `${namespace}/${name} in ${phases.join('|')}`,
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; last view ${JSON.stringify(last)}${lastError ? `, last error ${lastError}` : ''}\n${this.tail()}`);
    });
    return last as unknown as VmiView;
  }

  tail(lines = 30): string {
    return `--- daemon log tail ---\n${this.out.split('\n').slice(-lines).join('\n')}`;
  }

  private exited(): Promise<void> {
    const p = this.proc;
    if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => p.once('exit', () => resolve()));
  }

  /** kill -9: no drain, no goodbye to the launchers. */
  async kill9(): Promise<void> {
    this.closeClient();
    this.proc.kill('SIGKILL');
    await this.exited();
  }

  /** SIGTERM and wait (launchers and VMs keep running). */
  async stop(): Promise<void> {
    this.closeClient();
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    await this.exited();
  }

  /** A new daemon process on the same directories. */
  async restart(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) await this.stop();
    this.proc = this.spawn();
    await this.waitReady();
  }

  private closeClient(): void {
    this.client?.close();
    this.client = null;
  }

  /** uid -> launcher pid, from the durable records. */
  launcherPids(): Map<string, number> {
    const out = new Map<string, number>();
    const vmis = path.join(this.stateDir, 'vmis');
    for (const uid of fs.existsSync(vmis) ? fs.readdirSync(vmis) : []) {
      try {
        const pid = (JSON.parse(fs.readFileSync(path.join(vmis, uid, 'record.json'), 'utf8')) as { launcher?: { pid?: number } }).launcher?.pid ?? 0;
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
