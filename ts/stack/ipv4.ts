/**
 * The IPv4 layer of a stack: addresses and routes, receive (validation in Rust, reassembly in
 * the Rust cache with a turn's fragments in one batch, dispatch by protocol), send (in-place assembly, fragmentation above the MTU,
 * ARP resolution) and, when enabled, forwarding between interfaces.
 * @module
 */
import { type Ipv4AddressLike, formatIpv4Address, toIpv4Number } from '../address.js';
import { checksumUpdate } from '../checksum.js';
import type { Clock, Timer } from '../clock.js';
import { FragmentationNeededError, MorganaError, OutOfRangeError, nativeFailure } from '../errors.js';
import { fragment as fragmentPacket } from '../wire/ipv4.js';
import { native } from '../native.js';
import { Reassembler, type ReassemblerOptions } from '../reassembly.js';
import { ETHERNET_HEADER_LENGTH, type FrameOffload, GSO_NONE, NEEDS_CSUM, type ReceiveBatch } from '../net/device.js';
import { realFrames } from '../net/gso.js';
import { transportChecksumCovered } from './checksum-offload.js';
import type { Arp } from './arp.js';
import { IpOutput, NEIGHBOUR_REFRESH_MS } from './ip-output.js';
import { BROADCAST, ETHERTYPE, type Ethernet } from './ethernet.js';
import { FragmentBatch } from './fragment-batch.js';

/** `native.ipv4Validate` without napi-rs's per-call bookkeeping (it runs once per packet). */
const ipv4Validate = native.ipv4FastValidate();

/** One interface's IPv4 configuration, as numbers. */
export interface Ipv4Interface {
  readonly eth: Ethernet;
  readonly arp: Arp;
  address: number;
  prefix: number;
}

/** A static route. */
export interface Route {
  /** Network address (number). */
  network: number;
  prefix: number;
  /** Next hop (number); 0 for a directly connected network. */
  gateway: number;
}

/** What a protocol handler receives for each datagram addressed to the stack. */
export interface Ipv4Datagram {
  src: number;
  dst: number;
  protocol: number;
  ttl: number;
  /** The IP header (options included). */
  header: Buffer;
  /** The transport payload. */
  payload: Buffer;
  /** The interface it arrived on. */
  iface: Ipv4Interface;
  /** Whether it was sent to a broadcast address. */
  broadcast: boolean;
  /**
   * The device vouched for the transport checksum ({@link transportChecksumCovered}): the
   * receiver need not sum the payload. Never set for a reassembled datagram.
   */
  checksumVerified?: boolean;
}

/** A transport protocol's receive function. */
export type ProtocolHandler = (datagram: Ipv4Datagram) => void;

/**
 * A {@link ProtocolHandler} that returns `true` when it kept no reference to the datagram's
 * buffers (it copied what it needed), so that an in-process medium may reuse them.
 */
export type ReusingProtocolHandler = (datagram: Ipv4Datagram) => boolean;

/** Options of {@link Ipv4Layer.write}. */
export interface Ipv4WriteOptions {
  /** Bytes lent to `fill` right after the IP header. */
  size?: number;
  /** Writes the header-near part of the payload (e.g. the transport header); returns its length. */
  fill?: (buffer: Buffer) => number;
  /** Buffers copied after what `fill` wrote. */
  payloads?: readonly Uint8Array[];
  /** Time to live (default the stack's, 64). */
  ttl?: number;
  /** Allow fragmentation (default true). False sets Don't Fragment. */
  fragment?: boolean;
  /** Type of service byte. */
  tos?: number;
  /** Source address (default the outgoing interface's). */
  src?: number;
}

/** IPv4 counters. */
export interface Ipv4Stats {
  received: number;
  delivered: number;
  sent: number;
  forwarded: number;
  fragmentsSent: number;
  /** Received packets dropped, by reason (`ERR_IPV4_BAD_CHECKSUM`, `not-for-us`, …). */
  dropped: Record<string, number>;
  /** Sends that failed: no route, ARP queue full, etc. */
  sendFailures: number;
}

/** Options of the IPv4 layer. */
export interface Ipv4LayerOptions {
  interfaces: Ipv4Interface[];
  gateway?: number;
  routes?: Route[];
  ttl?: number;
  forwarding?: boolean;
  reassembly?: ReassemblerOptions;
  clock: Clock;
  /** A 32-bit random value, for the initial identification. */
  randomUint32: () => number;
  /** IPv6 hop limit of packets built in Rust (default `ttl`). */
  hopLimit?: number;
}

