/**
 * UDP (RFC 768) over IPv4 and IPv6: bound ports (shared by both families) with handlers,
 * sending with ephemeral source ports drawn from the random device, checksums generated and
 * verified in Rust over the family's pseudo-header, and ICMP / ICMPv6 port unreachable for
 * closed ports. Over IPv4 a zero checksum means "none" and is accepted; over IPv6 the checksum
 * is mandatory and a zero one is dropped and counted (RFC 8200 §8.1).
 * @module
 */
import { formatIpv4Address, formatIpv6Address } from '../address.js';
import { pseudoHeaderSum, pseudoHeaderSum6 } from '../checksum.js';
import { MorganaError, assertBytes, assertInteger } from '../errors.js';
import type { Icmp } from './icmp.js';
import { type InetAddress, type InetAddressLike, formatEndpoint, parseInetAddress, zoneInterface } from './inet.js';
import type { IcmpErrorReport, Ipv4Datagram, Ipv4Layer } from './ipv4.js';
import type { Icmpv6ErrorReport, Ipv6Datagram, Ipv6Layer } from './ipv6.js';
import { UdpDgramSocket, type UdpSocketType } from './udp-socket.js';
import {
  IP_PROTOCOL_UDP as PROTO_UDP,
  UDP_HEADER_LENGTH as HEADER,
  udpChecksumField,
  udpChecksumValid,
  udpDatagram,
  udpDestinationPort,
  udpHeader,
  udpSourcePort,
} from '../wire/udp.js';

const EPHEMERAL_LOW = 49_152;
const EPHEMERAL_COUNT = 65_536 - EPHEMERAL_LOW;

/**
 * The `fill` of an IP write that copies a built UDP header in place. The options object is
 * written out literally at each call site: spreading a helper's object into it gave it another
 * hidden class and cost 45 % of the UDP datagram rate.
 */
function headerFill(header: Buffer): (b: Buffer) => number {
  return (b) => {
    header.copy(b);
    return HEADER;
  };
}

/** Where a datagram came from. */
export interface UdpPeer {
  /** Dotted quad, or RFC 5952 text for IPv6. */
  address: string;
  port: number;
  /** Set by {@link Udp} on every datagram (optional for peers built elsewhere, e.g. host sockets). */
  family?: 'IPv4' | 'IPv6';
}

/** Receives one datagram; `data` belongs to the handler. `ttl` is the hop limit over IPv6. */
export type UdpHandler = (data: Buffer, from: UdpPeer, info: { to: string; ttl: number }) => void;

/** Options of {@link Udp.send}. */
export interface UdpSendOptions {
  /** Source port (default: a random ephemeral port). */
  srcPort?: number;
  /** Time to live (hop limit over IPv6). */
  ttl?: number;
  /** Set Don't Fragment (over IPv6: do not fragment locally; a too-big datagram throws). */
  dontFragment?: boolean;
}

/** A bound port. */
export interface UdpSocket {
  readonly port: number;
  /** Sends from this port (to an IPv4 or IPv6 address). */
  send(dst: InetAddressLike, dstPort: number, data: Uint8Array, options?: Omit<UdpSendOptions, 'srcPort'>): void;
  /** Called with ICMP and ICMPv6 errors (port unreachable, …) about datagrams sent from this port. */
  onError(listener: (error: MorganaError) => void): void;
  /** Frees the port. */
  close(): void;
}

/** UDP counters. */
export interface UdpStats {
  received: number;
  sent: number;
  /** Datagrams for ports nobody bound. */
  noPort: number;
  badChecksum: number;
  /** IPv6 datagrams with a zero checksum, dropped (RFC 8200 §8.1); not in `badChecksum`. */
  zeroChecksum: number;
  malformed: number;
}

interface Binding {
  handler: UdpHandler;
  errorListeners: Array<(error: MorganaError) => void>;
}

/** The UDP layer. */
export class Udp {
  readonly #ip: Ipv4Layer;
  readonly #icmp: Icmp;
  readonly #randomUint32: () => number;
  readonly #bindings = new Map<number, Binding>();
  readonly #stats: UdpStats = { received: 0, sent: 0, noPort: 0, badChecksum: 0, zeroChecksum: 0, malformed: 0 };
  #ip6: Ipv6Layer | undefined;

