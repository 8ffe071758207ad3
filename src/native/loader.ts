/**
 * Finds and loads the C++ addon (build/Release, then build/Debug). Every failure becomes one
 * VhError naming each path tried and how to build the addon, so an operator never has to
 * decode a bare `Cannot find module` or a dlopen error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, VhError, errorFirstLine } from '../errors';
import type { NativeBinding } from './binding';

/** File name node-gyp gives the addon (target_name in binding.gyp). */
export const ADDON_FILE = 'virt_handler_native.node';

/**
 * Exports every build of the addon must have; a stale build missing one is refused. Typed as a
 * record over NativeBinding's keys so a new export cannot be forgotten here.
 */
const EXPORT_TABLE: Record<keyof NativeBinding, true> = {
  KvmSystem: true,
  capabilityNames: true,
  decodeCpuidFeatures: true,
  sdNotify: true,
  hostPageSize: true,
  UserspaceDirtyTracker: true,
  bitmapToRuns: true,
  bitmapPopcount: true,
};
/** Names of every export the loader requires (NativeBinding's keys). */
export const NATIVE_EXPORTS = Object.keys(EXPORT_TABLE) as ReadonlyArray<keyof NativeBinding>;

/**
 * The package root: the nearest ancestor of this file holding package.json. Works both from
 * src/native (ts-node, tests of sources) and dist/src/native (compiled).
 */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(__dirname, '../../..');
    dir = parent;
  }
}

/** Addon paths in the order loadNative() tries them. */
export function defaultAddonCandidates(root: string = packageRoot()): string[] {
  return [path.join(root, 'build', 'Release', ADDON_FILE), path.join(root, 'build', 'Debug', ADDON_FILE)];
}

/**
 * Loads the first candidate that exists and exports the full NativeBinding; throws
 * VhError(NATIVE_UNAVAILABLE) listing why each candidate was rejected. Not cached.
 */
export function loadNativeFrom(candidates: readonly string[]): NativeBinding {
  const tried: string[] = [];
  for (const file of candidates) {
    if (!fs.existsSync(file)) {
      tried.push(`${file} (not found)`);
      continue;
    }
    let mod: Record<string, unknown>;
    try {
      mod = require(file) as Record<string, unknown>;
    } catch (e) {
      // Typically an ABI mismatch after a Node upgrade or a missing shared library.
      tried.push(`${file} (failed to load: ${errorFirstLine(e)})`);
      continue;
    }
    const missing = NATIVE_EXPORTS.filter((name) => typeof mod[name] !== 'function');
    if (missing.length > 0) {
      tried.push(`${file} (stale build, missing ${missing.join(', ')})`);
      continue;
    }
    return mod as unknown as NativeBinding;
  }
  throw new VhError(
    ErrorCodes.NATIVE_UNAVAILABLE,
    `native addon not available; tried ${tried.join('; ')}. ` +
      'Run `npm run build:native` (needs g++, make and python3).',
    { tried: candidates.slice() },
  );
}

let cached: { native: NativeBinding | null; error: string | null; failure: VhError | null } | null = null;

function load(): NonNullable<typeof cached> {
  if (!cached) {
    try {
      cached = { native: loadNativeFrom(defaultAddonCandidates()), error: null, failure: null };
    } catch (e) {
      const failure = e instanceof VhError ? e : new VhError(ErrorCodes.NATIVE_UNAVAILABLE, String(e), {}, { cause: e });
      cached = { native: null, error: failure.message, failure };
    }
  }
  return cached;
}

/** The addon from the default locations, loaded once; throws VhError(NATIVE_UNAVAILABLE). */
export function loadNative(): NativeBinding {
  const { native, failure } = load();
  if (native) return native;
  throw failure ?? new VhError(ErrorCodes.NATIVE_UNAVAILABLE, 'native addon not available');
}

/**
 * Like loadNative() but never throws: `error` is the operator-readable reason when `native`
 * is null. The first answer is cached for the life of the process.
 */
export function tryLoadNative(): { native: NativeBinding | null; error: string | null } {
  const { native, error } = load();
  return { native, error };
}
