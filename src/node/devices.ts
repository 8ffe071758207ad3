/**
 * Device-node facts for the character devices a VM needs: stat(2) for presence, type and
 * permissions; access(2) for whether this process could open them read-write.
 */

import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { DeviceInfo } from './types';

/** Device nodes the probe reports, relative to devRoot. */
export const DEVICE_PATHS = {
  kvm: 'kvm',
  tun: 'net/tun',
  vhostNet: 'vhost-net',
  vhostVsock: 'vhost-vsock',
  userfaultfd: 'userfaultfd',
} as const;

/** The device set the probe reports, keyed like NodeInfo.devices. */
export type DeviceSet = Record<keyof typeof DEVICE_PATHS, DeviceInfo>;

function kindOf(st: import('node:fs').Stats): string {
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFile()) return 'file';
  return 'other';
}

/**
 * Stats one path. Never rejects: any stat failure (ENOENT, but also EACCES on a parent or
 * ENOTDIR) reports the device as missing, because for this process it is unusable either way.
 */
export async function probeDevice(devicePath: string): Promise<DeviceInfo> {
  let st: import('node:fs').Stats;
  try {
    st = await fsp.stat(devicePath); // follows symlinks: /dev/kvm is sometimes a link in containers
  } catch {
    return { path: devicePath, present: false, kind: 'missing', mode: '', uid: null, gid: null, accessible: false };
  }
  let accessible = false;
  try {
    await fsp.access(devicePath, fsConstants.R_OK | fsConstants.W_OK);
    accessible = true;
  } catch {
    // access(2) failing is the fact we report, not an error.
  }
  return {
    path: devicePath,
    present: true,
    kind: kindOf(st),
    mode: (st.mode & 0o7777).toString(8).padStart(4, '0'),
    uid: st.uid,
    gid: st.gid,
    accessible,
  };
}

/** Probes every device in DEVICE_PATHS under devRoot, concurrently. Never rejects. */
export async function probeDevices(devRoot: string): Promise<DeviceSet> {
  const keys = Object.keys(DEVICE_PATHS) as Array<keyof typeof DEVICE_PATHS>;
  const infos = await Promise.all(keys.map((k) => probeDevice(path.join(devRoot, DEVICE_PATHS[k]))));
  const out = {} as DeviceSet;
  keys.forEach((k, i) => { out[k] = infos[i] as DeviceInfo; });
  return out;
}

/** True when the device is a present character device this process can open read-write. */
export function deviceUsable(d: DeviceInfo): boolean {
  return d.present && d.kind === 'char' && d.accessible;
}
