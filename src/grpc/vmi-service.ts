/**
 * virthandler.v1.VmiService (proto/virthandler/v1/vmi.proto) on top of the VMI manager: request
 * checks, the wire shape of a VMI, WatchVMIs and the Console byte stream. Errors go through
 * toGrpcStatus (VMI_INVALID adds the field violations trailer). Every reply that carries a VMI
 * (SyncVMI, DeleteVMI, GetVMI, ListVMIs, WatchVMIs, the actions) is built by vmiToWire, which
 * redacts cloud-init user and network data (`<redacted: N bytes, sha256:HEX>`).
 */
import * as net from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, VhError } from '../errors';
import type { Logger } from '../log';
import type { VmiController, VmiRefIn, WatchEventOut } from '../vmi/control/controller';
import type { VmiView } from '../vmi/spec/types';
import { MalformedRequest, toGrpcStatus, unaryHandler } from './errors';
import { isDnsLabel, isUuid } from '../vmi/spec/ids';
import { redactSecrets } from '../vmi/spec/redact';

const MAX_MANIFEST = 1024 * 1024;
const CONSOLE_CHUNK = 64 * 1024;

/** The wire form of a VMI (vmi.proto's Vmi message, camelCase as the loader decodes it), secrets redacted. */
export function vmiToWire(v: VmiView): Record<string, unknown> {
  return {
    uid: v.uid,
    namespace: v.namespace,
    name: v.name,
    generation: v.generation,
    specJson: JSON.stringify(redactSecrets(v.manifest)),
    status: {
      phase: v.status.phase,
      reason: v.status.reason,
      conditions: v.status.conditions,
      nodeName: v.status.nodeName,
      launcherPid: v.status.launcherPid ?? 0,
      interfaces: v.status.interfaces.map((i) => ({ name: i.name, mac: i.mac, ipAddress: i.ipAddress ?? '' })),
      domainState: v.status.domainState,
    },
    revision: v.revision,
    deleting: v.deleting,
  };
}

/** Checks a VmiRef from the wire; INVALID_ARGUMENT names the field. */
export function checkRef(raw: unknown): VmiRefIn {
  const r = (raw ?? {}) as Record<string, unknown>;
  const str = (k: string): string => (typeof r[k] === 'string' ? (r[k] as string) : '');
  const ref = { namespace: str('namespace'), name: str('name'), uid: str('uid') };
  if (ref.uid) {
    if (!isUuid(ref.uid)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'uid: must be a lower-case UUID', { field: 'uid' });
    return ref;
  }
  if (!ref.name) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name: required (or uid)', { field: 'name' });
  if (!isDnsLabel(ref.name)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'name: must be a DNS-1123 label', { field: 'name' });
  if (ref.namespace && !isDnsLabel(ref.namespace)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'namespace: must be a DNS-1123 label', { field: 'namespace' });
  return ref;
}

function checkNamespace(raw: unknown): string {
  const ns = typeof raw === 'string' ? raw : '';
  if (ns && !isDnsLabel(ns)) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'namespace: must be a DNS-1123 label', { field: 'namespace' });
  return ns;
}

export function vmiServiceImplementation(m: VmiController, log: Logger): grpc.UntypedServiceImplementation {
  const unary = unaryHandler(log, 'VmiService');
  return {
    SyncVMI: unary((req) => {
      const manifest = req.manifest;
      if (typeof manifest !== 'string' || manifest.trim() === '') throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'manifest: required (a VirtualMachineInstance as JSON or YAML)', { field: 'manifest' });
      if (Buffer.byteLength(manifest) > MAX_MANIFEST) throw new VhError(ErrorCodes.INVALID_ARGUMENT, `manifest: larger than ${MAX_MANIFEST} bytes`, { field: 'manifest' });
      const { vmi, changed } = m.sync(manifest);
      return { vmi: vmiToWire(vmi), changed };
    }),
    DeleteVMI: unary((req) => ({ vmi: vmiToWire(m.delete(checkRef(req))) })),
    GetVMI: unary((req) => {
      const ref = checkRef(req);
      const e = m.find(ref);
      return vmiToWire(m.get(e.rec.namespace, e.rec.name) as VmiView);
    }),
    ListVMIs: unary((req) => {
      const { vmis, revision } = m.snapshot(checkNamespace(req.namespace) || undefined);
      return { vmis: vmis.map(vmiToWire), revision };
    }),
    Pause: unary(async (req) => vmiToWire(await m.pause(checkRef(req)))),
    Unpause: unary(async (req) => vmiToWire(await m.unpause(checkRef(req)))),
    SoftReboot: unary(async (req) => vmiToWire(await m.softReboot(checkRef(req)))),
    Shutdown: unary(async (req) => vmiToWire(await m.shutdown(checkRef(req)))),
    WatchVMIs: (call: grpc.ServerWritableStream<unknown, unknown>): void => {
      const req = (call.request ?? {}) as Record<string, unknown>;
      const since = typeof req.sinceRevision === 'number' ? req.sinceRevision : 0;
      let close: (() => void) | null = null;
      try {
        close = m.watch(since, checkNamespace(req.namespace), (ev: WatchEventOut) => {
          if (!call.cancelled) call.write({ type: ev.type, vmi: vmiToWire(ev.vmi), revision: ev.revision });
        });
      } catch (e) {
        call.emit('error', toGrpcStatus(e));
        return;
      }
      const stop = (): void => {
        close?.();
        close = null;
      };
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
    },
    Console: (call: grpc.ServerDuplexStream<unknown, unknown>): void => consoleStream(m, call, log),
  };
}

/** Console: the first message names the VMI; bytes flow between the stream and QEMU's serial socket. */
function consoleStream(m: VmiController, call: grpc.ServerDuplexStream<unknown, unknown>, log: Logger): void {
  let sock: net.Socket | null = null;
  let release: (() => void) | null = null;
  let ended = false;
  const finish = (err?: unknown): void => {
    if (ended) return;
    ended = true;
    release?.();
    sock?.destroy();
    try {
      if (err) call.emit('error', toGrpcStatus(err));
      else call.end();
    } catch {
      /* gone */
    }
  };
  call.on('data', (msg: unknown) => {
    if (ended) return;
    if (msg instanceof MalformedRequest) return finish(new VhError(ErrorCodes.INVALID_ARGUMENT, `malformed console message: ${msg.reason}`));
    const m2 = (msg ?? {}) as { ref?: unknown; data?: Buffer };
    if (!sock) {
      try {
        if (!m2.ref) throw new VhError(ErrorCodes.INVALID_ARGUMENT, 'ref: the first console message must name the VMI', { field: 'ref' });
        const target = m.attachConsole(checkRef(m2.ref));
        release = target.release;
        sock = net.createConnection(target.socket);
        sock.on('data', (b: Buffer) => {
          for (let i = 0; i < b.length; i += CONSOLE_CHUNK) call.write({ data: b.subarray(i, i + CONSOLE_CHUNK) });
        });
        sock.on('error', (e) => {
          log.warn({ err: e }, 'console socket error');
          finish(new VhError(ErrorCodes.FAILED_PRECONDITION, `console: ${e.message}`));
        });
        sock.on('close', () => finish());
      } catch (e) {
        return finish(e);
      }
    }
    if (m2.data && m2.data.length > 0) sock.write(m2.data);
  });
  // The client half-closed (e.g. vhctl in pipe mode at the end of its input): let the guest's
  // answer drain for a moment before closing.
  call.on('end', () => setTimeout(() => finish(), 500).unref());
  call.on('cancelled', () => finish());
  call.on('error', () => finish());
}
