/**
 * Schema: spec.volumes and spec.networks. Every KubeVirt volume source is accepted; the ones this
 * node cannot serve (cluster storage, Kubernetes objects, image pulls) are requirements.
 */
import { arr, bool, int, localRef, needs, obj, oneOf, qty, str } from './node';

const ref = (v: unknown, key: string): string => {
  const s = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined;
  return typeof s === 'string' ? s : '(unnamed)';
};
const NO_K8S = '(this node reads no Kubernetes objects)';
const NO_PVC = '(memory dumps are not taken by this node)';

const cloudInit = () => obj({
  userData: str(), userDataBase64: str(), networkData: str(), networkDataBase64: str(),
  secretRef: needs(localRef(), (v) => `cloud-init user data from Secret ${ref(v, 'name')} ${NO_K8S}`),
  networkDataSecretRef: needs(localRef(), (v) => `cloud-init network data from Secret ${ref(v, 'name')} ${NO_K8S}`),
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
    imagePullSecret: needs(str(), (v) => `image pull Secret ${String(v)} ${NO_K8S}; registry credentials come from the node's images.authFile`),
    path: str(),
  }),
  hostDisk: obj({ path: str(), type: str(), capacity: qty(), shared: needs(bool(), (v) => (v === true ? 'a shared host disk (this node has no shared storage)' : null)) }),
  emptyDisk: obj({ capacity: qty() }),
  cloudInitNoCloud: cloudInit(),
  cloudInitConfigDrive: needs(cloudInit(), 'a cloud-init config drive (this node writes NoCloud seeds only)'),
  // Node-local claims under volumes.claimRoot (volume-sources.ts); hotplug stays a requirement.
  persistentVolumeClaim: pvc(),
  dataVolume: obj({ name: str(), hotpluggable: needs(bool(), HOTPLUG) }),
  ephemeral: obj({ persistentVolumeClaim: obj({ claimName: str(), readOnly: bool() }) }),
  memoryDump: needs(pvc(), (v) => `memory dump claim ${ref(v, 'claimName')} ${NO_PVC}`),
  configMap: needs(obj({ name: str(), optional: bool(), volumeLabel: str() }), (v) => `ConfigMap ${ref(v, 'name')} ${NO_K8S}`),
  secret: needs(obj({ secretName: str(), optional: bool(), volumeLabel: str() }), (v) => `Secret ${ref(v, 'secretName')} ${NO_K8S}`),
  serviceAccount: needs(obj({ serviceAccountName: str() }), (v) => `service account ${ref(v, 'serviceAccountName')} ${NO_K8S}`),
  downwardAPI: needs(obj({
    volumeLabel: str(),
    fields: arr(obj({
      path: str(), mode: int(),
      fieldRef: obj({ apiVersion: str(), fieldPath: str() }),
      resourceFieldRef: obj({ containerName: str(), resource: str(), divisor: qty() }),
    })),
  }), `the downward API ${NO_K8S}`),
  downwardMetrics: needs(obj({}), 'the downward metrics volume (not served by this node)'),
  sysprep: needs(obj({ configMap: localRef(), secret: localRef() }), `a sysprep volume ${NO_K8S}`),
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
