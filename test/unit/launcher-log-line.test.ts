/** lastLogLine: the reason a dead launcher leaves behind, read from the end of its log. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lastLogLine } from '../../src/vmi/control/launcher-process';

function logDir(lines: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-lastlog-'));
  fs.writeFileSync(path.join(dir, 'launcher.log'), `${lines.join('\n')}\n`);
  return dir;
}
const line = (level: string | number, msg: string, err?: string): string => JSON.stringify({ level, time: '2026-01-01T00:00:00Z', msg, ...(err ? { err: { message: err } } : {}) });

test('the last warning or error, with its error message, from label-level lines (the launcher log format)', () => {
  const dir = logDir([line('info', 'starting'), line('error', 'cannot define the domain', 'VIR_ERR_XML: bad'), line('info', 'exiting')]);
  assert.equal(lastLogLine(dir), 'cannot define the domain: VIR_ERR_XML: bad');
  fs.rmSync(dir, { recursive: true });
});

test('numeric pino levels still count; info lines never do; a plain-text line (a crash) does', () => {
  const a = logDir([line(50, 'numeric error'), line(30, 'numeric info')]);
  assert.equal(lastLogLine(a), 'numeric error');
  const b = logDir([line('warn', 'early warning'), 'TypeError: boom', '    at x (y.js:1:1)', 'Node.js v20.20.2']);
  assert.equal(lastLogLine(b), 'TypeError: boom');
  const c = logDir([line('info', 'only info'), line('debug', 'and debug')]);
  assert.equal(lastLogLine(c), '');
  for (const d of [a, b, c]) fs.rmSync(d, { recursive: true });
});
