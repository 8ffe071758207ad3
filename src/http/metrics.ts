/**
 * Prometheus metrics on a private Registry (no prom-client global state, so two daemons in one
 * test process do not share series). Values are read from their sources at scrape time, so the
 * metrics can never disagree with /readyz or /v1/node.
 */
import type * as Prom from 'prom-client';
import type { NodeInfo } from '../node/types';
import { LIBVIRT_STATES, type LibvirtStatus } from '../libvirt/supervisor';

/** Where the metric values come from. */
export interface MetricsSources {
  version: string;
  nodeName: string;
  ready: () => boolean;
  nodeInfo: () => NodeInfo | null;
  /** The libvirt supervisor's status; absent or null when libvirt is switched off. */
  libvirt?: () => LibvirtStatus | null;
  /** VMI phase counts and reconcile queue figures; absent when VMIs are off. */
  vmis?: () => { phases: Record<string, number>; queue: { depth: number; inFlight: number; processed: number; failures: number; runMsTotal: number } } | null;
}

/** The daemon's metric set. */
export class Metrics {
  private registry: Prom.Registry | null = null;

  constructor(private readonly src: MetricsSources) {}

  /**
   * Loads prom-client and registers every series; idempotent. prom-client and its default
   * collectors cost ~35 ms of startup, so the app calls this just after ready; the first
   * scrape calls it too if it comes earlier.
   */
  init(): Prom.Registry {
    if (this.registry) return this.registry;
    const prom = require('prom-client') as typeof Prom;
    const src = this.src;
    const registry = new prom.Registry();
    const registers = [registry];
    prom.collectDefaultMetrics({ register: registry });

    const readyGauge = (name: string, help: string): void => {
      new prom.Gauge({ name, help, registers, collect() { this.set(src.ready() ? 1 : 0); } });
    };
    readyGauge('virt_handler_ready_status', 'Whether this virt-handler is ready (1) or not (0): probe done, listeners bound, not draining.');
    // KubeVirt's name, kept so existing dashboards and alerts work unchanged.
    readyGauge('kubevirt_virt_handler_ready_status', 'KubeVirt-compatible alias of virt_handler_ready_status.');

    // Probe-derived series have no sample until the probe finished, rather than a misleading 0
    // (a label-less prom-client gauge always exposes a value, hence the get() override).
    class ProbeGauge extends prom.Gauge {
      override async get(): Promise<Prom.MetricObjectWithValues<Prom.MetricValue<string>>> {
        const snapshot = await super.get();
        return src.nodeInfo() ? snapshot : { ...snapshot, values: [] };
      }
    }
    const fromProbe = (name: string, help: string, pick: (info: NodeInfo) => number): void => {
      new ProbeGauge({ name, help, registers, collect() { const info = src.nodeInfo(); if (info) this.set(pick(info)); } });
    };
    fromProbe('virt_handler_probe_duration_seconds', 'Duration of the last node probe.', (i) => Math.round(i.probeDurationMs * 1000) / 1e6);
    fromProbe('virt_handler_kvm_available', 'Whether KVM is usable on this node (1) or not (0).', (i) => (i.kvm.available ? 1 : 0));
    fromProbe('virt_handler_node_schedulable', 'Whether this node can run VMs (1) or not (0); see /v1/node reasons.', (i) => (i.schedulable ? 1 : 0));

    if (src.libvirt) {
      const lv = src.libvirt;
      new prom.Gauge({
        name: 'virt_handler_libvirt_connected',
        help: 'Whether the node libvirt connection is up (1) or not (0).',
        registers,
        collect() {
          this.set(lv()?.state === 'connected' ? 1 : 0);
        },
      });
      new prom.Gauge({
        name: 'virt_handler_libvirt_state',
        help: 'The libvirt connection state: 1 for the current state, 0 for the others.',
        labelNames: ['state'],
        registers,
        collect() {
          const now = lv()?.state;
          for (const s of LIBVIRT_STATES) this.set({ state: s }, s === now ? 1 : 0);
        },
      });
      new prom.Counter({
        name: 'virt_handler_libvirt_disconnects_total',
        help: 'libvirt connections lost after being established (each is followed by reconnect attempts).',
        registers,
        collect() {
          this.reset();
          this.inc(lv()?.disconnects ?? 0);
        },
      });
      new prom.Gauge({
        name: 'virt_handler_libvirt_failed_attempts',
        help: 'Failed libvirt connect attempts since the last stable connection (drives the backoff).',
        registers,
        collect() {
          this.set(lv()?.failedAttempts ?? 0);
        },
      });
    }

    if (src.vmis) {
      const vm = src.vmis;
      new prom.Gauge({
        name: 'kubevirt_vmi_phase_count',
        help: 'VMIs on this node per phase (KubeVirt name).',
        labelNames: ['phase', 'node'],
        registers,
        collect() {
          const v = vm();
          this.reset();
          for (const [phase, n] of Object.entries(v?.phases ?? {})) this.set({ phase: phase.toLowerCase(), node: src.nodeName }, n);
        },
      });
      const q = (name: string, help: string, pick: (x: NonNullable<ReturnType<typeof vm>>['queue']) => number): void => {
        new prom.Gauge({ name, help, registers, collect() { const v = vm(); this.set(v ? pick(v.queue) : 0); } });
      };
      q('virt_handler_reconcile_queue_depth', 'VMIs waiting for a reconcile.', (x) => x.depth);
      q('virt_handler_reconcile_in_flight', 'VMIs being reconciled now.', (x) => x.inFlight);
      q('virt_handler_reconcile_total', 'Reconcile runs so far.', (x) => x.processed);
      q('virt_handler_reconcile_failures_total', 'Reconcile runs that failed (retried with backoff).', (x) => x.failures);
      q('virt_handler_reconcile_duration_seconds_avg', 'Mean reconcile run duration.', (x) => (x.processed ? x.runMsTotal / x.processed / 1000 : 0));
    }

    const build = new prom.Gauge({ name: 'virt_handler_build_info', help: 'Build information; always 1.', labelNames: ['version', 'node'], registers });
    build.set({ version: src.version, node: src.nodeName }, 1);
    this.registry = registry;
    return registry;
  }

  /** Content-Type of render()'s output (Prometheus text format). */
  get contentType(): string {
    return this.init().contentType;
  }

  /** The exposition text. */
  render(): Promise<string> {
    return this.init().metrics();
  }
}
