/**
 * The optional gRPC TCP listener (grpc.tcp): mutual TLS with a throwaway CA made by openssl,
 * only the controller-facing services on TCP (never Launcher), the unix socket unchanged.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { ErrorCodes, VhError } from '../../src/errors';
import { loadProtos } from '../../src/grpc/proto';
import { GrpcServer, loadTlsFiles, servedOverTcp, type GrpcTcpOptions } from '../../src/grpc/server';

const run = promisify(execFile);

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;

function call(client: grpc.Client, method: string, req: unknown): Promise<unknown> {
  const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
  return new Promise((resolve, reject) => {
    fn(req, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function failsWith(p: Promise<unknown>, codes: grpc.status[]): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    assert.ok(codes.includes(err.code), `expected ${codes.map((c) => grpc.status[c]).join('|')}, got ${grpc.status[err.code]}: ${err.details}`);
    return err;
  }
  assert.fail('expected the call to fail, it succeeded');
}

/** Opens Launcher/Connect (bidi) and resolves with the final status. */
function launcherStatus(client: grpc.Client): Promise<grpc.StatusObject> {
  const stream = (client as unknown as { Connect(opts: grpc.CallOptions): grpc.ClientDuplexStream<unknown, unknown> }).Connect({ deadline: Date.now() + 5000 });
  return new Promise((resolve) => {
    stream.on('data', () => undefined);
    stream.on('error', () => undefined); // the status event carries the code
    stream.on('status', (s: grpc.StatusObject) => resolve(s));
    stream.end();
  });
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A CA (ca.crt/ca.key) in `dir` with file prefix `name`. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/** A leaf `name.crt`/`name.key` signed by CA `ca`, with extensions `ext` (openssl extfile lines). */
async function makeLeaf(dir: string, name: string, ca: string, ext: string): Promise<void> {
  await openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
}

describe('gRPC over TCP with mutual TLS', () => {
  const protos = loadProtos();
  let dir: string;
  let server: GrpcServer;
  let tcp: GrpcTcpOptions;
  let port: number;
  const socketPath = (): string => path.join(dir, 'grpc.sock');
  const pem = (f: string): Buffer => fs.readFileSync(path.join(dir, f));
  const goodCreds = (): grpc.ChannelCredentials => grpc.credentials.createSsl(pem('ca.crt'), pem('client.key'), pem('client.crt'));
  const clients: grpc.Client[] = [];
  const track = <T extends grpc.Client>(c: T): T => (clients.push(c), c);
  const tcpClient = (Ctor: grpc.ServiceClientConstructor, creds: grpc.ChannelCredentials): grpc.Client => track(new Ctor(`127.0.0.1:${port}`, creds));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-grpc-tls-'));
    await makeCa(dir, 'ca');
    await makeCa(dir, 'otherca');
    await makeLeaf(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    await makeLeaf(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
    await makeLeaf(dir, 'foreign', 'otherca', 'extendedKeyUsage=clientAuth\n');
    fs.chmodSync(path.join(dir, 'server.key'), 0o600);
    tcp = { host: '127.0.0.1', port: 0, tls: { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key'), ca: path.join(dir, 'ca.crt') } };
    server = new GrpcServer({
      socketPath: socketPath(),
      logger: pino({ level: 'silent' }),
      nodeInfo: () => null,
      tcp,
      services: () => [
        {
          definition: protos.vmiService,
          implementation: Object.fromEntries(Object.keys(protos.vmiService).map((m) => [m, m === 'ListVMIs'
            ? (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { vmis: [], revision: 7 })
            : (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'stub' })])),
        },
        {
          definition: protos.launcherService,
          implementation: { Connect: (stream: grpc.ServerDuplexStream<unknown, unknown>) => stream.end() },
        },
      ],
    });
    await server.start();
    port = server.tcpPort!;
    assert.ok(port > 0, 'port 0 picks a real port');
  });

  after(async () => {
    for (const c of clients) c.close();
    await server?.shutdown(1000);
    assert.equal(server.tcpPort, null);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('only Launcher is kept off TCP', () => {
    assert.equal(servedOverTcp(protos.launcherService), false);
    for (const d of [protos.nodeService, protos.healthService, protos.vmiService]) assert.equal(servedOverTcp(d), true);
  });

  it('a client with a CA-signed certificate reaches Node, Health and VmiService', async () => {
    await failsWith(call(tcpClient(protos.NodeClient, goodCreds()), 'GetNodeInfo', {}), [grpc.status.UNAVAILABLE]); // nodeInfo null: probe running
    const health = (await call(tcpClient(protos.HealthClient, goodCreds()), 'Check', { service: '' })) as { status: string };
    assert.equal(health.status, 'NOT_SERVING');
    const list = (await call(tcpClient(protos.VmiClient, goodCreds()), 'ListVMIs', {})) as { vmis: unknown[]; revision: number };
    assert.deepEqual(list, { vmis: [], revision: 7 });
  });

  it('Launcher is UNIMPLEMENTED over TCP', async () => {
    const s = await launcherStatus(tcpClient(protos.LauncherClient, goodCreds()));
    assert.equal(s.code, grpc.status.UNIMPLEMENTED, s.details);
  });

  it('a TLS client without a certificate is refused in the handshake', async () => {
    await failsWith(call(tcpClient(protos.VmiClient, grpc.credentials.createSsl(pem('ca.crt'))), 'ListVMIs', {}), [grpc.status.UNAVAILABLE]);
  });

  it('a client certificate from another CA is refused', async () => {
    const creds = grpc.credentials.createSsl(pem('ca.crt'), pem('foreign.key'), pem('foreign.crt'));
    await failsWith(call(tcpClient(protos.VmiClient, creds), 'ListVMIs', {}), [grpc.status.UNAVAILABLE]);
  });

  it('a plain-text client is refused', async () => {
    await failsWith(call(tcpClient(protos.VmiClient, grpc.credentials.createInsecure()), 'ListVMIs', {}), [grpc.status.UNAVAILABLE, grpc.status.INTERNAL]);
  });

  it('the unix socket still serves everything, Launcher included', async () => {
    const unix = (Ctor: grpc.ServiceClientConstructor): grpc.Client => track(new Ctor(`unix:${socketPath()}`, grpc.credentials.createInsecure()));
    const list = (await call(unix(protos.VmiClient), 'ListVMIs', {})) as { revision: number };
    assert.equal(list.revision, 7);
    await failsWith(call(unix(protos.NodeClient), 'GetNodeInfo', {}), [grpc.status.UNAVAILABLE]);
    const s = await launcherStatus(unix(protos.LauncherClient));
    assert.equal(s.code, grpc.status.OK, s.details);
  });
});

describe('TLS files are checked at startup', () => {
  let dir: string;
  let tls: GrpcTcpOptions['tls'];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-grpc-tls-files-'));
    await makeCa(dir, 'ca');
    await makeLeaf(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1\n');
    fs.chmodSync(path.join(dir, 'server.key'), 0o600);
    tls = { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key'), ca: path.join(dir, 'ca.crt') };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const refused = (fn: () => unknown, pattern: RegExp): void => {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof VhError, String(e));
      assert.equal(e.code, ErrorCodes.LISTEN_FAILED); // a startup failure: exit 3
      assert.match(e.message, pattern);
      return true;
    });
  };

  it('accepts a 0600 key that matches the certificate', () => {
    const out = loadTlsFiles(tls);
    assert.ok(out.cert.length > 0 && out.key.length > 0 && out.ca.length > 0);
  });

  it('refuses a key file readable by group or others (mode 0644), saying chmod 600', () => {
    fs.chmodSync(tls.key, 0o644);
    try {
      refused(() => loadTlsFiles(tls), /^grpc\.tls\.key .*server\.key: private key is readable or writable by group\/others \(mode 0644\); run chmod 600 /);
    } finally {
      fs.chmodSync(tls.key, 0o600);
    }
  });

  it('names a missing file and its key', () => {
    refused(() => loadTlsFiles({ ...tls, ca: path.join(dir, 'nope.crt') }), /^grpc\.tls\.ca .*nope\.crt: cannot be read \(ENOENT\)/);
    refused(() => loadTlsFiles({ ...tls, cert: path.join(dir, 'gone.crt') }), /^grpc\.tls\.cert .*gone\.crt: cannot be read \(ENOENT\)/);
  });

  it('refuses PEM that does not parse and a key that does not match', () => {
    refused(() => loadTlsFiles({ ...tls, cert: path.join(dir, 'server.csr') }), /^grpc\.tls\.cert .*: not a PEM certificate/);
    refused(() => loadTlsFiles({ ...tls, cert: path.join(dir, 'ca.crt') }), /^grpc\.tls\.key .*: does not match the certificate/);
  });

  it('GrpcServer.start fails before binding anything, leaving no socket behind', async () => {
    fs.chmodSync(tls.key, 0o640);
    const socketPath = path.join(dir, 'grpc.sock');
    const server = new GrpcServer({ socketPath, logger: pino({ level: 'silent' }), nodeInfo: () => null, tcp: { host: '127.0.0.1', port: 0, tls } });
    try {
      await assert.rejects(server.start(), (e: unknown) => e instanceof VhError && e.code === ErrorCodes.LISTEN_FAILED && /chmod 600/.test(e.message));
      assert.equal(fs.existsSync(socketPath), false);
      assert.equal(server.tcpPort, null);
    } finally {
      fs.chmodSync(tls.key, 0o600);
      await server.shutdown(100);
    }
  });
});
