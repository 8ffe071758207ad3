/**
 * One libvirt connection handle plus the rule that makes error capture correct: calls on a lane
 * run one at a time, so after a failed call the lane's connection error (virConnCopyLastError)
 * is that call's error and nobody else's.
 *
 * Why not virGetLastError: libvirt keeps the last error in thread-local storage, koffi runs an
 * `.async` call on a pool thread, and koffi cannot run a second C function in the same worker
 * job; by the time JS sees the result, the error sits in a thread JS cannot address. libvirt
 * also copies every dispatched error into the connection object (virDispatchError ->
 * conn->err), and that copy is race-free as long as only one call per connection is in flight.
 * Concurrency therefore comes from several lanes (connections) per Connection, not from
 * several calls per connection handle.
 *
 * The two synchronous calls on the JS thread (virConnResetLastError, virConnCopyLastError)
 * only take the connection object's mutex and copy a struct; they do no I/O.
 */
import type { ForeignFn, Handle, LibvirtBinding } from './ffi';
import { type LibvirtError, libvirtErrorFrom, unknownLibvirtError } from './errors';
import type { CallQueue } from './queue';

/** A serial slot on one virConnectPtr. */
export class Lane {
  /** Calls queued or running on this lane (used to pick the least busy lane). */
  pending = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly errBuf: Buffer;

  constructor(
    readonly lv: LibvirtBinding,
    readonly queue: CallQueue,
    /** The virConnectPtr; owned by the Connection that opened it. */
    readonly conn: Handle,
  ) {
    this.errBuf = Buffer.alloc(lv.errorSize);
  }

  /**
   * Runs `fn.async(...args)` after every earlier call on this lane; rejects with the call's own
   * LibvirtError when `failed(result)`. `subject` names what the call is about in the error.
   */
  run<T>(api: string, fn: ForeignFn, args: unknown[], failed: (r: T) => boolean, subject?: string): Promise<T> {
    return this.serial(async () => {
      this.lv.fn.virConnResetLastError(this.conn);
      const res = await this.queue.call<T>(fn, ...args);
      if (failed(res)) throw this.takeError(api, subject);
      return res;
    });
  }

  /** Runs `job` after every earlier call on this lane (for multi-step sequences). */
  serial<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    const p = this.tail.then(job);
    this.tail = p.catch(() => undefined);
    return p.finally(() => this.pending--);
  }

  /** Resolves when every call queued so far on this lane has settled. */
  drain(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  private takeError(api: string, subject: string | undefined): LibvirtError {
    const rc = this.lv.fn.virConnCopyLastError(this.conn, this.errBuf) as number;
    const raw = this.lv.decodeError(this.errBuf);
    // virResetError frees the strings libvirt strdup'ed into our buffer.
    this.lv.fn.virResetError(this.errBuf);
    return rc <= 0 ? unknownLibvirtError(api, subject) : libvirtErrorFrom(api, raw, subject);
  }
}
