/**
 * `vhctl create` with VirtualMachines, instancetypes, preferences, multi-document files and
 * --dry-run: the real vhctl (dist/src/cli/vhctl.js) against a fake VmiService that records
 * every manifest it is sent.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadProtos } from '../../src/grpc/proto';
import { type VhctlResult, runVhctl } from '../lib/vhctl';

function vhctl(args: string[], env: Record<string, string>, input?: string): Promise<VhctlResult> {
  return runVhctl(args, { env, ...(input !== undefined ? { input } : {}) });
}

/** A VmiService that keeps every manifest; one containing "bogus" is refused with two violations. */
class RecordingVmiService {
  readonly server = new grpc.Server();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhctl-vm-'));
  readonly socketPath = path.join(this.dir, 'grpc.sock');
  manifests: string[] = [];

  async start(): Promise<void> {
    const protos = loadProtos();
    const Violations = protos.messageType('virthandler.v1.FieldViolations');
    const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<unknown>): void => cb({ code: grpc.status.UNIMPLEMENTED, details: 'no', metadata: new grpc.Metadata() } as grpc.ServiceError);
    this.server.addService(protos.vmiService, {
      SyncVMI: (call: grpc.ServerUnaryCall<{ manifest: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        this.manifests.push(call.request.manifest);
        const m = parseYaml(call.request.manifest) as { metadata: { name: string; namespace?: string } };
        if (call.request.manifest.includes('bogus')) {
          const violations = [{ field: 'spec.domain.cpu.cores', message: 'must be an integer' }, { field: 'spec.volumes[0].name', message: 'bogus' }];
          const md = new grpc.Metadata();
          md.set('vh-field-violations-bin', Buffer.from(Violations.encode(Violations.fromObject({ violations })).finish()));
          return cb(Object.assign(new Error('bad'), { code: grpc.status.INVALID_ARGUMENT, details: 'manifest invalid: 2 violations', metadata: md }));
        }
        const ns = m.metadata.namespace ?? 'default';
        cb(null, { changed: true, vmi: { uid: `uid-${m.metadata.name}`, namespace: ns, name: m.metadata.name, generation: 1, revision: 1, deleting: false, specJson: '{}', status: { phase: 'Pending', reason: '', conditions: [], nodeName: 'n', launcherPid: 0, interfaces: [], domainState: '' } } });
      },
      GetVMI: unimplemented, ListVMIs: unimplemented, DeleteVMI: unimplemented, WatchVMIs: unimplemented, Pause: unimplemented,
      Unpause: unimplemented, SoftReboot: unimplemented, Shutdown: unimplemented, Console: unimplemented,
    });
    await new Promise<void>((resolve, reject) => this.server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    this.server.forceShutdown();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const CSMALL = `apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineInstancetype
metadata:
  name: csmall
spec:
  cpu:
    guest: 2
  memory:
    guest: 128Mi
`;

const PREF = `apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterPreference
metadata:
  name: cores
spec:
  cpu:
    preferredCPUTopology: cores
  devices:
    preferredDiskBus: virtio
`;

function vmYaml(name: string, spec: string): string {
  return `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: ${name}
spec:
${spec}
  template:
    metadata:
      labels:
        kubevirt.io/vm: ${name}
    spec:
      domain:
        devices:
          disks:
          - name: cloudinit
          interfaces: []
      volumes:
      - name: cloudinit
        cloudInitNoCloud:
          userData: "#cloud-config\\npassword: hunter2\\n"
`;
}

const VMI = 'apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: plain\nspec:\n  domain: {}\n';
const POOL = 'apiVersion: pool.kubevirt.io/v1alpha1\nkind: VirtualMachinePool\nmetadata:\n  name: vm-pool-cirros\nspec: {}\n';

describe('vhctl create: VirtualMachines, instancetypes, multi-document files', () => {
  const fake = new RecordingVmiService();
  let cache: string;
  let env: Record<string, string>;
  let sock: string[];
  const write = (name: string, text: string): string => {
    const file = path.join(fake.dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  before(() => fake.start());
  after(() => fake.close());
  beforeEach(() => {
    fake.manifests = [];
    cache = fs.mkdtempSync(path.join(fake.dir, 'cache-'));
    env = { XDG_CACHE_HOME: cache };
    sock = ['--socket', fake.socketPath];
  });

  it('a VMI, a VM and its instancetype (given after it) in one file: one line each, VM expanded, instancetype recorded', async () => {
    const file = write('all.yaml', `${VMI}---\n${vmYaml('vm-a', '  runStrategy: Always\n  instancetype:\n    kind: VirtualMachineInstancetype\n    name: csmall')}---\n${CSMALL}`);
    const r = await vhctl(['create', '-f', file, ...sock], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [
      'vmi default/plain configured',
      'virtualmachine default/vm-a: vmi default/vm-a configured (runStrategy Always, VirtualMachineInstancetype default/csmall)',
      'virtualmachineinstancetype default/csmall recorded',
      '',
    ].join('\n'));
    assert.equal(fake.manifests.length, 2);
    const sent = JSON.parse(fake.manifests[1]!) as { metadata: Record<string, any>; spec: Record<string, any> };
    assert.equal(sent.spec.runStrategy, 'Always');
    assert.deepEqual(sent.spec.domain.cpu, { sockets: 2, cores: 1, threads: 1 });
    assert.equal(sent.spec.domain.memory.guest, '128Mi');
    assert.equal(sent.metadata.annotations['virt-handler/owner'], 'VirtualMachine/vm-a');
    assert.ok(fs.existsSync(path.join(cache, 'virt-handler/instancetypes/VirtualMachineInstancetype/default/csmall.json')));
  });

  it('an instancetype or preference from an earlier create is remembered; without it the VM is refused naming it', async () => {
    const vm = write('vm.yaml', vmYaml('vm-b', '  running: false\n  instancetype:\n    kind: VirtualMachineInstancetype\n    name: csmall\n  preference:\n    name: cores'));
    let r = await vhctl(['create', '-f', vm, ...sock], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /spec\.instancetype\.name: VirtualMachineInstancetype default\/csmall not found/);
    assert.match(r.stderr, /spec\.preference\.name: VirtualMachineClusterPreference cores not found/);
    assert.deepEqual(fake.manifests, []);
    r = await vhctl(['create', '-f', write('it.yaml', `${CSMALL}---\n${PREF}`), ...sock], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'virtualmachineinstancetype default/csmall recorded\nvirtualmachineclusterpreference cores recorded\n');
    r = await vhctl(['create', '-f', vm, ...sock], env);
    assert.equal(r.code, 0, r.stderr);
    const sent = JSON.parse(fake.manifests[0]!) as { spec: Record<string, any> };
    assert.equal(sent.spec.runStrategy, 'Halted');
    assert.deepEqual(sent.spec.domain.cpu, { sockets: 1, cores: 2, threads: 1 });
    assert.deepEqual(sent.spec.domain.devices.disks, [{ name: 'cloudinit', disk: { bus: 'virtio' } }]);
  });

  it('several -f files in one call share their instancetypes', async () => {
    const r = await vhctl(['create', '-f', write('vm2.yaml', vmYaml('vm-c', '  instancetype:\n    kind: VirtualMachineInstancetype\n    name: csmall')), '-f', write('cs.yaml', CSMALL), ...sock], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^virtualmachine default\/vm-c: vmi default\/vm-c configured \(runStrategy Halted, VirtualMachineInstancetype default\/csmall\)$/m);
  });

  it('a pool beside a VM: the pool is refused as not node-level (exit 1), the VM still created', async () => {
    const r = await vhctl(['create', '-f', write('pool.yaml', `${vmYaml('vm-d', '  runStrategy: Always')}---\n${POOL}`), ...sock], env);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^virtualmachine default\/vm-d: vmi default\/vm-d configured \(runStrategy Always\)$/m);
    assert.equal(r.stderr, 'vhctl: document 2 (kind VirtualMachinePool "vm-pool-cirros"): not a node-level object: a cluster controller expands pools into VirtualMachines; give this node the VirtualMachine(s) instead\n');
  });

  it('the daemon\'s violations for an expanded VM are shown at their path in the VM', async () => {
    const r = await vhctl(['create', '-f', write('bogus.yaml', vmYaml('bogus', '  runStrategy: Always')), ...sock], env);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, [
      'vhctl: document 1 (kind VirtualMachine "bogus"): rejected by virt-handler (2 violations):',
      '  spec.template.spec.domain.cpu.cores: must be an integer',
      '  spec.template.spec.volumes[0].name: bogus',
      '',
    ].join('\n'));
  });

  it('running and runStrategy both set: refused before any call', async () => {
    const r = await vhctl(['create', '-f', write('both.yaml', vmYaml('both', '  running: true\n  runStrategy: Always')), ...sock], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /  spec\.running: running and runStrategy are mutually exclusive/);
    assert.deepEqual(fake.manifests, []);
  });

  it('a file that does not parse refuses the whole call: nothing sent, nothing recorded', async () => {
    const r = await vhctl(['create', '-f', write('ok.yaml', CSMALL), '-f', write('bad.yaml', 'a: [\n'), ...sock], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.yaml: cannot be read \(1 violation\):\n  manifest: line \d+, column \d+: invalid YAML/);
    assert.deepEqual(fake.manifests, []);
    assert.equal(fs.readdirSync(cache).length, 0);
  });

  it('--dry-run: no daemon, no cache write; prints each VMI as YAML with secrets redacted', async () => {
    const imageRoot = fs.mkdtempSync(path.join(fake.dir, 'images-'));
    const file = write('dry.yaml', `${CSMALL}---\n${vmYaml('vm-e', '  runStrategy: Always\n  instancetype:\n    kind: VirtualMachineInstancetype\n    name: csmall')}`);
    const r = await vhctl(['create', '--dry-run', '-f', file, '--socket', path.join(fake.dir, 'absent.sock')], { ...env, VH_VMI_IMAGE_ROOT: imageRoot });
    assert.equal(r.code, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).filter((d) => d !== null);
    assert.equal(docs.length, 1);
    assert.match(r.stdout, /^# document 1 \(kind VirtualMachineInstancetype "csmall"\): valid \(dry run: not recorded\)$/m);
    assert.equal(docs[0]!.kind, 'VirtualMachineInstance');
    assert.equal(docs[0]!.spec.runStrategy, 'Always');
    assert.equal(docs[0]!.spec.domain.machine.type, 'q35', 'KubeVirt\'s defaults applied (defaultVmi)');
    assert.match(docs[0]!.spec.volumes[0].cloudInitNoCloud.userData, /^<redacted: \d+ bytes, sha256:[0-9a-f]{64}>$/);
    assert.doesNotMatch(r.stdout, /hunter2/);
    assert.equal(fs.readdirSync(cache).length, 0);
  });

  it('--dry-run with two mistakes reports both, at their paths in the VM', async () => {
    const text = vmYaml('vm-f', '  runStrategy: Always').replace('        devices:\n', '        cpu:\n          cores: "two"\n        devices:\n').replace('      - name: cloudinit\n        cloudInitNoCloud', '      - name: cloudinit\n        wrongField: 1\n        cloudInitNoCloud');
    const r = await vhctl(['create', '--dry-run', '-f', '-', '--socket', path.join(fake.dir, 'absent.sock')], { ...env, VH_VMI_IMAGE_ROOT: fake.dir }, text);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^  spec\.template\.spec\.domain\.cpu\.cores: /m);
    assert.match(r.stderr, /^  spec\.template\.spec\.volumes\[0\]\.wrongField: /m);
  });

  it('-o json: one item per document; a one-item List is not passed on as written', async () => {
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name: 'listed' }, spec: { domain: {} } }] });
    let r = await vhctl(['create', '-f', '-', ...sock], env, list);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(fake.manifests[0]!), JSON.parse(list).items[0]);
    r = await vhctl(['create', '-o', 'json', '-f', write('two.yaml', `${VMI}---\n${POOL}`), ...sock], env);
    assert.equal(r.code, 1);
    const items = (JSON.parse(r.stdout) as { items: Array<Record<string, unknown>> }).items;
    assert.deepEqual(items.map((i) => [i.document, i.kind, i.name, i.result]), [[1, 'VirtualMachineInstance', 'plain', 'configured'], [2, 'VirtualMachinePool', 'vm-pool-cirros', 'refused']]);
  });

  it('usage: stdin twice is exit 2; --dry-run only for create', async () => {
    let r = await vhctl(['create', '-f', '-', '-f', '-', ...sock], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /stdin \(-\) can be read once/);
    r = await vhctl(['get', 'x', '--dry-run', ...sock], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /option --dry-run is not valid for 'get'/);
  });
});
