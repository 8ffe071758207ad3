/**
 * The importer's one way to run a tool: spawn with an argument array (no shell), a timeout,
 * SIGKILL on abort or timeout, bounded output capture, and an optional line callback for tools
 * that report progress on stdout (qemu-img convert -p).
 */
import { spawn } from 'node:child_process';
import { ImportError } from './types';

export interface ToolOptions {
  signal: AbortSignal;
  timeoutMs: number;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/** A tool that ran and failed: its exit code (or signal) and stderr. */
export class ToolError extends Error {
  constructor(message: string, readonly stderr: string, readonly exitCode: number | null) {
    super(message);
    this.name = 'ToolError';
  }
}

const CAP = 1 << 20;

/** Runs `cmd args`; rejects with ImportError Canceled on abort, ToolError on a non-zero exit or a timeout. */
export function runTool(cmd: string, args: readonly string[], o: ToolOptions, onStdout?: (text: string) => void): Promise<ToolResult> {
  if (o.signal.aborted) return Promise.reject(canceled());
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: o.timeoutMs, killSignal: 'SIGKILL', signal: o.signal });
    let stdout = '';
    let stderr = '';
    let spawnError: Error | null = null;
    child.stdout.on('data', (d: Buffer) => {
      const s = d.toString();
      if (onStdout !== undefined) onStdout(s);
      else if (stdout.length < CAP) stdout += s;
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < CAP) stderr += d.toString();
    });
    child.on('error', (e) => {
      spawnError = e;
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') reject(new ToolError(`${cmd} is not installed (apt-get install qemu-utils xz-utils)`, '', null));
    });
    child.on('close', (code, sig) => {
      if (o.signal.aborted) return reject(canceled());
      if (spawnError !== null) return reject(new ToolError(`${cmd}: ${(spawnError as Error).message}`, '', null));
      if (code === 0) return resolve({ stdout, stderr });
      const why = sig !== null ? `killed by ${sig}${sig === 'SIGKILL' ? ` (timeout ${o.timeoutMs} ms?)` : ''}` : `exit ${code}`;
      reject(new ToolError(`${cmd} ${args[0] ?? ''} failed (${why}): ${stderr.trim().split('\n')[0] ?? ''}`, stderr, code));
    });
  });
}

export function canceled(): ImportError {
  return new ImportError('Canceled', 'the import was canceled', false);
}
