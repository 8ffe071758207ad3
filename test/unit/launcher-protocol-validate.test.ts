/**
 * The launcher contract's checks (src/launcher-protocol/validate.ts): what the handler accepts
 * from a launcher (register, status, result, stats) and the field each refusal names. The disk
 * plan checks are in launcher-disk-prep.test.ts, the codec's in launcher-protocol-codec.test.ts.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as L from '../../src/launcher-protocol/limits';
import { ProtocolViolation, checkDomainStats, checkRegister, checkResult, checkStartDomain, checkStatus } from '../../src/launcher-protocol/validate';
import { statsToWire } from '../../src/launcher/stats-report';

const UID = '6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c';

function refuses(fn: () => unknown, field: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ProtocolViolation && e.field === field && re.test(e.message), `${field} ${re}`);
}

describe('launcher -> handler checks', () => {
  it('register: uid, token (the one field answered UNAUTHENTICATED), pid, version', () => {
    const ok = { vmiUid: UID, token: 't', pid: 7, version: '0.1.0' };
    assert.deepEqual(checkRegister(ok), ok);
    refuses(() => checkRegister({ ...ok, vmiUid: UID.toUpperCase() }), 'register.vmi_uid', /lower-case UUID/);
    refuses(() => checkRegister({ ...ok, token: '' }), 'register.token', /missing or malformed/);
    refuses(() => checkRegister({ ...ok, token: 'x'.repeat(L.MAX_TOKEN + 1) }), 'register.token', /missing or malformed/);
    refuses(() => checkRegister({ ...ok, pid: 0 }), 'register.pid', /positive integer/);
    refuses(() => checkRegister({ ...ok, version: 'v'.repeat(L.MAX_VERSION + 1) }), 'register.version', /longer than 64/);
    refuses(() => checkRegister('register'), 'register', /must be a message/);
  });

  it('status: known states, bounded fields', () => {
    const s = { state: 'running', reason: 'booted', domainUuid: UID, lastEvent: 'STARTED/booted', error: '', domainXml: '<domain/>' };
    assert.deepEqual(checkStatus(s), s);
    assert.deepEqual(checkStatus({}), { state: '', reason: '', domainUuid: '', lastEvent: '', error: '', domainXml: '' }, 'unset fields are their defaults');
    refuses(() => checkStatus({ ...s, state: 'exploded' }), 'status.state', /unknown domain state "exploded"/);
    refuses(() => checkStatus({ ...s, domainXml: 'x'.repeat(L.MAX_DOMAIN_XML + 1) }), 'status.domain_xml', /longer than 1048576/);
    refuses(() => checkStatus({ ...s, reason: 5 }), 'status.reason', /must be a string/);
  });

  it('result: id and ok required, error cut to its limit, stats passed on unchecked', () => {
    assert.deepEqual(checkResult({ id: 'c1', ok: false, error: 'e'.repeat(L.MAX_ERROR + 10) }).error.length, L.MAX_ERROR);
    assert.deepEqual(checkResult({ id: 'c1', ok: true, error: '', stats: { x: 1 } }).stats, { x: 1 });
    refuses(() => checkResult({ id: '', ok: true }), 'result.id', /command id/);
    refuses(() => checkResult({ id: 'c1', ok: 'yes' }), 'result.ok', /boolean/);
  });
});

describe('stats: a launcher claim becomes a StatsReport', () => {
  const valid = () => ({
    takenAtMs: 1,
    state: { state: 1, reason: 1 },
    cpu: { timeNs: 5, userNs: 2 ** 64, systemNs: 2n ** 64n - 1n },
    balloon: { currentKib: 10, rssKib: 20 },
    vcpuCurrent: 2,
    vcpus: [{ id: 0, state: 1, timeNs: 1 }, { id: 3, timeNs: 2 }],
    net: [{ name: 'vnet0', rxBytes: 1 }, { name: '', rxBytes: 9 }],
    block: [{ name: 'vda', rdBytes: 4096 }],
  });

  it('maps the wire names (currentKib) to the report names (currentKiB), drops unnamed devices, keeps magnitudes above 2^53', () => {
    assert.deepEqual(checkDomainStats(valid()), {
      cpu: { timeNs: 5, userNs: 2 ** 64, systemNs: 2 ** 64 },
      vcpus: [{ id: 0, state: 1, timeNs: 1 }, { id: 3, timeNs: 2 }],
      balloon: { currentKiB: 10, rssKiB: 20 },
      net: [{ name: 'vnet0', rxBytes: 1 }],
      block: [{ name: 'vda', rdBytes: 4096 }],
    });
    assert.deepEqual(checkDomainStats({}), { cpu: {}, vcpus: [], balloon: {}, net: [], block: [] });
  });

  it('the launcher side (libvirt bigints) and the handler side agree', () => {
    const wire = statsToWire({ name: 'n', uuid: '', raw: {}, balloon: { availableKiB: 3n, lastUpdate: 9n }, vcpus: [{ state: 1, timeNs: 7n }, undefined as never, { state: 2 }], net: [{ rxBytes: 1n }] }, 5);
    assert.deepEqual(checkDomainStats(wire), { cpu: {}, vcpus: [{ id: 0, state: 1, timeNs: 7 }, { id: 2, state: 2 }], balloon: { availableKiB: 3 }, net: [], block: [] });
  });

  it('refuses garbage, naming the field', () => {
    const v = valid;
    const bad: Array<[unknown, string, RegExp]> = [
      [null, 'result.stats', /missing/],
      [[], 'stats', /must be a message/],
      [{ ...v(), cpu: { timeNs: -1 } }, 'stats.cpu.time_ns', /not an unsigned 64-bit integer/],
      [{ ...v(), cpu: { timeNs: 1.5 } }, 'stats.cpu.time_ns', /unsigned/],
      [{ ...v(), cpu: { timeNs: '5' } }, 'stats.cpu.time_ns', /unsigned/],
      [{ ...v(), cpu: { timeNs: 2 ** 65 } }, 'stats.cpu.time_ns', /unsigned/],
      [{ ...v(), cpu: { timeNs: 2n ** 64n } }, 'stats.cpu.time_ns', /unsigned/],
      [{ ...v(), balloon: { diskCachesKib: -2 } }, 'stats.balloon.disk_caches_kib', /unsigned/],
      [{ ...v(), cpu: [1] }, 'stats.cpu', /must be a message/],
      [{ ...v(), vcpus: {} }, 'stats.vcpus', /not a list/],
      [{ ...v(), vcpus: [{ id: 0 }, { id: 0 }] }, 'stats.vcpus[1].id', /duplicate 0/],
      [{ ...v(), vcpus: [{ id: L.MAX_VCPUS }] }, 'stats.vcpus[0].id', /0\.\.4095/],
      [{ ...v(), vcpus: [{ id: 1, state: 99 }] }, 'stats.vcpus[0].state', /0\.\.64/],
      [{ ...v(), vcpuCurrent: -1 }, 'stats.vcpu_current', /0\.\.4096/],
      [{ ...v(), state: { state: 1e6 } }, 'stats.state.state', /0\.\.64/],
      [{ ...v(), takenAtMs: -5 }, 'stats.taken_at_ms', /unsigned/],
      [{ ...v(), net: [{ name: 'a' }, { name: 'a' }] }, 'stats.net[1].name', /duplicate "a"/],
      [{ ...v(), net: [{ name: 'a b' }] }, 'stats.net[0].name', /printable/],
      [{ ...v(), net: [{ name: 'x'.repeat(129) }] }, 'stats.net[0].name', /printable/],
      [{ ...v(), block: [{ name: 'vda', rdBytes: true }] }, 'stats.block[0].rd_bytes', /unsigned/],
      [{ ...v(), block: Array.from({ length: L.MAX_STATS_DEVICES + 1 }, (_, i) => ({ name: `d${i}` })) }, 'stats.block', /more than 512 entries/],
    ];
    for (const [raw, field, re] of bad) refuses(() => checkDomainStats(raw), field, re);
  });
});

describe('handler -> launcher checks', () => {
  it('start: XML and URI present and bounded, disks checked against the VMI dir', () => {
    const ok = { domainXml: '<domain/>', libvirtUri: 'test:///default', disks: [] };
    assert.deepEqual(checkStartDomain(ok, '/v'), ok);
    assert.deepEqual(checkStartDomain({ domainXml: '<d/>', libvirtUri: 'u' }, '/v').disks, [], 'unset disks: none');
    refuses(() => checkStartDomain({ ...ok, domainXml: '' }, '/v'), 'domain_xml', /is empty/);
    refuses(() => checkStartDomain({ ...ok, libvirtUri: '' }, '/v'), 'libvirt_uri', /is empty/);
    refuses(() => checkStartDomain({ ...ok, domainXml: 'x'.repeat(L.MAX_DOMAIN_XML + 1) }, '/v'), 'domain_xml', /longer/);
    refuses(() => checkStartDomain({ ...ok, disks: [{ disk: 'a', path: '/etc/x', sparse: { sizeBytes: 1 } }] }, '/v'), 'disks[0].path', /outside the VMI directory \/v/);
  });
});
