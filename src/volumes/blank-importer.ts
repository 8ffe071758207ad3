/**
 * The importer used when no other is given (app.ts wires the full one from volumes/importer):
 * it serves `blank` only, i.e. CDI's blank source: an empty raw disk.img of the requested size,
 * sparse (ftruncate), written as `.disk.img.tmp-<pid>` beside it, fsync'ed and renamed, the
 * directory fsync'ed. Any other source fails with SourceMissing (not retryable), naming it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImportError, type ImportRequest, type ImportResult, type Importer } from './importer/types';

export function createBlankImporter(): Importer {
  return {
    async run(req: ImportRequest): Promise<ImportResult> {
      const started = Date.now();
      if (req.source.kind !== 'blank') {
        throw new ImportError('SourceMissing', `no importer for ${req.source.kind} sources on this build (only blank)`, false);
      }
      if (req.signal.aborted) throw new ImportError('Canceled', 'import canceled', false);
      const target = path.join(req.targetDir, 'disk.img');
      const tmp = path.join(req.targetDir, `.disk.img.tmp-${process.pid}`);
      req.onProgress({ stage: 'Resizing', percent: 0, bytesDone: 0, bytesTotal: req.sizeBytes, attempt: 1 });
      let fd = -1;
      try {
        fd = fs.openSync(tmp, 'w', 0o600);
        fs.ftruncateSync(fd, req.sizeBytes);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        fd = -1;
        fs.renameSync(tmp, target);
        const dfd = fs.openSync(req.targetDir, 'r');
        try {
          fs.fsyncSync(dfd);
        } finally {
          fs.closeSync(dfd);
        }
      } catch (e) {
        if (fd >= 0) fs.closeSync(fd);
        fs.rmSync(tmp, { force: true });
        const code = (e as NodeJS.ErrnoException).code;
        throw new ImportError(code === 'ENOSPC' ? 'NoSpace' : 'ConversionFailed', `cannot create ${target}: ${(e as Error).message}`, false, { cause: e });
      }
      req.onProgress({ stage: 'Done', percent: 100, bytesDone: req.sizeBytes, bytesTotal: req.sizeBytes, attempt: 1 });
      return { path: target, virtualSizeBytes: req.sizeBytes, sourceFormat: 'raw', sourceSha256: '', attempts: 1, durationMs: Date.now() - started };
    },
  };
}
