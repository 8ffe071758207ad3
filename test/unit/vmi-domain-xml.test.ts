/**
 * Domain XML generation (src/vmi/domain-xml.ts), the XML builder (src/vmi/xml.ts) and the disk
 * plan (src/vmi/disk-plan.ts).
 *
 * Golden files: test/fixtures/vmi/golden/<case>.xml are compared byte for byte. After an
 * intended change to the generated XML, rewrite them with
 *   VHTEST_UPDATE_GOLDEN=1 node --test dist/test/unit/vmi-domain-xml.test.js
 * and review the diff. Every golden file is also checked against libvirt's RelaxNG schema with
 * virt-xml-validate (libvirt-clients; it needs xmllint from libxml2-utils; setup.sh installs both).
 */
import { describe, it, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { parse as parseYaml } from 'yaml';
import { ErrorCodes, isVhError } from '../../src/errors';
import { buildDomainXml, deriveMac, diskSuffix, kernelCmdline, targetDevs, VMI_METADATA_NS } from '../../src/vmi/render/domain-xml';
import { detectImageFormat, planDisks } from '../../src/vmi/render/disk-plan';
import { buildStartCommand, type NodeFacts } from '../../src/vmi/control/launch-plan';
import type { NormalizedDisk, NormalizedVmi } from '../../src/vmi/spec/types';
import type { DomainXmlContext } from '../../src/vmi/render/domain-xml';
import { element, escapeAttr, escapeText, serialize, text } from '../../src/vmi/render/xml';

const GOLDEN_DIR = path.resolve(__dirname, '../../../test/fixtures/vmi/golden');
const UPDATE = process.env.VHTEST_UPDATE_GOLDEN === '1';
const UID = '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b';
const VMI_DIR = `/var/lib/virt-handler/vmis/${UID}`;

function vmi(over: Partial<NormalizedVmi> = {}): NormalizedVmi {
  return {
    uid: UID,
    namespace: 'default',
    name: 'tiny',
    generation: 1,
    labels: {},
    annotations: {},
    cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: null, dedicated: false },
    memory: { guestBytes: 128 * 1024 * 1024, hugepageSizeBytes: null },
    firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null },
    machineType: 'q35',
    features: { acpi: true, apic: true },
    disks: [],
    interfaces: [],
    rng: false,
    autoattachSerialConsole: true,
    runStrategy: 'Always',
    terminationGracePeriodSeconds: 30,
    requirements: [],
    ...over,
  };
}

