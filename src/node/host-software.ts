/**
 * Host software some guest devices need, found on disk: OVMF (EFI guests), swtpm (an emulated
 * TPM) and virtiofsd (virtiofs filesystems). QEMU and libvirt start these themselves, so their
 * absence only shows when a domain is defined or started; probing them up front lets a VMI that
 * needs one wait with a reason naming the package (control/start.ts preflight) instead of failing
 * at define. Never throws: a missing file is a fact with a reason, not an error.
 *
 * Paths are Debian 12's (ovmf 2022.11, swtpm + swtpm-tools 0.7, qemu-system-common 7.2 ships the
 * C virtiofsd in /usr/lib/qemu); others are listed for distributions that put them elsewhere.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** An OVMF build: the read-only code and the variable-store template a VMI's NVRAM is copied from. */
export interface FirmwareFiles {
  code: string;
  varsTemplate: string;
}

export interface HostSoftware {
  /**
   * OVMF (4 MiB builds, as libvirt's firmware descriptors pick them): `plain` for EFI without
   * secure boot; `secureBoot` the SMM build with Microsoft's keys enrolled (what secure-boot
   * guests expect). null with `missing` saying what to install.
   */
  ovmf: { plain: FirmwareFiles | null; secureBoot: FirmwareFiles | null; missing: string | null };
  /** swtpm and swtpm_setup (libvirt runs both for an emulated TPM). */
  swtpm: { path: string | null; missing: string | null };
  /** virtiofsd, the daemon QEMU's vhost-user-fs device talks to. */
  virtiofsd: { path: string | null; missing: string | null };
}

const OVMF_DIRS = ['usr/share/OVMF'];
const PLAIN = { code: 'OVMF_CODE_4M.fd', varsTemplate: 'OVMF_VARS_4M.fd' };
const SECURE = { code: 'OVMF_CODE_4M.secboot.fd', varsTemplate: 'OVMF_VARS_4M.ms.fd' };
const SWTPM = ['usr/bin/swtpm'];
const SWTPM_SETUP = ['usr/bin/swtpm_setup'];
const VIRTIOFSD = ['usr/libexec/virtiofsd', 'usr/lib/qemu/virtiofsd', 'usr/bin/virtiofsd'];

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function firstExecutable(root: string, candidates: readonly string[]): Promise<string | null> {
  for (const rel of candidates) {
    const p = path.join(root, rel);
    try {
      if (!(await fsp.stat(p)).isFile()) continue;
      await fsp.access(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here; try the next one
    }
  }
  return null;
}

async function firmware(root: string, files: FirmwareFiles): Promise<FirmwareFiles | null> {
  for (const dir of OVMF_DIRS) {
    const code = path.join(root, dir, files.code);
    const varsTemplate = path.join(root, dir, files.varsTemplate);
    if ((await isFile(code)) && (await isFile(varsTemplate))) return { code, varsTemplate };
  }
  return null;
}

const where = (root: string, rels: readonly string[]): string => rels.map((r) => path.join(root, r)).join(', ');

/** Looks for OVMF, swtpm and virtiofsd below `root` ('/' on a real node; a fixture tree in tests). */
export async function probeHostSoftware(root = '/'): Promise<HostSoftware> {
  const [plain, secureBoot, swtpm, swtpmSetup, virtiofsd] = await Promise.all([
    firmware(root, PLAIN),
    firmware(root, SECURE),
    firstExecutable(root, SWTPM),
    firstExecutable(root, SWTPM_SETUP),
    firstExecutable(root, VIRTIOFSD),
  ]);
  const dir = path.join(root, OVMF_DIRS[0]!);
  const ovmfMissing = plain === null && secureBoot === null
    ? `OVMF is not installed on this node (no ${PLAIN.code} or ${SECURE.code} in ${dir}; install the Debian package ovmf)`
    : null;
  let swtpmMissing: string | null = null;
  if (swtpm === null) swtpmMissing = `swtpm is not installed on this node (none of ${where(root, SWTPM)}; install the Debian packages swtpm and swtpm-tools)`;
  else if (swtpmSetup === null) swtpmMissing = `swtpm_setup is not installed on this node (none of ${where(root, SWTPM_SETUP)}; install the Debian package swtpm-tools)`;
  return {
    ovmf: { plain, secureBoot, missing: ovmfMissing },
    swtpm: { path: swtpm === null || swtpmSetup === null ? null : swtpm, missing: swtpmMissing },
    virtiofsd: {
      path: virtiofsd,
      missing: virtiofsd === null ? `virtiofsd is not installed on this node (none of ${where(root, VIRTIOFSD)}; Debian 12 ships it in qemu-system-common, later releases in the package virtiofsd)` : null,
    },
  };
}

/** What an EFI guest lacks on this node: null when the OVMF build it needs is there. */
export function ovmfMissingFor(sw: HostSoftware, secureBoot: boolean): string | null {
  if (secureBoot && sw.ovmf.secureBoot === null) {
    return sw.ovmf.missing ?? `OVMF with secure boot is not installed on this node (no ${SECURE.code} + ${SECURE.varsTemplate}; install the Debian package ovmf)`;
  }
  if (!secureBoot && sw.ovmf.plain === null) {
    return sw.ovmf.missing ?? `OVMF without secure boot is not installed on this node (no ${PLAIN.code} + ${PLAIN.varsTemplate}; install the Debian package ovmf)`;
  }
  return null;
}
