import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  memorySummary, parseBracketChoice, parseCpuList, parseCpuinfo, parseHugepageDirName, parseKsmRun,
  parseMeminfo, parseModuleBool, parseNonNegativeInt, parseNumaNodeDirName, parseSysctlString, parseZeroOne,
  shortVendor,
} from '../../src/node/proc-parsers';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/host');
const AMD = path.join(FIXTURES, 'amd-epyc-2vcpu-kvm-guest');
const INTEL = path.join(FIXTURES, 'intel-xeon-2s-ht-numa2');
const read = (root: string, rel: string): string => fs.readFileSync(path.join(root, rel), 'utf8');

test('cpuinfo: captured AMD EPYC guest', () => {
  const cpu = parseCpuinfo(read(AMD, 'proc/cpuinfo'));
  assert.equal(cpu.vendor, 'AuthenticAMD');
  assert.equal(cpu.vendorShort, 'amd');
  assert.equal(cpu.modelName, 'AMD EPYC');
  assert.deepEqual([cpu.family, cpu.model, cpu.stepping], [25, 1, 1]);
  assert.deepEqual([cpu.logicalCpus, cpu.sockets, cpu.coresPerSocket, cpu.threadsPerCore], [2, 1, 2, 1]);
  assert.ok(cpu.flags.includes('avx2'));
  assert.ok(cpu.flags.includes('hypervisor'));
});

test('cpuinfo: constructed 2-socket Xeon with HT and sparse core ids', () => {
  const cpu = parseCpuinfo(read(INTEL, 'proc/cpuinfo'));
  assert.equal(cpu.vendorShort, 'intel');
  assert.deepEqual([cpu.family, cpu.model, cpu.stepping], [6, 85, 4]);
  assert.deepEqual([cpu.logicalCpus, cpu.sockets, cpu.coresPerSocket, cpu.threadsPerCore], [16, 2, 4, 2]);
  assert.ok(cpu.flags.includes('avx512f'));
  // 'vmx flags' is a different key; its words must not leak into 'flags'.
  assert.ok(!cpu.flags.includes('ept_x_only'));
});

test('cpuinfo: topology falls back to siblings/cpu cores when ids are absent', () => {
  const block = (n: number): string => `processor\t: ${n}\nvendor_id\t: GenuineIntel\nsiblings\t: 4\ncpu cores\t: 2\n`;
  const cpu = parseCpuinfo([0, 1, 2, 3].map(block).join('\n'));
  assert.deepEqual([cpu.logicalCpus, cpu.sockets, cpu.coresPerSocket, cpu.threadsPerCore], [4, 1, 2, 2]);
});

test('cpuinfo: no topology fields at all means one socket, one thread per core', () => {
  const cpu = parseCpuinfo('processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n');
  assert.deepEqual([cpu.logicalCpus, cpu.sockets, cpu.coresPerSocket, cpu.threadsPerCore], [3, 1, 3, 1]);
  assert.equal(cpu.vendor, '');
  assert.equal(cpu.family, null);
});

test('cpuinfo: empty input gives zero counts, not guesses', () => {
  const cpu = parseCpuinfo('');
  assert.deepEqual([cpu.logicalCpus, cpu.sockets, cpu.coresPerSocket, cpu.threadsPerCore], [0, 0, 0, 0]);
  assert.deepEqual(cpu.flags, []);
});

test('shortVendor maps the CPUID vendor strings', () => {
  assert.equal(shortVendor('GenuineIntel'), 'intel');
  assert.equal(shortVendor('AuthenticAMD'), 'amd');
  assert.equal(shortVendor('HygonGenuine'), 'hygon');
  assert.equal(shortVendor('SomeVendor'), 'somevendor');
});

test('meminfo: captured /proc/meminfo converts kB to bytes and keeps counts', () => {
  const m = parseMeminfo(read(AMD, 'proc/meminfo'));
  assert.equal(m.MemTotal, 24683656 * 1024);
  assert.equal(m.MemAvailable, 24273724 * 1024);
  assert.equal(m.HugePages_Total, 0);
  assert.equal(m['Active(anon)'], 1548 * 1024);
  assert.deepEqual(memorySummary(m), { totalBytes: 24683656 * 1024, availableBytes: 24273724 * 1024 });
});

test('meminfo: per-node file shares the parser', () => {
  const m = parseMeminfo(read(INTEL, 'sys/devices/system/node/node1/meminfo'));
  assert.equal(m.MemTotal, 98601840 * 1024);
  assert.equal(m.HugePages_Total, 512);
});

test('meminfo: MemAvailable falls back to MemFree; garbage yields zeros', () => {
  assert.deepEqual(memorySummary(parseMeminfo('MemTotal: 100 kB\nMemFree: 40 kB\n')), { totalBytes: 102400, availableBytes: 40960 });
  assert.deepEqual(memorySummary(parseMeminfo('MemTotal: lots\n\0\0')), { totalBytes: 0, availableBytes: 0 });
});

