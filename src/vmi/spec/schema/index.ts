/**
 * The kubevirt.io/v1 VirtualMachineInstance field schema (read from KubeVirt's
 * staging/src/kubevirt.io/api/core/v1 types, deprecated fields included), split by area:
 * scheduling.ts (metadata, pod-level fields), domain.ts, devices.ts, volumes.ts. node.ts holds
 * the builders and the walker. runStrategy is this node's extension (KubeVirt keeps it on the
 * VirtualMachine).
 */
import type { Violations } from '../field-reader';
import type { VmiRequirement } from '../types';
import { CHASSIS, CLOCK, CPU, FEATURES, FIRMWARE, IO_THREADS, IO_THREADS_POLICY, LAUNCH_SECURITY, MEMORY, RESOURCES } from './domain';
import { DEVICES } from './devices';
import { arr, checkNode, int, map, needs, obj, oneOf, str, type Infer } from './node';
import {
  ACCESS_CREDENTIAL, AFFINITY, DNS_CONFIG, DNS_POLICY, OBJECT_META, PROBE, RESOURCE_CLAIM, TOLERATION, TOPOLOGY_SPREAD, UTILITY_VOLUME,
} from './scheduling';
import { NETWORK, VOLUME } from './volumes';

export const DOMAIN_SPEC = obj({
  cpu: CPU, memory: MEMORY, resources: RESOURCES, firmware: FIRMWARE, machine: obj({ type: str() }),
  features: FEATURES, clock: CLOCK, devices: DEVICES, launchSecurity: LAUNCH_SECURITY, chassis: CHASSIS,
  ioThreadsPolicy: IO_THREADS_POLICY, ioThreads: IO_THREADS,
  rebootPolicy: needs(oneOf(['Reboot', 'Terminate']), (v) => (v === 'Terminate' ? 'rebootPolicy Terminate (not supported by this node yet)' : null)),
});

export const VMI_SPEC = obj({
  domain: DOMAIN_SPEC,
  volumes: arr(VOLUME),
  networks: arr(NETWORK),
  runStrategy: str(),
  terminationGracePeriodSeconds: int(),
  // Scheduling: kept as given (nodeSelector is also checked against this node's labels).
  nodeSelector: map(str()),
  affinity: AFFINITY,
  tolerations: arr(TOLERATION),
  topologySpreadConstraints: arr(TOPOLOGY_SPREAD),
  priorityClassName: str(),
  schedulerName: str(),
  evictionStrategy: oneOf(['None', 'LiveMigrate', 'LiveMigrateIfPossible', 'External']),
  hostname: str(),
  subdomain: str(),
  architecture: needs(str(), (v) => (v === 'amd64' ? null : `architecture ${JSON.stringify(v)} (this node runs amd64 guests)`)),
  startStrategy: needs(oneOf(['Paused']), 'starting paused (not supported by this node yet)'),
  dnsPolicy: DNS_POLICY,
  dnsConfig: DNS_CONFIG,
  livenessProbe: PROBE,
  readinessProbe: PROBE,
  accessCredentials: arr(ACCESS_CREDENTIAL),
  resourceClaims: arr(RESOURCE_CLAIM),
  utilityVolumes: arr(UTILITY_VOLUME),
});

export const VMI_SCHEMA = obj({ apiVersion: str(), kind: str(), metadata: OBJECT_META, spec: VMI_SPEC });

/** A kubevirt.io/v1 VirtualMachineInstance manifest as TypeScript sees it, derived from the schema (one source of truth). */
export type KubevirtVmi = Infer<typeof VMI_SCHEMA>;
export type KubevirtVmiSpec = Infer<typeof VMI_SPEC>;
export type KubevirtDomainSpec = Infer<typeof DOMAIN_SPEC>;

/** Checks a whole manifest: unknown fields and wrong kinds into `v`, accepted-but-not-honoured fields into `reqs`. */
export function checkVmiSchema(raw: unknown, v: Violations, reqs: VmiRequirement[]): void {
  checkNode(VMI_SCHEMA, raw, '', v, reqs);
}
