/**
 * Host tests of the KVM layer that need no /dev/kvm: probeKvm and the KvmSystem error mapping
 * against a fake binding, then the addon's pure parts (decodeCpuidFeatures, sdNotify) for real.
 * The real-KVM suite is test/native/.
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes, isVhError } from '../../src/errors';
import { toKvmError } from '../../src/kvm/errors';
import { KvmSystem } from '../../src/kvm/kvm-system';
import { probeKvm } from '../../src/kvm/probe';
import type { NativeBinding, NativeCpuidEntry, NativeKvmSystem } from '../../src/native/binding';
import { loadNative } from '../../src/native/loader';
import { MAX_UNIX_PATH } from '../../src/util/unix-socket';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures');

// ---------------------------------------------------------------------------------------------
// A fake binding: `fault` picks where it fails, with errno facts shaped like the addon's.

type Fault =
  | { at: 'open' | 'apiVersion' | 'supportedCpuid'; code: string; errno: number; syscall: string }
  | { at: 'version'; version: number }
  | { at: 'throwString' };

function nativeError(code: string, errno: number, syscall: string, p?: string): Error {
  return Object.assign(new Error(`${code}: fake, ${syscall}`), { code, errno, syscall, ...(p ? { path: p } : {}) });
}

/** A stand-in for an addon export the probe must never use. */
function notInProbe<K extends keyof NativeBinding>(name: K): NativeBinding[K] {
  return (() => { throw new Error(`fake addon: ${String(name)} is not part of the probe`); }) as unknown as NativeBinding[K];
}

function fakeNative(fault?: Fault): { native: NativeBinding; handles: NativeKvmSystem[] } {
  const handles: NativeKvmSystem[] = [];
  const fail = (at: string): void => {
    if (fault && 'code' in fault && fault.at === at) throw nativeError(fault.code, fault.errno, fault.syscall);
  };
  class FakeKvmSystem implements NativeKvmSystem {
    closed = false;
    constructor(devicePath = '/dev/kvm') {
      if (fault?.at === 'throwString') throw 'boom';
      if (fault && 'code' in fault && fault.at === 'open') {
        throw nativeError(fault.code, fault.errno, 'open', devicePath);
      }
      handles.push(this);
    }
    apiVersion(): number {
      fail('apiVersion');
      return fault?.at === 'version' ? fault.version : 12;
    }
    checkExtension(name: string): number {
      if (name !== 'USER_MEMORY') throw Object.assign(new Error('unknown'), { code: 'ERR_UNKNOWN_CAPABILITY', errno: 0 });
      return 1;
    }
    capabilities(): Record<string, number> { return { USER_MEMORY: 1, NR_VCPUS: 4 }; }
    vcpuMmapSize(): number { return 12288; }
    supportedCpuid(): NativeCpuidEntry[] {
      fail('supportedCpuid');
      return [{ function: 1, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 1 << 31, edx: 1 }];
    }
    msrIndexList(): number[] { return [0x10, 0x174]; }
    close(): void { this.closed = true; }
    // The probe never creates VMs; a call here is a bug in the code under test.
    createVm(): never { throw new Error('FakeKvmSystem: createVm is not part of the probe'); }
  }
  const native: NativeBinding = {
    KvmSystem: FakeKvmSystem,
    capabilityNames: () => ['USER_MEMORY', 'NR_VCPUS'],
    decodeCpuidFeatures: () => ['fpu', 'hypervisor'],
    sdNotify: () => false,
    hostPageSize: () => 4096,
    // Parts of the addon the probe never touches: calling one is a bug in the code under test.
    UserspaceDirtyTracker: notInProbe('UserspaceDirtyTracker'),
    bitmapToRuns: notInProbe('bitmapToRuns'),
    bitmapPopcount: notInProbe('bitmapPopcount'),
  };
  return { native, handles };
}