/** An ICMP error as handed to the protocol it concerns. */
export interface IcmpErrorReport {
  type: number;
  code: number;
  /** The router or host that reported it. */
  from: string;
  /** Next-hop MTU for "fragmentation needed". */
  mtu?: number;
  /** The quoted original packet: its header fields and the first bytes of its payload. */
  original: { src: number; dst: number; protocol: number; payload: Buffer };
}

/** A fragment waiting for this turn's reassembly batch. */
interface QueuedFragment {
  packet: Buffer;
  iface: Ipv4Interface;
  broadcast: boolean;
}

const MIN_HEADER = 20;
const MAX_PACKET = 65_535;
const LIMITED_BROADCAST = 0xffffffff;

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The IPv4 layer. */
export class Ipv4Layer {
  readonly interfaces: Ipv4Interface[];
  gateway: number;
  readonly routes: Route[];
  readonly defaultTtl: number;
  forwarding: boolean;
  readonly reassembler: Reassembler;
  readonly #clock: Clock;
  readonly #handlers = new Map<number, ProtocolHandler | ReusingProtocolHandler>();
  /** Protocols whose handler was registered with {@link onReusing}. */
  readonly #reusing = new Set<number>();
  readonly #errorSinks = new Map<number, IcmpErrorListener[]>();
  /** The send path's Rust state (identification, fast-path neighbours), shared with IPv6. */
  readonly output: IpOutput;
  #expiryTimer: Timer | undefined;
  #closed = false;
  /** Fragments for us received in this turn, waiting for `#reassembleBatch`. */
  readonly #fragments = new FragmentBatch<QueuedFragment>((batch, count) => this.#reassembleBatch(batch, count));
  /** Set by the ICMP layer: sends ICMP errors about a received packet. */
  icmpErrorSender: ((kind: 'time-exceeded' | 'protocol-unreachable' | 'fragmentation-needed', packet: Buffer, iface: Ipv4Interface, mtu?: number) => void) | undefined;
  readonly #stats: Ipv4Stats = { received: 0, delivered: 0, sent: 0, forwarded: 0, fragmentsSent: 0, dropped: {}, sendFailures: 0 };
  /** The interfaces' addresses, refreshed for each batch a protocol's steer sees. */
  readonly #locals: Uint32Array;

