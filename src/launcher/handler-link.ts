/**
 * The launcher's end of launcher.proto: one Connect stream to the handler's unix socket, kept
 * open for the launcher's lifetime.
 *
 * - Register first (the spawn token until a Registered arrived, the session token after: the
 *   spawn token is one-time), and nothing else until Registered; then heartbeats every
 *   heartbeat_interval_ms.
 * - Any end of the stream (handler restart, UNAUTHENTICATED, a protocol violation) is retried
 *   with jittered backoff capped at 4 s, forever: the VM keeps running while the handler is
 *   away, and only the handler (teardown) or a signal ends the launcher. The cap is low because
 *   a restarted handler gives a live launcher 30 s to reconnect before it calls the VMI Unknown,
 *   and a retry is one local connect. While waiting, the socket's directory is watched: the
 *   handler's socket appearing again triggers the retry at once, so re-adoption takes
 *   milliseconds, not the remaining backoff. Each distinct failure is logged once at warn,
 *   repeats at debug.
 * - Statuses produced while disconnected are dropped (the owner re-sends the current status on
 *   every Registered); command results are kept (bounded) and sent after the next Registered,
 *   since the command that produced them may have changed the domain (stats answers are
 *   dropped instead: the scrape that asked has given up).
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import type { LauncherLogger as Logger } from './log';
import { type Backoff, backoffDelay } from '../util/backoff';
import type { Command, CommandResult, DomainStatus, HandlerMessage, LauncherMessage } from '../launcher-protocol/messages';
import { type CallStatus, ConnectStream, STATUS, statusName } from './connect-stream';

/** Used when Registered carries no (or an absurd) interval. */
export const DEFAULT_HEARTBEAT_MS = 10_000;
/** A Register unanswered this long is treated as a dead stream. */
export const REGISTER_TIMEOUT_MS = 15_000;
/** How often a waiting link looks for a new handler socket. */
const SOCKET_POLL_MS = 250;
/** A handler that hangs (rather than exits) is noticed within ~40 s. */
const KEEPALIVE = { keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000 };

