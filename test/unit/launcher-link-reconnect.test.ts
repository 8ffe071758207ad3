/**
 * The launcher's handler link after the handler went away: retries back off (here pinned at
 * 4 s), but the handler's socket appearing again makes the link reconnect at once, so a
 * restarted handler re-adopts its launchers in milliseconds instead of the remaining backoff.
 */
import { after, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerLink } from '../../src/launcher/handler-link';
import { createLauncherLogger } from '../../src/launcher/log';
import { FakeHandler } from './fake-launcher-handler';

const UID = '3f0c2a5e-8d1b-4c6a-9e2f-7b5d4a3c2e10';

function registered(link: HandlerLink, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no Registered within ${timeoutMs} ms`)), timeoutMs);
    link.once('registered', () => {
      clearTimeout(t);
      resolve(Date.now() - t0);
    });
  });
}

describe('handler link: reconnects as soon as the handler socket is back', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-link-'));
  const sock = path.join(dir, 'grpc.sock');
  const handlers: FakeHandler[] = [];
  let link: HandlerLink | null = null;
  after(async () => {
    await link?.stop(100);
    for (const h of handlers) await h.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the socket reappearing cuts a 4 s backoff short', async () => {
    const first = new FakeHandler(sock, UID, 'spawn-token');
    handlers.push(first);
    await first.start();
    link = new HandlerLink({
      socketPath: sock,
      vmiUid: UID,
      spawnToken: 'spawn-token',
      version: 'test',
      logger: createLauncherLogger({ level: 'silent', nodeName: 'test' }),
      backoff: { initialMs: 4000, maxMs: 4000 },
      random: () => 1, // every retry waits the full 4 s
    });
    const reg1 = registered(link, 5000);
    link.start();
    await reg1;

    // The handler dies: its socket goes with it; the link fails and waits 4 s to retry.
    await first.stop();
    fs.rmSync(sock, { force: true });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(link.isRegistered, false);

    // A new handler binds the same path (with the session token the link now holds).
    const second = new FakeHandler(sock, UID, 'unused-spawn-token', first.sessionToken);
    handlers.push(second);
    const reg2 = registered(link, 3000);
    const t0 = Date.now();
    await second.start();
    await reg2;
    const ms = Date.now() - t0;
    assert.ok(ms < 1500, `re-registered ${ms} ms after the socket appeared (backoff 4000 ms)`);
    assert.equal(second.registers().at(-1)?.msg.register.token, first.sessionToken);
  });
});