  constructor(options: Ipv4LayerOptions) {
    this.interfaces = options.interfaces;
    this.gateway = options.gateway ?? 0;
    this.routes = options.routes ?? [];
    this.defaultTtl = options.ttl ?? 64;
    this.forwarding = options.forwarding ?? false;
    this.reassembler = new Reassembler(options.reassembly);
    this.#clock = options.clock;
    this.output = new IpOutput(options.randomUint32, this.defaultTtl, options.hopLimit ?? this.defaultTtl);
    this.#locals = new Uint32Array(this.interfaces.length);
    for (const iface of this.interfaces) {
      iface.eth.onReusing(ETHERTYPE.IPV4, (payload, _src, _frame, offload) => this.#receive(payload, iface, offload) === true);
      iface.arp.setAddresses(iface.address ? [iface.address] : []);
    }
    this.#scheduleExpiry();
  }

  /** Registers the receive function of a transport protocol. */
  on(protocol: number, handler: ProtocolHandler): void {
    this.#reusing.delete(protocol);
    this.#handlers.set(protocol, handler);
  }

  /**
   * As {@link on}, for a handler that returns true when it kept no reference to the datagram's
   * buffers: a frame given away by an in-process medium can then go back to its sender (TCP).
   */
  onReusing(protocol: number, handler: ReusingProtocolHandler): void {
    this.#reusing.add(protocol);
    this.#handlers.set(protocol, handler);
  }

  /**
   * @internal Lets `steer` take datagrams of `protocol` for this host straight out of the
   * interfaces' received batches (see `NetDevice.steerReceive`), with the receiving MAC
   * and the host's addresses to judge them by, counted as received and delivered: only while
   * the protocol's handler is the one registered now. It must take only what this layer would
   * deliver to that handler unchanged: unicast, unfragmented, valid, for a local address, from
   * a source that is not martian (`steer_tcp` in Rust).
   */
  steerReceive(protocol: number, steer: ((batch: ReceiveBatch, mac: Buffer, locals: Uint32Array) => void) | undefined): void {
    const handler = this.#handlers.get(protocol);
    const locals = this.#locals;
    for (const iface of this.interfaces) {
      if (steer === undefined) {
        iface.eth.steerReceive(ETHERTYPE.IPV4, undefined);
        continue;
      }
      iface.eth.steerReceive(ETHERTYPE.IPV4, (batch, mac) => {
        if (this.#closed || this.#handlers.get(protocol) !== handler) return;
        for (let i = 0; i < locals.length; i++) locals[i] = this.interfaces[i]?.address ?? 0;
        const before = batch.counts[0]!;
        steer(batch, mac, locals);
        const taken = batch.counts[0]! - before;
        this.#stats.received += taken;
        this.#stats.delivered += taken;
      });
    }
  }

  /** Registers a listener for ICMP errors that quote packets of `protocol`. */
  onIcmpError(protocol: number, listener: IcmpErrorListener): void {
    this.#errorSinks.set(protocol, [...(this.#errorSinks.get(protocol) ?? []), listener]);
  }

  /** @internal Called by ICMP with an error quoting one of our packets. */
  reportIcmpError(report: IcmpErrorReport): void {
    for (const listener of this.#errorSinks.get(report.original.protocol) ?? []) listener(report);
  }

  /** Changes an interface's address (e.g. from DHCP); announces it with gratuitous ARP. */
  setAddress(iface: Ipv4Interface, address: number, prefix: number): void {
    iface.address = address;
    iface.prefix = prefix;
    iface.arp.setAddresses(address ? [address] : []);
    this.output.clear();
  }

  /** Whether `ip` is one of this stack's addresses. */
  isLocal(ip: number): boolean {
    for (const iface of this.interfaces) if (iface.address === ip && ip !== 0) return true;
    return false;
  }

  /** The interface and next hop for `dst`, or undefined when there is no route. */
  route(dst: number): { iface: Ipv4Interface; nextHop: number } | undefined {
    if (dst === LIMITED_BROADCAST) return this.interfaces[0] && { iface: this.interfaces[0], nextHop: dst };
    let best: { iface: Ipv4Interface; nextHop: number; prefix: number } | undefined;
    for (const iface of this.interfaces) {
      const mask = maskOf(iface.prefix);
      if (iface.address !== 0 && ((dst ^ iface.address) & mask) === 0 && (!best || iface.prefix > best.prefix)) {
        best = { iface, nextHop: dst, prefix: iface.prefix };
      }
    }
    for (const r of this.routes) {
      const mask = maskOf(r.prefix);
      if (((dst ^ r.network) & mask) === 0 && (!best || r.prefix > best.prefix)) {
        const via = r.gateway === 0 ? dst : r.gateway;
        const out = this.#connected(via);
        if (out) best = { iface: out, nextHop: via, prefix: r.prefix };
      }
    }
    if (!best && this.gateway !== 0) {
      const out = this.#connected(this.gateway);
      if (out) best = { iface: out, nextHop: this.gateway, prefix: 0 };
    }
    return best && { iface: best.iface, nextHop: best.nextHop };
  }

  #connected(ip: number): Ipv4Interface | undefined {
    for (const iface of this.interfaces) {
      if (iface.address !== 0 && ((ip ^ iface.address) & maskOf(iface.prefix)) === 0) return iface;
    }
    return undefined;
  }

  #isBroadcastFor(dst: number, iface: Ipv4Interface): boolean {
    if (dst === LIMITED_BROADCAST) return true;
    const mask = maskOf(iface.prefix);
    return iface.prefix < 31 && iface.address !== 0 && (dst & ~mask) >>> 0 === (~mask >>> 0) && ((dst ^ iface.address) & mask) === 0;
  }

  /**
   * Sends a datagram of `protocol` to `dst`. The part written by `fill` and the `payloads` are
   * assembled in place in the device's buffer when the packet fits the MTU and the next hop's MAC
   * is known; otherwise the packet is built once and fragmented or queued for ARP.
   * Throws `ERR_NO_ROUTE`, or {@link FragmentationNeededError} when `fragment` is false and the
   * packet exceeds the MTU.
   */
  write(destination: Ipv4AddressLike, protocol: number, options: Ipv4WriteOptions = {}): void {
    if (this.#closed) throw new MorganaError('ERR_STACK_CLOSED', 'the stack is closed');
    const dst = typeof destination === 'number' ? destination : toIpv4Number(destination, 'dst');
    const route = this.route(dst);
    if (!route) {
      this.#stats.sendFailures++;
      throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv4Address(dst)}`);
    }
    const { iface, nextHop } = route;
    const size = options.size ?? 0;
    const payloads = options.payloads ?? [];
    let payloadBytes = 0;
    for (const p of payloads) payloadBytes += p.length;
    const ttl = options.ttl ?? this.defaultTtl;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 255) throw new OutOfRangeError(`ttl must be 0..255, got ${ttl}`);
    const maxTotal = MIN_HEADER + size + payloadBytes;
    if (maxTotal > MAX_PACKET) throw new MorganaError('ERR_IPV4_PACKET_TOO_LONG', `a ${maxTotal}-byte packet exceeds 65535 bytes`);
    const dontFragment = options.fragment === false;
    const src = options.src ?? iface.address;
    const identification = this.#nextIdentification();
    const broadcastDst = this.#isBroadcastFor(dst, iface);
    const build = (out: Buffer): number => {
      const written = options.fill ? options.fill(out.subarray(MIN_HEADER, MIN_HEADER + size)) : 0;
      if (!Number.isInteger(written) || written < 0 || written > size) {
        throw new OutOfRangeError(`fill must return a length from 0 to ${size}, got ${written}`);
      }
      let at = MIN_HEADER + written;
      for (const p of payloads) {
        out.set(p, at);
        at += p.length;
      }
      const result = native.ipv4EmitHeader(out, 0, {
        src,
        dst,
        protocol,
        ttl,
        tos: options.tos ?? 0,
        identification,
        dontFragment,
        moreFragments: false,
        fragmentOffset: 0,
        payloadLength: at - MIN_HEADER,
      }, undefined);
      if (result < 0) throw nativeFailure(result);
      return at;
    };

    if (maxTotal <= iface.eth.mtu) {
      const send = (mac: Buffer) => {
        iface.eth.write(mac, ETHERTYPE.IPV4, { size: maxTotal, fill: build });
        this.#stats.sent++;
      };
      const mac = broadcastDst ? BROADCAST : iface.arp.lookup(nextHop);
      if (mac) return send(mac);
      // Not resolved yet: build the packet now (the caller's buffers may change) and queue it.
      const packet = Buffer.allocUnsafe(maxTotal);
      const length = build(packet);
      this.#sendPacket(packet.subarray(0, length), iface, nextHop, false);
      return;
    }
    const packet = Buffer.allocUnsafe(maxTotal);
    const length = build(packet);
    if (length > iface.eth.mtu && dontFragment) {
      this.#stats.sendFailures++;
      throw new FragmentationNeededError(iface.eth.mtu);
    }
    this.#sendPacket(packet.subarray(0, length), iface, nextHop, broadcastDst);
  }

  /** Sends a complete packet out of `iface` to `nextHop`, fragmenting it when needed. */
  #sendPacket(packet: Buffer, iface: Ipv4Interface, nextHop: number, broadcast: boolean): void {
    const pieces = packet.length > iface.eth.mtu ? fragmentPacket(packet, iface.eth.mtu) : [packet];
    if (pieces.length > 1) this.#stats.fragmentsSent += pieces.length;
    const transmit = (mac: Buffer) => {
      for (const piece of pieces) {
        iface.eth.write(mac, ETHERTYPE.IPV4, {
          size: piece.length,
          fill: (b) => {
            piece.copy(b);
            return piece.length;
          },
        });
      }
      this.#stats.sent++;
    };
    if (broadcast) return transmit(BROADCAST);
    if (!iface.arp.resolve(nextHop, transmit)) this.#stats.sendFailures++;
  }

  /**
   * @internal Lets packets to `dst` take the Rust fast path for a while (see {@link IpOutput}):
   * installs its neighbour entry when the route and the next hop's MAC are known.
   */
  offerFastPath(dst: number): void {
    const route = this.route(dst);
    if (!route || this.#isBroadcastFor(dst, route.iface) || dst >>> 28 === 0xe) return;
    const mac = route.iface.arp.lookup(route.nextHop);
    if (!mac) return;
    this.output.install4(dst, route.iface.eth, mac, route.iface.eth.mtu, this.#clock.now() + NEIGHBOUR_REFRESH_MS);
  }

  #nextIdentification(): number {
    return this.output.nextIdentification();
  }

  #drop(reason: string): void {
    this.#stats.dropped[reason] = (this.#stats.dropped[reason] ?? 0) + 1;
  }

  /** Returns true only when the protocol handler kept no reference to the packet's bytes. */
  #receive(payload: Buffer, iface: Ipv4Interface, offload?: FrameOffload): boolean | void {
    this.#stats.received++;
    // A fragment for us waits for the others of this turn: they go into the reassembler
    // together, validated there (one crossing into Rust per turn, not two per fragment).
    if (payload.length >= MIN_HEADER && payload[0]! >> 4 === 4 && ((payload[6]! & 0x3f) | payload[7]!) !== 0) {
      const src = payload.readUInt32BE(12);
      const dst = payload.readUInt32BE(16);
      const broadcast = this.#isBroadcastFor(dst, iface);
      if (broadcast || this.isLocal(dst) || (iface.address === 0 && payload[9] === 17)) {
        if (src >>> 28 === 0xe || src === LIMITED_BROADCAST || src >>> 24 === 127) {
          this.#drop('martian-source');
          return;
        }
        this.#fragments.add({ packet: payload, iface, broadcast });
        return;
      }
    }
    // Anything else in order behind the fragments queued before it.
    this.#fragments.flush();
    const total = ipv4Validate(payload, true);
    if (total < 0) {
      this.#drop(nativeFailure(total).code);
      return;
    }
    const packet = payload.subarray(0, total);
    const src = packet.readUInt32BE(12);
    const dst = packet.readUInt32BE(16);
    // Martian sources: multicast, limited broadcast, loopback.
    if (src >>> 28 === 0xe || src === LIMITED_BROADCAST || src >>> 24 === 127) {
      this.#drop('martian-source');
      return;
    }
    const broadcast = this.#isBroadcastFor(dst, iface);
    const local = broadcast || this.isLocal(dst) || (iface.address === 0 && packet[9] === 17);
    if (!local) {
      if (this.forwarding && dst >>> 28 !== 0xe && dst !== 0) this.#forward(packet, iface, offload);
      else this.#drop('not-for-us');
      return;
    }
    if ((packet.readUInt16BE(6) & 0x3fff) !== 0) {
      // Not reached: fragments for us were queued above, by the same test on the same bytes. A
      // guard, so that no fragment is ever delivered as it is; the batch would take it.
      this.#fragments.add({ packet, iface, broadcast });
      return;
    }
    // Unfragmented: the packet is the frame's bytes, reusable when the handler kept nothing.
    return this.#deliver(packet, src, dst, iface, broadcast, offload);
  }

  /**
   * Hands the queued fragments to the reassembler in one batch and delivers the datagrams they
   * complete. Fragments that are views of one buffer (a TAP read) are passed where they lie;
   * others are copied back to back into a staging buffer first.
   */
  #reassembleBatch(batch: readonly QueuedFragment[], count: number): void {
    const data = this.#fragments.lay(batch, count);
    const done = this.reassembler.pushBatch(data, this.#fragments.spans, this.#clock.now(), { count, onMalformed: this.#onMalformed });
    this.#fragments.release();
    for (let i = 0; i < count; i++) {
      const entry = batch[i]!;
      const whole = done[i];
      if (whole === undefined) continue;
      // A completed datagram is a Buffer of its own; a packet that turned out not to be a
      // fragment (never queued) would be a view of `data`, which is why it is copied.
      const packet = whole.buffer === data.buffer ? Buffer.from(whole) : (whole as Buffer);
      // No offload metadata: a fragment's frame says nothing about the whole datagram.
      this.#deliver(packet, packet.readUInt32BE(12), packet.readUInt32BE(16), entry.iface, entry.broadcast, undefined);
    }
  }

  readonly #onMalformed = (_index: number, error: MorganaError): void => this.#drop(error.code);

  /**
   * Hands a datagram for us to its protocol; true when a handler registered with
   * {@link onReusing} kept no reference to it.
   */
  #deliver(packet: Buffer, src: number, dst: number, iface: Ipv4Interface, broadcast: boolean, offload: FrameOffload | undefined): boolean {
    const headerLength = (packet[0]! & 0x0f) * 4;
    const protocol = packet[9]!;
    const handler = this.#handlers.get(protocol);
    if (!handler) {
      this.#drop('unknown-protocol');
      if (!broadcast) this.icmpErrorSender?.('protocol-unreachable', packet, iface);
      return false;
    }
    this.#stats.delivered++;
    const kept = handler({
      src,
      dst,
      protocol,
      ttl: packet[8]!,
      header: packet.subarray(0, headerLength),
      payload: packet.subarray(headerLength),
      iface,
      broadcast,
      checksumVerified: transportChecksumCovered(offload, headerLength, protocol),
    });
    return kept === true && this.#reusing.has(protocol);
  }

  #forward(packet: Buffer, inbound: Ipv4Interface, offload: FrameOffload | undefined): void {
    const dst = packet.readUInt32BE(16);
    // A local sender may have left the transport checksum partial (NEEDS_CSUM); the packet
    // leaves without that metadata, so complete it here (offsets count the Ethernet header).
    if (offload && (offload.flags & NEEDS_CSUM) !== 0 && !native.gsoCompleteChecksum(packet, offload.csumStart - ETHERNET_HEADER_LENGTH, offload.csumOffset)) {
      this.#drop('bad-offload');
      return;
    }
    if (packet[8]! <= 1) {
      this.#drop('ttl-exceeded');
      this.icmpErrorSender?.('time-exceeded', packet, inbound);
      return;
    }
    const route = this.route(dst);
    if (!route) {
      this.#drop('no-route');
      return;
    }
    // The frame is ours: decrement the TTL in place and patch the checksum (RFC 1624).
    const oldWord = packet.readUInt16BE(8);
    packet[8] = packet[8]! - 1;
    packet.writeUInt16BE(checksumUpdate(packet.readUInt16BE(10), oldWord, packet.readUInt16BE(8)), 10);
    const mtu = route.iface.eth.mtu;
    // A TCP super-frame (a sender's TSO, or segments coalesced on receive) stands for segments
    // of `gsoSize`: as Linux forwards GSO packets, it is those that must fit the link, and they
    // are cut here (no ICMP error for the whole, whose sender cannot make it smaller).
    if (packet.length > mtu && offload && offload.gsoType !== GSO_NONE && offload.hdrLen - ETHERNET_HEADER_LENGTH + offload.gsoSize <= mtu) {
      this.#forwardSegments(packet, offload, route.iface, route.nextHop);
      return;
    }
    if (packet.length > mtu && (packet.readUInt16BE(6) & 0x4000) !== 0) {
      this.#drop('fragmentation-needed');
      this.icmpErrorSender?.('fragmentation-needed', packet, inbound, route.iface.eth.mtu);
      return;
    }
    this.#stats.forwarded++;
    this.#sendPacket(packet, route.iface, route.nextHop, this.#isBroadcastFor(dst, route.iface));
  }

  /**
   * Forwards super-frame `packet` (TTL already decremented) as the real segments it stands for,
   * cut in Rust with their own lengths, identifications and checksums.
   */
  #forwardSegments(packet: Buffer, offload: FrameOffload, iface: Ipv4Interface, nextHop: number): void {
    const frame = Buffer.allocUnsafe(ETHERNET_HEADER_LENGTH + packet.length);
    frame.fill(0, 0, 12);
    frame.writeUInt16BE(ETHERTYPE.IPV4, 12);
    packet.copy(frame, ETHERNET_HEADER_LENGTH);
    // The checksum is complete by now (completed above, or verified on receipt).
    const pieces = realFrames(frame, { ...offload, flags: 0 });
    if (pieces.length === 0) {
      this.#drop('bad-offload');
      return;
    }
    this.#stats.forwarded++;
    for (const piece of pieces) this.#sendPacket(piece.subarray(ETHERNET_HEADER_LENGTH), iface, nextHop, false);
  }

  #scheduleExpiry(): void {
    if (this.#closed) return;
    this.#expiryTimer = this.#clock.setTimer(1_000, () => {
      this.reassembler.expire(this.#clock.now());
      this.#scheduleExpiry();
    });
  }

  /** Counters (including the reassembly cache's). */
  stats(): Ipv4Stats & { reassembly: ReturnType<Reassembler['stats']> } {
    const sent = this.#stats.sent + this.output.sent().v4;
    return { ...this.#stats, sent, dropped: { ...this.#stats.dropped }, reassembly: this.reassembler.stats() };
  }

  /** Stops timers. */
  close(): void {
    // Fragments still queued are dropped with the stack, as the cache's datagrams are.
    this.#fragments.clear();
    this.#closed = true;
    this.#expiryTimer?.cancel();
  }
}

/** Receives ICMP errors about packets of one protocol. */
export type IcmpErrorListener = (report: IcmpErrorReport) => void;
