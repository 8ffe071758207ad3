/**
 * spec.source.http: one streaming pass from the socket into the scratch file (decompressing, and
 * hashing compressed bytes, on the way, see sink.ts) with Node's own http/https client. Redirects are
 * followed (bounded; extra headers are not sent to another origin, as curl drops credentials);
 * 404/410 and 401/403 are final, 5xx/408/429, resets and stalls are retried with jittered
 * exponential backoff. A retry resumes with Range + If-Range when the server named a validator
 * (ETag or Last-Modified) and the first response was complete-able (Accept-Ranges: bytes);
 * otherwise it starts again from byte 0. Header values never appear in errors.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '../../util/backoff';
import { ImportError } from './types';
import { canceled } from './exec';
import { Sink, SinkError, type Compression } from './sink';

export interface DownloadOptions {
  url: string;
  extraHeaders: readonly string[];
  /** The scratch file (created 0600, truncated on a restart). */
  file: string;
  /** A digest besides sha256 the checksum needs. */
  extraAlgorithm: string | null;
  retry: { attempts: number; baseDelayMs: number; maxDelayMs: number };
  signal: AbortSignal;
  idleTimeoutMs: number;
  maxRedirects: number;
  xzBinary: string;
  childTimeoutMs: number;
  hashInStream: boolean;
  onProgress(bytesDone: number, bytesTotal: number | null, attempt: number): void;
  random: () => number;
}

export interface Downloaded {
  /** Digests of the bytes as received when they were compressed; null when the scratch file holds them as received (hash it). */
  digests: { sha256: string; extra: string | null } | null;
  /** Bytes as received (compressed). */
  bytes: number;
  compression: Compression;
  attempts: number;
}

/** A field-path message when the http source cannot be used as given, else null. */
export function checkHttpSource(url: string, extraHeaders: readonly string[], checksum: string | null): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'source.http.url: not a valid URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `source.http.url: scheme ${u.protocol} is not supported (http or https)`;
  for (const [i, h] of extraHeaders.entries()) {
    const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*)$/.exec(h);
    if (m === null || /[\r\n\0]/.test(h)) return `source.http.extraHeaders[${i}]: not 'Name: value'`;
  }
  if (checksum !== null && parseChecksum(checksum) === null) return "source.http.checksum: 'sha256:<64 hex>', 'sha512:<128 hex>' or 'md5:<32 hex>' is needed";
  return null;
}

const HEX_LEN: Record<string, number> = { sha256: 64, sha512: 128, md5: 32 };

/** 'sha256:<hex>' -> {algorithm, hex}; null when malformed. */
export function parseChecksum(s: string): { algorithm: 'sha256' | 'sha512' | 'md5'; hex: string } | null {
  const m = /^(sha256|sha512|md5):([0-9a-fA-F]+)$/.exec(s.trim());
  if (m === null || m[2]?.length !== HEX_LEN[m[1] as string]) return null;
  return { algorithm: m[1] as 'sha256' | 'sha512' | 'md5', hex: (m[2] as string).toLowerCase() };
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Downloads with retries; resolves when the scratch file is complete and closed. */
export async function download(o: DownloadOptions): Promise<Downloaded> {
  const newSink = (): Sink => new Sink({ file: o.file, extraAlgorithm: o.extraAlgorithm, xzBinary: o.xzBinary, childTimeoutMs: o.childTimeoutMs, signal: o.signal, hashAlways: o.hashInStream });
  const state: AttemptState = { sink: newSink(), newSink, validator: null, total: null };
  for (let attempt = 1; ; attempt++) {
    try {
      await fetchOnce(o, state, attempt);
      return { digests: await state.sink.digests(), bytes: state.sink.received, compression: state.sink.compression, attempts: attempt };
    } catch (e) {
      const err = classify(e, o.signal);
      if (!err.retryable || attempt >= o.retry.attempts) {
        await state.sink.dispose();
        if (err.retryable) throw new ImportError(err.reason, `${err.message} (gave up after ${attempt} attempts)`, true, { cause: err });
        throw err;
      }
      try {
        await sleep(backoffDelay(attempt - 1, { initialMs: o.retry.baseDelayMs, maxMs: o.retry.maxDelayMs, stableMs: 0 }, o.random), undefined, { signal: o.signal });
      } catch {
        await state.sink.dispose();
        throw canceled();
      }
    }
  }
}

interface AttemptState {
  sink: Sink;
  newSink(): Sink;
  /** ETag (preferred) or Last-Modified of the first response; a resume needs one. */
  validator: string | null;
  total: number | null;
}

async function fetchOnce(o: DownloadOptions, st: AttemptState, attempt: number): Promise<void> {
  o.onProgress(st.sink.received, st.total, attempt); // a new attempt is news even before it gets a response
  const resumeFrom = st.validator !== null && st.sink.received > 0 ? st.sink.received : 0;
  if (resumeFrom === 0 && st.sink.received > 0) {
    await st.sink.dispose();
    st.sink = st.newSink();
  }
  const res = await request(o, resumeFrom === 0 ? {} : { range: `bytes=${resumeFrom}-`, 'if-range': st.validator as string });
  try {
    if (res.statusCode === 206 && resumeFrom > 0) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
      if (m === null || Number(m[1]) !== resumeFrom) {
        await st.sink.dispose();
        st.sink = st.newSink();
        st.validator = null;
        throw new ImportError('ConnectionFailed', `a resumed download got Content-Range '${res.headers['content-range'] ?? ''}' for offset ${resumeFrom}`, true);
      }
    } else if (res.statusCode === 200) {
      if (st.sink.received > 0) {
        await st.sink.dispose();
        st.sink = st.newSink();
      }
      const len = res.headers['content-length'];
      st.total = len !== undefined && /^\d+$/.test(len) ? Number(len) : null;
      const ranges = res.headers['accept-ranges'] === 'bytes';
      const v = res.headers.etag ?? res.headers['last-modified'] ?? null;
      st.validator = ranges && v !== null && !(typeof v === 'string' && v.startsWith('W/')) ? v : null;
    } else {
      throw statusError(res.statusCode ?? 0, o.url);
    }
    const sink = st.sink;
    o.onProgress(sink.received, st.total, attempt);
    for await (const chunk of res) {
      await sink.write(chunk as Buffer);
      o.onProgress(sink.received, st.total, attempt);
    }
    if (!res.complete || (st.total !== null && sink.received !== st.total)) {
      throw new ImportError('ConnectionFailed', `the body ended at ${sink.received} of ${st.total ?? '?'} bytes`, true);
    }
    await sink.finish();
  } finally {
    res.destroy();
  }
}

