/**
 * Firmware and the devices that need host software: the node's host-software probe
 * (src/node/host-software.ts), their validation (src/vmi/spec/guest-devices.ts) and their domain
 * XML (src/vmi/render/guest-devices.ts), with golden files in test/fixtures/vmi/golden/ (prefix
 * `fw-`; VHTEST_UPDATE_GOLDEN=1 rewrites them) that must pass virt-xml-validate. The real-libvirtd
 * side (define and start) is test/libvirt/firmware.test.ts.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { ErrorCodes, isVhError } from '../../src/errors';
import { probeHostSoftware, ovmfMissingFor } from '../../src/node/host-software';
import { buildDomainXml, type DomainXmlContext } from '../../src/vmi/render/domain-xml';
import { defaultVmi } from '../../src/vmi/spec/defaults';
import type { NormalizedVmi } from '../../src/vmi/spec/types';
import { validateVmi } from '../../src/vmi/spec/validate';

const GOLDEN_DIR = path.resolve(__dirname, '../../../test/fixtures/vmi/golden');
const UPDATE = process.env.VHTEST_UPDATE_GOLDEN === '1';
const UID = '3a1f0c2e-5b6d-4e7f-8091-a2b3c4d5e6f7';
const FW_UUID = 'c0ffee00-1234-4abc-9def-0123456789ab';
const VMI_DIR = `/var/lib/virt-handler/vmis/${UID}`;
const MiB = 1024 * 1024;
const PLAIN = { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd' };
const SECURE = { code: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd' };

function vmi(over: Partial<NormalizedVmi> = {}): NormalizedVmi {
  return {
    uid: UID, namespace: 'fw', name: 'guest', generation: 1, labels: {}, annotations: {},
    cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: null, dedicated: false },
    memory: { guestBytes: 256 * MiB, hugepageSizeBytes: null },
    firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null },
    machineType: 'q35', features: { acpi: true, apic: true },
    disks: [], interfaces: [], rng: false, autoattachSerialConsole: true, runStrategy: 'Always', terminationGracePeriodSeconds: 30, requirements: [],
    ...over,
  };
}

function ctx(v: NormalizedVmi, over: Partial<DomainXmlContext> = {}): DomainXmlContext {
  return {
    virtType: 'qemu', domainName: `${v.namespace}_${v.name}`, vmiDir: VMI_DIR,
    serialSocket: `${VMI_DIR}/serial.sock`, serialLog: `${VMI_DIR}/serial.log`, pinnedCpus: [], bridge: null, diskPaths: {},
    efi: v.firmware.bootloader !== 'efi' ? null : v.firmware.secureBoot ? SECURE : PLAIN,
    ...over,
  };
}

/** The golden cases (also defined on the real libvirtd by test/libvirt/firmware.test.ts). */
export function firmwareGoldenCases(): Array<{ name: string; vmi: NormalizedVmi; ctx: DomainXmlContext }> {
  const out: Array<{ name: string; vmi: NormalizedVmi; ctx: DomainXmlContext }> = [];
  const add = (name: string, v: NormalizedVmi, c: Partial<DomainXmlContext> = {}): void => {
    out.push({ name, vmi: v, ctx: ctx(v, c) });
  };
  // 1. Plain EFI under TCG with an emulated TPM and a firmware UUID other than the uid.
  add('fw-efi-tpm-uuid', vmi({ name: 'efi', firmware: { bootloader: 'efi', secureBoot: false, kernelBoot: null, uuid: FW_UUID }, tpm: true }));
  // 2. Secure boot (SMM build, Microsoft keys) under TCG.
  add('fw-secureboot-tcg', vmi({ name: 'sb', firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: null } }));
  // 3. virtiofs (shared memfd memory), virtio video with VNC, sound, isa + hyperv panic devices, VSOCK, on KVM.
  add(
    'fw-virtiofs-devices',
    vmi({
      name: 'devs',
      filesystems: [{ name: 'shared' }],
      graphics: true, video: 'virtio', sound: { name: 'audio', model: 'ich9' }, panicDevices: ['isa', 'hyperv'], vsock: true,
      features: { acpi: true, apic: true, hyperv: { relaxed: true } },
    }),
    { virtType: 'kvm', filesystemSources: { shared: '/srv/shares/devs' }, virtiofsd: '/usr/lib/qemu/virtiofsd' },
  );
  // 4. virtiofs next to hugepages (both in <memoryBacking>), ac97 sound, bochs video.
  add(
    'fw-virtiofs-hugepages',
    vmi({ name: 'hp', memory: { guestBytes: 1024 * MiB, hugepageSizeBytes: 2 * MiB }, filesystems: [{ name: 'data' }, { name: 'logs' }], graphics: true, video: 'bochs', sound: { name: 'snd', model: 'ac97' } }),
    { virtType: 'kvm', filesystemSources: { data: '/srv/shares/data', logs: '/srv/shares/logs' }, virtiofsd: null },
  );
  return out;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', parseTagValue: false, isArray: (n) => ['filesystem', 'panic'].includes(n) });
