/**
 * The KVM layer's error module (src/kvm/errors.ts) without an addon: the userspace tracker's
 * and the dirty log's mappings of native facts to stable codes. The device mapping
 * (toKvmError) is covered beside KvmSystem in kvm-probe.test.ts.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ErrorCodes, VhError } from '../../src/errors';
import { toDirtyLogError, toDirtyTrackerError } from '../../src/kvm/errors';

function nativeError(code: string, errno: number, syscall?: string): Error {
  return Object.assign(new Error(`${code}: native failure`), { code, errno, ...(syscall ? { syscall } : {}) });
}

describe('toDirtyTrackerError (userspace tracker)', () => {
  const cases = [
    ['ERR_INVALID_ARG', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['ERR_OUT_OF_RANGE', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['ERR_INVALID_ARG_TYPE', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['ERR_BUSY', 0, undefined, ErrorCodes.INTERNAL],
    ['ERR_CLOSED', 0, undefined, ErrorCodes.INTERNAL],
    ['EPERM', 1, 'userfaultfd', ErrorCodes.INTERNAL],
  ] as const;
  for (const [code, errno, syscall, expected] of cases) {
    test(`${code} -> ${expected}, facts kept in details`, () => {
      const cause = nativeError(code, errno, syscall);
      const err = toDirtyTrackerError(cause);
      assert.equal(err.code, expected);
      assert.equal(err.details.code, code);
      assert.equal(err.cause, cause);
    });
  }

  test('errno failures carry advice for the operator; argument mistakes keep the native message', () => {
    assert.match(toDirtyTrackerError(nativeError('EPERM', 1, 'userfaultfd')).message, /vm\.unprivileged_userfaultfd=1/);
    assert.match(toDirtyTrackerError(nativeError('ENOTTY', 25, 'ioctl')).message, /Linux 6\.7\+/);
    assert.equal(toDirtyTrackerError(nativeError('ERR_INVALID_ARG', 0)).message, 'ERR_INVALID_ARG: native failure');
  });

  test('a VhError passes through; anything without facts is INTERNAL', () => {
    const vh = new VhError(ErrorCodes.NOT_FOUND, 'x');
    assert.equal(toDirtyTrackerError(vh), vh);
    assert.equal(toDirtyTrackerError('boom').code, ErrorCodes.INTERNAL);
  });
});

describe('toDirtyLogError (KVM dirty log)', () => {
  const cases = [
    ['ERR_DIRTY_LOG_MODE', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['ERR_DIRTY_LOG_OFF', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['ENOENT', 2, 'KVM_GET_DIRTY_LOG', ErrorCodes.INVALID_ARGUMENT],
    ['ENXIO', 6, 'KVM_CLEAR_DIRTY_LOG', ErrorCodes.INVALID_ARGUMENT],
    ['EINVAL', 22, 'KVM_ENABLE_CAP', ErrorCodes.INVALID_ARGUMENT],
    ['ERR_OUT_OF_RANGE', 0, undefined, ErrorCodes.INVALID_ARGUMENT],
    ['EFAULT', 14, 'KVM_GET_DIRTY_LOG', ErrorCodes.KVM_UNUSABLE],
  ] as const;
  for (const [code, errno, syscall, expected] of cases) {
    test(`${code}${syscall ? ` from ${syscall}` : ''} -> ${expected}`, () => {
      const err = toDirtyLogError(nativeError(code, errno, syscall), '/dev/kvm');
      assert.equal(err.code, expected);
      assert.equal(err.details.code, code);
      assert.equal(err.details.devicePath, '/dev/kvm');
      assert.match(err.message, /^\/dev\/kvm dirty log: /);
    });
  }
});
