/**
 * Stages an upload's bytes: written to `<file>.tmp-<pid>` (0600, its directory 0700), at most
 * `maxBytes` (the requested claim size: a disk image larger than its claim cannot fit), fsync'ed
 * and renamed to `file`. A failure, an oversize stream or an empty one leaves nothing behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, VhError } from '../errors';

export async function stageUpload(file: string, chunks: AsyncIterable<Buffer>, maxBytes: number): Promise<number> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w', 0o600);
  let total = 0;
  let ok = false;
  try {
    for await (const chunk of chunks) {
      total += chunk.length;
      if (total > maxBytes) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `upload is larger than the DataVolume's requested size (${maxBytes} bytes)`, { maxBytes });
      let off = 0;
      while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
    }
    if (total === 0) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'upload is empty', { field: 'data' });
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  fs.renameSync(tmp, file);
  return total;
}
