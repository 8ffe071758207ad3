/**
 * The launcher's logger (src/launcher/log.ts) writes the daemon's line format (src/log, pino)
 * without pino: the same lines for the same calls (time aside), secrets redacted the same way,
 * errors serialized the same way, levels filtered the same way.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { REDACT_PATHS, createLogger } from '../../src/log';
import { type LauncherLogger, SECRET_KEYS, createLauncherLogger } from '../../src/launcher/log';

function both(level: 'info' | 'debug' | 'warn'): { ours: LauncherLogger; pino: LauncherLogger; lines: () => [unknown[], unknown[]] } {
  const mine: string[] = [];
  const theirs: string[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (theirs.push(c.toString()), cb()) });
  const ours = createLauncherLogger({ level, nodeName: 'node-a', write: (l) => mine.push(l) });
  const pino = createLogger({ level, nodeName: 'node-a', destination: sink }) as unknown as LauncherLogger;
  const parse = (ls: string[]): unknown[] => ls.join('').split('\n').filter(Boolean).map((l) => {
    const o = JSON.parse(l) as Record<string, unknown>;
    assert.match(String(o.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    delete o.time;
    return o;
  });
  return { ours, pino, lines: () => [parse(mine), parse(theirs)] };
}

describe('launcher logger', () => {
  it('writes what pino (src/log) writes for the same calls', () => {
    const { ours, pino, lines } = both('info');
    for (const log of [ours, pino]) {
      const l = log.child({ component: 'launcher', vmiUid: 'u1' });
      l.info({ version: '1', socket: '/run/x.sock' }, 'virt-launcher starting');
      l.info('no fields');
      l.debug({ dropped: true }, 'below the level');
      l.warn({ token: 'secret-token', nested: { password: 'p', deeper: { key: 'k', ok: 1 } }, list: [1, 'a'] }, 'secrets');
      l.info({ vmi: { userData: 'pw', spec: { networkDataBase64: 'x' } } }, 'cloud-init');
      const e = Object.assign(new Error('boom'), { code: 'ECODE', errno: -2 });
      l.error({ err: e, id: 'c1' }, 'command failed');
      l.warn({ err: 'just text' }, 'not an Error');
      l.child({ component: 'libvirt' }).info({ uri: 'test:///default', n: 5, none: undefined }, 'libvirt connected');
      l.fatal({}, 'empty fields');
    }
    const [mine, theirs] = lines();
    assert.equal(mine.length, 8);
    assert.deepEqual(mine, theirs);
    assert.ok(!JSON.stringify(mine).includes('secret-token'));
  });

  it('redacts the names src/log redacts (headers aside: a launcher logs none)', () => {
    const names = new Set(REDACT_PATHS.filter((p) => !p.includes('headers')).map((p) => p.split('.').at(-1) as string));
    assert.deepEqual([...SECRET_KEYS].sort(), [...names].sort());
  });

  it('silent writes nothing; levels filter like pino', () => {
    const lines: string[] = [];
    const l = createLauncherLogger({ level: 'silent', nodeName: 'n', write: (x) => lines.push(x) });
    l.fatal('x');
    assert.equal(lines.length, 0);
    const w = createLauncherLogger({ level: 'warn', nodeName: 'n', write: (x) => lines.push(x) });
    w.info('no');
    w.warn('yes');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0] as string) as { level: string }).level, 'warn');
  });
});
