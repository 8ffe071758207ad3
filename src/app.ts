/**
 * Composition root. Startup order (each step registers its own close hook as soon as it holds a
 * resource, so a failure at any step closes exactly what was opened, in reverse):
 *
 *   1. stateDir, runDir exist and are writable          (STATE_DIR_UNWRITABLE -> exit 3)
 *   2. logger
 *   3. native addon (absence is not fatal: KVM is then reported unavailable)
 *   4. readiness {listeners, probe} + metrics
 *   5. HTTP (unix socket, then loopback TCP)            (SOCKET_IN_USE / LISTEN_FAILED -> exit 3)
 *      then the image store (images.root, 0700) and the VMI controller (records loaded, image GC)
 *   6. gRPC (unix socket; plus an mTLS TCP listener without the Launcher service when grpc.tcp is on)
 *   7. node probe, in the background: /readyz says 'probe running' until it resolves
 *   8. libvirt supervisor (libvirt.uri), in the background: connects, reconnects with backoff,
 *      reads capabilities after each connect (after the probe: the virt type needs its facts).
 *      Blocks readiness only with libvirt.required; /readyz always shows its state.
 *   9. ready: sd_notify READY=1 + STATUS, gRPC health SERVING
 *
 * Shutdown reverses it: STOPPING=1, not ready ('draining'), then the close hooks newest-first,
 * all sharing one drain deadline (shutdown.drainTimeoutMs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Config } from './config/types';
import { ErrorCodes, VhError, errnoFacts } from './errors';
import { GrpcServer } from './grpc/server';
import { HttpServer } from './http/server';
import { Metrics } from './http/metrics';
import { component, createLogger, type Logger } from './log';
import type { NativeBinding } from './native/binding';
import { tryLoadNative } from './native/loader';
import { probeNodeReport } from './node/probe';
import type { NodeInfo } from './node/types';
import { Readiness } from './util/readiness';
import { LibvirtSupervisor } from './libvirt/supervisor';
import { type NodeCapabilities, readNodeCapabilities, summarizeCapabilities } from './libvirt/node-capabilities';
import type { Failpoints } from './vmi/control/failpoints';
import type { Timing } from './vmi/control/reconcile-host';
import { type ImageGcTiming, VmiController } from './vmi/control/controller';
import { ImageStore } from './images/image-store';
import { MetricsCollector, statsTargets } from './vmi/control/metrics-collector';
import { vmiServiceImplementation } from './grpc/vmi-service';
import { imageServiceImplementation } from './grpc/image-service';
import { launcherServiceImplementation } from './grpc/launcher-service';
import { dataVolumeServiceImplementation } from './grpc/datavolume-service';
import { loadProtos } from './grpc/proto';
import { DataVolumeController } from './volumes/datavolume-controller';
import { createImporter } from './volumes/importer';
import type { Importer } from './volumes/importer/types';

/** Inputs of startApp() besides the config. */
export interface AppOptions {
  version: string;
  /** Startup profile, logged for the operator. */
  profile?: string;
  /** Where JSON log lines go (stdout when omitted). */
  logDestination?: Parameters<typeof createLogger>[0]['destination'];
  /** Test seams, passed only by the test entry (test/lib/test-daemon.ts); the shipped daemon sets none. */
  seams?: AppSeams;
}

/** What crash, timing and fuzz tests inject (never read from the environment). */
export interface AppSeams {
  failpoints?: Failpoints;
  vmiTiming?: Partial<Timing>;
  launcherCommand?: readonly string[];
  /** Image GC timing (e.g. minIdleMs 0 so a restart collects what no VMI uses). */
  imageGc?: Partial<ImageGcTiming>;
  /** The DataVolume importer (a test seam; the daemon otherwise uses createImporter). */
  importer?: Importer;
}

type CloseHook = { name: string; close: (deadlineMs: number) => Promise<void> | void };

