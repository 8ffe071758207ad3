/**
 * The launcher's gRPC client for the one method it calls, virthandler.v1.Launcher/Connect, as a
 * small HTTP/2 client of its own on a plain unix socket (node:net). gRPC is an HTTP/2 POST to
 * /<service>/<method> with content-type application/grpc; each message is framed as 1 flag byte
 * (0: not compressed) + 4 bytes big-endian length + the protobuf bytes (codec.ts); the call's
 * outcome is in the grpc-status / grpc-message trailers (or in the response headers of a
 * trailers-only answer). The handler serves it with grpc-js.
 *
 * Why not node:http2: loading it pulls http, tls and crypto into the process, about 14 ms of CPU
 * and a few MB per launcher (bench:scale), for a client that needs one stream. What this speaks
 * of HTTP/2 (RFC 9113): the preface and SETTINGS (push off, a large receive window), one
 * request on stream 1 (HPACK: hpack.ts), DATA in frames of at most the peer's MAX_FRAME_SIZE
 * within its flow-control windows (sending waits for WINDOW_UPDATE), WINDOW_UPDATE for what it
 * receives, SETTINGS/PING acknowledgements, RST_STREAM and GOAWAY, padding and CONTINUATION.
 *
 * One ConnectStream is one call on its own connection (a fresh one per attempt, as the handler
 * link wants). It reports exactly one 'status' at its end, whatever ended it: the handler's
 * trailers, a reset, a connection error or close (UNAVAILABLE), a malformed or oversized handler
 * message or an HTTP/2 protocol error (INTERNAL / RESOURCE_EXHAUSTED), a keepalive ping
 * unanswered (UNAVAILABLE), or cancel() (CANCELLED).
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { decodeHandlerMessage, encodeLauncherMessage } from '../launcher-protocol/codec';
import { MAX_MESSAGE_BYTES } from '../launcher-protocol/limits';
import type { HandlerMessage, LauncherMessage } from '../launcher-protocol/messages';
import { HpackDecoder, HpackError, encodeHeaders } from './hpack';

/** The gRPC status codes this client reports (grpc/grpc doc/statuscodes.md). */
export const STATUS = { OK: 0, CANCELLED: 1, UNKNOWN: 2, RESOURCE_EXHAUSTED: 8, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;
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

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
const SETTING = { ENABLE_PUSH: 2, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5 } as const;
const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11 } as const;
/** The one stream of the connection. */
const SID = 1;
/** The frame size every HTTP/2 peer accepts (we announce no other, so the handler sends no larger). */
const DEFAULT_FRAME = 16_384;
const DEFAULT_WINDOW = 65_535;
/** What we let the handler send before it must wait for our WINDOW_UPDATE (stream and connection). */
const RECEIVE_WINDOW = 1 << 30;

/** gRPC's mapping of HTTP/2 RST_STREAM codes to statuses (grpc/grpc doc/PROTOCOL-HTTP2.md). */
function resetStatus(code: number): CallStatus {
  const details = `the handler reset the stream (HTTP/2 error ${code})`;
  if (code === ERROR.CANCEL) return { code: STATUS.CANCELLED, details };
  if (code === ERROR.REFUSED_STREAM) return { code: STATUS.UNAVAILABLE, details };
  if (code === ERROR.ENHANCE_YOUR_CALM) return { code: STATUS.RESOURCE_EXHAUSTED, details };
  return { code: STATUS.INTERNAL, details };
}

