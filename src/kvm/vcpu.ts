/**
 * The typed vCPU handle. Each started vCPU runs KVM_RUN on its own native thread; exits arrive
 * here as typed events. IO reads and MMIO reads are answered by the handlers given to start()
 * (the native thread waits for the answer); ports claimed with claimPorts() are served natively
 * without a JS round trip.
 *
 * Register state (regs, sregs, fpu, msrs, lapic, mpState, events) is readable and writable only
 * while the thread is not inside KVM_RUN: before start(), while parked (pause()), or after stop().
 * Errors leave as VhError through toKvmError; ERR_BUSY (state access while running) and
 * ERR_NOT_WAITING map to INVALID_ARGUMENT.
 */
import { EventEmitter } from 'node:events';
import type {
  NativeFpu,
  NativeMsr,
  NativeRegs,
  NativeSregs,
  NativeVcpu,
  NativeVcpuEvents,
  NativeVcpuExit,
  NativeVcpuOptions,
  NativeVcpuState,
} from '../native/binding';
import { callNative } from './errors';

/** createVcpu() options: CPUID feature masks. */
export type VcpuOptions = NativeVcpuOptions;
/** General-purpose registers (BigInt). */
export type Regs = NativeRegs;
/** Segment, descriptor-table and control registers. */
export type Sregs = NativeSregs;
/** x87/SSE state. */
export type Fpu = NativeFpu;
/** One MSR {index, data}. */
export type Msr = NativeMsr;
/** Pending/injected events (exception, interrupt, NMI, SMI). */
export type VcpuEvents = NativeVcpuEvents;
/** Every event the vCPU thread reports (see NativeVcpuExit). */
export type VcpuExit = NativeVcpuExit;
/** Run state of the vCPU thread. */
export type VcpuState = NativeVcpuState;
/** A port IO exit. */
export type IoExit = Extract<VcpuExit, { reason: 'io' }>;
/** An MMIO exit. */
export type MmioExit = Extract<VcpuExit, { reason: 'mmio' }>;

/** A reply to an IO read or MMIO read; undefined reads as all-ones (0xff bytes). */
export type ReadReply = Uint8Array | undefined | void;

/** Handlers for start(); every one is optional. */
export interface VcpuHandlers {
  /** Port IO the native claims do not serve; for direction 'in' return size*count bytes. */
  io?(exit: IoExit): ReadReply | Promise<ReadReply>;
  /** MMIO to an unmapped guest-physical address; for direction 'read' return `length` bytes. */
  mmio?(exit: MmioExit): ReadReply | Promise<ReadReply>;
  /** Every event, after io/mmio handling (also 'parked' and 'stopped'). */
  exit?(exit: VcpuExit): void;
}

/** start() options. */
export interface VcpuStartOptions {
  /** What a guest HLT does after being reported: park the thread (default) or end it. */
  hlt?: 'park' | 'stop';
}

/**
 * A vCPU. Created by Vm.createVcpu(); closed with its Vm. Emits 'exit' (VcpuExit) for every
 * event and 'error' when a handler throws (the vCPU is then stopped; without an 'error'
 * listener the error is rethrown asynchronously).
 */
export class Vcpu extends EventEmitter {
  /** The KVM device, for error messages. */
  readonly devicePath: string;
  private readonly handle: NativeVcpu;
  private running = false;
  private pauseWaiters: Array<() => void> = [];
  private stopWaiters: Array<() => void> = [];

  private constructor(handle: NativeVcpu, devicePath: string) {
    super();
    this.handle = handle;
    this.devicePath = devicePath;
  }

  /** Wraps a native vCPU; only Vm.createVcpu() should call this. */
  static wrap(handle: NativeVcpu, devicePath: string): Vcpu {
    return new Vcpu(handle, devicePath);
  }

  /** The vCPU id given to createVcpu() (also its initial APIC id). */
  get id(): number {
    return this.handle.id;
  }

  /** 'idle' | 'running' | 'waiting' (for an IO/MMIO reply) | 'parked' | 'stopped' | 'closed'. */
  get state(): VcpuState {
    return this.handle.state;
  }

  /** Starts the KVM_RUN thread. Throws INVALID_ARGUMENT when it is already running. */
  start(handlers: VcpuHandlers = {}, options: VcpuStartOptions = {}): void {
    this.call(() => this.handle.start((e) => this.onExit(handlers, e), options));
    this.running = true;
  }

  /** Kicks the thread out of KVM_RUN and resolves once it is parked (or not running). */
  pause(): Promise<void> {
    if (this.call(() => this.handle.pause())) return Promise.resolve();
    return new Promise((resolve) => this.pauseWaiters.push(resolve));
  }

  /** Lets a parked thread re-enter the guest; false when it was not parked. */
  resume(): boolean {
    return this.call(() => this.handle.resume());
  }