const DIR_HINTS: Record<string, string> = {
  EACCES: 'permission denied; run as root, or use --profile=dev / --state-dir and --run-dir under a writable path',
  EPERM: 'operation not permitted; check ownership and mount options',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a component of the path is a regular file, not a directory',
  EEXIST: 'the path exists and is not a directory',
  ENOSPC: 'no space left on the device',
};

/** Creates `dir` (0750) and proves it writable by creating and removing a temporary entry. */
export function ensureWritableDir(key: string, dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o750 });
    // access(W_OK) lies for root on read-only mounts; a real write does not.
    fs.rmdirSync(fs.mkdtempSync(path.join(dir, '.write-test-')));
  } catch (e) {
    const code = errnoFacts(e)?.code ?? 'error';
    throw new VhError(ErrorCodes.STATE_DIR_UNWRITABLE, `${key} ${dir}: cannot be created or written: ${code}${DIR_HINTS[code] ? ` (${DIR_HINTS[code]})` : ''}`, { key, path: dir, code }, { cause: e });
  }
}

/** A running daemon. Created by startApp(); stopped by stop(). */
export class App {
  readonly readiness = new Readiness({ listeners: 'listeners not bound', probe: 'probe running' });
  private nodeInfo: NodeInfo | null = null;
  private libvirt: LibvirtSupervisor | null = null;
  private libvirtCaps: NodeCapabilities | null = null;
  private vmis: VmiController | null = null;
  private dataVolumes: DataVolumeController | null = null;
  private probeDone!: Promise<void>;
  private native: NativeBinding | null = null;
  private nativeError: string | undefined;
  private readonly closeHooks: CloseHook[] = [];
  private stopping: Promise<void> | null = null;
  private notifiedReady = false;
  private warnedNoNotify = false;
  private readonly startedAt = performance.now();

  constructor(readonly config: Config, readonly logger: Logger, private readonly opts: AppOptions) {}

  /** Registers a close hook; hooks run newest-first. */
  onClose(name: string, close: CloseHook['close']): void {
    this.closeHooks.push({ name, close });
  }

  /** Steps 3-8 of the startup order. */
  async start(): Promise<void> {
    const { config, logger } = this;
    logger.info({ version: this.opts.version, profile: this.opts.profile, threadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4), config }, 'virt-handler starting');

    const loaded = tryLoadNative();
    this.native = loaded.native;
    this.nativeError = loaded.error ?? undefined;
    if (!loaded.native) logger.warn({ error: loaded.error }, 'native addon unavailable: KVM will be reported unavailable');

    const metrics = new Metrics({
      version: this.opts.version,
      nodeName: config.nodeName,
      ready: () => this.readiness.ready,
      nodeInfo: () => this.nodeInfo,
      libvirt: () => this.libvirt?.status() ?? null,
      vmis: () => {
        const m = this.vmis;
        if (!m) return null;
        const phases: Record<string, number> = {};
        for (const v of m.list()) phases[v.status.phase] = (phases[v.status.phase] ?? 0) + 1;
        return { phases, queue: m.queueStats() };
      },
      // Per-VMI domain stats, asked of each launcher at scrape time (bounded: metrics-collector.ts).
      vmiStats: new MetricsCollector({
        targets: () => statsTargets(this.vmis?.connectedLaunchers() ?? []),
        onError: (t, err) => logger.debug({ vmi: `${t.namespace}/${t.name}`, err: err instanceof Error ? err.message : String(err) }, 'vmi stats unavailable'),
      }),
    });

    const http = new HttpServer({
      logger: component(logger, 'http'),
      socketPath: config.http.socket,
      tcp: config.http.tcp,
      readiness: this.readiness,
      nodeInfo: () => this.nodeView(),
      metrics,
      components: () => this.components(),
      // The manager is created after the HTTP listeners (it needs the gRPC socket path only),
      // so the routes read it through this indirection; until then they list nothing.
      vmis: {
        list: (ns?: string) => this.vmis?.list(ns) ?? [],
        get: (ns: string, name: string) => this.vmis?.get(ns, name) ?? null,
      },
      dataVolumes: {
        list: (ns?: string) => this.dataVolumes?.list(ns) ?? [],
        get: (ns: string, name: string) => {
          if (!this.dataVolumes) throw new VhError(ErrorCodes.NOT_READY, 'DataVolumes are not loaded yet');
          return this.dataVolumes.get(ns, name);
        },
      },
    });
    await http.listen(); // cleans up after itself on failure
    this.onClose('http', (ms) => http.close(ms));

