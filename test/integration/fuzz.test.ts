/**
 * Fuzz (issue 6.5): a real daemon over its real unix sockets takes 10,000 random and mutated
 * messages - SyncVMI manifests (valid ones mutated: deleted fields, changed types, huge strings,
 * unicode, deep nesting, hostile names and paths, XML metacharacters; and plain garbage),
 * DeleteVMI with random refs, and Launcher/Connect streams: with invalid tokens (must be refused,
 * changing nothing), raw non-protobuf bytes, and with a VALID token sending garbage.
 *
 * The valid token is obtained the way a launcher gets one: the daemon (through the test entry,
 * test/lib/test-daemon.ts) runs a fake launcher command (the launcherCommand seam) - a tiny script that stores the one-time token the daemon
 * put in its environment and then sleeps, so its pid stays the launcher's. The test registers
 * with that token and that pid, then speaks garbage on the linked stream.
 *
 * Afterwards: the daemon is alive, healthy and ready; RSS and fds stayed bounded; every phase is
 * a valid one; the records on disk are exactly the VMIs the API lists, and load again after a
 * restart. FUZZ_SEED=<n> replays a run (the seed is printed).
 */
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { LAUNCHER_SERVICE, loadProtos } from '../../src/grpc/proto';
import {
  type Client, HandlerUnderTest, type Seams, type VmiView, call, httpGet, killEverything, makeRoot, procFigures, recordUids, sleep, testDriverVmi, waitFor,
} from '../lib/daemon';
import { mulberry32 as prng } from '../lib/prng';

const TOTAL = Number(process.env.FUZZ_TOTAL ?? 10_000);
const IN_FLIGHT = 32;
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PHASES = new Set(['Pending', 'Scheduling', 'Scheduled', 'Running', 'Succeeded', 'Failed', 'Unknown']);

const ROOT = makeRoot('vh-fuzz-');
after(async () => {
  await killEverything(ROOT);
  fs.rmSync(ROOT, { recursive: true, force: true });
});

const rnd = prng(SEED);
const int = (n: number): number => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;

const HOSTILE = [
  '../../etc/passwd', '/etc/shadow', 'a/../../b', '..', '.', '', ' ', 'x'.repeat(300), '\u0000', 'a\nb', '<domain>', "'\"&<>]]>", '<!--', '$(reboot)', '`id`',
  '\u202egnp.exe', '😀'.repeat(50), 'Ω≈ç√', 'CON', '-rf', '--vmi-uid', '%s%n', '\\\\?\\C:', 'ÿ'.repeat(70), 'vm-1\u200b',
];
function randomString(): string {
  switch (int(6)) {
    case 0: return pick(HOSTILE);
    case 1: return 'x'.repeat(int(3) === 0 ? 200_000 : 1000);
    case 2: return Array.from({ length: int(40) }, () => String.fromCodePoint(int(0x2ffff))).join('');
    case 3: return `tiny/${pick(HOSTILE)}`;
    default: return Math.random().toString(36).slice(2, 2 + int(12));
  }
}
function randomValue(depth = 0): unknown {
  switch (int(depth > 3 ? 5 : 8)) {
    case 0: return null;
    case 1: return int(2) === 0;
    case 2: return pick([0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, NaN, 1e-300]);
    case 3: return randomString();
    case 4: return int(1000);
    case 5: return Array.from({ length: int(4) }, () => randomValue(depth + 1));
    case 6: return Object.fromEntries(Array.from({ length: int(4) }, () => [randomString().slice(0, 40), randomValue(depth + 1)]));
    default: return deep(int(2) === 0 ? 50 : 2000);
  }
}
function deep(n: number): unknown {
  let v: unknown = 'bottom';
  for (let i = 0; i < n; i++) v = int(2) === 0 ? { a: v } : [v];
  return v;
}

/** Every path to a value in `o`. */
function paths(o: unknown, pre: string[] = [], out: string[][] = []): string[][] {
  if (o && typeof o === 'object' && pre.length < 8) {
    for (const [k, v] of Object.entries(o)) {
      out.push([...pre, k]);
      paths(v, [...pre, k], out);
    }
  }
  return out;
}
function setAt(o: Record<string, unknown>, p: string[], v: unknown, del: boolean): void {
  let cur: Record<string, unknown> = o;
  for (const k of p.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== 'object' || next === null) return; // an earlier mutation replaced the parent
    cur = next as Record<string, unknown>;
  }
  const last = p[p.length - 1] as string;
  if (del) delete cur[last];
  else cur[last] = v;
}