  /** Ends the thread (joined natively) and resolves once its last event was delivered. */
  stop(): Promise<void> {
    if (this.handle.closed) {
      this.running = false;
      return Promise.resolve();
    }
    this.call(() => this.handle.stop());
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.stopWaiters.push(resolve));
  }

  /** Serves ports [first, first+count) natively: 'sink' counts OUT bytes, 'console' keeps them too. */
  claimPorts(first: number, count: number, kind: 'sink' | 'console' = 'sink', capacity?: number): void {
    this.call(() => this.handle.claimPorts(first, count, kind, capacity));
  }

  /** Drops the native claim that starts at `first`. */
  releasePorts(first: number): void {
    this.call(() => this.handle.releasePorts(first));
  }

  /** Bytes OUT-ed to a claim so far and the bytes a console claim kept (drain: take them). */
  readPorts(first: number, drain = false): { total: number; data: Buffer } {
    return this.call(() => this.handle.readPorts(first, drain));
  }

  /** General-purpose registers. */
  getRegs(): Regs {
    return this.call(() => this.handle.getRegs());
  }

  /** Sets registers; fields left out keep their value. */
  setRegs(regs: Partial<Regs>): void {
    this.call(() => this.handle.setRegs(regs));
  }

  /** Segment, descriptor-table and control registers. */
  getSregs(): Sregs {
    return this.call(() => this.handle.getSregs());
  }

  /** Sets special registers; fields left out keep their value. */
  setSregs(sregs: Partial<Sregs>): void {
    this.call(() => this.handle.setSregs(sregs));
  }

  /** x87/SSE state. */
  getFpu(): Fpu {
    return this.call(() => this.handle.getFpu());
  }

  /** Sets x87/SSE state; fields left out keep their value. */
  setFpu(fpu: Partial<Fpu>): void {
    this.call(() => this.handle.setFpu(fpu));
  }

  /** Reads MSRs; the result stops at the first one KVM cannot read. */
  getMsrs(indices: number[]): Msr[] {
    return this.call(() => this.handle.getMsrs(indices));
  }

  /** Writes MSRs in order; returns how many were written. */
  setMsrs(msrs: Msr[]): number {
    return this.call(() => this.handle.setMsrs(msrs));
  }

  /** The local APIC page (1 KiB; needs an in-kernel irqchip). */
  getLapic(): Buffer {
    return this.call(() => this.handle.getLapic());
  }

  /** Restores the local APIC page. */
  setLapic(regs: Uint8Array): void {
    this.call(() => this.handle.setLapic(regs));
  }

  /** KVM_MP_STATE_* number. */
  getMpState(): number {
    return this.call(() => this.handle.getMpState());
  }

  /** Sets the KVM_MP_STATE_* number. */
  setMpState(state: number): void {
    this.call(() => this.handle.setMpState(state));
  }

  /** Pending and injected events. */
  getVcpuEvents(): VcpuEvents {
    return this.call(() => this.handle.getVcpuEvents());
  }

  /** Restores pending and injected events (flags say which fields apply). */
  setVcpuEvents(events: Partial<VcpuEvents>): void {
    this.call(() => this.handle.setVcpuEvents(events));
  }

  /** Real mode at a physical entry below 1 MiB. */
  setupRealMode(entry: number): void {
    this.call(() => this.handle.setupRealMode(entry));
  }

  /** Flat 32-bit protected mode at entry. */
  setupProtectedMode(entry: number): void {
    this.call(() => this.handle.setupProtectedMode(entry));
  }

  /** 64-bit long mode at entry; writes identity page tables (6 pages) and a GDT into guest memory. */
  setupLongMode(entry: number | bigint, layout: { pageTableGpa: number | bigint; gdtGpa: number | bigint }): void {
    this.call(() => this.handle.setupLongMode(entry, layout));
  }

  /** Async iteration over exits from now on (ends after 'stopped'). */
  async *exits(): AsyncGenerator<VcpuExit> {
    const queue: VcpuExit[] = [];
    let wake: (() => void) | undefined;
    const listener = (e: VcpuExit): void => {
      queue.push(e);
      wake?.();
    };
    this.on('exit', listener);
    try {
      for (;;) {
        while (queue.length === 0) await new Promise<void>((r) => (wake = r));
        const e = queue.shift() as VcpuExit;
        yield e;
        if (e.reason === 'stopped') return;
      }
    } finally {
      this.off('exit', listener);
    }
  }

  private onExit(handlers: VcpuHandlers, e: VcpuExit): void {
    try {
      if (e.reason === 'io' && handlers.io) {
        this.reply(e.direction === 'in' ? e.size * e.count : -1, handlers.io(e));
      } else if (e.reason === 'mmio' && handlers.mmio) {
        this.reply(e.direction === 'read' ? e.length : -1, handlers.mmio(e));
      } else if (e.reason === 'io' && e.direction === 'in') {
        this.reply(e.size * e.count, undefined);
      } else if (e.reason === 'mmio' && e.direction === 'read') {
        this.reply(e.length, undefined);
      }
      handlers.exit?.(e);
    } catch (err) {
      this.fail(err);
    }
    this.emit('exit', e);
    if (e.reason === 'parked' || e.reason === 'stopped') {
      for (const w of this.pauseWaiters.splice(0)) w();
    }
    if (e.reason === 'stopped') {
      this.running = false;
      this.handle.stop(); // joins the (already ended) thread and frees its ThreadSafeFunction
      for (const w of this.stopWaiters.splice(0)) w();
    }
  }

  /** Completes a read of `length` bytes (length < 0: nothing to complete). */
  private reply(length: number, answer: ReadReply | Promise<ReadReply>): void {
    if (length < 0) return;
    const send = (data: ReadReply): void => {
      // stop() or close() may have ended the wait before this (queued) exit was delivered.
      if (this.handle.closed || this.handle.state !== 'waiting') return;
      this.handle.complete(data ?? Buffer.alloc(length, 0xff));
    };
    if (answer instanceof Promise) {
      answer.then(send).catch((err: unknown) => this.fail(err));
    } else {
      send(answer);
    }
  }

  private fail(err: unknown): void {
    if (!this.handle.closed) this.handle.stop();
    if (this.listenerCount('error') > 0) {
      this.emit('error', err);
    } else {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  private call<T>(fn: () => T): T {
    return callNative(fn, this.devicePath, `vcpu ${this.handle.id}`);
  }
}