    // The image store before the VMIs: their records name its images (GC keeps those).
    fs.mkdirSync(config.images.root, { recursive: true, mode: 0o700 });
    fs.chmodSync(config.images.root, 0o700);
    const images = new ImageStore(config.images.root, component(logger, 'images'), {
      rewrites: config.images.rewrites,
      mirrors: config.images.mirrors,
      ...(config.images.authFile !== null ? { authFile: config.images.authFile } : {}),
      insecureRegistries: config.images.insecureRegistries,
      maxImageSize: config.images.maxImageSize,
    });
    logger.info({ root: images.root, images: images.list().length, insecureRegistries: config.images.insecureRegistries }, 'image store opened');

    // DataVolumes: records loaded (interrupted imports restarted) before VMIs look for their claims.
    const dataVolumes = new DataVolumeController({
      stateDir: config.stateDir,
      claimRoot: config.volumes.claimRoot,
      logger: component(logger, 'datavolumes'),
      claimUsers: (ns, name) => this.vmis?.claimUsers(ns, name) ?? [],
      // The CDI-style importer (http(s), registry through this node's image store, blank, upload,
      // pvc clone); tests may inject a slow one.
      importer: this.opts.seams?.importer ?? createImporter({
        pullImage: async (ref) => {
          const got = await images.ensure(ref, { pullPolicy: 'IfNotPresent' });
          if (got.diskPath === undefined || got.format === undefined) throw new Error(`image ${ref} holds no /disk/ image`);
          return { path: got.diskPath, format: got.format };
        },
      }),
    });
    dataVolumes.start();
    this.dataVolumes = dataVolumes;
    this.onClose('datavolumes', () => dataVolumes.stop());

    // VMIs: records are loaded (and launchers re-adopted) before the gRPC socket accepts
    // launcher connections, so a reconnecting launcher always finds its VMI.
    const vmis = new VmiController({
      stateDir: config.stateDir,
      nodeName: config.nodeName,
      handlerSocket: config.grpc.socket,
      logger: component(logger, 'vmi'),
      logLevel: config.log.level === 'silent' ? 'warn' : config.log.level,
      validation: { imageRoot: config.vmi.imageRoot, hostPathRoots: config.vmi.hostPathRoots },
      nodeLabels: () => this.nodeView()?.labels ?? null,
      allowTcg: config.vmi.allowTcg,
      maxVmis: config.vmi.maxVmis,
      bridge: config.vmi.bridge,
      workers: config.vmi.reconcileWorkers,
      libvirtUri: config.libvirt.uri,
      embedFallback: config.vmi.embeddedLibvirt,
      libvirt: () => this.libvirt?.connection ?? null,
      libvirtSettled: () => {
        const s = this.libvirt?.status(); // null until startLibvirt (which runs only when libvirt.uri is set)
        return s ? s.connects > 0 || s.failedAttempts > 0 : false;
      },
      capabilities: () => this.libvirtCaps,
      nodeInfo: () => this.nodeInfo,
      failpoints: this.opts.seams?.failpoints,
      timing: this.opts.seams?.vmiTiming,
      launcherCommand: this.opts.seams?.launcherCommand,
      images,
      imageGc: this.opts.seams?.imageGc,
      claims: { root: config.volumes.claimRoot, dataVolume: (ns, name) => dataVolumes.readiness(ns, name) },
      objectRoot: config.volumes.objectRoot,
    });
    fs.mkdirSync(config.vmi.imageRoot, { recursive: true, mode: 0o750 });
    vmis.start();
    this.vmis = vmis;
    this.onClose('vmis', () => vmis.stop());

