/**
 * Digests computed on a worker thread, never on the handler's event loop. sha256 costs about
 * 0.9 s of CPU per GiB here (OpenSSL with SHA-NI). Two ways in:
 *   - Hasher: bytes as they stream past (a compressed download, hashed before it is
 *     decompressed), copied into 1 MiB blocks whose memory is transferred (not cloned) to the
 *     worker; at most MAX_IN_FLIGHT blocks wait, so a slow hash slows the download instead of
 *     growing memory.
 *   - hashFile: a file already on disk (an uncompressed download in the scratch file, an upload,
 *     a claim, a pulled base), read by the worker itself, so it can run beside qemu-img convert
 *     while the pages are still cached.
 */
import { Worker } from 'node:worker_threads';

const BLOCK = 1 << 20;
const MAX_IN_FLIGHT = 8;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const hashes = workerData.algorithms.map((a) => createHash(a));
if (workerData.file !== null) {
  const fd = fs.openSync(workerData.file, 'r');
  const buf = Buffer.allocUnsafe(${BLOCK});
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    for (const h of hashes) h.update(buf.subarray(0, n));
  }
  fs.closeSync(fd);
  parentPort.postMessage({ digests: hashes.map((h) => h.digest('hex')) });
}
parentPort.on('message', (m) => {
  if (m.end) {
    parentPort.postMessage({ digests: hashes.map((h) => h.digest('hex')) });
    return;
  }
  const view = new Uint8Array(m.data, 0, m.length);
  for (const h of hashes) h.update(view);
  parentPort.postMessage({ ack: true });
});
`;

export class Hasher {
  private readonly worker: Worker;
  private block = Buffer.allocUnsafeSlow(BLOCK);
  private used = 0;
  private inFlight = 0;
  private waiter: (() => void) | null = null;
  private result: ((d: string[]) => void) | null = null;
  private failure: Error | null = null;

  constructor(readonly algorithms: readonly string[]) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algorithms, file: null } });
    this.worker.unref();
    this.worker.on('message', (m: { ack?: boolean; digests?: string[] }) => {
      if (m.ack === true) {
        this.inFlight--;
        this.wake();
      } else if (m.digests !== undefined) this.result?.(m.digests);
    });
    this.worker.on('error', (e) => {
      this.failure = e;
      this.wake();
    });
  }

  /** Adds bytes; resolves at once unless MAX_IN_FLIGHT blocks are waiting for the worker. */
  async update(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const n = chunk.copy(this.block, this.used, off);
      this.used += n;
      off += n;
      if (this.used === BLOCK) await this.flush();
    }
  }

  /** The hex digests, in the order of `algorithms`; the worker ends. */
  async digests(): Promise<string[]> {
    if (this.used > 0) await this.flush();
    const done = new Promise<string[]>((resolve, reject) => {
      this.result = resolve;
      this.worker.once('error', reject);
      this.worker.once('exit', () => reject(this.failure ?? new Error('the hash worker exited')));
    });
    this.worker.postMessage({ end: true });
    try {
      return await done;
    } finally {
      void this.worker.terminate();
    }
  }

  terminate(): void {
    void this.worker.terminate();
  }

  private async flush(): Promise<void> {
    if (this.failure !== null) throw this.failure;
    const data = this.block.buffer;
    this.worker.postMessage({ data, length: this.used }, [data]);
    this.inFlight++;
    this.block = Buffer.allocUnsafeSlow(BLOCK);
    this.used = 0;
    while (this.inFlight >= MAX_IN_FLIGHT && this.failure === null) await new Promise<void>((resolve) => (this.waiter = resolve));
    if (this.failure !== null) throw this.failure;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

/** The hex digests of `file` (in the order of `algorithms`), read and hashed on a worker thread; abort terminates it. */
export function hashFile(file: string, algorithms: readonly string[], signal: AbortSignal): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algorithms, file } });
    const onAbort = (): void => void worker.terminate();
    signal.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    worker.on('message', (m: { digests?: string[] }) => {
      if (m.digests === undefined) return;
      settled = true;
      resolve(m.digests);
      void worker.terminate();
    });
    worker.on('error', (e) => {
      settled = true;
      reject(e);
    });
    worker.on('exit', () => {
      signal.removeEventListener('abort', onAbort);
      if (!settled) reject(new Error(signal.aborted ? 'aborted' : 'the hash worker exited'));
    });
  });
}
