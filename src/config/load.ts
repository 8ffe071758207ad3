/**
 * Turns the four sources (defaults < file < env < flags) into one validated, deep-frozen Config.
 * Every explicitly supplied value is validated where it was read, so the message names the key
 * AND where the bad value came from; nothing falls back silently to a default.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Config, LogLevel } from './types';
import { ErrorCodes, VhError } from '../errors';
import { parseLibvirtUri } from '../libvirt/uri';
import { MAX_UNIX_PATH } from '../util/unix-socket';
import { KEYS, envName, flagName, type KeySpec, type DefaultsContext, type Profile, defaultValues } from './defaults';

const KEY_BY_NAME = new Map(KEYS.map((k) => [k.key, k]));
const KEY_BY_ENV = new Map(KEYS.map((k) => [envName(k.key), k]));
/** Dotted prefixes that hold mappings in a config file ('http', 'http.tcp', ...). */
const CONTAINERS = new Set(KEYS.flatMap((k) => k.key.split('.').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('.'))));

/** Env vars with the VH_ prefix that are not keys but are understood by index.ts. */
export const META_ENV = ['VH_CONFIG', 'VH_PROFILE'] as const;

/** A parsed value and where it came from ('default', 'VH_LOG_LEVEL', '--log-level', 'file /etc/x.yaml'). */
export interface Sourced {
  value: unknown;
  origin: string;
}

/** Values from one source, keyed by dotted key. */
export type Layer = Map<string, Sourced>;

/** A registry host[:port] ([v6] literals included) with an optional repository prefix. */
const REGISTRY_RE = /^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?(\/[a-z0-9._-]+)*$/;
/** The hosts ImageStore lets go without TLS (src/images/reference.ts isLoopbackRegistry). */
const LOOPBACK_REGISTRY_RE = /^(localhost|\[::1\]|127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})(:[0-9]{1,5})?$/;
const QUANTITY_UNITS: Record<string, number> = {
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15,
};

function invalid(key: string, message: string): VhError {
  return new VhError(ErrorCodes.CONFIG_INVALID, `${key}: ${message}`, { key });
}

