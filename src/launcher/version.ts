/**
 * The package version a launcher registers with: package.json's, found by walking up from this
 * file (the bundle in dist/, or dist/src/launcher/). The same walk as src/config packageVersion,
 * kept here because importing the config module would load its file loader and YAML parser into
 * every launcher start.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export function launcherVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    // existsSync first: a failed read throws, and the first error a process builds costs ~4 ms.
    if (fs.existsSync(file)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'virt-handler' && pkg.version) return pkg.version;
      } catch {
        // unreadable or not JSON: keep walking
      }
    }
    if (path.dirname(dir) === dir) return '0.0.0-unknown';
  }
}
