/**
 * The image store's public types: what ensure() takes and returns, list() entries, options.
 * The daemon's config, gRPC service and VMI wiring depend on these, not on the store's internals.
 */
import type { ArtifactMeta } from './store-files';

/** KubeVirt's imagePullPolicy. */
export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

/** What to take out of the image. */
export type ImageSelection =
  /** `/disk/*.qcow2` or `/disk/*.img` (exactly one), or `path` when the VMI names it (containerDisk.path). */
  | { kind: 'containerDisk'; path?: string }
  /** kernelBoot.container: kernelPath and/or initrdPath in the image. */
  | { kind: 'kernelBoot'; kernelPath?: string; initrdPath?: string };

/** A pull's progress, for VMI events. */
export interface PullProgress {
  ref: string;
  phase: 'cached' | 'pulling' | 'done';
  bytes?: number;
  totalBytes?: number;
  message: string;
}

/** ensure() options. */
export interface EnsureOptions {
  pullPolicy?: PullPolicy;
  select?: ImageSelection;
  onProgress?: (p: PullProgress) => void;
}

/** An image ready to use: read-only files under the store. */
export interface EnsuredImage {
  /** Canonical reference as asked (before rewrites). */
  ref: string;
  digest: string;
  /** containerDisk: the base image for the VMI's overlay. */
  diskPath?: string;
  format?: 'qcow2' | 'raw';
  kernelPath?: string;
  initrdPath?: string;
  /** True when this call (or the pull it joined) fetched the image. */
  pulled: boolean;
  /** When pulled: skopeo's copy (with the layers read as they arrived), then the rest of verify + extract + probe + placement. */
  timings?: { copyMs: number; placeMs: number; layersReadDuringCopy: number };
}

/** One image in list(). */
export interface StoredImage {
  digest: string;
  refs: string[];
  /** The reference it was first pulled as. */
  pulledAs: string;
  pulledAt: string;
  lastUsed: string | null;
  /** Apparent and allocated bytes of its files. */
  sizeBytes: number;
  allocatedBytes: number;
  artifacts: Array<{ name: string } & ArtifactMeta>;
}

/** ImageStore configuration (node config `images.*`). */
export interface ImageStoreOptions {
  /** Reference prefix rewrites, e.g. {'registry:5000': '127.0.0.1:5123'} (longest prefix wins). */
  rewrites?: Readonly<Record<string, string>>;
  /** Per registry host, mirrors tried in order before it, e.g. {'quay.io': ['127.0.0.1:5000']}. */
  mirrors?: Readonly<Record<string, readonly string[]>>;
  /** Registry credentials (containers-auth.json / docker config.json format); passed to skopeo only. */
  authFile?: string;
  /** Registries reached over plain HTTP; loopback hosts only. */
  insecureRegistries?: readonly string[];
  /** Largest image (sum of the files taken out of it, and of its layers while pulling); default 64 GiB. */
  maxImageSize?: number;
  /** A pull taking longer is killed; default 30 min. */
  pullTimeoutMs?: number;
  /** Binaries (tests wrap skopeo to count runs). */
  skopeoBinary?: string;
  qemuImgBinary?: string;
}

/** Counters for metrics and tests. */
export interface ImageStoreStats {
  pulls: number;
  pullFailures: number;
  cacheHits: number;
  joinedPulls: number;
}
