/**
 * kernelBoot.container on the real libvirtd (QEMU TCG): the tiny guest's kernel and initramfs
 * pushed as an image to a loopback registry (Debian's docker-registry), a VMI naming it with
 * kernelPath/initrdPath; the daemon pulls it into the image store (0700, root-owned; QEMU runs
 * as root here) and the guest boots from the store's read-only files to its console marker.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HandlerUnderTest, type VmiView } from '../lib/daemon';
import { buildImage, push } from '../images/oci-build';
import { TestRegistry } from '../images/registry';
import { type LibvirtTestEnv, testEnv, waitFor } from './guest';

const NS = 'kbimg';

describe('kernelBoot.container boots the tiny guest from the image store', { timeout: 600_000 }, () => {
  let env: LibvirtTestEnv;
  let tmp: string;
  let reg: TestRegistry;
  let h: HandlerUnderTest;
  let digest = '';

  before(async () => {
    env = testEnv();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-kbimg-'));
    fs.mkdirSync(path.join(tmp, 'images'));
    reg = await TestRegistry.start(tmp);
    const layout = path.join(tmp, 'layout');
    digest = (await buildImage(layout, 'boot', [[{ name: 'boot', type: 'directory' }, { name: 'boot/vmlinuz', file: env.kernel }, { name: 'boot/initramfs', file: env.initrd }]])).manifest.digest;
    await push(layout, 'boot', `${reg.host}/tiny/boot:1`);
    h = await HandlerUnderTest.start({ tmp, libvirtUri: env.uri, nodeName: 'kbimg-node', waitLibvirt: true, env: { VH_IMAGES_INSECURE_REGISTRIES: reg.host } });
  });

  after(async () => {
    await h?.killLeftovers();
    await h?.stop().catch(() => undefined);
    await reg?.stop();
    if (process.env.VHTEST_KEEP) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('pulls the image, boots to the marker, deletes cleanly', async () => {
    const t0 = Date.now();
    const image = `${reg.host}/tiny/boot:1`;
    const manifest = {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: { name: 'tiny', namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 3,
        domain: {
          memory: { guest: '128Mi' },
          machine: { type: 'pc' },
          firmware: { kernelBoot: { kernelArgs: 'panic=-1', container: { image, kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initramfs' } } },
          devices: { autoattachSerialConsole: true },
        },
      },
    };
    const created = await h.call<{ vmi: VmiView }>('SyncVMI', { manifest: JSON.stringify(manifest) });
    await h.waitPhase(NS, 'tiny', ['Running'], 120_000);
    const vmiDir = path.join(h.stateDir, 'vmis', created.vmi.uid);
    await waitFor(() => fs.existsSync(path.join(vmiDir, 'serial.log')) && fs.readFileSync(path.join(vmiDir, 'serial.log'), 'utf8').includes('VH-GUEST-READY'), 120_000, 'guest marker in serial.log');
    const toMarker = Date.now() - t0;
    const view = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/tiny`)).body) as { domainXml: string };
    const storeDir = path.join(h.stateDir, 'image-store', 'sha256', digest.slice(7));
    assert.ok(view.domainXml.includes(`<kernel>${storeDir}/boot-`), view.domainXml);
    const ev = JSON.parse((await h.http('GET', `/v1/vmis/${NS}/tiny/events`)).body) as { items: Array<{ reason: string; message: string }> };
    assert.ok(ev.items.some((e) => e.reason === 'Pulled' && e.message.startsWith(`Successfully pulled image "${image}" (${digest}`)), JSON.stringify(ev.items));
    await h.call('DeleteVMI', { namespace: NS, name: 'tiny' });
    await waitFor(async () => ((await h.call<{ vmis?: VmiView[] }>('ListVMIs', { namespace: NS })).vmis ?? []).length === 0, 60_000, 'VMI removed');
    assert.ok(fs.existsSync(storeDir), 'the image stays in the store (GC collects it later)');
    console.log(`kernelBoot.container: SyncVMI -> guest marker ${toMarker} ms (pull included)`);
  });
});
