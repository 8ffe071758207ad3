/**
 * One VMI's domain, run on the handler's behalf: prepares its disks, defines and boots it (or
 * adopts it when a previous launcher left it running), turns libvirt lifecycle events into
 * DomainStatus, and executes the handler's commands. It never decides a VM's fate itself: a
 * domain that stops or disappears is reported and the launcher keeps waiting for teardown.
 *
 * Domain handles are looked up by name per operation instead of held: the libvirt connection is
 * replaced after libvirtd restarts (LibvirtSupervisor), which would invalidate held handles.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EventEmitter } from 'node:events';
import type { LauncherLogger as Logger } from './log';
import type { Connection } from '../libvirt/connection';
import type { Domain } from '../libvirt/domain';
import { LibvirtError } from '../libvirt/errors';
import { undefineDomain } from '../libvirt/undefine';
import type { LifecycleEvent } from '../libvirt/events';
import { LibvirtSupervisor, type LibvirtState, type LibvirtStatus, type SupervisorOptions } from '../libvirt/supervisor';
import type { Backoff } from '../util/backoff';
import { type Command, type CommandResult, type DiskPrep, type DomainStatus, STATS_GROUPS, type StartDomain, type StartDomainMsg, emptyStatus } from '../launcher-protocol/messages';
import { ProtocolViolation, checkStartDomain } from '../launcher-protocol/validate';
import { statsToWire } from './stats-report';

type SupervisorLogger = SupervisorOptions['logger'];

/** Grace period for SIGTERM before any Shutdown command said otherwise (KubeVirt's default terminationGracePeriodSeconds). */
export const DEFAULT_GRACE_SECONDS = 30;
/** How long a command waits for libvirt to come (back) before failing. */
export const LIBVIRT_WAIT_MS = 30_000;
const ACTIVE_STATES = new Set(['running', 'paused', 'blocked', 'pmsuspended', 'shutdown']);

export interface DomainRunnerOptions {
  vmiDir: string;
  logger: Logger;
  libvirtBackoff?: Partial<Backoff>;
}

export interface DomainRunnerEvents {
  /** The status changed (or was asked for); send it to the handler. */
  status: [DomainStatus];
}

export interface DomainRunner {
  on<K extends keyof DomainRunnerEvents>(event: K, listener: (...args: DomainRunnerEvents[K]) => void): this;
  emit<K extends keyof DomainRunnerEvents>(event: K, ...args: DomainRunnerEvents[K]): boolean;
}

type Phase = 'idle' | 'starting' | 'started' | 'tearingDown' | 'tornDown';

export class DomainRunner extends EventEmitter {
  private phase: Phase = 'idle';
  private plan: DiskPrep[] = [];
  private name = '';
  private supervisor: LibvirtSupervisor | null = null;
  private current: DomainStatus = emptyStatus();
  private lastEvent = '';
  private graceSeconds = DEFAULT_GRACE_SECONDS;
  private shutdownDeadline: number | null = null;
  private shutdownWatch: Promise<void> | null = null;
  private uri = '';
  /** Status refreshes run one at a time so they reach the handler in event order. */
  private chain: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(private readonly opts: DomainRunnerOptions) {
    super();
    this.log = opts.logger;
  }

  /** The latest status (what a re-registered link sends first); never carries the XML again. */
  status(): DomainStatus {
    return { ...this.current, domainXml: '' };
  }

  /** Whether teardown finished (the caller then exits 0 once the result is out). */
  get tornDown(): boolean {
    return this.phase === 'tornDown';
  }

  /** Executes one command; never throws: every outcome is a CommandResult. */
  async handle(cmd: Command): Promise<CommandResult> {
    const id = typeof cmd?.id === 'string' ? cmd.id : '';
    try {
      if (cmd.getStats) return { id, ...(await this.stats()) };
      const error = await this.dispatch(cmd);
      return { id, ok: error === null, error: error ?? '' };
    } catch (e) {
      const message = describe(e);
      this.log.warn({ id, err: e }, 'command failed');
      return { id, ok: false, error: message };
    }
  }

