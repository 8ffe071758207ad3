/**
 * Everything a launcher is started with, decided in one place: which libvirt it uses (decided
 * once, at spawn, and recorded), the virt type guests get, and the StartDomain command (domain
 * XML + disk plan). Pure functions of their inputs: reconcile calls them, tests call them.
 */
import * as path from 'node:path';
import { ErrorCodes, VhError } from '../../errors';
import type { StartDomain } from '../../launcher-protocol/messages';
import type { NodeCapabilities } from '../../libvirt/node-capabilities';
import type { NodeInfo } from '../../node/types';
import { planDisks, type ResolvedClaims, type ResolvedImages, type ResolvedObjects } from '../render/disk-plan';
import { buildDomainXml } from '../render/domain-xml';
import type { EfiFirmware } from '../render/guest-devices';
import { ovmfMissingFor } from '../../node/host-software';
import type { NormalizedVmi } from '../spec/types';

/** What the node offers a new launcher. */
export interface NodeFacts {
  /** The node libvirtd's URI; null when libvirt is switched off. */
  libvirtUri: string | null;
  /** Whether the handler holds a live connection to it. */
  nodeLibvirtConnected: boolean;
  capabilities: NodeCapabilities | null;
  nodeInfo: NodeInfo | null;
  /** The handler's gRPC socket: the embedded driver's roots live beside it. */
  handlerSocket: string;
  bridge: string | null;
}

/**
 * The virt type guests get: from the node libvirt's capabilities when connected; without it
 * (embedded fallback) from the probe alone, with the same rule (kvm only with vmx/svm).
 */
export function virtTypeFor(f: NodeFacts): { virtType: 'kvm' | 'qemu'; reason: string } | null {
  if (f.capabilities && f.nodeLibvirtConnected) return { virtType: f.capabilities.virtType, reason: f.capabilities.virtTypeReason };
  const node = f.nodeInfo;
  if (!node) return null;
  const hw = node.cpu.flags.includes('vmx') || node.cpu.flags.includes('svm');
  if (node.kvm.available && hw) return { virtType: 'kvm', reason: 'KVM (embedded libvirt)' };
  return { virtType: 'qemu', reason: node.kvm.available ? '/dev/kvm works but the CPU has no vmx/svm flag: TCG' : 'no usable /dev/kvm: TCG' };
}

/**
 * The libvirt a new launcher uses: the node's libvirtd when connected, else the embedded driver.
 * Decided once, when the launcher is spawned; the record keeps it (a later StartDomain, a
 * re-adoption and the leftover cleanup all use the recorded one).
 */
export function launcherLibvirtUri(f: NodeFacts, uid: string): string {
  if (f.libvirtUri !== null && f.nodeLibvirtConnected) return f.libvirtUri;
  return `qemu:///embed?root=${embedRoot(f.handlerSocket, uid)}`;
}

/**
 * The embedded driver's root: in the runtime directory, named by the first 12 hex digits of the
 * uid, because the driver puts unix sockets below it (sun_path: 107 bytes) and the longest,
 * `lib/qemu/domain-<id>-<20 chars of name>/monitor.sock`, does not fit under <stateDir>/vmis/<uid>.
 * Runtime state only: a reboot ends the VM anyway, and the record re-creates it.
 */
export function embedRoot(handlerSocket: string, uid: string): string {
  return `${path.dirname(handlerSocket)}/e/${uid.replace(/-/g, '').slice(0, 12)}`;
}

/** The longest path the embedded driver creates below its root (domain id up to 5 digits). */
export const EMBED_SOCKET_SUFFIX = '/lib/qemu/domain-99999-xxxxxxxxxxxxxxxxxxxx/monitor.sock';

/** `<namespace>_<name>`: KubeVirt's libvirt domain name (both parts are DNS labels, so unambiguous). */
export function domainNameOf(namespace: string, name: string): string {
  return `${namespace}_${name}`;
}

/**
 * The host software an EFI or virtiofs VMI uses, from the node probe (preflight has already
 * made a VMI that lacks it wait). filesystemSources stays empty: no volume this node serves yet is
 * a directory (PVC/configMap volumes are a follow-up that fills it), so a VMI with a filesystem
 * waits on its volume's requirement before it gets here.
 */
function guestSoftware(f: NodeFacts, vmi: NormalizedVmi): { efi: EfiFirmware | null; virtiofsd: string | null; filesystemSources: Record<string, string> } {
  const sw = f.nodeInfo?.software;
  const efi = vmi.firmware.bootloader !== 'efi' ? null : (vmi.firmware.secureBoot ? sw?.ovmf.secureBoot : sw?.ovmf.plain) ?? null;
  return { efi, virtiofsd: sw?.virtiofsd.path ?? null, filesystemSources: {} };
}