describe('probeKvm (fake binding)', () => {
  test('healthy KVM: available, every field filled, handle closed', () => {
    const { native, handles } = fakeNative();
    const info = probeKvm({ devicePath: '/dev/kvm', native });
    assert.deepEqual(info, {
      available: true, reason: null, errorCode: null, apiVersion: 12,
      capabilities: { USER_MEMORY: 1, NR_VCPUS: 4 }, vcpuMmapSize: 12288,
      cpuidFeatures: ['fpu', 'hypervisor'], msrCount: 2,
    });
    assert.equal(handles.length, 1);
    assert.equal(handles[0]?.closed, true);
  });

  test('addon not built: says so and passes the loader reason through', () => {
    const info = probeKvm({ devicePath: '/dev/kvm', native: null, nativeError: 'tried build/Release/x.node (not found)' });
    assert.equal(info.available, false);
    assert.equal(info.reason, 'native addon not built: tried build/Release/x.node (not found)');
    assert.equal(info.errorCode, ErrorCodes.NATIVE_UNAVAILABLE);
    assert.equal(info.apiVersion, null);
  });

  const openCases = [
    ['ENOENT', 2, '/dev/kvm missing: load kvm_intel or kvm_amd (is virtualization enabled in firmware?)'],
    ['EACCES', 13, '/dev/kvm not accessible: run as root or add the user to group kvm'],
    ['EPERM', 1, '/dev/kvm not accessible: run as root or add the user to group kvm'],
  ] as const;
  for (const [code, errno, reason] of openCases) {
    test(`open fails with ${code}: operator-readable reason, errno code kept`, () => {
      const { native } = fakeNative({ at: 'open', code, errno, syscall: 'open' });
      const info = probeKvm({ devicePath: '/dev/kvm', native });
      assert.equal(info.available, false);
      assert.ok(info.reason?.startsWith(reason), info.reason ?? '');
      assert.equal(info.errorCode, code);
    });
  }

  test('wrong API version: "KVM API version X, expected 12", handle closed', () => {
    const { native, handles } = fakeNative({ at: 'version', version: 11 });
    const info = probeKvm({ devicePath: '/dev/kvm', native });
    assert.equal(info.available, false);
    assert.equal(info.reason, 'KVM API version 11, expected 12');
    assert.equal(info.errorCode, ErrorCodes.KVM_UNUSABLE);
    assert.equal(info.apiVersion, 11);
    assert.equal(handles[0]?.closed, true);
  });

  test('not a KVM device (ENOTTY on the first ioctl): unusable, names the ioctl', () => {
    const { native } = fakeNative({ at: 'apiVersion', code: 'ENOTTY', errno: 25, syscall: 'KVM_GET_API_VERSION' });
    const info = probeKvm({ devicePath: '/dev/null', native });
    assert.equal(info.available, false);
    assert.equal(info.errorCode, 'ENOTTY');
    assert.match(info.reason ?? '', /^\/dev\/null: KVM_GET_API_VERSION failed with ENOTTY/);
  });

  test('a later ioctl fails: fields read so far are kept, handle closed', () => {
    const { native, handles } = fakeNative({ at: 'supportedCpuid', code: 'E2BIG', errno: 7, syscall: 'KVM_GET_SUPPORTED_CPUID' });
    const info = probeKvm({ devicePath: '/dev/kvm', native });
    assert.equal(info.available, false);
    assert.equal(info.errorCode, 'E2BIG');
    assert.equal(info.apiVersion, 12);
    assert.equal(info.vcpuMmapSize, 12288);
    assert.equal(info.msrCount, null);
    assert.equal(handles[0]?.closed, true);
  });

  test('a binding that throws a non-Error: still an answer, never a throw', () => {
    const { native } = fakeNative({ at: 'throwString' });
    const info = probeKvm({ devicePath: '/dev/kvm', native });
    assert.equal(info.available, false);
    assert.equal(info.errorCode, ErrorCodes.INTERNAL);
    assert.match(info.reason ?? '', /boom/);
  });
});

