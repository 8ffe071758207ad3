/**
 * What the control layer needs of a launcher's connection, and what it offers the transport that
 * carries it. The gRPC Launcher service (src/grpc/launcher-service.ts) implements
 * LauncherChannel and calls a LauncherRegistry; control never imports a transport.
 */
import type { CommandBody, DomainStatus, StatsReport } from '../../launcher-protocol/messages';

/** One registered launcher connection. */
export interface LauncherChannel {
  readonly uid: string;
  readonly pid: number;
  readonly isOpen: boolean;
  /** When the launcher last proved it is alive (ms since epoch). */
  readonly lastHeartbeatAt: number;
  /** Sends a command; resolves when the launcher reports success, rejects with its error or a deadline. */
  send(body: CommandBody, timeoutMs: number): Promise<void>;
  /** Asks for the domain's statistics: the launcher's answer, checked by the transport (launcher-protocol/validate.ts). */
  stats(timeoutMs: number): Promise<StatsReport>;
  /** Closes the connection (the launcher reconnects if it still lives). */
  end(): void;
}

/** What the launcher transport asks of the VMI controller. */
export interface LauncherRegistry {
  /**
   * Checks `token` for `uid` and returns a fresh session token whose hash is already durable;
   * throws VhError UNAUTHENTICATED/NOT_FOUND otherwise.
   */
  authenticate(uid: string, token: string, pid: number): Promise<string>;
  attached(uid: string, channel: LauncherChannel): void;
  detached(uid: string, channel: LauncherChannel, reason: string): void;
  status(uid: string, channel: LauncherChannel, status: DomainStatus): void;
}