function ctx(v: NormalizedVmi, over: Partial<DomainXmlContext> = {}): DomainXmlContext {
  const diskPaths: Record<string, { path: string; format: 'qcow2' | 'raw' }> = {};
  for (const d of v.disks) {
    const vol = d.volume;
    if (vol.kind === 'hostDisk') diskPaths[d.name] = { path: vol.path, format: 'raw' };
    else if (vol.kind === 'cloudInitNoCloud') diskPaths[d.name] = { path: `${VMI_DIR}/disks/${d.name}-cidata.iso`, format: 'raw' };
    else diskPaths[d.name] = { path: `${VMI_DIR}/disks/${d.name}.qcow2`, format: 'qcow2' };
  }
  return {
    virtType: 'qemu',
    domainName: `${v.namespace}_${v.name}`,
    vmiDir: VMI_DIR,
    serialSocket: `${VMI_DIR}/serial.sock`,
    serialLog: `${VMI_DIR}/serial.log`,
    pinnedCpus: [],
    bridge: null,
    diskPaths,
    // Debian's ovmf package, as the node probe finds it (src/node/host-software.ts).
    efi: v.firmware.bootloader !== 'efi' ? null
      : v.firmware.secureBoot ? { code: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd' }
        : { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
    ...over,
  };
}

function disk(name: string, over: Partial<NormalizedDisk> & Pick<NormalizedDisk, 'volume'>): NormalizedDisk {
  return { name, device: 'disk', bus: 'virtio', bootOrder: null, serial: null, readonly: false, cache: null, io: null, ...over };
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The representative VMIs of the golden files. */
function goldenCases(): Array<{ name: string; vmi: NormalizedVmi; ctx: DomainXmlContext }> {
  const cases: Array<{ name: string; vmi: NormalizedVmi; ctx: DomainXmlContext }> = [];
  const add = (name: string, v: NormalizedVmi, c: Partial<DomainXmlContext> = {}): void => {
    cases.push({ name, vmi: v, ctx: ctx(v, c) });
  };

  // 1. The tiny guest of the libvirt recipe: TCG, machine pc, direct kernel boot, nothing else.
  add(
    'tiny-kernel-tcg',
    vmi({
      machineType: 'pc',
      firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: { kernel: '/srv/images/vmlinux', initrd: '/srv/images/initramfs.cpio.gz', kernelArgs: 'panic=-1' }, uuid: null },
    }),
  );

  // 2. q35 on KVM with the default (host-model) CPU, a containerDisk, an emptyDisk, cloud-init, masquerade and rng.
  add(
    'q35-kvm-hostmodel',
    vmi({
      name: 'fedora',
      generation: 3,
      cpu: { sockets: 1, cores: 2, threads: 1, vcpus: 2, model: null, dedicated: false },
      memory: { guestBytes: 2 * GiB, hugepageSizeBytes: null },
      disks: [
        disk('rootdisk', { bootOrder: 1, volume: { kind: 'containerDisk', name: 'rootdisk', path: '/srv/images/fedora.qcow2' } }),
        disk('scratch', { volume: { kind: 'emptyDisk', name: 'scratch', capacityBytes: 10 * GiB } }),
        disk('cloudinit', { volume: { kind: 'cloudInitNoCloud', name: 'cloudinit', userData: '#cloud-config\npassword: fedora\n', networkData: null } }),
      ],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: null, model: 'virtio', bootOrder: null }],
      rng: true,
    }),
    { virtType: 'kvm' },
  );

  // 3. UEFI secure boot (q35 + SMM) on KVM.
  add(
    'efi-secureboot',
    vmi({
      name: 'windows',
      cpu: { sockets: 1, cores: 2, threads: 2, vcpus: 4, model: 'host-passthrough', dedicated: false },
      memory: { guestBytes: 4 * GiB, hugepageSizeBytes: null },
      firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: null },
      machineType: 'pc-q35-7.2',
      disks: [disk('os', { bus: 'sata', bootOrder: 1, volume: { kind: 'containerDisk', name: 'os', path: '/srv/images/win.qcow2' } })],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: null, model: 'e1000e', bootOrder: null }],
    }),
    { virtType: 'kvm' },
  );

  // 4. Hugepages and dedicated, pinned CPUs with a named model.
  add(
    'hugepages-dedicated',
    vmi({
      name: 'dpdk',
      cpu: { sockets: 2, cores: 2, threads: 1, vcpus: 4, model: 'Skylake-Client', dedicated: true },
      memory: { guestBytes: 1 * GiB, hugepageSizeBytes: 2 * MiB },
      disks: [disk('root', { volume: { kind: 'containerDisk', name: 'root', path: '/srv/images/alpine.img' } })],
    }),
    { virtType: 'kvm', pinnedCpus: [2, 3, 6, 7] },
  );

  // 5. Every bus, cdroms, a read-only disk, hostDisks, serials and boot orders; no serial console; TCG with plain EFI.
  add(
    'multi-bus-cdrom',
    vmi({
      name: 'buses',
      cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: 'qemu64', dedicated: false },
      firmware: { bootloader: 'efi', secureBoot: false, kernelBoot: null, uuid: null },
      features: { acpi: true, apic: false },
      autoattachSerialConsole: false,
      disks: [
        disk('root', { bootOrder: 2, serial: 'ROOT-0001', volume: { kind: 'containerDisk', name: 'root', path: '/srv/images/debian.qcow2' } }),
        disk('data', { volume: { kind: 'hostDisk', name: 'data', path: '/srv/data/buses.img', type: 'DiskOrCreate', capacityBytes: GiB } }),
        disk('install', { device: 'cdrom', bus: 'sata', readonly: true, bootOrder: 1, volume: { kind: 'containerDisk', name: 'install', path: '/srv/images/netinst.iso' } }),
        disk('legacy', { bus: 'sata', serial: 'SATA-7', volume: { kind: 'emptyDisk', name: 'legacy', capacityBytes: 512 * MiB } }),
        disk('scsi0', { bus: 'scsi', readonly: true, volume: { kind: 'hostDisk', name: 'scsi0', path: '/srv/data/shared.img', type: 'Disk', capacityBytes: null } }),
        disk('seed', { device: 'cdrom', bus: 'scsi', readonly: true, volume: { kind: 'cloudInitNoCloud', name: 'seed', userData: '#cloud-config\n', networkData: 'version: 2\n' } }),
      ],
      rng: true,
    }),
  );

  // 6. A bridge interface (explicit MAC) next to a masquerade one.
  add(
    'bridge-interface',
    vmi({
      namespace: 'net',
      name: 'router',
      disks: [disk('root', { volume: { kind: 'containerDisk', name: 'root', path: '/srv/images/router.qcow2' } })],
      interfaces: [
        { name: 'lan', binding: 'bridge', macAddress: '02:00:00:aa:bb:cc', model: 'virtio', bootOrder: null },
        { name: 'wan', binding: 'masquerade', macAddress: null, model: 'rtl8139', bootOrder: null },
      ],
    }),
    { virtType: 'kvm', bridge: 'br-vh0' },
  );

  // 7. TCG default CPU with multi-socket topology and kernel args that already name the console.
  add(
    'kernel-console-present',
    vmi({
      name: 'kconsole',
      machineType: 'pc',
      cpu: { sockets: 2, cores: 1, threads: 1, vcpus: 2, model: null, dedicated: false },
      memory: { guestBytes: 256 * MiB + 512, hugepageSizeBytes: null },
      firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: { kernel: '/boot/vmlinuz-6.1', initrd: null, kernelArgs: ' quiet console=ttyS0,115200n8 ' }, uuid: null },
    }),
  );
  // 8. Windows-style: every Hyper-V enlightenment, KVM hidden, pvspinlock, APIC EOI, a time zone with
  //    timers, SMBIOS serial + chassis, a writeback/threads disk and a PXE boot order on the NIC.
  add(
    'windows-hyperv-clock',
    vmi({
      name: 'win',
      cpu: { sockets: 1, cores: 2, threads: 1, vcpus: 2, model: 'host-model', dedicated: false },
      memory: { guestBytes: 4 * GiB, hugepageSizeBytes: null },
      firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: UID },
      features: {
        acpi: true, apic: true, apicEoi: true, smm: true, pvspinlock: false, kvmHidden: true,
        hyperv: {
          relaxed: true, vapic: true, vpindex: true, runtime: true, reset: true, frequencies: true, reenlightenment: true, ipi: true, evmcs: false, synic: true,
          synictimer: { enabled: true, direct: true }, spinlocks: { enabled: true, retries: 8191 }, vendorId: { enabled: true, value: 'KubeVirt' },
          tlbflush: { enabled: true },
        },
      },
      clock: {
        offset: { kind: 'timezone', timezone: 'Europe/Paris' },
        timers: [{ name: 'hpet', present: false }, { name: 'pit', present: true, tickPolicy: 'delay' }, { name: 'rtc', present: true, tickPolicy: 'catchup', track: 'guest' }, { name: 'hyperv', present: true }],
      },
      sysinfo: { serial: 'WIN-0001', chassis: { manufacturer: 'Example Corp', asset: 'A-17' } },
      disks: [
        disk('os', { bus: 'sata', bootOrder: 2, cache: 'writeback', io: 'threads', volume: { kind: 'containerDisk', name: 'os', path: '/srv/images/win.qcow2' } }),
        disk('virtio-drivers', { device: 'cdrom', bus: 'sata', readonly: true, volume: { kind: 'containerDisk', name: 'virtio-drivers', path: '/srv/images/virtio-win.iso' } }),
      ],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: null, model: 'e1000e', bootOrder: 1 }],
    }),
    { virtType: 'kvm' },
  );

  // 9. Hyper-V passthrough, a UTC clock offset with a KVM clock timer, and a cache=none/io=native disk.
  add(
    'hyperv-passthrough-offset',
    vmi({
      name: 'offset',
      features: { acpi: true, apic: true, hyperv: 'passthrough', pvspinlock: true },
      clock: { offset: { kind: 'utc', adjustmentSeconds: -3600 }, timers: [{ name: 'kvm', present: true }] },
      sysinfo: { serial: 'SN 42', chassis: {} },
      disks: [disk('root', { cache: 'none', io: 'native', volume: { kind: 'hostDisk', name: 'root', path: '/srv/data/root.img', type: 'Disk', capacityBytes: null } })],
    }),
    { virtType: 'kvm' },
  );
  // 10. Devices beside disks and NICs: a tablet and a keyboard, an i6300esb watchdog, no balloon;
  //     CPU feature policies, SeaBIOS output on the serial console.
  add(
    'inputs-watchdog-cpu-features',
    vmi({
      name: 'devices',
      cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model: 'Skylake-Client', dedicated: false, features: [{ name: 'vmx', policy: 'require' }, { name: 'pcid', policy: 'disable' }] },
      firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: null, uuid: null, biosUseSerial: true },
      inputs: [{ name: 'tablet', type: 'tablet', bus: 'usb' }, { name: 'kbd', type: 'keyboard', bus: 'virtio' }],
      watchdog: { name: 'wd', action: 'poweroff' },
      memBalloon: false,
    }),
    { virtType: 'kvm' },
  );
  // 11. I/O threads (shared + one dedicated), block multi-queue, VNC graphics.
  add(
    'iothreads-multiqueue-vnc',
    vmi({
      name: 'io',
      cpu: { sockets: 1, cores: 4, threads: 1, vcpus: 4, model: null, dedicated: false },
      ioThreadsShared: true,
      blockMultiQueue: true,
      graphics: true,
      disks: [
        disk('root', { volume: { kind: 'containerDisk', name: 'root', path: '/srv/images/root.qcow2' } }),
        disk('db', { dedicatedIOThread: true, cache: 'none', io: 'native', volume: { kind: 'hostDisk', name: 'db', path: '/srv/data/db.img', type: 'Disk', capacityBytes: null } }),
        disk('logs', { volume: { kind: 'emptyDisk', name: 'logs', capacityBytes: GiB } }),
        disk('legacy', { bus: 'sata', volume: { kind: 'emptyDisk', name: 'legacy', capacityBytes: GiB } }),
      ],
    }),
    { virtType: 'kvm' },
  );
  // 12. A USB disk with an error policy, a cdrom with its tray open, a NIC that starts with its link down and an ACPI index.
  add(
    'usb-tray-link',
    vmi({
      name: 'usb',
      disks: [
        disk('stick', { bus: 'usb', errorPolicy: 'stop', volume: { kind: 'emptyDisk', name: 'stick', capacityBytes: GiB } }),
        disk('media', { device: 'cdrom', bus: 'sata', readonly: true, trayOpen: true, volume: { kind: 'containerDisk', name: 'media', path: '/srv/images/media.iso' } }),
      ],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: null, model: 'virtio', bootOrder: null, linkDown: true, acpiIndex: 3 }],
    }),
    { virtType: 'kvm' },
  );
  return cases;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  htmlEntities: true,
  isArray: (name) => ['disk', 'interface', 'vcpupin'].includes(name),
});

