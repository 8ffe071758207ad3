/**
 * The controller applies KubeVirt's defaulting before validation, stores and shows the defaulted
 * VMI, and keeps a VMI whose fields this node cannot honour Pending (Schedulable=False,
 * Unschedulable) naming what the node lacks, never starting a launcher for it.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { VmiController } from '../../src/vmi/control/controller';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-vmi-req-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
const IMAGES = path.join(TMP, 'images');
fs.mkdirSync(IMAGES, { recursive: true });
fs.writeFileSync(path.join(IMAGES, 'vmlinuz'), 'kernel');

function controller(labels: Record<string, string>): VmiController {
  return new VmiController({
    stateDir: path.join(TMP, 'state'), nodeName: 'node-a', handlerSocket: path.join(TMP, 'g.sock'), logger: pino({ level: 'silent' }), logLevel: 'warn',
    validation: { imageRoot: IMAGES, hostPathRoots: [] }, nodeLabels: () => labels, allowTcg: true, maxVmis: 10, bridge: null, workers: 2,
    libvirtUri: null, embedFallback: false, libvirt: () => null, capabilities: () => null, nodeInfo: () => null,
  });
}

const vmi = (name: string, spec: Record<string, unknown>): string =>
  JSON.stringify({ apiVersion: 'kubevirt.io/v1', kind: 'VirtualMachineInstance', metadata: { name, namespace: 'default' }, spec });

test('defaulted before validation: machine type "" becomes q35, the default pod interface appears; a re-sync of the same text changes nothing', async () => {
  const c = controller({ 'kubernetes.io/arch': 'amd64' });
  c.start();
  try {
    const text = vmi('plain', { domain: { machine: { type: '' }, memory: { guest: '64Mi' }, devices: {}, firmware: { kernelBoot: { kernel: 'vmlinuz' } } }, runStrategy: 'Halted' });
    const { vmi: view, changed } = c.sync(text);
    assert.equal(changed, true);
    const spec = view.manifest.spec as { domain: { machine: { type: string }; devices: { interfaces?: Array<{ name: string; masquerade?: unknown }> } }; networks?: Array<{ name: string; pod?: unknown }> };
    assert.equal(spec.domain.machine.type, 'q35');
    assert.deepEqual(spec.domain.devices.interfaces?.map((i) => [i.name, 'masquerade' in i]), [['default', true]]);
    assert.deepEqual(spec.networks?.map((n) => [n.name, 'pod' in n]), [['default', true]]);
    assert.equal(c.sync(text).changed, false, 'the same manifest again is a no-op');
  } finally {
    await c.stop();
  }
});

test('a GPU and a nodeSelector this node does not match: accepted, Pending, Unschedulable naming both, no launcher', async () => {
  const c = controller({ 'kubernetes.io/arch': 'amd64' });
  c.start();
  try {
    const text = vmi('gpu', {
      nodeSelector: { 'example.com/zone': 'east' },
      domain: { memory: { guest: '64Mi' }, firmware: { kernelBoot: { kernel: 'vmlinuz' } }, devices: { gpus: [{ name: 'gpu1', deviceName: 'nvidia.com/GP102GL_Tesla_P40' }] } },
    });
    c.sync(text);
    await c.idle();
    const view = c.get('default', 'gpu');
    assert.ok(view);
    assert.equal(view.status.phase, 'Pending');
    assert.equal(view.status.launcherPid, null);
    const cond = view.status.conditions.find((x) => x.type === 'Schedulable');
    assert.equal(cond?.status, 'False');
    assert.equal(cond?.reason, 'Unschedulable');
    assert.match(cond?.message ?? '', /spec\.domain\.devices\.gpus\[0\]: .*nvidia\.com\/GP102GL_Tesla_P40/);
    assert.match(cond?.message ?? '', /spec\.nodeSelector/);
    assert.match(view.status.reason, /this node cannot run it/);
  } finally {
    await c.stop();
  }
});