  /** Returns null on success or the error text. */
  private async dispatch(cmd: Command): Promise<string | null> {
    if (this.phase === 'tearingDown' || this.phase === 'tornDown') return 'the launcher is tearing down';
    if (cmd.start) return this.start(cmd.start);
    if (cmd.getStatus) {
      if (this.phase === 'started') await this.refresh();
      else this.emit('status', this.status());
      return null;
    }
    if (cmd.teardown) return this.teardown();
    if (cmd.pause) return this.withDomain('pause', (d) => d.suspend());
    if (cmd.unpause) return this.withDomain('unpause', (d) => d.resume());
    if (cmd.softReboot) return this.withDomain('soft_reboot', (d) => d.reboot());
    if (cmd.destroy) return this.withDomain('destroy', (d) => d.destroy());
    if (cmd.shutdown) {
      const g = cmd.shutdown.gracePeriodSeconds;
      if (!Number.isInteger(g) || g < 0) return `shutdown: grace_period_seconds must be >= 0, got ${g}`;
      this.graceSeconds = g;
      return this.requestShutdown(g);
    }
    return 'command carries no known cmd (a newer handler?)';
  }

  // ------------------------------------------------------------------------------------------
  // start

  private async start(msg: StartDomainMsg): Promise<string | null> {
    if (this.phase === 'starting') return 'start: a start is already in progress';
    const name = domainNameOf(typeof msg.domainXml === 'string' ? msg.domainXml : '');
    if (this.phase === 'started') {
      // A handler that restarted may send StartDomain again: the same domain is not an error.
      return name === this.name ? null : `start: this launcher already runs domain '${this.name}'`;
    }
    let s: StartDomain;
    try {
      s = checkStartDomain(msg, this.opts.vmiDir);
    } catch (e) {
      if (e instanceof ProtocolViolation) return `start: ${e.message}`;
      throw e;
    }
    if (!name) return 'start: domain_xml has no <name>';
    const plan = s.disks;
    this.phase = 'starting';
    this.name = name;
    this.plan = plan;
    this.uri = s.libvirtUri;
    const t0 = Date.now();
    try {
      if (plan.length > 0) await (await diskPrep()).prepareDisks(plan, { vmiDir: this.opts.vmiDir, logger: this.log });
      prepareEmbedRoot(s.libvirtUri, this.opts.vmiDir);
      const sup = this.supervise(s.libvirtUri);
      const conn = await sup.whenConnected(LIBVIRT_WAIT_MS);
      const adopted = await this.defineAndBoot(conn, s.domainXml);
      this.phase = 'started';
      this.log.info({ domain: name, adopted, ms: Date.now() - t0 }, adopted ? 'adopted the running domain' : 'domain started');
      // No lifecycle event marks an adoption; the log line above does.
      await this.refresh(undefined, true);
      return null;
    } catch (e) {
      this.phase = 'idle';
      await this.supervisor?.stop();
      this.supervisor = null;
      this.setStatus({ ...this.current, error: describe(e) });
      throw e;
    }
  }

  private supervise(uri: string): LibvirtSupervisor {
    // The embedded driver lives in this process: keepalive does not apply (Connection skips it).
    // LibvirtSupervisor types its logger as the daemon's pino Logger but only calls debug/info/warn,
    // which the launcher's logger has with the same signatures.
    const logger = this.log.child({ component: 'libvirt' }) as unknown as SupervisorLogger;
    const sup = new LibvirtSupervisor({ uri, logger, lanes: 2, ...(this.opts.libvirtBackoff ? { backoff: this.opts.libvirtBackoff } : {}) });
    sup.on('lifecycle', (ev: LifecycleEvent) => {
      if (ev.domain !== this.name) return;
      void this.refresh(`${ev.event}/${ev.detail}`);
    });
    sup.on('state', (state: LibvirtState, st: LibvirtStatus) => this.onLibvirtState(state, st));
    this.supervisor = sup;
    sup.start();
    return sup;
  }

