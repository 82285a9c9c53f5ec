/**
 * The network-stack interface a unikernel codes against, which every target provides: Morgana's
 * userspace stack (`createStack`, on a TAP device or a VirtualSwitch) and the host-socket stack
 * (`node:net`, `node:dgram`) of `unix --net socket`.
 * @module
 */
import type { Duplex } from 'node:stream';
import { MorganaError } from '../errors.js';
import type { PingResult } from './icmp.js';
import type { Ping6Result } from './icmpv6.js';
import type { UdpHandler } from './udp.js';

/** A bound UDP port, as `stack.udp.bind` returns it. */
export interface UdpSocketV4 {
  readonly port: number;
  send(dst: string, dstPort: number, data: Uint8Array): void;
  onError(listener: (error: MorganaError) => void): void;
  close(): void;
}

/** A listening TCP port. */
export interface TcpListenerV4 {
  close(): unknown;
}

/** TCP as the stack offers it: Node `Duplex` connections. */
export interface TcpV4 {
  /** Calls `onConnection` with each accepted connection. */
  listen(port: number, onConnection: (connection: Duplex) => void, options?: { backlog?: number }): TcpListenerV4 | Promise<TcpListenerV4>;
  /** Opens a connection; resolves once it is established. */
  connect(host: string, port: number): Promise<Duplex>;
}

/** The stack interface shared by every target. */
export interface StackV4 {
  /** The stack's (first) IPv4 address; `'0.0.0.0'` on an IPv6-only stack. */
  readonly address: string;
  /**
   * IPv6, where the stack has it: `addresses()` lists the usable unicast addresses (link-local,
   * static, SLAAC) as RFC 5952 text. UDP and TCP take IPv6 addresses (`'2001:db8::1'`,
   * `'fe80::1'`) wherever the stack has IPv6; Morgana stacks ping over IPv6 with `icmpv6.ping`.
   */
  readonly ipv6?: { addresses(): string[] };
  readonly udp: {
    bind(port: number, handler: UdpHandler): UdpSocketV4;
    send(dst: string, dstPort: number, data: Uint8Array): void;
  };
  readonly icmp: {
    ping(dst: string, options?: { size?: number; timeoutMs?: number; ttl?: number }): Promise<PingResult>;
  };
  /** ICMPv6 echo (`ping6`), where the stack has IPv6. */
  readonly icmpv6?: {
    ping(dst: string, options?: { size?: number; timeoutMs?: number; hopLimit?: number }): Promise<Ping6Result>;
  };
  /** TCP, where the stack has it. */
  readonly tcp?: TcpV4;
  close(): Promise<void>;
}

/** The stack's TCP, or `ERR_TCP_UNAVAILABLE` when this stack has none. */
export function tcpOf(stack: StackV4, what: string): TcpV4 {
  const tcp = (stack as { tcp?: TcpV4 }).tcp;
  if (!tcp || typeof tcp.listen !== 'function' || typeof tcp.connect !== 'function') {
    throw new MorganaError('ERR_TCP_UNAVAILABLE', `${what} needs TCP, and this stack has none (stack.tcp is missing in this build of Morgana)`);
  }
  return tcp;
}
