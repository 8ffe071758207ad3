/**
 * Watch events for VMIs: the revision counter, a bounded history and the watchers. The
 * controller publishes every change here; WatchVMIs resumes from any revision still in the
 * history (Kubernetes' list-then-watch), or answers OUT_OF_RANGE so the client lists again.
 */
import { ErrorCodes, VhError } from '../../errors';
import type { Logger } from '../../log';
import type { VmiView } from '../spec/types';

export interface WatchEventOut {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  vmi: VmiView;
  revision: number;
}

const HISTORY = 1000;
const MAX_WATCHERS = 64;

export class WatchHub {
  private rev = 0;
  private readonly history: WatchEventOut[] = [];
  private readonly watchers = new Set<{ ns: string; cb: (e: WatchEventOut) => void }>();

  constructor(private readonly log: Logger) {}

  /** The last revision handed out. */
  get revision(): number {
    return this.rev;
  }

  /** The revision the next change gets. */
  get next(): number {
    return this.rev + 1;
  }

  /** Revisions never go backwards: at load, the highest one stored. */
  raiseTo(revision: number): void {
    this.rev = Math.max(this.rev, revision);
  }

  /** Takes the next revision. */
  bump(): number {
    return ++this.rev;
  }

  /**
   * Records an event and tells the watchers of its namespace. The history keeps HISTORY events;
   * the caller strips per-VMI events and the launcher-reported XML (up to 1 MiB each; the wire
   * form carries neither), so a launcher sending distinct statuses cannot pin HISTORY x 1 MiB.
   */
  emit(ev: WatchEventOut): void {
    this.history.push(ev);
    if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
    for (const w of this.watchers) {
      if (w.ns && w.ns !== ev.vmi.namespace) continue;
      try {
        w.cb(ev);
      } catch (err) {
        this.log.warn({ err }, 'watcher failed');
      }
    }
  }

  /**
   * Streams changes after `sinceRevision` (0 = `current()` as ADDED first), filtered by
   * namespace. Returns a closer. OUT_OF_RANGE when the revision is older than the history.
   */
  watch(sinceRevision: number, namespace: string, current: () => VmiView[], cb: (e: WatchEventOut) => void): () => void {
    if (this.watchers.size >= MAX_WATCHERS) throw new VhError(ErrorCodes.RESOURCE_EXHAUSTED, `at most ${MAX_WATCHERS} watchers`);
    if (!Number.isSafeInteger(sinceRevision) || sinceRevision < 0) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'since_revision: must be a non-negative integer', { field: 'since_revision' });
    if (sinceRevision > this.rev) throw new VhError(ErrorCodes.OUT_OF_RANGE, `since_revision ${sinceRevision} is in the future (current ${this.rev})`);
    if (sinceRevision === 0) {
      for (const v of current()) cb({ type: 'ADDED', vmi: v, revision: v.revision });
    } else {
      const oldest = this.history[0]?.revision ?? this.rev + 1;
      if (sinceRevision < oldest - 1) throw new VhError(ErrorCodes.OUT_OF_RANGE, `since_revision ${sinceRevision} is older than the retained history (from ${oldest}); list and watch again`);
      for (const ev of this.history) if (ev.revision > sinceRevision && (!namespace || ev.vmi.namespace === namespace)) cb(ev);
    }
    const w = { ns: namespace, cb };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /** Silences and drops every watcher (shutdown). */
  close(): void {
    for (const w of this.watchers) w.cb = () => undefined;
    this.watchers.clear();
  }
}
