/**
 * A libvirt domain handle. Every call runs on the lane (connection handle) the domain was
 * obtained from, because libvirt reports a domain call's error on that connection. The caller
 * owns the handle and must `free()` it; nothing here blocks the JS thread.
 */
import { ErrorCodes, VhError } from '../errors';
import type { Handle, RawDomainInfo } from './ffi';
import type { Lane } from './lane';
import { type DomainStats, fetchDomainStats } from './stats';
import { type TypedParamRecord, decodeTypedParams, encodeTypedParams, migrationTypedParams, type MigrationParams, typedParamsToRecord } from './typed-params';

/** virDomainState names, indexed by value. */
export const DOMAIN_STATES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
export type DomainStateName = (typeof DOMAIN_STATES)[number] | 'unknown';

// Reason enums for the states the daemon acts on (virDomainRunningReason, virDomainPausedReason,
// virDomainShutoffReason), indexed by value.
const REASONS: Partial<Record<DomainStateName, readonly string[]>> = {
  running: ['unknown', 'booted', 'migrated', 'restored', 'from_snapshot', 'unpaused', 'migration_canceled', 'save_canceled', 'wakeup', 'crashed', 'postcopy', 'postcopy_failed'],
  paused: ['unknown', 'user', 'migration', 'save', 'dump', 'ioerror', 'watchdog', 'from_snapshot', 'shutting_down', 'snapshot', 'crashed', 'starting_up', 'postcopy', 'postcopy_failed', 'api_error'],
  shutoff: ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot', 'daemon'],
};

function stateName(state: number): DomainStateName {
  return DOMAIN_STATES[state] ?? 'unknown';
}

/** virDomainGetInfo, units made explicit. */
export interface DomainInfo {
  state: DomainStateName;
  stateCode: number;
  /** KiB. */
  maxMem: number;
  /** KiB. */
  memory: number;
  nrVirtCpu: number;
  /** Nanoseconds of CPU time used. */
  cpuTime: bigint;
}

/** virDomainGetState. */
export interface DomainState {
  state: DomainStateName;
  stateCode: number;
  reason: number;
  /** The reason's name for running/paused/shutoff, else undefined. */
  reasonName?: string;
}

const VIR_UUID_STRING_BUFLEN = 37;

/** Named flag sets with libvirt's bit values (include/libvirt/libvirt-domain.h). */
export const CREATE_FLAGS = { paused: 1 << 0, autodestroy: 1 << 1, bypassCache: 1 << 2, forceBoot: 1 << 3, validate: 1 << 4 } as const;
/** virDomainShutdownFlagValues; virDomainRebootFlagValues has the same bits. */
export const SHUTDOWN_FLAGS = { acpiPowerBtn: 1 << 0, guestAgent: 1 << 1, initctl: 1 << 2, signal: 1 << 3, paravirt: 1 << 4 } as const;
export const REBOOT_FLAGS = SHUTDOWN_FLAGS;
export const DESTROY_FLAGS = { graceful: 1 << 0, removeLogs: 1 << 1 } as const;
export const UNDEFINE_FLAGS = {
  managedSave: 1 << 0,
  snapshotsMetadata: 1 << 1,
  nvram: 1 << 2,
  keepNvram: 1 << 3,
  checkpointsMetadata: 1 << 4,
  tpm: 1 << 5,
  keepTpm: 1 << 6,
} as const;
/** virDomainMigrateFlags. */
export const MIGRATE_FLAGS = {
  live: 1 << 0,
  peer2peer: 1 << 1,
  tunnelled: 1 << 2,
  persistDest: 1 << 3,
  undefineSource: 1 << 4,
  paused: 1 << 5,
  nonSharedDisk: 1 << 6,
  nonSharedInc: 1 << 7,
  changeProtection: 1 << 8,
  unsafe: 1 << 9,
  offline: 1 << 10,
  compressed: 1 << 11,
  abortOnError: 1 << 12,
  autoConverge: 1 << 13,
  rdmaPinAll: 1 << 14,
  postcopy: 1 << 15,
  tls: 1 << 16,
  parallel: 1 << 17,
  nonSharedSynchronousWrites: 1 << 18,
  postcopyResume: 1 << 19,
  zerocopy: 1 << 20,
} as const;
/** virDomainDirtyRateCalcFlags by mode name (page-sampling is 0, the default). */
export const DIRTY_RATE_MODES = { 'page-sampling': 0, 'dirty-bitmap': 1 << 0, 'dirty-ring': 1 << 1 } as const;
export type DirtyRateMode = keyof typeof DIRTY_RATE_MODES;

