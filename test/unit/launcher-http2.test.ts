/**
 * The launcher's own HTTP/2 client (src/launcher/connect-stream.ts, hpack.ts) against node's
 * HTTP/2 server (nghttp2, what grpc-js serves with): gRPC framing both ways, statuses from
 * trailers and trailers-only answers, Huffman-coded and table-indexed headers from a real HPACK
 * encoder, flow control for messages larger than the windows, bad gRPC (malformed, oversized,
 * compressed), a handler that accepts and never answers, and the RFC 7541 test vectors.
 */
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeHandlerMessage, encodeLauncherMessage } from '../../src/launcher-protocol/codec';
import type { HandlerMessage } from '../../src/launcher-protocol/messages';
import { CONNECT_PATH, type CallStatus, ConnectStream, STATUS } from '../../src/launcher/connect-stream';
import { HpackDecoder, HpackError, encodeHeaders, huffmanDecode } from '../../src/launcher/hpack';

describe('HPACK (RFC 7541 Appendix C vectors)', () => {
  const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');
  it('decodes Huffman strings', () => {
    assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')).toString(), 'www.example.com');
    assert.equal(huffmanDecode(hex('a8eb 1064 9cbf')).toString(), 'no-cache');
    assert.equal(huffmanDecode(hex('25a8 49e9 5ba9 7d7f')).toString(), 'custom-key');
    assert.equal(huffmanDecode(hex('25a8 49e9 5bb8 e8b4 bf')).toString(), 'custom-value');
    assert.throws(() => huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f400')), HpackError, 'padding must be ones');
    assert.throws(() => huffmanDecode(hex('ffff ffff')), HpackError, 'EOS');
  });

  it('decodes C.4 (requests with Huffman, dynamic table across blocks) and C.6 (responses, evictions)', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')), [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']]);
    assert.deepEqual(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf')), [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']]);
    assert.deepEqual(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')), [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']]);
    const r = new HpackDecoder(256);
    assert.deepEqual(r.decode(hex('4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3')), [
      [':status', '302'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com'],
    ]);
    assert.deepEqual(r.decode(hex('4883 640e ffc1 c0bf')), [[':status', '307'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']]);
    assert.throws(() => new HpackDecoder().decode(hex('be')), /outside the tables/);
    assert.throws(() => new HpackDecoder(100).decode(hex('3fe1 1f')), /table size 4096 above the 100 allowed/);
  });

  it('encodes what it decodes', () => {
    const h: Array<[string, string]> = [[':method', 'POST'], [':path', CONNECT_PATH], ['content-type', 'application/grpc'], ['te', 'trailers']];
    assert.deepEqual(new HpackDecoder().decode(encodeHeaders(h)), h);
  });
});

