/**
 * Command-line parsing. Every config key has a flag (`--http-tcp-port 8185` or `--http-tcp-port=8185`);
 * booleans accept `--flag` or `--flag=true|false`. Unknown flags and stray arguments are errors.
 */
import { ErrorCodes, VhError } from '../errors';
import { KEYS, envName, flagName, type KeySpec, type Profile } from './defaults';
import { didYouMean, parseValue, type Layer } from './load';

/** What argv asked for, before any other source is consulted. */
export interface ParsedArgs {
  /** Config values given as flags (already validated per key). */
  layer: Layer;
  configFile: string | undefined;
  profile: Profile | undefined;
  help: boolean;
  version: boolean;
  printConfig: boolean;
}

const KEY_BY_FLAG = new Map<string, KeySpec>(KEYS.map((k) => [flagName(k.key), k]));
const META_FLAGS = ['config', 'profile', 'help', 'version', 'print-config'] as const;
const PROFILES: readonly Profile[] = ['production', 'dev'];

function flagError(message: string): VhError {
  return new VhError(ErrorCodes.FLAG_INVALID, `${message}; see --help`);
}

/** Parses argv (without node and script). Throws VhError FLAG_INVALID / CONFIG_INVALID. */
export function parseArgv(argv: readonly string[]): ParsedArgs {
  const out: ParsedArgs = { layer: new Map(), configFile: undefined, profile: undefined, help: false, version: false, printConfig: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') throw flagError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    let inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    const spec = KEY_BY_FLAG.get(name);
    const isBool = spec?.kind.type === 'bool' || name === 'help' || name === 'version' || name === 'print-config';
    if (!spec && !(META_FLAGS as readonly string[]).includes(name)) {
      throw flagError(`--${name}: unknown flag${didYouMean(name, [...KEY_BY_FLAG.keys(), ...META_FLAGS]).replace('mean ', 'mean --')}`);
    }
    if (inline === undefined && isBool) inline = 'true';
    if (inline === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw flagError(`--${name}: needs a value`);
      inline = next;
      i++;
    }
    const value = inline;
    if (spec) {
      out.layer.set(spec.key, { value: parseValue(spec, value, true, `--${name}`), origin: `--${name}` });
      continue;
    }
    const bool = (): boolean => {
      if (value !== 'true' && value !== 'false') throw flagError(`--${name}: must be true or false, got ${JSON.stringify(value)}`);
      return value === 'true';
    };
    switch (name) {
      case 'config':
        out.configFile = value;
        break;
      case 'profile':
        if (!(PROFILES as readonly string[]).includes(value)) throw flagError(`--profile: must be production or dev, got ${JSON.stringify(value)}`);
        out.profile = value as Profile;
        break;
      case 'help':
        out.help = bool();
        break;
      case 'version':
        out.version = bool();
        break;
      case 'print-config':
        out.printConfig = bool();
        break;
    }
  }
  return out;
}

/** The --help text, generated from the key table so it can never disagree with the parser. */
export function helpText(version: string): string {
  const rows = KEYS.map((k) => {
    const flag = k.kind.type === 'bool' ? `--${flagName(k.key)}[=true|false]` : `--${flagName(k.key)} ${valueHint(k)}`;
    return `  ${flag.padEnd(42)} ${k.doc}\n  ${''.padEnd(42)} env ${envName(k.key)}; default: ${k.defaultDoc}`;
  });
  return [
    `virt-handler ${version} - node VM agent (KVM via a Node-API addon; HTTP + gRPC on unix sockets, optional loopback HTTP and mTLS gRPC over TCP)`,
    '',
    'Usage: virt-handler [--config FILE] [--profile production|dev] [--KEY VALUE ...]',
    '',
    'Precedence: flags > VH_* environment > config file (YAML or JSON, camelCase keys) > defaults.',
    '',
    'Options:',
    `  ${'--config FILE'.padEnd(42)} YAML/JSON config file (env VH_CONFIG)`,
    `  ${'--profile production|dev'.padEnd(42)} default paths (env VH_PROFILE); production when root or under systemd`,
    `  ${'--print-config'.padEnd(42)} print the resolved config as YAML and exit`,
    `  ${'--version'.padEnd(42)} print the version and exit`,
    `  ${'-h, --help'.padEnd(42)} print this help and exit`,
    '',
    'Config keys (dev root: $XDG_RUNTIME_DIR/virt-handler, else <tmpdir>/virt-handler-<uid>):',
    ...rows,
    '',
    'Exit codes: 0 ok, 1 unexpected runtime failure, 2 invalid config/flags/usage,',
    '            3 startup failure (unwritable dirs, socket in use, listen failed), 130 forced by a second signal.',
    '',
  ].join('\n');
}

function valueHint(k: KeySpec): string {
  switch (k.kind.type) {
    case 'int': return 'N';
    case 'enum': return 'LEVEL';
    case 'switch': return 'on|off';
    case 'host': return 'HOST';
    case 'nodeName': return 'NAME';
    default: return 'PATH';
  }
}
