/**
 * The node probe: reads /proc, /sys and /dev (roots are options so tests use fixture trees),
 * asks KVM what it offers, and derives schedulability and labels.
 *
 * It never throws or rejects. KubeVirt's labeller panicking on rootless/k3s/WSL hosts
 * (#19017, #8615, #14601) is the failure this shape exists to avoid: each part degrades to an
 * "unknown" value (0, '', [], null) and says why, either as a schedulable reason (when the part
 * is essential) or as a warning (when it only narrows features).
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { errnoFacts, errorMessage } from '../errors';
import { type KvmInfo, probeKvm } from '../kvm/probe';
import { DEVICE_PATHS, probeDevices, type DeviceSet } from './devices';
import { probeHostSoftware } from './host-software';
import { assessSchedulable, buildNodeLabels, SCHEDULABLE_LABEL } from './labels';
import {
  memorySummary, parseBracketChoice, parseCpuList, parseCpuinfo, parseHugepageDirName, parseKsmRun,
  parseMeminfo, parseModuleBool, parseNonNegativeInt, parseNumaNodeDirName, parseSysctlString, parseZeroOne,
} from './proc-parsers';
import type { CpuInfo, HugepagePool, NodeInfo, NumaNode, ProbeOptions } from './types';

/** probeNodeReport()'s result: the NodeInfo plus notes on parts that degraded without blocking. */
export interface NodeProbeReport {
  info: NodeInfo;
  /** Non-blocking problems, e.g. "cannot read /sys/kernel/mm/transparent_hugepage/enabled (ENOENT)". */
  warnings: string[];
}

/** Collects warnings while the parts run; reads never throw, they note and return null. */
class Reader {
  readonly warnings: string[] = [];

  /** File text, or null (noted unless `quiet`: expected absences such as an unloaded module). */
  async text(file: string, quiet = false): Promise<string | null> {
    try {
      return await fsp.readFile(file, 'utf8');
    } catch (e) {
      if (!quiet) this.warnings.push(`cannot read ${file} (${errnoFacts(e)?.code ?? String(e)})`);
      return null;
    }
  }

  /** Directory entry names, or [] (noted unless `quiet`). */
  async list(dir: string, quiet = false): Promise<string[]> {
    try {
      return await fsp.readdir(dir);
    } catch (e) {
      if (!quiet) this.warnings.push(`cannot list ${dir} (${errnoFacts(e)?.code ?? String(e)})`);
      return [];
    }
  }
}

async function probeNuma(r: Reader, sysRoot: string): Promise<NumaNode[]> {
  // CONFIG_NUMA=n kernels have no node directory at all; that is a fact, not a problem.
  const dir = path.join(sysRoot, 'devices/system/node');
  const ids = (await r.list(dir, true))
    .map(parseNumaNodeDirName)
    .filter((id): id is number => id !== null)
    .sort((a, b) => a - b);
  return Promise.all(ids.map(async (id): Promise<NumaNode> => {
    const nodeDir = path.join(dir, `node${id}`);
    const [cpulist, meminfo] = await Promise.all([
      r.text(path.join(nodeDir, 'cpulist')),
      r.text(path.join(nodeDir, 'meminfo')),
    ]);
    const memTotal = meminfo === null ? undefined : parseMeminfo(meminfo).MemTotal;
    return { id, cpus: cpulist === null ? [] : parseCpuList(cpulist), memTotalBytes: memTotal ?? null };
  }));
}

async function probeHugepages(r: Reader, sysRoot: string): Promise<HugepagePool[]> {
  // No hugepages directory means CONFIG_HUGETLBFS=n: no pools, nothing to warn about.
  const dir = path.join(sysRoot, 'kernel/mm/hugepages');
  const pools: HugepagePool[] = [];
  for (const name of await r.list(dir, true)) {
    const sizeBytes = parseHugepageDirName(name);
    if (sizeBytes === null) continue;
    const [total, free] = await Promise.all([
      r.text(path.join(dir, name, 'nr_hugepages')),
      r.text(path.join(dir, name, 'free_hugepages')),
    ]);
    pools.push({
      sizeBytes,
      total: parseNonNegativeInt(total ?? '') ?? 0,
      free: parseNonNegativeInt(free ?? '') ?? 0,
    });
  }
  return pools.sort((a, b) => a.sizeBytes - b.sizeBytes);
}

/** The 'nested' parameter of the vendor's KVM module; null when it is not loaded (e.g. kvm_pvm). */
async function probeNested(r: Reader, sysRoot: string, cpu: CpuInfo): Promise<boolean | null> {
  const modules = cpu.vendorShort === 'intel' ? ['kvm_intel']
    : cpu.vendorShort === 'amd' || cpu.vendorShort === 'hygon' ? ['kvm_amd']
      : ['kvm_intel', 'kvm_amd'];
  for (const mod of modules) {
    const text = await r.text(path.join(sysRoot, 'module', mod, 'parameters/nested'), true);
    if (text !== null) return parseModuleBool(text);
  }
  return null;
}

/** A KvmInfo that knows nothing but why. */
function unavailableKvm(reason: string, errorCode: string | null): KvmInfo {
  return {
    available: false, reason, errorCode, apiVersion: null, capabilities: {}, vcpuMmapSize: null,
    cpuidFeatures: [], msrCount: null,
  };
}

