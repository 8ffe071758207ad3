/**
 * A fixed-bucket latency histogram kept by the code that measures (the work queue), read by
 * /metrics at scrape time like every other figure (no prom-client object inside the domain).
 */

/** Seconds; spans a fast in-memory reconcile to a slow libvirt call. */
export const LATENCY_BUCKETS_S: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** What metrics read: per-bucket counts (not cumulative; +Inf is count), sum and count. */
export interface HistogramSnapshot {
  buckets: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly buckets: readonly number[] = LATENCY_BUCKETS_S) {
    this.counts = buckets.map(() => 0);
  }

  observe(value: number): void {
    const i = this.buckets.findIndex((le) => value <= le);
    if (i >= 0) this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += value;
    this.count++;
  }

  snapshot(): HistogramSnapshot {
    return { buckets: this.buckets, counts: this.counts.slice(), sum: this.sum, count: this.count };
  }
}
