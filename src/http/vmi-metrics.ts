/**
 * The per-VMI series, with the names, types, units and extra labels KubeVirt's virt-handler
 * uses (pkg/monitoring/metrics/virt-handler/domainstats), each mapped from a validated stats
 * report. A row is emitted only for a field libvirt reported: no invented zeros.
 *
 * Device labels are libvirt's names (`interface`: the tap/vnet device, `drive`: the target dev
 * such as vda); KubeVirt maps them to the VMI's interface and disk names through the domain
 * XML aliases, which this handler does not do yet.
 */
import type { VmiStatsReport } from '../vmi/control/metrics-collector';

export type Row = [labels: Record<string, string>, value: number];

export interface VmiSeries {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  /** Labels beyond node, namespace and name. */
  labels: readonly string[];
  rows: (r: VmiStatsReport) => Row[];
}

const NS = 1e9;
const KIB = 1024;
/** virVcpuState names. */
const VCPU_STATES: Record<number, string> = { 0: 'offline', 1: 'running', 2: 'blocked' };

const one = (v: number | undefined, scale = 1): Row[] => (v === undefined ? [] : [[{}, v * scale]]);

function perDevice<D extends { name: string }>(label: string, list: (r: VmiStatsReport) => D[], field: keyof D, scale = 1): (r: VmiStatsReport) => Row[] {
  return (r) =>
    list(r).flatMap((d) => {
      const v = d[field];
      return typeof v === 'number' ? [[{ [label]: d.name }, v * scale] as Row] : [];
    });
}

const net = (field: keyof VmiStatsReport['net'][number]) => perDevice('interface', (r) => r.net, field);
const blk = (field: keyof VmiStatsReport['block'][number], scale = 1) => perDevice('drive', (r) => r.block, field, scale);