type Obj = Record<string, unknown>;
const parse = (xml: string): Obj => parser.parse(xml) as Obj;
/** Same, but dropping the indentation whitespace: for structural comparisons. */
const trimmedParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', parseTagValue: false, parseAttributeValue: false, htmlEntities: true });
const parseTrimmed = (xml: string): Obj => trimmedParser.parse(xml) as Obj;
const at = (o: unknown, ...keys: Array<string | number>): unknown => keys.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)?.[k], o);

function isCode(code: string, pattern?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isVhError(e), `expected a VhError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

function run(file: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') return reject(err);
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && fs.existsSync(path.join(d, bin)));
}

// ---------------------------------------------------------------------------------------------

describe('xml builder', () => {
  it('escapes text and attribute values by construction, in the given attribute order', () => {
    const x = serialize(element('a', { z: `"q'<&>`, b: 1, skip: undefined, n: null, y: true }, `</a><b>&amp;]]>`, element('c')));
    assert.equal(x, `<a z="&quot;q&apos;&lt;&amp;&gt;" b="1" y="yes">&lt;/a&gt;&lt;b&gt;&amp;amp;]]&gt;<c/></a>\n`);
    assert.equal(escapeAttr('\t\n\r'), '&#9;&#10;&#13;');
    assert.equal(escapeText('a\tb\nc\r'), 'a\tb\nc&#13;');
  });

  it('round-trips every allowed character through a real parser, whitespace included', () => {
    const v = `\t\n\r <>&"' ]]> é 😀 \u007f`;
    const x = serialize(element('a', { v }, element('t', null, v)));
    assert.equal(XMLValidator.validate(x), true);
    const p = parse(x);
    assert.equal(at(p, 'a', '@_v'), v);
    assert.equal(at(p, 'a', 't'), v);
  });

  it('indents element-only content by two spaces and skips null/undefined/false children', () => {
    const x = serialize(element('r', null, element('a', null, element('b', { k: 'v' })), null, undefined, false, [element('c', null, 'x'), [element('d')]]));
    assert.equal(x, '<r>\n  <a>\n    <b k="v"/>\n  </a>\n  <c>x</c>\n  <d/>\n</r>\n');
  });

  it('rejects invalid element and attribute names', () => {
    for (const bad of ['', '1a', 'a b', 'a>', 'a:b:c', 'é', '-a', 'a"']) {
      assert.throws(() => element(bad), TypeError, bad);
      assert.throws(() => element('ok', { [bad]: 'v' }), TypeError, bad);
    }
    assert.doesNotThrow(() => element('vh:uid', { 'xmlns:vh': 'urn:x', 'a.b-c_d': 1 }));
  });

  it('rejects characters XML 1.0 cannot carry, in text and attributes', () => {
    for (const bad of ['\u0000', 'a\u0001b', '\u0008', '\u000b', '\u000c', '\u001f', '\uFFFE', '\uFFFF', 'x\uD800', '\uDC00y', '\uDFFF\uD800']) {
      assert.throws(() => text(bad), isCode(ErrorCodes.INVALID_ARGUMENT, /XML 1\.0/));
      assert.throws(() => element('a', null, bad), isCode(ErrorCodes.INVALID_ARGUMENT));
      assert.throws(() => element('a', { v: bad }), isCode(ErrorCodes.INVALID_ARGUMENT, /attribute a\/@v/));
    }
    assert.doesNotThrow(() => element('a', { v: '\t\n\r\u007f\u0085😀\uD83D\uDE00' }, '\t\n\r😀'));
  });
});

