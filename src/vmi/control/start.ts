/**
 * Starting a VMI: what the node must offer first (preflight), the launcher spawn (recorded
 * durably before it happens), the StartDomain command, and the recovery of a spawn a crashed
 * handler recorded but never saw through.
 */
import { MAX_UNIX_PATH } from '../../util/unix-socket';
import type { StartDomain } from '../../launcher-protocol/messages';
import { EMBED_SOCKET_SUFFIX, buildStartCommand, embedRoot, launcherLibvirtUri, missingHostSoftware, virtTypeFor } from './launch-plan';
import { defaultLauncherCommand, findLauncherProcesses, hashToken, newToken, spawnLauncher } from './launcher-process';
import type { ResolvedClaims, ResolvedObjects } from '../render/disk-plan';
import { resolveClaims } from './claims';
import { type ImageResolution, hasImageVolumes, imagesConsumed, resolveImages } from './images';
import { hasObjectVolumes, resolveObjects } from './objects';
import type { ReconcileHost } from './reconcile-host';
import { afterStop, kill, killStrayLaunchers, requestTeardown } from './stop';
import type { VmiState } from './vmi-state';

/** How long a launcher may take to prepare disks and start the domain. */
const START_TIMEOUT_MS = 180_000;

interface Refusal {
  phase: 'Pending' | 'Failed';
  reason: string;
  /** When to look again; -1: never (Failed, or nothing on this node can change it). */
  retryMs: number;
}

/**
 * Fields KubeVirt accepts that this node cannot honour: the VMI waits, as KubeVirt's scheduler
 * would leave it unschedulable, with a condition naming exactly what the node lacks.
 */
function unschedulable(s: VmiState): string | null {
  const req = s.vmi?.requirements ?? [];
  if (req.length === 0) return null;
  return `this node cannot run it: ${req.map((r) => `${r.field}: ${r.needs}`).join('; ')}`;
}

/** Checks what the node offers; returns a reason to wait (Pending) or fail, or null. */
export function preflight(h: ReconcileHost, s: VmiState): Refusal | null {
  const cfg = h.settings;
  const vmi = s.vmi;
  if (!vmi) return { phase: 'Failed', reason: s.status.reason || 'invalid spec', retryMs: -1 };
  const facts = h.nodeFacts();
  const nodeLibvirt = cfg.libvirtUri !== null && facts.nodeLibvirtConnected;
  if (!nodeLibvirt && cfg.libvirtUri !== null && !h.libvirtSettled()) return { phase: 'Pending', reason: `waiting for the first connection to libvirt ${cfg.libvirtUri}`, retryMs: 500 };
  if (!nodeLibvirt && !cfg.embedFallback) {
    return cfg.libvirtUri === null
      ? { phase: 'Pending', reason: 'libvirt is switched off (libvirt.uri=off) and vmi.embeddedLibvirt is off: VMIs cannot run on this node', retryMs: 30_000 }
      : { phase: 'Pending', reason: `libvirt ${cfg.libvirtUri} is not connected`, retryMs: 3_000 };
  }
  if (!nodeLibvirt) {
    const root = embedRoot(cfg.handlerSocket, s.uid);
    if (Buffer.byteLength(`${root}${EMBED_SOCKET_SUFFIX}`) > MAX_UNIX_PATH) {
      return { phase: 'Failed', reason: `no node libvirtd, and the embedded driver's sockets under ${root} would exceed ${MAX_UNIX_PATH} bytes: use a shorter stateDir or a node libvirtd`, retryMs: -1 };
    }
  }
  const vt = virtTypeFor(facts);
  if (!vt) return { phase: 'Pending', reason: 'waiting for the node capabilities', retryMs: 1_000 };
  if (vt.virtType === 'qemu' && !cfg.allowTcg) return { phase: 'Pending', reason: `no KVM and TCG disabled (vmi.allowTcg=false): ${vt.reason}`, retryMs: 60_000 };
  const model = vmi.cpu.model;
  if (vt.virtType === 'qemu' && (model === 'host-passthrough' || model === 'host-model')) {
    return { phase: 'Failed', reason: `cpu model ${model} needs KVM; this node runs guests under TCG (${vt.reason})`, retryMs: -1 };
  }
  if (vmi.interfaces.some((i) => i.binding === 'bridge') && !facts.bridge) return { phase: 'Failed', reason: 'a bridge interface needs a node bridge (vmi.bridge is not set)', retryMs: -1 };
  const node = facts.nodeInfo;
  if (vmi.cpu.dedicated) {
    const total = node?.cpu.logicalCpus ?? 0;
    const used = h.cpusPinnedElsewhere(s);
    const free = Array.from({ length: total }, (_, i) => i).filter((c) => !used.has(c));
    if (free.length < vmi.cpu.vcpus) return { phase: 'Pending', reason: `dedicatedCpuPlacement needs ${vmi.cpu.vcpus} dedicated CPUs; ${free.length} of ${total} are free`, retryMs: 10_000 };
    s.pinCpus(free.slice(0, vmi.cpu.vcpus));
  }
  const hp = vmi.memory.hugepageSizeBytes;
  if (hp !== null) {
    const pool = node?.hugepages.find((p) => p.sizeBytes === hp);
    const freeBytes = pool ? pool.free * hp : 0;
    if (freeBytes < vmi.memory.guestBytes) return { phase: 'Pending', reason: `needs ${vmi.memory.guestBytes / 2 ** 20} MiB of ${hp / 2 ** 20} MiB hugepages; ${freeBytes / 2 ** 20} MiB free`, retryMs: 30_000 };
  }
  // Host software is a node fact (the probe): a VMI needing what is missing waits, and names it.
  const software = missingHostSoftware(facts, vmi);
  if (software !== null) return { phase: 'Pending', reason: software, retryMs: 60_000 };
  const uuid = vmi.firmware.uuid ?? s.uid;
  const holder = h.domainUuidInUse?.(s, uuid) ?? null;
  if (holder !== null) return { phase: 'Pending', reason: `firmware UUID ${uuid} is in use by VMI ${holder} on this node (libvirt allows one domain per UUID)`, retryMs: 10_000 };
  const sock = `${h.vmiDir(s.uid)}/serial.sock`;
  if (Buffer.byteLength(sock) > MAX_UNIX_PATH) return { phase: 'Failed', reason: `console socket path ${sock} is longer than ${MAX_UNIX_PATH} bytes; use a shorter stateDir`, retryMs: -1 };
  return null;
}