export const VMI_SERIES: readonly VmiSeries[] = [
  // cpu
  { name: 'kubevirt_vmi_cpu_usage_seconds_total', help: 'Total CPU time spent in all modes (sum of both vcpu and hypervisor usage).', type: 'counter', labels: [], rows: (r) => one(r.cpu.timeNs, 1 / NS) },
  { name: 'kubevirt_vmi_cpu_user_usage_seconds_total', help: 'Total CPU time spent in user mode.', type: 'counter', labels: [], rows: (r) => one(r.cpu.userNs, 1 / NS) },
  { name: 'kubevirt_vmi_cpu_system_usage_seconds_total', help: 'Total CPU time spent in system mode.', type: 'counter', labels: [], rows: (r) => one(r.cpu.systemNs, 1 / NS) },
  {
    name: 'kubevirt_vmi_vcpu_seconds_total',
    help: 'Total amount of time spent in each state by each vcpu (cpu_time excluding hypervisor time); id is the vcpu index, state one of offline, running, blocked.',
    type: 'counter',
    labels: ['id', 'state'],
    rows: (r) => r.vcpus.flatMap((v) => (v.timeNs === undefined ? [] : [[{ id: String(v.id), state: VCPU_STATES[v.state ?? -1] ?? 'unknown' }, v.timeNs / NS] as Row])),
  },
  {
    name: 'kubevirt_vmi_vcpu_wait_seconds_total',
    help: 'Amount of time spent by each vcpu while waiting on I/O.',
    type: 'counter',
    labels: ['id'],
    rows: (r) => r.vcpus.flatMap((v) => (v.waitNs === undefined ? [] : [[{ id: String(v.id) }, v.waitNs / NS] as Row])),
  },
  {
    name: 'kubevirt_vmi_vcpu_delay_seconds_total',
    help: 'Amount of time spent by each vcpu waiting in the queue instead of running.',
    type: 'counter',
    labels: ['id'],
    rows: (r) => r.vcpus.flatMap((v) => (v.delayNs === undefined ? [] : [[{ id: String(v.id) }, v.delayNs / NS] as Row])),
  },

  // memory (the balloon driver's view; absent without virtio-balloon stats)
  { name: 'kubevirt_vmi_memory_available_bytes', help: 'Amount of usable memory as seen by the domain (may differ from the memory assigned to the VM).', type: 'gauge', labels: [], rows: (r) => one(r.balloon.availableKiB, KIB) },
  { name: 'kubevirt_vmi_memory_usable_bytes', help: 'Amount of memory which can be reclaimed by the balloon without pushing the guest system to swap.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.usableKiB, KIB) },
  { name: 'kubevirt_vmi_memory_unused_bytes', help: 'Amount of memory left completely unused by the system.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.unusedKiB, KIB) },
  { name: 'kubevirt_vmi_memory_resident_bytes', help: 'Resident set size of the process running the domain.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.rssKiB, KIB) },
  { name: 'kubevirt_vmi_memory_domain_bytes', help: 'The amount of memory in bytes allocated to the domain (the maximum in the domain XML).', type: 'gauge', labels: [], rows: (r) => one(r.balloon.maximumKiB, KIB) },
  { name: 'kubevirt_vmi_memory_actual_balloon_bytes', help: 'Current balloon size in bytes.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.currentKiB, KIB) },
  { name: 'kubevirt_vmi_memory_cached_bytes', help: 'The amount of memory that is being used to cache I/O and is available to be reclaimed.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.diskCachesKiB, KIB) },
  {
    name: 'kubevirt_vmi_memory_used_bytes',
    help: 'Amount of memory used by the guest (available minus usable).',
    type: 'gauge',
    labels: [],
    rows: (r) => (r.balloon.availableKiB !== undefined && r.balloon.usableKiB !== undefined && r.balloon.availableKiB >= r.balloon.usableKiB ? [[{}, (r.balloon.availableKiB - r.balloon.usableKiB) * KIB]] : []),
  },
  { name: 'kubevirt_vmi_memory_swap_in_traffic_bytes', help: 'The total amount of data read from swap space of the guest in bytes.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.swapInKiB, KIB) },
  { name: 'kubevirt_vmi_memory_swap_out_traffic_bytes', help: 'The total amount of memory written out to swap space of the guest in bytes.', type: 'gauge', labels: [], rows: (r) => one(r.balloon.swapOutKiB, KIB) },
  { name: 'kubevirt_vmi_memory_pgmajfault_total', help: 'The number of page faults when disk IO was required.', type: 'counter', labels: [], rows: (r) => one(r.balloon.majorFault) },
  { name: 'kubevirt_vmi_memory_pgminfault_total', help: 'The number of other page faults, when disk IO was not required.', type: 'counter', labels: [], rows: (r) => one(r.balloon.minorFault) },

  // network
  { name: 'kubevirt_vmi_network_receive_bytes_total', help: 'Total network traffic received in bytes.', type: 'counter', labels: ['interface'], rows: net('rxBytes') },
  { name: 'kubevirt_vmi_network_transmit_bytes_total', help: 'Total network traffic transmitted in bytes.', type: 'counter', labels: ['interface'], rows: net('txBytes') },
  { name: 'kubevirt_vmi_network_receive_packets_total', help: 'Total network traffic received packets.', type: 'counter', labels: ['interface'], rows: net('rxPackets') },
  { name: 'kubevirt_vmi_network_transmit_packets_total', help: 'Total network traffic transmitted packets.', type: 'counter', labels: ['interface'], rows: net('txPackets') },
  { name: 'kubevirt_vmi_network_receive_errors_total', help: 'Total network received error packets.', type: 'counter', labels: ['interface'], rows: net('rxErrs') },
  { name: 'kubevirt_vmi_network_transmit_errors_total', help: 'Total network transmitted error packets.', type: 'counter', labels: ['interface'], rows: net('txErrs') },
  { name: 'kubevirt_vmi_network_receive_packets_dropped_total', help: 'The total number of rx packets dropped on vNIC interfaces.', type: 'counter', labels: ['interface'], rows: net('rxDrop') },
  { name: 'kubevirt_vmi_network_transmit_packets_dropped_total', help: 'The total number of tx packets dropped on vNIC interfaces.', type: 'counter', labels: ['interface'], rows: net('txDrop') },

  // storage
  { name: 'kubevirt_vmi_storage_read_traffic_bytes_total', help: 'Total number of bytes read from storage.', type: 'counter', labels: ['drive'], rows: blk('rdBytes') },
  { name: 'kubevirt_vmi_storage_write_traffic_bytes_total', help: 'Total number of written bytes.', type: 'counter', labels: ['drive'], rows: blk('wrBytes') },
  { name: 'kubevirt_vmi_storage_iops_read_total', help: 'Total number of I/O read operations.', type: 'counter', labels: ['drive'], rows: blk('rdReqs') },
  { name: 'kubevirt_vmi_storage_iops_write_total', help: 'Total number of I/O write operations.', type: 'counter', labels: ['drive'], rows: blk('wrReqs') },
  { name: 'kubevirt_vmi_storage_read_times_seconds_total', help: 'Total time spent on read operations.', type: 'counter', labels: ['drive'], rows: blk('rdTimesNs', 1 / NS) },
  { name: 'kubevirt_vmi_storage_write_times_seconds_total', help: 'Total time spent on write operations.', type: 'counter', labels: ['drive'], rows: blk('wrTimesNs', 1 / NS) },
  { name: 'kubevirt_vmi_storage_flush_requests_total', help: 'Total storage flush requests.', type: 'counter', labels: ['drive'], rows: blk('flReqs') },
  { name: 'kubevirt_vmi_storage_flush_times_seconds_total', help: 'Total time spent on cache flushing.', type: 'counter', labels: ['drive'], rows: blk('flTimesNs', 1 / NS) },
];
