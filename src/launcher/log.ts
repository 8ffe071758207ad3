/**
 * The launcher's logger: the daemon's line format (src/log, pino: JSON lines with the level as
 * a label, ISO time, pid, hostname, node, then the child bindings, the fields and msg; `err` as
 * {type, message, stack, ...its own fields}; token/password/key/secret and cloud-init data values
 * redacted up to three levels down) without loading pino. A launcher writes a few dozen lines in its life; pino
 * and its stream machinery were a measurable share of every launcher's start (bench:scale).
 * Lines go synchronously to stdout (the VMI's launcher.log), so nothing is lost on exit.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { LogLevel } from '../config/types';

/** One log method: fields and a message, or a message alone. */
export interface LogFn {
  (fields: object, msg?: string): void;
  (msg: string): void;
}

/** What launcher code logs through (a pino logger fits it too, as tests pass one). */
export interface LauncherLogger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): LauncherLogger;
}

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type Level = keyof typeof LEVELS;
/** src/log's REDACT_PATHS names (checked equal by launcher-log.test.ts; importing src/log would load pino). */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['token', 'password', 'key', 'secret', 'userData', 'networkData', 'userDataBase64', 'networkDataBase64']);
/** src/log redacts `<secret>`, `*.<secret>` and `*.*.<secret>`. */
const REDACT_DEPTH = 3;

export interface LauncherLoggerOptions {
  level: LogLevel;
  nodeName: string;
  /** Where a finished line goes (tests); stdout by default. */
  write?: (line: string) => void;
}

export function createLauncherLogger(opts: LauncherLoggerOptions): LauncherLogger {
  const min = opts.level === 'silent' ? Infinity : LEVELS[opts.level];
  const base = fields({ pid: process.pid, hostname: os.hostname(), node: opts.nodeName });
  return new JsonLogger(min, base, opts.write ?? writeStdout);
}

class JsonLogger implements LauncherLogger {
  readonly trace = this.method('trace');
  readonly debug = this.method('debug');
  readonly info = this.method('info');
  readonly warn = this.method('warn');
  readonly error = this.method('error');
  readonly fatal = this.method('fatal');

  constructor(
    private readonly min: number,
    /** The base fields and bindings, serialized once: `"pid":1,"hostname":"h",...` */
    private readonly prefix: string,
    private readonly write: (line: string) => void,
  ) {}

  child(bindings: Record<string, unknown>): LauncherLogger {
    const more = fields(bindings);
    return new JsonLogger(this.min, more ? `${this.prefix},${more}` : this.prefix, this.write);
  }

  private method(level: Level): LogFn {
    return ((a: object | string, msg?: string): void => {
      if (LEVELS[level] < this.min) return;
      const [obj, text] = typeof a === 'string' ? [null, a] : [a, msg];
      let line = `{"level":"${level}","time":"${new Date().toISOString()}",${this.prefix}`;
      const more = obj ? fields(obj as Record<string, unknown>) : '';
      if (more) line += `,${more}`;
      if (text !== undefined) line += `,"msg":${JSON.stringify(text)}`;
      this.write(`${line}}\n`);
    }) as LogFn;
  }
}

/** `"k":v,...` for the defined members of `o`, secrets redacted, `err` serialized like pino's. */
function fields(o: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${stringify(k === 'err' ? serializeError(v) : v, k)}`);
  }
  return parts.join(',');
}

function stringify(v: unknown, key: string): string {
  if (SECRET_KEYS.has(key)) return '"[REDACTED]"';
  try {
    return JSON.stringify(redact(v, 1)) ?? 'null';
  } catch (e) {
    return JSON.stringify(`[unserializable: ${(e as Error).message}]`);
  }
}

/** A copy with secret-named members (down to REDACT_DEPTH) redacted and bigints as numbers. */
function redact(v: unknown, depth: number): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v !== 'object' || v === null || depth >= REDACT_DEPTH) return v;
  if (Array.isArray(v)) return v;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEYS.has(k) ? '[REDACTED]' : redact(x, depth + 1);
  return out;
}

/** pino's std err serializer, short: type, message, stack, then the error's own fields. */
function serializeError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const out: Record<string, unknown> = { type: e.constructor?.name ?? e.name, message: e.message, stack: e.stack };
  for (const [k, v] of Object.entries(e)) if (out[k] === undefined) out[k] = v instanceof Error ? serializeError(v) : v;
  return out;
}

/** Synchronous, retried while a pipe is full (tests read launcher stdout through one). */
function writeStdout(line: string): void {
  let buf = Buffer.from(line);
  for (let tries = 0; buf.length > 0 && tries < 1000; tries++) {
    try {
      buf = buf.subarray(fs.writeSync(1, buf));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}
