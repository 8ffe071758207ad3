/**
 * Domain XML for the firmware and the devices that need host software (split from
 * domain-xml.ts): the EFI loader and the VMI's own NVRAM, an emulated TPM, virtiofs filesystems
 * (and the shared memory they need), panic devices, sound and VSOCK.
 *
 * Decisions (KubeVirt's converter, libvirt 9.0 / QEMU 7.2, checked with a real define and start):
 * - EFI: `<loader readonly=yes type=pflash [secure=yes]>` with the OVMF code the node has
 *   (context.efi, chosen from the node probe: the secboot SMM build with Microsoft's keys for
 *   secure boot, the plain 4 MiB build otherwise) and `<nvram template=vars>` at
 *   `<vmiDir>/<name>_VARS.fd` (KubeVirt's file name): libvirt copies the template there on first
 *   start, inside the VMI's directory, so the VMI's teardown removes it. Explicit paths instead of
 *   libvirt's firmware autoselection, whose NVRAM lands in /var/lib/libvirt/qemu/nvram, outside
 *   anything this node cleans up.
 * - TPM: `<tpm model=tpm-tis><backend type=emulator version=2.0/>` (KubeVirt's non-persistent
 *   TPM; a persistent one is a requirement). libvirt runs swtpm, keeps its state under
 *   /var/lib/libvirt/swtpm/<domain uuid> and removes it with the domain.
 * - virtiofs: `<filesystem type=mount accessmode=passthrough><driver type=virtiofs/>`, the node's
 *   virtiofsd as `<binary>`, the host directory from context.filesystemSources, target = the
 *   filesystem's name (the guest mounts it by that tag); vhost-user needs guest memory QEMU can
 *   share: `<memoryBacking><source type=memfd/><access mode=shared/>`.
 * - panic: `<panic model=isa|hyperv>`; sound: `<sound model>`; VSOCK: `<vsock
 *   model=virtio-non-transitional><cid auto=yes/>` (libvirt picks a free CID; KubeVirt's controller
 *   assigns one cluster-wide, which this node has no cluster to do).
 */
import { ErrorCodes, VhError } from '../../errors';
import type { NormalizedVmi } from '../spec/types';
import { element, type XmlElement } from './xml';

/** The OVMF build of an EFI VMI: read-only code and the template its NVRAM is copied from. */
export interface EfiFirmware {
  code: string;
  varsTemplate: string;
}

/** What guest-devices.ts needs from the render context. */
export interface GuestDeviceContext {
  vmiDir: string;
  efi?: EfiFirmware | null;
  filesystemSources?: Readonly<Record<string, string>>;
  virtiofsd?: string | null;
}

const ALIAS_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const alias = (name: string): XmlElement | null => (ALIAS_RE.test(name) ? element('alias', { name: `ua-${name}` }) : null);

function invalid(message: string, details: Record<string, unknown> = {}): VhError {
  return new VhError(ErrorCodes.INVALID_ARGUMENT, message, details);
}

function absolute(p: string, what: string): string {
  if (!p.startsWith('/') || p.includes('\0')) throw new VhError(ErrorCodes.INTERNAL, `${what} must be an absolute path, got ${JSON.stringify(p)}`);
  return p;
}

/** The NVRAM file of an EFI VMI (in its directory, KubeVirt's `<name>_VARS.fd`). */
export function nvramPath(vmiDir: string, name: string): string {
  return `${vmiDir}/${name}_VARS.fd`;
}

/** `<loader>` + `<nvram>` for an EFI VMI (empty for BIOS). */
export function buildEfiLoader(vmi: NormalizedVmi, ctx: GuestDeviceContext): XmlElement[] {
  if (vmi.firmware.bootloader !== 'efi') return [];
  const fw = ctx.efi;
  if (fw === undefined || fw === null) {
    throw invalid(`the EFI bootloader needs OVMF${vmi.firmware.secureBoot ? ' with secure boot' : ''}, which this node does not have`, { field: 'spec.domain.firmware.bootloader.efi' });
  }
  return [
    element('loader', { readonly: 'yes', secure: vmi.firmware.secureBoot ? 'yes' : undefined, type: 'pflash' }, absolute(fw.code, 'the OVMF code')),
    element('nvram', { template: absolute(fw.varsTemplate, 'the OVMF variable template') }, nvramPath(ctx.vmiDir, vmi.name)),
  ];
}

/** `<source type=memfd/><access mode=shared/>` when virtiofs needs shared guest memory. */
export function sharedMemory(vmi: NormalizedVmi): XmlElement[] {
  if ((vmi.filesystems ?? []).length === 0) return [];
  return [element('source', { type: 'memfd' }), element('access', { mode: 'shared' })];
}

function buildFilesystems(vmi: NormalizedVmi, ctx: GuestDeviceContext): XmlElement[] {
  return (vmi.filesystems ?? []).map((f) => {
    const sources = ctx.filesystemSources ?? {};
    const dir = Object.prototype.hasOwnProperty.call(sources, f.name) ? sources[f.name] : undefined;
    if (dir === undefined) {
      throw invalid(`filesystem ${f.name}: its volume has no host directory on this node`, { field: 'spec.domain.devices.filesystems', filesystem: f.name });
    }
    return element(
      'filesystem',
      { type: 'mount', accessmode: 'passthrough' },
      element('driver', { type: 'virtiofs' }),
      ctx.virtiofsd ? element('binary', { path: absolute(ctx.virtiofsd, 'virtiofsd') }) : null,
      element('source', { dir: absolute(dir, `the directory of filesystem ${f.name}`) }),
      element('target', { dir: f.name }),
      alias(f.name),
    );
  });
}

/** TPM, filesystems, panic devices, sound and VSOCK, in libvirt's device order. */
export function buildGuestDevices(vmi: NormalizedVmi, ctx: GuestDeviceContext): Array<XmlElement | null | false> {
  return [
    ...buildFilesystems(vmi, ctx),
    vmi.sound !== undefined && element('sound', { model: vmi.sound.model }, alias(vmi.sound.name)),
    vmi.tpm === true && element('tpm', { model: 'tpm-tis' }, element('backend', { type: 'emulator', version: '2.0' })),
    vmi.vsock === true && element('vsock', { model: 'virtio-non-transitional' }, element('cid', { auto: 'yes' })),
    ...(vmi.panicDevices ?? []).map((model) => element('panic', { model })),
  ];
}
