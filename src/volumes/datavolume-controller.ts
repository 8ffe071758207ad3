/**
 * DataVolumes on this node: create (validated, recorded durably, its claim directory made),
 * import (the injected Importer fills `<claimRoot>/<ns>/<name>/disk.img`; at most `concurrency`
 * imports at once, the rest ImportScheduled), upload (bytes staged under the claim root, capped
 * at the requested size, then imported), delete (refused while a VMI uses the claim).
 *
 * CDI's vocabulary: phase Pending -> ImportScheduled -> ImportInProgress -> Succeeded | Failed
 * (upload: UploadReady first), status.progress "NN.NN%", conditions Bound/Ready/Running,
 * restartCount, events. A retryable import failure restarts the import (restartCount + 1, a
 * backoff) up to maxRestarts, then Failed; a permanent one fails at once.
 *
 * Crash safety: every phase change is written before what it announces happens. A handler that
 * dies during an import leaves a record in ImportScheduled/ImportInProgress: start() removes the
 * claim's temporary files and the scratch directory and runs the import again (restartCount + 1).
 * An upload in flight is lost: the DataVolume is UploadReady again and the staged file removed.
 * A delete that was accepted (deleting: true) is finished.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { randomUUID } from 'node:crypto';
import { ErrorCodes, VhError, errorMessage } from '../errors';
import type { Logger } from '../log';
import { type Backoff, backoffDelay } from '../util/backoff';
import { parseManifest } from '../vmi/spec/manifest';
import { lookupClaim } from './claim-lookup';
import { createBlankImporter } from './blank-importer';
import { DataVolumeStore } from './datavolume-store';
import { addEvent, enterPhase, failureMessage, formatProgress, setCondition, viewOf } from './datavolume-status';
import type { DataVolumeRecord, DataVolumeView, NormalizedDataVolume } from './datavolume-types';
import { DEFAULT_MAX_DV_BYTES, validateDataVolume } from './datavolume-validate';
import { ImportError, type ImportSource, type Importer } from './importer/types';
import { stageUpload } from './upload-staging';

export interface DataVolumeControllerOptions {
  stateDir: string;
  claimRoot: string;
  logger: Logger;
  /** The importer; absent: the blank-only one (blank-importer.ts). */
  importer?: Importer;
  /** Imports at once (default 2). */
  concurrency?: number;
  /** Largest claim size (default 1 TiB). */
  maxBytes?: number;
  /** `namespace/name` of the VMIs whose volumes name this claim (delete is refused while any does). */
  claimUsers: (namespace: string, name: string) => string[];
  /** Retries of a retryable failure and their backoff (tests shorten it). */
  restarts?: { max: number; backoff: Backoff };
}

const DEFAULT_RESTARTS = { max: 3, backoff: { initialMs: 2_000, maxMs: 60_000, stableMs: 0 } };
const PROGRESS_WRITE_MS = 1_000;

const keyOf = (ns: string, name: string): string => `${ns}/${name}`;