type Obj = Record<string, unknown>;
const at = (o: unknown, ...keys: Array<string | number>): unknown => keys.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)?.[k], o);
const dom = (v: NormalizedVmi, c: DomainXmlContext): Obj => at(parser.parse(buildDomainXml(v, c)), 'domain') as Obj;

function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') return reject(err);
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe('firmware and device golden files', () => {
  const cases = firmwareGoldenCases();
  for (const c of cases) {
    it(`${c.name} matches its golden file`, () => {
      const xml = buildDomainXml(c.vmi, c.ctx);
      const file = path.join(GOLDEN_DIR, `${c.name}.xml`);
      if (UPDATE) fs.writeFileSync(file, xml);
      assert.equal(xml, fs.readFileSync(file, 'utf8'), `${file} differs (VHTEST_UPDATE_GOLDEN=1 rewrites it)`);
    });
  }
  it('every one passes virt-xml-validate (libvirt domain schema)', async () => {
    for (const c of cases) {
      const file = path.join(GOLDEN_DIR, `${c.name}.xml`);
      const r = await run('virt-xml-validate', [file, 'domain']);
      assert.equal(r.code, 0, `${file}:\n${r.out}`);
    }
  });
});

describe('firmware and device domain XML', () => {
  const byName = new Map(firmwareGoldenCases().map((c) => [c.name, c]));
  const get = (n: string): { vmi: NormalizedVmi; ctx: DomainXmlContext } => byName.get(n)!;

  it('EFI: explicit OVMF loader, NVRAM from the template inside the VMI directory; the firmware UUID is the domain UUID, the uid stays in metadata', () => {
    const { vmi: v, ctx: c } = get('fw-efi-tpm-uuid');
    const d = dom(v, c);
    assert.equal(at(d, 'uuid'), FW_UUID);
    assert.equal(at(d, 'metadata', 'vh:vmi', 'vh:uid'), UID);
    assert.deepEqual(at(d, 'os', 'loader'), { '#text': PLAIN.code, '@_readonly': 'yes', '@_type': 'pflash' });
    assert.deepEqual(at(d, 'os', 'nvram'), { '#text': `${VMI_DIR}/efi_VARS.fd`, '@_template': PLAIN.varsTemplate });
    assert.equal(at(d, 'os', '@_firmware'), undefined, 'no firmware autoselection');
    assert.equal(at(d, 'features', 'smm'), undefined);
    assert.deepEqual(at(d, 'devices', 'tpm'), { '@_model': 'tpm-tis', backend: { '@_type': 'emulator', '@_version': '2.0' } });
    // Without a firmware UUID the domain UUID is the uid.
    assert.equal(at(dom(vmi(), ctx(vmi())), 'uuid'), UID);
  });

  it('secure boot: the secboot build with secure=yes, Microsoft-key vars and SMM on; needs q35', () => {
    const { vmi: v, ctx: c } = get('fw-secureboot-tcg');
    const d = dom(v, c);
    assert.deepEqual(at(d, 'os', 'loader'), { '#text': SECURE.code, '@_readonly': 'yes', '@_secure': 'yes', '@_type': 'pflash' });
    assert.equal(at(d, 'os', 'nvram', '@_template'), SECURE.varsTemplate);
    assert.deepEqual(at(d, 'features', 'smm'), { '@_state': 'on' });
    assert.throws(() => buildDomainXml({ ...v, machineType: 'pc' }, c), (e: unknown) => isVhError(e) && e.code === ErrorCodes.INVALID_ARGUMENT && /q35/.test(e.message));
  });

  it('EFI without OVMF on the node is INVALID_ARGUMENT naming it', () => {
    const { vmi: v, ctx: c } = get('fw-secureboot-tcg');
    assert.throws(() => buildDomainXml(v, { ...c, efi: null }), (e: unknown) => isVhError(e) && e.code === ErrorCodes.INVALID_ARGUMENT && /needs OVMF with secure boot/.test(e.message));
  });

  it('virtiofs: driver, binary, source from the context, target = name, shared memfd memory; hugepages kept beside it', () => {
    const { vmi: v, ctx: c } = get('fw-virtiofs-devices');
    const d = dom(v, c);
    assert.deepEqual(at(d, 'devices', 'filesystem', 0), {
      '@_type': 'mount', '@_accessmode': 'passthrough', driver: { '@_type': 'virtiofs' }, binary: { '@_path': '/usr/lib/qemu/virtiofsd' },
      source: { '@_dir': '/srv/shares/devs' }, target: { '@_dir': 'shared' }, alias: { '@_name': 'ua-shared' },
    });
    assert.deepEqual(at(d, 'memoryBacking'), { source: { '@_type': 'memfd' }, access: { '@_mode': 'shared' } });
    const hp = get('fw-virtiofs-hugepages');
    const h = dom(hp.vmi, hp.ctx);
    assert.deepEqual(at(h, 'memoryBacking', 'hugepages', 'page'), { '@_size': '2048', '@_unit': 'KiB' });
    assert.deepEqual(at(h, 'memoryBacking', 'access'), { '@_mode': 'shared' });
    assert.equal(at(h, 'devices', 'filesystem', 0, 'binary'), undefined, 'no virtiofsd known: libvirt looks it up');
    assert.throws(() => buildDomainXml(v, { ...c, filesystemSources: {} }), (e: unknown) => isVhError(e) && e.code === ErrorCodes.INVALID_ARGUMENT && /filesystem shared: its volume has no host directory/.test(e.message));
  });

  it('video type, sound, panic devices and VSOCK', () => {
    const { vmi: v, ctx: c } = get('fw-virtiofs-devices');
    const d = dom(v, c);
    assert.deepEqual(at(d, 'devices', 'video', 'model'), { '@_type': 'virtio', '@_heads': '1' });
    assert.deepEqual(at(d, 'devices', 'sound'), { '@_model': 'ich9', alias: { '@_name': 'ua-audio' } });
    assert.deepEqual(at(d, 'devices', 'panic'), [{ '@_model': 'isa' }, { '@_model': 'hyperv' }]);
    assert.deepEqual(at(d, 'devices', 'vsock'), { '@_model': 'virtio-non-transitional', cid: { '@_auto': 'yes' } });
  });
});

