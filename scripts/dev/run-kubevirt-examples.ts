/**
 * Dev tool: KubeVirt's own example manifests, run on this node the way a KubeVirt user would.
 *
 *   git -C <kubevirt repo> archive HEAD examples | tar -x -C /tmp/kv
 *   bash scripts/dev/kubevirt-examples.sh /tmp/kv/examples [--only NAME-RE] [--timeout-s 120]
 *
 * (the wrapper starts the private test libvirtd and builds the tiny guest; this file expects the
 * VHTEST_* variables scripts/test-libvirt.sh exports). KubeVirt's files are not part of this
 * repository: this is not a test suite, it is the acceptance run whose table goes into notes.
 *
 * What it stands up, as a cluster would provide it:
 * - a registry (Debian's docker-registry on loopback) holding every `registry:5000/...` image the
 *   examples name, built here: container disks hold a 1 MiB raw disk whose boot sector prints
 *   KUBEVIRT-EXAMPLE-BOOTED on COM1 and halts; kernel-boot images hold the tiny guest's kernel and
 *   initrd at the paths the example names. The daemon rewrites `registry:5000` to it;
 * - every PersistentVolumeClaim an example names (the boot disk as `<claimRoot>/<ns>/<claim>/disk.img`),
 *   as a storage provisioner would;
 * - every ConfigMap and Secret an example names under the object root, with placeholder keys.
 *
 * Then, one file at a time: `vhctl create -f FILE`, and for each VMI created, poll until it is
 * Running (and, for container disks, its serial log shows the marker) or it waits (Pending with a
 * Schedulable=False condition or any reason unchanged for 20 s), then delete everything. Prints a
 * table and writes it as JSON beside the work directory.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { buildImage, push } from '../../test/images/oci-build';
import { TestRegistry } from '../../test/images/registry';
import { HandlerUnderTest, killEverything, makeRoot, sleep } from '../../test/lib/daemon';
import { runVhctl } from '../../test/lib/vhctl';

const execFileP = promisify(execFile);
type Obj = Record<string, unknown>;
const MARKER = 'KUBEVIRT-EXAMPLE-BOOTED';

/** 16-bit real-mode boot sector: print MARKER on COM1 (0x3f8), then cli; hlt forever. */
function bootSector(): Buffer {
  const code = [
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd8, // mov ds, ax
    0xfc, // cld
    0xbe, 0x17, 0x7c, // mov si, 0x7c17 (the message)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xac, // lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz +3
    0xee, // out dx, al
    0xeb, 0xf8, // jmp lodsb
    0xfa, // cli
    0xf4, // hlt
    0xeb, 0xfd, // jmp hlt
  ];
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector, 0);
  Buffer.from(`${MARKER}\r\n\0`, 'latin1').copy(sector, code.length);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

function asObj(v: unknown): Obj | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : null;
}

/** Every value under `key` anywhere in `v`. */
function collect(v: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(v)) for (const x of v) collect(x, key, out);
  else if (asObj(v)) {
    for (const [k, x] of Object.entries(v as Obj)) {
      if (k === key) out.push(x);
      collect(x, key, out);
    }
  }
  return out;
}

