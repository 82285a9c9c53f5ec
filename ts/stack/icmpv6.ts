/**
 * ICMPv6 (RFC 4443): checksum verification with the IPv6 pseudo-header, echo replies, `ping`,
 * error messages generated under the rules of §2.4 (never about an error or a redirect, never
 * about multicast or link-layer multicast packets except Packet Too Big and parameter problem
 * code 2 for options that ask for it, never to an unspecified or multicast source; token-bucket
 * rate limited), errors received handed to the upper protocol they quote, and Packet Too Big fed
 * to the path MTU cache (RFC 8201). Neighbour discovery and MLD messages are dispatched to the
 * modules that registered their types ({@link Icmpv6.on}).
 * @module
 */
import { type Ipv6AddressLike, formatIpv6Address } from '../address.js';
import type { Clock } from '../clock.js';
import { MorganaError } from '../errors.js';
import {
  ICMPV6,
  NEXT_HEADER_ICMPV6,
  emitEcho,
  emitError,
  parseEcho,
  parseError,
  setIcmpv6Checksum,
  verifyIcmpv6Checksum,
} from '../wire/icmpv6.js';
import {
  type Ipv6Datagram,
  type Ipv6Interface,
  type Ipv6Layer,
  ipv6Bytes,
  isMulticast,
  isUnspecified,
} from './ipv6.js';
import { PingTracker } from './ping.js';
import { TokenBucket } from './token-bucket.js';

/** Result of a successful {@link Icmpv6.ping}. */
export interface Ping6Result {
  /** Round-trip time in milliseconds, on the stack's clock. */
  rttMs: number;
  /** Hop limit of the reply. */
  hopLimit: number;
  /** ICMPv6 bytes in the reply. */
  bytes: number;
  /** Who answered (RFC 5952 text). */
  from: string;
  /** The data the reply carried (a copy), to compare with what was sent. */
  data: Buffer;
}

/** ICMPv6 counters. */
export interface Icmpv6Stats {
  received: number;
  echoRequestsReceived: number;
  echoRepliesSent: number;
  echoRepliesReceived: number;
  errorsSent: number;
  /** Errors not sent because of the rate limit. */
  errorsRateLimited: number;
  /** Errors not sent because RFC 4443 §2.4 (e) forbids them. */
  errorsSuppressed: number;
  errorsReceived: number;
  /** Messages too short for their type, or quoting no IPv6 packet. */
  malformed: number;
  badChecksum: number;
  /** Informational messages of types nobody handles. */
  unknownType: number;
}

/** Options of the ICMPv6 layer. */
export interface Icmpv6Options {
  /** Error messages per second at most (token bucket holding as many; default 100). */
  errorRatePerSecond?: number;
}

/** Options of {@link Icmpv6.send}. */
export interface Icmpv6SendOptions {
  src?: Ipv6AddressLike;
  iface?: Ipv6Interface;
  hopLimit?: number;
  hopByHopOptions?: Uint8Array;
}

/** Receives an ICMPv6 message of one type (checksum already verified). */
export type Icmpv6MessageHandler = (message: Buffer, datagram: Ipv6Datagram) => void;

/**
 * Finds the upper-layer header in a possibly truncated quoted packet (bounded: 8 extension
 * headers). `offset` is where its bytes start, clamped to the quote.
 */
export function quotedUpperLayer(inner: Buffer): { nextHeader: number; offset: number; nonInitialFragment: boolean } {
  let nh = inner[6]!;
  let at = 40;
  for (let i = 0; i < 8; i++) {
    if (nh === 0 || nh === 43 || nh === 60) {
      if (at + 2 > inner.length) break;
      const next = inner[at]!;
      at += (inner[at + 1]! + 1) * 8;
      nh = next;
    } else if (nh === 44) {
      if (at + 8 > inner.length) break;
      const next = inner[at]!;
      const fragmentOffset = inner.readUInt16BE(at + 2) & 0xfff8;
      at += 8;
      nh = next;
      if (fragmentOffset !== 0) return { nextHeader: nh, offset: Math.min(at, inner.length), nonInitialFragment: true };
    } else {
      break;
    }
  }
  return { nextHeader: nh, offset: Math.min(at, inner.length), nonInitialFragment: false };
}