export class ConnectStream extends EventEmitter {
  private readonly socket: net.Socket;
  private readonly hpack = new HpackDecoder();
  private inbuf: Buffer = Buffer.alloc(0);
  /** gRPC bytes received and not yet a whole message. */
  private pending: Buffer = Buffer.alloc(0);
  /** A HEADERS block waiting for its CONTINUATION frames, and whether it ends the stream. */
  private headerParts: Buffer[] | null = null;
  private headerEndsStream = false;
  private sawResponseHeaders = false;
  /** From the trailers, or from the headers of a trailers-only answer. */
  private reported: CallStatus | null = null;
  private done = false;
  private localEnded = false;
  // Flow control: what we may still send, and what we received since our last WINDOW_UPDATE.
  private peerFrame = DEFAULT_FRAME;
  private peerInitialWindow = DEFAULT_WINDOW;
  private connWindow = DEFAULT_WINDOW;
  private streamWindow = DEFAULT_WINDOW;
  private receivedConn = 0;
  private receivedStream = 0;
  private readonly queue: Array<{ data: Buffer; end: boolean; cb: (() => void) | null }> = [];
  private keepalive: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ConnectStreamOptions) {
    super();
    this.socket = net.connect(opts.socketPath);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (e: Error) => this.finish({ code: STATUS.UNAVAILABLE, details: e.message }));
    this.socket.on('close', () => this.finish(this.reported ?? { code: STATUS.UNAVAILABLE, details: 'connection closed' }));
    // Writes made before the connection is up are queued by the socket; corked, the opening
    // frames and the first message leave in one write.
    this.socket.cork();
    process.nextTick(() => this.socket.uncork());
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTING.ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTING.INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(RECEIVE_WINDOW, 8);
    this.socket.write(PREFACE);
    this.frame(FRAME.SETTINGS, 0, 0, settings);
    this.windowUpdate(0, RECEIVE_WINDOW - DEFAULT_WINDOW);
    const headers = encodeHeaders([
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', CONNECT_PATH],
      [':authority', 'localhost'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
    ]);
    this.frame(FRAME.HEADERS, FLAG.END_HEADERS, SID, headers);
    this.keepalive = setInterval(() => this.ping(), opts.keepaliveMs);
    this.keepalive.unref();
  }

  /** Sends one message; `cb` runs once it is handed to the connection (or the call is over). */
  write(msg: LauncherMessage, cb: () => void): void {
    if (this.done || this.localEnded) return cb();
    const body = encodeLauncherMessage(msg);
    const data = Buffer.allocUnsafe(5 + body.length);
    data[0] = 0;
    data.writeUInt32BE(body.length, 1);
    body.copy(data, 5);
    this.queue.push({ data, end: false, cb });
    this.flush();
  }

  /** Half-closes: no more messages from us; the handler answers with its status. */
  end(): void {
    if (this.done || this.localEnded) return;
    this.localEnded = true;
    this.queue.push({ data: Buffer.alloc(0), end: true, cb: null });
    this.flush();
  }

  /** Abandons the call: 'status' reports `details` as CANCELLED. */
  cancel(details = 'cancelled by the launcher'): void {
    this.finish({ code: STATUS.CANCELLED, details });
  }

  // ------------------------------------------------------------------------------------------
  // sending

  private frame(type: number, flags: number, sid: number, payload: Buffer, cb?: () => void): void {
    const head = Buffer.allocUnsafe(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(sid, 5);
    this.socket.write(payload.length ? Buffer.concat([head, payload]) : head, cb ? () => cb() : undefined);
  }

  private windowUpdate(sid: number, increment: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(increment, 0);
    this.frame(FRAME.WINDOW_UPDATE, 0, sid, b);
  }

  /** Sends queued data as far as the peer's windows allow; the rest waits for WINDOW_UPDATE. */
  private flush(): void {
    while (!this.done && this.queue.length > 0) {
      const item = this.queue[0] as (typeof this.queue)[number];
      if (item.data.length === 0) {
        this.queue.shift();
        if (item.end) this.frame(FRAME.DATA, FLAG.END_STREAM, SID, item.data);
        item.cb?.();
        continue;
      }
      const n = Math.min(item.data.length, this.peerFrame, this.connWindow, this.streamWindow);
      if (n <= 0) return;
      const chunk = item.data.subarray(0, n);
      item.data = item.data.subarray(n);
      this.connWindow -= n;
      this.streamWindow -= n;
      const last = item.data.length === 0;
      if (last) this.queue.shift();
      this.frame(FRAME.DATA, 0, SID, chunk, last && item.cb ? item.cb : undefined);
    }
  }

  private ping(): void {
    if (this.done || this.pingTimer) return;
    this.pingTimer = setTimeout(() => this.finish({ code: STATUS.UNAVAILABLE, details: `keepalive ping unanswered for ${this.opts.keepaliveTimeoutMs} ms` }), this.opts.keepaliveTimeoutMs);
    this.pingTimer.unref();
    this.frame(FRAME.PING, 0, 0, Buffer.alloc(8));
  }

  // ------------------------------------------------------------------------------------------
  // receiving

  private onData(chunk: Buffer): void {
    this.inbuf = this.inbuf.length === 0 ? chunk : Buffer.concat([this.inbuf, chunk]);
    while (!this.done && this.inbuf.length >= 9) {
      const len = this.inbuf.readUIntBE(0, 3);
      if (len > DEFAULT_FRAME) return this.protocolError(`a frame of ${len} bytes (the limit is ${DEFAULT_FRAME})`);
      if (this.inbuf.length < 9 + len) return;
      const type = this.inbuf[3] as number;
      const flags = this.inbuf[4] as number;
      const sid = this.inbuf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.inbuf.subarray(9, 9 + len);
      this.inbuf = this.inbuf.subarray(9 + len);
      this.onFrame(type, flags, sid, payload);
    }
  }

  private onFrame(type: number, flags: number, sid: number, p: Buffer): void {
    if (this.headerParts && type !== FRAME.CONTINUATION) return this.protocolError('a header block was interrupted');
    switch (type) {
      case FRAME.DATA: {
        if (sid !== SID) return this.protocolError(`DATA on stream ${sid}`);
        this.received(p.length);
        const body = this.unpad(p, flags, 0);
        if (body === null) return;
        this.onGrpcBytes(body);
        if (flags & FLAG.END_STREAM) this.remoteEnd();
        return;
      }
      case FRAME.HEADERS: {
        if (sid !== SID) return this.protocolError(`HEADERS on stream ${sid}`);
        const block = this.unpad(p, flags, flags & FLAG.PRIORITY ? 5 : 0);
        if (block === null) return;
        this.headerEndsStream = (flags & FLAG.END_STREAM) !== 0;
        this.headerParts = [block];
        if (flags & FLAG.END_HEADERS) this.headerBlock();
        return;
      }
      case FRAME.CONTINUATION:
        if (!this.headerParts || sid !== SID) return this.protocolError('an unexpected CONTINUATION');
        this.headerParts.push(p);
        if (flags & FLAG.END_HEADERS) this.headerBlock();
        return;
      case FRAME.RST_STREAM:
        if (sid === SID && p.length === 4) this.finish(resetStatus(p.readUInt32BE(0)));
        return;
      case FRAME.SETTINGS:
        if (flags & FLAG.ACK) return;
        if (p.length % 6 !== 0) return this.protocolError('a malformed SETTINGS frame');
        for (let i = 0; i < p.length; i += 6) this.setting(p.readUInt16BE(i), p.readUInt32BE(i + 2));
        this.frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0));
        this.flush();
        return;
      case FRAME.PING:
        if (p.length !== 8) return this.protocolError('a malformed PING frame');
        if (!(flags & FLAG.ACK)) this.frame(FRAME.PING, FLAG.ACK, 0, p);
        else if (this.pingTimer) {
          clearTimeout(this.pingTimer);
          this.pingTimer = null;
        }
        return;
      case FRAME.GOAWAY:
        // A stream the handler did not start is over; one it did may still finish with trailers.
        if (p.length >= 8 && (p.readUInt32BE(0) & 0x7fffffff) < SID) this.finish({ code: STATUS.UNAVAILABLE, details: `the handler is going away (HTTP/2 error ${p.readUInt32BE(4)})` });
        return;
      case FRAME.WINDOW_UPDATE: {
        if (p.length !== 4) return this.protocolError('a malformed WINDOW_UPDATE frame');
        const inc = p.readUInt32BE(0) & 0x7fffffff;
        if (sid === 0) this.connWindow += inc;
        else if (sid === SID) this.streamWindow += inc;
        this.flush();
        return;
      }
      case FRAME.PUSH_PROMISE:
        return this.protocolError('PUSH_PROMISE although push is disabled');
      default:
        return; // PRIORITY and extension frames carry nothing for us
    }
  }

  /** A frame's payload without its padding (and `skip` bytes of priority fields); null after a protocol error. */
  private unpad(p: Buffer, flags: number, skip: number): Buffer | null {
    let start = 0;
    let padding = 0;
    if (flags & FLAG.PADDED) {
      padding = p.length > 0 ? (p[0] as number) : Infinity;
      start = 1;
    }
    start += skip;
    if (start + padding > p.length) {
      this.protocolError('padding or priority fields longer than the frame');
      return null;
    }
    return p.subarray(start, p.length - padding);
  }

  private setting(id: number, value: number): void {
    if (id === SETTING.INITIAL_WINDOW_SIZE) {
      this.streamWindow += value - this.peerInitialWindow;
      this.peerInitialWindow = value;
    } else if (id === SETTING.MAX_FRAME_SIZE) {
      this.peerFrame = Math.max(DEFAULT_FRAME, Math.min(value, 16_777_215));
    }
  }

  /** Received DATA counts against our windows; top them up once half is used. */
  private received(n: number): void {
    this.receivedConn += n;
    this.receivedStream += n;
    if (this.receivedConn >= RECEIVE_WINDOW / 2) {
      this.windowUpdate(0, this.receivedConn);
      this.receivedConn = 0;
    }
    if (this.receivedStream >= RECEIVE_WINDOW / 2) {
      this.windowUpdate(SID, this.receivedStream);
      this.receivedStream = 0;
    }
  }

  private headerBlock(): void {
    const block = Buffer.concat(this.headerParts as Buffer[]);
    this.headerParts = null;
    let headers: Array<[string, string]>;
    try {
      headers = this.hpack.decode(block);
    } catch (e) {
      if (e instanceof HpackError) return this.protocolError(`a bad header block: ${e.message}`);
      throw e;
    }
    const get = (name: string): string | undefined => headers.find(([n]) => n === name)?.[1];
    if (!this.sawResponseHeaders) {
      this.sawResponseHeaders = true;
      const http = get(':status');
      if (http !== '200') this.reported = { code: STATUS.UNKNOWN, details: `HTTP status ${http ?? 'missing'}` };
    }
    const status = get('grpc-status');
    if (status !== undefined) {
      const code = Number(status);
      let details = get('grpc-message') ?? '';
      try {
        details = decodeURIComponent(details);
      } catch {
        /* keep it as sent */
      }
      this.reported = { code: Number.isInteger(code) ? code : STATUS.UNKNOWN, details };
    }
    if (this.headerEndsStream) this.remoteEnd();
  }

  /** The handler's side ended (after its trailers): the call is over, even while ours is open. */
  private remoteEnd(): void {
    this.finish(this.reported ?? { code: STATUS.UNKNOWN, details: 'the handler ended the stream without a status' });
  }

  private onGrpcBytes(chunk: Buffer): void {
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

  private protocolError(what: string): void {
    this.finish({ code: STATUS.INTERNAL, details: `HTTP/2 protocol error from the handler: ${what}` });
  }

  private finish(status: CallStatus): void {
    if (this.done) return;
    this.done = true;
    if (this.keepalive) clearInterval(this.keepalive);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.keepalive = this.pingTimer = null;
    for (const item of this.queue.splice(0)) item.cb?.();
    if (!this.socket.destroyed) {
      // Our side of the stream is closed with it; the connection goes once that is written.
      const code = Buffer.alloc(4);
      code.writeUInt32BE(status.code === STATUS.OK ? ERROR.NO_ERROR : ERROR.CANCEL, 0);
      this.frame(FRAME.RST_STREAM, 0, SID, code);
      this.socket.destroySoon();
    }
    this.emit('status', status);
  }
}