describe('domain XML golden files', () => {
  const cases = goldenCases();
  for (const c of cases) {
    it(`${c.name} matches its golden file and is well-formed`, () => {
      const xml = buildDomainXml(c.vmi, c.ctx);
      assert.equal(XMLValidator.validate(xml), true);
      const file = path.join(GOLDEN_DIR, `${c.name}.xml`);
      if (UPDATE) {
        fs.mkdirSync(GOLDEN_DIR, { recursive: true });
        fs.writeFileSync(file, xml);
      }
      assert.equal(xml, fs.readFileSync(file, 'utf8'), `${file} differs (VHTEST_UPDATE_GOLDEN=1 rewrites it)`);
      // deterministic: a second build, from a deep copy, gives the same bytes
      assert.equal(buildDomainXml(structuredClone(c.vmi), structuredClone(c.ctx) as DomainXmlContext), xml);
    });
  }

  it('every golden file passes virt-xml-validate (libvirt domain schema)', async () => {
    // scripts/setup.sh installs both; missing tools are a broken set-up, not a reason to skip.
    assert.ok(onPath('virt-xml-validate') && onPath('xmllint'), 'virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils) must be installed: run scripts/setup.sh');
    for (const c of cases) {
      const file = path.join(GOLDEN_DIR, `${c.name}.xml`);
      const r = await run('virt-xml-validate', [file, 'domain']);
      assert.equal(r.code, 0, `${file}:\n${r.out}`);
    }
  });
});