  constructor(ip: Ipv4Layer, icmp: Icmp, randomUint32: () => number) {
    this.#ip = ip;
    this.#icmp = icmp;
    this.#randomUint32 = randomUint32;
    ip.on(PROTO_UDP, (d) => this.#receive(d));
    ip.onIcmpError(PROTO_UDP, (report) => this.#icmpError(report));
  }

  /** Carries UDP over IPv6 too (next header 17 and its ICMPv6 errors); `createStack` calls it. */
  attachIpv6(ip6: Ipv6Layer): void {
    if (this.#ip6) throw new MorganaError('ERR_STACK_CONFIG', 'UDP already carries IPv6');
    this.#ip6 = ip6;
    ip6.on(PROTO_UDP, (d) => this.#receive6(d));
    ip6.onIcmpError(PROTO_UDP, (report) => this.#icmpError6(report));
  }

  /**
   * Binds `port` (0 picks a free ephemeral port at random) and calls `handler` for every datagram
   * that arrives on it. Throws `EADDRINUSE` (as dgram and TCP do) when the port is taken.
   */
  bind(port: number, handler: UdpHandler): UdpSocket {
    assertInteger(port, 'port', 0, 65_535);
    const chosen = port === 0 ? this.#freeEphemeralPort() : port;
    if (this.#bindings.has(chosen)) throw new MorganaError('EADDRINUSE', `bind EADDRINUSE: UDP port ${chosen} is already bound`);
    const binding: Binding = { handler, errorListeners: [] };
    this.#bindings.set(chosen, binding);
    return {
      port: chosen,
      send: (dst, dstPort, data, options = {}) => this.send(dst, dstPort, data, { ...options, srcPort: chosen }),
      onError: (listener) => void binding.errorListeners.push(listener),
      close: () => {
        if (this.#bindings.get(chosen) === binding) this.#bindings.delete(chosen);
      },
    };
  }

  /**
   * A `dgram.Socket`-shaped socket (see {@link UdpDgramSocket}): `bind(port, address, cb)`,
   * `send(msg, port, address, cb)`, `'message'` `(msg, rinfo)` events, `close()`, `ref()`/`unref()`.
   */
  createSocket(type: UdpSocketType): UdpDgramSocket {
    return new UdpDgramSocket(this, type);
  }

  /** @internal Whether `address` is one of the stack's addresses. */
  _isLocal(address: InetAddress): boolean {
    return address.family === 4 ? this.#ip.isLocal(address.v4) : (this.#ip6?.isLocal(address.v6) ?? false);
  }

  /**
   * Sends `data` to `dst`:`dstPort`, over IPv4 or IPv6 by the address (`'fe80::1%net0'` names the
   * interface of a link-local destination). Throws `ERR_NO_ROUTE` when there is no route (or the
   * stack has no IPv6), `ERR_NO_SOURCE_ADDRESS` when no IPv6 address is usable yet, and
   * `ERR_UDP_TOO_LONG` for a datagram that no IP packet can carry.
   */
  send(dst: InetAddressLike, dstPort: number, data: Uint8Array, options: UdpSendOptions = {}): void {
    assertBytes(data, 'data');
    assertInteger(dstPort, 'dstPort', 1, 65_535);
    const srcPort = options.srcPort ?? this.#randomEphemeralPort();
    assertInteger(srcPort, 'srcPort', 1, 65_535);
    const parsed = parseInetAddress(dst, 'dst');
    if (parsed.family === 6) {
      this.#send6(parsed.v6, parsed.zone, srcPort, dstPort, data, options);
      return;
    }
    const target = parsed.v4;
    const route = this.#ip.route(target);
    if (!route) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv4Address(target)}`);
    const length = HEADER + data.length;
    if (length > 65_535 - 20) throw new MorganaError('ERR_UDP_TOO_LONG', `a ${data.length}-byte datagram does not fit in IPv4`);
    const src = route.iface.address;
    const header = udpHeader(srcPort, dstPort, data, pseudoHeaderSum(src, target, PROTO_UDP, length));
    this.#ip.write(target, PROTO_UDP, {
      size: HEADER,
      fill: headerFill(header),
      payloads: [data],
      ttl: options.ttl,
      fragment: options.dontFragment ? false : undefined,
      src,
    });
    this.#stats.sent++;
  }

  #send6(target: Buffer, zone: string | undefined, srcPort: number, dstPort: number, data: Uint8Array, options: UdpSendOptions): void {
    const ip6 = this.#ip6;
    if (!ip6) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv6Address(target)}: the stack has no IPv6`);
    const iface = zone === undefined ? undefined : zoneInterface(ip6, zone);
    const length = HEADER + data.length;
    // The IPv6 payload length field bounds the datagram (no jumbograms).
    if (length > 65_535) throw new MorganaError('ERR_UDP_TOO_LONG', `a ${data.length}-byte datagram does not fit in IPv6`);
    const src = ip6.sourceFor(target, iface);
    const header = udpHeader(srcPort, dstPort, data, pseudoHeaderSum6(src, target, PROTO_UDP, length));
    ip6.write(target, PROTO_UDP, {
      size: HEADER,
      fill: headerFill(header),
      payloads: [data],
      hopLimit: options.ttl,
      fragment: options.dontFragment ? false : undefined,
      src,
      iface,
    });
    this.#stats.sent++;
  }

  /** Counters. */
  stats(): UdpStats {
    return { ...this.#stats };
  }

  #randomEphemeralPort(): number {
    return EPHEMERAL_LOW + (this.#randomUint32() % EPHEMERAL_COUNT);
  }

  #freeEphemeralPort(): number {
    // Random probing first, then a linear scan so a nearly full range still finds a port.
    for (let i = 0; i < 64; i++) {
      const port = this.#randomEphemeralPort();
      if (!this.#bindings.has(port)) return port;
    }
    for (let port = EPHEMERAL_LOW; port < 65_536; port++) if (!this.#bindings.has(port)) return port;
    throw new MorganaError('ERR_UDP_NO_PORTS', 'every ephemeral UDP port is bound');
  }

  /**
   * The UDP datagram at the start of an IP payload, cut to its length field, or undefined
   * (counted as malformed) when the header or the length it gives does not fit the payload.
   */
  #datagram(payload: Buffer): Buffer | undefined {
    const datagram = udpDatagram(payload);
    if (datagram === undefined) this.#stats.malformed++;
    return datagram;
  }

  /** Hands a checked datagram to its port's handler; false (counted) when nobody bound the port. */
  #deliver(datagram: Buffer, from: UdpPeer, info: { to: string; ttl: number }): boolean {
    const binding = this.#bindings.get(udpDestinationPort(datagram));
    if (!binding) {
      this.#stats.noPort++;
      return false;
    }
    this.#stats.received++;
    binding.handler(datagram.subarray(HEADER), from, info);
    return true;
  }

  #receive(d: Ipv4Datagram): void {
    const datagram = this.#datagram(d.payload);
    if (!datagram) return;
    if (udpChecksumField(datagram) !== 0 && !udpChecksumValid(datagram, pseudoHeaderSum(d.src, d.dst, PROTO_UDP, datagram.length))) {
      this.#stats.badChecksum++;
      return;
    }
    const from = { address: formatIpv4Address(d.src), port: udpSourcePort(datagram), family: 'IPv4' as const };
    if (!this.#deliver(datagram, from, { to: formatIpv4Address(d.dst), ttl: d.ttl })) {
      if (!d.broadcast) {
        // Quote the original IP packet: header and the UDP header.
        const packet = Buffer.concat([d.header, datagram.subarray(0, Math.min(8, datagram.length))]);
        this.#icmp.sendError(3, 3, packet, d.iface);
      }
    }
  }

  #receive6(d: Ipv6Datagram): void {
    const datagram = this.#datagram(d.payload);
    if (!datagram) return;
    if (udpChecksumField(datagram) === 0) {
      this.#stats.zeroChecksum++;
      return;
    }
    if (!udpChecksumValid(datagram, pseudoHeaderSum6(d.src, d.dst, PROTO_UDP, datagram.length))) {
      this.#stats.badChecksum++;
      return;
    }
    const from = { address: formatIpv6Address(d.src), port: udpSourcePort(datagram), family: 'IPv6' as const };
    if (!this.#deliver(datagram, from, { to: formatIpv6Address(d.dst), ttl: d.hopLimit })) {
      // ICMPv6 port unreachable (RFC 4443 §3.1 code 4), quoting the packet; the ICMPv6 module
      // applies RFC 4443 §2.4 (e) (nothing for multicast) and its rate limit.
      if (!d.multicast) {
        this.#ip6?.icmpErrorSender?.(1, 4, 0, Buffer.concat([d.header, datagram]), { iface: d.iface, linkMulticast: false, evenIfMulticast: false });
      }
    }
  }

  /**
   * Tells the listeners of the port that sent the datagram `quoted` (its UDP header, at least
   * the ports) about an ICMP or ICMPv6 error; `describe` makes the error for the destination
   * (`address:port` text).
   */
  #notify(quoted: Buffer, dstAddress: string, describe: (dst: string) => MorganaError): void {
    if (quoted.length < 4) return;
    const binding = this.#bindings.get(udpSourcePort(quoted));
    if (!binding) return;
    const error = describe(formatEndpoint(dstAddress, udpDestinationPort(quoted)));
    for (const listener of binding.errorListeners) listener(error);
  }

  #icmpError(report: IcmpErrorReport): void {
    this.#notify(report.original.payload, formatIpv4Address(report.original.dst), (dst) => {
      const code =
        report.type === 3 && report.code === 3 ? 'ERR_UDP_PORT_UNREACHABLE' : report.type === 11 ? 'ERR_ICMP_TIME_EXCEEDED' : 'ERR_ICMP_UNREACHABLE';
      return new MorganaError(code, `${report.from} reported ICMP type ${report.type} code ${report.code} for ${dst}`);
    });
  }

  #icmpError6(report: Icmpv6ErrorReport): void {
    this.#notify(report.original.payload, formatIpv6Address(report.original.dst), (dst) => {
      const code =
      report.type === 1 && report.code === 4
        ? 'ERR_UDP_PORT_UNREACHABLE'
        : report.type === 3
          ? 'ERR_ICMP_TIME_EXCEEDED'
          : report.type === 2
            ? 'ERR_ICMP_PACKET_TOO_BIG'
            : 'ERR_ICMP_UNREACHABLE';
      const what = report.type === 2 ? ` (MTU ${report.mtu})` : '';
      return new MorganaError(code, `${report.from} reported ICMPv6 type ${report.type} code ${report.code}${what} for ${dst}`);
    });
  }
}