export class DataVolumeController {
  private readonly store: DataVolumeStore;
  private readonly importer: Importer;
  private readonly recs = new Map<string, DataVolumeRecord>();
  private readonly specs = new Map<string, NormalizedDataVolume>();
  private readonly running = new Map<string, AbortController>();
  /** Settles when the key's running import has finished (its finally block ran). */
  private readonly settled = new Map<string, Promise<void>>();
  private readonly waiting: string[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly uploading = new Set<string>();
  private stopped = false;

  constructor(private readonly o: DataVolumeControllerOptions) {
    this.store = new DataVolumeStore(o.stateDir);
    this.importer = o.importer ?? createBlankImporter();
  }

  private get log(): Logger {
    return this.o.logger;
  }

  claimDir(ns: string, name: string): string {
    return path.join(this.o.claimRoot, ns, name);
  }

  private scratchDir(ns: string, name: string): string {
    return path.join(this.o.claimRoot, '.scratch', `${ns}_${name}`);
  }

  uploadFile(ns: string, name: string): string {
    return path.join(this.o.claimRoot, '.upload', `${ns}_${name}.part`);
  }

  /** Loads the records; finishes deletes, restarts interrupted imports, resets interrupted uploads. */
  start(): void {
    fs.mkdirSync(this.o.claimRoot, { recursive: true, mode: 0o700 });
    const { records, problems } = this.store.load();
    for (const p of problems) this.log.warn({ problem: p }, 'DataVolume state problem');
    for (const rec of records) {
      const key = keyOf(rec.namespace, rec.name);
      this.recs.set(key, rec);
      if (rec.deleting) {
        this.finishDelete(rec);
        continue;
      }
      const v = validateDataVolume(rec.manifest, this.o.maxBytes ?? DEFAULT_MAX_DV_BYTES);
      if (!v.ok) {
        rec.failureReason = 'InvalidSpec';
        enterPhase(rec, 'Failed', v.violations.map((x) => `${x.field}: ${x.message}`).join('; '));
        this.persist(rec);
        continue;
      }
      this.specs.set(key, v.dv);
      const phase = rec.status.phase;
      if (phase === 'Succeeded' || phase === 'Failed') continue;
      this.cleanTemporaries(rec);
      if (v.dv.source.kind === 'upload') {
        if (phase !== 'UploadReady') addEvent(rec, 'Warning', 'UploadInterrupted', 'the handler restarted during the upload; upload again');
        enterPhase(rec, 'UploadReady');
        this.persist(rec);
        continue;
      }
      if (phase === 'ImportInProgress') {
        rec.status.restartCount += 1;
        addEvent(rec, 'Warning', 'ImportRestarted', 'the handler restarted during the import; temporary files removed, importing again');
      }
      this.schedule(key);
    }
  }

  /** Aborts running imports (they restart at the next start) and stops timers. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const a of this.running.values()) a.abort();
  }

  // ------------------------------------------------------------------ API

  /** Accepts a DataVolume manifest (JSON or YAML); the same spec again changes nothing. */
  create(text: string): { dv: DataVolumeView; changed: boolean } {
    if (this.stopped) throw new VhError(ErrorCodes.NOT_READY, 'draining: not accepting DataVolumes');
    const parsed = parseManifest(text);
    if (!parsed.ok) throw invalid(parsed.violations);
    const v = validateDataVolume(parsed.value, this.o.maxBytes ?? DEFAULT_MAX_DV_BYTES);
    if (!v.ok) throw invalid(v.violations);
    const { dv } = v;
    const key = keyOf(dv.namespace, dv.name);
    const existing = this.recs.get(key);
    if (existing) {
      if (existing.deleting) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `DataVolume ${key} is being deleted`);
      if (isDeepStrictEqual(this.specs.get(key), dv) && (v.uid === null || v.uid === existing.uid)) return { dv: viewOf(existing), changed: false };
      throw new VhError(ErrorCodes.ALREADY_EXISTS, `DataVolume ${key} exists with a different spec (DataVolume specs are immutable; delete it first)`);
    }
    const dir = this.claimDir(dv.namespace, dv.name);
    if (fs.existsSync(dir)) throw new VhError(ErrorCodes.ALREADY_EXISTS, `claim ${key} already exists under ${this.o.claimRoot} (a PersistentVolumeClaim of that name); a DataVolume would overwrite it`);
    const uid = v.uid ?? randomUUID();
    const manifest = structuredClone(parsed.value) as Record<string, unknown>;
    manifest.metadata = { ...(manifest.metadata as Record<string, unknown>), name: dv.name, namespace: dv.namespace, uid };
    delete manifest.status;
    const rec: DataVolumeRecord = {
      version: 1, uid, namespace: dv.namespace, name: dv.name, manifest, createdAt: new Date().toISOString(), deleting: false, failureReason: '', events: [],
      status: { phase: 'Pending', progress: 'N/A', restartCount: 0, claimName: dv.name, conditions: [] },
    };
    enterPhase(rec, dv.source.kind === 'upload' ? 'UploadReady' : 'Pending');
    setCondition(rec, 'Bound', 'True', 'Bound', `PVC ${dv.name} Bound`);
    addEvent(rec, 'Normal', 'Bound', `PVC ${dv.name} Bound (${dir})`);
    this.store.write(rec); // durable before the claim directory exists
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      this.store.remove(rec.namespace, rec.name); // undo: nothing was created
      throw new VhError(ErrorCodes.STATE_WRITE_FAILED, `cannot create the claim directory ${dir}: ${errorMessage(e)}`, { path: dir }, { cause: e });
    }
    this.recs.set(key, rec);
    this.specs.set(key, dv);
    if (dv.source.kind !== 'upload') this.schedule(key);
    return { dv: viewOf(rec), changed: true };
  }

  get(ns: string, name: string): DataVolumeView {
    return viewOf(this.find(ns, name));
  }

  list(ns?: string): DataVolumeView[] {
    return [...this.recs.values()].filter((r) => !ns || r.namespace === ns).sort((a, b) => keyOf(a.namespace, a.name).localeCompare(keyOf(b.namespace, b.name))).map(viewOf);
  }

  /** What a VMI waiting for this DataVolume needs to know; null when there is none. */
  readiness(ns: string, name: string): { phase: string; progress: string; message: string } | null {
    const rec = this.recs.get(keyOf(ns, name));
    if (!rec || rec.deleting) return null;
    return { phase: rec.status.phase, progress: rec.status.progress, message: failureMessage(rec) };
  }

  /**
   * Removes the DataVolume and its claim; refused (FAILED_PRECONDITION) while a VMI uses it. A
   * running import is aborted and awaited first, so nothing writes into the claim as it goes.
   */
  async delete(ns: string, name: string): Promise<DataVolumeView> {
    const rec = this.find(ns, name);
    const users = this.o.claimUsers(ns, name);
    if (users.length > 0) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `DataVolume ${ns}/${name} is in use by VMI ${users.join(', ')}: delete the VMI first`, { users });
    if (rec.deleting) return viewOf(rec);
    rec.deleting = true;
    this.persist(rec); // durable first: a crash midway finishes the removal at the next start
    const key = keyOf(ns, name);
    this.running.get(key)?.abort();
    await this.settled.get(key);
    this.finishDelete(rec);
    return viewOf(rec);
  }

  /**
   * Receives an upload DataVolume's bytes (staged, capped at the requested size) and starts the
   * import of the staged file. Resolves once the bytes are staged and the import scheduled.
   */
  async upload(ns: string, name: string, chunks: AsyncIterable<Buffer>): Promise<{ dv: DataVolumeView; bytes: number }> {
    const rec = this.find(ns, name);
    const key = keyOf(ns, name);
    const spec = this.specs.get(key);
    if (spec?.source.kind !== 'upload') throw new VhError(ErrorCodes.FAILED_PRECONDITION, `DataVolume ${key} has no upload source`);
    if (rec.status.phase !== 'UploadReady' || this.uploading.has(key)) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `DataVolume ${key} is ${this.uploading.has(key) ? 'receiving another upload' : rec.status.phase}, not UploadReady`);
    this.uploading.add(key);
    try {
      const file = this.uploadFile(ns, name);
      const bytes = await stageUpload(file, chunks, spec.sizeBytes);
      if (rec.deleting || this.stopped) {
        fs.rmSync(file, { force: true });
        throw new VhError(ErrorCodes.FAILED_PRECONDITION, `DataVolume ${key} was deleted during the upload`);
      }
      addEvent(rec, 'Normal', 'UploadSucceeded', `Upload of ${bytes} bytes received`);
      this.schedule(key);
      return { dv: viewOf(rec), bytes };
    } finally {
      this.uploading.delete(key);
    }
  }

  private find(ns: string, name: string): DataVolumeRecord {
    const rec = this.recs.get(keyOf(ns, name));
    if (!rec) throw new VhError(ErrorCodes.NOT_FOUND, `DataVolume ${ns}/${name} not found`);
    return rec;
  }

  // ------------------------------------------------------------------ imports

  private persist(rec: DataVolumeRecord, sync = true): void {
    try {
      this.store.write(rec, { sync });
    } catch (e) {
      this.log.error({ err: e, dv: keyOf(rec.namespace, rec.name) }, 'cannot write DataVolume record');
      if (sync) throw e;
    }
  }

  private schedule(key: string): void {
    const rec = this.recs.get(key);
    if (!rec || rec.deleting || this.stopped || this.running.has(key) || this.waiting.includes(key)) return;
    if (this.running.size >= (this.o.concurrency ?? 2)) {
      this.waiting.push(key);
      if (rec.status.phase !== 'ImportScheduled') {
        enterPhase(rec, 'ImportScheduled');
        addEvent(rec, 'Normal', 'ImportScheduled', `Import into ${rec.name} scheduled (${this.running.size} imports running)`);
        this.persist(rec);
      }
      return;
    }
    this.launch(key);
  }

  private next(): void {
    while (this.waiting.length > 0 && this.running.size < (this.o.concurrency ?? 2)) this.launch(this.waiting.shift()!);
  }

  /** Runs the import in the background; a failure there is logged, never an unhandled rejection. */
  private launch(key: string): void {
    const p = this.runImport(key).catch((err: unknown) => this.log.error({ err, dv: key }, 'DataVolume import bookkeeping failed'));
    this.settled.set(key, p);
    void p.finally(() => {
      if (this.settled.get(key) === p) this.settled.delete(key);
    });
  }

  private importSource(key: string, dv: NormalizedDataVolume): ImportSource {
    const s = dv.source;
    if (s.kind === 'http') return { kind: 'http', url: s.url, checksum: s.checksum, extraHeaders: s.extraHeaders };
    if (s.kind === 'registry') return { kind: 'registry', url: s.url };
    if (s.kind === 'upload') return { kind: 'upload', file: this.uploadFile(dv.namespace, dv.name) };
    if (s.kind === 'pvc') {
      const src = lookupClaim(this.o.claimRoot, s.namespace, s.name);
      if (!src.ok) throw new ImportError('SourceMissing', `source ${src.reason}`, src.missing);
      if (src.block) throw new ImportError('SourceMissing', `source claim ${s.namespace}/${s.name} is a block device; clones copy filesystem claims only`, false);
      if (keyOf(s.namespace, s.name) === key) throw new ImportError('SourceMissing', 'a DataVolume cannot clone its own claim', false);
      return { kind: 'pvc', sourceFile: src.path };
    }
    return { kind: 'blank' };
  }

  private async runImport(key: string): Promise<void> {
    const rec = this.recs.get(key);
    const dv = this.specs.get(key);
    if (!rec || !dv || rec.deleting || this.stopped) return;
    const abort = new AbortController();
    this.running.set(key, abort);
    const attempt = rec.status.restartCount + 1;
    enterPhase(rec, 'ImportInProgress');
    if (rec.status.progress === 'N/A') rec.status.progress = formatProgress(0);
    addEvent(rec, 'Normal', 'ImportInProgress', `Import into ${rec.name} started (${dv.source.kind}${attempt > 1 ? `, attempt ${attempt}` : ''})`);
    let lastWrite = 0;
    try {
      this.persist(rec);
      const scratchDir = this.scratchDir(rec.namespace, rec.name);
      fs.mkdirSync(scratchDir, { recursive: true, mode: 0o700 });
      const result = await this.importer.run({
        source: this.importSource(key, dv),
        targetDir: this.claimDir(rec.namespace, rec.name),
        sizeBytes: dv.sizeBytes,
        scratchDir,
        signal: abort.signal,
        onProgress: (p) => {
          const progress = formatProgress(p.percent);
          if (progress === rec.status.progress || abort.signal.aborted) return;
          rec.status.progress = progress;
          if (Date.now() - lastWrite >= PROGRESS_WRITE_MS) {
            lastWrite = Date.now();
            this.persist(rec, false);
          }
        },
      });
      if (abort.signal.aborted || rec.deleting) return;
      rec.status.progress = formatProgress(100);
      rec.failureReason = '';
      enterPhase(rec, 'Succeeded');
      addEvent(rec, 'Normal', 'ImportSucceeded', `Successfully imported into PVC ${rec.name} (${result.sourceFormat}, ${result.virtualSizeBytes} bytes, ${result.durationMs} ms)`);
      this.persist(rec);
      this.log.info({ dv: key, ms: result.durationMs, attempts: result.attempts }, 'DataVolume imported');
    } catch (err) {
      if (abort.signal.aborted || rec.deleting || this.stopped) return;
      try {
        this.failed(key, rec, err);
      } catch (e) {
        this.log.error({ err: e, dv: key }, 'cannot record the DataVolume failure');
      }
    } finally {
      this.running.delete(key);
      fs.rmSync(this.scratchDir(rec.namespace, rec.name), { recursive: true, force: true });
      if (dv.source.kind === 'upload' && (rec.status.phase === 'Succeeded' || rec.status.phase === 'Failed')) fs.rmSync(this.uploadFile(rec.namespace, rec.name), { force: true });
      this.next();
    }
  }

  private failed(key: string, rec: DataVolumeRecord, err: unknown): void {
    const reason = err instanceof ImportError ? err.reason : 'Error';
    const retryable = err instanceof ImportError ? err.retryable : false;
    const message = errorMessage(err);
    const restarts = this.o.restarts ?? DEFAULT_RESTARTS;
    this.log.warn({ dv: key, reason, retryable, err }, 'DataVolume import failed');
    if (retryable && rec.status.restartCount < restarts.max) {
      const delay = backoffDelay(rec.status.restartCount, restarts.backoff);
      rec.status.restartCount += 1;
      setCondition(rec, 'Running', 'False', reason, message);
      addEvent(rec, 'Warning', 'ImportFailed', `${reason}: ${message}; retrying in ${Math.round(delay / 1000)} s (restart ${rec.status.restartCount} of ${restarts.max})`);
      this.persist(rec);
      this.timers.set(key, setTimeout(() => {
        this.timers.delete(key);
        this.schedule(key);
      }, delay));
      return;
    }
    rec.failureReason = reason;
    enterPhase(rec, 'Failed', message);
    addEvent(rec, 'Warning', 'ImportFailed', `${reason}: ${message}`);
    this.persist(rec);
  }

  /** Temporary files of an interrupted import: anything in the claim directory but disk.img, the scratch directory, a staged upload. */
  private cleanTemporaries(rec: DataVolumeRecord): void {
    const dir = this.claimDir(rec.namespace, rec.name);
    for (const n of safeReaddir(dir)) if (n !== 'disk.img') fs.rmSync(path.join(dir, n), { recursive: true, force: true });
    fs.rmSync(path.join(dir, 'disk.img'), { force: true }); // not Succeeded: a disk.img here is not known complete
    fs.rmSync(this.scratchDir(rec.namespace, rec.name), { recursive: true, force: true });
    fs.rmSync(this.uploadFile(rec.namespace, rec.name), { force: true });
  }

  private finishDelete(rec: DataVolumeRecord): void {
    const key = keyOf(rec.namespace, rec.name);
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
    const w = this.waiting.indexOf(key);
    if (w >= 0) this.waiting.splice(w, 1);
    fs.rmSync(this.claimDir(rec.namespace, rec.name), { recursive: true, force: true });
    fs.rmSync(this.scratchDir(rec.namespace, rec.name), { recursive: true, force: true });
    fs.rmSync(this.uploadFile(rec.namespace, rec.name), { force: true });
    this.store.remove(rec.namespace, rec.name);
    this.recs.delete(key);
    this.specs.delete(key);
    this.log.info({ dv: key }, 'DataVolume deleted');
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function invalid(violations: Array<{ field: string; message: string }>): VhError {
  const lines = violations.map((v) => (v.field ? `${v.field}: ${v.message}` : v.message));
  return new VhError(ErrorCodes.INVALID_ARGUMENT, `invalid DataVolume (${violations.length} problem${violations.length === 1 ? '' : 's'}): ${lines.join('; ')}`, { violations });
}
