import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { ErrorCodes, VhError, errnoFacts } from '../errors';

/**
 * Longest unix socket path Linux accepts (sun_path is 108 bytes incl. NUL). The one definition:
 * config validation, the VMI start path and the launcher's flags all check against it.
 */
export const MAX_UNIX_PATH = 107;

/**
 * Makes `socketPath` ready for listen(): creates the parent directory (0750), refuses when a live
 * process answers on the path (SOCKET_IN_USE), and removes a stale socket left by a dead one.
 * A non-socket file at the path is never removed.
 */
export async function prepareUnixSocket(socketPath: string): Promise<void> {
  if (Buffer.byteLength(socketPath) > MAX_UNIX_PATH) {
    throw new VhError(ErrorCodes.LISTEN_FAILED, `socket path ${socketPath} is longer than ${MAX_UNIX_PATH} bytes`, { path: socketPath });
  }
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o750 });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (e) {
    if (errnoFacts(e)?.code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new VhError(ErrorCodes.SOCKET_IN_USE, `${socketPath} exists and is not a socket; remove it or choose another path`, { path: socketPath });
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(socketPath);
    const done = (v: boolean): void => {
      c.destroy();
      resolve(v);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    c.setTimeout(1000, () => done(true)); // something holds it but does not answer: treat as live
  });
  if (alive) {
    throw new VhError(ErrorCodes.SOCKET_IN_USE, `${socketPath} is in use by a running process (another virt-handler?); stop it first`, { path: socketPath });
  }
  fs.unlinkSync(socketPath);
}

/** Sets the socket's mode after listen() (umask would otherwise decide it). */
export function restrictSocket(socketPath: string, mode = 0o660): void {
  fs.chmodSync(socketPath, mode);
}
