/**
 * The tiny test guest's libvirt domain XML (scripts/libvirt/build-tiny-guest.sh builds its kernel
 * and initramfs), shared by the real-libvirtd tests (test/libvirt/guest.ts) and bench:vmi's
 * straight-libvirt baseline so both boot exactly the same machine.
 */

/** Escapes text for XML element content and single- or double-quoted attributes. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

export interface TinyGuestOptions {
  /** The full domain name (use guestName()). */
  name: string;
  kernel: string;
  initrd: string;
  /** File QEMU writes the guest's ttyS0 to (its directory must be writable by QEMU). */
  serialPath: string;
  /** Default 128. */
  memoryMiB?: number;
  /** Default 1. */
  vcpus?: number;
}

/**
 * The tiny guest's domain XML: TCG (type='qemu': never kvm here, this host's /dev/kvm makes QEMU
 * die with "emulation failure"), machine pc, cpu qemu64 with check='none', direct kernel boot,
 * ttyS0 to a file, and a virtio balloon with a stats period so memory stats work.
 */
export function tinyGuestXml(o: TinyGuestOptions): string {
  const mem = o.memoryMiB ?? 128;
  const vcpus = o.vcpus ?? 1;
  if (!Number.isInteger(mem) || mem < 16) throw new RangeError(`memoryMiB must be an integer >= 16, got ${mem}`);
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new RangeError(`vcpus must be a positive integer, got ${vcpus}`);
  return `<domain type='qemu'>
  <name>${xmlEscape(o.name)}</name>
  <memory unit='MiB'>${mem}</memory>
  <currentMemory unit='MiB'>${mem}</currentMemory>
  <vcpu>${vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${xmlEscape(o.kernel)}</kernel>
    <initrd>${xmlEscape(o.initrd)}</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='${xmlEscape(o.serialPath)}'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'><stats period='1'/></memballoon>
  </devices>
</domain>
`;
}