describe('ConnectStream against node:http2 (nghttp2)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-connect-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function serve(name: string, onStream: (s: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<{ socket: string; close: () => void }> {
    const socket = path.join(dir, `${name}.sock`);
    const server = http2.createServer();
    server.on('stream', onStream);
    await new Promise<void>((r) => server.listen(socket, r));
    return { socket, close: () => server.close() };
  }
  const frame = (body: Buffer): Buffer => {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };
  const statusOf = (s: ConnectStream): Promise<CallStatus> => new Promise((r) => s.once('status', r));
  const opts = { keepaliveMs: 60_000, keepaliveTimeoutMs: 10_000 };

  it('speaks gRPC: the path, content-type and te headers, framed messages both ways, status from the trailers', async () => {
    let seen: http2.IncomingHttpHeaders = {};
    let got: Buffer = Buffer.alloc(0);
    const srv = await serve('ok', (s, h) => {
      seen = h;
      s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      s.end(frame(encodeHandlerMessage({ registered: { sessionToken: 'abc', heartbeatIntervalMs: 1000 } })));
    });
    const c = new ConnectStream({ socketPath: srv.socket, ...opts });
    const msgs: HandlerMessage[] = [];
    c.on('message', (m) => msgs.push(m));
    await new Promise<void>((r) => c.write({ heartbeat: { seq: 7 } }, r));
    const st = await statusOf(c);
    srv.close();
    assert.equal(seen[':path'], CONNECT_PATH);
    assert.equal(seen[':method'], 'POST');
    assert.equal(seen['content-type'], 'application/grpc');
    assert.equal(seen.te, 'trailers');
    assert.deepEqual(got, frame(encodeLauncherMessage({ heartbeat: { seq: 7 } })));
    assert.deepEqual(msgs, [{ registered: { sessionToken: 'abc', heartbeatIntervalMs: 1000 } }]);
    assert.deepEqual(st, { code: STATUS.OK, details: '' });
  });

  it('a trailers-only refusal: the code and the percent-decoded message', async () => {
    const srv = await serve('refuse', (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'registration%20refused' }, { endStream: true }));
    const st = await statusOf(new ConnectStream({ socketPath: srv.socket, ...opts }));
    srv.close();
    assert.deepEqual(st, { code: STATUS.UNAUTHENTICATED, details: 'registration refused' });
  });

  it('a malformed or oversized handler message ends the call (INTERNAL / RESOURCE_EXHAUSTED); no socket is UNAVAILABLE', async () => {
    const bad = await serve('bad', (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.write(frame(Buffer.from([0x08, 0x01])));
    });
    const st1 = await statusOf(new ConnectStream({ socketPath: bad.socket, ...opts }));
    bad.close();
    assert.equal(st1.code, STATUS.INTERNAL);
    assert.match(st1.details, /malformed handler message: HandlerMessage\.registered: wire type 0/);
    const big = await serve('big', (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.write(Buffer.from([0, 0xff, 0xff, 0xff, 0xff]));
    });
    const st2 = await statusOf(new ConnectStream({ socketPath: big.socket, ...opts }));
    big.close();
    assert.equal(st2.code, STATUS.RESOURCE_EXHAUSTED);
    const st3 = await statusOf(new ConnectStream({ socketPath: path.join(dir, 'nobody.sock'), ...opts }));
    assert.equal(st3.code, STATUS.UNAVAILABLE);
    assert.match(st3.details, /ENOENT/);
  });

  it('a handler that accepts but never answers (hung, SIGSTOPped) is given up on after the keepalive', async () => {
    const socket = path.join(dir, 'hang.sock');
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(socket, r));
    const t0 = Date.now();
    const st = await statusOf(new ConnectStream({ socketPath: socket, keepaliveMs: 100, keepaliveTimeoutMs: 100 }));
    silent.close();
    assert.equal(st.code, STATUS.UNAVAILABLE);
    assert.match(st.details, /keepalive ping unanswered for 100 ms/);
    assert.ok(Date.now() - t0 < 2000);
  });

  it('flow control: a 1 MiB message each way through 100-byte stream windows and 16 KiB frames', async () => {
    const xml = `<domain>${'x'.repeat(1 << 20)}</domain>`;
    let got = Buffer.alloc(0);
    const socket = path.join(dir, 'window.sock');
    const server = http2.createServer({ settings: { initialWindowSize: 100 } });
    server.on('stream', (s) => {
      s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.write(frame(encodeHandlerMessage({ command: { id: 'c1', start: { domainXml: xml, libvirtUri: 'u', disks: [] } } })));
    });
    await new Promise<void>((r) => server.listen(socket, r));
    const c = new ConnectStream({ socketPath: socket, ...opts });
    const msgs: HandlerMessage[] = [];
    const received = new Promise<void>((r) => c.on('message', (m) => (msgs.push(m), r())));
    await new Promise<void>((r) => c.write({ status: { state: 'running', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: xml } }, r));
    await received;
    const want = frame(encodeLauncherMessage({ status: { state: 'running', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: xml } }));
    for (let i = 0; i < 200 && got.length < want.length; i++) await new Promise((r) => setTimeout(r, 10));
    c.cancel();
    server.close();
    assert.equal(got.length, want.length);
    assert.ok(got.equals(want));
    assert.equal(msgs[0]?.command?.start?.domainXml, xml);
  });

  it('headers from nghttp2: Huffman-coded values of every printable character, indexed from the dynamic table in the trailers', async () => {
    const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('').trim();
    const srv = await serve('huff', (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-chars': printable, 'x-same': 'repeat-me' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '16', 'grpc-message': encodeURIComponent(`refused: ${printable}`), 'x-same': 'repeat-me', 'x-chars': printable }));
      s.end();
    });
    const st = await statusOf(new ConnectStream({ socketPath: srv.socket, ...opts }));
    srv.close();
    assert.deepEqual(st, { code: STATUS.UNAUTHENTICATED, details: `refused: ${printable}` });
  });

  it('a non-200 answer or a stream the server resets ends the call with a status', async () => {
    const srv = await serve('404', (s) => s.respond({ ':status': 404 }, { endStream: true }));
    const st = await statusOf(new ConnectStream({ socketPath: srv.socket, ...opts }));
    srv.close();
    assert.deepEqual(st, { code: STATUS.UNKNOWN, details: 'HTTP status 404' });
    const rst = await serve('rst', (s) => s.on('error', () => undefined).close(http2.constants.NGHTTP2_REFUSED_STREAM));
    const st2 = await statusOf(new ConnectStream({ socketPath: rst.socket, ...opts }));
    rst.close();
    assert.equal(st2.code, STATUS.UNAVAILABLE);
    assert.match(st2.details, /reset the stream \(HTTP\/2 error 7\)/);
  });
});

