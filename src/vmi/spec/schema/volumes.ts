/**
 * Schema: spec.volumes and spec.networks. Every KubeVirt volume source is accepted; the ones this
 * node cannot serve (cluster storage, image pulls) are requirements. Kubernetes objects
 * (ConfigMap, Secret, service account) come from the node's object root.
 */
import { arr, bool, int, localRef, needs, obj, oneOf, qty, str } from './node';

const ref = (v: unknown, key: string): string => {
  const s = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined;
  return typeof s === 'string' ? s : '(unnamed)';
};
const NO_PVC = '(memory dumps are not taken by this node)';

const cloudInit = () => obj({
  userData: str(), userDataBase64: str(), networkData: str(), networkDataBase64: str(),
  // Read from the node's object root at start (volume-sources.ts, control/objects.ts).
  secretRef: localRef(),
  networkDataSecretRef: localRef(),
});

const HOTPLUG = (v: unknown): string | null => (v === true ? 'a hotpluggable volume (this node attaches volumes at start only)' : null);
const pvc = () => obj({ claimName: str(), readOnly: bool(), hotpluggable: needs(bool(), HOTPLUG) });

export const VOLUME = obj({
  name: str(),
  containerDisk: obj({
    // With an image, path is the disk's path inside the image; without one (this node's own
    // form) it is a host path under the image root. Whether an image is a requirement depends on
    // the node (ValidationContext.imagePulls), so volume-sources.ts decides it, not the schema.
    image: str(),
    imagePullPolicy: oneOf(['Always', 'IfNotPresent', 'Never']),
    imagePullSecret: needs(str(), (v) => `image pull Secret ${String(v)} (this node does not read pull Secrets); registry credentials come from the node's images.authFile`),
    path: str(),
  }),
  hostDisk: obj({ path: str(), type: str(), capacity: qty(), shared: needs(bool(), (v) => (v === true ? 'a shared host disk (this node has no shared storage)' : null)) }),
  emptyDisk: obj({ capacity: qty() }),
  cloudInitNoCloud: cloudInit(),
  cloudInitConfigDrive: cloudInit(),
  // Node-local claims under volumes.claimRoot (volume-sources.ts); hotplug stays a requirement.
  persistentVolumeClaim: pvc(),
  dataVolume: obj({ name: str(), hotpluggable: needs(bool(), HOTPLUG) }),
  ephemeral: obj({ persistentVolumeClaim: obj({ claimName: str(), readOnly: bool() }) }),
  memoryDump: needs(pvc(), (v) => `memory dump claim ${ref(v, 'claimName')} ${NO_PVC}`),
  // Kubernetes objects served as ISO disks from the node's object root (volumes.objectRoot).
  configMap: obj({ name: str(), optional: bool(), volumeLabel: str() }),
  secret: obj({ secretName: str(), optional: bool(), volumeLabel: str() }),
  serviceAccount: obj({ serviceAccountName: str() }),
  downwardAPI: obj({
    volumeLabel: str(),
    fields: arr(obj({
      path: str(), mode: int(),
      fieldRef: obj({ apiVersion: str(), fieldPath: str() }),
      // kubelet resolves it against a container of the virt-launcher pod; there is none here.
      resourceFieldRef: needs(obj({ containerName: str(), resource: str(), divisor: qty() }),
        (v) => `a container resource (${ref(v, 'resource')}) in the downward API: KubeVirt reads the virt-launcher pod's container, and this node runs no pod`),
    })),
  }),
  downwardMetrics: needs(obj({}), 'the downward metrics volume (not served by this node)'),
  sysprep: obj({ configMap: localRef(), secret: localRef() }),
  containerPath: needs(obj({ path: str(), readOnly: bool() }), 'a container path volume (there is no container on this node)'),
});

export const NETWORK = obj({
  name: str(),
  pod: obj({
    vmNetworkCIDR: needs(str(), 'a custom pod network CIDR (not rendered by this node yet)'),
    vmIPv6NetworkCIDR: needs(str(), 'a custom pod network CIDR (not rendered by this node yet)'),
  }),
  multus: needs(obj({ networkName: str(), default: bool() }), (v) => `Multus network ${ref(v, 'networkName')} (this node has no secondary networks)`),
  resourceClaim: needs(obj({ claimName: str(), requestName: str() }), 'a network from a resource claim (this node has no DRA driver)'),
});
