/**
 * The launcher's gRPC client for the one method it calls, virthandler.v1.Launcher/Connect, over
 * node:http2 on the handler's unix socket: gRPC is an HTTP/2 POST to /<service>/<method> with
 * content-type application/grpc, each message framed as 1 flag byte (0: not compressed) + 4
 * bytes big-endian length + the protobuf bytes (codec.ts), and the call's outcome in the
 * grpc-status / grpc-message trailers (or in the response headers for a trailers-only answer).
 * The handler serves it with grpc-js; this client saves every launcher loading grpc-js and
 * protobufjs (see README, bench:scale).
 *
 * One ConnectStream is one call on its own HTTP/2 connection (a fresh one per attempt, as the
 * handler link wants). It reports exactly one 'status' at its end, whatever ended it: the
 * handler's trailers, a connection error (UNAVAILABLE), a malformed or oversized handler message
 * (INTERNAL / RESOURCE_EXHAUSTED; the call is then cancelled), a keepalive ping unanswered, or
 * cancel().
 */
import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { decodeHandlerMessage, encodeLauncherMessage } from '../launcher-protocol/codec';
import { MAX_MESSAGE_BYTES } from '../launcher-protocol/limits';
import type { HandlerMessage, LauncherMessage } from '../launcher-protocol/messages';

/** The gRPC status codes this client reports (grpc/grpc doc/statuscodes.md). */
export const STATUS = { OK: 0, CANCELLED: 1, UNKNOWN: 2, INTERNAL: 13, UNAVAILABLE: 14, RESOURCE_EXHAUSTED: 8, UNAUTHENTICATED: 16 } as const;
const NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** A status code's name (e.g. UNAUTHENTICATED), or the number when unknown. */
export function statusName(code: number): string {
  return NAMES[code] ?? String(code);
}

export interface CallStatus {
  code: number;
  details: string;
}

export interface ConnectStreamOptions {
  socketPath: string;
  /** Ping the handler this often (ms) and give up on it when a ping is unanswered for keepaliveTimeoutMs. */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

export interface ConnectStreamEvents {
  message: [HandlerMessage];
  /** The call is over (exactly once). */
  status: [CallStatus];
}

export interface ConnectStream {
  on<K extends keyof ConnectStreamEvents>(event: K, listener: (...args: ConnectStreamEvents[K]) => void): this;
  once<K extends keyof ConnectStreamEvents>(event: K, listener: (...args: ConnectStreamEvents[K]) => void): this;
  emit<K extends keyof ConnectStreamEvents>(event: K, ...args: ConnectStreamEvents[K]): boolean;
}

export const CONNECT_PATH = '/virthandler.v1.Launcher/Connect';

export class ConnectStream extends EventEmitter {
  private readonly session: http2.ClientHttp2Session;
  private readonly req: http2.ClientHttp2Stream;
  private pending: Buffer = Buffer.alloc(0);
  /** From the trailers, or from the headers of a trailers-only answer. */
  private reported: CallStatus | null = null;
  private done = false;
  private keepalive: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ConnectStreamOptions) {
    super();
    this.session = http2.connect('http://localhost', { createConnection: () => net.connect(opts.socketPath) });
    this.session.on('error', (e: Error) => this.finish({ code: STATUS.UNAVAILABLE, details: e.message }));
    this.session.on('close', () => this.finish({ code: STATUS.UNAVAILABLE, details: 'connection closed' }));
    this.req = this.session.request(
      { ':method': 'POST', ':path': CONNECT_PATH, 'content-type': 'application/grpc', te: 'trailers' },
      { endStream: false },
    );
    this.req.on('response', (headers) => {
      const http = Number(headers[':status']);
      if (http !== 200) this.reported = { code: STATUS.UNKNOWN, details: `HTTP status ${http}` };
      this.trailers(headers);
    });
    this.req.on('trailers', (t) => this.trailers(t));
    this.req.on('data', (chunk: Buffer) => this.onData(chunk));
    this.req.on('error', (e: Error) => this.finish({ code: STATUS.UNAVAILABLE, details: e.message }));
    // The handler's side ended (after its trailers): the call is over, even while ours is open.
    this.req.on('end', () => this.finish(this.reported ?? { code: STATUS.UNKNOWN, details: 'the handler ended the stream without a status' }));
    this.req.on('close', () => this.finish(this.reported ?? { code: STATUS.UNAVAILABLE, details: `stream closed without a status (HTTP/2 code ${this.req.rstCode ?? 0})` }));
    this.keepalive = setInterval(() => this.ping(), opts.keepaliveMs);
    this.keepalive.unref();
  }

  /** Sends one message; `cb` runs once it is handed to the connection (or the call is over). */
  write(msg: LauncherMessage, cb: () => void): void {
    if (this.done || this.req.writableEnded) return cb();
    const body = encodeLauncherMessage(msg);
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    this.req.write(frame, () => cb());
  }

  /** Half-closes: no more messages from us; the handler answers with its status. */
  end(): void {
    if (!this.done && !this.req.writableEnded) this.req.end();
  }

  /** Abandons the call: 'status' reports `details` as CANCELLED. */
  cancel(details = 'cancelled by the launcher'): void {
    this.finish({ code: STATUS.CANCELLED, details });
  }

  private trailers(h: http2.IncomingHttpHeaders): void {
    const raw = h['grpc-status'];
    if (raw === undefined) return;
    const code = Number(raw);
    let details = String(h['grpc-message'] ?? '');
    try {
      details = decodeURIComponent(details);
    } catch {
      /* keep it as sent */
    }
    this.reported = { code: Number.isInteger(code) ? code : STATUS.UNKNOWN, details };
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (!this.done && this.pending.length >= 5) {
      if (this.pending[0] !== 0) return this.finish({ code: STATUS.INTERNAL, details: 'the handler sent a compressed message (none was negotiated)' });
      const len = this.pending.readUInt32BE(1);
      if (len > MAX_MESSAGE_BYTES) return this.finish({ code: STATUS.RESOURCE_EXHAUSTED, details: `handler message of ${len} bytes exceeds ${MAX_MESSAGE_BYTES}` });
      if (this.pending.length < 5 + len) return;
      const body = this.pending.subarray(5, 5 + len);
      this.pending = this.pending.subarray(5 + len);
      let msg: HandlerMessage;
      try {
        msg = decodeHandlerMessage(body);
      } catch (e) {
        return this.finish({ code: STATUS.INTERNAL, details: `malformed handler message: ${(e as Error).message}` });
      }
      this.emit('message', msg);
    }
  }

  private ping(): void {
    if (this.done || this.pingTimer) return;
    this.pingTimer = setTimeout(() => this.finish({ code: STATUS.UNAVAILABLE, details: `keepalive ping unanswered for ${this.opts.keepaliveTimeoutMs} ms` }), this.opts.keepaliveTimeoutMs);
    this.pingTimer.unref();
    try {
      this.session.ping(() => {
        if (this.pingTimer) clearTimeout(this.pingTimer);
        this.pingTimer = null;
      });
    } catch {
      /* the session is closing: 'close' reports it */
    }
  }

  private finish(status: CallStatus): void {
    if (this.done) return;
    this.done = true;
    if (this.keepalive) clearInterval(this.keepalive);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.keepalive = this.pingTimer = null;
    if (!this.req.closed) this.req.close(status.code === STATUS.OK ? http2.constants.NGHTTP2_NO_ERROR : http2.constants.NGHTTP2_CANCEL);
    this.session.destroy();
    this.emit('status', status);
  }
}