/** The socket file's identity (inode and change time), or null when there is none. */
function socketId(file: string): string | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.ctimeNs}`;
  } catch {
    return null;
  }
}

/** Reconnect backoff to the handler's local socket (see the header for why the cap is low). */
export const LINK_BACKOFF: Backoff = { initialMs: 250, maxMs: 4_000, stableMs: 10_000 };
/** Results kept while disconnected; older ones are dropped (and logged). */
const MAX_PENDING_RESULTS = 64;

export interface HandlerLinkOptions {
  socketPath: string;
  vmiUid: string;
  /** The one-time spawn token. */
  spawnToken: string;
  version: string;
  logger: Logger;
  backoff?: Partial<Backoff>;
  random?: () => number;
}

export interface HandlerLinkEvents {
  /** A Registered arrived; `reconnect` is false only for the first one. */
  registered: [{ reconnect: boolean; latencyMs: number }];
  command: [Command];
}

export interface HandlerLink {
  on<K extends keyof HandlerLinkEvents>(event: K, listener: (...args: HandlerLinkEvents[K]) => void): this;
  emit<K extends keyof HandlerLinkEvents>(event: K, ...args: HandlerLinkEvents[K]): boolean;
}

export class HandlerLink extends EventEmitter {
  private readonly backoff: Backoff;
  private sessionToken: string | null = null;
  private started = false;
  private stream: ConnectStream | null = null;
  private registered = false;
  private attempt = 0;
  private seq = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private registerTimer: NodeJS.Timeout | null = null;
  private stableTimer: NodeJS.Timeout | null = null;
  private lastLoggedError: string | null = null;
  private pendingResults: CommandResult[] = [];
  private stopped = false;
  private registrations = 0;
  /** Why we cancelled the current stream ourselves (reported instead of CANCELLED). */
  private cancelReason: string | null = null;
  private socketPoll: NodeJS.Timeout | null = null;
  /** The handler socket's identity when the current attempt started (see watchSocket). */
  private attemptSocketId: string | null = null;

  constructor(private readonly opts: HandlerLinkOptions) {
    super();
    this.backoff = { ...LINK_BACKOFF, ...opts.backoff };
  }

  /** Starts dialling (idempotent). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.connect();
  }

  /** Whether a Registered arrived on the current stream. */
  get isRegistered(): boolean {
    return this.registered;
  }

  /** Sends a status now, or drops it while disconnected (the owner re-sends on 'registered'). */
  sendStatus(status: DomainStatus): void {
    if (this.registered) this.write({ status });
  }

  /** Sends a result; resolves once it is handed to the transport (or queued while disconnected). */
  sendResult(result: CommandResult): Promise<void> {
    if (!this.registered) {
      this.queueResult(result);
      return Promise.resolve();
    }
    return this.write({ result });
  }

  /**
   * Ends the stream politely (half-close, then wait up to `graceMs` for the handler to close its
   * side) and stops reconnecting. Idempotent.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    const stream = this.stream;
    if (stream) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        stream.once('status', () => {
          clearTimeout(t);
          resolve();
        });
        stream.end();
      });
      stream.cancel();
    }
    this.stream = null;
  }

  private connect(): void {
    if (this.stopped) return;
    // A fresh connection per attempt (ConnectStream): nothing carries a stale connection's state
    // over to a handler that is back.
    this.attemptSocketId = socketId(this.opts.socketPath);
    const stream = new ConnectStream({ socketPath: this.opts.socketPath, ...KEEPALIVE });
    this.stream = stream;
    this.registered = false;
    const token = this.sessionToken ?? this.opts.spawnToken;
    const sentAt = Date.now();
    stream.on('message', (msg: HandlerMessage) => this.onMessage(stream, msg, sentAt));
    stream.on('status', (st: CallStatus) => this.onEnd(stream, st));
    this.registerTimer = setTimeout(() => {
      this.registerTimer = null;
      if (this.stream === stream && !this.registered) this.abandon(stream, `no Registered within ${REGISTER_TIMEOUT_MS} ms`);
    }, REGISTER_TIMEOUT_MS);
    stream.write({ register: { vmiUid: this.opts.vmiUid, token, pid: process.pid, version: this.opts.version } }, () => undefined);
  }

  private onMessage(stream: ConnectStream, msg: HandlerMessage, sentAt: number): void {
    if (stream !== this.stream) return;
    if (!this.registered) {
      if (!msg.registered) {
        this.abandon(stream, 'protocol violation: the first handler message was not Registered');
        return;
      }
      this.onRegistered(msg.registered, Date.now() - sentAt);
      return;
    }
    if (msg.command) this.emit('command', msg.command);
    else if (msg.registered) this.opts.logger.warn('second Registered on one stream; ignored');
    else this.opts.logger.warn('handler message with no known member (newer handler?); ignored');
  }

  private onRegistered(reg: { sessionToken: string; heartbeatIntervalMs: number }, latencyMs: number): void {
    if (this.registerTimer) clearTimeout(this.registerTimer);
    this.registerTimer = null;
    this.registered = true;
    this.unwatchSocket(); // only watched while waiting to reconnect
    if (reg.sessionToken) this.sessionToken = reg.sessionToken;
    else if (!this.sessionToken) this.opts.logger.warn('Registered carried no session token; reconnects will reuse the spawn token');
    const ms = reg.heartbeatIntervalMs;
    const interval = Number.isFinite(ms) && ms >= 100 && ms <= 3_600_000 ? ms : DEFAULT_HEARTBEAT_MS;
    if (interval !== ms) this.opts.logger.warn({ heartbeatIntervalMs: ms, using: interval }, 'unusable heartbeat interval from the handler');
    this.heartbeat = setInterval(() => void this.write({ heartbeat: { seq: ++this.seq } }), interval);
    // Only a stream that stays up resets the backoff: a handler that accepts and drops at once
    // must not pull us into a tight loop.
    this.stableTimer = setTimeout(() => {
      this.stableTimer = null;
      this.attempt = 0;
    }, this.backoff.stableMs);
    this.lastLoggedError = null;
    const reconnect = this.registrations++ > 0;
    this.opts.logger.info({ reconnect, latencyMs, heartbeatMs: interval }, 'registered with the handler');
    for (const result of this.pendingResults.splice(0)) void this.write({ result });
    this.emit('registered', { reconnect, latencyMs });
  }

  private onEnd(stream: ConnectStream, st: CallStatus): void {
    if (stream !== this.stream) return;
    this.stream = null;
    this.registered = false;
    this.clearTimers();
    if (this.stopped) return;
    const why = this.cancelReason ?? `stream ended: ${statusName(st.code)}${st.details ? `: ${st.details}` : ''}`;
    this.cancelReason = null;
    this.failure(why, st.code === STATUS.UNAUTHENTICATED);
    this.schedule();
  }

  /** Cancels a stream we gave up on; onEnd reports `why`. */
  private abandon(stream: ConnectStream, why: string): void {
    this.cancelReason = why;
    stream.cancel(why);
  }

  /** Logs a failure: warn for a new error text, debug for a repeat. */
  private failure(what: string, auth = false): void {
    const fields = { socket: this.opts.socketPath, attempt: this.attempt + 1, usingSessionToken: this.sessionToken !== null };
    if (what !== this.lastLoggedError) {
      this.lastLoggedError = what;
      this.opts.logger.warn({ ...fields, error: what }, auth ? 'handler refused registration; retrying with backoff (the handler may be restarting)' : 'handler link down; retrying with backoff');
    } else {
      this.opts.logger.debug({ ...fields, error: what }, 'handler link down again');
    }
  }

  private schedule(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = backoffDelay(this.attempt++, this.backoff, this.opts.random);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
    this.watchSocket();
  }

  /**
   * While a retry is pending, the handler's socket is looked at every 250 ms: a socket file
   * other than the one the last attempt found (a new inode: a restarted handler bound it) means
   * retry now. A stat of one path is cheap; inotify was tried first and missed the handler's
   * unlink+bind in some runs under load.
   */
  private watchSocket(): void {
    if (this.socketPoll || this.stopped) return;
    this.socketPoll = setInterval(() => {
      if (!this.retryTimer || this.stopped) return;
      const id = socketId(this.opts.socketPath);
      if (id === null || id === this.attemptSocketId) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.opts.logger.debug({ socket: this.opts.socketPath }, 'handler socket replaced; reconnecting now');
      this.connect();
    }, SOCKET_POLL_MS);
    this.socketPoll.unref();
  }

  private unwatchSocket(): void {
    if (this.socketPoll) clearInterval(this.socketPoll);
    this.socketPoll = null;
  }

  private write(msg: LauncherMessage): Promise<void> {
    const stream = this.stream;
    if (!stream) {
      if ('result' in msg) this.queueResult(msg.result);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      try {
        stream.write(msg, () => resolve());
      } catch (e) {
        this.opts.logger.warn({ err: e }, 'writing to the handler failed');
        if ('result' in msg) this.queueResult(msg.result);
        resolve();
      }
    });
  }

  private queueResult(result: CommandResult): void {
    // A stats answer is only worth something to the scrape that asked; that one has given up.
    if (result.stats) return;
    this.pendingResults.push(result);
    if (this.pendingResults.length > MAX_PENDING_RESULTS) {
      const dropped = this.pendingResults.shift();
      this.opts.logger.warn({ id: dropped?.id }, 'too many results while the handler is away; dropped the oldest');
    }
  }

  private clearTimers(): void {
    for (const t of [this.heartbeat, this.retryTimer, this.registerTimer, this.stableTimer]) if (t) clearTimeout(t);
    this.heartbeat = this.retryTimer = this.registerTimer = this.stableTimer = null;
    this.unwatchSocket();
  }
}
