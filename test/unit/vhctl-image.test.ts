/** vhctl image: argument parsing (what each subcommand takes) and the list table's format. */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { age, humanBytes, renderImageTable, type WireImage } from '../../src/cli/image-commands';
import { parseCli } from '../../src/cli/vhctl';

const env = { VH_GRPC_SOCKET: '/tmp/x.sock' };
const parse = (argv: string[]): ReturnType<typeof parseCli> => parseCli(argv, env);

describe('vhctl image arguments', () => {
  it('parses each subcommand with its flags', () => {
    assert.deepEqual(parse(['image', 'list', '-o', 'json'])?.image?.sub, 'list');
    const p = parse(['image', 'pull', 'quay.io/containerdisks/fedora:40', '--policy', 'Always']);
    assert.equal(p?.image?.target, 'quay.io/containerdisks/fedora:40');
    assert.equal(p?.image?.policy, 'Always');
    const i = parse(['image', 'import', 'f.tar', '--tag', 'registry:5000/a:1', '--format', 'docker-archive', '--kernel-path', '/boot/vmlinuz']);
    assert.deepEqual(i?.image, { sub: 'import', target: 'f.tar', policy: '', tag: 'registry:5000/a:1', format: 'docker-archive', select: { diskPath: '', kernelPath: '/boot/vmlinuz', initrdPath: '' } });
    assert.equal(parse(['image', 'import', 'f.tar'])?.image?.tag, '', '--tag is optional (stored by digest)');
    assert.equal(parse(['image', 'rm', 'sha256:' + 'a'.repeat(64)])?.image?.target, 'sha256:' + 'a'.repeat(64));
    assert.equal(parse(['image', 'gc'])?.image?.sub, 'gc');
  });

  it('refuses what a subcommand does not take, naming it', () => {
    const bad: Array<[string[], RegExp]> = [
      [['image'], /image: missing subcommand \(list, pull, import, rm, gc\)/],
      [['image', 'push'], /unknown subcommand 'push'/],
      [['image', 'pull'], /image pull: missing REF/],
      [['image', 'rm'], /image rm: missing REF\|DIGEST/],
      [['image', 'gc', 'x'], /unexpected argument 'x'/],
      [['image', 'list', '--policy', 'Always'], /option --policy is not valid for 'image list'/],
      [['image', 'pull', 'a:1', '--tag', 'b'], /option --tag is not valid for 'image pull'/],
      [['image', 'pull', 'a:1', '--policy', 'Sometimes'], /--policy: expected Always, IfNotPresent, Never/],
      [['image', 'import', 'f', '--format', 'tarball'], /--format: expected oci-archive or docker-archive/],
      [['image', 'import', 'f', '--kernel-path', 'boot/../x'], /--kernel-path: expected an absolute path inside the image without '\.\.'/],
      [['image', 'pull', 'a:1', '--disk-path', '/d', '--kernel-path', '/k'], /--disk-path excludes/],
      [['image', 'list', '-o', 'yaml'], /-o\/--output: expected table or json/],
      [['list', '--policy', 'Always'], /option --policy is not valid for 'list'/],
    ];
    for (const [argv, re] of bad) assert.throws(() => parse(argv), re, argv.join(' '));
  });
});

describe('vhctl image list table', () => {
  const now = Date.parse('2026-12-06T12:00:00Z');
  const img = (o: Partial<WireImage>): WireImage => ({
    digest: 'sha256:0123456789abcdef' + '0'.repeat(48), references: [], pulledAs: '', pulledAt: '2026-12-06T11:00:00Z', lastUsed: '', sizeBytes: 0, allocatedBytes: 0, inUseBy: [], artifacts: ['disk'], ...o,
  });

  it('one row per reference, short digest, human size, the VMIs, kubectl-style age', () => {
    const out = renderImageTable([
      img({ references: ['quay.io/containerdisks/fedora:40', 'quay.io/containerdisks/fedora:latest'], sizeBytes: 512 * 2 ** 20, inUseBy: ['default/a', 'ns/b'] }),
      img({ digest: 'sha256:ffffffffffff' + '1'.repeat(52), pulledAs: 'archive:x.tar', sizeBytes: 3 * 2 ** 30 + 2 ** 29, pulledAt: '2026-12-03T12:00:00Z' }),
    ], now);
    assert.equal(out, [
      'REFERENCE                             DIGEST        SIZE     IN-USE          AGE',
      'quay.io/containerdisks/fedora:40      0123456789ab  512 MiB  default/a,ns/b  60m',
      'quay.io/containerdisks/fedora:latest  0123456789ab  512 MiB  default/a,ns/b  60m',
      '<none> (archive:x.tar)                ffffffffffff  3.5 GiB  -               3d',
      '',
    ].join('\n'));
  });

  it('sizes and ages at their boundaries', () => {
    assert.deepEqual([0, 1023, 1024, 1536, 2 ** 20, 2 ** 40].map(humanBytes), ['0 B', '1023 B', '1 KiB', '1.5 KiB', '1 MiB', '1 TiB']);
    const t = (s: number): string => age(new Date(now - s * 1000).toISOString(), now);
    assert.deepEqual([0, 119, 120, 7199, 7200, 172799, 172800].map(t), ['0s', '119s', '2m', '119m', '2h', '47h', '2d']);
    assert.equal(age('', now), '-');
  });
});
