/**
 * The handler's end of virthandler.v1.Launcher/Connect (proto/virthandler/v1/launcher.proto).
 *
 * A stream must open with a well-formed Register within REGISTER_TIMEOUT_MS, for a VMI uid this
 * handler knows, with that VMI's token; anything else ends it (INVALID_ARGUMENT or
 * UNAUTHENTICATED) and changes nothing. After that the launcher is "linked": its heartbeats,
 * domain statuses and command results are checked and handed to the registry (the VMI
 * manager), and commands go down with an id and a deadline. What a launcher sends is checked by
 * src/launcher-protocol/validate.ts (the contract's one set of checks); this file maps a
 * violation to a gRPC status and keeps the streams. A second successful Register for the
 * same uid replaces the first link (the old stream is ended).
 */
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import { MalformedRequest, toGrpcStatus } from './errors';
import type { Logger } from '../log';
import { type CommandBody, type StatsReport, commandToWire } from '../launcher-protocol/messages';
import { ProtocolViolation, checkDomainStats, checkRegister, checkResult, checkStatus } from '../launcher-protocol/validate';
import type { LauncherChannel, LauncherRegistry } from '../vmi/control/launcher-port';

export const REGISTER_TIMEOUT_MS = 5_000;
export const HEARTBEAT_INTERVAL_MS = 1_000;

/** A contract violation as this transport answers it: a bad token is UNAUTHENTICATED, the rest INVALID_ARGUMENT. */
function violation(e: unknown): VhError {
  if (e instanceof VhError) return e;
  if (e instanceof ProtocolViolation) return new VhError(e.field === 'register.token' ? ErrorCodes.UNAUTHENTICATED : ErrorCodes.INVALID_ARGUMENT, e.message);
  return new VhError(ErrorCodes.INVALID_ARGUMENT, String(e));
}

type Duplex = grpc.ServerDuplexStream<unknown, unknown>;

/** One registered launcher stream. */
export class LauncherLink implements LauncherChannel {
  lastHeartbeatAt = Date.now();
  private seq = 0;
  private readonly pending = new Map<string, { resolve: (stats: StatsReport | null) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private ended = false;

  constructor(
    readonly uid: string,
    readonly pid: number,
    private readonly call: Duplex,
  ) {}

  get isOpen(): boolean {
    return !this.ended;
  }

  /** Sends a command; resolves on ok=true, rejects with the launcher's error or DEADLINE_EXCEEDED. */
  send(body: CommandBody, timeoutMs: number): Promise<void> {
    return this.request(body, timeoutMs).then(() => undefined);
  }

  /** Asks for the domain's statistics; resolves with the launcher's answer, checked (validate.ts checkDomainStats). */
  stats(timeoutMs: number): Promise<StatsReport> {
    return this.request({ getStats: {} }, timeoutMs).then((r) => {
      if (!r) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `launcher for ${this.uid} answered get_stats without stats`);
      return r;
    });
  }

  private request(body: CommandBody, timeoutMs: number): Promise<StatsReport | null> {
    if (this.ended) return Promise.reject(new VhError(ErrorCodes.FAILED_PRECONDITION, `launcher for ${this.uid} is not connected`));
    const id = `c${++this.seq}`;
    return new Promise<StatsReport | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VhError(ErrorCodes.DEADLINE_EXCEEDED, `launcher for ${this.uid} did not answer ${Object.keys(body)[0]} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.call.write({ command: commandToWire(id, body) });
    });
  }

  /**
   * A CommandResult arrived (its own fields checked). Unknown ids (late answers after a timeout)
   * are ignored. Stats are checked here, so a bad answer fails only the get_stats that asked.
   */
  result(r: { id: string; ok: boolean; error: string; stats: unknown }): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    let { ok, error } = r;
    let stats: StatsReport | null = null;
    if (ok && r.stats !== null) {
      try {
        stats = checkDomainStats(r.stats);
      } catch (e) {
        ok = false;
        error = `bad stats answer: ${(e as Error).message}`;
      }
    }
    if (ok) p.resolve(stats);
    else p.reject(new VhError(ErrorCodes.FAILED_PRECONDITION, `launcher: ${error || 'command failed'}`));
  }

  /** Ends the stream (optionally with an error status) and fails pending commands. */
  end(err?: VhError): void {
    if (this.ended) return;
    this.ended = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new VhError(ErrorCodes.FAILED_PRECONDITION, `launcher for ${this.uid} disconnected`));
    }
    this.pending.clear();
    try {
      if (err) this.call.emit('error', toGrpcStatus(err));
      else this.call.end();
    } catch {
      /* the stream may be gone already */
    }
  }
}

/** The Launcher service implementation for GrpcServer. */
export function launcherServiceImplementation(registry: LauncherRegistry, log: Logger): grpc.UntypedServiceImplementation {
  return {
    Connect: (call: Duplex): void => {
      let link: LauncherLink | null = null;
      let registering = false;
      const reject = (err: VhError): void => {
        log.warn({ err: err.message, code: err.code, uid: link?.uid }, 'launcher stream refused');
        clearTimeout(registerTimer);
        if (link) {
          registry.detached(link.uid, link, err.message);
          link.end(err);
        } else {
          try {
            call.emit('error', toGrpcStatus(err));
          } catch {
            /* gone */
          }
        }
      };
      const registerTimer = setTimeout(() => reject(new VhError(ErrorCodes.INVALID_ARGUMENT, `no Register within ${REGISTER_TIMEOUT_MS} ms`)), REGISTER_TIMEOUT_MS);
      registerTimer.unref();

      call.on('data', (msg: unknown) => {
        if (msg instanceof MalformedRequest) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed launcher message: ${msg.reason}`));
        const m = (msg ?? {}) as Record<string, unknown>;
        if (!link) {
          if (registering) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, 'message before Registered'));
          if (!m.register) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, 'the first message must be register'));
          let reg;
          try {
            reg = checkRegister(m.register);
          } catch (e) {
            return reject(violation(e));
          }
          const { vmiUid: uid, token, pid } = reg;
          registering = true;
          registry.authenticate(uid, token, pid).then(
            (session) => {
              clearTimeout(registerTimer);
              if (call.cancelled || call.destroyed) return;
              link = new LauncherLink(uid, pid, call);
              call.write({ registered: { sessionToken: session, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS } });
              registering = false;
              registry.attached(uid, link);
            },
            (e: unknown) => reject(e instanceof VhError ? e : new VhError(ErrorCodes.UNAUTHENTICATED, 'registration refused')),
          );
          return;
        }
        const l = link;
        try {
          if (m.heartbeat) {
            l.lastHeartbeatAt = Date.now();
          } else if (m.status) {
            l.lastHeartbeatAt = Date.now();
            registry.status(l.uid, l, checkStatus(m.status));
          } else if (m.result) {
            l.result(checkResult(m.result));
          } else if (m.register) {
            throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'register sent twice');
          } else {
            throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'empty launcher message');
          }
        } catch (e) {
          reject(violation(e));
        }
      });
      const gone = (why: string): void => {
        clearTimeout(registerTimer);
        const l = link;
        if (l && l.isOpen) {
          l.end();
          registry.detached(l.uid, l, why);
        }
      };
      call.on('end', () => gone('stream ended'));
      call.on('error', () => gone('stream error'));
      call.on('cancelled', () => gone('stream cancelled'));
      call.on('close', () => gone('stream closed'));
    },
  };
}