/** Named flags (`{ live: true }`) or a raw bitmask. */
export type FlagsArg<T extends Record<string, number>> = number | Partial<Record<keyof T, boolean>>;

/** Turns named flags into libvirt's bitmask; unknown names -> INVALID_ARGUMENT naming them. */
export function flagBits<T extends Record<string, number>>(table: T, flags: FlagsArg<T> | undefined, what: string): number {
  if (flags === undefined) return 0;
  if (typeof flags === 'number') {
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `${what} flags must be an unsigned 32-bit integer, got ${flags}`, { flags });
    }
    return flags;
  }
  let bits = 0;
  for (const [name, on] of Object.entries(flags)) {
    const bit = table[name];
    if (bit === undefined) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `unknown ${what} flag '${name}' (known: ${Object.keys(table).join(', ')})`, { field: name });
    }
    if (on) bits |= bit;
  }
  return bits >>> 0;
}

/** `<domain type='...'>` of a domain XML (e.g. 'kvm', 'qemu' for TCG, 'test'), or null. */
export function domainTypeOf(xml: string): string | null {
  const m = /<domain\b[^>]*?\btype\s*=\s*(['"])([^'"]*)\1/.exec(xml);
  return m ? (m[2] as string) : null;
}

/**
 * Refuses dirty-rate modes that break or cannot work on this domain type, before any native
 * call: 'dirty-bitmap' crashes QEMU 7.2 under TCG (type 'qemu'; the domain ends shut off /
 * crashed, see shared/recipes/libvirt.md), and 'dirty-ring' needs KVM. Returns the mode's flag.
 */
export function checkDirtyRateMode(mode: string, domainType: string | null, seconds: number): number {
  const flag = (DIRTY_RATE_MODES as Record<string, number>)[mode];
  if (flag === undefined) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `unknown dirty-rate mode '${mode}' (known: ${Object.keys(DIRTY_RATE_MODES).join(', ')})`, { field: 'mode', mode });
  }
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 60) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `dirty-rate calc seconds must be an integer in 1..60, got ${seconds}`, { field: 'seconds' });
  }
  if (mode === 'dirty-bitmap' && domainType === 'qemu') {
    throw new VhError(
      ErrorCodes.INVALID_ARGUMENT,
      "dirty-rate mode 'dirty-bitmap' refused for a TCG domain (type 'qemu'): it crashes QEMU 7.2 under TCG; use 'page-sampling'",
      { field: 'mode', mode, domainType },
    );
  }
  if (mode === 'dirty-ring' && domainType !== 'kvm') {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `dirty-rate mode 'dirty-ring' needs a KVM domain, this one is type '${domainType ?? 'unknown'}'`, {
      field: 'mode',
      mode,
      domainType,
    });
  }
  return flag;
}

/** virDomainMemoryStatTags names by value (libvirt 9.0 has 13; newer tags decode as tag_<n>). */
export const MEMORY_STAT_TAGS = [
  'swap_in', 'swap_out', 'major_fault', 'minor_fault', 'unused', 'available', 'actual', 'rss', 'usable',
  'last_update', 'disk_caches', 'hugetlb_pgalloc', 'hugetlb_pgfail',
] as const;
export type MemoryStatName = (typeof MEMORY_STAT_TAGS)[number];
/** virDomainMemoryStats, by tag name; values are libvirt's unsigned long long (KiB for sizes). */
export type MemoryStats = Partial<Record<MemoryStatName, bigint>> & Record<string, bigint>;
/** virDomainJobType names by value. */
export const JOB_TYPES = ['none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled'] as const;

