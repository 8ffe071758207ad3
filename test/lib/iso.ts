/**
 * Reading an ISO image back with isoinfo (Debian's genisoimage package), for tests that check
 * what a launcher built: the volume id, the Rock Ridge file list with modes, and a file's bytes.
 */
import { execFileSync } from 'node:child_process';

/** The primary volume descriptor's volume id. */
export function isoVolumeId(iso: string): string {
  const out = execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' });
  const m = /^Volume id: (.*)$/m.exec(out);
  if (!m) throw new Error(`isoinfo -d printed no volume id for ${iso}`);
  return (m[1] as string).trimEnd();
}

/** Every regular file (Rock Ridge names, absolute inside the image) with its permission bits. */
export function isoFiles(iso: string): Map<string, number> {
  const out = execFileSync('isoinfo', ['-R', '-l', '-i', iso], { encoding: 'utf8' });
  const files = new Map<string, number>();
  let dir = '/';
  for (const line of out.split('\n')) {
    const d = /^Directory listing of (.*)$/.exec(line);
    if (d) {
      dir = d[1] as string;
      continue;
    }
    const f = /^-([rwx-]{9})\s.*\]\s+(.+?)\s*$/.exec(line);
    if (!f) continue;
    const bits = [...(f[1] as string)].reduce((n, c) => n * 2 + (c === '-' ? 0 : 1), 0);
    files.set(`${dir}${f[2] as string}`, bits);
  }
  return files;
}

/** One file's bytes. */
export function isoRead(iso: string, file: string): Buffer {
  return execFileSync('isoinfo', ['-R', '-i', iso, '-x', file]);
}
