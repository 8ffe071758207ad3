/**
 * Firmware and host-software devices on the real libvirtd (QEMU TCG), through the product's own
 * domain XML (buildDomainXml) and host-software probe: each fw-* golden defines; a plain EFI and
 * a secure-boot domain start and OVMF runs (its boot manager prints BdsDxe on the serial console;
 * with Microsoft's keys enrolled the unsigned EFI shell is refused: "Security Violation"), libvirt
 * copies the NVRAM from the template into the VMI directory and undefineDomain removes it; a TPM
 * domain starts with swtpm running. Run: flock /tmp/vh-heavy.lock env VHTEST_FILES=firmware
 * bash scripts/test-libvirt.sh
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Connection } from '../../src/libvirt/connection';
import { undefineDomain } from '../../src/libvirt/undefine';
import { probeHostSoftware } from '../../src/node/host-software';
import { buildDomainXml, type DomainXmlContext } from '../../src/vmi/render/domain-xml';
import { nvramPath } from '../../src/vmi/render/guest-devices';
import type { NormalizedVmi } from '../../src/vmi/spec/types';
import { firmwareGoldenCases } from '../unit/vmi-guest-devices.test';
import { cleanupDomain, guestName, makeRunDir, removeRunDir, testEnv, waitFor, waitForSerial } from './guest';

const GOLDEN_DIR = path.resolve(__dirname, '../../../test/fixtures/vmi/golden');

function vmi(name: string, over: Partial<NormalizedVmi>): NormalizedVmi {
  return {
    uid: '7d2c1b0a-9e8f-4a6b-8c5d-4e3f2a1b0c9d', namespace: 'fw', name, generation: 1, labels: {}, annotations: {},
    cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: null, dedicated: false },
    memory: { guestBytes: 256 * 2 ** 20, hugepageSizeBytes: null },
    firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null },
    machineType: 'q35', features: { acpi: true, apic: true }, memBalloon: false,
    disks: [], interfaces: [], rng: false, autoattachSerialConsole: true, runStrategy: 'Always', terminationGracePeriodSeconds: 30, requirements: [],
    ...over,
  };
}

describe('firmware and host-software devices on the real libvirtd', () => {
  const env = testEnv();
  let conn: Connection | undefined;
  let dir = '';
  const names: string[] = [];

  before(async () => {
    conn = await Connection.open(env.uri, { lanes: 2, events: false });
    dir = await makeRunDir('fw');
  });
  after(async () => {
    for (const n of names) await cleanupDomain(conn, n).catch(() => undefined);
    await conn?.close().catch(() => undefined);
    await removeRunDir(dir);
  });

  async function start(tag: string, v: NormalizedVmi): Promise<{ name: string; ctx: DomainXmlContext }> {
    const sw = await probeHostSoftware('/');
    const name = guestName(tag);
    names.push(name);
    const vmiDir = path.join(dir, tag);
    fs.mkdirSync(vmiDir, { mode: 0o755 });
    const ctx: DomainXmlContext = {
      virtType: 'qemu', domainName: name, vmiDir, serialSocket: path.join(vmiDir, 's.sock'), serialLog: path.join(vmiDir, 'serial.log'),
      pinnedCpus: [], bridge: null, diskPaths: {},
      efi: v.firmware.bootloader !== 'efi' ? null : v.firmware.secureBoot ? sw.ovmf.secureBoot : sw.ovmf.plain,
    };
    const dom = await conn!.defineXML(buildDomainXml(v, ctx));
    try {
      await dom.create();
    } finally {
      await dom.free();
    }
    return { name, ctx };
  }

  it('every fw-* golden defines (KVM ones as TCG: this host has no KVM)', async () => {
    for (const c of firmwareGoldenCases()) {
      const xml = fs.readFileSync(path.join(GOLDEN_DIR, `${c.name}.xml`), 'utf8')
        .replace('<domain type="kvm">', '<domain type="qemu">')
        .replace(/<name>[^<]*<\/name>/, `<name>${guestName(c.name)}</name>`);
      names.push(guestName(c.name));
      const dom = await conn!.defineXML(xml);
      await undefineDomain(dom);
      await dom.free();
    }
  });

  it('plain EFI starts: OVMF boots to its shell, NVRAM copied into the VMI directory, removed with the domain', async () => {
    const v = vmi('efi', { firmware: { bootloader: 'efi', secureBoot: false, kernelBoot: null, uuid: 'c0ffee00-1234-4abc-9def-0123456789ab' } });
    const { name, ctx } = await start('efi', v);
    await waitForSerial(ctx.serialLog, 'BdsDxe', 120_000);
    const nvram = nvramPath(ctx.vmiDir, 'efi');
    assert.equal(fs.statSync(nvram).size, fs.statSync('/usr/share/OVMF/OVMF_VARS_4M.fd').size);
    const dom = await conn!.lookupByName(name);
    assert.equal(dom.uuid, 'c0ffee00-1234-4abc-9def-0123456789ab', 'the firmware UUID is the domain UUID');
    assert.equal((await dom.getState()).state, 'running');
    await dom.destroy();
    await undefineDomain(dom);
    await dom.free();
    assert.equal(fs.existsSync(nvram), false, 'undefine removed the NVRAM');
  });

  it('secure boot starts with SMM and Microsoft keys: OVMF refuses the unsigned shell', async () => {
    const v = vmi('sb', { firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: null } });
    const { name, ctx } = await start('sb', v);
    await waitForSerial(ctx.serialLog, 'Security Violation', 120_000);
    assert.ok(fs.existsSync(nvramPath(ctx.vmiDir, 'sb')));
    const dom = await conn!.lookupByName(name);
    assert.equal((await dom.getState()).state, 'running');
    await dom.free();
  });

  it('a TPM domain starts with swtpm serving it', async () => {
    // Its own UUID: the secure-boot domain (still running) has the shared test uid, and libvirt
    // refuses a second domain with a UUID in use.
    const { name } = await start('tpm', vmi('tpm', { tpm: true, uid: '0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a' }));
    const dom = await conn!.lookupByName(name);
    const uuid = dom.uuid;
    assert.equal((await dom.getState()).state, 'running');
    await dom.free();
    await waitFor(() => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.startsWith('/usr/bin/swtpm socket') && l.includes(uuid) && l.includes(`${name}-swtpm.sock`)), 10_000, `swtpm for ${name}`);
  });
});
