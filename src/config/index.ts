/**
 * Public entry of the config slice: argv + env (+ the file they name) -> a command for main.ts.
 * Precedence: flags > VH_* env > config file > profile defaults. See README "Configuration".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config } from './types';
import { detectProfile, processContext, type DefaultsContext, type Profile } from './defaults';
import { helpText, parseArgv } from './flags';
import { layerFromEnv, readConfigFile, resolve, type Layer } from './load';

export type { Config } from './types';
export type { Profile, DefaultsContext } from './defaults';
export { KEYS, envName, flagName } from './defaults';

/** What main.ts should do. */
export type Command =
  | { kind: 'help'; text: string }
  | { kind: 'version'; text: string }
  | { kind: 'print-config'; text: string }
  | { kind: 'run'; config: Config; profile: Profile; origins: Readonly<Record<string, string>> };

/** The package version, found by walking up from this file (works from src/ and dist/src/). */
export function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'virt-handler' && pkg.version) return pkg.version;
    } catch {
      // not here; keep walking
    }
    if (path.dirname(dir) === dir) return '0.0.0-unknown';
  }
}

/**
 * Parses the command line and environment into a Command. Throws VhError CONFIG_INVALID or
 * FLAG_INVALID (exit code 2) with a message that names the offending key, variable or flag.
 * `ctx` defaults to the real process (env, uid, hostname, tmpdir); tests pass their own.
 */
export function parseCommandLine(argv: readonly string[], ctx: DefaultsContext = processContext()): Command {
  const args = parseArgv(argv);
  const version = packageVersion();
  if (args.help) return { kind: 'help', text: helpText(version) };
  if (args.version) return { kind: 'version', text: `virt-handler ${version}\n` };

  const profile = args.profile ?? detectProfile(ctx);

  const layers: Layer[] = [];
  const file = args.configFile ?? ctx.env.VH_CONFIG;
  if (file !== undefined) layers.push(readConfigFile(path.resolve(file)));
  layers.push(layerFromEnv(ctx.env), args.layer);
  const { config, origins } = resolve(profile, ctx, layers);

  if (args.printConfig) {
    const YAML = require('yaml') as typeof import('yaml');
    return { kind: 'print-config', text: `# virt-handler ${version}, profile ${profile}\n${YAML.stringify(config)}` };
  }
  return { kind: 'run', config, profile, origins };
}