interface Outcome {
  file: string;
  object: string;
  result: string;
  detail: string;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dir = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
  const opt = (name: string): string | undefined => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
  if (dir === undefined) throw new Error('usage: run-kubevirt-examples <examples dir> [--only RE] [--timeout-s N]');
  const only = opt('--only') !== undefined ? new RegExp(opt('--only') as string) : null;
  const timeoutMs = Number(opt('--timeout-s') ?? '120') * 1000;
  const uri = process.env.VHTEST_LIBVIRT_URI;
  const kernel = process.env.VHTEST_GUEST_KERNEL;
  const initrd = process.env.VHTEST_GUEST_INITRD;
  if (!uri || !kernel || !initrd) throw new Error('run through scripts/dev/kubevirt-examples.sh (needs VHTEST_LIBVIRT_URI, VHTEST_GUEST_KERNEL, VHTEST_GUEST_INITRD)');

  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && (only === null || only.test(f))).sort();
  const docs = new Map<string, Obj[]>();
  for (const f of files) {
    docs.set(f, parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8')).map((d) => asObj(d.toJS())).filter((d): d is Obj => d !== null));
  }
  const all = [...docs.values()].flat();

  const tmp = makeRoot('kvex');
  const claimRoot = path.join(tmp, 'claims');
  const objectRoot = path.join(tmp, 'objects');
  const registry = await TestRegistry.start(tmp);
  let handler: HandlerUnderTest | null = null;
  const outcomes: Outcome[] = [];
  try {
    // The images the examples name, built and pushed.
    const disk = path.join(tmp, 'boot.img');
    const img = Buffer.alloc(2 ** 20);
    bootSector().copy(img, 0);
    fs.writeFileSync(disk, img);
    const refs = new Set<string>();
    for (const v of [...collect(all, 'image'), ...collect(all, 'url')]) {
      if (typeof v === 'string' && v.replace(/^docker:\/\//, '').startsWith('registry:5000/')) refs.add(v.replace(/^docker:\/\//, ''));
    }
    const kernelPaths = new Map<string, { kernelPath: string; initrdPath: string }>();
    for (const c of collect(all, 'container')) {
      const o = asObj(c);
      if (o && typeof o.image === 'string') kernelPaths.set(o.image, { kernelPath: String(o.kernelPath ?? '/boot/vmlinuz'), initrdPath: String(o.initrdPath ?? '/boot/initrd') });
    }
    for (const ref of refs) {
      const layout = path.join(tmp, 'oci', ref.replace(/[^A-Za-z0-9]+/g, '_'));
      const kb = kernelPaths.get(ref);
      const entries = kb
        ? [
            { name: kb.kernelPath.replace(/^\//, ''), file: kernel, mode: 0o644 },
            { name: kb.initrdPath.replace(/^\//, ''), file: initrd, mode: 0o644 },
          ]
        : [{ name: 'disk/disk.img', file: disk, mode: 0o644 }];
      await buildImage(layout, 'devel', [entries]);
      await push(layout, 'devel', `${registry.host}/${ref.slice('registry:5000/'.length)}`);
    }
    // Claims and objects, as the cluster would provide them.
    for (const f of files) {
      for (const d of docs.get(f) ?? []) {
        const ns = String(asObj(d.metadata)?.namespace ?? 'default');
        for (const p of [...collect(d, 'persistentVolumeClaim')]) {
          const claim = asObj(p)?.claimName;
          if (typeof claim !== 'string') continue;
          const cdir = path.join(claimRoot, ns, claim);
          fs.mkdirSync(cdir, { recursive: true, mode: 0o700 });
          fs.copyFileSync(disk, path.join(cdir, 'disk.img'));
        }
        for (const [key, kind, nameKey] of [['configMap', 'configmaps', 'name'], ['secret', 'secrets', 'secretName'], ['secretRef', 'secrets', 'name'], ['networkDataSecretRef', 'secrets', 'name']] as const) {
          for (const ref of collect(d, key)) {
            const name = asObj(ref)?.[nameKey];
            if (typeof name !== 'string') continue;
            const odir = path.join(objectRoot, ns, kind, name);
            fs.mkdirSync(odir, { recursive: true, mode: 0o700 });
            fs.writeFileSync(path.join(odir, kind === 'secrets' ? 'userdata' : 'data'), '#cloud-config\n', { mode: 0o600 });
          }
        }
      }
    }

    handler = await HandlerUnderTest.start({
      tmp,
      libvirtUri: uri,
      logLevel: 'info',
      waitLibvirt: true,
      env: {
        VH_IMAGES_REWRITES: `registry:5000=${registry.host}`,
        VH_IMAGES_INSECURE_REGISTRIES: registry.host,
        VH_VOLUMES_CLAIM_ROOT: claimRoot,
        VH_VOLUMES_OBJECT_ROOT: objectRoot,
      },
    });
    const sock = ['--socket', handler.grpcSocket];
    for (const f of files) {
      const r = await runVhctl(['create', '-f', path.join(dir, f), '-o', 'json', ...sock]);
      const created: Array<{ namespace: string; name: string }> = [];
      const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
      try {
        for (const v of collect(JSON.parse(r.stdout) as unknown, 'vmi')) {
          const md = asObj(asObj(v)?.metadata);
          if (md && typeof md.name === 'string') created.push({ namespace: String(md.namespace ?? 'default'), name: md.name });
        }
      } catch {
        // not JSON (a usage error): the lines below tell what happened
      }
      if (created.length === 0) {
        outcomes.push({ file: f, object: '-', result: r.code === 0 ? 'accepted, no VMI started' : 'REFUSED', detail: lines.join(' | ').slice(0, 400) });
        continue;
      }
      for (const c of created) outcomes.push(await follow(handler, f, c, timeoutMs));
      for (const c of created) await runVhctl(['delete', c.name, '-n', c.namespace, '--wait', ...sock]);
    }
  } finally {
    if (handler) await handler.stop().catch(() => undefined);
    await registry.stop().catch(() => undefined);
    await killEverything(tmp);
  }
  const w = Math.max(...outcomes.map((o) => o.file.length));
  for (const o of outcomes) process.stdout.write(`${o.file.padEnd(w)}  ${o.object.padEnd(28)}  ${o.result}${o.detail ? `: ${o.detail}` : ''}\n`);
  const summary = outcomes.reduce<Record<string, number>>((acc, o) => ({ ...acc, [o.result.split(' ')[0] as string]: (acc[o.result.split(' ')[0] as string] ?? 0) + 1 }), {});
  process.stdout.write(`\n${JSON.stringify(summary)}\n`);
  fs.writeFileSync(`${tmp}.json`, JSON.stringify(outcomes, null, 2));
  process.stdout.write(`table: ${tmp}.json\n`);
  fs.rmSync(tmp, { recursive: true, force: true });
  await execFileP('true');
}

async function follow(h: HandlerUnderTest, file: string, c: { namespace: string; name: string }, timeoutMs: number): Promise<Outcome> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  let since = Date.now();
  const object = `${c.namespace}/${c.name}`;
  while (Date.now() < deadline) {
    const r = await h.http('GET', `/v1/vmis/${c.namespace}/${c.name}`);
    if (r.status !== 200) return { file, object, result: 'GONE', detail: `${r.status} ${r.body.slice(0, 200)}` };
    const v = JSON.parse(r.body) as { uid: string; status: { phase: string; reason: string; conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
    const st = v.status;
    if (st.phase === 'Running') {
      const serial = path.join(h.stateDir, 'vmis', v.uid, 'serial.log');
      const t0 = Date.now();
      while (Date.now() - t0 < 15_000) {
        let log = '';
        try {
          log = fs.readFileSync(serial, 'latin1');
        } catch {
          // not yet written
        }
        if (log.includes(MARKER)) return { file, object, result: 'Running', detail: 'booted (marker on the serial console)' };
        if (/Linux version|Run \/init|VH-TINY/.test(log)) return { file, object, result: 'Running', detail: 'kernel booted' };
        await sleep(500);
      }
      return { file, object, result: 'Running', detail: 'domain running; no marker within 15 s (firmware without a bootable disk, e.g. EFI)' };
    }
    if (st.phase === 'Failed' || st.phase === 'Succeeded') return { file, object, result: st.phase, detail: st.reason };
    const cond = (st.conditions ?? []).find((x) => x.type === 'Schedulable' && x.status === 'False');
    if (cond) return { file, object, result: 'Waits', detail: cond.message };
    const now = `${st.phase} ${st.reason}`;
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > 20_000 && st.phase === 'Pending') {
      return { file, object, result: 'Waits', detail: st.reason };
    }
    await sleep(500);
  }
  return { file, object, result: 'TIMEOUT', detail: last };
}

main().catch((e: unknown) => {
  process.stderr.write(`run-kubevirt-examples: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