/** virDomainGetJobStats: the job type and libvirt's typed fields (e.g. 'time_elapsed', 'memory_remaining'). */
export interface JobStats {
  type: (typeof JOB_TYPES)[number] | 'unknown';
  typeCode: number;
  /** Fields as libvirt names them (VIR_DOMAIN_JOB_*), typed-params.ts value mapping. */
  fields: TypedParamRecord;
}

/** Entries requested from libvirt: room for tags newer than this table (libvirt caps at its NR). */
const MEMORY_STAT_SLOTS = 16;
const MEMORY_STAT_SIZE = 16; // struct { int tag; unsigned long long val; }
const failedInt = (r: number): boolean => r < 0;

/** One domain handle (virDomainPtr) owned by JS until free(). */
export class Domain {
  /** The domain's name (read once; a domain cannot be renamed while a handle is held here). */
  readonly name: string;
  /** The domain's UUID in its string form. */
  readonly uuid: string;
  private ptr: Handle | null;

  constructor(
    private readonly lane: Lane,
    ptr: Handle,
  ) {
    this.ptr = ptr;
    const fn = lane.lv.fn;
    // Both read fields of the local handle: no I/O, no lock held by other calls.
    this.name = fn.virDomainGetName(ptr) as string;
    const buf = Buffer.alloc(VIR_UUID_STRING_BUFLEN);
    fn.virDomainGetUUIDString(ptr, buf);
    this.uuid = buf.toString('latin1', 0, buf.indexOf(0) >= 0 ? buf.indexOf(0) : buf.length);
  }

  /** Boots a defined domain (virDomainCreate). */
  async create(): Promise<void> {
    await this.intCall('virDomainCreate');
  }

  /** Boots a defined domain with virDomainCreateFlags (paused, autodestroy, bypassCache...). */
  async createWithFlags(flags: FlagsArg<typeof CREATE_FLAGS> = 0): Promise<void> {
    await this.flagCall('virDomainCreateWithFlags', flagBits(CREATE_FLAGS, flags, 'create'));
  }

  /**
   * Stops the domain at once; a persistent domain stays defined. Without options this is
   * virDomainDestroy; with options virDomainDestroyFlags ({graceful: true}: SIGTERM only, no
   * SIGKILL, so the call fails rather than kill a process that ignores SIGTERM).
   */
  async destroy(opts?: FlagsArg<typeof DESTROY_FLAGS>): Promise<void> {
    if (opts === undefined) await this.intCall('virDomainDestroy');
    else await this.flagCall('virDomainDestroyFlags', flagBits(DESTROY_FLAGS, opts, 'destroy'));
  }

  /** Asks the guest to shut down (virDomainShutdownFlags); returns before the guest is off. */
  async shutdown(flags: FlagsArg<typeof SHUTDOWN_FLAGS> = 0): Promise<void> {
    await this.flagCall('virDomainShutdownFlags', flagBits(SHUTDOWN_FLAGS, flags, 'shutdown'));
  }

  /** Asks the guest to reboot (virDomainReboot). */
  async reboot(flags: FlagsArg<typeof REBOOT_FLAGS> = 0): Promise<void> {
    await this.flagCall('virDomainReboot', flagBits(REBOOT_FLAGS, flags, 'reboot'));
  }

  /** Hard reset, like the reset button: the guest OS gets no notice (virDomainReset). */
  async reset(): Promise<void> {
    await this.flagCall('virDomainReset', 0);
  }

  /**
   * This domain's statistics (virDomainListGetStats), decoded like Connection.getAllDomainStats;
   * `groups` empty = every group. Flags: the non-filtering ones ('nowait', 'backing',
   * 'enforce-stats'); null when libvirt returned no record.
   */
  async getStats(groups: readonly string[] = [], flags: readonly string[] = []): Promise<DomainStats | null> {
    return fetchDomainStats(this.lane, this.handle(), groups, flags, this.subject);
  }

