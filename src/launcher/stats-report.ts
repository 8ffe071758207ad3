/**
 * libvirt's decoded domain statistics (src/libvirt/stats.ts) as launcher.proto DomainStats: the
 * launcher's side of get_stats. Values keep libvirt's width (bigint counters go on the wire as
 * uint64); fields libvirt did not report stay unset; vCPUs become a list carrying their index.
 * The handler checks all of it (src/launcher-protocol/validate.ts checkDomainStats).
 */
import type { DomainStatsMsg } from '../launcher-protocol/messages';
import type { DomainStats } from '../libvirt/stats';

export function statsToWire(s: DomainStats, takenAtMs: number): DomainStatsMsg {
  const b = s.balloon;
  return {
    takenAtMs,
    state: s.state ? defined({ ...s.state }) : null,
    cpu: s.cpu ? defined({ ...s.cpu }) : null,
    balloon: b
      ? defined({
          currentKib: b.currentKiB,
          maximumKib: b.maximumKiB,
          swapInKib: b.swapInKiB,
          swapOutKib: b.swapOutKiB,
          majorFault: b.majorFault,
          minorFault: b.minorFault,
          unusedKib: b.unusedKiB,
          availableKib: b.availableKiB,
          usableKib: b.usableKiB,
          rssKib: b.rssKiB,
          diskCachesKib: b.diskCachesKiB,
        })
      : null,
    ...(s.vcpuCurrent === undefined ? {} : { vcpuCurrent: s.vcpuCurrent }),
    // libvirt numbers vCPUs 0..n-1; a gap (an offline vCPU it did not report) keeps the others' ids.
    vcpus: (s.vcpus ?? []).flatMap((v, id) => (v ? [defined({ id, state: v.state, timeNs: v.timeNs, waitNs: v.waitNs, delayNs: v.delayNs })] : [])),
    net: (s.net ?? []).map((n) => defined({ name: n.name ?? '', rxBytes: n.rxBytes, rxPackets: n.rxPackets, rxErrs: n.rxErrs, rxDrop: n.rxDrop, txBytes: n.txBytes, txPackets: n.txPackets, txErrs: n.txErrs, txDrop: n.txDrop })),
    block: (s.block ?? []).map((d) => defined({ name: d.name ?? '', rdReqs: d.rdReqs, rdBytes: d.rdBytes, rdTimesNs: d.rdTimesNs, wrReqs: d.wrReqs, wrBytes: d.wrBytes, wrTimesNs: d.wrTimesNs, flReqs: d.flReqs, flTimesNs: d.flTimesNs })),
  };
}

/** The object without its undefined members (an unset proto3 optional is absent, not undefined). */
function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
