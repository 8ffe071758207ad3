/**
 * Schema: spec.domain.devices (disks, interfaces and every other device KubeVirt accepts).
 * Devices this node has no hardware or software for are requirements, named with what is missing.
 */
import { arr, bool, empty, featureState, int, needs, obj, oneOf, str } from './node';

const DISK_BUSES = ['virtio', 'sata', 'scsi', 'usb'] as const;
const nameOf = (v: unknown): string => {
  const n = typeof v === 'object' && v !== null ? (v as { name?: unknown; deviceName?: unknown }) : {};
  return typeof n.deviceName === 'string' ? n.deviceName : typeof n.name === 'string' ? n.name : '(unnamed)';
};

export const DISK = obj({
  name: str(),
  disk: obj({ bus: oneOf(DISK_BUSES), readonly: bool(), pciAddress: needs(str(), 'a fixed PCI address (not rendered by this node yet)') }),
  cdrom: obj({ bus: oneOf(DISK_BUSES), readonly: bool(), tray: oneOf(['open', 'closed']) }),
  // SCSI passthrough of a block-mode claim (validate.ts, domain-xml.ts); reservations need qemu-pr-helper.
  lun: obj({ bus: oneOf(DISK_BUSES), readonly: bool(), reservation: needs(bool(), (v) => (v === true ? 'SCSI persistent reservations (this node runs no qemu-pr-helper)' : null)) }),
  bootOrder: int(),
  serial: str(),
  cache: oneOf(['none', 'writethrough', 'writeback']),
  io: oneOf(['native', 'threads', 'default']),
  dedicatedIOThread: bool(),
  blockSize: needs(obj({ custom: obj({ logical: int(), physical: int(), discardGranularity: int() }), matchVolume: featureState() }), 'custom block sizes (not rendered by this node yet)'),
  tag: needs(str(), 'device role tags (served through config drive metadata, which this node does not write)'),
  shareable: needs(bool(), (v) => (v === true ? 'a shareable disk (this node has no shared storage)' : null)),
  errorPolicy: oneOf(['stop', 'ignore', 'report', 'enospace']),
  changedBlockTracking: needs(bool(), (v) => (v === true ? 'changed block tracking (not supported by this node)' : null)),
});

const BINDING_NEEDS = (what: string): string => `the ${what} interface binding (not available on this node)`;
export const INTERFACE = obj({
  name: str(),
  masquerade: empty(),
  bridge: empty(),
  // Deprecated in KubeVirt; QEMU user-mode networking is exactly what masquerade means here.
  slirp: empty(),
  sriov: needs(empty(), 'an SR-IOV virtual function (this node has no SR-IOV devices)'),
  macvtap: needs(empty(), BINDING_NEEDS('macvtap')),
  passt: needs(empty(), BINDING_NEEDS('passt')),
  passtBinding: needs(empty(), BINDING_NEEDS('passt')),
  binding: needs(obj({ name: str() }), (v) => `the network binding plugin ${JSON.stringify(nameOf(v))} (not available on this node)`),
  macAddress: str(),
  model: str(),
  bootOrder: int(),
  ports: needs(arr(obj({ name: str(), protocol: oneOf(['TCP', 'UDP']), port: int() })), 'inbound port forwarding (masquerade here is outbound-only user-mode NAT)'),
  portRanges: needs(arr(obj({ protocol: oneOf(['TCP', 'UDP']), start: int(), end: int() })), 'inbound port forwarding (masquerade here is outbound-only user-mode NAT)'),
  pciAddress: needs(str(), 'a fixed PCI address (not rendered by this node yet)'),
  dhcpOptions: needs(obj({ bootFileName: str(), tftpServerName: str(), ntpServers: arr(str()), privateOptions: arr(obj({ option: int(), value: str() })) }), 'DHCP options (not served by this node)'),
  tag: needs(str(), 'device role tags (served through config drive metadata, which this node does not write)'),
  acpiIndex: int(),
  state: needs(oneOf(['up', 'down', 'absent']), (v) => (v === 'absent' ? 'interface state "absent" (hot-unplug is not supported by this node)' : null)),
});

export const DEVICES = obj({
  disks: arr(DISK),
  interfaces: arr(INTERFACE),
  rng: empty(),
  autoattachSerialConsole: bool(),
  autoattachPodInterface: bool(),
  logSerialConsole: bool(), // the console is always logged to a file in the VMI's directory
  disableHotplug: bool(), // nothing is hot-plugged on this node
  autoattachGraphicsDevice: bool(), // true: VNC on a unix socket in the VMI's directory (not proxied to clients yet)
  autoattachInputDevice: needs(bool(), (v) => (v === true ? 'an input device (not rendered by this node yet)' : null)),
  autoattachMemBalloon: bool(),
  autoattachVSOCK: bool(), // true: a virtio vsock; needs /dev/vhost-vsock (a node fact, checked before start)
  blockMultiQueue: bool(),
  networkInterfaceMultiqueue: needs(bool(), (v) => (v === true ? 'network interface multi-queue (masquerade here is QEMU user-mode networking, which has a single queue; multi-queue bridge interfaces are not rendered yet)' : null)),
  useVirtioTransitional: needs(bool(), (v) => (v === true ? 'virtio-transitional devices (not rendered by this node yet)' : null)),
  inputs: arr(obj({ name: str(), type: oneOf(['tablet', 'keyboard']), bus: oneOf(['usb', 'virtio']) })),
  watchdog: obj({
    name: str(),
    i6300esb: obj({ action: oneOf(['poweroff', 'reset', 'shutdown']) }),
    diag288: needs(obj({ action: oneOf(['poweroff', 'reset', 'shutdown']) }), 'a diag288 watchdog (s390x only; this node runs amd64 guests)'),
  }),
  gpus: arr(needs(obj({ name: str(), deviceName: str(), claimName: str(), requestName: str(), tag: str(), virtualGPUOptions: obj({ display: obj({ enabled: bool(), ramFB: featureState() }) }) }),
    (v) => `GPU device ${nameOf(v)} (this node exposes no GPUs)`)),
  hostDevices: arr(needs(obj({ name: str(), deviceName: str(), claimName: str(), requestName: str(), tag: str() }),
    (v) => `host device ${nameOf(v)} (this node exposes no host devices)`)),
  // virtiofs (needs virtiofsd: a node fact, checked before start); the share is the volume of the same name.
  filesystems: arr(obj({ name: str(), virtiofs: empty() })),
  sound: obj({ name: str(), model: oneOf(['ich9', 'ac97']) }),
  // An emulated TPM 2.0 (needs swtpm: a node fact, checked before start).
  tpm: needs(obj({ enabled: bool(), persistent: bool() }), (v) => {
    const t = v as { enabled?: unknown; persistent?: unknown } | null;
    return t?.enabled !== false && t?.persistent === true ? 'persistent TPM state (KubeVirt keeps it on backend storage, a PVC that follows the VM; this node has no backend storage)' : null;
  }),
  video: obj({ type: oneOf(['vga', 'virtio', 'bochs', 'ramfb', 'cirrus']) }),
  panicDevices: arr(obj({ model: needs(oneOf(['hyperv', 'isa', 'pvpanic']), (v) => (v === 'pvpanic' ? 'the pvpanic panic model (libvirt 9.0 on this node does not know it; isa and hyperv it does)' : null)) })),
  clientPassthrough: needs(empty(), 'USB client passthrough (not supported by this node)'),
  downwardMetrics: needs(empty(), 'the downward metrics device (not served by this node)'),
});