describe('domain XML content', () => {
  const byName = new Map(goldenCases().map((c) => [c.name, c]));
  const get = (n: string): { vmi: NormalizedVmi; ctx: DomainXmlContext } => byName.get(n) as { vmi: NormalizedVmi; ctx: DomainXmlContext };

  it('tiny TCG guest: qemu64 custom check=none, console=ttyS0 appended, serial socket + log + console', () => {
    const { vmi: v, ctx: c } = get('tiny-kernel-tcg');
    const d = at(parseTrimmed(buildDomainXml(v, c)), 'domain');
    assert.equal(at(d, '@_type'), 'qemu');
    assert.equal(at(d, 'uuid'), UID);
    assert.equal(at(d, 'memory', '#text'), String(128 * 1024));
    assert.deepEqual(at(d, 'cpu'), {
      '@_mode': 'custom', '@_match': 'exact', '@_check': 'none',
      model: { '#text': 'qemu64', '@_fallback': 'allow' },
      topology: { '@_sockets': '1', '@_dies': '1', '@_cores': '1', '@_threads': '1' },
    });
    assert.equal(at(d, 'os', 'cmdline'), 'panic=-1 console=ttyS0');
    assert.equal(at(d, 'devices', 'serial', 'source', '@_path'), c.serialSocket);
    assert.equal(at(d, 'devices', 'serial', 'log', '@_file'), c.serialLog);
    assert.equal(at(d, 'devices', 'console', '@_type'), 'unix');
    assert.equal(at(d, 'devices', 'graphics'), undefined);
    assert.equal(at(d, 'devices', 'emulator'), undefined);
    const meta = at(d, 'metadata', 'vh:vmi');
    assert.equal(at(meta, '@_xmlns:vh'), VMI_METADATA_NS);
    assert.deepEqual([at(meta, 'vh:namespace'), at(meta, 'vh:name'), at(meta, 'vh:uid'), at(meta, 'vh:generation')], ['default', 'tiny', UID, '1']);
  });

  it('kernel command line: console=ttyS0 only when attached and not already there', () => {
    assert.equal(kernelCmdline('', true), 'console=ttyS0');
    assert.equal(kernelCmdline('', false), '');
    assert.equal(kernelCmdline('quiet', false), 'quiet');
    assert.equal(kernelCmdline('console=ttyS0,115200 quiet', true), 'console=ttyS0,115200 quiet');
    assert.equal(kernelCmdline('console=ttyS01', true), 'console=ttyS01 console=ttyS0');
    assert.equal(kernelCmdline('xconsole=ttyS0', true), 'xconsole=ttyS0 console=ttyS0');
  });

  it('target dev names count per prefix (sata and scsi share sd)', () => {
    const v = get('multi-bus-cdrom').vmi;
    assert.deepEqual(targetDevs(v.disks), ['vda', 'vdb', 'sda', 'sdb', 'sdc', 'sdd']);
    assert.deepEqual([0, 25, 26, 27, 51, 52, 701, 702].map(diskSuffix), ['a', 'z', 'aa', 'ab', 'az', 'ba', 'zz', 'aaa']);
  });

  it('MACs: derived from uid + interface name with the 52:54:00 prefix, distinct, or as given', () => {
    const { vmi: v, ctx: c } = get('bridge-interface');
    const ifs = at(parse(buildDomainXml(v, c)), 'domain', 'devices', 'interface') as Obj[];
    assert.equal(at(ifs[0], 'mac', '@_address'), '02:00:00:aa:bb:cc');
    assert.equal(at(ifs[0], 'source', '@_bridge'), 'br-vh0');
    assert.equal(at(ifs[1], '@_type'), 'user');
    assert.equal(at(ifs[1], 'mac', '@_address'), deriveMac(UID, 'wan'));
    assert.match(deriveMac(UID, 'wan'), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(deriveMac(UID, 'wan'), deriveMac(UID, 'wan'));
    assert.notEqual(deriveMac(UID, 'wan'), deriveMac(UID, 'lan'));
    assert.notEqual(deriveMac(UID, 'wan'), deriveMac('00000000-0000-4000-8000-000000000000', 'wan'));
    const dup = vmi({ interfaces: [
      { name: 'a', binding: 'masquerade', macAddress: '02:00:00:00:00:01', model: 'virtio', bootOrder: null },
      { name: 'b', binding: 'masquerade', macAddress: '02:00:00:00:00:01', model: 'virtio', bootOrder: null },
    ] });
    assert.throws(() => buildDomainXml(dup, ctx(dup)), isCode(ErrorCodes.INVALID_ARGUMENT, /same MAC/));
  });

  it('hostile strings are escaped and re-parse to the same text', async () => {
    const hostile = `</name><devices><x a='1'>"q" & ]]> <![CDATA[x]]> é 😀 \t`;
    const v = vmi({
      namespace: `ns"'<>&`,
      name: hostile,
      firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: { kernel: `/k/'"<&>.img`, initrd: `/i/]]>`, kernelArgs: `init=/bin/sh x="</cmdline>" y='&amp;' ]]>` }, uuid: null },
      disks: [disk('d', { serial: 'SN-1 +_.', volume: { kind: 'emptyDisk', name: 'd', capacityBytes: MiB } })],
    });
    const c = ctx(v, { domainName: `a'b"c]]><x>&amp;`, serialSocket: `/run/vh/"'<&>.sock`, serialLog: '/run/vh/<&\t\u00e9>.log' });
    const xml = buildDomainXml(v, c);
    assert.equal(XMLValidator.validate(xml), true);
    assert.ok(!xml.includes('</name><devices>'));
    const d = at(parse(xml), 'domain');
    assert.equal(at(d, 'name'), c.domainName);
    assert.equal(at(d, 'metadata', 'vh:vmi', 'vh:name'), hostile);
    assert.equal(at(d, 'metadata', 'vh:vmi', 'vh:namespace'), v.namespace);
    assert.equal(at(d, 'os', 'kernel'), `/k/'"<&>.img`);
    assert.equal(at(d, 'os', 'initrd'), '/i/]]>');
    assert.equal(at(d, 'os', 'cmdline'), `init=/bin/sh x="</cmdline>" y='&amp;' ]]> console=ttyS0`);
    assert.equal(at(d, 'devices', 'disk', 0, 'serial'), 'SN-1 +_.');
    assert.equal(at(d, 'devices', 'serial', 'source', '@_path'), c.serialSocket);
    assert.equal(at(d, 'devices', 'serial', 'log', '@_file'), c.serialLog);
    assert.equal(at(d, 'devices', 'disk', 0, 'alias', '@_name'), 'ua-d');
    // the one structural element a hostile name could try to inject is there exactly once
    assert.equal(xml.match(/<devices>/g)?.length, 1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-domxml-'));
    try {
      const f = path.join(dir, 'hostile.xml');
      fs.writeFileSync(f, xml);
      const r = await run('virt-xml-validate', [f, 'domain']);
      assert.equal(r.code, 0, r.out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('control characters and lone surrogates in user strings are rejected', () => {
    for (const bad of ['a\u0000b', 'esc\u001b[31m', '\uD800', 'x\uFFFF']) {
      const v1 = vmi({ name: bad });
      assert.throws(() => buildDomainXml(v1, ctx(v1)), isCode(ErrorCodes.INVALID_ARGUMENT));
      const v2 = vmi({ firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: { kernel: '/k', initrd: null, kernelArgs: bad }, uuid: null } });
      assert.throws(() => buildDomainXml(v2, ctx(v2)), isCode(ErrorCodes.INVALID_ARGUMENT));
      const v3 = vmi({ namespace: bad });
      assert.throws(() => buildDomainXml(v3, ctx(v3)), isCode(ErrorCodes.INVALID_ARGUMENT, /XML 1\.0/));
      const v4 = vmi();
      assert.throws(() => buildDomainXml(v4, ctx(v4, { serialLog: `/run/${bad}.log` })), isCode(ErrorCodes.INVALID_ARGUMENT, /XML 1\.0/));
    }
  });

  it('refuses host-passthrough and host-model under TCG', () => {
    for (const model of ['host-passthrough', 'host-model']) {
      const v = vmi({ cpu: { sockets: 1, cores: 1, threads: 1, vcpus: 1, model, dedicated: false } });
      assert.throws(() => buildDomainXml(v, ctx(v, { virtType: 'qemu' })), isCode(ErrorCodes.INVALID_ARGUMENT, new RegExp(`${model} needs KVM`)));
      assert.doesNotThrow(() => buildDomainXml(v, ctx(v, { virtType: 'kvm' })));
    }
  });

  it('refuses a bridge interface when the node has no bridge', () => {
    const { vmi: v, ctx: c } = get('bridge-interface');
    assert.throws(() => buildDomainXml(v, { ...c, bridge: null }), isCode(ErrorCodes.INVALID_ARGUMENT, /no bridge configured/));
  });

  it('refuses other impossible combinations with clear errors', () => {
    const sb = vmi({ firmware: { bootloader: 'efi', secureBoot: true, kernelBoot: null, uuid: null }, machineType: 'pc' });
    assert.throws(() => buildDomainXml(sb, ctx(sb)), isCode(ErrorCodes.INVALID_ARGUMENT, /q35/));
    const cd = vmi({ disks: [disk('cd', { device: 'cdrom', bus: 'virtio', volume: { kind: 'emptyDisk', name: 'cd', capacityBytes: MiB } })] });
    assert.throws(() => buildDomainXml(cd, ctx(cd)), isCode(ErrorCodes.INVALID_ARGUMENT, /virtio/));
    const ded = vmi({ cpu: { sockets: 1, cores: 2, threads: 1, vcpus: 2, model: null, dedicated: true } });
    assert.throws(() => buildDomainXml(ded, ctx(ded, { virtType: 'kvm', pinnedCpus: [1] })), isCode(ErrorCodes.INVALID_ARGUMENT, /needs 2 host CPUs/));
    const ser = vmi({ disks: [disk('d', { serial: `</serial>'"&]]>`, volume: { kind: 'emptyDisk', name: 'd', capacityBytes: MiB } })] });
    assert.throws(() => buildDomainXml(ser, ctx(ser)), isCode(ErrorCodes.INVALID_ARGUMENT, /serial/));
    const rel = vmi({ firmware: { bootloader: 'bios', secureBoot: false, kernelBoot: { kernel: 'vmlinuz', initrd: null, kernelArgs: '' }, uuid: null } });
    assert.throws(() => buildDomainXml(rel, ctx(rel)), isCode(ErrorCodes.INVALID_ARGUMENT, /absolute/));
    const uid = vmi({ uid: 'not-a-uuid' });
    assert.throws(() => buildDomainXml(uid, ctx(uid)), isCode(ErrorCodes.INVALID_ARGUMENT, /UUID/));
    const nopath = vmi({ disks: [disk('d', { volume: { kind: 'emptyDisk', name: 'd', capacityBytes: MiB } })] });
    assert.throws(() => buildDomainXml(nopath, ctx(nopath, { diskPaths: {} })), isCode(ErrorCodes.INTERNAL, /no planned file/));
  });
});

// ---------------------------------------------------------------------------------------------

test('planDisks: overlays, sparse disks, host disks and the NoCloud seed, in disk order', async (t) => {
  if (!onPath('qemu-img')) {
    t.skip('qemu-img (qemu-utils) is not installed');
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-diskplan-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const qcow = path.join(tmp, 'base.qcow2');
  const raw = path.join(tmp, 'base.img');
  const hostExisting = path.join(tmp, 'host.img');
  const hostMissing = path.join(tmp, 'new.img');
  const r = await run('qemu-img', ['create', '-f', 'qcow2', qcow, '1M']);
  assert.equal(r.code, 0, r.out);
  fs.writeFileSync(raw, Buffer.alloc(4096));
  fs.writeFileSync(hostExisting, Buffer.from('QFI')); // 3 bytes: not a qcow2 magic, and hostDisks are raw anyway
  assert.equal(detectImageFormat(qcow), 'qcow2');
  assert.equal(detectImageFormat(raw), 'raw');
  assert.equal(detectImageFormat(hostExisting), 'raw');
  assert.throws(() => detectImageFormat(path.join(tmp, 'nope')), isCode(ErrorCodes.INVALID_ARGUMENT, /cannot read/));

  const vmiDir = path.join(tmp, 'vmi');
  const v = vmi({
    name: 'plan',
    disks: [
      disk('root', { volume: { kind: 'containerDisk', name: 'root', path: qcow } }),
      disk('iso', { device: 'cdrom', bus: 'sata', volume: { kind: 'containerDisk', name: 'iso', path: raw } }),
      disk('scratch', { volume: { kind: 'emptyDisk', name: 'scratch', capacityBytes: 2 * GiB } }),
      disk('host1', { volume: { kind: 'hostDisk', name: 'host1', path: hostExisting, type: 'Disk', capacityBytes: null } }),
      disk('host2', { volume: { kind: 'hostDisk', name: 'host2', path: hostMissing, type: 'DiskOrCreate', capacityBytes: 64 * MiB } }),
      disk('host3', { volume: { kind: 'hostDisk', name: 'host3', path: raw + '.x', type: 'DiskOrCreate', capacityBytes: MiB } }),
      disk('ci', { volume: { kind: 'cloudInitNoCloud', name: 'ci', userData: `#cloud-config\nruncmd: ["echo </x> ]]> 'q'"]\n`, networkData: null } }),
    ],
  });
  fs.writeFileSync(raw + '.x', '');
  const plan = planDisks(v, vmiDir);
  const dd = path.join(vmiDir, 'disks');
  assert.deepEqual(plan.preps, [
    { kind: 'overlay', disk: 'root', path: path.join(dd, 'root.qcow2'), backingFile: qcow, backingFormat: 'qcow2' },
    { kind: 'overlay', disk: 'iso', path: path.join(dd, 'iso.qcow2'), backingFile: raw, backingFormat: 'raw' },
    { kind: 'sparse', disk: 'scratch', path: path.join(dd, 'scratch.qcow2'), sizeBytes: 2 * GiB },
    { kind: 'hostDisk', disk: 'host1', path: hostExisting, sizeBytes: null, create: false },
    { kind: 'hostDisk', disk: 'host2', path: hostMissing, sizeBytes: 64 * MiB, create: true },
    { kind: 'hostDisk', disk: 'host3', path: raw + '.x', sizeBytes: MiB, create: false },
    {
      kind: 'cloudInit', disk: 'ci', path: path.join(dd, 'ci-cidata.iso'),
      userData: `#cloud-config\nruncmd: ["echo </x> ]]> 'q'"]\n`, networkData: null,
      metaData: `instance-id: ${UID}\nlocal-hostname: plan\n`,
    },
  ]);
  assert.deepEqual(plan.diskPaths, {
    root: { path: path.join(dd, 'root.qcow2'), format: 'qcow2' },
    iso: { path: path.join(dd, 'iso.qcow2'), format: 'qcow2' },
    scratch: { path: path.join(dd, 'scratch.qcow2'), format: 'qcow2' },
    host1: { path: hostExisting, format: 'raw' },
    host2: { path: hostMissing, format: 'raw' },
    host3: { path: raw + '.x', format: 'raw' },
    ci: { path: path.join(dd, 'ci-cidata.iso'), format: 'raw' },
  });
  assert.deepEqual(Object.keys(plan.diskPaths), v.disks.map((d) => d.name));
  // planned paths feed straight into the domain XML, which stays schema-valid
  const xml = buildDomainXml(v, ctx(v, { vmiDir, diskPaths: plan.diskPaths }));
  assert.equal(XMLValidator.validate(xml), true);

  // a hostile VMI name is quoted in meta-data and reads back as the same YAML string
  const hostileName = `x: y\n# "q" ]]> é`;
  const hv = vmi({ name: hostileName, disks: [disk('ci', { volume: { kind: 'cloudInitNoCloud', name: 'ci', userData: '', networkData: null } })] });
  const hp = planDisks(hv, vmiDir).preps[0];
  assert.ok(hp && hp.kind === 'cloudInit');
  assert.deepEqual(parseYaml(hp.metaData), { 'instance-id': UID, 'local-hostname': hostileName });

  // refusals
  const missing = vmi({ disks: [disk('h', { volume: { kind: 'hostDisk', name: 'h', path: path.join(tmp, 'absent.img'), type: 'Disk', capacityBytes: null } })] });
  assert.throws(() => planDisks(missing, vmiDir), isCode(ErrorCodes.INVALID_ARGUMENT, /does not exist/));
  const noCap = vmi({ disks: [disk('h', { volume: { kind: 'hostDisk', name: 'h', path: path.join(tmp, 'absent.img'), type: 'DiskOrCreate', capacityBytes: null } })] });
  assert.throws(() => planDisks(noCap, vmiDir), isCode(ErrorCodes.INVALID_ARGUMENT, /no capacity/));
  for (const bad of ['../x', 'a/b', '.hidden', '', 'x\u0000']) {
    const bv = vmi({ disks: [disk(bad, { volume: { kind: 'emptyDisk', name: bad, capacityBytes: MiB } })] });
    assert.throws(() => planDisks(bv, vmiDir), isCode(ErrorCodes.INVALID_ARGUMENT, /cannot name a file/), JSON.stringify(bad));
  }
  const shared = vmi({ disks: [
    disk('a', { volume: { kind: 'hostDisk', name: 'a', path: raw, type: 'Disk', capacityBytes: null } }),
    disk('b', { volume: { kind: 'hostDisk', name: 'b', path: raw, type: 'Disk', capacityBytes: null } }),
  ] });
  assert.throws(() => planDisks(shared, vmiDir), isCode(ErrorCodes.INVALID_ARGUMENT, /both use/));
  assert.throws(() => planDisks(v, 'relative/dir'), isCode(ErrorCodes.INVALID_ARGUMENT, /absolute/));
  // nothing was written by planning
  assert.equal(fs.existsSync(vmiDir), false);
  assert.equal(fs.existsSync(hostMissing), false);
});

test('planDisks and buildStartCommand: a pulled image is the overlay backing file, with the format the store found', () => {
  const vmiDir = '/var/lib/virt-handler/vmis/x';
  const v = vmi({
    name: 'pulled',
    disks: [
      disk('root', { volume: { kind: 'containerDiskImage', name: 'rootvol', image: '127.0.0.1:5000/test/disk:1', pullPolicy: 'IfNotPresent', path: null } }),
      disk('iso', { device: 'cdrom', bus: 'sata', volume: { kind: 'containerDiskImage', name: 'isovol', image: 'quay.io/x/iso:2', pullPolicy: 'Always', path: '/disk/b.img' } }),
    ],
  });
  const resolved = { rootvol: { path: '/store/images/sha256-aa/disk.qcow2', format: 'qcow2' as const }, isovol: { path: '/store/images/sha256-bb/disk.img', format: 'raw' as const } };
  const plan = planDisks(v, vmiDir, resolved);
  assert.deepEqual(plan.preps, [
    { kind: 'overlay', disk: 'root', path: `${vmiDir}/disks/root.qcow2`, backingFile: resolved.rootvol.path, backingFormat: 'qcow2' },
    { kind: 'overlay', disk: 'iso', path: `${vmiDir}/disks/iso.qcow2`, backingFile: resolved.isovol.path, backingFormat: 'raw' },
  ]);
  assert.deepEqual(plan.diskPaths, { root: { path: `${vmiDir}/disks/root.qcow2`, format: 'qcow2' }, iso: { path: `${vmiDir}/disks/iso.qcow2`, format: 'qcow2' } });
  // Planned before the pull (a bug in the caller): refused, never a domain without its base.
  assert.throws(() => planDisks(v, vmiDir, { rootvol: resolved.rootvol }), isCode(ErrorCodes.INTERNAL, /quay\.io\/x\/iso:2 of disk iso has not been pulled yet/));
  assert.throws(() => planDisks(v, vmiDir), isCode(ErrorCodes.INTERNAL, /has not been pulled yet/));

  const facts: NodeFacts = { libvirtUri: 'test:///default', nodeLibvirtConnected: true, capabilities: null, nodeInfo: null, handlerSocket: '/run/vh/grpc.sock', bridge: null };
  const cmd = buildStartCommand(facts, { vmi: v, namespace: 'default', name: 'pulled', vmiDir, pinnedCpus: [], libvirtUri: 'test:///default', resolvedImages: resolved });
  assert.deepEqual(cmd.disks, plan.preps);
  assert.match(cmd.domainXml, new RegExp(`<source file="${vmiDir}/disks/root\\.qcow2"`));
  assert.doesNotMatch(cmd.domainXml, /\/store\/images/, 'the domain sees the overlay; only the overlay names the base');
});
