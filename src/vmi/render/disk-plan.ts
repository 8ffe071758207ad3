/**
 * Plans the files a VMI's disks need (DiskPrep, executed later by the launcher) and the file
 * each disk of the domain XML points at (DomainXmlContext.diskPaths). Pure except for two
 * read-only looks at the host: the first 4 bytes of a containerDisk base image (qcow2 magic
 * 'QFI\xfb', else raw) and whether a DiskOrCreate hostDisk file already exists.
 *
 * Layout (everything written lives under `<vmiDir>/disks/`):
 * - containerDisk: qcow2 overlay `<disk>.qcow2` backed by the (read-only) base image; for an
 *   image (containerDiskImage) the base is the image store's file, resolved before the plan;
 * - emptyDisk: sparse qcow2 `<disk>.qcow2` of the requested capacity;
 * - hostDisk: the host file itself, raw; created (sparse, capacity bytes) only for
 *   DiskOrCreate when it does not exist yet;
 * - cloudInitNoCloud: NoCloud seed ISO `<disk>-cidata.iso` (raw), meta-data
 *   `instance-id: <uid>\nlocal-hostname: <name>\n`;
 * - persistentVolumeClaim / dataVolume: the resolved claim itself (file or block device), no
 *   preparation; ephemeral: qcow2 overlay `<disk>.qcow2` backed by the claim.
 * - cloudInitConfigDrive, a NoCloud seed from a Secret, configMap, secret, serviceAccount,
 *   downwardAPI, sysprep: an IsoDisk (iso-volumes.ts says what is on each), raw, from the
 *   objects read at start (ResolvedObjects); all of a plan's ISO data together stays under
 *   MAX_PLAN_ISO_BYTES so StartDomain fits one launcher message.
 * Preps come in disk order. Disk names become file names, so they must be plain
 * ([A-Za-z0-9][A-Za-z0-9._-]*); anything else is INVALID_ARGUMENT.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorCodes, VhError } from '../../errors';
import { MAX_PLAN_ISO_BYTES } from '../../launcher-protocol/limits';
import { type DiskPrep, diskPrepToWire } from '../../launcher-protocol/messages';
import { checkDiskPlan } from '../../launcher-protocol/validate';
import type { NormalizedVmi } from '../spec/types';
import type { DomainXmlContext } from './domain-xml';
import { type ResolvedObjects, isIsoVolume, isoImage } from './iso-volumes';

export type { ResolvedObject, ResolvedObjects } from './iso-volumes';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // 'QFI\xfb'
const FILE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A plain YAML scalar that needs no quoting (and cannot be read as a number/bool by accident in practice). */
const PLAIN_YAML_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Per volume name, the base image the store supplied for a containerDiskImage volume. */
export type ResolvedImages = Readonly<Record<string, { path: string; format: 'qcow2' | 'raw' }>>;

/**
 * Per volume name, the claim a persistentVolumeClaim/ephemeral/dataVolume volume resolved to at
 * start (control/claims.ts): its realpath under volumes.claimRoot, the detected format (a block
 * device is raw) and whether it is a block device.
 */
export type ResolvedClaims = Readonly<Record<string, { path: string; format: 'qcow2' | 'raw'; block: boolean }>>;

export interface DiskPlan {
  preps: DiskPrep[];
  diskPaths: DomainXmlContext['diskPaths'];
}

/** 'qcow2' when the file starts with the qcow2 magic, else 'raw'. Throws INVALID_ARGUMENT when unreadable. */
export function detectImageFormat(file: string): 'qcow2' | 'raw' {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const buf = Buffer.alloc(4);
    const n = fs.readSync(fd, buf, 0, 4, 0);
    return n === 4 && buf.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  } catch (e) {
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `cannot read disk image ${file}: ${(e as Error).message}`, { path: file }, { cause: e });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The NoCloud meta-data document; values quoted (JSON is valid YAML) unless plainly safe. */
export function noCloudMetaData(uid: string, name: string): string {
  const y = (v: string): string => (PLAIN_YAML_RE.test(v) ? v : JSON.stringify(v));
  return `instance-id: ${y(uid)}\nlocal-hostname: ${y(name)}\n`;
}

