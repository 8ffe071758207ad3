/**
 * vhctl's DataVolume forms: `get dv [NAME]`, `delete dv NAME`, `upload dv NAME --image-path FILE`
 * parse strictly (names are DNS-1123 subdomains, flags checked per form), and the table.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { UsageError } from '../../src/cli/common';
import { age, renderDataVolumeTable, type WireDataVolume } from '../../src/cli/datavolume-commands';
import { parseCli } from '../../src/cli/vhctl';

const ENV = { VH_GRPC_SOCKET: '/tmp/x.sock' };
const parse = (...argv: string[]): ReturnType<typeof parseCli> => parseCli(argv, ENV);
const usage = (re: RegExp, ...argv: string[]): void => assert.throws(() => parse(...argv), (e) => e instanceof UsageError && re.test(e.message));

test('get/delete/upload dv parse; VMI forms unchanged', () => {
  assert.deepEqual([parse('get', 'dv')?.resource, parse('get', 'dv')?.name], ['dv', '']);
  const g = parse('get', 'datavolumes', 'fedora.root', '-n', 'vms', '-o', 'yaml')!;
  assert.deepEqual([g.resource, g.name, g.namespace, g.output], ['dv', 'fedora.root', 'vms', 'yaml']);
  assert.equal(parse('get', 'dv', '-A')?.allNamespaces, true);
  const u = parse('upload', 'dv', 'up', '--image-path', '/tmp/disk.img')!;
  assert.deepEqual([u.command, u.resource, u.name, u.imagePath], ['upload', 'dv', 'up', '/tmp/disk.img']);
  assert.deepEqual([parse('delete', 'dv', 'a')?.resource, parse('delete', 'dv', 'a')?.name], ['dv', 'a']);
  assert.deepEqual([parse('get', 'myvm')?.resource, parse('get', 'myvm')?.name], ['vmi', 'myvm']);
  usage(/^delete: missing NAME \(the DataVolume's name\)$/, 'delete', 'dv');
  usage(/^upload dv: --image-path FILE is required$/, 'upload', 'dv', 'x');
  usage(/^upload: expected 'upload dv NAME --image-path FILE'$/, 'upload', 'x');
  usage(/^option -o\/--output is not valid for 'delete dv'$/, 'delete', 'dv', 'x', '-o', 'json');
  usage(/^option --image-path is not valid for 'get dv'$/, 'get', 'dv', '--image-path', 'f');
  usage(/^-o\/--output: expected table or json or yaml for 'get', got 'wide'$/, 'get', 'dv', '-o', 'wide');
  usage(/^NAME: expected a DNS-1123 subdomain/, 'get', 'dv', '../etc');
  usage(/^unexpected argument 'b'$/, 'get', 'dv', 'a', 'b');
});

test('the table: NAME PHASE PROGRESS RESTARTS AGE (NAMESPACE first with -A)', () => {
  const now = Date.now();
  const dv = (name: string, phase: string, progress: string, restarts: number, ageS: number): WireDataVolume => ({
    uid: 'u', namespace: 'ns', name, specJson: '{}', createdAt: new Date(now - ageS * 1000).toISOString(), deleting: false, events: [],
    status: { phase, progress, restartCount: restarts, claimName: name, conditions: [] },
  });
  assert.equal(renderDataVolumeTable([dv('fedora', 'ImportInProgress', '45.00%', 1, 30), dv('b', 'Succeeded', '100.00%', 0, 7200)], false),
    'NAME    PHASE             PROGRESS  RESTARTS  AGE\nfedora  ImportInProgress  45.00%    1         30s\nb       Succeeded         100.00%   0         2h\n');
  assert.equal(renderDataVolumeTable([dv('x', 'Pending', 'N/A', 0, 5)], true), 'NAMESPACE  NAME  PHASE    PROGRESS  RESTARTS  AGE\nns         x     Pending  N/A       0         5s\n');
  assert.equal(age(new Date(now - 3 * 86400_000).toISOString(), now), '3d');
  assert.equal(age('garbage', now), '-');
});
