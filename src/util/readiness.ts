/**
 * Readiness as a set of named conditions: the daemon is ready when none of them holds a reason.
 * /readyz, the ready-status metrics, gRPC health and sd_notify all read this one tracker, so they
 * can never disagree.
 */

/** Called after every change of the overall ready state (not on reason-only changes). */
export type ReadinessListener = (ready: boolean, reasons: readonly string[]) => void;

export class Readiness {
  private readonly pending = new Map<string, string>();
  private readonly listeners: ReadinessListener[] = [];
  private wasReady: boolean;

  /** `initial` maps condition name -> reason it is not met yet (e.g. {probe: 'probe running'}). */
  constructor(initial: Readonly<Record<string, string>> = {}) {
    for (const [name, reason] of Object.entries(initial)) this.pending.set(name, reason);
    this.wasReady = this.ready;
  }

  /** True when every condition is met. */
  get ready(): boolean {
    return this.pending.size === 0;
  }

  /** Why the daemon is not ready, in the order the conditions were raised. */
  get reasons(): string[] {
    return [...this.pending.values()];
  }

  /** Marks `name` as met. */
  ok(name: string): void {
    this.pending.delete(name);
    this.emit();
  }

  /** Marks `name` as unmet for `reason`. */
  block(name: string, reason: string): void {
    this.pending.set(name, reason);
    this.emit();
  }

  /** Subscribes to ready <-> not-ready transitions. */
  onChange(listener: ReadinessListener): void {
    this.listeners.push(listener);
  }

  private emit(): void {
    const ready = this.ready;
    if (ready === this.wasReady) return;
    this.wasReady = ready;
    for (const l of this.listeners) l(ready, this.reasons);
  }
}
