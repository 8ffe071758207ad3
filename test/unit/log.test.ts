import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { component, createLogger } from '../../src/log';

function capture(): { stream: Writable & { write: Writable['write'] }; lines: () => Record<string, unknown>[]; raw: () => string } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString();
      cb();
    },
  });
  return { stream, raw: () => buf, lines: () => buf.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('secrets are redacted at the top level, one and two levels down, and in headers', () => {
  const out = capture();
  const log = createLogger({ level: 'info', nodeName: 'n1', destination: out.stream });
  log.info({ token: 'tok-top-SECRET', user: { password: 'pw-SECRET', name: 'alice' }, a: { b: { key: 'k-SECRET' } }, secret: 's-SECRET' }, 'one');
  log.info({ req: { headers: { authorization: 'Bearer auth-SECRET', cookie: 'sid=cookie-SECRET', accept: '*/*' } } }, 'two');
  log.info({ headers: { authorization: 'Basic basic-SECRET' } }, 'three');
  log.info({ cloudInitNoCloud: { userData: '#cloud-config password: ud-SECRET', networkData: 'nd-SECRET' }, vol: { c: { userDataBase64: 'b64-SECRET' } } }, 'four');
  assert.doesNotMatch(out.raw(), /SECRET/, out.raw());
  const [one, two] = out.lines();
  assert.equal(one!.token, '[REDACTED]');
  assert.deepEqual(one!.user, { password: '[REDACTED]', name: 'alice' });
  assert.equal((two!.req as { headers: Record<string, string> }).headers.accept, '*/*');
});

test('JSON lines carry base fields, textual level, ISO time and the component', () => {
  const out = capture();
  const log = component(createLogger({ level: 'debug', nodeName: 'node-7', destination: out.stream }), 'http');
  log.debug({ x: 1 }, 'hello');
  const [line] = out.lines();
  assert.equal(line!.level, 'debug');
  assert.equal(line!.pid, process.pid);
  assert.equal(line!.node, 'node-7');
  assert.equal(typeof line!.hostname, 'string');
  assert.equal(line!.component, 'http');
  assert.equal(line!.msg, 'hello');
  assert.match(String(line!.time), /^\d{4}-\d\d-\d\dT/);
});

test('the configured level filters lower levels', () => {
  const out = capture();
  const log = createLogger({ level: 'warn', nodeName: 'n', destination: out.stream });
  log.info('hidden');
  log.warn('shown');
  assert.deepEqual(out.lines().map((l) => l.msg), ['shown']);
});
