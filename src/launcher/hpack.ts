/**
 * HPACK (RFC 7541), as much as the launcher's HTTP/2 client needs: an encoder for its one
 * request header block (static-table references and literals, never indexed, no Huffman: the
 * block is sent once per connection) and a full decoder for what the handler's HTTP/2 server
 * (nghttp2, under grpc-js) sends: indexed fields from the static and dynamic tables, literals with
 * and without indexing, dynamic table size updates, and Huffman-coded strings. Malformed input
 * throws HpackError; the caller ends the connection (COMPRESSION_ERROR).
 */

export class HpackError extends Error {
  override name = 'HpackError';
}

/** RFC 7541 Appendix A. */
const STATIC: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'],
  [':status', '200'], [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'],
  ['accept-charset', ''], ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''], ['content-location', ''], ['content-range', ''], ['content-type', ''],
  ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''],
  ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''],
  ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

// ---------------------------------------------------------------------------------------------
// Huffman (RFC 7541 Appendix B). The code is canonical (within one length, codes ascend with
// the symbol), so the code lengths alone define it; codes are derived below. Kraft-complete.

const HUFFMAN_LENGTHS: ReadonlyArray<readonly [number, readonly number[] | string]> = [
  [5, '012aceiost'],
  [6, ' %-./3456789=A_bdfghlmnpru'],
  [7, ':BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz'],
  [8, '&*,;XZ'],
  [10, '!"()?'],
  [11, "'+|"],
  [12, '#>'],
  [13, [0, 36, 64, 91, 93, 126]],
  [14, '^}'],
  [15, '<`{'],
  [19, [92, 195, 208]],
  [20, [128, 130, 131, 162, 184, 194, 224, 226]],
  [21, [153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230]],
  [22, [129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232, 233]],
  [23, [1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239]],
  [24, [9, 142, 144, 145, 148, 159, 171, 206, 215, 225, 236, 237]],
  [25, [199, 207, 234, 235]],
  [26, [192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255]],
  [27, [203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254]],
  [28, [2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220, 249]],
  [30, [10, 13, 22, 256]],
];
const EOS = 256;

/** Canonical decoding tables: per length, the first code, and the symbols of that length in order. */
interface HuffmanTable {
  first: Int32Array;
  offset: Int32Array;
  count: Int32Array;
  symbols: number[];
}

let huffman: HuffmanTable | null = null;
function huffmanTable(): HuffmanTable {
  if (huffman) return huffman;
  const first = new Int32Array(31);
  const offset = new Int32Array(31);
  const count = new Int32Array(31);
  const symbols: number[] = [];
  let code = 0;
  let prev = 0;
  for (const [len, syms] of HUFFMAN_LENGTHS) {
    const list = typeof syms === 'string' ? [...syms].map((c) => c.charCodeAt(0)) : [...syms];
    list.sort((a, b) => a - b);
    code <<= len - prev;
    prev = len;
    first[len] = code;
    offset[len] = symbols.length;
    count[len] = list.length;
    symbols.push(...list);
    code += list.length;
  }
  return (huffman = { first, offset, count, symbols });
}

/** Decodes a Huffman-coded string (bytes), checking the padding (at most 7 one bits). */
export function huffmanDecode(buf: Uint8Array): Buffer {
  const t = huffmanTable();
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (const byte of buf) {
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      if (len < 5) continue;
      const i = code - (t.first[len] as number);
      if (i >= 0 && i < (t.count[len] as number)) {
        const sym = t.symbols[(t.offset[len] as number) + i] as number;
        if (sym === EOS) throw new HpackError('Huffman string contains EOS');
        out.push(sym);
        code = 0;
        len = 0;
      } else if (len >= 30) throw new HpackError('invalid Huffman code');
    }
  }
  if (len > 7 || code !== (1 << len) - 1) throw new HpackError('invalid Huffman padding');
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// encoder

function encodeInt(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function encodeString(out: number[], s: string): void {
  const b = Buffer.from(s, 'latin1');
  encodeInt(out, b.length, 7, 0);
  for (const x of b) out.push(x);
}

/**
 * A header block: a name found in the static table with its value is one indexed byte, a known
 * name is referenced, others are literal; nothing enters the peer's dynamic table.
 */
export function encodeHeaders(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const out: number[] = [];
  for (const [name, value] of headers) {
    const full = STATIC.findIndex(([n, v]) => n === name && v === value);
    if (full >= 0) {
      encodeInt(out, full + 1, 7, 0x80);
      continue;
    }
    const named = STATIC.findIndex(([n]) => n === name);
    encodeInt(out, named + 1, 4, 0x00); // literal without indexing; index 0 = new name
    if (named < 0) encodeString(out, name);
    encodeString(out, value);
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// decoder

/** One connection's decoding state: the dynamic table. */
export class HpackDecoder {
  private table: Array<[string, string]> = [];
  private size = 0;
  private maxSize: number;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE we announced (4096 by default). */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /** Decodes one complete header block into [name, value] pairs, in order. */
  decode(block: Uint8Array): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    let pos = 0;
    const int = (prefixBits: number): number => {
      if (pos >= block.length) throw new HpackError('truncated integer');
      const max = (1 << prefixBits) - 1;
      let v = (block[pos++] as number) & max;
      if (v < max) return v;
      for (let shift = 0; ; shift += 7) {
        if (pos >= block.length) throw new HpackError('truncated integer');
        if (shift > 28) throw new HpackError('integer too large');
        const b = block[pos++] as number;
        v += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) return v;
      }
    };
    const str = (): string => {
      if (pos >= block.length) throw new HpackError('truncated string');
      const huff = ((block[pos] as number) & 0x80) !== 0;
      const n = int(7);
      if (n > block.length - pos) throw new HpackError('string runs past the header block');
      const raw = block.subarray(pos, pos + n);
      pos += n;
      return (huff ? huffmanDecode(raw) : Buffer.from(raw)).toString('latin1');
    };
    const entry = (index: number): readonly [string, string] => {
      if (index <= 0) throw new HpackError('index 0');
      const e = index <= STATIC.length ? STATIC[index - 1] : this.table[index - STATIC.length - 1];
      if (!e) throw new HpackError(`index ${index} is outside the tables`);
      return e;
    };
    while (pos < block.length) {
      const b = block[pos] as number;
      if (b & 0x80) {
        const [n, v] = entry(int(7));
        out.push([n, v]);
      } else if (b & 0x40) {
        const index = int(6);
        const name = index ? entry(index)[0] : str();
        const value = str();
        out.push([name, value]);
        this.add(name, value);
      } else if (b & 0x20) {
        const size = int(5);
        if (size > this.limit) throw new HpackError(`table size ${size} above the ${this.limit} allowed`);
        this.maxSize = size;
        this.evict();
      } else {
        const index = int(4); // without indexing (0000) and never indexed (0001) decode alike
        const name = index ? entry(index)[0] : str();
        out.push([name, str()]);
      }
    }
    return out;
  }

  private add(name: string, value: string): void {
    this.table.unshift([name, value]);
    this.size += name.length + value.length + 32;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize && this.table.length > 0) {
      const [n, v] = this.table.pop() as [string, string];
      this.size -= n.length + v.length + 32;
    }
  }
}
