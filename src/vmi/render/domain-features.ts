/**
 * The domain XML parts for plain settings (split from domain-xml.ts): `<features>` (ACPI, APIC
 * [eoi], Hyper-V enlightenments, KVM hiding, paravirtual spinlocks, SMM), `<clock>` with timers,
 * and `<sysinfo type=smbios>` (firmware serial, chassis). Only what the spec sets is rendered, so
 * a VMI that sets none of it gets the same XML as before these existed.
 *
 * Mappings (KubeVirt's converter does the same): Hyper-V synictimer -> `<stimer>`, vendorid ->
 * `<vendor_id value>`, spinlocks -> `<spinlocks retries>`; hypervPassthrough -> `<hyperv
 * mode=passthrough>`; timers kvm -> kvmclock, hyperv -> hypervclock; clock utc.offsetSeconds ->
 * `<clock offset=variable basis=utc adjustment=N>` (libvirt's offset=utc takes no number).
 */
import type { HypervFeatures, NormalizedVmi } from '../spec/types';
import { element, type XmlElement } from './xml';

const onOff = (b: boolean): string => (b ? 'on' : 'off');

function buildHyperv(h: HypervFeatures | 'passthrough'): XmlElement {
  if (h === 'passthrough') return element('hyperv', { mode: 'passthrough' });
  const s = (name: string, b: boolean | undefined): XmlElement | null => (b === undefined ? null : element(name, { state: onOff(b) }));
  return element(
    'hyperv',
    { mode: 'custom' },
    s('relaxed', h.relaxed),
    s('vapic', h.vapic),
    h.spinlocks && element('spinlocks', { state: onOff(h.spinlocks.enabled), retries: h.spinlocks.enabled ? h.spinlocks.retries ?? 4096 : undefined }),
    s('vpindex', h.vpindex),
    s('runtime', h.runtime),
    s('synic', h.synic),
    h.synictimer && element('stimer', { state: onOff(h.synictimer.enabled) }, s('direct', h.synictimer.direct)),
    s('reset', h.reset),
    h.vendorId && element('vendor_id', { state: onOff(h.vendorId.enabled), value: h.vendorId.enabled ? h.vendorId.value : undefined }),
    s('frequencies', h.frequencies),
    s('reenlightenment', h.reenlightenment),
    h.tlbflush && element('tlbflush', { state: onOff(h.tlbflush.enabled) }),
    s('ipi', h.ipi),
    s('evmcs', h.evmcs),
  );
}

/** `<features>`; secure boot forces SMM on (validation refuses smm disabled with it). */
export function buildFeatures(vmi: NormalizedVmi, secureBoot: boolean): XmlElement {
  const f = vmi.features;
  const smm = secureBoot ? true : f.smm;
  return element(
    'features',
    null,
    f.acpi && element('acpi'),
    f.apic && element('apic', { eoi: f.apicEoi === undefined ? undefined : onOff(f.apicEoi) }),
    f.hyperv !== undefined && buildHyperv(f.hyperv),
    f.kvmHidden !== undefined && element('kvm', null, element('hidden', { state: onOff(f.kvmHidden) })),
    f.pvspinlock !== undefined && element('pvspinlock', { state: onOff(f.pvspinlock) }),
    smm !== undefined && element('smm', { state: onOff(smm) }),
  );
}

const TIMER_NAMES = { hpet: 'hpet', pit: 'pit', rtc: 'rtc', kvm: 'kvmclock', hyperv: 'hypervclock' } as const;

export function buildClock(vmi: NormalizedVmi): XmlElement {
  const c = vmi.clock;
  if (c === undefined) return element('clock', { offset: 'utc' });
  const timers = c.timers.map((t) => element('timer', { name: TIMER_NAMES[t.name], tickpolicy: t.tickPolicy, track: t.track, present: t.present ? 'yes' : 'no' }));
  if (c.offset.kind === 'timezone') return element('clock', { offset: 'timezone', timezone: c.offset.timezone }, timers);
  if (c.offset.adjustmentSeconds !== null) return element('clock', { offset: 'variable', adjustment: c.offset.adjustmentSeconds, basis: 'utc' }, timers);
  return element('clock', { offset: 'utc' }, timers);
}

/** `<sysinfo type=smbios>`, or null; the `<os>` then needs `<smbios mode=sysinfo/>`. */
export function buildSysinfo(vmi: NormalizedVmi): XmlElement | null {
  const s = vmi.sysinfo;
  if (s === undefined) return null;
  const chassis = Object.entries(s.chassis).map(([name, value]) => element('entry', { name }, value));
  return element(
    'sysinfo',
    { type: 'smbios' },
    s.serial !== null && element('system', null, element('entry', { name: 'serial' }, s.serial)),
    chassis.length > 0 && element('chassis', null, chassis),
  );
}
