/**
 * `vhctl console NAME`: the VMI's serial console over VmiService.Console.
 *
 * TTY stdin: raw mode (restored on every way out: detach, stream end, errors, signals, exit),
 * keystrokes go to the guest as they are typed, Ctrl-] (0x1d) detaches as in virsh.
 * Pipe stdin: its bytes are sent unchanged (no escape key); once it ends our side is closed
 * and vhctl exits when the daemon ends the stream or its output has gone quiet (DRAIN_IDLE_MS).
 */
import * as grpc from '@grpc/grpc-js';
import { EXIT, describeCallError, newClient, preflight, type CommonOptions } from './common';

/** Ctrl-]: the virsh/telnet escape character. */
export const ESCAPE_BYTE = 0x1d;
/** Pipe mode: after stdin ended, exit once the console printed nothing for this long. */
export const DRAIN_IDLE_MS = 1000;

export interface ConsoleOptions extends CommonOptions {
  namespace: string;
  name: string;
}

/**
 * Splits one chunk of keyboard input at the escape byte: what goes to the guest, and whether
 * the operator asked to detach (bytes after the escape are dropped).
 */
export function scanEscape(chunk: Uint8Array, escape: number = ESCAPE_BYTE): { forward: Buffer; detach: boolean } {
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const at = buf.indexOf(escape);
  return at < 0 ? { forward: buf, detach: false } : { forward: buf.subarray(0, at), detach: true };
}

/** Only what the console needs from a TTY stdin (so tests and pipes need no real terminal). */
interface RawCapable {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

/** Puts a TTY into raw mode; the returned function restores it (idempotent). */
export function enterRaw(stdin: RawCapable): () => void {
  if (!stdin.isTTY || !stdin.setRawMode) return () => {};
  stdin.setRawMode(true);
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    try {
      stdin.setRawMode!(false);
    } catch {
      // the terminal is gone (hangup): nothing to restore
    }
  };
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export async function cmdConsole(opts: ConsoleOptions): Promise<number> {
  preflight(opts.socket);
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  const client = newClient(opts.socket, 'VmiClient');
  const consoleFn = (client as unknown as Record<string, (o: grpc.CallOptions) => grpc.ClientDuplexStream<object, { data: Buffer }>>).Console!;
  const call = consoleFn.call(client, {});
  const target = `${opts.namespace}/${opts.name}`;
  call.write({ ref: { namespace: opts.namespace, name: opts.name } });

  const restore = enterRaw(stdin);
  const onExit = (): void => restore();
  process.once('exit', onExit);
  if (tty) process.stderr.write(`Connected to vmi ${target}\nEscape character is ^]\n`);

  let finished = false;
  let idle: NodeJS.Timeout | undefined;
  let limit: NodeJS.Timeout | undefined;
  const signalHandlers = new Map<NodeJS.Signals, () => void>();

  const code = await new Promise<number>((resolve) => {
    const finish = (exitCode: number, note?: string): void => {
      if (finished) return;
      finished = true;
      clearTimeout(idle);
      clearTimeout(limit);
      for (const [sig, h] of signalHandlers) process.off(sig, h);
      stdin.off('data', onInput);
      stdin.off('end', onInputEnd);
      restore();
      stdin.pause();
      if (!tty) stdin.destroy();
      call.removeAllListeners('data');
      call.on('error', () => {}); // our own cancel surfaces as CANCELLED
      call.cancel();
      client.close();
      // libuv's raw mode keeps ONLCR, so '\n' already starts a fresh line on the terminal.
      if (note) process.stderr.write(`${tty ? '\n' : ''}${note}\n`);
      // Let everything already written to stdout reach it before reporting the exit code.
      process.stdout.write('', () => resolve(exitCode));
    };
    // The quiet period only counts once the daemon has answered (headers or output): a slow
    // connect must not pass for a console that has nothing more to say.
    let established = false;
    let inputEnded = false;
    const armIdle = (): void => {
      if (!established || !inputEnded) return;
      clearTimeout(idle);
      idle = setTimeout(() => finish(EXIT.OK), DRAIN_IDLE_MS);
    };

    function onInput(chunk: Buffer | string): void {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (!tty) {
        call.write({ data: bytes });
        return;
      }
      const { forward, detach } = scanEscape(bytes);
      if (forward.length) call.write({ data: forward });
      if (detach) finish(EXIT.OK, `detached from vmi ${target}`);
    }
    function onInputEnd(): void {
      inputEnded = true;
      call.end();
      armIdle();
    }

    call.on('metadata', () => {
      established = true;
      armIdle();
    });
    call.on('data', (out: { data: Buffer }) => {
      established = true;
      if (out.data?.length) process.stdout.write(out.data);
      armIdle();
    });
    call.on('end', () => finish(EXIT.OK, tty ? `console of vmi ${target} closed by virt-handler` : undefined));
    call.on('error', (err: grpc.ServiceError) => {
      const msg = describeCallError(err, { socket: opts.socket, timeoutMs: opts.timeoutMs, subject: `vmi ${target}`, action: 'attach the console of' });
      finish(EXIT.ERROR, `vhctl: ${msg}`);
    });
    for (const sig of SIGNALS) {
      const h = (): void => finish(EXIT.ERROR, `vhctl: console interrupted by ${sig}`);
      signalHandlers.set(sig, h);
      process.on(sig, h);
    }
    if (opts.timeoutSet) limit = setTimeout(() => finish(EXIT.OK, `vhctl: console closed after --timeout ${opts.timeoutMs} ms`), opts.timeoutMs);
    stdin.on('data', onInput);
    stdin.on('end', onInputEnd);
    stdin.resume();
  });
  process.off('exit', onExit);
  return code; // failures were already printed by finish()
}
