/**
 * bench:images' DataVolume part (`npm run bench:images -- --only=datavolume` runs it alone):
 * the importer (src/volumes/importer) fetching a 1 GiB qcow2 over loopback HTTP into a raw
 * disk.img, against the same-run baseline `curl -o scratch URL && qemu-img convert -O raw
 * scratch out` (qemu-img cannot read a qcow2 from a pipe, so the baseline downloads first too),
 * both through execFile / the importer's own children, alternating, median of
 * VHDEV_BENCH_ROUNDS (default 3) each.
 * The image: VHDEV_BENCH_DV_MIB (default 1024) MiB of non-zero data - one random MiB, each copy
 * stamped with its index, so nothing is sparse or repeated at qcow2 cluster granularity, and it
 * is generated in about a second - converted to qcow2. The server is the tests' node:http file
 * server in its own process (scripts/bench/serve-files.ts); a plain curl download to /dev/null is
 * printed to show it is not the bottleneck.
 * Differences the figure includes: the importer also hashes (sha256) in the download pass, runs
 * qemu-img info, and fsyncs disk.img before the rename; the baseline does none of these.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { createImporter, type ImportStage } from '../../src/volumes/importer';

const execFileP = promisify(execFile);
const TARGET = 1.2;
const MIB = 1 << 20;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? (s[s.length >> 1] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};
const secs = (ms: number): string => (ms / 1000).toFixed(2);

async function startServer(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [path.join(__dirname, 'serve-files.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`the file server exited (${code})`)));
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/** Runs the DataVolume measurement; resolves false when something broke. */
export async function benchDataVolume(rounds: number, mib: number): Promise<boolean> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-bench-dv-'));
  let srv: { url: string; stop(): Promise<void> } | null = null;
  try {
    const served = path.join(tmp, 'served');
    fs.mkdirSync(served);
    let t = Date.now();
    const raw = path.join(tmp, 'src.raw');
    const block = randomBytes(MIB);
    const fd = fs.openSync(raw, 'w');
    for (let i = 0; i < mib; i++) {
      block.writeUInt32LE(i, 0);
      block.writeUInt32LE(i, MIB / 2);
      fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
    const qcow2 = path.join(served, 'disk.qcow2');
    await execFileP('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    fs.rmSync(raw);
    console.log(`\nDataVolume import: ${mib} MiB of non-zero data (a random MiB stamped per copy) as qcow2, ${(fs.statSync(qcow2).size / MIB).toFixed(0)} MiB file, made in ${secs(Date.now() - t)} s`);
    srv = await startServer(served);
    const url = `${srv.url}/files/disk.qcow2`;
    const { stdout: curlV } = await execFileP('curl', ['--version']);
    console.log(`  server: node:http file server in its own process at ${srv.url}; ${curlV.split('\n')[0]?.split(' ').slice(0, 2).join(' ')}, ${(await execFileP('qemu-img', ['--version'])).stdout.split('\n')[0]}`);

    const raw1 = async (): Promise<number> => {
      const s = Date.now();
      await execFileP('curl', ['-s', '-f', '-o', '/dev/null', url]);
      return Date.now() - s;
    };
    const curlOnly = [await raw1(), await raw1()];
    console.log(`  curl -o /dev/null alone (server capacity): ${curlOnly.map(secs).join(' ')} s = ${((mib / Math.min(...curlOnly)) * 1000).toFixed(0)} MiB/s`);

    const base = path.join(tmp, 'baseline');
    fs.mkdirSync(base);
    const baseline = async (): Promise<number> => {
      const scratch = path.join(base, 'scratch.qcow2');
      const out = path.join(base, 'disk.img');
      const s = Date.now();
      await execFileP('curl', ['-s', '-f', '-o', scratch, url]);
      await execFileP('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', scratch, out]);
      const ms = Date.now() - s;
      fs.rmSync(scratch);
      fs.rmSync(out);
      return ms;
    };
    const hashInStream = process.env.VHDEV_BENCH_DV_HASH === 'stream';
    const importer = createImporter({ pullImage: () => Promise.reject(new Error('not used')) }, { hashInStream });
    const splits: string[] = [];
    const ours = async (): Promise<number> => {
      const dir = path.join(tmp, 'claim');
      const scratch = path.join(tmp, 'scratch');
      fs.mkdirSync(dir);
      fs.mkdirSync(scratch);
      const firstAt = new Map<ImportStage, number>();
      const s = Date.now();
      const res = await importer.run({
        source: { kind: 'http', url, checksum: null, extraHeaders: [] },
        targetDir: dir,
        scratchDir: scratch,
        sizeBytes: mib * MIB,
        signal: new AbortController().signal,
        onProgress: (p) => {
          if (!firstAt.has(p.stage)) firstAt.set(p.stage, Date.now() - s);
        },
      });
      const ms = Date.now() - s;
      const at = (st: ImportStage): number => firstAt.get(st) ?? NaN;
      splits.push(`${secs(at('Verifying'))}/${secs(at('Converting') - at('Verifying'))}/${secs(at('Resizing') - at('Converting'))}/${secs(ms - at('Resizing'))}`);
      if (res.virtualSizeBytes !== mib * MIB) throw new Error(`virtual size ${res.virtualSizeBytes}`);
      fs.rmSync(dir, { recursive: true });
      fs.rmSync(scratch, { recursive: true });
      return ms;
    };
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        b.push(await baseline());
        a.push(await ours());
      } else {
        a.push(await ours());
        b.push(await baseline());
      }
    }
    const ratio = median(a) / median(b);
    console.log(`  ${rounds} rounds alternating (s): curl+qemu-img ${b.map(secs).join(' ')}; importer ${a.map(secs).join(' ')}`);
    console.log(`  importer split download / info / convert / resize+fsync+rename (s), sha256 ${hashInStream ? 'in the download stream' : 'of the scratch file beside the convert'}: ${splits.join('  ')}`);
    console.log(`DataVolume import ${mib === 1024 ? '1 GiB' : `${mib} MiB`} qcow2: median ${secs(median(a))} s vs curl+qemu-img ${secs(median(b))} s = ${ratio.toFixed(2)} x (target <= ${TARGET}x): ${ratio <= TARGET ? 'PASS' : 'MISS'}`);
    return true;
  } catch (e) {
    console.error(`bench:images DataVolume part failed: ${(e as Error).message}`);
    return false;
  } finally {
    await srv?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
