/**
 * Prometheus metrics on a private Registry (no prom-client global state, so two daemons in one
 * test process do not share series). Values are read from their sources at scrape time, so the
 * metrics can never disagree with /readyz or /v1/node.
 */
import type * as Prom from 'prom-client';
import type { NodeInfo } from '../node/types';
import { LIBVIRT_STATES, type LibvirtStatus } from '../libvirt/supervisor';
import type { HistogramSnapshot } from '../util/histogram';
import type { Collection, CollectorCounters } from '../vmi/control/metrics-collector';
import type { WorkQueueStats } from '../vmi/control/work-queue';
import { VMI_SERIES } from './vmi-metrics';

/** Where the metric values come from. */
export interface MetricsSources {
  version: string;
  nodeName: string;
  ready: () => boolean;
  nodeInfo: () => NodeInfo | null;
  /** The libvirt supervisor's status; absent or null when libvirt is switched off. */
  libvirt?: () => LibvirtStatus | null;
  /** VMI phase counts and reconcile queue figures; absent when VMIs are off. */
  vmis?: () => { phases: Record<string, number>; queue: WorkQueueStats } | null;
  /** Per-VMI domain statistics (src/vmi/metrics-collector.ts); absent when VMIs are off. */
  vmiStats?: { collect(): Promise<Collection>; counters(): CollectorCounters };
}

/**
 * What a collect() of a Gauge or a Counter needs: reset, then inc from zero (which sets the
 * value), so one collect serves both types.
 */
type Settable = { reset(): void; inc(labels: Prom.LabelValues<string>, value: number): void };

/** client-go's workqueue metrics label the queue by name; this is ours. */
const QUEUE_NAME = 'virt-handler-vmi';

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

      // The same queue under the names KubeVirt's client-go workqueues export.
      const wq = (type: 'gauge' | 'counter', name: string, help: string, pick: (x: WorkQueueStats) => number): void => {
        const Kind = type === 'gauge' ? prom.Gauge : prom.Counter;
        new Kind({
          name, help, labelNames: ['name'], registers,
          collect(this: Settable) {
            const v = vm();
            this.reset();
            if (v) this.inc({ name: QUEUE_NAME }, pick(v.queue));
          },
        });
      };
      wq('gauge', 'kubevirt_workqueue_depth', 'Current depth of the workqueue (KubeVirt name).', (x) => x.depth);
      wq('counter', 'kubevirt_workqueue_adds_total', 'Total number of adds handled by the workqueue (KubeVirt name).', (x) => x.adds);
      wq('counter', 'kubevirt_workqueue_retries_total', 'Total number of retries (failed runs requeued with backoff) handled by the workqueue (KubeVirt name).', (x) => x.failures);
      // Fixed-bucket histograms kept by the queue itself, exposed as they are at scrape time.
      const hist = (name: string, help: string, pick: (x: WorkQueueStats) => HistogramSnapshot): void => {
        // prom-client renders a histogram through getForPromString() (untyped) and get().
        class QueueHistogram extends prom.Histogram {
          async getForPromString(): Promise<Prom.MetricObjectWithValues<Prom.MetricValueWithName<string>>> {
            const v = vm();
            const values = v ? histogramValues(name, pick(v.queue), { name: QUEUE_NAME }) : [];
            return { name, help, type: 'histogram', aggregator: 'sum', values } as unknown as Prom.MetricObjectWithValues<Prom.MetricValueWithName<string>>;
          }
          override async get(): Promise<Prom.MetricObjectWithValues<Prom.MetricValueWithName<string>>> {
            return this.getForPromString();
          }
        }
        new QueueHistogram({ name, help, labelNames: ['name'], registers });
      };
      hist('kubevirt_workqueue_queue_duration_seconds', 'How long in seconds an item stays in the workqueue before being requested (KubeVirt name).', (x) => x.waitSeconds);
      hist('kubevirt_workqueue_work_duration_seconds', 'How long in seconds processing an item from the workqueue takes (KubeVirt name).', (x) => x.runSeconds);
    }

    if (src.vmiStats) this.registerVmiStats(prom, registers, src.vmiStats);

    const build = new prom.Gauge({ name: 'virt_handler_build_info', help: 'Build information; always 1.', labelNames: ['version', 'node'], registers });
    build.set({ version: src.version, node: src.nodeName }, 1);
    this.registry = registry;
    return registry;
  }

  /**
   * Per-VMI series with KubeVirt's names and labels. Every one awaits the same (coalesced,
   * deadline-bounded) collection, then exposes exactly the samples it returned: a field libvirt
   * did not report has no series, and a VMI that is gone has none either.
   */
  private registerVmiStats(prom: typeof Prom, registers: Prom.Registry[], stats: NonNullable<MetricsSources['vmiStats']>): void {
    const node = this.src.nodeName;
    for (const def of VMI_SERIES) {
      const Kind = def.type === 'gauge' ? prom.Gauge : prom.Counter;
      new Kind({
        name: def.name,
        help: def.help,
        labelNames: ['node', 'namespace', 'name', ...def.labels],
        registers,
        async collect(this: Settable) {
          const c = await stats.collect();
          this.reset();
          for (const s of c.samples) {
            for (const [labels, value] of def.rows(s.report)) {
              if (!Number.isFinite(value) || value < 0) continue;
              this.inc({ node, namespace: s.namespace, name: s.name, ...labels }, value);
            }
          }
        },
      });
    }
    new prom.Gauge({
      name: 'virt_handler_vmi_stats_sample_age_seconds',
      help: 'Age of the per-VMI statistics served: 0 when the launcher answered this scrape, more when its last good sample is served because it did not.',
      labelNames: ['node', 'namespace', 'name'],
      registers,
      async collect() {
        const c = await stats.collect();
        this.reset();
        for (const s of c.samples) this.set({ node, namespace: s.namespace, name: s.name }, s.fresh ? 0 : Math.max(0, c.at - s.receivedAt) / 1000);
      },
    });
    new prom.Gauge({
      name: 'virt_handler_vmi_stats_collection_duration_seconds',
      help: 'How long the last per-VMI statistics collection took (bounded by its deadline).',
      registers,
      async collect() {
        await stats.collect();
        this.set(stats.counters().lastDurationMs / 1000);
      },
    });
    const total = (name: string, help: string, pick: (x: CollectorCounters) => number): void => {
      new prom.Counter({
        name, help, registers,
        async collect() {
          await stats.collect();
          this.reset();
          this.inc(pick(stats.counters()));
        },
      });
    };
    total('virt_handler_vmi_stats_timeouts_total', 'Launchers that did not answer a statistics request in time.', (x) => x.timeouts);
    total('virt_handler_vmi_stats_errors_total', 'Failed statistics requests: launcher errors, disconnected launchers, invalid reports.', (x) => x.errors);
    total('virt_handler_vmi_stats_skipped_total', 'Launchers not asked because they still owed the previous answer.', (x) => x.skipped);
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

/** Prometheus histogram samples (cumulative buckets, +Inf, sum, count) from a snapshot. */
function histogramValues(name: string, h: HistogramSnapshot, labels: Record<string, string>): Array<Prom.MetricValueWithName<string>> {
  const out: Array<Prom.MetricValueWithName<string>> = [];
  let acc = 0;
  h.buckets.forEach((le, i) => {
    acc += h.counts[i] ?? 0;
    out.push({ metricName: `${name}_bucket`, labels: { le, ...labels }, value: acc });
  });
  out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}
