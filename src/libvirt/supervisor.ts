/**
 * Keeps one events-enabled Connection to a libvirt URI alive for the daemon's lifetime.
 *
 * - connect in the background; never throws at the caller: state says what is going on;
 * - keepalive + close callback (Connection) detect a dead daemon; then the old connection is
 *   closed, its events are gone with it, and a new Connection is opened, which registers every
 *   event callback again, so listeners on the supervisor never notice the swap;
 * - retries back off exponentially with jitter and a cap; the attempt counter resets only after
 *   a connection stayed up for `stableMs`, so a daemon that accepts and then drops connections
 *   does not pull us into a tight loop (KubeVirt's known retry storms);
 * - every failure is logged once per distinct error (then at debug), with libvirt's facts.
 */
import { EventEmitter } from 'node:events';
import { ErrorCodes, isVhError } from '../errors';
import type { Logger } from '../log';
import { type Backoff, backoffDelay } from '../util/backoff';
import { type Connection, type ConnectionEvents, type KeepAlive, type OpenOptions } from './connection';
import { DOMAIN_EVENT_NAMES, type CloseReason } from './events';

/** Where the supervisor is. */
export const LIBVIRT_STATES = ['connecting', 'connected', 'reconnecting', 'unavailable', 'stopped'] as const;
export type LibvirtState = (typeof LIBVIRT_STATES)[number];

/** Reconnect timing (see backoffDelay in ../util/backoff). */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, maxMs: 30_000, stableMs: 10_000 };

/** A snapshot for /readyz, /v1/node and metrics. */
export interface LibvirtStatus {
  uri: string;
  state: LibvirtState;
  /** ISO time of the last state change. */
  since: string;
  /** Successful connects so far (the first one included). */
  connects: number;
  /** Connections lost after being established. */
  disconnects: number;
  /** Failed attempts since the last stable connection. */
  failedAttempts: number;
  /** The last error, operator-readable; null once connected. */
  lastError: string | null;
  /** When the next attempt runs (ISO), while waiting. */
  nextAttemptAt: string | null;
}

/** What the supervisor needs of a connection. */
export interface SupervisedConnection extends EventEmitter {
  close(): Promise<void>;
}

/** How the supervisor opens connections of type C (Connection.open; a fake in unit tests). */
export type Opener<C extends SupervisedConnection = Connection> = (uri: string, opts: OpenOptions) => Promise<C>;

/**
 * Options of a supervisor whose connections are of type C: a real Connection by default, or
 * whatever a given `open` returns (a fake in unit tests). `open` may be left out only when a
 * Connection is a C, since the default opener returns Connections.
 */
export type SupervisorOptions<C extends SupervisedConnection = Connection> = {
  uri: string;
  logger: Logger;
  lanes?: number;
  keepAlive?: KeepAlive | null;
  backoff?: Partial<Backoff>;
  /** Defaults to Connection.open (loaded lazily so a daemon without libvirt never loads koffi). */
  open?: Opener<C>;
  /** Runs after every (re)connect, before state becomes connected (e.g. read capabilities). Errors are logged, not fatal. */
  onConnected?: (conn: C) => Promise<void>;
  random?: () => number;
} & ([Connection] extends [C] ? unknown : { open: Opener<C> });

/** Events of the supervisor: the domain events of whichever connection is current, plus state. */
export type SupervisorEvents = Omit<ConnectionEvents, 'closed'> & {
  state: [LibvirtState, LibvirtStatus];
  /** The current connection was lost (before reconnecting). */
  disconnected: [CloseReason | 'error'];
};

export interface LibvirtSupervisor<C extends SupervisedConnection = Connection> {
  on<K extends keyof SupervisorEvents>(event: K, listener: (...args: SupervisorEvents[K]) => void): this;
  once<K extends keyof SupervisorEvents>(event: K, listener: (...args: SupervisorEvents[K]) => void): this;
  off<K extends keyof SupervisorEvents>(event: K, listener: (...args: SupervisorEvents[K]) => void): this;
  emit<K extends keyof SupervisorEvents>(event: K, ...args: SupervisorEvents[K]): boolean;
}

const FORWARDED = [...DOMAIN_EVENT_NAMES, 'event'] as const;

/**
 * The supervisor of connections of type C: `Connection` in the daemon and the launcher, so
 * `connection` and `whenConnected()` hand out a typed Connection; a fake in unit tests.
 */
export class LibvirtSupervisor<C extends SupervisedConnection = Connection> extends EventEmitter {
  private current: C | null = null;
  private st: LibvirtState = 'connecting';
  private sinceMs = Date.now();
  private connects = 0;
  private disconnects = 0;
  private attempt = 0;
  private lastError: string | null = null;
  private lastLoggedError: string | null = null;
  private nextAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stableTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private waiters: Array<{ resolve: (c: C) => void; reject: (e: Error) => void }> = [];
  private readonly backoff: Backoff;
  private readonly random: () => number;

  constructor(private readonly opts: SupervisorOptions<C>) {
    super();
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.random = opts.random ?? Math.random;
  }

