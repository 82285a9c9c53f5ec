/**
 * ICMPv4 (RFC 792, RFC 1122 §3.2.2): echo replies for any size (fragmented echoes included),
 * `ping` and `traceroute`, and rate-limited error messages (port and protocol unreachable,
 * time exceeded, fragmentation needed) that are never sent about ICMP errors, non-initial
 * fragments or broadcasts. Errors received are handed to the protocol they concern.
 * @module
 */
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import type { Clock } from '../clock.js';
import { MorganaError } from '../errors.js';
import type { Ipv4Datagram, Ipv4Interface, Ipv4Layer } from './ipv4.js';
import { PingTracker } from './ping.js';
import { TokenBucket } from './token-bucket.js';
import {
  ICMPV4,
  IP_PROTOCOL_ICMP as PROTO_ICMP,
  echoHeader,
  echoIdentifier,
  echoSequence,
  errorMessage,
  icmpv4Valid,
  parseIcmpv4Error,
} from '../wire/icmpv4.js';

const { ECHO_REPLY, UNREACHABLE, ECHO_REQUEST, TIME_EXCEEDED, PARAMETER_PROBLEM, TIMESTAMP, TIMESTAMP_REPLY } = ICMPV4;

/** Result of a successful {@link Icmp.ping}. */
export interface PingResult {
  /** Round-trip time in milliseconds, measured on the stack's clock. */
  rttMs: number;
  /** TTL of the reply. */
  ttl: number;
  /** ICMP bytes in the reply. */
  bytes: number;
  /** Who answered. */
  from: string;
}

/** One hop of a {@link Icmp.traceroute}. */
export interface TracerouteHop {
  ttl: number;
  /** The router (or the destination) that answered, or undefined after a timeout. */
  address: string | undefined;
  rttMs: number | undefined;
}

/** ICMP counters. */
export interface IcmpStats {
  echoRequestsReceived: number;
  echoRepliesSent: number;
  errorsSent: number;
  errorsRateLimited: number;
  errorsReceived: number;
  malformed: number;
}

/** Options of the ICMP layer. */
export interface IcmpOptions {
  /** ICMP errors sent per second at most (token bucket, default 100). */
  errorRatePerSecond?: number;
}

/** The ICMPv4 layer. */
export class Icmp {
  readonly #ip: Ipv4Layer;
  readonly #pings: PingTracker<PingResult>;
  readonly #errorTokens: TokenBucket;
  readonly #stats: IcmpStats = { echoRequestsReceived: 0, echoRepliesSent: 0, errorsSent: 0, errorsRateLimited: 0, errorsReceived: 0, malformed: 0 };