/** probeKvm() promises not to throw; this guard keeps probeNode's promise even if it one day does. */
function guardedProbeKvm(opts: ProbeOptions): KvmInfo {
  try {
    return probeKvm({
      devicePath: opts.kvmDevice,
      native: opts.native,
      ...(opts.nativeError === undefined ? {} : { nativeError: opts.nativeError }),
    });
  } catch (e) {
    return unavailableKvm(`KVM probe failed unexpectedly: ${errorMessage(e)}`, errnoFacts(e)?.code ?? null);
  }
}

async function gather(opts: ProbeOptions, r: Reader, probedAt: string, started: number): Promise<NodeInfo> {
  const proc = (p: string): string => path.join(opts.procRoot, p);
  const sys = (p: string): string => path.join(opts.sysRoot, p);

  const [cpuinfo, meminfo, release, version, uffdSysctl, thpEnabled, thpDefrag, ksmRun, numa, hugepages, devs, software] =
    await Promise.all([
      r.text(proc('cpuinfo')),
      r.text(proc('meminfo')),
      r.text(proc('sys/kernel/osrelease')),
      r.text(proc('sys/kernel/version')),
      r.text(proc('sys/vm/unprivileged_userfaultfd'), true), // absent before Linux 5.2
      r.text(sys('kernel/mm/transparent_hugepage/enabled')),
      r.text(sys('kernel/mm/transparent_hugepage/defrag')),
      r.text(sys('kernel/mm/ksm/run'), true), // absent when CONFIG_KSM=n
      probeNuma(r, opts.sysRoot),
      probeHugepages(r, opts.sysRoot),
      probeDevices(opts.devRoot),
      probeHostSoftware(opts.softwareRoot ?? '/'),
    ]);

  const cpu = parseCpuinfo(cpuinfo ?? '');
  const memory = memorySummary(parseMeminfo(meminfo ?? ''));
  const nested = await probeNested(r, opts.sysRoot, cpu);
  const kvm = guardedProbeKvm(opts);
  const devices: NodeInfo['devices'] = {
    ...devs,
    userfaultfd: { ...devs.userfaultfd, unprivilegedAllowed: parseZeroOne(uffdSysctl ?? '') },
  };
  // Parsers map '' to their "unknown" value, so an unreadable file needs no special case here.
  const thp = { enabled: parseBracketChoice(thpEnabled ?? ''), defrag: parseBracketChoice(thpDefrag ?? '') };

  const { schedulable, reasons } = assessSchedulable({
    kvm, tun: devices.tun, cpu, memoryTotalBytes: memory.totalBytes, procRoot: opts.procRoot,
  });
  const labels = buildNodeLabels({
    schedulable, cpu, kvm, hugepages, thpEnabled: thp.enabled, devices,
    nestedVirtualization: nested, ksmEnabled: parseKsmRun(ksmRun ?? ''),
  });

  return {
    nodeName: opts.nodeName,
    probedAt,
    probeDurationMs: performance.now() - started,
    kernel: { release: parseSysctlString(release ?? ''), version: parseSysctlString(version ?? '') },
    cpu,
    numa,
    memory,
    hugepages,
    thp,
    devices,
    kvm,
    schedulable,
    reasons,
    labels,
    warnings: r.warnings,
    software,
  };
}

/** The NodeInfo reported when the probe itself broke: nothing known, not schedulable, and why. */
function failedNodeInfo(opts: ProbeOptions, probedAt: string, started: number, e: unknown, warnings: string[]): NodeInfo {
  // Defensive reads: this runs precisely when something about opts or the host was unexpected.
  const devRoot = typeof opts?.devRoot === 'string' ? opts.devRoot : '/dev';
  const missing = (p: string): NodeInfo['devices']['kvm'] =>
    ({ path: `${devRoot}/${p}`, present: false, kind: 'missing', mode: '', uid: null, gid: null, accessible: false });
  const reason = `node probe failed internally: ${errorMessage(e)}`;
  const devices = Object.fromEntries(
    Object.entries(DEVICE_PATHS).map(([key, rel]) => [key, missing(rel)]),
  ) as DeviceSet;
  return {
    nodeName: typeof opts?.nodeName === 'string' ? opts.nodeName : '',
    probedAt,
    probeDurationMs: performance.now() - started,
    kernel: { release: '', version: '' },
    cpu: parseCpuinfo(''),
    numa: [],
    memory: { totalBytes: 0, availableBytes: 0 },
    hugepages: [],
    thp: { enabled: '', defrag: '' },
    devices: { ...devices, userfaultfd: { ...devices.userfaultfd, unprivilegedAllowed: null } },
    kvm: unavailableKvm(reason, null),
    schedulable: false,
    reasons: [reason],
    labels: { [SCHEDULABLE_LABEL]: 'false' },
    warnings,
  };
}

/**
 * Probes the node and returns NodeInfo plus non-blocking warnings. Never rejects: an unexpected
 * internal failure still yields a NodeInfo (schedulable false, the failure as its reason).
 */
export async function probeNodeReport(opts: ProbeOptions): Promise<NodeProbeReport> {
  const started = performance.now();
  const probedAt = new Date().toISOString();
  const r = new Reader();
  try {
    return { info: await gather(opts, r, probedAt, started), warnings: r.warnings };
  } catch (e) {
    return { info: failedNodeInfo(opts, probedAt, started, e, r.warnings), warnings: r.warnings };
  }
}

/** Probes the node (see probeNodeReport); never rejects. */
export async function probeNode(opts: ProbeOptions): Promise<NodeInfo> {
  return (await probeNodeReport(opts)).info;
}
