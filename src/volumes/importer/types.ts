/**
 * The contract between the DataVolume controller (which decides what to import, records it and
 * reports progress) and the CDI-style importer (which fills a claim's disk.img). The importer
 * knows nothing of VMIs, DataVolume records or transports; the controller knows nothing of
 * HTTP, qemu-img or registries.
 */

/** Where a DataVolume's content comes from (CDI v1beta1 spec.source, the kinds this node serves). */
export type ImportSource =
  /** spec.source.http: a raw or qcow2 image (optionally gzip/xz compressed) at an http(s) URL. */
  | { kind: 'http'; url: string; /** optional 'sha256:<hex>' (or sha512/md5) the downloaded bytes must match */ checksum: string | null; /** extra request headers ('Name: value'); secret ones are never logged */ extraHeaders: readonly string[] }
  /** spec.source.registry: a containerDisk image (docker://ref); its /disk/ file is copied out. */
  | { kind: 'registry'; url: string }
  /** spec.source.blank: an empty disk of the requested size. */
  | { kind: 'blank' }
  /** spec.source.upload: bytes the user sent (vhctl), already staged by the handler in `file`. */
  | { kind: 'upload'; file: string }
  /** spec.source.pvc: a clone of another claim's disk on this node. */
  | { kind: 'pvc'; sourceFile: string };

export type ImportStage = 'Downloading' | 'Verifying' | 'Converting' | 'Resizing' | 'Done';

export interface ImportProgress {
  stage: ImportStage;
  /** 0..100 over the whole import (CDI reports the download's share; we report it too). */
  percent: number;
  bytesDone: number;
  /** null when the source did not say (no Content-Length). */
  bytesTotal: number | null;
  /** 1 for the first try. */
  attempt: number;
}

export interface ImportRequest {
  source: ImportSource;
  /**
   * The claim's directory. The importer writes `<targetDir>/disk.img` (raw) atomically: a
   * temporary file beside it, fsync, rename; a failure or an abort leaves no disk.img and no
   * temporary file behind.
   */
  targetDir: string;
  /** The requested claim size: the disk is resized up to it; an image whose virtual size is larger fails. */
  sizeBytes: number;
  /** Scratch space for downloads (same filesystem as targetDir preferred); emptied after the import. */
  scratchDir: string;
  signal: AbortSignal;
  onProgress(p: ImportProgress): void;
  /** Transient failures (connection reset, 5xx, timeouts) are retried with jittered backoff. */
  retry?: { attempts: number; baseDelayMs: number; maxDelayMs: number };
}

export interface ImportResult {
  path: string;
  virtualSizeBytes: number;
  sourceFormat: 'qcow2' | 'raw';
  /** sha256 of the bytes as received (before conversion); '' for blank. */
  sourceSha256: string;
  attempts: number;
  durationMs: number;
}

/** Why an import failed: a stable reason (shown in DataVolume status and events) and whether a retry could help. */
export type ImportFailureReason =
  | 'NotFound' | 'Unauthorized' | 'HttpError' | 'ConnectionFailed' | 'ChecksumMismatch' | 'InvalidImage'
  | 'TooLarge' | 'NoSpace' | 'Canceled' | 'ConversionFailed' | 'SourceMissing' | 'RegistryPullFailed';

export class ImportError extends Error {
  constructor(readonly reason: ImportFailureReason, message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImportError';
  }
}

/** What the importer needs from the node: the image store, for registry sources. */
export interface ImporterDeps {
  /** Finds or pulls a containerDisk image; resolves to its read-only /disk/ file. */
  pullImage(ref: string, signal: AbortSignal): Promise<{ path: string; format: 'qcow2' | 'raw' }>;
}

export interface Importer {
  run(req: ImportRequest): Promise<ImportResult>;
}