  private onLibvirtState(state: LibvirtState, st: LibvirtStatus): void {
    if (this.phase !== 'started') return;
    if (state === 'connected') void this.refresh();
    else if (state !== 'stopped') this.setStatus({ ...this.current, domainXml: '', error: `libvirt unavailable: ${st.lastError ?? state}` });
  }

  /** Defines and boots the domain, or adopts it when it already runs; returns whether it adopted. */
  private async defineAndBoot(conn: Connection, xml: string): Promise<boolean> {
    const existing = await lookup(conn, this.name);
    if (existing) {
      try {
        // Same name is not enough: a domain left by an earlier VMI of the same namespace/name
        // (another uid) must never be adopted. The VMI uid is in the domain's <vh:uid> metadata
        // (its UUID is the firmware UUID, which successive VMIs of one VM share).
        const uidOf = (x: string): string | undefined => /<vh:uid>([0-9a-f-]{36})<\/vh:uid>/.exec(x)?.[1];
        const wanted = uidOf(xml);
        const has = wanted ? uidOf(await existing.getXMLDesc()) : undefined;
        if (wanted && has !== wanted) {
          this.log.warn({ domain: this.name, uid: has ?? null, wanted }, 'a stale domain with this name belongs to another VMI; destroying it');
          const st = await existing.getState();
          if (st.state !== 'shutoff') await existing.destroy();
          await undefineDomain(existing);
        } else {
          const st = await existing.getState();
          if (ACTIVE_STATES.has(st.state)) return true;
        }
      } finally {
        await existing.free();
      }
    }
    const dom = await conn.defineXML(xml);
    try {
      await dom.create();
    } finally {
      await dom.free();
    }
    return false;
  }

  // ------------------------------------------------------------------------------------------
  // status

  /** Re-reads the domain's state and emits it (queued behind earlier refreshes). */
  private refresh(lastEvent?: string, withXml = false): Promise<void> {
    if (lastEvent) this.lastEvent = lastEvent;
    const run = async (): Promise<void> => {
      if (this.phase === 'tornDown') return;
      const conn = this.supervisor?.connection;
      if (!conn) {
        this.setStatus({ ...this.current, domainXml: '', lastEvent: this.lastEvent, error: `libvirt unavailable: ${this.supervisor?.status().lastError ?? 'not connected'}` });
        return;
      }
      const dom = await lookup(conn, this.name);
      if (!dom) {
        this.setStatus({ state: '', reason: '', domainUuid: '', lastEvent: this.lastEvent, error: `domain '${this.name}' no longer exists`, domainXml: '' });
        return;
      }
      try {
        const st = await dom.getState();
        const xml = withXml ? await dom.getXMLDesc() : '';
        this.setStatus({ state: st.state, reason: st.reasonName ?? String(st.reason), domainUuid: dom.uuid, lastEvent: this.lastEvent, error: '', domainXml: xml });
      } finally {
        await dom.free();
      }
    };
    const p = this.chain.then(run).catch((e: unknown) => {
      this.log.warn({ err: e }, 'reading the domain state failed');
      this.setStatus({ ...this.current, domainXml: '', error: `reading domain state failed: ${describe(e)}` });
    });
    this.chain = p;
    return p;
  }

  private setStatus(s: DomainStatus): void {
    this.current = s;
    this.emit('status', s);
  }

  // ------------------------------------------------------------------------------------------
  // stats

