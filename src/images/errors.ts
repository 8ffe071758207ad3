/**
 * Why an image could not be pulled, imported or extracted. Each failure is a VhError with a
 * stable code (the transports map those) plus `details.reason`, one of ImageFailureReason, so a
 * VMI event or `vhctl` can say exactly what was wrong with the image or the registry.
 */
import { ErrorCodes, type ErrorCode, VhError } from '../errors';

/** The reasons an image operation fails; stable strings (they reach VMI events). */
export type ImageFailureReason =
  | 'InvalidReference' // the reference does not parse
  | 'NotFound' // registry answered 404 (tag, repository or blob)
  | 'NotPresent' // pullPolicy Never and the image is not in the store
  | 'RegistryUnreachable' // connection refused, unknown host, timeout
  | 'Unauthorized' // 401/403 from the registry
  | 'DigestMismatch' // a blob or manifest does not hash to its digest
  | 'Truncated' // a blob is shorter than its descriptor or the stream ended early
  | 'UnsafePath' // a tar entry with `..`
  | 'SpecialFile' // a device node or FIFO in a layer
  | 'LinkEscape' // a symlink or hard link pointing outside the image root
  | 'NotRegularFile' // the wanted file is a link or directory
  | 'BadLayout' // manifest/config malformed, unsupported media type, no or several disks
  | 'BadDiskFormat' // the disk is neither raw nor a standalone qcow2
  | 'TooLarge' // over the store's maxImageSize
  | 'NoSpace' // bigger than the free space of the store's file system
  | 'InUse' // remove() of an image a VMI uses
  | 'PullFailed'; // anything else skopeo reported (its message is kept)

const CODE: Record<ImageFailureReason, ErrorCode> = {
  InvalidReference: ErrorCodes.INVALID_ARGUMENT,
  NotFound: ErrorCodes.NOT_FOUND,
  NotPresent: ErrorCodes.NOT_FOUND,
  RegistryUnreachable: ErrorCodes.INTERNAL,
  Unauthorized: ErrorCodes.UNAUTHENTICATED,
  DigestMismatch: ErrorCodes.FAILED_PRECONDITION,
  Truncated: ErrorCodes.FAILED_PRECONDITION,
  UnsafePath: ErrorCodes.FAILED_PRECONDITION,
  SpecialFile: ErrorCodes.FAILED_PRECONDITION,
  LinkEscape: ErrorCodes.FAILED_PRECONDITION,
  NotRegularFile: ErrorCodes.FAILED_PRECONDITION,
  BadLayout: ErrorCodes.FAILED_PRECONDITION,
  BadDiskFormat: ErrorCodes.FAILED_PRECONDITION,
  TooLarge: ErrorCodes.RESOURCE_EXHAUSTED,
  NoSpace: ErrorCodes.RESOURCE_EXHAUSTED,
  InUse: ErrorCodes.FAILED_PRECONDITION,
  PullFailed: ErrorCodes.INTERNAL,
};

/** A failed image operation: `reason` says what, the message says which image and how to fix it. */
export class ImageError extends VhError {
  readonly reason: ImageFailureReason;

  constructor(reason: ImageFailureReason, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(CODE[reason], message, { reason, ...details }, options);
    this.name = 'ImageError';
    this.reason = reason;
  }
}

/** True when `e` is an ImageError (with `reason`, when given). */
export function isImageError(e: unknown, reason?: ImageFailureReason): e is ImageError {
  return e instanceof ImageError && (reason === undefined || e.reason === reason);
}