const NAMES = Array.from({ length: 24 }, (_, i) => `vm-${i}`);
const NAMESPACES = ['fuzz-a', 'fuzz-b'];

function syncManifest(): string {
  const r = int(20);
  if (r === 0) return randomString();
  if (r === 1) return JSON.stringify(randomValue());
  if (r === 2) return 'a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n';
  if (r === 3) return `{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": ${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`;
  const m = testDriverVmi(pick(NAMES), pick(NAMESPACES));
  const spec = m.spec as Record<string, unknown>;
  spec.runStrategy = pick(['Always', 'Always', 'Halted', 'Manual', 'Once', 'RerunOnFailure', 'always', '', 'Sometimes']);
  const mutations = int(4); // 0: valid as is
  for (let i = 0; i < mutations; i++) {
    const all = paths(m);
    const p = pick(all);
    const what = int(5);
    if (what === 0) setAt(m, p, undefined, true);
    else if (what === 1) setAt(m, p, randomString(), false);
    else if (what === 2) setAt(m, ['metadata', pick(['name', 'namespace', 'uid', 'generation'])], pick([...HOSTILE, 7, -1, null]), false);
    else if (what === 3) setAt(m, ['spec', 'domain', 'firmware', 'kernelBoot', pick(['kernel', 'initrd', 'kernelArgs'])], pick(HOSTILE), false);
    else setAt(m, p, randomValue(), false);
  }
  return int(10) === 0 ? JSON.stringify(m).replace(/"/g, int(2) ? "'" : '"') : JSON.stringify(m);
}

function randomRef(uids: string[]): Record<string, unknown> {
  switch (int(5)) {
    case 0: return { namespace: pick(NAMESPACES), name: pick(NAMES) };
    case 1: return { uid: uids.length ? pick(uids) : 'x' };
    case 2: return { uid: randomString() };
    case 3: return { namespace: randomString(), name: randomString() };
    default: return {};
  }
}

/** A random (often invalid) LauncherMessage for a linked stream. */
function garbageLauncherMessage(uid: string): unknown {
  switch (int(8)) {
    case 0: return { heartbeat: { seq: int(1e9) } };
    case 1: return { status: { state: pick(['running', 'paused', 'shutoff', 'crashed', 'RUNNING', 'exploded', '', randomString().slice(0, 100)]), reason: randomString(), domainUuid: pick([uid, randomString()]), lastEvent: randomString(), error: pick(['', randomString()]), domainXml: pick(['', "<domain><name>x</name>]]>&'\"</domain>", 'x'.repeat(int(2) ? 10 : 2_000_000), `<domain>${String(int(1e9)).repeat(100_000)}</domain>`]) } };
    // Unknown ids only: a result for the pending `start` (c1) would legitimately fail the VMI and replace the launcher.
    case 2: return { result: { id: pick(['c999999', '', 'c-1', randomString()]), ok: int(2) === 0, error: randomString() } };
    case 3: return { register: { vmiUid: pick([uid, '00000000-0000-0000-0000-000000000000']), token: randomString().slice(0, 300), pid: int(100000) } };
    case 4: return {};
    case 5: return { status: {} };
    case 6: return { result: {} };
    default: return { heartbeat: {} };
  }
}

describe('fuzz', { timeout: 300_000 }, () => {
  let d: HandlerUnderTest;
  let c: Client;
  const counts: Record<string, number> = {};
  const codes: Record<string, number> = {};
  const count = (k: string, code?: number): void => {
    counts[k] = (counts[k] ?? 0) + 1;
    if (code !== undefined) codes[`${k}:${grpc.status[code] ?? code}`] = (codes[`${k}:${grpc.status[code] ?? code}`] ?? 0) + 1;
  };

  test(`10,000 messages (seed ${SEED}): healthy, bounded, consistent, bad tokens refused`, async () => {
    console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} replays)`);
    const fake = path.join(ROOT, 'fake-launcher.sh');
    // Stores the token the daemon handed it, then sleeps under a command line naming the VMI
    // (so the test's cleanup finds it); its pid is the one the daemon recorded.
    fs.writeFileSync(fake, '#!/bin/bash\nprintf %s "$VH_LAUNCHER_TOKEN" > fake-token.tmp && mv fake-token.tmp fake-token\nexec -a "fake-launcher $*" sleep 3600\n', { mode: 0o755 });
    const seams: Seams = {
      launcherCommand: ['/bin/bash', fake],
      // Nothing is given up during the run: launchers that never connect are left alone.
      vmiTiming: { registerTimeoutMs: 600_000, readoptMs: 600_000 },
    };
    const launch = (): Promise<HandlerUnderTest> => HandlerUnderTest.start({ tmp: ROOT, libvirtUri: 'test:///default', nodeName: 'it-node', logLevel: 'info', seams });
    d = await launch();
    c = d.vmiClient();
    const { LauncherClient } = loadProtos() as unknown as { LauncherClient: grpc.ServiceClientConstructor };
    const lc = new LauncherClient(`unix:${path.join(d.runDir, 'grpc.sock')}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Connect: () => grpc.ClientDuplexStream<unknown, Record<string, unknown>> };
    const raw = new grpc.Client(`unix:${path.join(d.runDir, 'grpc.sock')}`, grpc.credentials.createInsecure());

    // Two VMIs outside the fuzzed names: one for the valid-token launcher, one guarded (only bad tokens).
    const mk = (name: string): string => JSON.stringify(testDriverVmi(name, 'fuzz-l'));
    const linked = (await call<{ vmi: VmiView }>(c, 'SyncVMI', { manifest: mk('linked') })).vmi;
    const guarded = (await call<{ vmi: VmiView }>(c, 'SyncVMI', { manifest: mk('guarded') })).vmi;
    const recOf = (uid: string): { launcher: { pid: number; startTime: number; spawnTokenHash: string; sessionTokenHash: string } | null } =>
      JSON.parse(fs.readFileSync(path.join(d.stateDir, 'vmis', uid, 'record.json'), 'utf8')) as never;
    const tokenFile = (uid: string): string => path.join(d.stateDir, 'vmis', uid, 'fake-token');
    await waitFor('fake launchers spawned', () => (fs.existsSync(tokenFile(linked.uid)) && fs.existsSync(tokenFile(guarded.uid)) && recOf(linked.uid).launcher?.pid && recOf(guarded.uid).launcher?.pid ? true : undefined));
    const guardedBefore = recOf(guarded.uid).launcher;
    let fakePid = (recOf(linked.uid).launcher as { pid: number }).pid;
    let spawnToken = fs.readFileSync(tokenFile(linked.uid), 'utf8');
    let token = spawnToken;

    let sent = 0;
    const t0 = Date.now();
    let base: { rssKb: number; fds: number } | null = null;
    let peakRss = 0;
    let baseHeap = 0;
    const heapUsed = async (): Promise<number> => Number(/^nodejs_heap_size_used_bytes (\d+)/m.exec((await httpGet(path.join(d.runDir, 'http.sock'), '/metrics')).body)?.[1] ?? 0);

    /** Opens a stream, registers, waits for the answer; returns the stream (linked) or the refusal code. */
    const register = (reg: unknown): Promise<{ stream: grpc.ClientDuplexStream<unknown, Record<string, unknown>>; code: number | null; session?: string }> =>
      new Promise((resolve) => {
        const stream = lc.Connect();
        let done = false;
        const finish = (code: number | null, session?: string): void => {
          if (done) return;
          done = true;
          resolve({ stream, code, session });
        };
        stream.on('data', (m) => {
          const r = m.registered as { sessionToken?: string } | undefined;
          if (r) finish(null, r.sessionToken);
        });
        stream.on('error', (e: grpc.ServiceError) => finish(e.code));
        stream.on('end', () => finish(-1));
        stream.write({ register: reg });
      });

    const invalidToken = async (): Promise<void> => {
      const wellFormed = int(4) !== 0;
      const uid = pick([guarded.uid, linked.uid, '11111111-2222-3333-4444-555555555555']);
      const reg = wellFormed
        ? { vmiUid: uid, token: (randomString() || 'x').slice(0, 256), pid: 1 + int(4_000_000) }
        : { vmiUid: pick([uid.toUpperCase(), randomString()]), token: pick(['', 'x'.repeat(257), randomString()]), pid: pick([0, -5, 1]) };
      if (wellFormed && (reg.token === token)) reg.token += 'x';
      const { stream, code } = await register(reg);
      count('connect-bad-token', code ?? 0);
      stream.cancel();
      if (wellFormed) assert.equal(code, grpc.status.UNAUTHENTICATED, `well-formed register with a bad token for ${uid}: ${code}`);
      else assert.ok(code === grpc.status.UNAUTHENTICATED || code === grpc.status.INVALID_ARGUMENT, `malformed register: ${code}`);
    };

    const rawBytes = (): Promise<void> =>
      new Promise((resolve) => {
        const s = raw.makeBidiStreamRequest(`/${LAUNCHER_SERVICE}/Connect`, (b: Buffer) => b, (b: Buffer) => b);
        s.on('error', (e: grpc.ServiceError) => {
          count('connect-raw', e.code);
          resolve();
        });
        s.on('data', () => undefined);
        s.on('end', () => resolve());
        const len = int(3) === 0 ? 70_000 : int(64);
        s.write(Buffer.from(Array.from({ length: len }, () => int(256))));
        if (int(2)) s.end();
      });

    let linkedBusy = false;
    const validSession = async (budget: number): Promise<number> => {
      const { stream, code, session } = await register({ vmiUid: linked.uid, token, pid: fakePid });
      count('connect-valid-register', code ?? 0);
      if (code !== null) {
        // Legitimate only when the daemon replaced the launcher (garbage results can fail the
        // `start` command: Failed, teardown, the fake never exits, killed, runStrategy Always
        // spawns a new one with a new token). Then carry on as the new launcher.
        const now = recOf(linked.uid).launcher;
        assert.ok(!now || now.pid !== fakePid, `the valid token was refused (${code}) while launcher ${fakePid} still is the VMI's launcher; daemon log:\n${d.tail(40)}`);
        const old = fakePid;
        await waitFor('the new fake launcher', () => {
          const pid = recOf(linked.uid).launcher?.pid ?? 0;
          return pid > 0 && pid !== old && fs.readFileSync(tokenFile(linked.uid), 'utf8') !== spawnToken ? true : undefined;
        }, 60_000);
        fakePid = (recOf(linked.uid).launcher as { pid: number }).pid;
        token = spawnToken = fs.readFileSync(tokenFile(linked.uid), 'utf8');
        count('launcher-replaced-by-daemon');
        return 0;
      }
      if (session) token = session;
      stream.on('data', (m) => {
        const cmd = m.command as { id?: string; start?: unknown } | undefined;
        // Answers some commands (never `start`: the fake runs no domain), with junk sometimes.
        if (cmd?.id && !cmd.start && int(2) === 0) stream.write({ result: { id: cmd.id, ok: int(2) === 0, error: randomString() } });
      });
      let n = 0;
      let closed = false;
      stream.on('error', () => (closed = true));
      stream.on('close', () => (closed = true));
      for (; n < budget && !closed; n++) {
        const msg = garbageLauncherMessage(linked.uid);
        stream.write(msg);
        count('launcher-garbage');
        if (n % 4 === 3) await sleep(1);
      }
      await sleep(20);
      stream.cancel();
      return n;
    };

    const one = async (): Promise<number> => {
      const r = int(100);
      if (r < 45) {
        const res = await call(c, 'SyncVMI', { manifest: syncManifest() }).then(() => 0, (e: grpc.ServiceError) => e.code);
        count('sync', res);
        assert.ok(res !== grpc.status.INTERNAL && res !== grpc.status.UNKNOWN, `SyncVMI answered ${grpc.status[res]}`);
        return 1;
      }
      if (r < 60) {
        const res = await call(c, 'DeleteVMI', randomRef(recordUids(d.stateDir).filter((u) => u !== linked.uid && u !== guarded.uid))).then(() => 0, (e: grpc.ServiceError) => e.code);
        count('delete', res);
        assert.ok(res !== grpc.status.INTERNAL && res !== grpc.status.UNKNOWN, `DeleteVMI answered ${grpc.status[res]}`);
        return 1;
      }
      if (r < 75) {
        await invalidToken();
        return 1;
      }
      if (r < 80) {
        await rawBytes();
        return 1;
      }
      if (linkedBusy) {
        await invalidToken(); // one linked stream at a time: a second Register would replace the first
        return 1;
      }
      linkedBusy = true;
      try {
        return 1 + (await validSession(1 + int(40)));
      } finally {
        linkedBusy = false;
      }
    };

    const worker = async (): Promise<void> => {
      while (sent < TOTAL) {
        const n = await one(); // not `sent += await one()`: that reads `sent` before the await
        sent += n;
        if (Math.floor((sent - n) / 1000) !== Math.floor(sent / 1000)) console.log(`fuzz: ${sent} messages, ${Date.now() - t0} ms, ${JSON.stringify(counts)}`);
        if (base === null && sent >= 500) {
          base = procFigures(d.pid);
          baseHeap = await heapUsed();
        }
        if (sent % 500 < 2) peakRss = Math.max(peakRss, procFigures(d.pid).rssKb);
      }
    };
    const start = procFigures(d.pid);
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const ms = Date.now() - t0;
    await sleep(3000); // let cancelled streams close
    const end = procFigures(d.pid);
    const endHeap = await heapUsed();
    const b = base ?? start;
    console.log(`fuzz: ${sent} messages in ${ms} ms; counts ${JSON.stringify(counts)}`);
    console.log(`fuzz: codes ${JSON.stringify(codes)}`);
    console.log(`fuzz: RSS ${start.rssKb} kB at start, ${b.rssKb} kB after warm-up, ${end.rssKb} kB at end (peak sampled ${peakRss} kB); JS heap used ${Math.round(baseHeap / 1024)} kB after warm-up, ${Math.round(endHeap / 1024)} kB at end; fds ${start.fds} -> ${b.fds} -> ${end.fds}`);

    // Healthy.
    assert.equal(d.proc.exitCode, null, 'the daemon is alive');
    assert.equal((await httpGet(path.join(d.runDir, 'http.sock'), '/healthz')).status, 200);
    assert.equal((await httpGet(path.join(d.runDir, 'http.sock'), '/readyz')).status, 200);
    // Bounded.
    // The JS heap is what a leak grows; RSS also holds pages V8 and gRPC keep after the peak.
    // Loose on purpose: heap used includes garbage not yet collected (the ~1 MiB XMLs), and
    // RSS keeps what V8 grew to at the peak. An unbounded retention (e.g. the watch history
    // pinning each launcher-reported XML) blows through both.
    assert.ok(endHeap - baseHeap < 64 * 1024 * 1024, `JS heap grew by ${Math.round((endHeap - baseHeap) / 1024)} kB`);
    assert.ok(end.rssKb - b.rssKb < 128 * 1024, `RSS grew by ${end.rssKb - b.rssKb} kB`);
    assert.ok(end.fds - start.fds < 32, `fds grew from ${start.fds} to ${end.fds}`);
    // Bad tokens changed nothing.
    assert.deepEqual(recOf(guarded.uid).launcher, guardedBefore, 'the guarded VMI saw only bad tokens: its launcher record is unchanged');
    // Consistent: valid phases; the records are exactly what the API lists.
    const listed = (await call<{ vmis: VmiView[] }>(c, 'ListVMIs', {})).vmis;
    for (const v of listed) assert.ok(PHASES.has(v.status.phase), `phase ${JSON.stringify(v.status.phase)} of ${v.namespace}/${v.name}`);
    assert.deepEqual(listed.map((v) => v.uid).sort(), recordUids(d.stateDir).sort(), 'records on disk == VMIs listed');
    const label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/; // no hostile name got through (../, XML, unicode...)
    for (const v of listed) assert.ok(label.test(v.namespace) && label.test(v.name), `accepted ${JSON.stringify(v.namespace)}/${JSON.stringify(v.name)}`);
    assert.deepEqual(fs.readdirSync(path.join(d.stateDir, 'vmis')).filter((f) => f !== 'revision' && !listed.some((v) => v.uid === f)), [], 'no stray VMI directories');
    // The records load again.
    lc.close();
    raw.close();
    assert.equal((await d.stop()).code, 0, d.tail(40));
    const d2 = await launch();
    const again = (await d2.call<{ vmis: VmiView[] }>('ListVMIs', {})).vmis;
    assert.deepEqual(again.map((v) => v.uid).sort(), listed.map((v) => v.uid).sort(), 'the same VMIs after a restart');
    assert.doesNotMatch(d2.out, /VMI state directory problem/, 'no record problems at load');
    await d2.stop();
  });
});
