/**
 * `npm run bench:vmi`: how long the tiny guest takes from SyncVMI to Running and to its console
 * marker (VH-GUEST-READY) under QEMU TCG, through the whole path (gRPC -> record -> launcher
 * process -> libvirtd -> QEMU), next to a same-run baseline: the same domain XML started
 * straight through libvirt (define + create) from this process, timed to running and to the
 * same marker. The ratio is the handler's overhead on a machine whose absolute times vary.
 *
 * Needs root (it starts the private libvirtd with scripts/libvirt/libvirtd-env.sh unless it is
 * running, and stops it afterwards if it started it) and a built dist/. Prints medians of
 * VHDEV_BENCH_ROUNDS (default 5) rounds; figures, not assertions.
 */
import { ensureThreadpoolSize } from '../../src/libvirt/queue';
ensureThreadpoolSize(16);

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Connection } from '../../src/libvirt/connection';
import { loadProtos } from '../../src/grpc/proto';
import { tinyGuestXml } from '../lib/tiny-guest';

const REPO = path.resolve(__dirname, '../../..');
const ENV_SCRIPT = path.join(REPO, 'scripts/libvirt/libvirtd-env.sh');
const ROUNDS = Math.max(1, Number.parseInt(process.env.VHDEV_BENCH_ROUNDS ?? '', 10) || 5);
const MARKER = 'VH-GUEST-READY';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function sh(args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync('bash', args, { encoding: 'utf8', timeout: 600_000 });
  return { ok: r.status === 0, out: r.stdout ?? '', err: r.stderr ?? '' };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(pollMs);
  }
}

function call<T>(c: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, cb: (e: Error | null, v: T) => void) => void).call(c, req, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

function hasMarker(file: string): boolean {
  try {
    return fs.readFileSync(file, 'utf8').includes(MARKER);
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const guest = sh([path.join(REPO, 'scripts/libvirt/build-tiny-guest.sh')]);
  if (!guest.ok) throw new Error(`tiny guest build failed: ${guest.err}`);
  const [kernel, initrd] = guest.out.trim().split('\n') as [string, string];
  const running = sh([ENV_SCRIPT, 'status']).ok;
  if (!running && !sh([ENV_SCRIPT, 'start']).ok) throw new Error('could not start the private libvirtd (root needed)');
  const uri = sh([ENV_SCRIPT, 'uri']).out.trim();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-bench-vmi-'));
  fs.chmodSync(tmp, 0o755);
  let daemon: ChildProcess | null = null;
  try {
    // Baseline: straight libvirt from this process.
    const conn = await Connection.open(uri, { lanes: 1 });
    const base = { running: [] as number[], marker: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      const serial = path.join(tmp, `base-${i}.log`);
      const t0 = performance.now();
      const d = await conn.defineXML(tinyGuestXml({ name: `vh-bench-base-${process.pid}-${i}`, kernel, initrd, serialPath: serial }));
      await d.create();
      base.running.push(performance.now() - t0);
      await until(() => hasMarker(serial), 120_000, 'baseline marker');
      base.marker.push(performance.now() - t0);
      await d.destroy();
      await d.undefine();
      await d.free();
    }
    await conn.close();

    // Through the handler.
    const images = path.join(tmp, 'images', 'tiny');
    fs.mkdirSync(images, { recursive: true });
    fs.copyFileSync(kernel, path.join(images, 'vmlinux'));
    fs.copyFileSync(initrd, path.join(images, 'initrd.gz'));
    const run = path.join(tmp, 'run');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_')));
    daemon = spawn(process.execPath, [path.join(REPO, 'dist/virt-handler.cjs'), '--state-dir', path.join(tmp, 'state'), '--run-dir', run, '--http-tcp=off', '--libvirt-uri', uri, '--vmi-image-root', path.join(tmp, 'images'), '--log-level', 'warn'], { env: { ...env, NODE_NAME: 'bench' }, stdio: 'ignore' });
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const r = http.get({ socketPath: path.join(run, 'http.sock'), path: '/v1/node', agent: false }, (res) => {
            let b = '';
            res.on('data', (c: Buffer) => (b += c.toString()));
            res.on('end', () => resolve(res.statusCode === 200 && b.includes('"state":"connected"') && b.includes('"virtType"')));
          });
          r.on('error', () => resolve(false));
        }),
      60_000,
      'daemon ready with libvirt',
      100,
    );
    const client = new (loadProtos().VmiClient)(`unix:${path.join(run, 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
    const vh = { running: [] as number[], marker: [] as number[], deleted: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      const name = `bench-${i}`;
      const manifest = JSON.stringify({
        metadata: { name, namespace: 'bench' },
        spec: { terminationGracePeriodSeconds: 0, domain: { memory: { guest: '128Mi' }, machine: { type: 'pc' }, firmware: { kernelBoot: { kernel: 'tiny/vmlinux', initrd: 'tiny/initrd.gz', kernelArgs: 'panic=-1' } } } },
      });
      const t0 = performance.now();
      const { vmi } = await call<{ vmi: { uid: string } }>(client, 'SyncVMI', { manifest });
      await until(async () => (await call<{ status: { phase: string } }>(client, 'GetVMI', { namespace: 'bench', name })).status.phase === 'Running', 120_000, 'Running', 10);
      vh.running.push(performance.now() - t0);
      await until(() => hasMarker(path.join(tmp, 'state', 'vmis', vmi.uid, 'serial.log')), 120_000, 'marker');
      vh.marker.push(performance.now() - t0);
      const t1 = performance.now();
      await call(client, 'DeleteVMI', { namespace: 'bench', name });
      await until(async () => (await call<{ vmis: unknown[] }>(client, 'ListVMIs', { namespace: 'bench' })).vmis.length === 0, 120_000, 'deleted', 20);
      vh.deleted.push(performance.now() - t1);
    }
    client.close();

    const f = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
    console.log(`bench:vmi - tiny guest under QEMU TCG, median of ${ROUNDS} rounds (node ${process.version}, ${os.cpus().length} CPUs)\n`);
    console.log('step                         via virt-handler   straight libvirt (baseline)   ratio');
    console.log('---------------------------  -----------------  ----------------------------  -----');
    console.log(`SyncVMI -> Running            ${f(median(vh.running)).padEnd(17)}  ${f(median(base.running)).padEnd(28)}  ${(median(vh.running) / median(base.running)).toFixed(2)}x`);
    console.log(`SyncVMI -> console marker     ${f(median(vh.marker)).padEnd(17)}  ${f(median(base.marker)).padEnd(28)}  ${(median(vh.marker) / median(base.marker)).toFixed(2)}x`);
    console.log(`DeleteVMI -> gone (grace 0)   ${f(median(vh.deleted)).padEnd(17)}  -`);
    console.log(`\nall rounds (ms): running ${vh.running.map(Math.round).join(', ')}; marker ${vh.marker.map(Math.round).join(', ')}; baseline running ${base.running.map(Math.round).join(', ')}; baseline marker ${base.marker.map(Math.round).join(', ')}`);
  } finally {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon?.once('exit', r));
    }
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!running) sh([ENV_SCRIPT, 'stop', '--destroy-domains']);
  }
}

main().catch((e: unknown) => {
  console.error(`bench:vmi failed: ${(e as Error).message}`);
  process.exitCode = 1;
});
