/**
 * A static file server on 127.0.0.1 for the importer tests and bench:images, with the
 * misbehaviours the importer must survive, chosen per path prefix:
 *   /files/<name>            the file, with Content-Length, ETag, Accept-Ranges and Range support
 *   /flaky/<n>/<name>        503 for the first n requests of that path, then the file
 *   /reset/<name>            the first request sends half the body then resets the connection
 *   /stall/<name>            sends 1 MiB then nothing (until the client goes away)
 *   /auth/<name>             401 without 'x-token: <token>'
 *   /redirect/<name>         302 to /files/<name>
 * Every request is logged (path, range header, whether the token matched) for assertions.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as path from 'node:path';

export interface Logged {
  path: string;
  range: string | undefined;
  status: number;
}

export class FileServer {
  readonly log: Logged[] = [];
  private readonly hits = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  private server!: http.Server;
  url = '';

  constructor(private readonly root: string, private readonly token = 'sekret-token-value') {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  requests(prefix: string): Logged[] {
    return this.log.filter((l) => l.path.startsWith(prefix));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const n = (this.hits.get(url.pathname) ?? 0) + 1;
    this.hits.set(url.pathname, n);
    const entry: Logged = { path: url.pathname, range: req.headers.range, status: 0 };
    this.log.push(entry);
    const reply = (status: number): void => {
      entry.status = status;
      res.writeHead(status, { 'content-length': '0' }).end();
    };
    const kind = parts[0];
    const name = parts[parts.length - 1] ?? '';
    const file = path.join(this.root, path.basename(name));
    if (!fs.existsSync(file) || (kind !== 'files' && kind !== 'flaky' && kind !== 'reset' && kind !== 'stall' && kind !== 'auth' && kind !== 'redirect')) return reply(404);
    if (kind === 'flaky' && n <= Number(parts[1])) return reply(503);
    if (kind === 'auth' && req.headers['x-token'] !== this.token) return reply(401);
    if (kind === 'redirect') {
      entry.status = 302;
      res.writeHead(302, { location: `/files/${name}`, 'content-length': '0' }).end();
      return;
    }
    const st = fs.statSync(file);
    const etag = `"${st.size}-${st.mtimeMs}"`;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (m !== null && (ifRange === undefined || ifRange === etag) && Number(m[1]) < st.size) start = Number(m[1]);
    const headers: http.OutgoingHttpHeaders = { 'content-length': String(st.size - start), etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (start > 0) headers['content-range'] = `bytes ${start}-${st.size - 1}/${st.size}`;
    entry.status = start > 0 ? 206 : 200;
    res.writeHead(entry.status, headers);
    if (kind === 'reset' && n === 1) {
      const half = Math.floor(st.size / 2);
      const rs = fs.createReadStream(file, { start, end: start + half - 1 });
      rs.on('data', (d) => res.write(d));
      rs.on('end', () => setTimeout(() => req.socket.resetAndDestroy(), 20));
      return;
    }
    if (kind === 'stall') {
      fs.createReadStream(file, { start, end: Math.min(st.size, start + (1 << 20)) - 1 }).on('data', (d) => res.write(d));
      return;
    }
    fs.createReadStream(file, { start, highWaterMark: 1 << 20 }).pipe(res);
  }
}
