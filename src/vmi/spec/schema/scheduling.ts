/**
 * Schema: metadata and the pod-level fields of a VMI spec (scheduling, DNS, probes, access
 * credentials). Scheduling fields are kept as given: they were the scheduler's to satisfy before
 * the VMI reached this node (nodeSelector is also checked against this node's labels, in
 * requirements.ts, because labels change).
 */
import { arr, bool, empty, int, intOrStr, map, needs, obj, oneOf, str } from './node';

export const OBJECT_META = obj({
  name: str(), namespace: str(), uid: str(), labels: map(str()), annotations: map(str()), generation: int(),
  // Server-populated or controller-owned; accepted so a manifest read back from a cluster validates.
  generateName: str(), resourceVersion: str(), selfLink: str(), creationTimestamp: str(),
  deletionTimestamp: str(), deletionGracePeriodSeconds: int(), finalizers: arr(str()),
  ownerReferences: arr(obj({ apiVersion: str(), kind: str(), name: str(), uid: str(), controller: bool(), blockOwnerDeletion: bool() })),
  managedFields: arr(obj({ apiVersion: str(), fieldsType: str(), fieldsV1: map(str()), manager: str(), operation: str(), subresource: str(), time: str() })),
});

const labelSelector = () => obj({
  matchLabels: map(str()),
  matchExpressions: arr(obj({ key: str(), operator: oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist']), values: arr(str()) })),
});

const nodeSelectorTerm = () => {
  const req = obj({ key: str(), operator: oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']), values: arr(str()) });
  return obj({ matchExpressions: arr(req), matchFields: arr(req) });
};

const podAffinityTerm = () => obj({
  labelSelector: labelSelector(), namespaceSelector: labelSelector(), namespaces: arr(str()), topologyKey: str(),
  matchLabelKeys: arr(str()), mismatchLabelKeys: arr(str()),
});

const podAffinity = () => obj({
  requiredDuringSchedulingIgnoredDuringExecution: arr(podAffinityTerm()),
  preferredDuringSchedulingIgnoredDuringExecution: arr(obj({ weight: int(), podAffinityTerm: podAffinityTerm() })),
});

export const AFFINITY = obj({
  nodeAffinity: obj({
    requiredDuringSchedulingIgnoredDuringExecution: obj({ nodeSelectorTerms: arr(nodeSelectorTerm()) }),
    preferredDuringSchedulingIgnoredDuringExecution: arr(obj({ weight: int(), preference: nodeSelectorTerm() })),
  }),
  podAffinity: podAffinity(),
  podAntiAffinity: podAffinity(),
});

export const TOLERATION = obj({
  key: str(), operator: oneOf(['Exists', 'Equal']), value: str(), effect: oneOf(['NoSchedule', 'PreferNoSchedule', 'NoExecute']), tolerationSeconds: int(),
});

export const TOPOLOGY_SPREAD = obj({
  maxSkew: int(), topologyKey: str(), whenUnsatisfiable: oneOf(['DoNotSchedule', 'ScheduleAnyway']), labelSelector: labelSelector(),
  minDomains: int(), nodeAffinityPolicy: oneOf(['Honor', 'Ignore']), nodeTaintsPolicy: oneOf(['Honor', 'Ignore']), matchLabelKeys: arr(str()),
});

const DNS_NEEDS = 'pod DNS settings (this node has no pod network: guests use the resolver of QEMU user-mode NAT)';
export const DNS_POLICY = needs(oneOf(['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None']), DNS_NEEDS);
export const DNS_CONFIG = needs(obj({ nameservers: arr(str()), searches: arr(str()), options: arr(obj({ name: str(), value: str() })) }), DNS_NEEDS);

export const PROBE = needs(obj({
  exec: obj({ command: arr(str()) }),
  httpGet: obj({ path: str(), port: intOrStr(), host: str(), scheme: oneOf(['HTTP', 'HTTPS']), httpHeaders: arr(obj({ name: str(), value: str() })) }),
  tcpSocket: obj({ port: intOrStr(), host: str() }),
  guestAgentPing: empty(),
  initialDelaySeconds: int(), timeoutSeconds: int(), periodSeconds: int(), successThreshold: int(), failureThreshold: int(),
}), 'liveness/readiness probes (not run by this node yet)');

const secretSource = () => obj({ secret: obj({ secretName: str() }) });
export const ACCESS_CREDENTIAL = needs(obj({
  sshPublicKey: obj({
    source: secretSource(),
    propagationMethod: obj({ configDrive: empty(), noCloud: empty(), qemuGuestAgent: obj({ users: arr(str()) }) }),
  }),
  userPassword: obj({ source: secretSource(), propagationMethod: obj({ qemuGuestAgent: empty() }) }),
}), 'access credentials from a Secret (this node reads no Kubernetes Secrets)');

export const RESOURCE_CLAIM = needs(obj({ name: str(), resourceClaimName: str(), resourceClaimTemplateName: str() }),
  'dynamic resource allocation claims (this node has no DRA driver)');

export const UTILITY_VOLUME = needs(obj({ name: str(), claimName: str(), type: str(), readOnly: bool() }),
  'utility volumes from persistent volume claims (not served by this node)');
