/** What the VMI controller is told about node-local claims and DataVolumes (app.ts wires the DataVolume controller in; claims.ts uses it). */

/** What the VMI needs to know of a DataVolume (the DataVolume controller supplies it). */
export interface DataVolumeReadiness {
  /** CDI's phase: Pending, ImportScheduled, ImportInProgress, UploadReady, Succeeded, Failed. */
  phase: string;
  /** "NN.NN%" or "N/A". */
  progress: string;
  /** Why it is in that phase (a failure's message). */
  message: string;
}

/** Where claims live and how DataVolumes stand (app.ts wires the DataVolume controller in). */
export interface ClaimSource {
  root: string;
  /** null: no such DataVolume. */
  dataVolume(namespace: string, name: string): DataVolumeReadiness | null;
}