describe('KvmSystem error mapping', () => {
  const cases = [
    ['ENOENT', 2, 'open', ErrorCodes.KVM_MISSING],
    ['EACCES', 13, 'open', ErrorCodes.KVM_FORBIDDEN],
    ['EPERM', 1, 'open', ErrorCodes.KVM_FORBIDDEN],
    ['ENXIO', 6, 'open', ErrorCodes.KVM_UNUSABLE],
    ['ENOTTY', 25, 'KVM_GET_API_VERSION', ErrorCodes.KVM_UNUSABLE],
    ['ERR_UNKNOWN_CAPABILITY', 0, '', ErrorCodes.INVALID_ARGUMENT],
    ['ERR_INVALID_ARG', 0, '', ErrorCodes.INVALID_ARGUMENT],
    ['ERR_OUT_OF_RANGE', 0, '', ErrorCodes.INVALID_ARGUMENT],
    ['EEXIST', 17, 'KVM_SET_USER_MEMORY_REGION', ErrorCodes.INVALID_ARGUMENT],
    ['ERR_CLOSED', 0, '', ErrorCodes.INTERNAL],
  ] as const;
  for (const [code, errno, syscall, expected] of cases) {
    test(`${code} -> ${expected}, errno facts kept in details`, () => {
      const cause = nativeError(code, errno, syscall, syscall === 'open' ? '/dev/kvm' : undefined);
      const err = toKvmError(cause, '/dev/kvm');
      assert.equal(err.code, expected);
      assert.equal(err.details.code, code);
      assert.equal(err.details.errno, errno);
      assert.equal(err.details.devicePath, '/dev/kvm');
      assert.equal(err.cause, cause);
      if (syscall) assert.equal(err.details.syscall, syscall);
    });
  }

  test('open() maps the constructor error; methods map theirs', () => {
    assert.throws(
      () => KvmSystem.open({ devicePath: '/nope/kvm', native: fakeNative({ at: 'open', code: 'ENOENT', errno: 2, syscall: 'open' }).native }),
      (e: unknown) => isVhError(e, ErrorCodes.KVM_MISSING) && /^\/nope\/kvm missing: load kvm_intel or kvm_amd/.test(e.message)
        && e.details.path === '/nope/kvm' && e.details.syscall === 'open',
    );
    const kvm = KvmSystem.open({ native: fakeNative().native });
    assert.equal(kvm.checkExtension('USER_MEMORY'), 1);
    assert.throws(() => kvm.checkExtension('NOPE'), (e: unknown) => isVhError(e, ErrorCodes.INVALID_ARGUMENT));
    kvm.close();
    assert.equal(kvm.closed, true);
  });
});

// ---------------------------------------------------------------------------------------------
// decodeCpuidFeatures: pure, so the real addon runs it here without /dev/kvm.

function leaf(fn: number, index: number, regs: Partial<Record<'eax' | 'ebx' | 'ecx' | 'edx', number>>): NativeCpuidEntry {
  return { function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs };
}
const bits = (...n: number[]): number => n.reduce((acc, b) => (acc | (1 << b)) >>> 0, 0);
const kvmSignature = leaf(0x40000000, 0, { eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d });

