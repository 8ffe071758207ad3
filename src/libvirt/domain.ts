/**
 * A libvirt domain handle. Every call runs on the lane (connection handle) the domain was
 * obtained from, because libvirt reports a domain call's error on that connection. The caller
 * owns the handle and must `free()` it; nothing here blocks the JS thread.
 */
import { ErrorCodes, VhError } from '../errors';
import type { Handle, RawDomainInfo } from './ffi';
import type { Lane } from './lane';

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

  /** Stops the domain at once (virDomainDestroy); a persistent domain stays defined. */
  async destroy(): Promise<void> {
    await this.intCall('virDomainDestroy');
  }

  /** Pauses the vCPUs (virDomainSuspend). */
  async suspend(): Promise<void> {
    await this.intCall('virDomainSuspend');
  }

  /** Resumes paused vCPUs (virDomainResume). */
  async resume(): Promise<void> {
    await this.intCall('virDomainResume');
  }

  /** Removes the persistent definition (virDomainUndefine). The handle still needs free(). */
  async undefine(): Promise<void> {
    await this.intCall('virDomainUndefine');
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

  private get subject(): string {
    return `domain '${this.name}'`;
  }

  private handle(): Handle {
    if (this.ptr === null) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `domain ${this.name}: handle already freed`);
    return this.ptr;
  }
}
