import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, isVhError } from '../../src/errors';
import { ADDON_FILE, NATIVE_EXPORTS, defaultAddonCandidates, loadNative, loadNativeFrom, tryLoadNative } from '../../src/native/loader';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-native-loader-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('candidates: build/Release first, then build/Debug, under the given root', () => {
  assert.deepEqual(defaultAddonCandidates('/opt/vh'), [
    `/opt/vh/build/Release/${ADDON_FILE}`,
    `/opt/vh/build/Debug/${ADDON_FILE}`,
  ]);
});

test('candidates: the default root is the package root (holds package.json and binding.gyp)', () => {
  const release = defaultAddonCandidates()[0] ?? '';
  const root = path.resolve(path.dirname(release), '../..');
  assert.ok(fs.existsSync(path.join(root, 'package.json')), root);
  assert.ok(fs.existsSync(path.join(root, 'binding.gyp')), root);
});

test('nothing found: NATIVE_UNAVAILABLE naming every path and the build command', () => {
  const a = path.join(tmp, 'Release', ADDON_FILE);
  const b = path.join(tmp, 'Debug', ADDON_FILE);
  assert.throws(
    () => loadNativeFrom([a, b]),
    (e: unknown) => {
      assert.ok(isVhError(e, ErrorCodes.NATIVE_UNAVAILABLE), String(e));
      assert.ok(e.message.includes(`${a} (not found)`), e.message);
      assert.ok(e.message.includes(`${b} (not found)`), e.message);
      assert.match(e.message, /npm run build:native/);
      assert.match(e.message, /g\+\+.*make.*python3/);
      assert.deepEqual(e.details.tried, [a, b]);
      return true;
    },
  );
});

test('a file that is not a loadable addon: reported with the loader error, next candidate still tried', () => {
  const bogus = path.join(tmp, 'bogus.node');
  fs.writeFileSync(bogus, 'not an ELF object');
  const missing = path.join(tmp, 'missing.node');
  assert.throws(
    () => loadNativeFrom([bogus, missing]),
    (e: unknown) => {
      assert.ok(isVhError(e, ErrorCodes.NATIVE_UNAVAILABLE));
      assert.match(e.message, new RegExp(`${bogus.replace(/[.]/g, '\\.')} \\(failed to load: .+\\)`));
      assert.ok(e.message.includes(`${missing} (not found)`), e.message);
      return true;
    },
  );
});

test('a stale build missing exports is refused and the missing names are listed', () => {
  const stale = path.join(tmp, 'stale.js');
  fs.writeFileSync(stale, 'module.exports = { KvmSystem: function () {}, hostPageSize: () => 4096 };\n');
  assert.throws(
    () => loadNativeFrom([stale]),
    /stale build, missing capabilityNames, decodeCpuidFeatures, sdNotify/,
  );
});

test('a candidate with every export is returned as the binding', () => {
  const good = path.join(tmp, 'good.js');
  fs.writeFileSync(
    good,
    `const f = function () {}; module.exports = { ${NATIVE_EXPORTS.map((n) => `${n}: f`).join(', ')} };\n`,
  );
  const native = loadNativeFrom([path.join(tmp, 'absent.node'), good]);
  assert.equal(typeof native.sdNotify, 'function');
});

test('tryLoadNative: exactly one of native/error, cached, and consistent with loadNative()', () => {
  const first = tryLoadNative();
  const second = tryLoadNative();
  assert.equal(first.native === null, first.error !== null, 'exactly one of native and error is set');
  assert.equal(second.native, first.native, 'cached: same binding object');
  assert.equal(second.error, first.error);
  if (first.native) {
    assert.equal(loadNative(), first.native);
    assert.ok(NATIVE_EXPORTS.includes('UserspaceDirtyTracker') && NATIVE_EXPORTS.length >= 8, NATIVE_EXPORTS.join());
    for (const name of NATIVE_EXPORTS) {
      assert.equal(typeof first.native[name], 'function', name);
    }
  } else {
    assert.match(first.error ?? '', /npm run build:native/);
    assert.throws(() => loadNative(), (e: unknown) => isVhError(e, ErrorCodes.NATIVE_UNAVAILABLE));
  }
});
