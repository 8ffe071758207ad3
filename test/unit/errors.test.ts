/**
 * The shared error helpers of src/errors: the message of anything thrown, and errno facts.
 * The error registry's users test their own mappings (kvm-*, libvirt-*, http, grpc).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ErrorCodes, VhError, errnoFacts, errorFirstLine, errorMessage } from '../../src/errors';

test('errorMessage: an Error or error-like object gives its message, anything else String()', () => {
  assert.equal(errorMessage(new Error('boom')), 'boom');
  assert.equal(errorMessage(new VhError(ErrorCodes.INTERNAL, 'typed')), 'typed');
  assert.equal(errorMessage({ message: 'like an error' }), 'like an error');
  assert.equal(errorMessage({ message: 42 }), '[object Object]');
  assert.equal(errorMessage('plain'), 'plain');
  assert.equal(errorMessage(undefined), 'undefined');
  assert.equal(errorMessage(null), 'null');
});

test('errorFirstLine: only the first line (dlopen and require failures add a stack-like tail)', () => {
  assert.equal(errorFirstLine(new Error('libvirt.so.0: cannot open shared object file\nRequire stack:\n- x.js')), 'libvirt.so.0: cannot open shared object file');
  assert.equal(errorFirstLine(''), '');
});

test('errnoFacts: code, errno, syscall and path when present; null without a string code', () => {
  const e = Object.assign(new Error('x'), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/dev/kvm' });
  assert.deepEqual(errnoFacts(e), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/dev/kvm' });
  assert.deepEqual(errnoFacts({ code: 'EACCES' }), { code: 'EACCES' });
  assert.equal(errnoFacts(new Error('no code')), null);
  assert.equal(errnoFacts({ code: 13 }), null);
  assert.equal(errnoFacts('ENOENT'), null);
});