  /** Starts connecting in the background (idempotent). */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.attemptConnect();
  }

  get state(): LibvirtState {
    return this.st;
  }

  /** The current connection, or null while not connected. */
  get connection(): C | null {
    return this.st === 'connected' ? this.current : null;
  }

  status(): LibvirtStatus {
    return {
      uri: this.opts.uri,
      state: this.st,
      since: new Date(this.sinceMs).toISOString(),
      connects: this.connects,
      disconnects: this.disconnects,
      failedAttempts: this.attempt,
      lastError: this.lastError,
      nextAttemptAt: this.nextAt === null ? null : new Date(this.nextAt).toISOString(),
    };
  }

  /** Resolves with the connection once connected (at once if it is); rejects after `timeoutMs` or on stop(). */
  whenConnected(timeoutMs: number): Promise<C> {
    const c = this.connection;
    if (c) return Promise.resolve(c);
    if (this.stopped) return Promise.reject(new Error('libvirt supervisor stopped'));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (conn: C) => {
          clearTimeout(t);
          resolve(conn);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`libvirt ${this.opts.uri} not connected within ${timeoutMs} ms (${this.st}${this.lastError ? `: ${this.lastError}` : ''})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Stops retrying and closes the connection (idempotent). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.timer = this.stableTimer = null;
    this.nextAt = null;
    for (const w of this.waiters.splice(0)) w.reject(new Error('libvirt supervisor stopped'));
    await this.running?.catch(() => undefined);
    const c = this.current;
    this.current = null;
    this.setState('stopped');
    if (c) await this.dispose(c);
  }

  private async attemptConnect(): Promise<void> {
    if (this.stopped) return;
    this.nextAt = null;
    let conn: C;
    try {
      // Without `open`, SupervisorOptions<C> guarantees a Connection is a C.
      const open = this.opts.open ?? (defaultOpener() as unknown as Opener<C>);
      conn = await open(this.opts.uri, { lanes: this.opts.lanes, events: true, keepAlive: this.opts.keepAlive });
    } catch (e) {
      return this.failed(e);
    }
    if (this.stopped) {
      await this.dispose(conn);
      return;
    }
    // Listen for loss first: a close during onConnected must still be seen.
    let lost = false;
    conn.once('closed', (reason: CloseReason) => {
      lost = true;
      this.lost(conn, reason);
    });
    for (const name of FORWARDED) conn.on(name, (ev: unknown) => this.emit(name, ev as never));
    this.current = conn;
    if (this.opts.onConnected) {
      try {
        await this.opts.onConnected(conn);
      } catch (e) {
        this.opts.logger.warn({ err: e, uri: this.opts.uri }, 'libvirt post-connect step failed (continuing)');
      }
    }
    if (lost || this.stopped) return;
    this.connects++;
    this.lastError = null;
    this.lastLoggedError = null;
    const wasReconnect = this.connects > 1;
    this.opts.logger.info({ uri: this.opts.uri, attempts: this.attempt + 1, reconnect: wasReconnect }, 'libvirt connected');
    this.stableTimer = setTimeout(() => {
      this.stableTimer = null;
      this.attempt = 0;
    }, this.backoff.stableMs);
    this.stableTimer.unref();
    this.setState('connected');
    for (const w of this.waiters.splice(0)) w.resolve(conn);
  }

  private lost(conn: C, reason: CloseReason | 'error'): void {
    if (this.current !== conn || this.stopped) return;
    this.current = null;
    this.disconnects++;
    if (this.stableTimer) {
      clearTimeout(this.stableTimer);
      this.stableTimer = null;
    }
    this.lastError = `connection lost (${reason})`;
    this.opts.logger.warn({ uri: this.opts.uri, reason }, 'libvirt connection lost; reconnecting');
    this.emit('disconnected', reason);
    this.setState('reconnecting');
    void this.dispose(conn);
    this.schedule();
  }

  private failed(e: unknown): void {
    if (this.stopped) return;
    const message = (e as Error)?.message ?? String(e);
    this.lastError = message;
    const unavailable = isVhError(e, ErrorCodes.LIBVIRT_UNAVAILABLE);
    // One warning per distinct error, then debug: a daemon down for an hour logs one line.
    if (message !== this.lastLoggedError) {
      this.lastLoggedError = message;
      this.opts.logger.warn({ uri: this.opts.uri, err: e, attempt: this.attempt + 1 }, 'libvirt connect failed; retrying with backoff');
    } else {
      this.opts.logger.debug({ uri: this.opts.uri, attempt: this.attempt + 1 }, 'libvirt connect failed again');
    }
    this.setState(unavailable ? 'unavailable' : this.connects > 0 ? 'reconnecting' : 'connecting');
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt++;
    this.nextAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.attemptConnect();
    }, delay);
    // A retry timer alone must not keep a stopping process alive.
    this.timer.unref();
    this.emit('state', this.st, this.status());
  }

  private async dispose(conn: C): Promise<void> {
    conn.removeAllListeners();
    // A dead connection's deregistration fails (the peer is gone); the handles are freed anyway.
    await conn.close().catch((e: unknown) => this.opts.logger.debug({ err: e }, 'closing the old libvirt connection reported an error'));
  }

  private setState(s: LibvirtState): void {
    if (s === this.st) return;
    this.st = s;
    this.sinceMs = Date.now();
    this.emit('state', s, this.status());
  }
}

function defaultOpener(): Opener<Connection> {
  // Required here, not imported at the top: loading connection.ts loads nothing native, but
  // keeping the supervisor free of it lets unit tests use a fake opener without libvirt.
  const { Connection } = require('./connection') as typeof import('./connection');
  return (uri, opts) => Connection.open(uri, opts);
}