/** The StartDomain command for the VMI's launcher, which uses `libvirtUri`. */
function startCommand(h: ReconcileHost, s: VmiState, libvirtUri: string, images: Pick<ImageResolution, 'resolved' | 'kernelBoot'> = { resolved: {} }, resolvedClaims: ResolvedClaims = {}, resolvedObjects: ResolvedObjects = {}): StartDomain {
  return buildStartCommand(h.nodeFacts(), {
    resolvedImages: images.resolved,
    ...(images.kernelBoot ? { resolvedKernelBoot: images.kernelBoot } : {}),
    resolvedClaims,
    resolvedObjects,
    vmi: s.vmi as NonNullable<VmiState['vmi']>,
    namespace: s.rec.namespace,
    name: s.rec.name,
    vmiDir: h.vmiDir(s.uid),
    pinnedCpus: s.pinnedCpus,
    libvirtUri,
  });
}

/** Idle -> Spawning -> Launching. */
export async function startLauncher(h: ReconcileHost, s: VmiState): Promise<void> {
  const uid = s.uid;
  const lacks = unschedulable(s);
  if (lacks) {
    s.setCondition('Schedulable', 'False', 'Unschedulable', lacks);
    if (s.setPhase('Pending', lacks)) h.publish(s);
    return; // the spec decides it; a new generation or a handler restart (node labels) looks again
  }
  const pf = preflight(h, s);
  if (pf) {
    if (s.setPhase(pf.phase, pf.reason, pf.phase === 'Failed')) h.publish(s);
    if (pf.retryMs > 0) h.requeue(uid, pf.retryMs);
    else if (pf.phase === 'Failed') afterStop(h, s, false);
    return;
  }
  const claims = resolveClaims(h, s);
  if (claims === null) return; // waiting (claim not there yet, DataVolume importing or failed), requeued
  const images = await resolveImages(h, s);
  if (images === null) return; // pulling in the background (its end requeues) or waiting (ImagePullBackOff / ErrImageNeverPull, requeued)
  // The pull may have taken minutes: a delete or a stop that came meanwhile wins.
  if (s.rec.deleting || !s.shouldRun) return h.requeue(uid, 0);
  const objects = await resolveObjects(h, s);
  if (objects === null) return; // waiting for a ConfigMap/Secret/service account, requeued
  if (s.rec.deleting || !s.shouldRun) return h.requeue(uid, 0);
  const libvirtUri = launcherLibvirtUri(h.nodeFacts(), uid);
  let plan: StartDomain;
  try {
    plan = startCommand(h, s, libvirtUri, images, claims, objects); // spec problems (e.g. an unsupported combination) fail here, before any process exists
  } catch (err) {
    if (s.setPhase('Failed', `cannot build the domain: ${(err as Error).message}`, true)) h.publish(s);
    afterStop(h, s, false);
    return;
  }
  if (!h.startGate.tryAcquire(uid)) {
    if (s.setPhase('Scheduling', 'waiting for a launcher start slot')) h.publish(s);
    h.log.debug({ uid, ...h.startGate.stats() }, 'launcher start deferred');
    return h.requeue(uid, 5_000); // the gate wakes it sooner; this is only a safety net
  }
  const dir = h.ensureVmiDir(uid);
  killStrayLaunchers(h, s);
  const token = newToken();
  // Durable before the side effect: a crash after this write leaves a record that expects a
  // launcher holding this token, which may still register (Spawning, findUnrecordedLauncher).
  const launcher = { pid: 0, startTime: 0, spawnTokenHash: hashToken(token), sessionTokenHash: '', spawnedAt: new Date().toISOString(), libvirtUri };
  const rec = { ...s.rec, launcher, ...(images.digests.length > 0 ? { images: images.digests, imageDigests: images.byKey } : {}), phase: 'Scheduling' as const, reason: 'starting the launcher' };
  h.persistRecord(rec);
  s.beginSpawn(rec, plan);
  imagesConsumed(s);
  h.failpoints.hit('launcher-after-record');
  let spawned;
  try {
    const command = h.settings.launcherCommand ?? defaultLauncherCommand();
    spawned = await spawnLauncher({ command, uid, vmiDir: dir, handlerSocket: h.settings.handlerSocket, logLevel: h.settings.logLevel, token });
  } catch (err) {
    s.spawnFailed();
    h.startGate.release(uid);
    if (s.setPhase('Failed', `cannot start the launcher: ${(err as Error).message}`, true)) h.publish(s);
    afterStop(h, s, true);
    return;
  }
  h.failpoints.hit('launcher-after-spawn');
  s.spawned(spawned.pid, spawned.startTime, spawned.child);
  void spawned.exited.then((x) => {
    s.childExited(x);
    h.requeue(uid, 0);
  });
  h.publish(s); // persists the pid
  h.failpoints.hit('launcher-after-pid-record');
  h.requeue(uid, h.timing.registerTimeoutMs);
}