  /**
   * Guest memory statistics by tag name (virDomainMemoryStats); a driver or guest reports only
   * some tags (the balloon ones need virtio-balloon in the guest), absent tags are absent keys.
   */
  async memoryStats(): Promise<MemoryStats> {
    const buf = Buffer.alloc(MEMORY_STAT_SLOTS * MEMORY_STAT_SIZE);
    const n = await this.lane.run<number>(
      'virDomainMemoryStats',
      this.lane.lv.fn.virDomainMemoryStats,
      [this.handle(), buf, MEMORY_STAT_SLOTS, 0],
      failedInt,
      this.subject,
    );
    const out: MemoryStats = {};
    for (let i = 0; i < Math.min(n, MEMORY_STAT_SLOTS); i++) {
      const tag = buf.readInt32LE(i * MEMORY_STAT_SIZE);
      out[MEMORY_STAT_TAGS[tag] ?? `tag_${tag}`] = buf.readBigUInt64LE(i * MEMORY_STAT_SIZE + 8);
    }
    return out;
  }

  /**
   * Starts a dirty-rate measurement over `seconds` (virDomainStartDirtyRateCalc); read the
   * result from getAllDomainStats(['dirtyrate']). Reads the live XML first and refuses modes
   * that crash or cannot work for the domain type (checkDirtyRateMode).
   */
  async startDirtyRateCalc(seconds: number, mode: DirtyRateMode = 'page-sampling'): Promise<void> {
    // Cheap argument checks first, so a bad call costs no round trip.
    checkDirtyRateMode(mode, mode === 'page-sampling' ? null : 'kvm', seconds);
    const flag = mode === 'page-sampling' ? 0 : checkDirtyRateMode(mode, domainTypeOf(await this.getXMLDesc()), seconds);
    await this.lane.run<number>(
      'virDomainStartDirtyRateCalc',
      this.lane.lv.fn.virDomainStartDirtyRateCalc,
      [this.handle(), seconds, flag],
      failedInt,
      this.subject,
    );
  }

  /**
   * Statistics of the domain's current job, e.g. a migration in progress (virDomainGetJobStats;
   * flags 1 = VIR_DOMAIN_JOB_STATS_COMPLETED for the last finished job). The typed-param array
   * libvirt allocates is decoded, then freed with virTypedParamsFree.
   */
  async getJobStats(flags = 0): Promise<JobStats> {
    const type = [0];
    const params: Handle[] = [null];
    const nparams = [0];
    const lv = this.lane.lv;
    await this.lane.run<number>('virDomainGetJobStats', lv.fn.virDomainGetJobStats, [this.handle(), type, params, nparams, flags], failedInt, this.subject);
    const ptr = params[0];
    const n = nparams[0] as number;
    let fields: TypedParamRecord;
    try {
      fields = typedParamsToRecord(decodeTypedParams(lv.koffi, ptr, n));
    } finally {
      if (ptr) await this.lane.run<void>('virTypedParamsFree', lv.fn.virTypedParamsFree, [ptr, n], () => false);
    }
    const code = type[0] as number;
    return { type: JOB_TYPES[code] ?? 'unknown', typeCode: code, fields };
  }

  /**
   * Migrates to `dconnuri` (the destination libvirt URI; null with no peer2peer means the
   * migrate_uri param is the hypervisor-level destination) with typed parameters
   * (virDomainMigrateToURI3). Parameters are validated before any native call: an unknown name
   * or a wrong value type is VhError(INVALID_ARGUMENT) naming the field.
   */
  async migrateToURI3(dconnuri: string | null, params: MigrationParams = {}, flags: FlagsArg<typeof MIGRATE_FLAGS> = 0): Promise<void> {
    const bits = flagBits(MIGRATE_FLAGS, flags, 'migrate');
    const encoded = encodeTypedParams(this.lane.lv.koffi, migrationTypedParams(params));
    const handle = this.handle();
    await this.lane.run<number>(
      'virDomainMigrateToURI3',
      this.lane.lv.fn.virDomainMigrateToURI3,
      [handle, dconnuri, encoded.buffer, encoded.count, bits],
      failedInt,
      this.subject,
    );
    // The array and its strings must outlive the native call: referenced until here.
    void encoded.keepAlive.length;
  }