describe('decodeCpuidFeatures (real addon, pure)', () => {
  const native = loadNative();

  test('every decoded leaf and register, cpuinfo spelling, sorted', () => {
    const entries = [
      leaf(1, 0, { ecx: bits(5, 20, 21, 31), edx: bits(0, 4, 8, 15, 25, 26) }),
      leaf(7, 0, { ebx: bits(5, 29), ecx: bits(8), edx: bits(4) }),
      leaf(7, 1, { eax: bits(4) }),
      leaf(0xd, 1, { eax: bits(0, 3) }),
      leaf(0x80000001, 0, { ecx: bits(0, 2), edx: bits(20, 26, 27, 29) }),
      leaf(0x80000007, 0, { edx: bits(8) }),
      leaf(0x80000008, 0, { ebx: bits(0, 9, 25) }),
      leaf(0x8000000a, 0, { edx: bits(0, 1, 3, 13) }),
      kvmSignature,
      leaf(0x40000001, 0, { eax: bits(0, 3, 6, 7, 24) }),
    ];
    assert.deepEqual(native.decodeCpuidFeatures(entries), [
      'avic', 'avx2', 'avx_vnni', 'clzero', 'cmov', 'constant_tsc', 'cx8', 'fpu', 'fsrm', 'gfni', 'hypervisor',
      'kvmclock', 'kvmclock2', 'kvmclock_stable_bit', 'lahf_lm', 'lbrv', 'lm', 'nonstop_tsc', 'npt', 'nrip_save',
      'nx', 'pdpe1gb', 'pv_eoi', 'pv_unhalt', 'rdtscp', 'sha_ni', 'sse', 'sse2', 'sse4_2', 'svm', 'tsc',
      'virt_ssbd', 'vmx', 'wbnoinvd', 'x2apic', 'xsaveopt', 'xsaves',
    ]);
  });

  test('subleaves are distinct: leaf 7.1 bits do not read as 7.0 features', () => {
    assert.deepEqual(native.decodeCpuidFeatures([leaf(7, 1, { ebx: bits(5) })]), []);
    assert.deepEqual(native.decodeCpuidFeatures([leaf(7, 0, { ebx: bits(5) })]), ['avx2']);
  });

  test('leaves and bits outside the tables are ignored; hidden bits (OSXSAVE) are not reported', () => {
    assert.deepEqual(native.decodeCpuidFeatures([leaf(0x12345678, 0, { eax: 0xffffffff }), leaf(1, 0, { ecx: bits(27) })]), []);
  });

  test('duplicate entries give unique names', () => {
    const e = leaf(1, 0, { edx: bits(0) });
    assert.deepEqual(native.decodeCpuidFeatures([e, e, leaf(0x80000001, 0, { edx: bits(29) })]), ['fpu', 'lm']);
  });

  test('0x40000001 only counts under the KVM signature', () => {
    const pv = leaf(0x40000001, 0, { eax: bits(0) });
    assert.deepEqual(native.decodeCpuidFeatures([pv]), ['kvmclock']);
    assert.deepEqual(native.decodeCpuidFeatures([kvmSignature, pv]), ['kvmclock']);
    const hyperv = leaf(0x40000000, 0, { ebx: 0x7263694d, ecx: 0x666f736f, edx: 0x76482074 }); // "Microsoft Hv"
    assert.deepEqual(native.decodeCpuidFeatures([hyperv, pv]), []);
  });

  test('bad input throws ERR_INVALID_ARG with errno 0', () => {
    const bad = [undefined, [1], [{ function: 1, index: 0, eax: 0, ebx: 0, ecx: 0 }]];
    for (const input of bad) {
      assert.throws(() => native.decodeCpuidFeatures(input as unknown as NativeCpuidEntry[]),
        (e: unknown) => (e as { code?: string }).code === 'ERR_INVALID_ARG' && (e as { errno?: number }).errno === 0);
    }
  });

  test('fixture: a real KVM_GET_SUPPORTED_CPUID dump (AMD EPYC, kvm_pvm)', () => {
    const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'kvm/supported-cpuid-amd-epyc-pvm.json'), 'utf8')) as {
      vendor: string; entries: NativeCpuidEntry[];
    };
    const features = native.decodeCpuidFeatures(fixture.entries);
    for (const f of ['fpu', 'tsc', 'cx8', 'cmov', 'sse', 'sse2', 'lm', 'nx', 'hypervisor', 'x2apic', 'kvmclock', 'pv_eoi']) {
      assert.ok(features.includes(f), `${f} in ${features.join(' ')}`);
    }
    // This KVM flavour exposes neither hardware virtualization nor AVX to guests.
    for (const f of ['svm', 'vmx', 'avx', 'npt']) assert.ok(!features.includes(f), f);
    assert.deepEqual(features, [...new Set(features)].sort());
    for (const f of features) assert.match(f, /^[a-z0-9_]+$/);
    const leaf0 = fixture.entries.find((e) => e.function === 0);
    assert.ok(leaf0);
    const vendor = Buffer.alloc(12);
    vendor.writeUInt32LE(leaf0.ebx, 0);
    vendor.writeUInt32LE(leaf0.edx, 4);
    vendor.writeUInt32LE(leaf0.ecx, 8);
    assert.equal(vendor.toString('latin1'), fixture.vendor);
  });
});

// ---------------------------------------------------------------------------------------------
// sdNotify: a real AF_UNIX datagram receiver. Node has none, so python3 plays systemd.

