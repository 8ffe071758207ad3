/**
 * KvmSystem owns exactly one fd: opened O_RDWR|O_CLOEXEC, released by close() or by the
 * garbage collector, never twice, and never leaked by a failure path.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { loadNative } from '../../src/native/loader';

const native = loadNative();
const CYCLES = 1000;

function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd');
}

function kvmFds(): string[] {
  return openFds().filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === '/dev/kvm';
    } catch {
      return false; // the fd readdir itself used is gone by now
    }
  });
}

test('the fd is O_RDWR|O_CLOEXEC', () => {
  const before = new Set(kvmFds());
  const k = new native.KvmSystem();
  try {
    const fresh = kvmFds().filter((fd) => !before.has(fd));
    assert.equal(fresh.length, 1, 'exactly one new /dev/kvm fd');
    const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fresh[0]}`, 'utf8'))?.[1];
    assert.ok(flags, 'flags in fdinfo');
    const value = parseInt(flags, 8);
    assert.equal(value & 0o3, fs.constants.O_RDWR, 'O_RDWR');
    assert.ok(value & 0o2000000, 'O_CLOEXEC');
  } finally {
    k.close();
  }
});

test(`${CYCLES} open/ioctl/close cycles leave the fd count unchanged`, () => {
  const before = openFds().length;
  for (let i = 0; i < CYCLES; i++) {
    const k = new native.KvmSystem();
    assert.equal(k.apiVersion(), 12);
    k.close();
  }
  assert.equal(openFds().length, before);
});

test(`${CYCLES} failing opens and failing ioctls leave the fd count unchanged`, () => {
  const before = openFds().length;
  for (let i = 0; i < CYCLES; i++) {
    assert.throws(() => new native.KvmSystem('/dev/nonexistent-kvm-for-test'), { code: 'ENOENT' });
    const k = new native.KvmSystem('/dev/null');
    assert.throws(() => k.apiVersion(), { code: 'ENOTTY' });
    k.close();
  }
  assert.equal(openFds().length, before);
});

test('a second close() does not close an fd reused by someone else', () => {
  const k = new native.KvmSystem();
  k.close();
  const fd = fs.openSync('/dev/null', 'r'); // likely the number k just released
  try {
    k.close();
    assert.ok(fs.fstatSync(fd).isCharacterDevice(), 'fd still open');
  } finally {
    fs.closeSync(fd);
  }
});

test('handles dropped without close() are released by the garbage collector', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const before = kvmFds().length;
  (() => {
    for (let i = 0; i < 100; i++) new native.KvmSystem();
  })();
  assert.ok(kvmFds().length >= before + 100, 'handles hold their fds while alive');
  // Node-API finalisers may run on a later tick than the collection itself.
  for (let i = 0; i < 20 && kvmFds().length > before; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(kvmFds().length, before);
});
