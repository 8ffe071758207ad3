/**
 * DataVolumes on this node (CDI cdi.kubevirt.io/v1beta1, v1alpha1 read the same): the normalized
 * spec the controller acts on, the stored record and the status shown, in CDI's vocabulary.
 */

/** Where the DataVolume's content comes from (the sources this node serves). */
export type DataVolumeSource =
  | { kind: 'http'; url: string; checksum: string | null; extraHeaders: string[] }
  | { kind: 'registry'; url: string }
  | { kind: 'blank' }
  | { kind: 'upload' }
  | { kind: 'pvc'; namespace: string; name: string };

export interface NormalizedDataVolume {
  namespace: string;
  name: string;
  source: DataVolumeSource;
  /** The requested claim size in bytes (spec.storage / spec.pvc resources.requests.storage). */
  sizeBytes: number;
  accessModes: string[];
  storageClassName: string | null;
}

/** CDI's DataVolume phases this node uses. */
export type DataVolumePhase = 'Pending' | 'ImportScheduled' | 'ImportInProgress' | 'UploadReady' | 'Succeeded' | 'Failed';

export interface DataVolumeCondition {
  type: 'Bound' | 'Ready' | 'Running';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface DataVolumeEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  time: string;
}

export interface DataVolumeStatus {
  phase: DataVolumePhase;
  /** "NN.NN%", or "N/A" before an import reports. */
  progress: string;
  restartCount: number;
  /** The claim this DataVolume fills (same name). */
  claimName: string;
  conditions: DataVolumeCondition[];
}

/** One file per DataVolume under <stateDir>/datavolumes/ (store.ts). */
export interface DataVolumeRecord {
  version: 1;
  uid: string;
  namespace: string;
  name: string;
  /** The manifest as accepted (metadata.uid and namespace filled in). */
  manifest: Record<string, unknown>;
  createdAt: string;
  /** Set once Delete was accepted: a restart finishes the removal. */
  deleting: boolean;
  status: DataVolumeStatus;
  /** The last import's failure reason (ImportFailureReason) when Failed. */
  failureReason: string;
  events: DataVolumeEvent[];
}

/** What the API shows. */
export interface DataVolumeView {
  uid: string;
  namespace: string;
  name: string;
  manifest: Record<string, unknown>;
  createdAt: string;
  deleting: boolean;
  status: DataVolumeStatus;
  events: DataVolumeEvent[];
}