    const protos = loadProtos();
    const grpc = new GrpcServer({
      socketPath: config.grpc.socket,
      logger: component(logger, 'grpc'),
      tcp: config.grpc.tcp,
      nodeInfo: () => this.nodeView(),
      services: () => [
        { definition: protos.vmiService, implementation: vmiServiceImplementation(vmis, component(logger, 'grpc')) },
        { definition: protos.imageService, implementation: imageServiceImplementation({ store: images, users: () => vmis.imageUsers(), log: component(logger, 'grpc') }) },
        { definition: protos.launcherService, implementation: launcherServiceImplementation(vmis, component(logger, 'launchers')) },
        { definition: protos.dataVolumeService, implementation: dataVolumeServiceImplementation(dataVolumes, component(logger, 'grpc')) },
      ],
    });
    this.onClose('grpc', (ms) => grpc.shutdown(ms)); // registered first: a half-bound server is still closed
    await grpc.start().catch((e: unknown) => {
      // Known failures are VhErrors already; a raw fs error (e.g. EACCES on the socket's directory) is still a startup failure.
      if (e instanceof VhError) throw e;
      throw new VhError(ErrorCodes.LISTEN_FAILED, `grpc.socket ${config.grpc.socket}: cannot listen: ${(e as Error).message}`, {}, { cause: e });
    });
    this.readiness.onChange((ready, reasons) => {
      grpc.setServing(ready);
      this.onReadinessChange(ready, reasons);
      if (ready) setImmediate(() => metrics.init()); // off the startup critical path (see Metrics.init)
    });
    this.readiness.ok('listeners');

