/**
 * The test seam VHTEST_SLOW_IMPORT_MS: the daemon's blank importer, preceded by a wait of that
 * many ms with progress reports (10 % steps) that an abort ends, so a test can kill the handler
 * while a DataVolume is ImportInProgress. Only the test entry (test-daemon.ts) builds it.
 */
import { createBlankImporter } from '../../src/volumes/blank-importer';
import { ImportError, type Importer } from '../../src/volumes/importer/types';

export function slowBlankImporter(delayMs: number): Importer {
  const blank = createBlankImporter();
  return {
    async run(req) {
      for (let i = 0; i < 10; i++) {
        req.onProgress({ stage: 'Downloading', percent: i * 10, bytesDone: i, bytesTotal: 10, attempt: 1 });
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, delayMs / 10);
          req.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(new ImportError('Canceled', 'import canceled', false));
          }, { once: true });
        });
      }
      return blank.run(req);
    },
  };
}
