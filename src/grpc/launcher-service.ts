/**
 * The handler's end of virthandler.v1.Launcher/Connect (proto/virthandler/v1/launcher.proto).
 *
 * A stream must open with a well-formed Register within REGISTER_TIMEOUT_MS, for a VMI uid this
 * handler knows, with that VMI's token; anything else ends it (INVALID_ARGUMENT or
 * UNAUTHENTICATED) and changes nothing. After that the launcher is "linked": its heartbeats,
 * domain statuses and command results are checked and handed to the registry (the VMI
 * manager), and commands go down with an id and a deadline. A second successful Register for the
 * same uid replaces the first link (the old stream is ended).
 */
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import { MalformedRequest, toGrpcStatus } from './errors';
import type { Logger } from '../log';
import { isUuid } from '../vmi/spec/ids';
import type { CommandBody, DomainStatus as DomainStatusMsg } from '../launcher-protocol/messages';
import type { LauncherChannel, LauncherRegistry } from '../vmi/control/launcher-port';

export const REGISTER_TIMEOUT_MS = 5_000;
export const HEARTBEAT_INTERVAL_MS = 1_000;
const MAX_FIELD = 64 * 1024;
const MAX_XML = 1024 * 1024;
/** A stats answer larger than this is refused (hundreds of disks and NICs fit well below). */
const MAX_STATS_JSON = 1024 * 1024;
/** libvirt state names the launcher may report ('' = no domain yet). */
const DOMAIN_STATES = new Set(['', 'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended', 'unknown']);

/** The contract's messages live in one module for both ends (src/launcher/messages.ts). */
export type { CommandBody, DomainStatus as DomainStatusMsg } from '../launcher-protocol/messages';

type Duplex = grpc.ServerDuplexStream<unknown, unknown>;

/** One registered launcher stream. */
export class LauncherLink implements LauncherChannel {
  lastHeartbeatAt = Date.now();
  private seq = 0;
  private readonly pending = new Map<string, { resolve: (statsJson: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
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

  /** Asks for the domain's statistics; resolves with the launcher's stats JSON (unvalidated). */
  stats(timeoutMs: number): Promise<string> {
    return this.request({ getStats: {} }, timeoutMs);
  }

  private request(body: CommandBody, timeoutMs: number): Promise<string> {
    if (this.ended) return Promise.reject(new VhError(ErrorCodes.FAILED_PRECONDITION, `launcher for ${this.uid} is not connected`));
    const id = `c${++this.seq}`;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VhError(ErrorCodes.DEADLINE_EXCEEDED, `launcher for ${this.uid} did not answer ${Object.keys(body)[0]} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.call.write({ command: { id, ...body } });
    });
  }

  /** A CommandResult arrived. Unknown ids (late answers after a timeout) are ignored. */
  result(id: string, ok: boolean, error: string, statsJson = ''): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (ok) p.resolve(statsJson);
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

/** Validates and copies a DomainStatus; throws INVALID_ARGUMENT naming the field. */
export function checkStatus(raw: unknown): DomainStatusMsg {
  const r = (raw ?? {}) as Record<string, unknown>;
  const str = (field: string, max: number): string => {
    const v = r[field] ?? '';
    if (typeof v !== 'string') throw new VhError(ErrorCodes.INVALID_ARGUMENT, `status.${field}: must be a string`);
    if (v.length > max) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `status.${field}: longer than ${max} characters`);
    return v;
  };
  const s: DomainStatusMsg = {
    state: str('state', 32),
    reason: str('reason', 64),
    domainUuid: str('domainUuid', 64),
    lastEvent: str('lastEvent', 128),
    error: str('error', MAX_FIELD),
    domainXml: str('domainXml', MAX_XML),
  };
  if (!DOMAIN_STATES.has(s.state)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `status.state: unknown domain state ${JSON.stringify(s.state.slice(0, 32))}`);
  return s;
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
          const reg = m.register as Record<string, unknown> | undefined;
          if (!reg) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, 'the first message must be register'));
          const uid = reg.vmiUid;
          const token = reg.token;
          const pid = reg.pid;
          if (typeof uid !== 'string' || !isUuid(uid)) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, 'register.vmi_uid: must be a lower-case UUID'));
          if (typeof token !== 'string' || token.length === 0 || token.length > 256) return reject(new VhError(ErrorCodes.UNAUTHENTICATED, 'register.token: missing or malformed'));
          if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return reject(new VhError(ErrorCodes.INVALID_ARGUMENT, 'register.pid: must be a positive integer'));
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
            const r = m.result as Record<string, unknown>;
            if (typeof r.id !== 'string' || typeof r.ok !== 'boolean' || typeof (r.error ?? '') !== 'string') throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'result: id, ok and error are required');
            const statsJson = r.statsJson ?? '';
            // An unusable stats answer fails that one command; the link itself stays.
            if (typeof statsJson !== 'string' || statsJson.length > MAX_STATS_JSON) l.result(r.id, false, `result.stats_json: not a string of at most ${MAX_STATS_JSON} characters`);
            else l.result(r.id, r.ok, String(r.error ?? '').slice(0, MAX_FIELD), statsJson);
          } else if (m.register) {
            throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'register sent twice');
          } else {
            throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'empty launcher message');
          }
        } catch (e) {
          reject(e instanceof VhError ? e : new VhError(ErrorCodes.INVALID_ARGUMENT, String(e)));
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