const RECEIVER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + name[1:] if name.startswith('@') else name)
s.settimeout(10)
print('ready', flush=True)
print(s.recv(4096).hex(), flush=True)
`;

/** Starts a receiver bound to `address`; resolves once bound, `datagram` resolves with the bytes received. */
async function receiver(address: string): Promise<{ datagram: Promise<Buffer> }> {
  const child = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    exited.then((code) => reject(new Error(`receiver exited (${code}) before binding: ${err}`)), reject);
  });
  const datagram = exited.then((code) => {
    assert.equal(code, 0, `receiver failed: ${err}`);
    return Buffer.from(out.split('\n')[1] ?? '', 'hex');
  });
  return { datagram };
}

describe('sdNotify (real addon, real AF_UNIX datagram socket)', () => {
  const native = loadNative();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-sdnotify-'));
  const savedEnv = process.env.NOTIFY_SOCKET;
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (savedEnv === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = savedEnv;
  });

  test('filesystem socket path: the exact bytes arrive', async () => {
    const sock = path.join(tmp, 'notify.sock');
    const r = await receiver(sock);
    const message = 'READY=1\nSTATUS=probing KVM\nMAINPID=' + process.pid;
    assert.equal(native.sdNotify(message, sock), true);
    assert.equal((await r.datagram).toString(), message);
  });

  test("abstract '@name': sent to the abstract namespace", async () => {
    const name = `@vh-test-${process.pid}-${Date.now()}`;
    const r = await receiver(name);
    assert.equal(native.sdNotify('WATCHDOG=1', name), true);
    assert.equal((await r.datagram).toString(), 'WATCHDOG=1');
  });

  test('$NOTIFY_SOCKET is used when no path is given', async () => {
    const sock = path.join(tmp, 'env.sock');
    const r = await receiver(sock);
    process.env.NOTIFY_SOCKET = sock;
    try {
      assert.equal(native.sdNotify('STOPPING=1'), true);
    } finally {
      delete process.env.NOTIFY_SOCKET;
    }
    assert.equal((await r.datagram).toString(), 'STOPPING=1');
  });

  test('no socket configured: false, nothing sent', () => {
    delete process.env.NOTIFY_SOCKET;
    assert.equal(native.sdNotify('READY=1'), false);
    process.env.NOTIFY_SOCKET = '';
    assert.equal(native.sdNotify('READY=1'), false);
    delete process.env.NOTIFY_SOCKET;
  });

  const errorFacts = (e: unknown): Record<string, unknown> => ({ ...(e as Record<string, unknown>) });

  test('nobody listening: ENOENT (path) / ECONNREFUSED (abstract) from sendto, with the path', () => {
    const missing = path.join(tmp, 'missing.sock');
    assert.throws(() => native.sdNotify('READY=1', missing), (e: unknown) => {
      assert.deepEqual(errorFacts(e), { code: 'ENOENT', errno: 2, syscall: 'sendto', path: missing });
      return true;
    });
    const name = `@vh-test-nobody-${process.pid}`;
    assert.throws(() => native.sdNotify('READY=1', name), (e: unknown) => {
      assert.deepEqual(errorFacts(e), { code: 'ECONNREFUSED', errno: 111, syscall: 'sendto', path: name });
      return true;
    });
  });

  test('path length: MAX_UNIX_PATH (107) bytes (+NUL) and a 108-byte abstract name fit; one more does not', () => {
    const fsPath = (len: number): string => '/' + 'a'.repeat(len - 1);
    const abstract = (len: number): string => '@' + 'b'.repeat(len - 1);
    // The addon's sun_path limit is the one the TS side checks paths against.
    assert.equal(MAX_UNIX_PATH, 107);
    // Accepted lengths reach sendto, which fails only because nobody listens.
    assert.throws(() => native.sdNotify('X', fsPath(MAX_UNIX_PATH)), { code: 'ENOENT', syscall: 'sendto' });
    assert.throws(() => native.sdNotify('X', abstract(MAX_UNIX_PATH + 1)), { code: 'ECONNREFUSED', syscall: 'sendto' });
    assert.throws(() => native.sdNotify('X', fsPath(MAX_UNIX_PATH + 1)), { code: 'ERR_INVALID_ARG', errno: 0 });
    assert.throws(() => native.sdNotify('X', abstract(MAX_UNIX_PATH + 2)), { code: 'ERR_INVALID_ARG', errno: 0 });
  });

  test('relative paths and bad argument types are refused before any syscall', () => {
    assert.throws(() => native.sdNotify('X', 'relative.sock'), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => native.sdNotify(42 as unknown as string), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => native.sdNotify('X', 42 as unknown as string), { code: 'ERR_INVALID_ARG' });
  });
});