  /**
   * The domain's statistics (launcher.proto DomainStats): virDomainListGetStats for this one
   * domain (a scrape costs each launcher its own domain, not every domain on the node). With
   * QEMU, NOWAIT skips the balloon/block queries that would wait behind a running domain job (a
   * migration) instead of blocking the scrape; the test driver refuses that flag.
   */
  private async stats(): Promise<Omit<CommandResult, 'id'>> {
    const fail = (error: string): Omit<CommandResult, 'id'> => ({ ok: false, error });
    if (this.phase === 'tearingDown' || this.phase === 'tornDown') return fail('the launcher is tearing down');
    if (this.phase !== 'started') return fail('get_stats: no domain yet (send StartDomain first)');
    const conn = await this.connection('get_stats');
    const dom = await lookup(conn, this.name);
    if (!dom) return fail(`get_stats: domain '${this.name}' does not exist`);
    try {
      const mine = await dom.getStats(STATS_GROUPS, this.uri.startsWith('qemu') ? ['nowait'] : []);
      if (!mine) return fail(`get_stats: libvirt returned no statistics for '${this.name}'`);
      return { ok: true, error: '', stats: statsToWire(mine, Date.now()) };
    } finally {
      await dom.free().catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------------------------------
  // commands on the domain

  private async withDomain(what: string, fn: (d: Domain) => Promise<void>): Promise<string | null> {
    if (this.phase !== 'started') return `${what}: no domain yet (send StartDomain first)`;
    const conn = await this.connection(what);
    const dom = await lookup(conn, this.name);
    if (!dom) return `${what}: domain '${this.name}' does not exist`;
    try {
      await fn(dom);
    } finally {
      await dom.free();
    }
    return null;
  }

  private async connection(what: string): Promise<Connection> {
    const sup = this.supervisor;
    if (!sup) throw new Error(`${what}: libvirt not connected`);
    try {
      return await sup.whenConnected(LIBVIRT_WAIT_MS);
    } catch (e) {
      throw new Error(`${what}: libvirt unavailable: ${describe(e)}`, { cause: e });
    }
  }

  /**
   * virDomainShutdown; answers once libvirt accepted the request. The grace period is enforced
   * in the background (destroy when the domain is still not off at the deadline), so the
   * result does not wait for the guest: the handler follows the statuses.
   */
  private async requestShutdown(graceSeconds: number): Promise<string | null> {
    if (this.phase !== 'started') return 'shutdown: no domain yet (send StartDomain first)';
    const state = await this.stateOf(await this.connection('shutdown'));
    if (state === null || !ACTIVE_STATES.has(state)) return null; // already off (or gone): nothing to do
    const err = await this.withDomain('shutdown', (d) => d.shutdown());
    if (err) return err;
    const deadline = Date.now() + graceSeconds * 1000;
    // A second Shutdown can only shorten the wait.
    this.shutdownDeadline = this.shutdownDeadline === null ? deadline : Math.min(this.shutdownDeadline, deadline);
    this.shutdownWatch ??= this.enforceGrace().finally(() => {
      this.shutdownWatch = null;
      this.shutdownDeadline = null;
    });
    return null;
  }

  private async enforceGrace(): Promise<void> {
    const off = async (): Promise<boolean> => {
      try {
        const s = await this.stateOf(await this.connection('shutdown'));
        return s === null || !ACTIVE_STATES.has(s);
      } catch (e) {
        this.log.debug({ err: e }, 'state check during shutdown failed');
        return false;
      }
    };
    while (this.phase === 'started' && this.shutdownDeadline !== null && Date.now() < this.shutdownDeadline) {
      await sleep(Math.min(250, Math.max(0, this.shutdownDeadline - Date.now())));
      if (await off()) return;
    }
    if (this.phase !== 'started' || (await off())) return;
    this.log.warn('guest did not power off within the grace period; destroying it');
    const err = await this.withDomain('shutdown', (d) => d.destroy()).catch((e: unknown) => describe(e));
    if (err) this.log.error({ error: err }, 'destroying the domain after the grace period failed');
  }

  private async stateOf(conn: Connection): Promise<string | null> {
    const dom = await lookup(conn, this.name);
    if (!dom) return null;
    try {
      return (await dom.getState()).state;
    } finally {
      await dom.free();
    }
  }

  private async teardown(): Promise<string | null> {
    if (this.phase === 'starting') return 'teardown: a start is in progress; retry when it answered';
    const wasStarted = this.phase === 'started';
    this.phase = 'tearingDown';
    try {
      if (wasStarted) {
        const conn = await this.connection('teardown');
        const dom = await lookup(conn, this.name);
        if (dom) {
          try {
            const st = await dom.getState();
            if (ACTIVE_STATES.has(st.state)) await dom.destroy();
            await undefineDomain(dom).catch((e: unknown) => {
              if (!isNoDomain(e)) throw e;
            });
          } finally {
            await dom.free();
          }
        }
        await this.supervisor?.stop();
        this.supervisor = null;
      }
      const removed = this.plan.length > 0 ? await (await diskPrep()).removePreparedDisks(this.plan, this.opts.vmiDir) : [];
      this.log.info({ domain: this.name, removed }, 'torn down');
      this.phase = 'tornDown';
      return null;
    } catch (e) {
      // Still the handler's: it can retry teardown.
      this.phase = wasStarted ? 'started' : 'idle';
      throw e;
    }
  }

  /**
   * SIGTERM: shut the guest down within the last known grace period (destroy after it), then
   * let the caller exit. The domain stays defined and its disks stay: teardown is the
   * handler's. A launcher without a running domain has nothing to do.
   */
  async stopForSignal(): Promise<void> {
    if (this.phase === 'started') {
      this.log.info({ graceSeconds: this.graceSeconds }, 'SIGTERM: shutting the guest down');
      const r = await this.handle({ id: 'sigterm', shutdown: { gracePeriodSeconds: this.graceSeconds } });
      if (!r.ok) this.log.warn({ error: r.error }, 'SIGTERM shutdown failed');
      await this.shutdownWatch;
    }
    await this.close();
  }

  /** Stops the libvirt supervisor (the domain is left as it is). */
  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    await this.supervisor?.stop();
    this.supervisor = null;
  }
}

/** The domain's <name> (first one: the domain's own precedes any device's). */
export function domainNameOf(xml: string): string | null {
  const m = /<name>\s*([^<]+?)\s*<\/name>/.exec(xml);
  return m ? decodeXmlText(m[1] as string) : null;
}

function decodeXmlText(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

function isNoDomain(e: unknown): boolean {
  return e instanceof LibvirtError && e.codeName === 'VIR_ERR_NO_DOMAIN';
}

async function lookup(conn: Connection, name: string): Promise<Domain | null> {
  try {
    return await conn.lookupByName(name);
  } catch (e) {
    if (isNoDomain(e)) return null;
    throw e;
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Loaded only for a VMI with disks to prepare: it brings child_process and fs/promises into the launcher. */
function diskPrep(): Promise<typeof import('./disk-prep')> {
  return import('./disk-prep');
}

/**
 * For qemu:///embed?root=DIR (the handler's fallback when the node has no reachable libvirtd):
 * the driver reads DIR/etc/qemu.conf. QEMU runs as root without a security driver (as with the
 * node libvirtd this project configures) and console and logs go to files (no virtlogd). The
 * handler picks a short root under its runtime directory (unix socket paths live below it).
 */
export function prepareEmbedRoot(uri: string, vmiDir: string): void {
  const m = /^qemu:\/\/\/embed\?root=(.+)$/.exec(uri);
  if (!m) return;
  const root = decodeURIComponent(m[1] as string);
  if (!path.isAbsolute(root) || root.split('/').includes('..') || root === vmiDir) throw new Error(`embedded libvirt root ${root} must be an absolute path of its own without '..'`);
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true, mode: 0o750 });
  const conf = ['user = "root"', 'group = "root"', 'dynamic_ownership = 0', 'remember_owner = 0', 'security_driver = "none"', 'stdio_handler = "file"', ''].join('\n');
  fs.writeFileSync(path.join(root, 'etc', 'qemu.conf'), conf, { mode: 0o640 });
}
