/**
 * The real vhctl (dist/src/cli/vhctl.js, as a child process) against a fake
 * virthandler.v1.VmiService on a temp unix socket: output, exit codes, error messages.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import { ESCAPE_BYTE, enterRaw, scanEscape } from '../../src/cli/console';
import { loadProtos } from '../../src/grpc/proto';
import { VHCTL_SCRIPT, type VhctlResult, runVhctl } from '../lib/vhctl';

function vhctl(args: string[], input?: string | Buffer): Promise<VhctlResult> {
  return runVhctl(args, input !== undefined ? { input } : {});
}

type WireVmi = Record<string, unknown> & { uid: string; namespace: string; name: string; status: Record<string, unknown>; deleting: boolean; revision: number };

function vmi(namespace: string, name: string, phase: string, over: Partial<WireVmi> = {}): WireVmi {
  return {
    uid: `uid-${name}`, namespace, name, generation: 1, revision: 5, deleting: false,
    specJson: JSON.stringify({ domain: { cpu: { cores: 2 } }, runStrategy: 'Always' }),
    status: {
      phase, reason: phase === 'Running' ? '' : 'waiting for the launcher', conditions: [], nodeName: 'node-a',
      launcherPid: phase === 'Running' ? 4242 : 0, interfaces: [{ name: 'default', mac: '52:54:00:00:00:01', ipAddress: phase === 'Running' ? '10.0.2.2' : '' }],
      domainState: phase === 'Running' ? 'running/booted' : '',
    },
    ...over,
  };
}

/** The fake daemon: canned VMIs and a record of what was asked. */
class FakeVmiService {
  readonly server = new grpc.Server();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhctl-vmi-'));
  readonly socketPath = path.join(this.dir, 'grpc.sock');
  readonly calls: string[] = [];
  vmis = new Map<string, WireVmi>();

  reset(): void {
    this.calls.length = 0;
    this.vmis = new Map([
      ['default/testvm', vmi('default', 'testvm', 'Running')],
      ['default/pending', vmi('default', 'pending', 'Pending')],
      ['prod/web', vmi('prod', 'web', 'Running', { revision: 9 })],
    ]);
  }

  private find(ref: { namespace: string; name: string }): WireVmi | undefined {
    return this.vmis.get(`${ref.namespace}/${ref.name}`);
  }

  private notFound(ref: { namespace: string; name: string }): grpc.ServiceError {
    return Object.assign(new Error('nf'), { code: grpc.status.NOT_FOUND, details: `VMI ${ref.namespace}/${ref.name} not found`, metadata: new grpc.Metadata() });
  }

