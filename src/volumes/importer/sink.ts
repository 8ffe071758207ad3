/**
 * Where downloaded bytes go: by the first bytes' magic, gunzipped (node:zlib), un-xz'd (the `xz`
 * tool) or written as they are into the scratch file. Compressed bytes are hashed as received
 * (sha256, plus the algorithm a checksum asks for; on a worker thread, see hasher.ts), since the
 * file will not hold them; uncompressed ones are not: the scratch file is hashed afterwards,
 * beside the conversion (bench:images measured the in-stream hash at ~1.8x the curl + qemu-img
 * baseline on 2 cores, the hash beside qemu-img convert at close to 1x). One sink lives across HTTP retries that resume with
 * Range (its decompressor and hashes simply carry on); a retry the server answers from byte 0
 * throws it away and starts a new one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import { Hasher } from './hasher';

export type Compression = 'none' | 'gzip' | 'xz';

const GZIP = Buffer.from([0x1f, 0x8b]);
const XZ = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** gzip or xz by the stream's first bytes (needs up to 6). */
export function compressionOf(head: Buffer): Compression {
  if (head.subarray(0, 2).equals(GZIP)) return 'gzip';
  if (head.subarray(0, 6).equals(XZ)) return 'xz';
  return 'none';
}

export interface SinkOptions {
  file: string;
  /** A second digest the checksum needs ('sha512', 'md5'); null when sha256 (always kept) is enough. */
  extraAlgorithm: string | null;
  xzBinary: string;
  /** Kills xz if it runs this long. */
  childTimeoutMs: number;
  signal: AbortSignal;
  /** Hash uncompressed bytes in the stream too (instead of leaving it to a hash of the file beside the conversion). */
  hashAlways: boolean;
}

/** Receives the body in order; write() waits for backpressure, finish() for the file to be complete. */
export class Sink {
  /** Bytes received (compressed), the offset a Range resume asks for. */
  received = 0;
  compression: Compression = 'none';
  private hasher: Hasher | null = null;
  private head: Buffer[] = [];
  private headLen = 0;
  private input: Writable | null = null;
  private out: fs.WriteStream | null = null;
  private xz: ChildProcess | null = null;
  private xzExit: Promise<number | null> | null = null;
  private xzStderr = '';
  private failure: Error | null = null;

  constructor(private readonly o: SinkOptions) {
  }

  async write(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    this.received += chunk.length;
    if (this.hasher !== null) await this.hasher.update(chunk);
    if (this.input === null) {
      this.head.push(chunk);
      this.headLen += chunk.length;
      if (this.headLen < XZ.length) return;
      chunk = Buffer.concat(this.head);
      this.head = [];
      this.open(compressionOf(chunk));
      if (this.hasher !== null) await this.hasher.update(chunk);
    }
    await this.push(chunk);
  }

  /** Flushes everything and closes the file; throws what went wrong on the way (a corrupt gzip, xz's exit). */
  async finish(): Promise<void> {
    if (this.input === null) {
      const rest = Buffer.concat(this.head);
      this.head = [];
      this.open(compressionOf(rest));
      if (this.hasher !== null) await this.hasher.update(rest);
      if (rest.length > 0) await this.push(rest);
    }
    const out = this.out as fs.WriteStream;
    // A failure after the last write may have closed the file already; 'close' will not come again.
    const closed = out.closed ? Promise.resolve() : once(out, 'close').catch(() => undefined);
    (this.input as Writable).end();
    await closed;
    if (this.xzExit !== null) {
      const code = await this.xzExit;
      if (code !== 0 && this.failure === null) this.failure = new SinkError(`xz -d failed (exit ${code}): ${this.xzStderr.trim().split('\n')[0] ?? ''}`, 'decompress');
    }
    this.throwIfFailed();
  }

  /** After finish(): sha256 and the extra algorithm's digest of the bytes as received; null when they are the file's (uncompressed). */
  async digests(): Promise<{ sha256: string; extra: string | null } | null> {
    if (this.hasher === null) return null;
    const [sha256, extra] = await this.hasher.digests();
    return { sha256: sha256 as string, extra: extra ?? null };
  }

  /** Stops everything now (abort, reset): the file is left for the caller to remove. */
  destroy(): void {
    this.hasher?.terminate();
    this.input?.destroy();
    this.out?.destroy();
    if (this.xz !== null && this.xz.exitCode === null && this.xz.signalCode === null) this.xz.kill('SIGKILL');
  }

  /** destroy(), then waits until the file is closed and xz has exited, so nothing writes the file after the caller removes it. */
  async dispose(): Promise<void> {
    this.destroy();
    const out = this.out;
    if (out !== null && !out.closed) await once(out, 'close').catch(() => undefined);
    if (this.xzExit !== null) await this.xzExit;
  }

  private open(c: Compression): void {
    this.compression = c;
    if (c !== 'none' || this.o.hashAlways) this.hasher = new Hasher(this.o.extraAlgorithm === null ? ['sha256'] : ['sha256', this.o.extraAlgorithm]);
    const out = fs.createWriteStream(this.o.file, { mode: 0o600, flags: 'w', highWaterMark: 1 << 20 });
    out.on('error', (e) => this.fail(e, 'write'));
    this.out = out;
    if (c === 'gzip') {
      const gz = zlib.createGunzip({ chunkSize: 1 << 20 });
      gz.on('error', (e) => this.fail(e, 'decompress'));
      gz.pipe(out);
      this.input = gz;
    } else if (c === 'xz') {
      const xz = spawn(this.o.xzBinary, ['-d', '-c', '-q', '-T1'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: this.o.childTimeoutMs, killSignal: 'SIGKILL', signal: this.o.signal });
      this.xz = xz;
      this.xzExit = new Promise((resolve) => {
        xz.on('error', (e) => {
          this.fail(e, 'decompress');
          resolve(null);
        });
        xz.on('close', (code) => resolve(code));
      });
      xz.stderr?.on('data', (d: Buffer) => {
        if (this.xzStderr.length < 4096) this.xzStderr += d.toString();
      });
      (xz.stdout as NodeJS.ReadableStream).pipe(out);
      const stdin = xz.stdin as Writable;
      stdin.on('error', (e) => this.fail(e, 'decompress'));
      this.input = stdin;
    } else {
      this.input = out;
    }
  }

  private async push(chunk: Buffer): Promise<void> {
    const input = this.input as Writable;
    if (input.write(chunk)) return;
    // Wait for drain, or for any part of the chain to fail (an error never emits drain).
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearInterval(t);
        input.off('drain', done);
        resolve();
      };
      input.once('drain', done);
      const t = setInterval(() => {
        if (this.failure !== null || this.o.signal.aborted) done();
      }, 50);
    });
    this.throwIfFailed();
  }

  private fail(e: Error, where: 'write' | 'decompress'): void {
    if (this.failure === null) this.failure = new SinkError(e.message, where, e);
    this.destroy(); // so finish() sees the file stream close instead of waiting on a broken chain
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }
}

/** A local failure: writing the scratch file ('write', carries the errno) or decompressing ('decompress'). */
export class SinkError extends Error {
  constructor(message: string, readonly where: 'write' | 'decompress', readonly original?: Error) {
    super(message, original === undefined ? undefined : { cause: original });
    this.name = 'SinkError';
  }

  get code(): string | undefined {
    return (this.original as NodeJS.ErrnoException | undefined)?.code;
  }
}
