/**
 * Tests that run a child as an unprivileged user (uid 65534) need the code it loads to be
 * reachable by that user, but the checkout may sit under a directory only root can traverse
 * (`mktemp -d` is 0700, so is /root). stageForUnprivileged() copies what such a child loads -
 * the compiled sources (dist/src), the vhctl bundle, the native addon and package.json (the
 * addon loader and packageVersion() find the package root by it) - into a fresh 0755 directory
 * under the system temp dir, laid out like the checkout.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '../../..');
const PARTS = ['package.json', 'dist/src', 'dist/vhctl.cjs', 'build/Release/virt_handler_native.node'];

export interface Staged {
  /** The copy's root: `<root>/dist/src/...` mirrors the checkout's `dist/src/...`. */
  root: string;
  remove(): void;
}

export function stageForUnprivileged(): Staged {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-unpriv-'));
  fs.chmodSync(root, 0o755);
  for (const part of PARTS) {
    const to = path.join(root, part);
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
    fs.cpSync(path.join(REPO, part), to, { recursive: true });
  }
  return { root, remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}
