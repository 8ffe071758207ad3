/**
 * `npm run bench:images`: the node image store against a real registry on loopback (Debian's
 * docker-registry), with a same-run skopeo baseline.
 *   1. A containerDisk of VHDEV_BENCH_IMAGE_MIB (default 200) MiB of random data (a raw
 *      /disk/disk.img, so gzip cannot shrink it) is built as an OCI image and pushed.
 *   2. Pull time: ImageStore.ensure() into an empty store (skopeo copy + our verify + extract +
 *      qemu-img probe + placement) vs a plain `skopeo copy docker://... dir:` of the same image,
 *      alternating, VHDEV_BENCH_ROUNDS (default 3) each; medians and the ratio vs the 1.2x target.
 *   3. 20 VMIs asking for the same image at once: skopeo runs (counted by a wrapper), then the
 *      store's size and 20 per-VMI overlays made as the launcher makes them (qemu-img create -b).
 *   4. DataVolume import of a 1 GiB qcow2 over loopback HTTP vs curl + qemu-img convert
 *      (scripts/bench/datavolume.ts).
 * `--only=store` or `--only=datavolume` runs one part.
 * Figures only; the exit code is non-zero when something broke (a pull failed, more than one
 * skopeo run for the 20).
 */
import { execFileSync, execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { randomFillSync } from 'node:crypto';
import pino from 'pino';
import { ImageStore } from '../../src/images/image-store';
import { treeSize } from '../../src/images/store-files';
import { buildImage, push } from '../../test/images/oci-build';
import { TestRegistry } from '../../test/images/registry';
import { benchDataVolume } from './datavolume';

const execFileP = promisify(execFile);

function intEnv(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}=${v}: a positive integer is needed`);
  return n;
}

const MIB = intEnv('VHDEV_BENCH_IMAGE_MIB', 200);
const ROUNDS = intEnv('VHDEV_BENCH_ROUNDS', 3);
const VMIS = intEnv('VHDEV_BENCH_VMIS', 20);
const TARGET = 1.2;
const ONLY = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? null;
if (ONLY !== null && ONLY !== 'store' && ONLY !== 'datavolume') throw new Error(`--only=${ONLY}: store or datavolume`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? (s[s.length >> 1] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  let ok = true;
  if (ONLY !== 'datavolume') ok = (await benchStore()) && ok;
  if (ONLY !== 'store') ok = (await benchDataVolume(ROUNDS, intEnv('VHDEV_BENCH_DV_MIB', 1024))) && ok;
  process.exitCode = ok ? 0 : 1;
}

/** Parts 1-3; resolves false when something broke. */
async function benchStore(): Promise<boolean> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-bench-images-'));
  const reg = await TestRegistry.start(tmp);
  const log = pino({ level: 'silent' });
  let broken = false;
  try {
    const disk = path.join(tmp, 'disk.img');
    const fd = fs.openSync(disk, 'w');
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < MIB; i++) fs.writeSync(fd, randomFillSync(chunk));
    fs.closeSync(fd);
    const layout = path.join(tmp, 'layout');
    let t = Date.now();
    await buildImage(layout, 'bench', [[{ name: 'disk', type: 'directory' }, { name: 'disk/disk.img', file: disk }]]);
    await push(layout, 'bench', `${reg.host}/bench/disk:${MIB}m`);
    fs.rmSync(layout, { recursive: true, force: true });
    const ref = `${reg.host}/bench/disk:${MIB}m`;
    console.log(`image: ${ref}, /disk/disk.img ${MIB} MiB random (gzip layer), built and pushed in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    console.log(`machine: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, skopeo ${execFileSync('skopeo', ['--version']).toString().trim().split(' ').pop()}`);

    // Same flags the store uses (policy, tmpdir on the same fs, quiet, no retries, plain HTTP).
    const skDir = path.join(tmp, 'skopeo-baseline');
    fs.mkdirSync(path.join(skDir, 'tmp'), { recursive: true });
    fs.writeFileSync(path.join(skDir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const skopeoRun = async (): Promise<number> => {
      const dest = path.join(tmp, 'skopeo-dest');
      const s = process.hrtime.bigint();
      await execFileP('skopeo', ['--policy', path.join(skDir, 'policy.json'), '--tmpdir', path.join(skDir, 'tmp'), 'copy', '--quiet', '--retry-times', '0', '--src-tls-verify=false', `docker://${ref}`, `dir:${dest}`]);
      const ms = Number(process.hrtime.bigint() - s) / 1e6;
      fs.rmSync(dest, { recursive: true, force: true });
      return ms;
    };
    const split: string[] = [];
    const storeRun = async (): Promise<number> => {
      const root = path.join(tmp, 'store-timed');
      const store = new ImageStore(root, log, { insecureRegistries: [reg.host] });
      const s = process.hrtime.bigint();
      const got = await store.ensure(ref);
      const ms = Number(process.hrtime.bigint() - s) / 1e6;
      split.push(`${got.timings?.copyMs ?? '?'}+${got.timings?.placeMs ?? '?'}${got.timings?.layersReadDuringCopy === 1 ? '' : ' (layer not read during the copy)'}`);
      fs.rmSync(root, { recursive: true, force: true });
      return ms;
    };
    await skopeoRun(); // warm the registry's page cache for both sides
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      if (i % 2 === 0) {
        theirs.push(await skopeoRun());
        ours.push(await storeRun());
      } else {
        ours.push(await storeRun());
        theirs.push(await skopeoRun());
      }
    }
    const ratio = median(ours) / median(theirs);
    console.log(`\npull of ${MIB} MiB, ${ROUNDS} rounds alternating (ms):`);
    console.log(`  skopeo copy docker:// -> dir:   ${theirs.map((x) => x.toFixed(0)).join(' ')}   median ${median(theirs).toFixed(0)}`);
    console.log(`  ImageStore.ensure()             ${ours.map((x) => x.toFixed(0)).join(' ')}   median ${median(ours).toFixed(0)}`);
    console.log(`  ImageStore split: copy (skopeo + our verify/extract of the layer as it arrives) + the rest (ms): ${split.join(' ')}`);
    console.log(`  ratio ${ratio.toFixed(2)}x (target <= ${TARGET}x): ${ratio <= TARGET ? 'PASS' : 'MISS'}`);

    // N VMIs at once.
    const countDir = path.join(tmp, 'count');
    fs.mkdirSync(countDir);
    const runs = path.join(countDir, 'runs');
    const wrapper = path.join(countDir, 'skopeo');
    fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${runs}'\nexec skopeo "$@"\n`, { mode: 0o755 });
    const root = path.join(tmp, 'store');
    const store = new ImageStore(root, log, { insecureRegistries: [reg.host], skopeoBinary: wrapper });
    t = Date.now();
    const got = await Promise.all(Array.from({ length: VMIS }, () => store.ensure(ref)));
    const ms = Date.now() - t;
    const copies = fs.readFileSync(runs, 'utf8').trim().split('\n').length;
    const bases = new Set(got.map((g) => g.diskPath));
    console.log(`\n${VMIS} VMIs ensure() the same image at once: ${ms} ms, skopeo runs ${copies}, distinct base images ${bases.size}: ${copies === 1 && bases.size === 1 ? 'PASS' : 'MISS'}`);
    if (copies !== 1 || bases.size !== 1) broken = true;
    const base = got[0]?.diskPath as string;
    const vmis = path.join(tmp, 'vmis');
    const overlays: number[] = [];
    for (let i = 0; i < VMIS; i++) {
      const dir = path.join(vmis, `vmi-${i}`);
      fs.mkdirSync(dir, { recursive: true });
      const ov = path.join(dir, 'containerdisk.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', got[0]?.format ?? 'raw', '-b', base, ov]);
      overlays.push(treeSize(ov).allocated);
    }
    const st = treeSize(root);
    const images = store.list();
    console.log(`  store: ${images.length} image(s), ${mib(st.allocated)} allocated (${mib(st.bytes)} apparent), base ${path.relative(root, base)}`);
    console.log(`  ${VMIS} overlays (qemu-img create -b base): ${overlays.map((b) => `${(b / 1024).toFixed(0)}K`).join(' ')}; total ${mib(overlays.reduce((a, b) => a + b, 0))}`);
    console.log(`  node total: ${mib(st.allocated + overlays.reduce((a, b) => a + b, 0))} for ${VMIS} VMIs (vs ${mib(VMIS * st.allocated)} with a copy each)`);
  } catch (e) {
    broken = true;
    console.error(`bench:images failed: ${(e as Error).message}`);
  } finally {
    await reg.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return !broken;
}

void main();
