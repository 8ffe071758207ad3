/**
 * Shared by test/unit/launcher.test.ts and test/libvirt/launcher.test.ts (not a test file).
 */
/* eslint-disable @typescript-eslint/no-explicit-any */
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/grpc/proto';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Received {
  at: number;
  stream: number;
  msg: Record<string, any>;
}

/**
 * A handler double for launcher tests: serves Launcher.Connect on a unix socket and checks
 * Register like the real handler (the one-time spawn token once, the session token after).
 */
export class FakeHandler {
  readonly received: Received[] = [];
  readonly refused: Array<{ at: number; token: string }> = [];
  private server: grpc.Server | null = null;
  private call: grpc.ServerDuplexStream<any, any> | null = null;
  private streams = 0;
  private spawnUsed = false;
  private nextId = 0;

  constructor(
    readonly socket: string,
    readonly uid: string,
    private spawnToken: string,
    readonly sessionToken = 'session-' + Math.random().toString(36).slice(2),
    readonly heartbeatMs = 200,
  ) {}

  /** The handler spawns a (new) launcher with a fresh one-time token. */
  expectSpawn(token: string): void {
    this.spawnToken = token;
    this.spawnUsed = false;
  }

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(loadProtos().launcherService, {
      connect: (call: grpc.ServerDuplexStream<any, any>) => {
        const stream = ++this.streams;
        let registered = false;
        call.on('data', (msg: Record<string, any>) => {
          this.received.push({ at: Date.now(), stream, msg });
          if (registered) return;
          const reg = msg.register;
          const ok =
            reg && reg.vmiUid === this.uid && ((reg.token === this.spawnToken && !this.spawnUsed) || reg.token === this.sessionToken);
          if (!ok) {
            this.refused.push({ at: Date.now(), token: reg?.token ?? '' });
            call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'registration refused' });
            return;
          }
          if (reg.token === this.spawnToken) this.spawnUsed = true;
          registered = true;
          this.call = call;
          call.write({ registered: { sessionToken: this.sessionToken, heartbeatIntervalMs: this.heartbeatMs } });
        });
        call.on('end', () => call.end());
        call.on('error', () => undefined);
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${this.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /** Ends the current stream from the handler's side (as a handler restart would). */
  drop(): void {
    const c = this.call;
    this.call = null;
    c?.end();
  }

  /** Sends a command; resolves with its CommandResult. */
  async command(cmd: Record<string, unknown>, timeoutMs = 30_000): Promise<{ id: string; ok: boolean; error: string }> {
    const id = `c${++this.nextId}`;
    const from = this.received.length;
    assert.ok(this.call, 'no registered launcher stream');
    this.call.write({ command: { id, ...cmd } });
    const r = await this.waitFor((m) => m.msg.result?.id === id, timeoutMs, `result of ${JSON.stringify(cmd).slice(0, 60)}`, from);
    return r.msg.result;
  }

  /** Resolves with the first message (at index >= from) matching `pred`. */
  async waitFor(pred: (r: Received) => boolean, timeoutMs: number, what: string, from = 0): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${JSON.stringify(this.received.slice(-5).map((r) => r.msg))}`);
      await sleep(20);
    }
  }

  statuses(from = 0): Array<Record<string, any>> {
    return this.received.slice(from).filter((r) => r.msg.status).map((r) => r.msg.status);
  }

  registers(): Received[] {
    return this.received.filter((r) => r.msg.register);
  }

  async stop(): Promise<void> {
    this.server?.forceShutdown();
    this.server = null;
  }
}

