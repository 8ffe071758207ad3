/**
 * Capped exponential backoff with "equal jitter", shared by every retry loop in the project
 * (the libvirt supervisor, the launcher's handler link, VMI restarts, the work queue), so they
 * all spread their retries the same way.
 */

/** Retry timing. */
export interface Backoff {
  /** First retry delay (ms). */
  initialMs: number;
  /** Upper bound of any delay (ms). */
  maxMs: number;
  /** A connection that stays up this long resets the attempt counter (ms); used by callers that reconnect. */
  stableMs: number;
}

/**
 * Delay before retry `attempt` (0-based): "equal jitter", uniformly in [d/2, d] with
 * d = min(maxMs, initialMs * 2^attempt). Never zero (no synchronised thundering herd after a
 * libvirtd restart on many nodes) and never above the cap.
 */
export function backoffDelay(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const d = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}
