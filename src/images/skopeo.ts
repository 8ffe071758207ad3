/**
 * skopeo as the registry client: it speaks the v2 protocol (auth, redirects, retries, manifest
 * lists, digest checks) and we keep none of that by hand. It runs with an argument array (no
 * shell), an environment of its own (an empty registries.conf and an accept-all policy under
 * the store, so host-wide container config cannot redirect the node; HOME points at the store so
 * no stray ~/.docker/config.json is read) and credentials only from the configured auth file.
 * Its failure text becomes an ImageFailureReason.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageError, type ImageFailureReason } from './errors';

/** How skopeo is run; fixed when the store opens. */
export interface SkopeoOptions {
  /** The skopeo binary (tests wrap it to count runs). */
  binary: string;
  /** Directory for the policy, registries.conf and skopeo's temporary files (on the store's file system). */
  configDir: string;
  /** A containers-auth.json / docker config.json; never read or logged by us, passed to skopeo. */
  authFile?: string;
  /** Kills a copy that takes longer. */
  timeoutMs: number;
}

/** One copy: source and destination in skopeo's transport syntax. */
export interface CopyRequest {
  src: string;
  dest: string;
  /** Plain HTTP / unverified TLS for the source (loopback registries only; checked by the caller). */
  srcInsecure?: boolean;
  signal?: AbortSignal;
}

/** Writes skopeo's private config once; idempotent. */
export function prepareSkopeoConfig(configDir: string): void {
  fs.mkdirSync(path.join(configDir, 'tmp'), { recursive: true, mode: 0o700 });
  const policy = path.join(configDir, 'policy.json');
  if (!fs.existsSync(policy)) fs.writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }) + '\n', { mode: 0o644 });
  const conf = path.join(configDir, 'registries.conf');
  if (!fs.existsSync(conf)) fs.writeFileSync(conf, '# virt-handler image store: mirrors and rewrites come from the node config, not from here.\n', { mode: 0o644 });
}

/** Runs `skopeo copy`; resolves when it exits 0, else throws an ImageError with skopeo's reason. */
export async function skopeoCopy(o: SkopeoOptions, r: CopyRequest): Promise<void> {
  const args = ['copy', '--quiet', '--retry-times', '0'];
  if (o.authFile !== undefined) args.push('--src-authfile', o.authFile);
  if (r.srcInsecure === true) args.push('--src-tls-verify=false');
  args.push(r.src, r.dest);
  await run(o, args, r.src, 'copying', r.signal);
}

/** `skopeo inspect --raw`: the manifest (or index) bytes the registry serves for `src` now. */
export function skopeoInspectRaw(o: SkopeoOptions, src: string, insecure: boolean): Promise<Buffer> {
  const args = ['inspect', '--raw', '--retry-times', '0'];
  if (o.authFile !== undefined) args.push('--authfile', o.authFile);
  if (insecure) args.push('--tls-verify=false');
  args.push(src);
  return run(o, args, src, 'inspecting');
}

function run(o: SkopeoOptions, sub: readonly string[], src: string, verb: string, signal?: AbortSignal): Promise<Buffer> {
  const args = ['--policy', path.join(o.configDir, 'policy.json'), '--tmpdir', path.join(o.configDir, 'tmp'), ...sub];
  return new Promise((resolve, reject) => {
    const child = spawn(o.binary, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: o.configDir,
        XDG_RUNTIME_DIR: o.configDir,
        TMPDIR: path.join(o.configDir, 'tmp'),
        CONTAINERS_REGISTRIES_CONF: path.join(o.configDir, 'registries.conf'),
      },
    });
    const out: Buffer[] = [];
    let outBytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      if ((outBytes += d.length) <= 4 << 20) out.push(d);
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 16384) stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new ImageError('PullFailed', `cannot run ${o.binary}: ${e.message} (install it: apt-get install skopeo)`, { src }, { cause: e }));
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (code === 0) return resolve(Buffer.concat(out));
      const text = stderr.trim().replace(/\s+/g, ' ');
      const why = sig !== null ? `killed by ${sig}${signal?.aborted === true ? ' (aborted)' : ` (timeout ${o.timeoutMs} ms?)`}` : `exit ${code}`;
      const reason = classify(text);
      reject(new ImageError(reason, `${/^(oci|docker)-archive:/.test(src) ? describeArchive(reason) : describe(reason)} ${verb} ${src}: ${lastLine(text) || why}`, { src, exitCode: code, signal: sig }));
    });
  });
}

/** skopeo/containers-image error text -> our reason (their wording, matched loosely). */
export function classify(text: string): ImageFailureReason {
  const t = text.toLowerCase();
  if (/manifest unknown|name unknown|not found|\b404\b|no such image|blob unknown/.test(t)) return 'NotFound';
  if (/unauthorized|authentication required|denied|\b401\b|\b403\b/.test(t)) return 'Unauthorized';
  if (/digest did not match|digest mismatch|does not match digest|unexpected digest/.test(t)) return 'DigestMismatch';
  if (/unexpected eof|size mismatch|short read|expected \d+ bytes|truncated/.test(t)) return 'Truncated';
  if (/no space left/.test(t)) return 'NoSpace';
  if (/connection refused|no such host|i\/o timeout|network is unreachable|connection reset|timeout|dial tcp|pinging container registry/.test(t)) return 'RegistryUnreachable';
  return 'PullFailed';
}

function describe(r: ImageFailureReason): string {
  switch (r) {
    case 'NotFound':
      return 'image not found in the registry (404)';
    case 'Unauthorized':
      return 'registry refused the credentials (check the node auth file)';
    case 'DigestMismatch':
      return 'registry served content that does not match its digest';
    case 'Truncated':
      return 'registry served a truncated blob';
    case 'NoSpace':
      return 'no space left in the image store';
    case 'RegistryUnreachable':
      return 'registry unreachable (check the host, port and the node mirrors/rewrites)';
    default:
      return 'pull failed';
  }
}

/** The same for a local archive (an import): no registry involved. */
function describeArchive(r: ImageFailureReason): string {
  if (r === 'Truncated') return 'the archive is truncated or not a tar archive';
  if (r === 'DigestMismatch') return 'the archive holds content that does not match its digest';
  if (r === 'NotFound') return 'the archive does not hold the image';
  return 'import failed';
}

/** The most specific part of a containers-image error chain (after its last "msg=" / "Error: "). */
function lastLine(text: string): string {
  const m = /(?:level=fatal msg=|Error: )(.*)$/s.exec(text);
  const s = (m?.[1] ?? text).replace(/\\"/g, '"').replace(/^"|"$/g, '');
  return s.length > 600 ? `${s.slice(0, 600)}...` : s;
}
