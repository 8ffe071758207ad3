/**
 * virthandler.v1.Node: read-only node facts. Also the wire <-> model conversion for NodeInfo,
 * shared by the server (encode) and vhctl (decode) so both sides agree on null handling.
 */
import * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import type { DeviceInfo, NodeInfo } from '../node/types';
import { toGrpcStatus } from './errors';

/** The decoded GetNodeInfoResponse (proto3 optional fields are absent when null). */
export interface GetNodeInfoResponse {
  node: unknown;
}

/** Handlers for server.addService(nodeServiceDefinition, ...). */
export function nodeServiceImplementation(nodeInfo: () => NodeInfo | null): grpc.UntypedServiceImplementation {
  return {
    GetNodeInfo: (_call: grpc.ServerUnaryCall<unknown, GetNodeInfoResponse>, callback: grpc.sendUnaryData<GetNodeInfoResponse>): void => {
      const info = nodeInfo();
      if (info === null) {
        // UNAVAILABLE (via NOT_READY) tells clients to retry: the probe finishes within seconds.
        callback(toGrpcStatus(new VhError(ErrorCodes.NOT_READY, 'node probe is still running; retry in a few seconds')));
        return;
      }
      // The encoder reads the model as-is: field names match after camelCase, and null values
      // of proto3 optional fields are skipped, i.e. sent as "unset".
      callback(null, { node: info });
    },
  };
}

type Wire = Record<string, unknown>;

const obj = (v: unknown): Wire => (typeof v === 'object' && v !== null ? (v as Wire) : {});
const opt = <T>(v: unknown): T | null => (v === undefined || v === null ? null : (v as T));

function deviceFromWire(v: unknown): DeviceInfo {
  const d = obj(v);
  return {
    path: String(d.path ?? ''),
    present: Boolean(d.present),
    kind: String(d.kind ?? ''),
    mode: String(d.mode ?? ''),
    uid: opt<number>(d.uid),
    gid: opt<number>(d.gid),
    accessible: Boolean(d.accessible),
  };
}

/**
 * Rebuilds the TypeScript model from a decoded NodeInfo message: unset optional fields become
 * null again, and fields the sender did not set at all (an older server) get empty values
 * instead of undefined, so callers can rely on the NodeInfo shape.
 */
export function nodeInfoFromWire(v: unknown): NodeInfo {
  const n = obj(v);
  const cpu = obj(n.cpu);
  const kvm = obj(n.kvm);
  const dev = obj(n.devices);
  const uffd = obj(dev.userfaultfd);
  const kernel = obj(n.kernel);
  const memory = obj(n.memory);
  const thp = obj(n.thp);
  const arr = <T>(a: unknown): T[] => (Array.isArray(a) ? (a as T[]) : []);
  return {
    nodeName: String(n.nodeName ?? ''),
    probedAt: String(n.probedAt ?? ''),
    probeDurationMs: Number(n.probeDurationMs ?? 0),
    kernel: { release: String(kernel.release ?? ''), version: String(kernel.version ?? '') },
    cpu: {
      vendor: String(cpu.vendor ?? ''),
      vendorShort: String(cpu.vendorShort ?? ''),
      modelName: String(cpu.modelName ?? ''),
      family: opt<number>(cpu.family),
      model: opt<number>(cpu.model),
      stepping: opt<number>(cpu.stepping),
      flags: arr<string>(cpu.flags),
      logicalCpus: Number(cpu.logicalCpus ?? 0),
      sockets: Number(cpu.sockets ?? 0),
      coresPerSocket: Number(cpu.coresPerSocket ?? 0),
      threadsPerCore: Number(cpu.threadsPerCore ?? 0),
    },
    numa: arr<Wire>(n.numa).map((x) => ({ id: Number(x.id ?? 0), cpus: arr<number>(x.cpus), memTotalBytes: opt<number>(x.memTotalBytes) })),
    memory: { totalBytes: Number(memory.totalBytes ?? 0), availableBytes: Number(memory.availableBytes ?? 0) },
    hugepages: arr<Wire>(n.hugepages).map((x) => ({ sizeBytes: Number(x.sizeBytes ?? 0), total: Number(x.total ?? 0), free: Number(x.free ?? 0) })),
    thp: { enabled: String(thp.enabled ?? ''), defrag: String(thp.defrag ?? '') },
    devices: {
      kvm: deviceFromWire(dev.kvm),
      tun: deviceFromWire(dev.tun),
      vhostNet: deviceFromWire(dev.vhostNet),
      vhostVsock: deviceFromWire(dev.vhostVsock),
      userfaultfd: { ...deviceFromWire(uffd), unprivilegedAllowed: opt<boolean>(uffd.unprivilegedAllowed) },
    },
    kvm: {
      available: Boolean(kvm.available),
      reason: opt<string>(kvm.reason),
      errorCode: opt<string>(kvm.errorCode),
      apiVersion: opt<number>(kvm.apiVersion),
      capabilities: { ...(obj(kvm.capabilities) as Record<string, number>) },
      vcpuMmapSize: opt<number>(kvm.vcpuMmapSize),
      cpuidFeatures: arr<string>(kvm.cpuidFeatures),
      msrCount: opt<number>(kvm.msrCount),
    },
    schedulable: Boolean(n.schedulable),
    reasons: arr<string>(n.reasons),
    labels: { ...(obj(n.labels) as Record<string, string>) },
    warnings: arr<string>(n.warnings),
  };
}
