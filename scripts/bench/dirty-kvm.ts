/**
 * KVM dirty logging, bitmap vs manual-protect vs ring, on a 16 MiB slot of which a guest dirties
 * 10% per round. `npm run bench:dirty` runs it inside the nested-KVM sandbox, so the figures are
 * NESTED-EMULATED (QEMU TCG -> kvm_amd): compare the modes with each other, never with bare metal.
 * Run directly (`node dist/scripts/bench/dirty-kvm.js`) it measures whatever /dev/kvm it finds.
 *
 * Each round: the parked vCPU is pointed back at its entry and resumed; a flat 32-bit guest
 * writes one byte to each of 410 random pages (a table in guest memory), then halts; then one
 * harvest is timed. Medians of ROUNDS after one warm-up round. `guest` is the dirtying run
 * (faults on write-protected pages, ring pushes), `scan` GET_DIRTY_LOG or the ring walk, `clear`
 * CLEAR_DIRTY_LOG or RESET_DIRTY_RINGS, `harvest` the whole call seen from JS.
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { KvmSystem } from '../../src/kvm/kvm-system';
import { KvmBitmapTracker, KvmManualProtectTracker, KvmRingTracker, type DirtyLogMode } from '../../src/kvm/kvm-dirty-tracker';
import type { DirtyTracker } from '../../src/kvm/dirty-tracker';
import type { Vcpu } from '../../src/kvm/vcpu';
import type { Vm } from '../../src/kvm/vm';
import { loadNative } from '../../src/native/loader';

const ROUNDS = 7;
const SLOT_BYTES = 16 << 20;
const DIRTY_FRACTION = 0.1;
const CODE_GPA = 0x1000;
const TABLE_GPA = 0x2000;
const FIRST_DATA_PAGE = 16;

const PAGE = loadNative().hostPageSize();
const PAGES = SLOT_BYTES / PAGE;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (ns: number): string => (ns / 1e6).toFixed(3);

let seed = 0x2545f491;
const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);

/** `n` distinct random pages in [FIRST_DATA_PAGE, PAGES). */
function randomPages(n: number): number[] {
  const set = new Set<number>();
  while (set.size < n) set.add(FIRST_DATA_PAGE + Math.floor(rnd() * (PAGES - FIRST_DATA_PAGE)));
  return [...set];
}

/** Flat 32-bit code: for ecx = n..1 { mov eax, [esi]; mov byte [eax], 1; esi += 4 }; hlt. */
function program(n: number): Buffer {
  const le32 = (x: number): number[] => [x & 0xff, (x >> 8) & 0xff, (x >> 16) & 0xff, (x >>> 24) & 0xff];
  return Buffer.from([
    0xbe, ...le32(TABLE_GPA), // mov esi, TABLE_GPA
    0xb9, ...le32(n), //         mov ecx, n
    0x8b, 0x06, //               loop: mov eax, [esi]
    0xc6, 0x00, 0x01, //         mov byte [eax], 1
    0x83, 0xc6, 0x04, //         add esi, 4
    0x49, //                     dec ecx
    0x75, 0xf5, //               jnz loop
    0xf4, //                     hlt
  ]);
}

/** Resolves when the vCPU has halted and parked; fails on any other exit. */
function untilParked(vcpu: Vcpu): Promise<void> {
  return new Promise((resolve, reject) => {
    const listener = (e: { reason: string }): void => {
      if (e.reason === 'hlt') return;
      vcpu.off('exit', listener);
      if (e.reason === 'parked') resolve();
      else reject(new Error(`unexpected vCPU exit ${e.reason}`));
    };
    vcpu.on('exit', listener);
  });
}

interface ModeFigures {
  mode: DirtyLogMode;
  guest: number[];
  scan: number[];
  clear: number[];
  harvest: number[];
  dirty: number;
}

async function benchMode(kvm: KvmSystem, mode: DirtyLogMode): Promise<ModeFigures> {
  const vm: Vm = kvm.createVm();
  try {
    if (mode === 'manual') KvmManualProtectTracker.enable(vm);
    if (mode === 'ring') KvmRingTracker.enable(vm, 64 * 1024); // 4096 entries: a round fits
    vm.addMemoryRegion({ slot: 0, guestPhysAddr: 0, size: SLOT_BYTES, logDirtyPages: true });
    const pages = randomPages(Math.round(PAGES * DIRTY_FRACTION));
    vm.writeGuest(CODE_GPA, program(pages.length));
    vm.writeGuest(TABLE_GPA, Buffer.from(new Uint32Array(pages.map((p) => p * PAGE)).buffer));
    const tracker: DirtyTracker =
      mode === 'bitmap' ? KvmBitmapTracker.create(vm, 0) : mode === 'manual' ? KvmManualProtectTracker.create(vm, 0) : KvmRingTracker.create(vm, 0);
    const vcpu = vm.createVcpu(0);
    vcpu.setupProtectedMode(CODE_GPA);
    const figures: ModeFigures = { mode, guest: [], scan: [], clear: [], harvest: [], dirty: 0 };
    let parked = untilParked(vcpu);
    vcpu.start();
    await parked; // the first round also faults every page in: not measured
    for (let round = 0; round <= ROUNDS; round++) {
      await tracker.harvest(); // start clean (and write-protected)
      vcpu.setRegs({ rip: BigInt(CODE_GPA) });
      parked = untilParked(vcpu);
      const t0 = performance.now();
      vcpu.resume();
      await parked;
      const t1 = performance.now();
      const h = await tracker.harvest();
      const t2 = performance.now();
      if (round === 0) continue; // warm-up
      figures.guest.push((t1 - t0) * 1e6);
      figures.harvest.push((t2 - t1) * 1e6);
      figures.scan.push(h.timings.scanNs);
      figures.clear.push(h.timings.clearNs);
      figures.dirty = h.dirtyPages;
    }
    await vcpu.stop();
    return figures;
  } finally {
    vm.close();
  }
}

async function main(): Promise<void> {
  const module = ['kvm_amd', 'kvm_intel', 'kvm_pvm'].find((m) => fs.existsSync(`/sys/module/${m}`)) ?? 'unknown';
  const nested = process.env.VHDEV_IN_SANDBOX === '1';
  const label = nested ? `NESTED-EMULATED (QEMU TCG -> ${module})` : `host ${module}`;
  console.log(
    `KVM dirty logging, ${SLOT_BYTES >> 20} MiB slot, ${DIRTY_FRACTION * 100}% dirtied by the guest per round, ` +
      `medians of ${ROUNDS}, ${label}`,
  );
  const kvm = KvmSystem.open();
  try {
    const caps = kvm.capabilities();
    const modes: DirtyLogMode[] = ['bitmap'];
    if (caps.MANUAL_DIRTY_LOG_PROTECT2) modes.push('manual');
    else console.log('manual: not offered by this KVM');
    if (caps.DIRTY_LOG_RING) modes.push('ring');
    else console.log('ring: not offered by this KVM');
    console.log('mode     dirty  guest ms  harvest ms  scan ms  clear ms   us/dirty page (guest)');
    for (const mode of modes) {
      const f = await benchMode(kvm, mode);
      const guest = median(f.guest);
      console.log(
        `${mode.padEnd(7)}  ${String(f.dirty).padStart(5)}  ${ms(guest).padStart(8)}  ${ms(median(f.harvest)).padStart(10)}  ` +
          `${ms(median(f.scan)).padStart(7)}  ${ms(median(f.clear)).padStart(8)}   ${(guest / 1e3 / f.dirty).toFixed(1)}`,
      );
    }
  } finally {
    kvm.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