/** Launching -> Started: the connected launcher prepares the disks and starts the domain. */
export async function startDomain(h: ReconcileHost, s: VmiState): Promise<void> {
  const channel = s.channel;
  if (!channel) return;
  let start: StartDomain;
  let resolved: Pick<ImageResolution, 'resolved' | 'kernelBoot'> = { resolved: {} };
  if (!s.startPlan && hasImageVolumes(s)) {
    // Re-adopted before its domain started: the images by the digests the record names (a tag
    // may have moved since; the record keeps them from GC). Records older than imageDigests: by the spec.
    const images = await resolveImages(h, s, s.rec.imageDigests ? { pinned: s.rec.imageDigests } : {});
    if (images === null) return;
    resolved = images;
  }
  let claims: ResolvedClaims = {};
  if (!s.startPlan) {
    const c = resolveClaims(h, s); // re-adopted: the claims are where they were at spawn
    if (c === null) return;
    claims = c;
  }
  let objects: ResolvedObjects = {};
  if (!s.startPlan && hasObjectVolumes(s)) {
    // Re-adopted before its domain started: the objects are read again (never recorded: they may be secret).
    const read = await resolveObjects(h, s);
    if (read === null) return;
    objects = read;
  }
  try {
    // Planned once at spawn; a launcher re-adopted after a handler restart gets it rebuilt, with
    // the libvirt recorded at spawn (records older than that field: the node's as configured).
    start = s.startPlan ?? startCommand(h, s, s.rec.launcher?.libvirtUri || h.settings.libvirtUri || launcherLibvirtUri(h.nodeFacts(), s.uid), resolved, claims, objects);
  } catch (err) {
    if (s.setPhase('Failed', `cannot build the domain: ${(err as Error).message}`, true)) h.publish(s);
    return requestTeardown(h, s);
  }
  if (s.status.phase !== 'Running' && s.setPhase('Scheduled', 'starting the domain')) h.publish(s);
  try {
    await channel.send({ start }, START_TIMEOUT_MS);
    h.failpoints.hit('domain-start-sent');
    s.domainStarted();
  } catch (err) {
    if (!channel.isOpen) return; // the launcher went away; its exit is handled on the next run
    if (s.setPhase('Failed', `starting the domain failed: ${(err as Error).message}`, true)) h.publish(s);
    return requestTeardown(h, s);
  }
  h.requeue(s.uid, 0);
}

/**
 * Spawning after a handler restart: a handler died between recording a spawn and recording its
 * pid. If the spawn happened, the launcher is found by its command line and adopted (it holds
 * the spawn token the record expects, and registers with it); if it did not, nothing was
 * started and the VMI starts afresh.
 */
export async function findUnrecordedLauncher(h: ReconcileHost, s: VmiState): Promise<void> {
  const [found, ...more] = findLauncherProcesses(s.uid, h.settings.handlerSocket);
  for (const p of more) kill(p.pid, p.startTime); // at most one spawn per record write; never two launchers
  if (found) {
    s.adoptUnrecorded(found.pid, found.startTime);
    h.log.info({ uid: s.uid, pid: found.pid }, 'adopted a launcher whose pid was never recorded');
  } else {
    // fork..exec: a child forked just before the crash may not show its launcher argv yet.
    if (Date.now() - s.launcherSince < Math.min(2_000, h.timing.registerTimeoutMs)) return h.requeue(s.uid, 500);
    s.neverSpawned();
  }
  h.persist(s);
  h.requeue(s.uid, 0);
}