  async start(): Promise<void> {
    this.reset();
    const protos = loadProtos();
    const Violations = protos.messageType('virthandler.v1.FieldViolations');
    type Cb = grpc.sendUnaryData<unknown>;
    const action = (name: string, domainState: string) => (call: grpc.ServerUnaryCall<{ namespace: string; name: string }, unknown>, cb: Cb): void => {
      this.calls.push(`${name} ${call.request.namespace}/${call.request.name}`);
      const v = this.find(call.request);
      if (!v) return cb(this.notFound(call.request));
      if (v.status.phase !== 'Running') {
        return cb(Object.assign(new Error('fp'), { code: grpc.status.FAILED_PRECONDITION, details: `VMI is ${String(v.status.phase)}, not Running`, metadata: new grpc.Metadata() }));
      }
      cb(null, { ...v, status: { ...v.status, domainState } });
    };
    this.server.addService(protos.vmiService, {
      SyncVMI: (call: grpc.ServerUnaryCall<{ manifest: string }, unknown>, cb: Cb) => {
        this.calls.push(`SyncVMI ${call.request.manifest.length}`);
        const m = parseYaml(call.request.manifest) as { metadata?: { name?: string; namespace?: string } };
        if (!m?.metadata?.name || call.request.manifest.includes('bogus')) {
          const violations = [
            { field: 'metadata.name', message: 'required' },
            { field: 'spec.domain.devices.disks[1].name', message: 'no volume named "data"' },
          ];
          const md = new grpc.Metadata();
          md.set('vh-field-violations-bin', Buffer.from(Violations.encode(Violations.fromObject({ violations })).finish()));
          return cb(Object.assign(new Error('bad'), { code: grpc.status.INVALID_ARGUMENT, details: 'manifest invalid: 2 violations', metadata: md }));
        }
        const v = vmi(m.metadata.namespace ?? 'default', m.metadata.name, 'Pending', { uid: 'uid-created' });
        cb(null, { vmi: v, changed: true });
      },
      GetVMI: (call: grpc.ServerUnaryCall<{ namespace: string; name: string }, unknown>, cb: Cb) => {
        this.calls.push(`GetVMI ${call.request.namespace}/${call.request.name}`);
        const v = this.find(call.request);
        return v ? cb(null, v) : cb(this.notFound(call.request));
      },
      ListVMIs: (call: grpc.ServerUnaryCall<{ namespace: string }, unknown>, cb: Cb) => {
        this.calls.push(`ListVMIs ${call.request.namespace || '*'}`);
        cb(null, { vmis: [...this.vmis.values()].filter((v) => !call.request.namespace || v.namespace === call.request.namespace), revision: 10 });
      },
      DeleteVMI: (call: grpc.ServerUnaryCall<{ namespace: string; name: string }, unknown>, cb: Cb) => {
        this.calls.push(`DeleteVMI ${call.request.namespace}/${call.request.name}`);
        const v = this.find(call.request);
        if (!v) return cb(this.notFound(call.request));
        v.deleting = true;
        cb(null, { vmi: v });
      },
      WatchVMIs: (call: grpc.ServerWritableStream<{ sinceRevision: number; namespace: string }, unknown>) => {
        this.calls.push(`WatchVMIs ${call.request.sinceRevision} ${call.request.namespace}`);
        // Unrelated and intermediate events first; DELETED only later. The stream stays open.
        const deleting = [...this.vmis.values()].filter((v) => v.deleting);
        call.write({ type: 'MODIFIED', vmi: vmi('default', 'other', 'Running'), revision: 11 });
        for (const v of deleting) call.write({ type: 'MODIFIED', vmi: { ...v, status: { ...v.status, phase: 'Succeeded' } }, revision: 12 });
        setTimeout(() => {
          for (const v of deleting.filter((d) => d.name !== 'stuck')) {
            this.vmis.delete(`${v.namespace}/${v.name}`);
            call.write({ type: 'DELETED', vmi: v, revision: 13 });
          }
        }, 100);
      },
      Pause: action('Pause', 'paused/user'),
      Unpause: action('Unpause', 'running/unpaused'),
      SoftReboot: action('SoftReboot', 'running/booted'),
      Shutdown: action('Shutdown', 'shutdown/user'),
      Console: (call: grpc.ServerDuplexStream<{ ref: { namespace: string; name: string } | null; data: Buffer }, unknown>) => {
        let first = true;
        let refName = '';
        call.on('data', (msg: { ref: { namespace: string; name: string } | null; data: Buffer }) => {
          if (first) {
            first = false;
            const ref = msg.ref ?? { namespace: '', name: '' };
            refName = ref.name;
            this.calls.push(`Console ${ref.namespace}/${ref.name}`);
            if (!this.find(ref)) return call.emit('error', this.notFound(ref));
            call.write({ data: Buffer.from('login: ') });
          }
          if (msg.data?.length) call.write({ data: Buffer.from(msg.data.toString('utf8').toUpperCase()) });
        });
        // 'endless' behaves like a real serial console: it never ends the stream by itself.
        call.on('end', () => refName !== 'endless' && call.end());
      },
    });
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('vhctl VMI commands against a fake VmiService', () => {
  const fake = new FakeVmiService();
  let sock: string[];
  before(async () => {
    await fake.start();
    sock = ['--socket', fake.socketPath];
  });
  after(() => fake.close());

  it('create -f FILE: prints name, uid and phase', async () => {
    fake.reset();
    const file = path.join(fake.dir, 'vmi.yaml');
    fs.writeFileSync(file, 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: newvm\nspec:\n  domain: {}\n');
    const r = await vhctl(['create', '-f', file, ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^vmi default\/newvm configured$/m);
    assert.match(r.stdout, /^NAME\s+UID\s+PHASE$/m);
    assert.match(r.stdout, /^newvm\s+uid-created\s+Pending$/m);
    assert.deepEqual(fake.calls, [`SyncVMI ${fs.readFileSync(file, 'utf8').length}`]);
  });

  it('create -f - reads the manifest from stdin; -o json', async () => {
    const r = await vhctl(['create', '-f', '-', '-o', 'json', ...sock], JSON.stringify({ metadata: { name: 'fromstdin', namespace: 'prod' }, spec: { domain: {} } }));
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { changed: boolean; vmi: { metadata: { name: string; namespace: string; uid: string } } };
    assert.equal(out.changed, true);
    assert.deepEqual([out.vmi.metadata.namespace, out.vmi.metadata.name, out.vmi.metadata.uid], ['prod', 'fromstdin', 'uid-created']);
  });

  it('create with violations: exit 1, one "  <field>: <message>" line each', async () => {
    const r = await vhctl(['create', '-f', '-', ...sock], 'metadata: {}\nspec: {}\n');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, [
      'vhctl: manifest rejected by virt-handler (2 violations):',
      '  metadata.name: required',
      '  spec.domain.devices.disks[1].name: no volume named "data"',
      '',
    ].join('\n'));
  });

  it('create: unreadable or empty file is exit 1 before any call', async () => {
    fake.reset();
    let r = await vhctl(['create', '-f', path.join(fake.dir, 'absent.yaml'), ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read .*absent\.yaml: no such file/);
    r = await vhctl(['create', '-f', '-', ...sock], '  \n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /manifest on stdin is empty/);
    assert.deepEqual(fake.calls, []);
  });

  it('get -o json / -o yaml: the VMI with its spec parsed', async () => {
    fake.reset();
    let r = await vhctl(['get', 'testvm', '-o', 'json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    const obj = JSON.parse(r.stdout) as { kind: string; metadata: Record<string, unknown>; spec: unknown; status: Record<string, unknown> };
    assert.equal(obj.kind, 'VirtualMachineInstance');
    assert.deepEqual(obj.metadata, { name: 'testvm', namespace: 'default', uid: 'uid-testvm', generation: 1, revision: 5, deleting: false });
    assert.deepEqual(obj.spec, { domain: { cpu: { cores: 2 } }, runStrategy: 'Always' });
    assert.equal(obj.status.launcherPid, 4242);
    r = await vhctl(['get', 'web', '-n', 'prod', '-o', 'yaml', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parseYaml(r.stdout), JSON.parse(JSON.stringify({ ...obj, metadata: { ...obj.metadata, name: 'web', namespace: 'prod', uid: 'uid-web', revision: 9 } })));
    assert.deepEqual(fake.calls, ['GetVMI default/testvm', 'GetVMI prod/web']);
  });

  it('get (table and wide)', async () => {
    let r = await vhctl(['get', 'testvm', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NAMESPACE\s+NAME\s+PHASE\s+REASON\s+LAUNCHER\s+REVISION$/m);
    assert.match(r.stdout, /^default\s+testvm\s+Running\s+-\s+4242\s+5$/m);
    r = await vhctl(['get', 'testvm', '-o', 'wide', ...sock]);
    assert.match(r.stdout, /^default\s+testvm\s+Running\s+-\s+4242\s+5\s+uid-testvm\s+1\s+node-a\s+running\/booted\s+10\.0\.2\.2$/m);
  });

  it('get of an unknown VMI: exit 1, "vmi <ns>/<name> not found"', async () => {
    const r = await vhctl(['get', 'ghost', '-n', 'prod', ...sock]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'vhctl: vmi prod/ghost not found\n');
  });

  it('list: table of the namespace; -A every namespace; -o json', async () => {
    fake.reset();
    let r = await vhctl(['list', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAMESPACE\s+NAME\s+PHASE\s+REASON\s+LAUNCHER\s+REVISION$/);
    assert.match(lines[1]!, /^default\s+pending\s+Pending\s+waiting for the launcher\s+-\s+5$/);
    assert.match(lines[2]!, /^default\s+testvm\s+Running\s+-\s+4242\s+5$/);
    assert.equal(lines.length, 3);
    r = await vhctl(['list', '-A', ...sock]);
    assert.match(r.stdout, /^prod\s+web\s+Running/m);
    r = await vhctl(['list', '-n', 'prod', '-o', 'json', ...sock]);
    const out = JSON.parse(r.stdout) as { revision: number; items: Array<{ metadata: { name: string } }> };
    assert.equal(out.revision, 10);
    assert.deepEqual(out.items.map((i) => i.metadata.name), ['web']);
    r = await vhctl(['list', '-n', 'empty', ...sock]);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', 'No VMIs found in namespace empty.\n']);
    assert.deepEqual(fake.calls, ['ListVMIs default', 'ListVMIs *', 'ListVMIs prod', 'ListVMIs empty']);
  });

  it('delete: without --wait returns at once', async () => {
    fake.reset();
    const r = await vhctl(['delete', 'testvm', ...sock]);
    assert.deepEqual([r.code, r.stdout], [0, 'vmi default/testvm deleting\n'], r.stderr);
    assert.deepEqual(fake.calls, ['DeleteVMI default/testvm']);
  });

  it('delete --wait: watches from the pre-delete revision until DELETED', async () => {
    fake.reset();
    const r = await vhctl(['delete', 'testvm', '--wait', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'vmi default/testvm deleting\nvmi default/testvm deleted\n');
    assert.deepEqual(fake.calls, ['ListVMIs default', 'DeleteVMI default/testvm', 'WatchVMIs 10 default']);
  });

  it('delete --wait --timeout: exit 1 when DELETED does not come in time', async () => {
    fake.reset();
    fake.vmis.set('default/stuck', vmi('default', 'stuck', 'Running'));
    const r = await vhctl(['delete', 'stuck', '--wait', '--timeout', '1500ms', ...sock]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'vmi default/stuck deleting\n');
    assert.match(r.stderr, /timed out after 1500 ms waiting for vmi default\/stuck to be deleted/);
  });

  it('delete of an unknown VMI: not found', async () => {
    const r = await vhctl(['delete', 'ghost', ...sock]);
    assert.deepEqual([r.code, r.stderr], [1, 'vhctl: vmi default/ghost not found\n']);
  });

  it('pause / unpause / soft-reboot / shutdown', async () => {
    fake.reset();
    let r = await vhctl(['pause', 'testvm', ...sock]);
    assert.deepEqual([r.code, r.stdout], [0, 'vmi default/testvm paused (phase Running, domain paused/user)\n'], r.stderr);
    r = await vhctl(['unpause', 'web', '-n', 'prod', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^vmi prod\/web unpaused/);
    assert.equal((await vhctl(['soft-reboot', 'testvm', ...sock])).code, 0);
    assert.equal((await vhctl(['shutdown', 'testvm', ...sock])).code, 0);
    assert.deepEqual(fake.calls, ['Pause default/testvm', 'Unpause prod/web', 'SoftReboot default/testvm', 'Shutdown default/testvm']);
  });

  it('pause refused (FAILED_PRECONDITION) and unknown VMI: exit 1 with the reason', async () => {
    let r = await vhctl(['pause', 'pending', ...sock]);
    assert.deepEqual([r.code, r.stderr], [1, 'vhctl: cannot pause vmi default/pending: VMI is Pending, not Running (FAILED_PRECONDITION)\n']);
    r = await vhctl(['pause', 'ghost', ...sock]);
    assert.deepEqual([r.code, r.stderr], [1, 'vhctl: vmi default/ghost not found\n']);
  });

  it('console in pipe mode: stdin goes in, the echo comes out, exit 0 when the stream ends', async () => {
    fake.reset();
    const r = await vhctl(['console', 'testvm', ...sock], 'root\nuname -a\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'login: ROOT\nUNAME -A\n');
    assert.doesNotMatch(r.stderr, /Escape character/, 'no escape key without a terminal');
    assert.deepEqual(fake.calls, ['Console default/testvm']);
  });

  it('console in pipe mode passes 0x1d through (escape is a terminal feature)', async () => {
    const r = await vhctl(['console', 'testvm', ...sock], Buffer.from([0x61, ESCAPE_BYTE, 0x62]));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `login: A${String.fromCharCode(ESCAPE_BYTE)}B`);
  });

  it('console in pipe mode against a stream that never ends: exits once the output went quiet', async () => {
    fake.reset();
    fake.vmis.set('default/endless', vmi('default', 'endless', 'Running'));
    const t0 = Date.now();
    const r = await vhctl(['console', 'endless', ...sock], 'x');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'login: X');
    assert.ok(Date.now() - t0 < 15_000);
  });

  it('console --timeout ends a session that would not end by itself (exit 0, note on stderr)', async () => {
    fake.reset();
    fake.vmis.set('default/endless', vmi('default', 'endless', 'Running'));
    const child = spawn(process.execPath, [VHCTL_SCRIPT, 'console', 'endless', '--timeout', '1s', ...sock], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.write('y'); // stdin stays open: only --timeout can end this session
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stdout, 'login: Y');
    assert.match(stderr, /console closed after --timeout 1000 ms/);
  });

  it('console of an unknown VMI: exit 1, not found', async () => {
    const r = await vhctl(['console', 'ghost', ...sock], 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^vhctl: vmi default\/ghost not found$/m);
  });

  it('a daemon that is not running: exit 1 with the socket hint', async () => {
    const absent = path.join(fake.dir, 'absent.sock');
    for (const args of [['get', 'x'], ['list'], ['create', '-f', '-'], ['console', 'x']]) {
      const r = await vhctl([...args, '--socket', absent], 'metadata: {name: x}\n');
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(r.stderr, `vhctl: is virt-handler running? socket ${absent} not found (set --socket or VH_GRPC_SOCKET)\n`, args.join(' '));
    }
  });

  it('bad flags and arguments: exit 2 naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['get', 'testvm', '--bogus'], /unknown option '--bogus'/],
      [['get', 'testvm', '--wait'], /option --wait is not valid for 'get'/],
      [['list', '-f', 'x.yaml'], /option -f\/--file is not valid for 'list'/],
      [['create'], /-f\/--file FILE is required/],
      [['create', '-f', 'x', '-n', 'prod'], /option -n\/--namespace is not valid for 'create'/],
      [['get'], /get: missing NAME/],
      [['get', 'a', 'b'], /unexpected argument 'b'/],
      [['get', 'Bad_Name'], /NAME: expected a DNS-1123 label/],
      [['get', 'x', '-n', '../etc'], /-n\/--namespace: expected a DNS-1123 label/],
      [['list', '-A', '-n', 'prod'], /exclude each other/],
      [['list', '-o', 'xml'], /-o\/--output: expected table or wide or json or yaml for 'list', got 'xml'/],
      [['delete', 'x', '--timeout', 'soon'], /--timeout: expected a duration/],
      [['console'], /console: missing NAME/],
      [['get', 'x', '-n'], /option '-n' needs a value \(got another option instead\)/],
    ];
    for (const [args, want] of cases) {
      const r = await vhctl([...args, ...sock]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, want, args.join(' '));
      assert.match(r.stderr, /Run 'vhctl --help' for usage\./);
    }
    const r = await vhctl(['get', 'x', '-n']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /option '--namespace' needs a value/);
  });

  it('--help lists the VMI commands and the exit codes', async () => {
    const r = await vhctl(['--help']);
    assert.equal(r.code, 0);
    for (const cmd of ['create -f FILE', 'get NAME', 'list', 'delete NAME', 'pause NAME', 'unpause NAME', 'soft-reboot NAME', 'shutdown NAME', 'console NAME']) {
      assert.match(r.stdout, new RegExp(`^  ${cmd.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'), cmd);
    }
    assert.match(r.stdout, /^Exit codes:$/m);
    assert.match(r.stdout, /^ {2}2 {2}usage error/m);
  });
});

describe('console escape handling (pure)', () => {
  it('scanEscape forwards everything before Ctrl-] and detaches there', () => {
    assert.deepEqual(scanEscape(Buffer.from('ls -l\r')), { forward: Buffer.from('ls -l\r'), detach: false });
    assert.deepEqual(scanEscape(Buffer.from([0x61, 0x62, 0x1d, 0x63])), { forward: Buffer.from('ab'), detach: true });
    assert.deepEqual(scanEscape(Buffer.from([0x1d])), { forward: Buffer.alloc(0), detach: true });
    assert.deepEqual(scanEscape(Buffer.alloc(0)), { forward: Buffer.alloc(0), detach: false });
    // Ctrl-C and other control bytes are the guest's, not ours.
    assert.deepEqual(scanEscape(Buffer.from([0x03, 0x04, 0x1b])), { forward: Buffer.from([0x03, 0x04, 0x1b]), detach: false });
    // A chunk that is a view into a larger buffer is scanned within its bounds only.
    const big = Buffer.from([0x1d, 0x41, 0x42, 0x1d]);
    assert.deepEqual(scanEscape(big.subarray(1, 3)), { forward: Buffer.from('AB'), detach: false });
    assert.deepEqual(scanEscape(Buffer.from('a^]b'), 0x5e), { forward: Buffer.from('a'), detach: true });
  });

  it('enterRaw sets raw mode on a TTY and restores it exactly once; a pipe is left alone', () => {
    const modes: boolean[] = [];
    const restore = enterRaw({ isTTY: true, setRawMode: (m: boolean) => modes.push(m) });
    assert.deepEqual(modes, [true]);
    restore();
    restore();
    assert.deepEqual(modes, [true, false]);
    const pipeModes: boolean[] = [];
    enterRaw({ isTTY: false, setRawMode: (m: boolean) => pipeModes.push(m) })();
    assert.deepEqual(pipeModes, []);
    // A terminal gone away (hangup) must not make the restore throw.
    const gone = enterRaw({ isTTY: true, setRawMode: (m: boolean) => { if (!m) throw new Error('EIO'); } });
    assert.doesNotThrow(gone);
  });
});