/** The ICMPv6 layer. */
export class Icmpv6 {
  readonly #ip: Ipv6Layer;
  readonly #handlers = new Map<number, Icmpv6MessageHandler[]>();
  readonly #pings: PingTracker<Ping6Result>;
  readonly #errorTokens: TokenBucket;
  readonly #stats: Icmpv6Stats = {
    received: 0,
    echoRequestsReceived: 0,
    echoRepliesSent: 0,
    echoRepliesReceived: 0,
    errorsSent: 0,
    errorsRateLimited: 0,
    errorsSuppressed: 0,
    errorsReceived: 0,
    malformed: 0,
    badChecksum: 0,
    unknownType: 0,
  };

  constructor(ip: Ipv6Layer, clock: Clock, randomUint32: () => number, options: Icmpv6Options = {}) {
    this.#ip = ip;
    this.#pings = new PingTracker(clock, randomUint32);
    this.#errorTokens = new TokenBucket(clock, options.errorRatePerSecond ?? 100);
    ip.on(NEXT_HEADER_ICMPV6, (d) => this.#receive(d));
    ip.icmpErrorSender = (type, code, parameter, packet, context) => this.sendError(type, code, parameter, packet, context);
    // Errors quoting our own echo requests settle the ping they concern.
    ip.onIcmpError(NEXT_HEADER_ICMPV6, (report) => {
      const quoted = report.original.payload;
      if (quoted.length < 8 || quoted[0] !== ICMPV6.ECHO_REQUEST || report.type === ICMPV6.PACKET_TOO_BIG) return;
      this.#pings.reject(quoted.readUInt16BE(4), quoted.readUInt16BE(6), (rttMs) => {
        const code = report.type === ICMPV6.TIME_EXCEEDED ? 'ERR_ICMP_TIME_EXCEEDED' : 'ERR_ICMP_UNREACHABLE';
        const error = new MorganaError(code, `${report.from} reported ICMPv6 type ${report.type} code ${report.code}`);
        return Object.assign(error, { from: report.from, rttMs, icmpType: report.type, icmpCode: report.code });
      });
    });
  }

  /** Registers a handler for messages of `type` (neighbour discovery and MLD use it). */
  on(type: number, handler: Icmpv6MessageHandler): void {
    this.#handlers.set(type, [...(this.#handlers.get(type) ?? []), handler]);
  }

  /** Counters. */
  stats(): Icmpv6Stats {
    return { ...this.#stats };
  }

  /**
   * Sends an ICMPv6 `message` (its checksum is filled here, after source selection). Throws as
   * {@link Ipv6Layer.write} does.
   */
  send(dst: Ipv6AddressLike, message: Buffer, options: Icmpv6SendOptions = {}): void {
    const to = ipv6Bytes(dst, 'dst');
    const src = options.src !== undefined ? ipv6Bytes(options.src, 'src') : this.#ip.sourceFor(to, options.iface);
    setIcmpv6Checksum(message, src, to);
    this.#ip.write(to, NEXT_HEADER_ICMPV6, {
      payloads: [message],
      src,
      iface: options.iface,
      hopLimit: options.hopLimit,
      hopByHopOptions: options.hopByHopOptions,
    });
  }

  /**
   * Sends an echo request of `size` data bytes (a counting pattern) and resolves with the round
   * trip and the data that came back, or rejects with `ERR_PING_TIMEOUT`, `ERR_ICMP_UNREACHABLE`
   * or `ERR_ICMP_TIME_EXCEEDED` (the error carries `from`), or a send error (`ERR_NO_ROUTE`, …).
   * `iface` names the interface for link-local destinations on multi-interface stacks.
   */
  ping(dst: Ipv6AddressLike, options: { size?: number; timeoutMs?: number; hopLimit?: number; iface?: Ipv6Interface } = {}): Promise<Ping6Result> {
    const { size = 56, timeoutMs = 1000, hopLimit, iface } = options;
    let target: Buffer;
    try {
      target = ipv6Bytes(dst, 'dst');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#pings.start(formatIpv6Address(target), size, timeoutMs, (sequence, data) =>
      this.send(target, emitEcho(ICMPV6.ECHO_REQUEST, this.#pings.identifier, sequence, data), { hopLimit, iface }),
    );
  }

  /**
   * Sends an error of `type`/`code` about a received `packet` (quoted up to 1280 bytes in all),
   * unless RFC 4443 §2.4 (e) forbids it or the rate limit is reached. `parameter` is the MTU or
   * the pointer.
   */
  sendError(
    type: number,
    code: number,
    parameter: number,
    packet: Buffer,
    context: { iface: Ipv6Interface; linkMulticast: boolean; evenIfMulticast: boolean },
  ): void {
    if (packet.length < 40) return;
    const src = packet.subarray(8, 24);
    const dst = packet.subarray(24, 40);
    const upper = quotedUpperLayer(packet);
    if (upper.nextHeader === NEXT_HEADER_ICMPV6 && !upper.nonInitialFragment && upper.offset < packet.length) {
      const t = packet[upper.offset]!;
      if (t < 128 || t === ICMPV6.REDIRECT) {
        this.#stats.errorsSuppressed++;
        return;
      }
    }
    const multicastAllowed = type === ICMPV6.PACKET_TOO_BIG || (type === ICMPV6.PARAMETER_PROBLEM && code === 2 && context.evenIfMulticast);
    if ((isMulticast(dst) || context.linkMulticast) && !multicastAllowed) {
      this.#stats.errorsSuppressed++;
      return;
    }
    if (isUnspecified(src) || isMulticast(src)) {
      this.#stats.errorsSuppressed++;
      return;
    }
    if (!this.#errorTokens.take()) {
      this.#stats.errorsRateLimited++;
      return;
    }
    const from = !isMulticast(dst) && this.#ip.isLocal(dst) ? Buffer.from(dst) : this.#ip.route(src, context.iface)?.src;
    if (!from) return;
    try {
      this.send(Buffer.from(src), emitError(type, code, parameter, packet), { src: from, iface: context.iface });
      this.#stats.errorsSent++;
    } catch {
      // No route back to the sender: nothing more to do for an error message.
    }
  }

  #receive(d: Ipv6Datagram): void {
    const m = d.payload;
    this.#stats.received++;
    if (m.length < 4) {
      this.#stats.malformed++;
      return;
    }
    if (!verifyIcmpv6Checksum(m, d.src, d.dst)) {
      this.#stats.badChecksum++;
      return;
    }
    const type = m[0]!;
    if (type === ICMPV6.ECHO_REQUEST) return this.#onEchoRequest(m, d);
    if (type === ICMPV6.ECHO_REPLY) return this.#onEchoReply(m, d);
    if (type >= 1 && type <= 4) return this.#onError(m, d);
    const handlers = this.#handlers.get(type);
    if (handlers) {
      for (const h of handlers) h(m, d);
      return;
    }
    // Unknown informational messages are dropped silently (RFC 4443 §2.4 b); unknown errors too,
    // as there is no upper-layer protocol to hand them to without knowing their layout.
    this.#stats.unknownType++;
  }

  #onEchoRequest(m: Buffer, d: Ipv6Datagram): void {
    if (m.length < 8) {
      this.#stats.malformed++;
      return;
    }
    this.#stats.echoRequestsReceived++;
    if (isUnspecified(d.src)) return;
    const echo = parseEcho(m);
    try {
      // A reply to a multicast request comes from one of our unicast addresses (RFC 4443 §4.2).
      this.send(Buffer.from(d.src), emitEcho(ICMPV6.ECHO_REPLY, echo.identifier, echo.sequence, echo.data), {
        src: d.multicast ? undefined : Buffer.from(d.dst),
        iface: d.iface,
      });
      this.#stats.echoRepliesSent++;
    } catch {
      // No route or source back: the request is dropped.
    }
  }

  #onEchoReply(m: Buffer, d: Ipv6Datagram): void {
    if (m.length < 8) {
      this.#stats.malformed++;
      return;
    }
    const echo = parseEcho(m);
    const answered = this.#pings.resolve(echo.identifier, echo.sequence, (rttMs) => ({
      rttMs,
      hopLimit: d.hopLimit,
      bytes: m.length,
      from: formatIpv6Address(d.src),
      data: Buffer.from(echo.data),
    }));
    if (answered) this.#stats.echoRepliesReceived++;
  }

  #onError(m: Buffer, d: Ipv6Datagram): void {
    this.#stats.errorsReceived++;
    if (m.length < 8 + 40) {
      this.#stats.malformed++;
      return;
    }
    const error = parseError(m);
    const inner = error.invoking;
    if (inner[0]! >> 4 !== 6) {
      this.#stats.malformed++;
      return;
    }
    const original = { src: inner.subarray(8, 24), dst: inner.subarray(24, 40) };
    const upper = quotedUpperLayer(inner);
    const mtu = error.type === ICMPV6.PACKET_TOO_BIG ? error.parameter : undefined;
    // Only packets we sent can teach us a path MTU (RFC 8201 §4 / RFC 5927).
    if (mtu !== undefined && this.#ip.isLocal(original.src)) this.#ip.updatePathMtu(original.dst, mtu);
    if (upper.nonInitialFragment) return;
    this.#ip.reportIcmpError({
      type: error.type,
      code: error.code,
      from: formatIpv6Address(d.src),
      mtu,
      original: { ...original, nextHeader: upper.nextHeader, payload: inner.subarray(upper.offset) },
    });
  }
}