/** GET with bounded redirects; resolves with the final (non-3xx) response, body unread. */
async function request(o: DownloadOptions, extra: Record<string, string>): Promise<http.IncomingMessage> {
  let url = new URL(o.url);
  const origin = url.origin;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'virt-handler-importer', ...extra };
    if (url.origin === origin) {
      for (const h of o.extraHeaders) {
        const i = h.indexOf(':');
        headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
    }
    const res = await get(url, headers, o);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && status !== 304 && res.headers.location !== undefined) {
      res.resume();
      if (hop >= o.maxRedirects) throw new ImportError('HttpError', `more than ${o.maxRedirects} redirects from ${redact(o.url)}`, false);
      url = new URL(res.headers.location, url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ImportError('HttpError', `a redirect to a ${url.protocol} URL is not followed`, false);
      continue;
    }
    return res;
  }
}

function get(url: URL, headers: Record<string, string>, o: DownloadOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.get(url, { headers, signal: o.signal, timeout: o.idleTimeoutMs });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no data for ${o.idleTimeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('response', (res) => {
      res.on('error', () => undefined); // surfaced by the body loop
      resolve(res);
    });
    req.on('error', reject);
  });
}

function statusError(status: number, url: string): ImportError {
  const u = redact(url);
  if (status === 404 || status === 410) return new ImportError('NotFound', `${u}: HTTP ${status}`, false);
  if (status === 401 || status === 403) return new ImportError('Unauthorized', `${u}: HTTP ${status} (check the credentials / extraHeaders)`, false);
  return new ImportError('HttpError', `${u}: HTTP ${status}`, RETRYABLE_STATUS.has(status));
}

/** Turns whatever failed into an ImportError: abort -> Canceled, local write -> NoSpace/ConversionFailed, network -> ConnectionFailed (retryable). */
function classify(e: unknown, signal: AbortSignal): ImportError {
  if (signal.aborted) return canceled();
  if (e instanceof ImportError) return e;
  if (e instanceof SinkError) {
    if (e.where === 'decompress') return new ImportError('InvalidImage', `the compressed image cannot be decompressed: ${e.message}`, false, { cause: e });
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return new ImportError('NoSpace', `no space left for the download: ${e.message}`, false, { cause: e });
    return new ImportError('ConversionFailed', `writing the download failed: ${e.message}`, false, { cause: e });
  }
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new ImportError('ConnectionFailed', `download failed: ${code !== '' ? `${code} ` : ''}${(e as Error).message}`, true, { cause: e });
}

/** The URL without userinfo or query (either may hold a credential). */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search !== '' ? '?…' : ''}`;
  } catch {
    return '(invalid url)';
  }
}