describe('validation of the firmware and devices', () => {
  const base = (domain: Obj, volumes: unknown[] = [], uid = UID): ReturnType<typeof validateVmi> =>
    validateVmi(defaultVmi({ metadata: { name: 'g', namespace: 'fw', uid }, spec: { domain: { resources: { requests: { memory: '64Mi' } }, ...domain }, volumes } }), { imageRoot: '/nonexistent', hostPathRoots: [], requirements: 'pending' });

  it('efi {} is secure boot with SMM (KubeVirt default); SMM explicitly off is refused', () => {
    const r = base({ firmware: { bootloader: { efi: {} } } });
    assert.ok(r.ok);
    assert.equal(r.vmi.firmware.secureBoot, true);
    assert.equal(r.vmi.features.smm, true);
    const off = base({ firmware: { bootloader: { efi: {} } }, features: { smm: { enabled: false } } });
    assert.equal(off.ok, false);
    assert.match(off.ok ? '' : off.violations.map((v) => `${v.field}: ${v.message}`).join('\n'), /spec\.domain\.features\.smm\.enabled: secure boot needs SMM/);
  });

  it('TPM, sound, video, panic devices and VSOCK are honoured; a persistent TPM and pvpanic stay requirements', () => {
    const r = base({ devices: { tpm: {}, sound: { name: 's' }, video: { type: 'virtio' }, panicDevices: [{ model: 'isa' }, { model: 'pvpanic' }], autoattachVSOCK: true } });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.vmi.tpm, true);
    assert.deepEqual(r.vmi.sound, { name: 's', model: 'ich9' });
    assert.equal(r.vmi.video, 'virtio');
    assert.equal(r.vmi.graphics, true, 'a video type asks for graphics (KubeVirt attaches them unless told not to)');
    assert.deepEqual(r.vmi.panicDevices, ['isa']);
    assert.equal(r.vmi.vsock, true);
    assert.deepEqual(r.vmi.requirements.map((q) => q.field), ['spec.domain.devices.panicDevices[1].model']);
    const p = base({ devices: { tpm: { persistent: true } } });
    assert.ok(p.ok);
    assert.equal(p.vmi.tpm, undefined);
    assert.match(p.vmi.requirements[0]?.needs ?? '', /^persistent TPM state/);
    const off = base({ devices: { tpm: { enabled: false } } });
    assert.ok(off.ok);
    assert.equal(off.vmi.tpm, undefined);
    assert.deepEqual(off.vmi.requirements, []);
  });

  it('a filesystem needs a directory volume of its name, not a disk image or a disk\'s volume', () => {
    const pvc = base({ devices: { filesystems: [{ name: 'share', virtiofs: {} }] } }, [{ name: 'share', persistentVolumeClaim: { claimName: 'c' } }]);
    assert.ok(pvc.ok, JSON.stringify(pvc));
    // Claims are honoured as disk images; a directory share of one waits, naming why.
    assert.equal(pvc.vmi.filesystems, undefined);
    assert.deepEqual(pvc.vmi.disks, [], 'no disk is added for a filesystem\'s volume');
    assert.deepEqual(pvc.vmi.requirements.map((q) => q.field), ['spec.domain.devices.filesystems[0]']);
    assert.match(pvc.vmi.requirements[0]!.needs, /virtiofs share of the persistentVolumeClaim volume "share"/);
    const img = base({ devices: { filesystems: [{ name: 'scratch', virtiofs: {} }] } }, [{ name: 'scratch', emptyDisk: { capacity: '1Gi' } }]);
    assert.equal(img.ok, false);
    assert.match(img.ok ? '' : img.violations[0]!.message, /is a emptyDisk, which is a disk image, not a directory/);
    const none = base({ devices: { filesystems: [{ name: 'ghost', virtiofs: {} }] } });
    assert.equal(none.ok, false);
    assert.match(none.ok ? '' : none.violations.map((v) => v.message).join(), /no volume named "ghost"/);
  });
});

