/**
 * Which libvirt URIs the daemon accepts, checked before anything is opened. A node agent only
 * ever talks to the libvirt on its own node, so remote transports (tcp, tls, ssh, libssh) are
 * refused: they would need credentials and would let a config value point the agent elsewhere.
 *
 *   test:///default                       libvirt's in-process mock driver (tests, demos)
 *   qemu:///system                        the node's libvirtd / virtqemud, default socket
 *   qemu+unix:///system?socket=/abs/path  the same through an explicit socket
 *   qemu:///embed?root=/abs/dir           the QEMU driver inside this process (no daemon)
 */
import * as path from 'node:path';

/** A URI that passed validation. */
export interface LibvirtUri {
  uri: string;
  driver: 'test' | 'qemu';
  /** 'default' (test), 'system', 'session' or 'embed'. */
  instance: string;
  /** For qemu+unix: the socket; for embed: the root directory. */
  socket?: string;
  root?: string;
}

/** Validates `uri`; returns the parsed form or an error message (without the key name). */
export function parseLibvirtUri(uri: string): LibvirtUri | string {
  if (typeof uri !== 'string' || uri.length === 0) return 'must be a libvirt URI';
  if (uri.length > 1024) return 'must be at most 1024 characters';
  // No control characters, spaces or quotes anywhere: the value reaches logs and libvirt.
  if (/[\u0000-\u0020\u007f"'`\\]/.test(uri)) return 'must not contain spaces, quotes, backslashes or control characters';
  const m = /^([a-z]+)(\+([a-z]+))?:\/\/([^/?#]*)\/([a-z]+)(\?([^#]*))?$/.exec(uri);
  if (!m) return 'must look like driver[+unix]:///instance[?param=value], e.g. qemu:///system';
  const [, driver, , transport, host, instance, , query] = m as unknown as [string, string, string | undefined, string | undefined, string, string, string | undefined, string | undefined];
  if (host !== '') return `must not name a host (${JSON.stringify(host)}): only this node's libvirt is supported`;
  if (transport !== undefined && transport !== 'unix') return `transport +${transport} is not supported (only +unix): only this node's libvirt is supported`;
  const params = new Map<string, string>();
  if (query !== undefined && query !== '') {
    for (const part of query.split('&')) {
      const eq = part.indexOf('=');
      if (eq <= 0) return `query parameter ${JSON.stringify(part)} must be name=value`;
      const name = part.slice(0, eq);
      let value: string;
      try {
        value = decodeURIComponent(part.slice(eq + 1));
      } catch {
        return `query parameter ${name} is not valid percent-encoding`;
      }
      if (params.has(name)) return `query parameter ${name} is given twice`;
      params.set(name, value);
    }
  }
  const absolute = (name: string, v: string | undefined): string | null => {
    if (v === undefined) return `${name}= is required`;
    if (!path.isAbsolute(v) || v.includes('\0')) return `${name}= must be an absolute path`;
    if (v.split('/').includes('..')) return `${name}= must not contain '..'`;
    return null;
  };
  if (driver === 'test') {
    if (transport || instance !== 'default' || params.size > 0) return 'the test driver URI must be exactly test:///default';
    return { uri, driver: 'test', instance };
  }
  if (driver !== 'qemu') return `driver ${JSON.stringify(driver)} is not supported (qemu or test)`;
  if (instance === 'embed') {
    if (transport) return 'qemu:///embed runs in-process and takes no transport';
    const bad = absolute('root', params.get('root'));
    if (bad) return bad;
    for (const k of params.keys()) if (k !== 'root') return `unknown query parameter ${k} for qemu:///embed (root only)`;
    return { uri, driver: 'qemu', instance, root: params.get('root') as string };
  }
  if (instance !== 'system' && instance !== 'session') return `qemu instance ${JSON.stringify(instance)} is not supported (system, session or embed)`;
  for (const k of params.keys()) if (k !== 'socket') return `unknown query parameter ${k} (socket only)`;
  if (params.has('socket')) {
    if (transport !== 'unix') return 'socket= needs the +unix transport, e.g. qemu+unix:///system?socket=/run/libvirt/libvirt-sock';
    const bad = absolute('socket', params.get('socket'));
    if (bad) return bad;
    return { uri, driver: 'qemu', instance, socket: params.get('socket') as string };
  }
  return { uri, driver: 'qemu', instance };
}
