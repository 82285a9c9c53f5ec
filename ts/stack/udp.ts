/**
 * UDP (RFC 768): bound ports with handlers, sending with ephemeral source ports drawn from the
 * random device, checksums generated and verified in Rust (a zero checksum is accepted), and
 * ICMP port unreachable for closed ports.
 * @module
 */
import { formatIpv4Address, type Ipv4AddressLike, toIpv4Number } from '../address.js';
import { checksum, onesComplementSum, pseudoHeaderSum } from '../checksum.js';
import { MorganaError, assertBytes, assertInteger } from '../errors.js';
import type { Icmp } from './icmp.js';
import type { IcmpErrorReport, Ipv4Datagram, Ipv4Layer } from './ipv4.js';

const PROTO_UDP = 17;
const HEADER = 8;
const EPHEMERAL_LOW = 49_152;
const EPHEMERAL_COUNT = 65_536 - EPHEMERAL_LOW;

/** Where a datagram came from. */
export interface UdpPeer {
  address: string;
  port: number;
}

/** Receives one datagram; `data` belongs to the handler. */
export type UdpHandler = (data: Buffer, from: UdpPeer, info: { to: string; ttl: number }) => void;

/** Options of {@link Udp.send}. */
export interface UdpSendOptions {
  /** Source port (default: a random ephemeral port). */
  srcPort?: number;
  /** Time to live. */
  ttl?: number;
  /** Set Don't Fragment. */
  dontFragment?: boolean;
}

/** A bound port. */
export interface UdpSocket {
  readonly port: number;
  /** Sends from this port. */
  send(dst: Ipv4AddressLike, dstPort: number, data: Uint8Array, options?: Omit<UdpSendOptions, 'srcPort'>): void;
  /** Called with ICMP errors (port unreachable, …) about datagrams sent from this port. */
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
  readonly #stats: UdpStats = { received: 0, sent: 0, noPort: 0, badChecksum: 0, malformed: 0 };

  constructor(ip: Ipv4Layer, icmp: Icmp, randomUint32: () => number) {
    this.#ip = ip;
    this.#icmp = icmp;
    this.#randomUint32 = randomUint32;
    ip.on(PROTO_UDP, (d) => this.#receive(d));
    ip.onIcmpError(PROTO_UDP, (report) => this.#icmpError(report));
  }

  /**
   * Binds `port` (0 picks a free ephemeral port at random) and calls `handler` for every datagram
   * that arrives on it. Throws `ERR_UDP_PORT_IN_USE` when the port is taken.
   */
  bind(port: number, handler: UdpHandler): UdpSocket {
    assertInteger(port, 'port', 0, 65_535);
    const chosen = port === 0 ? this.#freeEphemeralPort() : port;
    if (this.#bindings.has(chosen)) throw new MorganaError('ERR_UDP_PORT_IN_USE', `UDP port ${chosen} is already bound`);
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

  /** Sends `data` to `dst`:`dstPort`. Throws `ERR_NO_ROUTE` when there is no route. */
  send(dst: Ipv4AddressLike, dstPort: number, data: Uint8Array, options: UdpSendOptions = {}): void {
    assertBytes(data, 'data');
    assertInteger(dstPort, 'dstPort', 1, 65_535);
    const srcPort = options.srcPort ?? this.#randomEphemeralPort();
    assertInteger(srcPort, 'srcPort', 1, 65_535);
    const target = toIpv4Number(dst, 'dst');
    const route = this.#ip.route(target);
    if (!route) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv4Address(target)}`);
    const length = HEADER + data.length;
    if (length > 65_535 - 20) throw new MorganaError('ERR_UDP_TOO_LONG', `a ${data.length}-byte datagram does not fit in IPv4`);
    const src = route.iface.address;
    const header = Buffer.allocUnsafe(HEADER);
    header.writeUInt16BE(srcPort, 0);
    header.writeUInt16BE(dstPort, 2);
    header.writeUInt16BE(length, 4);
    header.writeUInt16BE(0, 6);
    const sum = checksum(data, onesComplementSum(header, pseudoHeaderSum(src, target, PROTO_UDP, length)));
    // RFC 768: a computed zero is sent as all ones, zero meaning "no checksum".
    header.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
    this.#ip.write(target, PROTO_UDP, {
      size: HEADER,
      fill: (b) => {
        header.copy(b);
        return HEADER;
      },
      payloads: [data],
      ttl: options.ttl,
      fragment: options.dontFragment ? false : undefined,
      src,
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

  #receive(d: Ipv4Datagram): void {
    const p = d.payload;
    if (p.length < HEADER) {
      this.#stats.malformed++;
      return;
    }
    const length = p.readUInt16BE(4);
    if (length < HEADER || length > p.length) {
      this.#stats.malformed++;
      return;
    }
    const datagram = p.subarray(0, length);
    if (datagram.readUInt16BE(6) !== 0 && checksum(datagram, pseudoHeaderSum(d.src, d.dst, PROTO_UDP, length)) !== 0) {
      this.#stats.badChecksum++;
      return;
    }
    const dstPort = datagram.readUInt16BE(2);
    const binding = this.#bindings.get(dstPort);
    if (!binding) {
      this.#stats.noPort++;
      if (!d.broadcast) {
        // Quote the original IP packet: header and the UDP header.
        const packet = Buffer.concat([d.header, datagram.subarray(0, Math.min(8, datagram.length))]);
        this.#icmp.sendError(3, 3, packet, d.iface);
      }
      return;
    }
    this.#stats.received++;
    binding.handler(
      datagram.subarray(HEADER),
      { address: formatIpv4Address(d.src), port: datagram.readUInt16BE(0) },
      { to: formatIpv4Address(d.dst), ttl: d.ttl },
    );
  }

  #icmpError(report: IcmpErrorReport): void {
    const quoted = report.original.payload;
    if (quoted.length < 4) return;
    const binding = this.#bindings.get(quoted.readUInt16BE(0));
    if (!binding) return;
    const dst = `${formatIpv4Address(report.original.dst)}:${quoted.readUInt16BE(2)}`;
    const code =
      report.type === 3 && report.code === 3 ? 'ERR_UDP_PORT_UNREACHABLE' : report.type === 11 ? 'ERR_ICMP_TIME_EXCEEDED' : 'ERR_ICMP_UNREACHABLE';
    const error = new MorganaError(code, `${report.from} reported ICMP type ${report.type} code ${report.code} for ${dst}`);
    for (const listener of binding.errorListeners) listener(error);
  }
}