describe('host software probe', () => {
  it('finds OVMF, swtpm and virtiofsd below a root, and names each missing one with its package', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-hostsw-'));
    try {
      const empty = await probeHostSoftware(root);
      assert.equal(empty.ovmf.plain, null);
      assert.match(empty.ovmf.missing ?? '', /^OVMF is not installed on this node .*install the Debian package ovmf\)$/);
      assert.match(empty.swtpm.missing ?? '', /^swtpm is not installed on this node .*swtpm-tools\)$/);
      assert.match(empty.virtiofsd.missing ?? '', /^virtiofsd is not installed on this node \(none of .*\/usr\/lib\/qemu\/virtiofsd/);
      assert.match(ovmfMissingFor(empty, true) ?? '', /^OVMF is not installed/);

      fs.mkdirSync(path.join(root, 'usr/share/OVMF'), { recursive: true });
      for (const f of ['OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd']) fs.writeFileSync(path.join(root, 'usr/share/OVMF', f), '');
      fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
      fs.writeFileSync(path.join(root, 'usr/bin/swtpm'), '', { mode: 0o755 });
      fs.mkdirSync(path.join(root, 'usr/lib/qemu'), { recursive: true });
      fs.writeFileSync(path.join(root, 'usr/lib/qemu/virtiofsd'), '', { mode: 0o644 }); // not executable: not found
      const some = await probeHostSoftware(root);
      assert.deepEqual(some.ovmf.plain, { code: path.join(root, 'usr/share/OVMF/OVMF_CODE_4M.fd'), varsTemplate: path.join(root, 'usr/share/OVMF/OVMF_VARS_4M.fd') });
      assert.equal(some.ovmf.secureBoot, null);
      assert.equal(ovmfMissingFor(some, false), null);
      assert.match(ovmfMissingFor(some, true) ?? '', /^OVMF with secure boot is not installed on this node \(no OVMF_CODE_4M\.secboot\.fd/);
      assert.equal(some.swtpm.path, null);
      assert.match(some.swtpm.missing ?? '', /^swtpm_setup is not installed on this node .*swtpm-tools\)$/);
      assert.equal(some.virtiofsd.path, null);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('on this host (setup.sh installs ovmf, swtpm, swtpm-tools; qemu-system-common ships virtiofsd)', async () => {
    const sw = await probeHostSoftware('/');
    assert.deepEqual(sw.ovmf.secureBoot, SECURE);
    assert.deepEqual(sw.ovmf.plain, PLAIN);
    assert.equal(sw.swtpm.path, '/usr/bin/swtpm');
    assert.equal(sw.virtiofsd.path, '/usr/lib/qemu/virtiofsd');
  });
});

describe('preflight: host software as node facts', () => {
  it('a VMI needing what the node lacks gets a reason naming each missing piece; nothing needed or all present: null', async () => {
    const { missingHostSoftware } = await import('../../src/vmi/control/launch-plan');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-hostsw-'));
    try {
      const facts = (software: unknown, vsock = false): Parameters<typeof missingHostSoftware>[0] => ({
        libvirtUri: null, nodeLibvirtConnected: false, capabilities: null, handlerSocket: '/run/vh.sock', bridge: null,
        nodeInfo: { software, devices: { vhostVsock: { path: '/dev/vhost-vsock', present: vsock } } } as never,
      });
      const needy = vmi({ firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: null }, tpm: true, filesystems: [{ name: 'f' }], vsock: true });
      const none = facts(await probeHostSoftware(root));
      const reason = missingHostSoftware(none, needy) ?? '';
      assert.match(reason, /^this node cannot run it: spec\.domain\.firmware\.bootloader\.efi needs OVMF is not installed on this node/);
      assert.match(reason, /spec\.domain\.devices\.tpm needs swtpm is not installed/);
      assert.match(reason, /spec\.domain\.devices\.filesystems needs virtiofsd is not installed/);
      assert.match(reason, /spec\.domain\.devices\.autoattachVSOCK needs \/dev\/vhost-vsock, which this node does not have/);
      assert.equal(missingHostSoftware(none, vmi()), null, 'a BIOS VMI without those devices needs none of it');
      assert.match(missingHostSoftware(facts(undefined), needy) ?? '', /^waiting for the node probe/);
      const host = facts(await probeHostSoftware('/'), true);
      assert.equal(missingHostSoftware(host, needy), null);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