  /** Pauses the vCPUs (virDomainSuspend). */
  async suspend(): Promise<void> {
    await this.intCall('virDomainSuspend');
  }

  /** Resumes paused vCPUs (virDomainResume). */
  async resume(): Promise<void> {
    await this.intCall('virDomainResume');
  }

  /**
   * Removes the persistent definition. Without flags this is virDomainUndefine; with them
   * virDomainUndefineFlags (managedSave, snapshotsMetadata, nvram, keepNvram,
   * checkpointsMetadata, tpm, keepTpm). The handle still needs free().
   */
  async undefine(flags?: FlagsArg<typeof UNDEFINE_FLAGS>): Promise<void> {
    if (flags === undefined) await this.intCall('virDomainUndefine');
    else await this.flagCall('virDomainUndefineFlags', flagBits(UNDEFINE_FLAGS, flags, 'undefine'));
  }

  /** State, memory, vCPUs and CPU time (virDomainGetInfo). */
  async getInfo(): Promise<DomainInfo> {
    const info = {} as RawDomainInfo;
    await this.lane.run<number>('virDomainGetInfo', this.lane.lv.fn.virDomainGetInfo, [this.handle(), info], failedInt, this.subject);
    return {
      state: stateName(info.state),
      stateCode: info.state,
      maxMem: Number(info.maxMem),
      memory: Number(info.memory),
      nrVirtCpu: info.nrVirtCpu,
      cpuTime: BigInt(info.cpuTime),
    };
  }

  /** State and the reason for it (virDomainGetState). */
  async getState(): Promise<DomainState> {
    const state = [0];
    const reason = [0];
    await this.lane.run<number>('virDomainGetState', this.lane.lv.fn.virDomainGetState, [this.handle(), state, reason, 0], failedInt, this.subject);
    const code = state[0] as number;
    const name = stateName(code);
    const r = reason[0] as number;
    const reasonName = REASONS[name]?.[r];
    return { state: name, stateCode: code, reason: r, ...(reasonName ? { reasonName } : {}) };
  }

  /** The domain XML (virDomainGetXMLDesc flags, default 0: the live definition). */
  async getXMLDesc(flags = 0): Promise<string> {
    return this.lane.run<string>('virDomainGetXMLDesc', this.lane.lv.fn.virDomainGetXMLDesc, [this.handle(), flags], (s) => s === null, this.subject);
  }

  /** Releases the handle (virDomainFree) after calls already queued on it; idempotent. */
  async free(): Promise<void> {
    const ptr = this.ptr;
    if (ptr === null) return;
    this.ptr = null;
    await this.lane.run<number>('virDomainFree', this.lane.lv.fn.virDomainFree, [ptr], failedInt, this.subject);
  }

  private intCall(api: 'virDomainCreate' | 'virDomainDestroy' | 'virDomainSuspend' | 'virDomainResume' | 'virDomainUndefine'): Promise<number> {
    return this.lane.run<number>(api, this.lane.lv.fn[api], [this.handle()], failedInt, this.subject);
  }

  private flagCall(
    api: 'virDomainCreateWithFlags' | 'virDomainDestroyFlags' | 'virDomainShutdownFlags' | 'virDomainReboot' | 'virDomainReset' | 'virDomainUndefineFlags',
    flags: number,
  ): Promise<number> {
    return this.lane.run<number>(api, this.lane.lv.fn[api], [this.handle(), flags], failedInt, this.subject);
  }

  private get subject(): string {
    return `domain '${this.name}'`;
  }

  private handle(): Handle {
    if (this.ptr === null) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `domain ${this.name}: handle already freed`);
    return this.ptr;
  }
}
