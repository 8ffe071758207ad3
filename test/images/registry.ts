/**
 * A real Docker registry for the image tests and bench: Debian's docker-registry (distribution
 * 2.8) on 127.0.0.1 at a free port, storage in a temp directory, config written here. Nothing
 * listens beyond loopback.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

/** A free loopback TCP port (closed again before it is returned). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http
      .get(url, { timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0))
      .on('timeout', () => req.destroy());
  });
}

export class TestRegistry {
  private constructor(
    private readonly child: ChildProcess,
    /** `127.0.0.1:<port>` */
    readonly host: string,
    readonly storage: string,
  ) {}

  /** Starts a registry under `dir`; resolves once GET /v2/ answers 200. */
  static async start(dir: string, binary = '/usr/bin/docker-registry'): Promise<TestRegistry> {
    const port = await freePort();
    const storage = path.join(dir, 'registry-storage');
    fs.mkdirSync(storage, { recursive: true });
    const config = path.join(dir, 'registry.yml');
    fs.writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${storage}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '  secret: test-only',
        '',
      ].join('\n'),
    );
    const log = fs.openSync(path.join(dir, 'registry.log'), 'a');
    const child = spawn(binary, ['serve', config], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const reg = new TestRegistry(child, `127.0.0.1:${port}`, storage);
    const deadline = Date.now() + 15_000;
    while ((await get(`http://${reg.host}/v2/`)) !== 200) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`docker-registry did not start on ${reg.host} (see ${path.join(dir, 'registry.log')})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return reg;
  }

  /** The file holding a blob in the registry's storage (tests corrupt it). */
  blobFile(digest: string): string {
    const hex = digest.replace(/^sha256:/, '');
    return path.join(this.storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  }

  async stop(): Promise<void> {
    // A child killed by a signal (killEverything's SIGKILL) has exitCode null and signalCode set:
    // its 'exit' has fired already and would never be seen again.
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
