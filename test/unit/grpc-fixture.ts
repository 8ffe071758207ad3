/** Shared by grpc.test.ts and vhctl.test.ts: a realistic NodeInfo and a GrpcServer in a temp dir. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { GrpcServer } from '../../src/grpc/server';
import type { DeviceInfo, NodeInfo } from '../../src/node/types';

const dev = (p: string, over: Partial<DeviceInfo> = {}): DeviceInfo => ({
  path: p, present: true, kind: 'char', mode: '0660', uid: 0, gid: 36, accessible: true, ...over,
});

/** A NodeInfo that exercises every field kind: nulls, zeros, maps, nested lists. */
export function sampleNodeInfo(): NodeInfo {
  return {
    nodeName: 'node-a',
    probedAt: '2025-11-25T18:00:00.000Z',
    probeDurationMs: 12.5,
    kernel: { release: '6.8.0-45-generic', version: '#45-Ubuntu SMP PREEMPT_DYNAMIC' },
    cpu: {
      vendor: 'GenuineIntel', vendorShort: 'intel', modelName: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
      family: 6, model: 106, stepping: 0, flags: ['vmx', 'avx2', 'sse4_2'],
      logicalCpus: 16, sockets: 1, coresPerSocket: 8, threadsPerCore: 2,
    },
    numa: [{ id: 0, cpus: [0, 1, 2, 3], memTotalBytes: 34359738368 }, { id: 1, cpus: [], memTotalBytes: null }],
    memory: { totalBytes: 68719476736, availableBytes: 51539607552 },
    hugepages: [{ sizeBytes: 2097152, total: 512, free: 500 }, { sizeBytes: 1073741824, total: 0, free: 0 }],
    thp: { enabled: 'madvise', defrag: 'madvise' },
    devices: {
      kvm: dev('/dev/kvm'),
      tun: dev('/dev/net/tun', { mode: '0666', gid: 0 }),
      vhostNet: dev('/dev/vhost-net', { mode: '0600', gid: 0 }),
      vhostVsock: dev('/dev/vhost-vsock', { present: false, kind: 'missing', mode: '', uid: null, gid: null, accessible: false }),
      userfaultfd: { ...dev('/dev/userfaultfd', { mode: '0600', gid: 0 }), unprivilegedAllowed: null },
    },
    kvm: {
      available: true, reason: null, errorCode: null, apiVersion: 12,
      capabilities: { NR_VCPUS: 16, MAX_VCPUS: 4096, USER_MEMORY: 1, MAX_VCPU_ID: 4096 },
      vcpuMmapSize: 12288, cpuidFeatures: ['vmx', 'avx2'], msrCount: 0,
    },
    schedulable: true,
    reasons: [],
    warnings: ['cannot read /sys/kernel/mm/transparent_hugepage/defrag (EISDIR)'],
    labels: { 'kubevirt.io/schedulable': 'true', 'cpu-vendor.node.kubevirt.io/Intel': 'true' },
  };
}

/** A node where KVM is unusable, for the "not schedulable" rendering paths. */
export function unschedulableNodeInfo(): NodeInfo {
  const n = sampleNodeInfo();
  n.kvm = { ...n.kvm, available: false, reason: '/dev/kvm is missing: is CONFIG_KVM enabled?', errorCode: 'ENOENT', apiVersion: null, capabilities: {} };
  n.schedulable = false;
  n.reasons = ['kvm: /dev/kvm is missing'];
  n.labels = { 'kubevirt.io/schedulable': 'false' };
  return n;
}

/** A started server plus its knobs; `close()` shuts it down and removes the temp dir. */
export interface TestServer {
  server: GrpcServer;
  dir: string;
  socketPath: string;
  setInfo(info: NodeInfo | null): void;
  close(): Promise<void>;
}

/** Starts a GrpcServer on <tmp>/grpc.sock with a silent logger; the probe result starts as null. */
export async function startTestServer(): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-grpc-'));
  const socketPath = path.join(dir, 'grpc.sock');
  let info: NodeInfo | null = null;
  const server = new GrpcServer({ socketPath, logger: pino({ level: 'silent' }), nodeInfo: () => info });
  await server.start();
  return {
    server, dir, socketPath,
    setInfo: (i) => { info = i; },
    close: async () => {
      await server.shutdown(1000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
