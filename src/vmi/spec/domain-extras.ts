/**
 * Readers for the domain settings that are plain switches and strings: features (ACPI, APIC,
 * SMM, Hyper-V, KVM hiding, paravirtual spinlocks), the clock, and SMBIOS (firmware serial,
 * chassis). The schema walker has already checked every kind, so these only read values of the
 * right kind and add the semantic checks (ranges, string syntaxes libvirt would refuse).
 */
import { type Violations, isPlainObject, q } from './field-reader';
import type { ClockTimerName, HypervFeatures, NormalizedVmi, VmiClock } from './types';

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | null => (isPlainObject(v) ? (v as Obj) : null);
const flag = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
/** A FeatureState `{enabled?}` that is present: its enabled (KubeVirt defaults true). */
const state = (v: unknown): boolean | undefined => {
  const o = obj(v);
  return o === null ? undefined : flag(o.enabled) ?? true;
};

/** libvirt's SMBIOS entries: printable, no control characters (the schema already refused those). */
const SMBIOS_RE = /^[\x20-\x7e]{1,64}$/;
/** An IANA zone name as QEMU/libvirt take it: Area/Location, no `..`. */
const TIMEZONE_RE = /^(?!.*\.\.)[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;
/** Hyper-V vendor id: at most 12 characters (libvirt refuses longer). */
const VENDOR_ID_RE = /^[A-Za-z0-9 _-]{1,12}$/;

const HYPERV_STATES = ['relaxed', 'vapic', 'vpindex', 'runtime', 'reset', 'frequencies', 'reenlightenment', 'ipi', 'evmcs', 'synic'] as const;

export function readFeatures(value: unknown, v: Violations): NormalizedVmi['features'] {
  const result: NormalizedVmi['features'] = { acpi: true, apic: true };
  const f = obj(value);
  if (f === null) return result;
  result.acpi = state(f.acpi) ?? true;
  result.apic = state(f.apic) ?? true;
  const eoi = flag(obj(f.apic)?.endOfInterrupt);
  if (eoi !== undefined) result.apicEoi = eoi;
  const smm = state(f.smm);
  if (smm !== undefined) result.smm = smm;
  const pv = state(f.pvspinlock);
  if (pv !== undefined) result.pvspinlock = pv;
  const hidden = flag(obj(f.kvm)?.hidden);
  if (hidden !== undefined) result.kvmHidden = hidden;
  const passthrough = flag(obj(f.hypervPassthrough)?.enabled);
  if (passthrough === true) {
    if (f.hyperv !== undefined) v.add('spec.domain.features.hypervPassthrough', 'must not be combined with spec.domain.features.hyperv');
    result.hyperv = 'passthrough';
  } else if (obj(f.hyperv) !== null) {
    result.hyperv = readHyperv(obj(f.hyperv)!, v);
  }
  return result;
}

function readHyperv(h: Obj, v: Violations): HypervFeatures {
  const base = 'spec.domain.features.hyperv';
  const out: HypervFeatures = {};
  for (const key of HYPERV_STATES) {
    const s = state(h[key]);
    if (s !== undefined) out[key] = s;
  }
  const st = obj(h.synictimer);
  if (st !== null) {
    out.synictimer = { enabled: flag(st.enabled) ?? true };
    const direct = state(st.direct);
    if (direct !== undefined) out.synictimer.direct = direct;
  }
  const sl = obj(h.spinlocks);
  if (sl !== null) {
    out.spinlocks = { enabled: flag(sl.enabled) ?? true };
    const retries = sl.spinlocks;
    if (typeof retries === 'number') {
      // libvirt/QEMU: at least 4095 retries, at most 2^32-1.
      if (retries < 4096 || retries > 0xffffffff) v.add(`${base}.spinlocks.spinlocks`, 'must be between 4096 and 4294967295');
      else out.spinlocks.retries = retries;
    }
  }
  const vid = obj(h.vendorid);
  if (vid !== null) {
    out.vendorId = { enabled: flag(vid.enabled) ?? true };
    const value = vid.vendorid;
    if (typeof value === 'string') {
      if (!VENDOR_ID_RE.test(value)) v.add(`${base}.vendorid.vendorid`, `${q(value)} must be 1-12 characters of [A-Za-z0-9 _-]`);
      else out.vendorId.value = value;
    } else if (out.vendorId.enabled) {
      v.add(`${base}.vendorid.vendorid`, 'required when the vendor id is enabled');
    }
  }
  const tlb = obj(h.tlbflush);
  if (tlb !== null) {
    out.tlbflush = { enabled: flag(tlb.enabled) ?? true }; // direct/extended: requirements (schema)
  }
  return out;
}

const TIMERS: ReadonlyArray<ClockTimerName> = ['hpet', 'pit', 'rtc', 'kvm', 'hyperv'];

export function readClock(value: unknown, v: Violations): VmiClock | undefined {
  const c = obj(value);
  if (c === null) return undefined;
  const base = 'spec.domain.clock';
  let offset: VmiClock['offset'] = { kind: 'utc', adjustmentSeconds: null };
  if (c.utc !== undefined && c.timezone !== undefined) v.add(base, 'must set at most one of utc, timezone');
  if (typeof c.timezone === 'string') {
    if (!TIMEZONE_RE.test(c.timezone)) v.add(`${base}.timezone`, `${q(c.timezone)} must be a time zone name such as Europe/Paris`);
    else offset = { kind: 'timezone', timezone: c.timezone };
  }
  const utc = obj(c.utc);
  if (utc !== null && typeof utc.offsetSeconds === 'number') {
    // libvirt takes a signed 32-bit adjustment in seconds.
    if (Math.abs(utc.offsetSeconds) > 2 ** 31 - 1) v.add(`${base}.utc.offsetSeconds`, 'must be between -2147483647 and 2147483647');
    else offset = { kind: 'utc', adjustmentSeconds: utc.offsetSeconds };
  }
  const timers: VmiClock['timers'] = [];
  const t = obj(c.timer);
  for (const name of TIMERS) {
    const timer = obj(t?.[name]);
    if (timer === null) continue;
    const entry: VmiClock['timers'][number] = { name, present: flag(timer.present) ?? true };
    if (typeof timer.tickPolicy === 'string') entry.tickPolicy = timer.tickPolicy;
    if (typeof timer.track === 'string') entry.track = timer.track;
    timers.push(entry);
  }
  return { offset, timers };
}

const CHASSIS_KEYS = ['manufacturer', 'version', 'serial', 'asset', 'sku'] as const;

export function readSysinfo(firmware: unknown, chassis: unknown, v: Violations): NormalizedVmi['sysinfo'] {
  const fw = obj(firmware);
  const ch = obj(chassis);
  let serial: string | null = null;
  const smbios = (value: unknown, field: string): string | undefined => {
    if (typeof value !== 'string') return undefined;
    if (!SMBIOS_RE.test(value)) {
      v.add(field, 'must be 1-64 printable ASCII characters');
      return undefined;
    }
    return value;
  };
  if (fw !== null) serial = smbios(fw.serial, 'spec.domain.firmware.serial') ?? null;
  const entries: NonNullable<NormalizedVmi['sysinfo']>['chassis'] = {};
  if (ch !== null) {
    for (const key of CHASSIS_KEYS) {
      const s = smbios(ch[key], `spec.domain.chassis.${key}`);
      if (s !== undefined) entries[key] = s;
    }
  }
  if (serial === null && Object.keys(entries).length === 0) return undefined;
  return { serial, chassis: entries };
}

const CPU_FEATURE_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const CPU_POLICIES = ['force', 'require', 'optional', 'disable', 'forbid'] as const;

/** spec.domain.cpu.features: libvirt feature names, unique. */
export function readCpuFeatures(cpu: unknown, v: Violations): NonNullable<NormalizedVmi['cpu']['features']> | undefined {
  const list = obj(cpu)?.features;
  if (!Array.isArray(list)) return undefined;
  const out: NonNullable<NormalizedVmi['cpu']['features']> = [];
  const seen = new Set<string>();
  list.forEach((item, i) => {
    const f = obj(item);
    const field = `spec.domain.cpu.features[${i}]`;
    if (f === null || typeof f.name !== 'string') return v.add(`${field}.name`, 'required');
    if (!CPU_FEATURE_RE.test(f.name)) return v.add(`${field}.name`, `${q(f.name)} must be a CPU feature name such as vmx or pcid`);
    if (seen.has(f.name)) return v.add(`${field}.name`, `duplicate CPU feature ${q(f.name)}`);
    seen.add(f.name);
    const policy = (CPU_POLICIES as readonly unknown[]).includes(f.policy) ? (f.policy as (typeof CPU_POLICIES)[number]) : 'require';
    out.push({ name: f.name, policy });
  });
  return out;
}

/** Watchdog, inputs and the balloon switch from spec.domain.devices. */
export function readDeviceExtras(devices: unknown, v: Violations): Pick<NormalizedVmi, 'watchdog' | 'inputs' | 'memBalloon'> {
  const d = obj(devices);
  const out: Pick<NormalizedVmi, 'watchdog' | 'inputs' | 'memBalloon'> = {};
  if (d === null) return out;
  if (typeof d.autoattachMemBalloon === 'boolean') out.memBalloon = d.autoattachMemBalloon;
  const w = obj(d.watchdog);
  if (w !== null) {
    if (typeof w.name !== 'string') v.add('spec.domain.devices.watchdog.name', 'required');
    const i6300 = obj(w.i6300esb);
    if (i6300 === null && w.diag288 === undefined) v.add('spec.domain.devices.watchdog', 'must set i6300esb (diag288 is for s390x)');
    const action = i6300?.action;
    if (i6300 !== null && typeof w.name === 'string') {
      out.watchdog = { name: w.name, action: action === 'poweroff' || action === 'shutdown' ? action : 'reset' };
    }
  }
  if (Array.isArray(d.inputs)) {
    const names = new Set<string>();
    out.inputs = [];
    d.inputs.forEach((item, i) => {
      const input = obj(item);
      if (input === null) return;
      const base = `spec.domain.devices.inputs[${i}]`;
      if (typeof input.name !== 'string') return v.add(`${base}.name`, 'required');
      if (names.has(input.name)) return v.add(`${base}.name`, `duplicate input name ${q(input.name)}`);
      names.add(input.name);
      out.inputs!.push({ name: input.name, type: input.type === 'keyboard' ? 'keyboard' : 'tablet', bus: input.bus === 'virtio' ? 'virtio' : 'usb' });
    });
  }
  return out;
}