    this.probeDone = this.probe(); // never rejects; readiness reports its progress
    this.startLibvirt();
  }

  /** Step 8: the libvirt supervisor (nothing when libvirt.uri is off). */
  private startLibvirt(): void {
    const { config, logger } = this;
    const uri = config.libvirt.uri;
    if (uri === null) return;
    const log = component(logger, 'libvirt');
    const required = config.libvirt.required;
    if (required) this.readiness.block('libvirt', `libvirt ${uri}: connecting`);
    const sup = new LibvirtSupervisor({
      uri,
      logger: log,
      lanes: config.libvirt.lanes,
      onConnected: async (conn) => {
        await this.probeDone;
        const info = this.nodeInfo;
        const caps = await readNodeCapabilities(conn, { kvmAvailable: info?.kvm.available ?? false, cpuFlags: info?.cpu.flags ?? [] });
        this.libvirtCaps = caps;
        if (caps.warnings.length > 0) log.warn({ warnings: caps.warnings }, 'libvirt capabilities degraded');
        log.info({ virtType: caps.virtType, reason: caps.virtTypeReason, machines: caps.domains.map((d) => d.machine), labels: Object.keys(caps.labels).length }, 'libvirt capabilities read');
      },
    });
    sup.on('state', (state, status) => {
      if (!required) return;
      if (state === 'connected') this.readiness.ok('libvirt');
      else if (state !== 'stopped') this.readiness.block('libvirt', `libvirt ${uri}: ${state}${status.lastError ? ` (${status.lastError})` : ''}`);
    });
    this.libvirt = sup;
    this.onClose('libvirt', () => sup.stop());
    sup.start();
  }

  /** The node document: the probe's NodeInfo plus libvirt's capability labels and summary. */
  private nodeView(): NodeInfo | null {
    const info = this.nodeInfo;
    if (!info) return null;
    const sup = this.libvirt;
    if (!sup) return info;
    const caps = this.libvirtCaps;
    const status = sup.status();
    return {
      ...info,
      labels: caps ? { ...info.labels, ...caps.labels } : info.labels,
      libvirt: { uri: status.uri, state: status.state, lastError: status.lastError, capabilities: caps ? summarizeCapabilities(caps) : null },
    };
  }

  /** Component states for /readyz (shown whether or not they block readiness). */
  private components(): Record<string, unknown> {
    const sup = this.libvirt;
    if (!sup) return { libvirt: { state: 'off' } };
    const { uri, state, since, lastError, connects, disconnects, nextAttemptAt } = sup.status();
    return { libvirt: { uri, state, required: this.config.libvirt.required, since, lastError, connects, disconnects, nextAttemptAt } };
  }

  private async probe(): Promise<void> {
    const { config, logger } = this;
    try {
      const { info, warnings } = await probeNodeReport({ nodeName: config.nodeName, ...config.probe, native: this.native, nativeError: this.nativeError });
      if (this.stopping) return;
      this.nodeInfo = info;
      if (warnings.length > 0) logger.warn({ warnings }, 'node probe degraded (not blocking)');
      logger.info({ durationMs: Math.round(info.probeDurationMs), kvm: info.kvm.available, schedulable: info.schedulable, reasons: info.reasons }, 'node probe finished');
      this.readiness.ok('probe');
    } catch (e) {
      // probeNode is documented never to reject; if it does, stay alive but not ready.
      logger.error({ err: e }, 'node probe failed');
      this.readiness.block('probe', `probe failed: ${(e as Error).message}`);
    }
  }

  private onReadinessChange(ready: boolean, reasons: readonly string[]): void {
    if (ready) {
      const info = this.nodeInfo;
      const status = info && !info.schedulable ? `ready; node not schedulable: ${info.reasons.join('; ')}` : 'ready';
      this.notify(this.notifiedReady ? `STATUS=${status}` : `READY=1\nSTATUS=${status}`);
      if (!this.notifiedReady) this.logger.info({ startupMs: Math.round(performance.now() - this.startedAt) }, 'ready');
      this.notifiedReady = true;
    } else {
      this.notify(`STATUS=not ready: ${reasons.join('; ')}`);
      this.logger.info({ reasons }, 'not ready');
    }
  }

  /** sd_notify through the addon; without the addon systemd cannot be told, so say so once. */
  private notify(message: string): void {
    if (!this.native) {
      if (process.env.NOTIFY_SOCKET && !this.warnedNoNotify) {
        this.warnedNoNotify = true;
        this.logger.warn('NOTIFY_SOCKET is set but the native addon is unavailable: systemd will not receive READY=1');
      }
      return;
    }
    try {
      this.native.sdNotify(message);
    } catch (e) {
      this.logger.warn({ err: e, message }, 'sd_notify failed');
    }
  }

  /** Drains and closes everything (idempotent; concurrent callers share one shutdown). */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= this.closeAll(reason, this.config.shutdown.drainTimeoutMs);
    return this.stopping;
  }

  /** Closes every registered part newest-first within one shared deadline. Never throws. */
  async closeAll(reason: string, drainTimeoutMs: number): Promise<void> {
    this.logger.info({ reason, drainTimeoutMs }, 'shutting down');
    this.notify('STOPPING=1\nSTATUS=draining');
    this.readiness.block('draining', 'draining');
    const deadline = Date.now() + drainTimeoutMs;
    for (const hook of this.closeHooks.splice(0).reverse()) {
      try {
        await hook.close(Math.max(0, deadline - Date.now()));
      } catch (e) {
        this.logger.error({ err: e, part: hook.name }, 'close failed');
      }
    }
    this.logger.info('stopped');
  }
}

/**
 * Runs the startup order and returns the running App. On failure everything opened so far is
 * closed (sockets removed) and the error is rethrown for main.ts to map to an exit code.
 */
export async function startApp(config: Config, opts: AppOptions): Promise<App> {
  ensureWritableDir('stateDir', config.stateDir);
  ensureWritableDir('runDir', config.runDir);
  const logger = createLogger({ level: config.log.level, nodeName: config.nodeName, destination: opts.logDestination });
  const app = new App(config, logger, opts);
  try {
    await app.start();
  } catch (e) {
    logger.fatal({ err: e }, 'startup failed');
    await app.closeAll('startup failed', 0);
    throw e;
  }
  return app;
}