  constructor(ip: Ipv4Layer, clock: Clock, randomUint32: () => number, options: IcmpOptions = {}) {
    this.#ip = ip;
    this.#pings = new PingTracker(clock, randomUint32);
    this.#errorTokens = new TokenBucket(clock, options.errorRatePerSecond ?? 100);
    ip.on(PROTO_ICMP, (d) => this.#receive(d));
    ip.icmpErrorSender = (kind, packet, iface, mtu) => {
      const [type, code] = kind === 'time-exceeded' ? [TIME_EXCEEDED, 0] : kind === 'protocol-unreachable' ? [UNREACHABLE, 2] : [UNREACHABLE, 4];
      this.sendError(type, code, packet, iface, mtu);
    };
    // Replies to our traceroute probes come back as time-exceeded errors quoting an echo request.
    ip.onIcmpError(PROTO_ICMP, (report) => {
      const quoted = report.original.payload;
      if (quoted.length < 8 || quoted[0] !== ECHO_REQUEST) return;
      this.#pings.reject(echoIdentifier(quoted), echoSequence(quoted), (rttMs) => {
        const error = new MorganaError(report.type === TIME_EXCEEDED ? 'ERR_ICMP_TIME_EXCEEDED' : 'ERR_ICMP_UNREACHABLE', `${report.from} reported type ${report.type} code ${report.code}`);
        return Object.assign(error, { from: report.from, rttMs, icmpType: report.type });
      });
    });
  }

  /** Counters. */
  stats(): IcmpStats {
    return { ...this.#stats };
  }

  /**
   * Sends an echo request of `size` data bytes and resolves with the round trip, or rejects
   * with `ERR_PING_TIMEOUT`, `ERR_ICMP_TIME_EXCEEDED` (when `ttl` ran out; the error has `from`)
   * or `ERR_ICMP_UNREACHABLE`.
   */
  ping(dst: string, options: { size?: number; timeoutMs?: number; ttl?: number } = {}): Promise<PingResult> {
    const { size = 56, timeoutMs = 1000, ttl } = options;
    const target = parseIpv4Address(dst);
    return this.#pings.start(dst, size, timeoutMs, (sequence, data) => this.#sendEcho(target, ECHO_REQUEST, this.#pings.identifier, sequence, data, ttl));
  }

  /**
   * Finds the routers on the path to `dst` by sending echo requests with TTL 1, 2, … until the
   * destination answers or `maxHops` is reached (the TTL control MirageOS 3.5 made possible).
   */
  async traceroute(dst: string, options: { maxHops?: number; timeoutMs?: number } = {}): Promise<TracerouteHop[]> {
    const { maxHops = 30, timeoutMs = 1000 } = options;
    const hops: TracerouteHop[] = [];
    for (let ttl = 1; ttl <= maxHops; ttl++) {
      try {
        const reply = await this.ping(dst, { ttl, timeoutMs, size: 32 });
        hops.push({ ttl, address: reply.from, rttMs: reply.rttMs });
        return hops;
      } catch (error) {
        const e = error as MorganaError & { from?: string; rttMs?: number };
        if (e.code === 'ERR_ICMP_TIME_EXCEEDED') hops.push({ ttl, address: e.from, rttMs: e.rttMs });
        else if (e.code === 'ERR_PING_TIMEOUT') hops.push({ ttl, address: undefined, rttMs: undefined });
        else throw error;
      }
    }
    return hops;
  }

  /**
   * Sends an ICMP error of `type`/`code` about a received `packet` (its header and first 8
   * payload bytes are quoted), subject to RFC 1122's rules and the rate limit.
   */
  sendError(type: number, code: number, packet: Buffer, iface: Ipv4Interface, mtu?: number): void {
    const src = packet.readUInt32BE(12);
    const dst = packet.readUInt32BE(16);
    const headerLength = (packet[0]! & 0x0f) * 4;
    const fragmentOffset = packet.readUInt16BE(6) & 0x1fff;
    // Never about: ICMP errors, non-initial fragments, broadcast/multicast or unspecified sources.
    if (packet[9] === PROTO_ICMP && packet.length > headerLength) {
      const t = packet[headerLength]!;
      if (t !== ECHO_REQUEST && t !== ECHO_REPLY && t !== TIMESTAMP && t !== TIMESTAMP_REPLY) return;
    }
    if (fragmentOffset !== 0 || src === 0 || src === 0xffffffff || src >>> 28 === 0xe || dst >>> 28 === 0xe) return;
    if (!this.#errorTokens.take()) {
      this.#stats.errorsRateLimited++;
      return;
    }
    const quoted = packet.subarray(0, Math.min(packet.length, headerLength + 8));
    const message = errorMessage(type, code, quoted, mtu);
    try {
      this.#ip.write(src, PROTO_ICMP, { payloads: [message], src: iface.address || undefined });
      this.#stats.errorsSent++;
    } catch {
      // No route back to the sender: nothing more to do for an error message.
    }
  }

  #sendEcho(dst: number, type: number, identifier: number, sequence: number, data: Uint8Array, ttl?: number, src?: number): void {
    const header = echoHeader(type, identifier, sequence, data);
    this.#ip.write(dst, PROTO_ICMP, { payloads: [header, data], ttl, src });
  }

  #receive(d: Ipv4Datagram): void {
    const m = d.payload;
    if (!icmpv4Valid(m)) {
      this.#stats.malformed++;
      return;
    }
    const type = m[0]!;
    if (type === ECHO_REQUEST) {
      this.#stats.echoRequestsReceived++;
      if (d.broadcast) return; // no smurf amplification
      try {
        this.#sendEcho(d.src, ECHO_REPLY, echoIdentifier(m), echoSequence(m), m.subarray(8), undefined, d.dst);
        this.#stats.echoRepliesSent++;
      } catch {
        // No route back: the request is dropped.
      }
    } else if (type === ECHO_REPLY) {
      this.#pings.resolve(echoIdentifier(m), echoSequence(m), (rttMs) => ({ rttMs, ttl: d.ttl, bytes: m.length, from: formatIpv4Address(d.src) }));
    } else if (type === UNREACHABLE || type === TIME_EXCEEDED || type === PARAMETER_PROBLEM) {
      this.#stats.errorsReceived++;
      const error = parseIcmpv4Error(m);
      if (error === undefined) {
        this.#stats.malformed++;
        return;
      }
      this.#ip.reportIcmpError({ ...error, from: formatIpv4Address(d.src) });
    }
  }
}