/** What the VMI needs from the node's host software and the node lacks (null: nothing). */
export function missingHostSoftware(f: NodeFacts, vmi: NormalizedVmi): string | null {
  const wants = vmi.firmware.bootloader === 'efi' || vmi.tpm === true || (vmi.filesystems ?? []).length > 0 || vmi.vsock === true;
  if (!wants) return null;
  const node = f.nodeInfo;
  const sw = node?.software;
  if (!node || !sw) return 'waiting for the node probe (host software: OVMF, swtpm, virtiofsd)';
  const lacks: string[] = [];
  if (vmi.firmware.bootloader === 'efi') {
    const m = ovmfMissingFor(sw, vmi.firmware.secureBoot);
    if (m !== null) lacks.push(`spec.domain.firmware.bootloader.efi needs ${m}`);
  }
  if (vmi.tpm === true && sw.swtpm.missing !== null) lacks.push(`spec.domain.devices.tpm needs ${sw.swtpm.missing}`);
  if ((vmi.filesystems ?? []).length > 0 && sw.virtiofsd.missing !== null) lacks.push(`spec.domain.devices.filesystems needs ${sw.virtiofsd.missing}`);
  if (vmi.vsock === true && !node.devices.vhostVsock.present) lacks.push(`spec.domain.devices.autoattachVSOCK needs ${node.devices.vhostVsock.path}, which this node does not have (load the vhost_vsock kernel module)`);
  return lacks.length === 0 ? null : `this node cannot run it: ${lacks.join('; ')}`;
}

/** Per-VMI inputs of the StartDomain command. */
export interface LaunchTarget {
  vmi: NormalizedVmi;
  namespace: string;
  name: string;
  vmiDir: string;
  pinnedCpus: readonly number[];
  /** The launcher's recorded libvirt URI. */
  libvirtUri: string;
  /** Bases of the VMI's containerDiskImage volumes, from the image store (control/images.ts). */
  resolvedImages?: ResolvedImages;
  /** kernelBoot.container: the store's kernel/initrd files (control/images.ts). */
  resolvedKernelBoot?: { kernel: string | null; initrd: string | null };
  /** The VMI's claims (persistentVolumeClaim, ephemeral, dataVolume), resolved under volumes.claimRoot (control/claims.ts). */
  resolvedClaims?: ResolvedClaims;
  /** Objects the VMI's config volumes read (control/objects.ts); held in memory only (may be secret). */
  resolvedObjects?: ResolvedObjects;
}

/** The StartDomain command for a VMI. Throws (VhError) when the spec cannot become a domain. */
export function buildStartCommand(f: NodeFacts, t: LaunchTarget): StartDomain {
  const { preps, diskPaths } = planDisks(t.vmi, t.vmiDir, t.resolvedImages, t.resolvedClaims, t.resolvedObjects);
  const domainXml = buildDomainXml(withKernelBoot(t.vmi, t.resolvedKernelBoot), {
    virtType: virtTypeFor(f)?.virtType ?? 'qemu',
    domainName: domainNameOf(t.namespace, t.name),
    vmiDir: t.vmiDir,
    serialSocket: `${t.vmiDir}/serial.sock`,
    serialLog: `${t.vmiDir}/serial.log`,
    pinnedCpus: t.pinnedCpus,
    bridge: f.bridge,
    diskPaths,
    ...guestSoftware(f, t.vmi),
  });
  return { domainXml, disks: preps, libvirtUri: t.libvirtUri };
}

/** kernelBoot.container becomes kernelBoot with the store's read-only files (a VMI without one is returned as is). */
function withKernelBoot(vmi: NormalizedVmi, files: LaunchTarget['resolvedKernelBoot']): NormalizedVmi {
  const kc = vmi.firmware.kernelBootContainer;
  if (!kc) return vmi;
  if (!files?.kernel) throw new VhError(ErrorCodes.FAILED_PRECONDITION, `kernelBoot.container ${kc.image}: no kernel resolved from the image (kernelPath is required to boot from it)`, { field: 'spec.domain.firmware.kernelBoot.container.kernelPath' });
  return { ...vmi, firmware: { ...vmi.firmware, kernelBoot: { kernel: files.kernel, initrd: files.initrd, kernelArgs: kc.kernelArgs } } };
}