function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new VhError(ErrorCodes.INVALID_ARGUMENT, `cannot stat hostDisk ${file}: ${(e as Error).message}`, { path: file }, { cause: e });
  }
}

/**
 * The plan for `vmi`; every containerDiskImage volume must have its base in `resolvedImages`,
 * every claim volume its claim in `resolvedClaims`, every volume that reads objects
 * (iso-volumes.ts needsObjects) its data in `resolvedObjects`.
 */
export function planDisks(vmi: NormalizedVmi, vmiDir: string, resolvedImages: ResolvedImages = {}, resolvedClaims: ResolvedClaims = {}, resolvedObjects: ResolvedObjects = {}): DiskPlan {
  if (!path.isAbsolute(vmiDir)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `vmiDir must be absolute, got ${JSON.stringify(vmiDir)}`);
  const disksDir = path.join(vmiDir, 'disks');
  const preps: DiskPrep[] = [];
  const diskPaths: Record<string, { path: string; format: 'qcow2' | 'raw'; block?: boolean; readonly?: boolean }> = {};
  const usedPaths = new Map<string, string>();
  let isoBytes = 0;

  const claim = (disk: string, file: string): void => {
    const other = usedPaths.get(file);
    if (other !== undefined) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `disks ${other} and ${disk} would both use ${file}`, { disk, path: file });
    }
    usedPaths.set(file, disk);
  };

  for (const d of vmi.disks) {
    if (!FILE_NAME_RE.test(d.name)) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `disk name ${JSON.stringify(d.name)} cannot name a file (allowed: [A-Za-z0-9][A-Za-z0-9._-]*)`, { disk: d.name });
    }
    if (Object.prototype.hasOwnProperty.call(diskPaths, d.name)) {
      throw new VhError(ErrorCodes.INVALID_ARGUMENT, `duplicate disk name ${d.name}`, { disk: d.name });
    }
    const v = d.volume;
    if (isIsoVolume(v)) {
      let img;
      try {
        img = isoImage(vmi, d.name, v, resolvedObjects);
      } catch (e) {
        throw new VhError(ErrorCodes.INTERNAL, `disk ${d.name}: ${(e as Error).message}`, { disk: d.name }, { cause: e });
      }
      const file = path.join(disksDir, img.fileName);
      claim(d.name, file);
      isoBytes += img.files.reduce((n, f) => n + f.data.length, 0);
      if (isoBytes > MAX_PLAN_ISO_BYTES) {
        throw new VhError(ErrorCodes.INVALID_ARGUMENT, `the VMI's config disks (ConfigMaps, Secrets, cloud-init) hold more than ${MAX_PLAN_ISO_BYTES} bytes together (reached at disk ${d.name})`, { disk: d.name });
      }
      const prep: DiskPrep = { kind: 'iso', disk: d.name, path: file, volumeLabel: img.volumeLabel, files: img.files };
      try {
        checkDiskPlan([diskPrepToWire(prep)], vmiDir); // the launcher's own checks, so a refusal is the handler's, with the disk named
      } catch (e) {
        throw new VhError(ErrorCodes.INVALID_ARGUMENT, `disk ${d.name}: ${(e as Error).message}`, { disk: d.name }, { cause: e });
      }
      preps.push(prep);
      diskPaths[d.name] = { path: file, format: 'raw' };
      continue;
    }
    switch (v.kind) {
      case 'containerDisk': {
        const file = path.join(disksDir, `${d.name}.qcow2`);
        claim(d.name, file);
        preps.push({ kind: 'overlay', disk: d.name, path: file, backingFile: v.path, backingFormat: detectImageFormat(v.path) });
        diskPaths[d.name] = { path: file, format: 'qcow2' };
        break;
      }
      case 'containerDiskImage': {
        const base = Object.prototype.hasOwnProperty.call(resolvedImages, v.name) ? resolvedImages[v.name] : undefined;
        if (base === undefined) throw new VhError(ErrorCodes.INTERNAL, `image ${v.image} of disk ${d.name} has not been pulled yet`, { disk: d.name });
        const file = path.join(disksDir, `${d.name}.qcow2`);
        claim(d.name, file);
        preps.push({ kind: 'overlay', disk: d.name, path: file, backingFile: base.path, backingFormat: base.format });
        diskPaths[d.name] = { path: file, format: 'qcow2' };
        break;
      }
      case 'emptyDisk': {
        const file = path.join(disksDir, `${d.name}.qcow2`);
        claim(d.name, file);
        preps.push({ kind: 'sparse', disk: d.name, path: file, sizeBytes: v.capacityBytes });
        diskPaths[d.name] = { path: file, format: 'qcow2' };
        break;
      }
      case 'hostDisk': {
        claim(d.name, v.path);
        const present = exists(v.path);
        if (!present && v.type === 'Disk') {
          throw new VhError(ErrorCodes.INVALID_ARGUMENT, `hostDisk ${v.path} of disk ${d.name} does not exist (type Disk; use DiskOrCreate with a capacity to create it)`, { disk: d.name, path: v.path });
        }
        const create = !present && v.type === 'DiskOrCreate';
        if (create && v.capacityBytes === null) {
          throw new VhError(ErrorCodes.INVALID_ARGUMENT, `hostDisk ${v.path} of disk ${d.name} does not exist and has no capacity to create it with`, { disk: d.name, path: v.path });
        }
        preps.push({ kind: 'hostDisk', disk: d.name, path: v.path, sizeBytes: v.capacityBytes, create });
        diskPaths[d.name] = { path: v.path, format: 'raw' };
        break;
      }
      case 'cloudInitNoCloud': {
        const file = path.join(disksDir, `${d.name}-cidata.iso`);
        claim(d.name, file);
        preps.push({
          kind: 'cloudInit',
          disk: d.name,
          path: file,
          userData: v.userData,
          networkData: v.networkData,
          metaData: noCloudMetaData(vmi.uid, vmi.name),
        });
        diskPaths[d.name] = { path: file, format: 'raw' };
        break;
      }
      case 'persistentVolumeClaim':
      case 'dataVolume': {
        const c = Object.prototype.hasOwnProperty.call(resolvedClaims, v.name) ? resolvedClaims[v.name] : undefined;
        const claimName = v.kind === 'dataVolume' ? v.dataVolumeName : v.claimName;
        if (c === undefined) throw new VhError(ErrorCodes.INTERNAL, `claim ${claimName} of disk ${d.name} has not been resolved yet`, { disk: d.name });
        if (v.kind === 'persistentVolumeClaim' && v.ephemeral) {
          // KubeVirt's ephemeral volume: the claim is the read-only base of a per-VMI overlay.
          const file = path.join(disksDir, `${d.name}.qcow2`);
          claim(d.name, file);
          preps.push({ kind: 'overlay', disk: d.name, path: file, backingFile: c.path, backingFormat: c.format });
          diskPaths[d.name] = { path: file, format: 'qcow2' };
          break;
        }
        claim(d.name, c.path); // the claim itself: no preparation, and no second disk on it
        diskPaths[d.name] = { path: c.path, format: c.format, ...(c.block ? { block: true } : {}), ...(v.kind === 'persistentVolumeClaim' && v.readOnly ? { readonly: true } : {}) };
        break;
      }
      case 'cloudInitConfigDrive':
      case 'configMap':
      case 'secret':
      case 'serviceAccount':
      case 'downwardAPI':
      case 'sysprep':
        throw new VhError(ErrorCodes.INTERNAL, `volume ${v.name} (${v.kind}) is an ISO volume`); // planned above
      default: {
        const never: never = v;
        throw new VhError(ErrorCodes.INTERNAL, `unknown volume kind ${JSON.stringify(never)}`);
      }
    }
  }
  return { preps, diskPaths };
}