test('cpulist: kernel range syntax', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('4-7,12-15'), [4, 5, 6, 7, 12, 13, 14, 15]);
  assert.deepEqual(parseCpuList('0-15:4'), [0, 4, 8, 12]);
  assert.deepEqual(parseCpuList('8,0-1,1'), [0, 1, 8]);
  assert.deepEqual(parseCpuList('\n'), []);
});

test('cpulist: malformed pieces are skipped and huge ranges are bounded', () => {
  assert.deepEqual(parseCpuList('3-1,x,5,-2,7-'), [5]);
  assert.deepEqual(parseCpuList('0-4294967295'), []);
  assert.equal(parseCpuList('0-999999').length, 8192);
});

test('directory names: hugepages-<n>kB and node<n>', () => {
  assert.equal(parseHugepageDirName('hugepages-2048kB'), 2 * 1024 * 1024);
  assert.equal(parseHugepageDirName('hugepages-1048576kB'), 1024 ** 3);
  assert.equal(parseHugepageDirName('hugepages-0kB'), null);
  assert.equal(parseHugepageDirName('hugepages-2MB'), null);
  assert.equal(parseNumaNodeDirName('node12'), 12);
  assert.equal(parseNumaNodeDirName('online'), null);
  assert.equal(parseNumaNodeDirName('node'), null);
});

test('THP bracket syntax', () => {
  assert.equal(parseBracketChoice(read(AMD, 'sys/kernel/mm/transparent_hugepage/enabled')), 'madvise');
  assert.equal(parseBracketChoice(read(AMD, 'sys/kernel/mm/transparent_hugepage/defrag')), 'madvise');
  assert.equal(parseBracketChoice(read(INTEL, 'sys/kernel/mm/transparent_hugepage/enabled')), 'always');
  assert.equal(parseBracketChoice('always defer [defer+madvise] madvise never'), 'defer+madvise');
  assert.equal(parseBracketChoice('always madvise never'), '');
  assert.equal(parseBracketChoice('[always] [never]'), '');
});

test('sysctl strings: captured kernel release and version', () => {
  assert.equal(parseSysctlString(read(AMD, 'proc/sys/kernel/osrelease')), fs.readFileSync(path.join(AMD, 'proc/sys/kernel/osrelease'), 'utf8').trim());
  assert.equal(parseSysctlString(read(INTEL, 'proc/sys/kernel/version')), '#1 SMP PREEMPT_DYNAMIC Wed Apr 10 10:29:16 EDT 2024');
  assert.equal(parseSysctlString('6.1\x1b[31m-evil\x07\nsecond line'), '6.1[31m-evil');
  assert.equal(parseSysctlString('x'.repeat(1000)).length, 256);
});

test('small value files: 0/1, Y/N, KSM run, integers', () => {
  assert.equal(parseZeroOne(read(AMD, 'proc/sys/vm/unprivileged_userfaultfd')), false);
  assert.equal(parseZeroOne('1\n'), true);
  assert.equal(parseZeroOne('2'), null);
  assert.equal(parseModuleBool(read(INTEL, 'sys/module/kvm_intel/parameters/nested')), true);
  assert.equal(parseModuleBool('0\n'), false);
  assert.equal(parseModuleBool('maybe'), null);
  assert.equal(parseKsmRun(read(AMD, 'sys/kernel/mm/ksm/run')), false);
  assert.equal(parseKsmRun(read(INTEL, 'sys/kernel/mm/ksm/run')), true);
  assert.equal(parseKsmRun('2'), false);
  assert.equal(parseKsmRun('7'), null);
  assert.equal(parseNonNegativeInt(' 42\n'), 42);
  assert.equal(parseNonNegativeInt('-1'), null);
  assert.equal(parseNonNegativeInt('12abc'), null);
  assert.equal(parseNonNegativeInt(''), null);
});

test('every parser is total: random garbage never throws', () => {
  // Deterministic xorshift so a failure reproduces.
  let s = 0x2545f491;
  const rand = (): number => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return (s >>> 0) / 2 ** 32; };
  const alphabet = '0123456789-,:[] \t\nabcdefkBprocessor\0\xff\u2028Node';
  for (let i = 0; i < 500; i++) {
    const len = Math.floor(rand() * 400);
    let text = '';
    for (let j = 0; j < len; j++) text += alphabet[Math.floor(rand() * alphabet.length)];
    const cpu = parseCpuinfo(text);
    assert.ok(Number.isInteger(cpu.logicalCpus) && cpu.threadsPerCore >= 0);
    parseMeminfo(text); parseCpuList(text); parseBracketChoice(text); parseSysctlString(text);
    parseZeroOne(text); parseModuleBool(text); parseKsmRun(text); parseHugepageDirName(text); parseNumaNodeDirName(text);
  }
});
