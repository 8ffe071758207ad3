/**
 * grpc.health.v1.Health per the public spec: Check answers the current status (NOT_FOUND for
 * an unknown service); Watch sends the current status at once and then every change, and
 * answers SERVICE_UNKNOWN (keeping the stream open) for a service not registered yet.
 */
import * as grpc from '@grpc/grpc-js';

/** The wire values of HealthCheckResponse.ServingStatus (enums decode as strings). */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface CheckRequest {
  service: string;
}
interface CheckResponse {
  status: ServingStatus;
}
type WatchCall = grpc.ServerWritableStream<CheckRequest, CheckResponse>;

/** Status registry plus the Health service implementation. */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<WatchCall>>();

  /** Sets `service`'s status ('' is the whole server) and pushes it to its watchers if it changed. */
  setStatus(service: string, status: 'SERVING' | 'NOT_SERVING'): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const call of this.watchers.get(service) ?? []) call.write({ status });
  }

  /** The current status, or SERVICE_UNKNOWN for a service never registered. */
  status(service: string): ServingStatus {
    return this.statuses.get(service) ?? 'SERVICE_UNKNOWN';
  }

  /** Number of open Watch streams (for tests and shutdown logging). */
  watcherCount(): number {
    let n = 0;
    for (const set of this.watchers.values()) n += set.size;
    return n;
  }

  /**
   * Ends every Watch stream with OK. Watch streams never end on their own, so without this a
   * graceful server shutdown would wait for them until its deadline.
   */
  closeWatchers(): void {
    for (const set of this.watchers.values()) {
      for (const call of set) call.end();
      set.clear();
    }
    this.watchers.clear();
  }

  /** Handlers for server.addService(healthServiceDefinition, ...). */
  implementation(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>): void => {
        const status = this.statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
          return;
        }
        callback(null, { status });
      },
      Watch: (call: WatchCall): void => {
        const service = call.request.service;
        let set = this.watchers.get(service);
        if (!set) this.watchers.set(service, (set = new Set()));
        set.add(call);
        const forget = (): void => {
          this.watchers.get(service)?.delete(call);
        };
        call.on('cancelled', forget);
        call.on('close', forget);
        call.on('error', forget);
        call.write({ status: this.status(service) });
      },
    };
  }
}
