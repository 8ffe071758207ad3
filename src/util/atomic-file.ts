/**
 * Durable small files for the handler's records: write a temporary beside the file (0600), fsync
 * it, rename it over the file, fsync the directory. A reader sees the old file or the new one,
 * never a torn one, and a crash leaves at most a `<file>.tmp-<pid>` the loader removes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** write(2) may write less than asked (a nearly full disk): loop, and fail rather than publish a torn file. */
export function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
    off += n;
  }
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `file` with `text` atomically; `sync: false` skips both fsyncs (still atomic, not
 * durable). On failure the temporary is removed, the old file is untouched, and the error
 * (with its errno code) is thrown for the caller to name.
 */
export function writeFileAtomic(file: string, text: string, opts: { sync?: boolean } = {}): void {
  const sync = opts.sync !== false;
  const tmp = `${file}.tmp-${process.pid}`;
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'w', 0o600);
    writeAll(fd, Buffer.from(text, 'utf8'));
    if (sync) fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
    if (sync) fsyncDir(path.dirname(file));
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Moves a record that does not parse aside (`<file>.corrupt-<ms>`) and says so in `problems`. */
export function moveAside(file: string, why: string, problems: string[]): void {
  const aside = `${file}.corrupt-${Date.now()}`;
  fs.renameSync(file, aside);
  problems.push(`${file}: ${why}; moved to ${aside}`);
}
