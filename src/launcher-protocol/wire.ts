/**
 * The protobuf wire format, as much of it as launcher.proto needs, for the launcher's codec
 * (codec.ts): base-128 varints (32-bit, and 64-bit as two 32-bit halves so no precision is lost
 * on the way; negative int32/int64 as 10-byte two's complement, as every protobuf encoder writes
 * them), length-delimited fields, and skipping an unknown field of any wire type (varint,
 * fixed64, fixed32, length-delimited, groups), so what a newer peer adds is ignored as protobuf
 * intends. Readers never read past the end they were given: truncated or malformed input throws
 * WireError with the byte offset.
 */

/** Wire types (the low 3 bits of a field's tag). */
export const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

const TWO_32 = 4294967296;
/** Groups nested deeper than this are refused rather than skipped (no recursion bomb). */
const MAX_GROUP_DEPTH = 32;

/** Input that is not a well-formed protobuf message. */
export class WireError extends Error {
  override name = 'WireError';
  constructor(
    message: string,
    readonly offset: number,
    /** Whether the message already names the message and field it happened in. */
    readonly located = false,
  ) {
    super(message);
  }
}

/** An append-only buffer that grows by doubling. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** An unsigned 32-bit varint (0 <= v < 2^32). */
  uint32(v: number): void {
    this.room(5);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  /** A 64-bit varint from its unsigned halves. */
  varint64(lo: number, hi: number): void {
    if (hi === 0) return this.uint32(lo >>> 0);
    this.room(10);
    while (hi > 0 || lo > 0x7f) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.pos++] = lo;
  }

  /** A signed 32-bit varint: negative values take 10 bytes (sign-extended to 64 bits). */
  int32(v: number): void {
    if (v >= 0) this.uint32(v);
    else this.varint64(v >>> 0, 0xffffffff);
  }

  /** A 64-bit varint from a number (an integer, exact below 2^53) or a bigint; negative as two's complement. */
  int64(v: number | bigint): void {
    if (typeof v === 'bigint') {
      const u = BigInt.asUintN(64, v);
      this.varint64(Number(u & 0xffffffffn), Number(u >> 32n));
      return;
    }
    const a = Math.abs(v);
    let lo = a >>> 0;
    let hi = Math.floor(a / TWO_32) >>> 0;
    if (v < 0) {
      lo = (~lo + 1) >>> 0;
      hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    }
    this.varint64(lo, hi);
  }

  tag(field: number, wireType: number): void {
    this.uint32(((field << 3) | wireType) >>> 0);
  }

  /** Length-prefixed bytes. */
  bytes(b: Uint8Array): void {
    this.uint32(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A length-prefixed UTF-8 string. */
  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.uint32(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** The bytes written so far (a view, valid until the next write). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Reads one message's bytes, `start` to `end`. */
export class Reader {
  pos: number;
  /** The halves of the last varint64(). */
  lo = 0;
  hi = 0;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  /** Reads a varint of up to 10 bytes into lo/hi. */
  varint64(): void {
    let lo = 0;
    let hi = 0;
    const at = this.pos;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError(`truncated varint at byte ${at}`, at);
      const b = this.buf[this.pos++] as number;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new WireError(`varint longer than 10 bytes at byte ${at}`, at);
  }

  /** A varint's low 32 bits, unsigned (what protobuf's uint32 is). */
  uint32(): number {
    this.varint64();
    return this.lo;
  }

  /** A varint as int64, as a number (magnitude kept above 2^53, like protobufjs with longs: Number). */
  int64(): number {
    this.varint64();
    if (this.hi >>> 31) {
      const lo = (~this.lo + 1) >>> 0;
      let hi = ~this.hi >>> 0;
      if (!lo) hi = (hi + 1) >>> 0;
      return -(lo + hi * TWO_32);
    }
    return this.lo + this.hi * TWO_32;
  }

  /** A varint as uint64, as a number. */
  uint64(): number {
    this.varint64();
    return this.lo + this.hi * TWO_32;
  }

  /** A length prefix; returns where the field's bytes end (checked against this reader's end). */
  lengthDelimited(): number {
    const at = this.pos;
    const n = this.uint32();
    if (n > this.end - this.pos) throw new WireError(`length-delimited field of ${n} bytes at byte ${at} runs past the end (${this.end - this.pos} left)`, at);
    return this.pos + n;
  }

  /** A length-prefixed UTF-8 string (invalid sequences become U+FFFD, as protobufjs decodes them). */
  string(): string {
    const end = this.lengthDelimited();
    const s = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos, end - this.pos).toString('utf8');
    this.pos = end;
    return s;
  }

  /** Length-prefixed bytes, copied (the decoded message must not pin the whole input buffer). */
  bytes(): Buffer {
    const end = this.lengthDelimited();
    const b = Buffer.from(this.buf.subarray(this.pos, end));
    this.pos = end;
    return b;
  }

  /** Skips one field's value of `wireType` (its tag already read); `field` names a group's end. */
  skip(wireType: number, field: number, depth = 0): void {
    const at = this.pos;
    switch (wireType) {
      case WIRE.VARINT:
        this.varint64();
        return;
      case WIRE.I64:
        return this.advance(8, at);
      case WIRE.I32:
        return this.advance(4, at);
      case WIRE.LEN:
        this.pos = this.lengthDelimited();
        return;
      case WIRE.SGROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw new WireError(`groups nested deeper than ${MAX_GROUP_DEPTH} at byte ${at}`, at);
        for (;;) {
          if (this.pos >= this.end) throw new WireError(`unterminated group (field ${field}) starting at byte ${at}`, at);
          const tag = this.uint32();
          const wt = tag & 7;
          if (wt === WIRE.EGROUP) {
            if (tag >>> 3 !== field) throw new WireError(`group of field ${field} ended by field ${tag >>> 3} at byte ${this.pos}`, this.pos);
            return;
          }
          this.skip(wt, tag >>> 3, depth + 1);
        }
      }
      default:
        throw new WireError(`invalid wire type ${wireType} at byte ${at}`, at);
    }
  }

  private advance(n: number, at: number): void {
    if (n > this.end - this.pos) throw new WireError(`truncated ${n * 8}-bit field at byte ${at}`, at);
    this.pos += n;
  }
}
