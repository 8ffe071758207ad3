/**
 * KvmSystem's error facts from real failures: a missing device, a device that is not KVM, a
 * directory, a forbidden device (a child process dropped to nobody), and caller mistakes.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, isVhError } from '../../src/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import { probeKvm } from '../../src/kvm/probe';
import { defaultAddonCandidates, loadNative } from '../../src/native/loader';
import { stageForUnprivileged } from '../lib/unprivileged';

const native = loadNative();

/** The error's own enumerable facts (code, errno, syscall, path). */
function facts(e: unknown): Record<string, unknown> {
  return { ...(e as Record<string, unknown>) };
}

describe('open failures', () => {
  test('missing device: ENOENT from open, with the path and what to load', () => {
    const p = '/dev/nonexistent-kvm-for-test';
    assert.throws(() => new native.KvmSystem(p), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.deepEqual(facts(e), { code: 'ENOENT', errno: 2, syscall: 'open', path: p });
      assert.match(e.message, /^ENOENT: .*open '\/dev\/nonexistent-kvm-for-test'.*kvm_intel or kvm_amd/);
      return true;
    });
    assert.throws(() => KvmSystem.open({ devicePath: p, native }), (e: unknown) =>
      isVhError(e, ErrorCodes.KVM_MISSING) && e.details.errno === 2 && e.details.path === p);
    const info = probeKvm({ devicePath: p, native });
    assert.equal(info.available, false);
    assert.equal(info.errorCode, 'ENOENT');
    assert.match(info.reason ?? '', /missing: load kvm_intel or kvm_amd \(is virtualization enabled in firmware\?\)/);
  });

  test('a directory: EISDIR from open', () => {
    assert.throws(() => new native.KvmSystem('/'), (e: unknown) => {
      assert.deepEqual(facts(e), { code: 'EISDIR', errno: 21, syscall: 'open', path: '/' });
      return true;
    });
  });

  test('not a KVM device (/dev/null): opens, then ENOTTY names the ioctl', () => {
    const k = new native.KvmSystem('/dev/null');
    try {
      assert.throws(() => k.apiVersion(), (e: unknown) => {
        assert.deepEqual(facts(e), { code: 'ENOTTY', errno: 25, syscall: 'KVM_GET_API_VERSION', path: '/dev/null' });
        return true;
      });
      assert.throws(() => k.checkExtension('USER_MEMORY'), { code: 'ENOTTY', syscall: 'KVM_CHECK_EXTENSION' });
      assert.throws(() => k.supportedCpuid(), { code: 'ENOTTY', syscall: 'KVM_GET_SUPPORTED_CPUID' });
      assert.throws(() => k.msrIndexList(), { code: 'ENOTTY', syscall: 'KVM_GET_MSR_INDEX_LIST' });
    } finally {
      k.close();
    }
    const info = probeKvm({ devicePath: '/dev/null', native });
    assert.equal(info.available, false);
    assert.equal(info.errorCode, 'ENOTTY');
    assert.match(info.reason ?? '', /KVM_GET_API_VERSION/);
  });

  test('forbidden device: EACCES in a child running as nobody (uid/gid 65534)', (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to start a child as another user');
      return;
    }
    // Where /dev/kvm is open to everyone (mode 0666, e.g. the nested sandbox) a root-only file
    // stands in: the open(2) failure and its mapping are the same.
    let device = '/dev/kvm';
    let tmp: string | null = null;
    if ((fs.statSync(device).mode & 0o006) !== 0) {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-eacces-'));
      fs.chmodSync(tmp, 0o755);
      device = path.join(tmp, 'kvm');
      fs.writeFileSync(device, '', { mode: 0o600 });
      t.diagnostic(`/dev/kvm is open to everyone; using root-only ${device}`);
    }
    try {
      assert.ok(defaultAddonCandidates().some((p) => fs.existsSync(p)), 'built addon');
      // The child loads a copy it can reach even when the checkout sits under a 0700 directory.
      const staged = stageForUnprivileged();
      t.after(() => staged.remove());
      const addon = path.join(staged.root, 'build/Release/virt_handler_native.node');
      const probeJs = path.join(staged.root, 'dist/src/kvm/probe.js');
      const script = `
        const [addon, probeJs, device] = process.argv.slice(1);
        const n = require(addon);
        const { probeKvm } = require(probeJs);
        let opened = false, err = null;
        try { new n.KvmSystem(device).close(); opened = true; }
        catch (e) { err = { code: e.code, errno: e.errno, syscall: e.syscall, path: e.path, message: e.message }; }
        const info = probeKvm({ devicePath: device, native: n });
        console.log(JSON.stringify({ opened, err, info }));`;
      const r = spawnSync(process.execPath, ['-e', script, addon, probeJs, device], {
        uid: 65534, gid: 65534, cwd: '/', encoding: 'utf8', timeout: 60_000,
      });
      assert.equal(r.status, 0, `child failed: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as {
        opened: boolean; err: Record<string, unknown> | null; info: { available: boolean; errorCode: string; reason: string };
      };
      assert.equal(out.opened, false);
      assert.equal(out.err?.code, 'EACCES');
      assert.equal(out.err?.errno, 13);
      assert.equal(out.err?.syscall, 'open');
      assert.equal(out.err?.path, device);
      assert.match(String(out.err?.message), /run as root or add the user to group kvm/);
      assert.equal(out.info.available, false);
      assert.equal(out.info.errorCode, 'EACCES');
      assert.equal(out.info.reason, `${device} not accessible: run as root or add the user to group kvm (EACCES)`);
    } finally {
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('caller mistakes', () => {
  test('unknown capability: ERR_UNKNOWN_CAPABILITY, errno 0; the wrapper says INVALID_ARGUMENT', () => {
    const k = new native.KvmSystem();
    try {
      assert.throws(() => k.checkExtension('NOT_A_CAP'), (e: unknown) => {
        const f = facts(e);
        return f.code === 'ERR_UNKNOWN_CAPABILITY' && f.errno === 0 && /NOT_A_CAP/.test((e as Error).message);
      });
      // Names are exact: the table is upper case.
      assert.throws(() => k.checkExtension('user_memory'), { code: 'ERR_UNKNOWN_CAPABILITY' });
    } finally {
      k.close();
    }
    const sys = KvmSystem.open({ native });
    try {
      assert.throws(() => sys.checkExtension('NOT_A_CAP'), (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT));
    } finally {
      sys.close();
    }
  });

  test('wrong argument types and values: ERR_INVALID_ARG, as for every addon argument', () => {
    assert.throws(() => new native.KvmSystem(5 as unknown as string), { code: 'ERR_INVALID_ARG', errno: 0 });
    assert.throws(() => new native.KvmSystem(''), { code: 'ERR_INVALID_ARG', errno: 0 });
    const k = new native.KvmSystem();
    try {
      assert.throws(() => k.checkExtension(7 as unknown as string), { code: 'ERR_INVALID_ARG' });
    } finally {
      k.close();
    }
  });
});
