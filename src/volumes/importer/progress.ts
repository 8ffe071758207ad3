/**
 * Progress as the controller sees it: one 0..100 percent over the whole import (each stage owns
 * a band, e.g. an http import spends 0..90 downloading), never going back, reported at most
 * every `intervalMs` except stage and attempt changes and the final 100, which always go out.
 */
import type { ImportProgress, ImportStage } from './types';

export class ProgressReporter {
  private last: ImportProgress | null = null;
  private lastAt = 0;
  private percent = 0;

  constructor(private readonly sink: (p: ImportProgress) => void, private readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  /** `fraction` (0..1) of the band [from, to] of the stage. */
  report(stage: ImportStage, band: readonly [number, number], fraction: number, bytesDone: number, bytesTotal: number | null, attempt: number): void {
    const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    const pct = Math.max(this.percent, Math.round((band[0] + (band[1] - band[0]) * f) * 100) / 100);
    this.percent = pct;
    const p: ImportProgress = { stage, percent: pct, bytesDone, bytesTotal, attempt };
    const t = this.now();
    const changed = this.last === null || this.last.stage !== stage || this.last.attempt !== attempt || (pct === 100 && this.last.percent !== 100);
    if (!changed && t - this.lastAt < this.intervalMs) return;
    this.last = p;
    this.lastAt = t;
    try {
      this.sink(p);
    } catch {
      // A failing observer must not fail the import.
    }
  }
}
