/** Runs the vhctl CLI (the tsc output, not the bundle) as a child process, with a clean VH_* environment. */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const VHCTL = path.resolve(__dirname, '../../src/cli/vhctl.js');

export interface VhctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `vhctl ARGS` with stdin `input`; killed after 20 s. The daemon's VH_* variables (and
 * XDG_CACHE_HOME, vhctl's instancetype cache) are dropped from the inherited environment so the
 * developer's shell cannot change a test; `env` adds what the test wants.
 */
/** The script, for tests that drive a vhctl process themselves (an interactive console). */
export const VHCTL_SCRIPT = VHCTL;

export function runVhctl(args: readonly string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<VhctlResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VH_') && k !== 'XDG_CACHE_HOME'));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VHCTL, ...args], { env: { ...base, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}