function show(raw: unknown): string {
  const s = JSON.stringify(raw) ?? String(raw);
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/**
 * Parses and checks one value. `text` is true for env/flag strings (which need conversion) and
 * false for file values (which must already have the right YAML type: `port: "80"` is refused).
 */
export function parseValue(spec: KeySpec, raw: unknown, text: boolean, origin: string): unknown {
  const fail = (must: string): never => {
    throw invalid(spec.key, `${must}, got ${show(raw)} (from ${origin})`);
  };
  const k = spec.kind;
  switch (k.type) {
    case 'int': {
      const must = `must be an integer ${k.min}-${k.max}${k.hint ? ` (${k.hint})` : ''}`;
      let n: number;
      if (text) {
        if (typeof raw !== 'string' || !/^[0-9]+$/.test(raw.trim())) return fail(must);
        n = Number(raw.trim());
      } else {
        if (typeof raw !== 'number') return fail(must);
        n = raw;
      }
      if (!Number.isSafeInteger(n) || n < k.min || n > k.max) return fail(must);
      return n;
    }
    case 'bool':
      if (!text && typeof raw === 'boolean') return raw;
      if (text && (raw === 'true' || raw === 'false')) return raw === 'true';
      return fail('must be true or false');
    case 'switch':
      if (!text) return fail('must be a mapping or null');
      if (raw === 'on' || raw === 'true') return true;
      if (raw === 'off' || raw === 'false') return false;
      return fail('must be on or off');
    case 'enum':
      if (typeof raw !== 'string' || !k.values.includes(raw)) return fail(`must be one of ${k.values.join(', ')}`);
      return raw;
    case 'nodeName':
      if (typeof raw !== 'string' || raw.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(raw)) {
        return fail("must be a lower-case RFC 1123 name (a-z, 0-9, '-', '.'; at most 253 characters)");
      }
      return raw;
    case 'path':
    case 'socket': {
      if (k.type === 'path' && k.nullable && (text ? raw === '' : raw === null)) return null;
      const limit = k.type === 'socket' ? ` of at most ${MAX_UNIX_PATH} bytes` : '';
      if (typeof raw !== 'string' || !path.isAbsolute(raw) || raw.includes('\0')) return fail(`must be an absolute path${limit}`);
      if (k.type === 'socket' && Buffer.byteLength(raw) > MAX_UNIX_PATH) return fail(`must be an absolute path${limit}`);
      // Node 20's recursive mkdir spins forever (100% CPU, deaf to SIGTERM) under procfs/sysfs.
      if ((k.type === 'socket' || k.writable) && /^\/(proc|sys)(\/|$)/.test(path.normalize(raw))) return fail('must not be under /proc or /sys');
      return path.normalize(raw);
    }
    case 'libvirtUri': {
      if (raw === 'off') return null;
      if (!text && raw === null) return null;
      if (typeof raw !== 'string') return fail("must be a libvirt URI or 'off'");
      const parsed = parseLibvirtUri(raw);
      if (typeof parsed === 'string') return fail(parsed);
      return raw;
    }
    case 'pathList': {
      const items = text ? (typeof raw === 'string' ? (raw === '' ? [] : raw.split(':')) : null) : Array.isArray(raw) ? raw : null;
      if (items === null) return fail(text ? "must be ':'-separated absolute paths" : 'must be a list of absolute paths');
      return items.map((item) => {
        if (typeof item !== 'string' || !path.isAbsolute(item) || item.includes('\0') || item.split('/').includes('..')) {
          return fail(`must be absolute paths without '..' (bad entry ${show(item)})`);
        }
        return path.normalize(item);
      });
    }
    case 'ifname':
      if (!text && raw === null) return ''; // --print-config writes the resolved null back
      if (typeof raw !== 'string' || !/^([A-Za-z0-9_.-]{1,15})?$/.test(raw)) return fail("must be a network interface name (1-15 of A-Z a-z 0-9 _ . -) or ''");
      return raw;
    case 'registryMap':
    case 'registryMirrors': {
      const mirrors = k.type === 'registryMirrors';
      const must = mirrors
        ? "must map registry hosts to lists of registries (text: 'host=m1|m2,host=m3')"
        : "must map registry prefixes to registry prefixes (text: 'from=to,from=to')";
      let entries: Array<[unknown, unknown]>;
      if (text) {
        if (typeof raw !== 'string') return fail(must);
        entries = raw === '' ? [] : raw.split(',').map((e) => {
          const eq = e.indexOf('=');
          if (eq === -1) return fail(must);
          const to = e.slice(eq + 1);
          return [e.slice(0, eq), mirrors ? to.split('|') : to];
        });
      } else {
        if (!isMapping(raw)) return fail(must);
        entries = Object.entries(raw);
      }
      const out: Record<string, string | string[]> = {};
      for (const [from, to] of entries) {
        if (typeof from !== 'string' || !REGISTRY_RE.test(from) || (mirrors && from.includes('/'))) return fail(`${must}; bad key ${show(from)}`);
        if (mirrors) {
          if (!Array.isArray(to) || to.length === 0 || !to.every((m) => typeof m === 'string' && REGISTRY_RE.test(m))) return fail(`${must}; bad mirrors for ${from}`);
          out[from] = [...(to as string[])];
        } else {
          if (typeof to !== 'string' || !REGISTRY_RE.test(to)) return fail(`${must}; bad target for ${from}`);
          out[from] = to;
        }
      }
      return out;
    }
    case 'loopbackRegistries': {
      const must = "must be loopback registries (127.0.0.0/8, [::1] or localhost, with an optional :port) reached without TLS";
      const items = text ? (typeof raw === 'string' ? (raw === '' ? [] : raw.split(',')) : null) : Array.isArray(raw) ? raw : null;
      if (items === null) return fail(text ? `${must}, ','-separated` : `${must}, as a list`);
      for (const item of items) {
        if (typeof item !== 'string' || !LOOPBACK_REGISTRY_RE.test(item)) return fail(`${must}; bad entry ${show(item)}`);
      }
      return [...(items as string[])];
    }
    case 'bytes': {
      const must = `must be a byte count ${k.min}-${k.max} (an integer or a quantity such as 512Mi, 64Gi)`;
      let n: number;
      if (!text && typeof raw === 'number') n = raw;
      else if (typeof raw === 'string') {
        const m = /^([0-9]+)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$/.exec(raw.trim());
        if (!m) return fail(must);
        n = Number(m[1]) * (m[2] ? QUANTITY_UNITS[m[2]]! : 1);
      } else return fail(must);
      if (!Number.isSafeInteger(n) || n < k.min || n > k.max) return fail(must);
      return n;
    }
    case 'host':
      if (typeof raw !== 'string' || !(net.isIP(raw) || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(raw))) {
        return fail('must be an IP address or a host name');
      }
      return raw;
  }
}

/** Suggests the closest known name (edit distance <= 2) for a typo. */
export function didYouMean(name: string, known: Iterable<string>): string {
  let best = '';
  let bestD = 3;
  for (const cand of known) {
    const d = editDistance(name.toLowerCase(), cand.toLowerCase());
    if (d < bestD) [best, bestD] = [cand, d];
  }
  return best ? ` (did you mean ${best}?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads a YAML or JSON file (JSON is YAML) into a layer; unknown keys and duplicate keys are refused. */
export function readConfigFile(file: string): Layer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new VhError(ErrorCodes.CONFIG_INVALID, `config file ${file}: cannot be read (${code})`, { path: file });
  }
  // Loaded lazily: most runs (systemd, tests, demo) pass no file and skip the parse cost.
  const YAML = require('yaml') as typeof import('yaml');
  let data: unknown;
  try {
    data = YAML.parse(text, { uniqueKeys: true, prettyErrors: true });
  } catch (e) {
    throw new VhError(ErrorCodes.CONFIG_INVALID, `config file ${file}: ${(e as Error).message.split('\n')[0]}`, { path: file });
  }
  return layerFromObject(data ?? {}, `file ${file}`);
}

/** Flattens a parsed config document into a layer (exported for tests and --print-config round trips). */
export function layerFromObject(data: unknown, origin: string): Layer {
  const layer: Layer = new Map();
  if (!isMapping(data)) throw new VhError(ErrorCodes.CONFIG_INVALID, `${origin}: the top level must be a mapping, got ${show(data)}`);
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      const spec = KEY_BY_NAME.get(key);
      if (spec && spec.kind.type !== 'switch') {
        layer.set(key, { value: parseValue(spec, v, false, origin), origin });
      } else if (CONTAINERS.has(key)) {
        // A switch key (http.tcp, grpc.tcp) in a file: null turns the listener off, a mapping on.
        const isSwitch = spec?.kind.type === 'switch';
        if (isSwitch && v === null) layer.set(key, { value: false, origin });
        else if (isMapping(v)) {
          if (isSwitch) layer.set(key, { value: true, origin });
          walk(v, key);
        } else throw invalid(key, `must be a mapping${isSwitch ? ' or null' : ''}, got ${show(v)} (from ${origin})`);
      } else if (key === 'grpc.tcp.tls' && isMapping(v)) {
        // Config.grpc.tcp.tls as --print-config writes it; the keys are grpc.tls.*.
        walk(v, 'grpc.tls');
      } else {
        throw invalid(key, `unknown key (from ${origin})${didYouMean(key, [...KEY_BY_NAME.keys(), ...CONTAINERS])}`);
      }
    }
  };
  walk(data, '');
  return layer;
}

/**
 * Reads VH_* variables into a layer. The VH_ prefix belongs to the daemon's configuration alone
 * (scripts and tests use their own prefixes, VHDEV_ and VHTEST_, which are never looked at), so
 * any other VH_ variable is an error - almost always a typo; the closest name is suggested.
 */
export function layerFromEnv(env: Readonly<Record<string, string | undefined>>): Layer {
  const layer: Layer = new Map();
  const known = [...KEY_BY_ENV.keys(), ...META_ENV];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('VH_') || raw === undefined || (META_ENV as readonly string[]).includes(name)) continue;
    const spec = KEY_BY_ENV.get(name);
    if (!spec) {
      const suggestion = didYouMean(name, known) || ' (VH_ variables are configuration keys; virt-handler --help lists them)';
      throw new VhError(ErrorCodes.CONFIG_INVALID, `${name}: unknown environment variable${suggestion}`, { env: name });
    }
    layer.set(spec.key, { value: parseValue(spec, raw, true, name), origin: name });
  }
  return layer;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** The outcome of resolve(): the frozen config and where each key's value came from. */
export interface Resolved {
  config: Config;
  origins: Readonly<Record<string, string>>;
}

/**
 * Merges layers (later wins), validates defaults that won, derives socket paths from runDir,
 * applies cross-key rules, and returns a deep-frozen Config.
 */
export function resolve(profile: Profile, ctx: DefaultsContext, layers: readonly Layer[]): Resolved {
  const merged = new Map<string, Sourced>();
  const defaults = defaultValues(profile, ctx);
  for (const [key, raw] of Object.entries(defaults)) {
    const origin = key === 'nodeName' ? (ctx.env.NODE_NAME !== undefined ? 'NODE_NAME' : 'hostname; set NODE_NAME or --node-name') : 'default';
    merged.set(key, { value: raw, origin });
  }
  const explicit = new Set<string>();
  for (const layer of layers) for (const [k, v] of layer) (merged.set(k, v), explicit.add(k));

  // Defaults are checked only when they win (a bad hostname must not matter when --node-name is given).
  for (const [key, s] of merged) {
    const spec = KEY_BY_NAME.get(key);
    if (!explicit.has(key) && spec && spec.kind.type !== 'switch') s.value = parseValue(spec, s.value, false, s.origin);
  }
  const runDir = merged.get('runDir')!.value as string;
  for (const [key, file] of [['http.socket', 'http.sock'], ['grpc.socket', 'grpc.sock']] as const) {
    if (!merged.has(key)) {
      const origin = `default ${'<runDir>/' + file}`;
      merged.set(key, { value: parseValue(KEY_BY_NAME.get(key)!, path.join(runDir, file), false, origin), origin });
    }
  }
  const get = <T>(key: string): T => merged.get(key)!.value as T;

  const tcpOn = get<boolean>('http.tcp');
  const host = get<string>('http.tcp.host');
  if (tcpOn && !isLoopback(host) && !get<boolean>('http.allowNonLoopback')) {
    throw invalid('http.tcp.host', `${show(host)} (from ${merged.get('http.tcp.host')!.origin}) is not a loopback address; ` +
      'set http.allowNonLoopback=true to expose the status API beyond this host');
  }
  if (get<string>('http.socket') === get<string>('grpc.socket')) {
    throw invalid('grpc.socket', `must differ from http.socket, both are ${show(get('grpc.socket'))}`);
  }

  // gRPC over TCP: off by default; when on, mutual TLS is mandatory (a non-loopback host is
  // allowed because every client must present a certificate signed by grpc.tls.ca).
  const grpcTcpOn = get<boolean>('grpc.tcp');
  let grpcTcp: Config['grpc']['tcp'] = null;
  if (grpcTcpOn) {
    for (const key of ['grpc.tls.cert', 'grpc.tls.key', 'grpc.tls.ca']) {
      if (!merged.has(key)) {
        throw invalid(key, `is required when grpc.tcp is on (from ${merged.get('grpc.tcp')!.origin}); ` +
          `set ${envName(key)} or --${flagName(key)} to an absolute path`);
      }
    }
    const gHost = get<string>('grpc.tcp.host');
    const gPort = get<number>('grpc.tcp.port');
    const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '::';
    if (tcpOn && gPort !== 0 && gPort === get<number>('http.tcp.port') && (gHost === host || wildcard(gHost) || wildcard(host))) {
      throw invalid('grpc.tcp.port', `${gPort} (from ${merged.get('grpc.tcp.port')!.origin}) is already http.tcp.port on an overlapping address`);
    }
    grpcTcp = { host: gHost, port: gPort, tls: { cert: get('grpc.tls.cert'), key: get('grpc.tls.key'), ca: get('grpc.tls.ca') } };
  }

  // The store's files are its own (GC removes them): a VMI must not reach them as a host path.
  const imageRoot = merged.has('vmi.imageRoot') ? get<string>('vmi.imageRoot') : path.join(get<string>('stateDir'), 'images');
  const imagesRoot = merged.has('images.root') ? get<string>('images.root') : path.join(get<string>('stateDir'), 'image-store');
  const within = (a: string, b: string): boolean => a === b || a.startsWith(b.endsWith('/') ? b : b + '/');
  if (within(imagesRoot, imageRoot) || within(imageRoot, imagesRoot)) {
    throw invalid('images.root', `${show(imagesRoot)} (from ${merged.get('images.root')?.origin ?? 'default <stateDir>/image-store'}) must not overlap vmi.imageRoot ${show(imageRoot)}`);
  }

  const config: Config = {
    nodeName: get('nodeName'),
    stateDir: get('stateDir'),
    runDir,
    log: { level: get<LogLevel>('log.level') },
    http: {
      socket: get('http.socket'),
      tcp: tcpOn ? { host, port: get('http.tcp.port') } : null,
      allowNonLoopback: get('http.allowNonLoopback'),
    },
    grpc: { socket: get('grpc.socket'), tcp: grpcTcp },
    shutdown: { drainTimeoutMs: get('shutdown.drainTimeoutMs') },
    probe: {
      procRoot: get('probe.procRoot'),
      sysRoot: get('probe.sysRoot'),
      devRoot: get('probe.devRoot'),
      kvmDevice: get('probe.kvmDevice'),
    },
    vmi: {
      imageRoot,
      hostPathRoots: get('vmi.hostPathRoots'),
      allowTcg: get('vmi.allowTcg'),
      embeddedLibvirt: get('vmi.embeddedLibvirt'),
      maxVmis: get('vmi.maxVmis'),
      bridge: get<string>('vmi.bridge') === '' ? null : get('vmi.bridge'),
      reconcileWorkers: get('vmi.reconcileWorkers'),
    },
    images: {
      root: imagesRoot,
      rewrites: get('images.rewrites'),
      mirrors: get('images.mirrors'),
      authFile: get<string | null>('images.authFile'),
      insecureRegistries: get('images.insecureRegistries'),
      maxImageSize: get('images.maxImageSize'),
    },
    volumes: {
      claimRoot: merged.has('volumes.claimRoot') ? get<string>('volumes.claimRoot') : path.join(get<string>('stateDir'), 'volumes'),
      objectRoot: merged.has('volumes.objectRoot') ? get<string>('volumes.objectRoot') : path.join(get<string>('stateDir'), 'objects'),
    },
    libvirt: {
      uri: get<string | null>('libvirt.uri'),
      required: get('libvirt.required'),
      lanes: get('libvirt.lanes'),
    },
  };
  const origins = Object.fromEntries([...merged].map(([k, s]) => [k, s.origin]));
  return { config: deepFreeze(config), origins: Object.freeze(origins) };
}
