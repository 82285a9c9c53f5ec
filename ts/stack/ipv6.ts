/**
 * The IPv6 layer of a stack (RFC 8200): per-interface addresses with their autoconfiguration
 * state, multicast group membership, on-link prefixes and default routers; receive (validation
 * and the extension-header walk in Rust, options processed per RFC 8200 §4.2, dispatch by
 * upper-layer protocol) and send (in-place assembly, RFC 6724 source address selection,
 * neighbour resolution through the interface's neighbour cache, multicast mapped to 33:33:…
 * MACs, a path MTU cache fed by Packet Too Big per RFC 8201).
 *
 * Fragments are reassembled in the Rust cache ({@link Ipv6Reassembler}: bounded, RFC 5722
 * overlaps, RFC 7112 header chains, with the ICMPv6 errors it reports sent on), and packets
 * above the path MTU are fragmented in Rust at the source (random identification, RFC 7739).
 *
 * Not done here: forwarding between interfaces, routing header processing beyond "segments
 * left 0" (RFC 5095 deprecates type 0), jumbograms (RFC 2675), and following redirects.
 * @module
 */
import { type Ipv6AddressLike, formatIpv6Address, toIpv6Bytes } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { FragmentationNeededError, MorganaError, OutOfRangeError, nativeFailure } from '../errors.js';
import { fragment as fragmentPacket } from '../wire/ipv6.js';
import { native } from '../native.js';
import { Ipv6Reassembler, type Ipv6ReassemblerOptions, type Ipv6ReassemblerStats } from '../reassembly.js';
import { ETHERTYPE, type Ethernet } from './ethernet.js';
import { type IpOutput, NEIGHBOUR_REFRESH_MS } from './ip-output.js';
import { FragmentBatch } from './fragment-batch.js';
import type { FrameOffload, ReceiveBatch } from '../net/device.js';
import { transportChecksumCovered } from './checksum-offload.js';

/** Upper-layer and extension next-header values the layer looks at. */
const NH = { HOP_BY_HOP: 0, ROUTING: 43, FRAGMENT: 44, NO_NEXT_HEADER: 59, DESTINATION_OPTIONS: 60 } as const;
const HEADER = 40;
const MAX_PAYLOAD = 65_535;
/** The smallest link MTU IPv6 allows (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;

/** How an address was configured. */
export type Ipv6AddressOrigin = 'static' | 'link-local' | 'slaac' | 'temporary';
/** RFC 4862 address states (`duplicated`: DAD found a conflict; the address is never used). */
export type Ipv6AddressState = 'tentative' | 'preferred' | 'deprecated' | 'duplicated';

/** One address of an interface. Times are on the stack's clock, `Infinity` for never. */
export interface Ipv6AddressEntry {
  readonly address: Buffer;
  prefixLength: number;
  state: Ipv6AddressState;
  readonly origin: Ipv6AddressOrigin;
  validUntil: number;
  preferredUntil: number;
}

/** An on-link prefix (from an address configured with its prefix, or a router's prefix option). */
export interface OnLinkPrefix {
  readonly prefix: Buffer;
  readonly length: number;
  validUntil: number;
}

/** A default router learned from router advertisements. */
export interface DefaultRouter {
  readonly address: Buffer;
  validUntil: number;
  /** RFC 4191 preference: 1 high, 0 medium, -1 low. */
  preference: number;
}

/** What the layer asks of an interface's neighbour cache (ts/stack/ndp.ts implements it). */
export interface NeighbourResolver {
  /** The link-layer address to use now, if known (may start NUD: STALE → DELAY). */
  lookup(ip: Buffer): Buffer | undefined;
  /** Calls `send` once `ip` resolves; false when the packet was dropped (queue full). */
  resolve(ip: Buffer, send: (mac: Buffer) => void): boolean;
  /** Whether `ip` is reachable or probably so (any state but INCOMPLETE, RFC 4861 §6.3.6). */
  probablyReachable(ip: Buffer): boolean;
}

/** One interface's IPv6 state. */
export interface Ipv6Interface {
  /** The same Ethernet object the IPv4 side of this interface uses. */
  readonly eth: Ethernet;
  /** 0-based, in the order of the stack's interfaces. */
  readonly index: number;
  /** A stable name (`net0`, …): part of the RFC 7217 interface identifier input. */
  readonly name: string;
  /** Link MTU: the device's, lowered by a router advertisement's MTU option. */
  mtu: number;
  /** Unicast addresses, in every state. */
  readonly addresses: Ipv6AddressEntry[];
  /** On-link prefixes. */
  readonly prefixes: OnLinkPrefix[];
  /** Default routers (RFC 4861 §6.3.4). */
  readonly routers: DefaultRouter[];
  /** Multicast groups joined, by address bytes (latin1 key), with a reference count. */
  readonly groups: Map<string, { address: Buffer; refs: number }>;
  /** The neighbour cache; set by neighbour discovery. */
  neighbours: NeighbourResolver | undefined;
  /** The stack acts as a router on this interface (sends RAs, answers to ff02::2, R flag in NAs). */
  isRouter: boolean;
}

/** What a protocol handler receives for each datagram addressed to the stack. */
export interface Ipv6Datagram {
  /** 16 bytes each (views into the packet). */
  src: Buffer;
  dst: Buffer;
  /** The upper-layer protocol after the extension headers (6 TCP, 17 UDP, 58 ICMPv6). */
  nextHeader: number;
  hopLimit: number;
  /** Fixed header and extension headers. */
  header: Buffer;
  /** Upper-layer bytes. */
  payload: Buffer;
  iface: Ipv6Interface;
  /** The destination was a multicast address. */
  multicast: boolean;
  /**
   * The device vouched for the upper-layer checksum ({@link transportChecksumCovered}): the
   * receiver need not sum the payload. Never set for a reassembled packet.
   */
  checksumVerified?: boolean;
}

/** An upper protocol's receive function. */
export type Ipv6Handler = (datagram: Ipv6Datagram) => void;

/**
 * An {@link Ipv6Handler} that returns `true` when it kept no reference to the datagram's
 * buffers (it copied what it needed), so that an in-process medium may reuse them.
 */
export type ReusingIpv6Handler = (datagram: Ipv6Datagram) => boolean;

/** Options of {@link Ipv6Layer.write}. */
export interface Ipv6WriteOptions {
  /** Bytes lent to `fill` right after the IPv6 header (and extension headers). */
  size?: number;
  /** Writes the header-near part of the payload (e.g. the transport header); returns its length. */
  fill?: (buffer: Buffer) => number;
  /** Buffers copied after what `fill` wrote. */
  payloads?: readonly Uint8Array[];
  /** Hop limit (default the stack's: 64, or a router advertisement's Cur Hop Limit). */
  hopLimit?: number;
  /** Source address (default: RFC 6724 selection for the destination). `'::'` is allowed. */
  src?: Ipv6AddressLike;
  /** Traffic class byte. */
  trafficClass?: number;
  /** Fragment above the path MTU (default true); false throws {@link PacketTooBigError}. */
  fragment?: boolean;
  /** Outgoing interface: required for link-local and multicast destinations on multi-interface stacks. */
  iface?: Ipv6Interface;
  /**
   * Hop-by-hop options to carry (their TLVs, without the 2-byte header: the layer adds it and
   * pads to 8 bytes), e.g. MLD's router alert.
   */
  hopByHopOptions?: Uint8Array;
}

/** An ICMPv6 error as handed to the protocol it concerns. */
export interface Icmpv6ErrorReport {
  type: number;
  code: number;
  /** Who reported it (RFC 5952 text). */
  from: string;
  /** The MTU of a Packet Too Big. */
  mtu?: number;
  /** The quoted packet: addresses, the upper-layer protocol and its first bytes. */
  original: { src: Buffer; dst: Buffer; nextHeader: number; payload: Buffer };
}

/** Receives ICMPv6 errors about packets of one protocol. */
export type Icmpv6ErrorListener = (report: Icmpv6ErrorReport) => void;

/** IPv6 counters. */
export interface Ipv6Stats {
  received: number;
  delivered: number;
  sent: number;
  fragmentsSent: number;
  /** Received packets dropped, by reason (`ERR_IPV6_TRUNCATED`, `not-for-us`, …). */
  dropped: Record<string, number>;
  /** Sends that failed: no route, no source address, neighbour queue full. */
  sendFailures: number;
  /** Path MTU cache entries now held. */
  pathMtuEntries: number;
}

/** A packet larger than the path MTU that may not be fragmented. `mtu` is what to fit. */
export class PacketTooBigError extends FragmentationNeededError {
  constructor(mtu: number, length: number) {
    super(mtu);
    this.name = 'PacketTooBigError';
    this.message = `a ${length}-byte IPv6 packet exceeds the path MTU ${mtu} and fragmentation is off`;
  }
}

/** How an ICMPv6 error about a received packet is asked for (set by the ICMPv6 module). */
export type Icmpv6ErrorSender = (
  type: number,
  code: number,
  parameter: number,
  packet: Buffer,
  context: { iface: Ipv6Interface; linkMulticast: boolean; evenIfMulticast: boolean },
) => void;

/** Options of the IPv6 layer. */
export interface Ipv6LayerOptions {
  interfaces: ReadonlyArray<{ eth: Ethernet; name?: string }>;
  clock: Clock;
  /** Default hop limit (default 64). */
  hopLimit?: number;
  /** A static default router (`gateway6`), reached over `gatewayInterface` (default the first). */
  gateway?: Buffer;
  gatewayInterface?: number;
  /** Path MTU cache size (default 1024 destinations, least recently updated evicted). */
  pathMtuEntries?: number;
  /** How long a lowered path MTU holds before the link MTU is tried again (default 10 min, RFC 8201 §4). */
  pathMtuTimeoutMs?: number;
  /** Prefer temporary addresses as sources (RFC 6724 rule 7; default true). */
  preferTemporary?: boolean;
  /** Reassembly limits (default 256 KiB / 16 fragments / 10 s, as for IPv4). */
  reassembly?: Ipv6ReassemblerOptions;
  /** A 32-bit random value (fragment identifications). */
  randomUint32: () => number;
  /** The stack's send path for packets built in Rust (the IPv4 layer's; see {@link IpOutput}). */
  output?: IpOutput;
}

// ---------------------------------------------------------------------------------------------
// Address helpers

/** `ff02::1`, all nodes. */
export const ALL_NODES = Buffer.from('ff020000000000000000000000000001', 'hex');
/** `ff02::2`, all routers. */
export const ALL_ROUTERS = Buffer.from('ff020000000000000000000000000002', 'hex');
/** `ff02::16`, all MLDv2-capable routers. */
export const ALL_MLDV2_ROUTERS = Buffer.from('ff020000000000000000000000000016', 'hex');
/** `::`. */
export const UNSPECIFIED = Buffer.alloc(16);

/** `address` as a Buffer (a view when it already is bytes). */
export function ipv6Bytes(address: Ipv6AddressLike, name = 'address'): Buffer {
  const bytes = toIpv6Bytes(address, name);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, 16);
}

/** A map key for 16 address bytes. */
export function addressKey(address: Uint8Array): string {
  return Buffer.from(address.buffer, address.byteOffset, 16).toString('latin1');
}

/** Whether `a` is a multicast address (ff00::/8). */
export function isMulticast(a: Uint8Array): boolean {
  return a[0] === 0xff;
}

/** Whether `a` is a link-local unicast address (fe80::/10). */
export function isLinkLocal(a: Uint8Array): boolean {
  return a[0] === 0xfe && (a[1]! & 0xc0) === 0x80;
}

/** Whether `a` is `::`. */
export function isUnspecified(a: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== 0) return false;
  return true;
}

/** The scope of an address per RFC 6724 §3.1 (2 link-local, 5 site, 14 global…). */
export function scopeOf(a: Uint8Array): number {
  if (isMulticast(a)) return a[1]! & 0x0f;
  if (isLinkLocal(a)) return 2;
  // ::1 has link-local scope for address selection.
  let loopback = a[15] === 1;
  for (let i = 0; i < 15 && loopback; i++) if (a[i] !== 0) loopback = false;
  return loopback ? 2 : 14;
}

/** The solicited-node multicast group of `address` (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1). */
export function solicitedNode(address: Uint8Array): Buffer {
  const g = Buffer.from('ff0200000000000000000001ff000000', 'hex');
  g[13] = address[13]!;
  g[14] = address[14]!;
  g[15] = address[15]!;
  return g;
}

/** Whether `a` is a solicited-node group address. */
export function isSolicitedNode(a: Uint8Array): boolean {
  return a[0] === 0xff && a[1] === 0x02 && a[11] === 0x01 && a[12] === 0xff && a.subarray(2, 11).every((b) => b === 0);
}

/** The Ethernet MAC of an IPv6 multicast group: 33:33 and the group's last 32 bits (RFC 2464 §7). */
export function multicastMac(group: Uint8Array): Buffer {
  return Buffer.from([0x33, 0x33, group[12]!, group[13]!, group[14]!, group[15]!]);
}

/** Leading bits `a` and `b` share, up to `max`. */
export function commonPrefixLength(a: Uint8Array, b: Uint8Array, max = 128): number {
  let n = 0;
  for (let i = 0; i < 16 && n < max; i++) {
    const x = a[i]! ^ b[i]!;
    if (x === 0) {
      n += 8;
      continue;
    }
    return Math.min(max, n + Math.clz32(x) - 24);
  }
  return Math.min(n, max);
}

/** Whether `address` is inside `prefix/length`. */
export function inPrefix(address: Uint8Array, prefix: Uint8Array, length: number): boolean {
  return commonPrefixLength(address, prefix, length) >= length;
}

/** Node timers take at most 2^31-1 ms; longer delays are chained. */
const MAX_TIMER = 0x7fffffff;

/** A one-shot timer for any delay (lifetimes of days, infinity never fires). */
export function longTimer(clock: Clock, delayMs: number, callback: () => void): Timer {
  if (delayMs === Infinity) return { cancel() {} };
  let current: Timer;
  let cancelled = false;
  const at = clock.now() + delayMs;
  const arm = () => {
    const left = at - clock.now();
    current = clock.setTimer(Math.min(Math.max(0, left), MAX_TIMER), () => {
      if (cancelled) return;
      if (at - clock.now() > 0) arm();
      else callback();
    });
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      current.cancel();
    },
  };
}

// ---------------------------------------------------------------------------------------------

const slots = new Uint32Array(native.IPV6_PARSE_SLOTS);

/** A checked fragment waiting for this turn's reassembly batch. */
interface QueuedFragment {
  packet: Buffer;
  iface: Ipv6Interface;
  linkMulticast: boolean;
  multicast: boolean;
  /** Where the Fragment header was: the headers from there on are checked after reassembly. */
  fragmentAt: number;
}


/** Outcome of the options of one hop-by-hop or destination options header. */
type OptionVerdict = undefined | { drop: string; pointer?: number; evenIfMulticast?: boolean };

/** Known option types: Pad1, PadN, and router alert (RFC 2711) in hop-by-hop headers. */
const PAD1 = 0;
const PADN = 1;
const ROUTER_ALERT = 5;

/** The IPv6 layer. */
export class Ipv6Layer {
  readonly interfaces: Ipv6Interface[];
  /** Hop limit of the packets the stack originates (a router advertisement may change it). */
  hopLimit: number;
  /** The static default router (`gateway6`), if any. */
  gateway: { address: Buffer; iface: Ipv6Interface } | undefined;
  readonly preferTemporary: boolean;
  readonly #clock: Clock;
  readonly #handlers = new Map<number, Ipv6Handler | ReusingIpv6Handler>();
  /** Next headers whose handler was registered with {@link onReusing}. */
  readonly #reusing = new Set<number>();
  readonly #errorSinks = new Map<number, Icmpv6ErrorListener[]>();
  readonly #groupListeners: Array<(iface: Ipv6Interface, group: Buffer, joined: boolean) => void> = [];
  readonly #pmtu = new Map<string, { mtu: number; expiresAt: number }>();
  readonly #pmtuLimit: number;
  readonly #pmtuTimeoutMs: number;
  readonly reassembler: Ipv6Reassembler;
  /** Fragments for us received in this turn, waiting for `#reassembleBatch`. */
  readonly #fragments = new FragmentBatch<QueuedFragment>((batch, count) => this.#reassembleBatch(batch, count));
  readonly #random: () => number;
  /** The stack's send path for packets built in Rust, when there is one. */
  readonly output: IpOutput | undefined;
  #expiryTimer: Timer | undefined;
  #closed = false;
  /** Set by the ICMPv6 module: sends an error about a received packet. */
  icmpErrorSender: Icmpv6ErrorSender | undefined;
  readonly #stats = { received: 0, delivered: 0, sent: 0, fragmentsSent: 0, dropped: {} as Record<string, number>, sendFailures: 0 };

  constructor(options: Ipv6LayerOptions) {
    this.#clock = options.clock;
    this.hopLimit = options.hopLimit ?? 64;
    this.preferTemporary = options.preferTemporary ?? true;
    this.#pmtuLimit = options.pathMtuEntries ?? 1024;
    this.#pmtuTimeoutMs = options.pathMtuTimeoutMs ?? 600_000;
    this.reassembler = new Ipv6Reassembler(options.reassembly);
    this.#random = options.randomUint32;
    this.output = options.output;
    this.interfaces = options.interfaces.map(({ eth, name }, index) => ({
      eth,
      index,
      name: name ?? `net${index}`,
      mtu: eth.mtu,
      addresses: [],
      prefixes: [],
      routers: [],
      groups: new Map(),
      neighbours: undefined,
      isRouter: false,
    }));
    if (options.gateway) {
      const iface = this.interfaces[options.gatewayInterface ?? 0];
      if (!iface) throw new MorganaError('ERR_STACK_CONFIG', 'gateway6: no such interface');
      this.gateway = { address: options.gateway, iface };
    }
    for (const iface of this.interfaces) {
      iface.eth.onReusing(ETHERTYPE.IPV6, (payload, _src, frame, offload) => this.#receive(payload, iface, (frame[0]! & 1) === 1, offload) === true);
    }
    this.#scheduleExpiry();
  }

  /** Registers the receive function of an upper-layer protocol (6 TCP, 17 UDP, 58 ICMPv6). */
  on(nextHeader: number, handler: Ipv6Handler): void {
    this.#reusing.delete(nextHeader);
    this.#handlers.set(nextHeader, handler);
  }

  /**
   * As {@link on}, for a handler that returns true when it kept no reference to the datagram's
   * buffers: a frame given away by an in-process medium can then go back to its sender (TCP).
   */
  onReusing(nextHeader: number, handler: ReusingIpv6Handler): void {
    this.#reusing.add(nextHeader);
    this.#handlers.set(nextHeader, handler);
  }

  /**
   * @internal As `Ipv4Layer.steerReceive`: lets `steer` take packets of `nextHeader` for this
   * host straight out of the interfaces' received batches, with the receiving MAC and the
   * host's usable addresses (16 bytes each) to judge them by, counted as received and
   * delivered, while the upper layer's handler is the one registered now. It must take only
   * what this layer would deliver to that handler unchanged: unicast to a usable address, the
   * upper-layer header right after the fixed header, from a source that is not multicast
   * (`steer_tcp` in Rust).
   */
  steerReceive(nextHeader: number, steer: ((batch: ReceiveBatch, mac: Buffer, locals6: Buffer) => void) | undefined): void {
    const handler = this.#handlers.get(nextHeader);
    for (const iface of this.interfaces) {
      if (steer === undefined) {
        iface.eth.steerReceive(ETHERTYPE.IPV6, undefined);
        continue;
      }
      iface.eth.steerReceive(ETHERTYPE.IPV6, (batch, mac) => {
        if (this.#closed || this.#handlers.get(nextHeader) !== handler) return;
        const before = batch.counts[0]!;
        steer(batch, mac, this.#usableAddresses());
        const taken = batch.counts[0]! - before;
        this.#stats.received += taken;
        this.#stats.delivered += taken;
      });
    }
  }

  /** Usable addresses, 16 bytes each, then zeros: refreshed for each batch a steer sees. */
  #locals6 = Buffer.alloc(16 * 8);

  #usableAddresses(): Buffer {
    let n = 0;
    for (const iface of this.interfaces) for (const e of iface.addresses) if (e.state === 'preferred' || e.state === 'deprecated') n++;
    if (this.#locals6.length < n * 16) this.#locals6 = Buffer.alloc(n * 32);
    const out = this.#locals6;
    let at = 0;
    for (const iface of this.interfaces) {
      for (const e of iface.addresses) {
        if (e.state !== 'preferred' && e.state !== 'deprecated') continue;
        out.set(e.address, at);
        at += 16;
      }
    }
    out.fill(0, at);
    return out;
  }

  /** Registers a listener for ICMPv6 errors that quote packets of `nextHeader`. */
  onIcmpError(nextHeader: number, listener: Icmpv6ErrorListener): void {
    this.#errorSinks.set(nextHeader, [...(this.#errorSinks.get(nextHeader) ?? []), listener]);
  }

  /** @internal Called by ICMPv6 with an error quoting one of our packets. */
  reportIcmpError(report: Icmpv6ErrorReport): void {
    for (const listener of this.#errorSinks.get(report.original.nextHeader) ?? []) listener(report);
  }

  /** Listens to multicast group joins and leaves (MLD reports them). */
  onGroupChange(listener: (iface: Ipv6Interface, group: Buffer, joined: boolean) => void): void {
    this.#groupListeners.push(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Addresses, groups, routes

  /** Joins `group` on `iface` (reference counted); a first join is announced to listeners. */
  joinGroup(iface: Ipv6Interface, group: Uint8Array): void {
    const key = addressKey(group);
    const entry = iface.groups.get(key);
    if (entry) {
      entry.refs++;
      return;
    }
    const address = Buffer.from(group);
    iface.groups.set(key, { address, refs: 1 });
    for (const l of this.#groupListeners) l(iface, address, true);
  }

  /** Leaves `group` on `iface` once every join has been matched by a leave. */
  leaveGroup(iface: Ipv6Interface, group: Uint8Array): void {
    const key = addressKey(group);
    const entry = iface.groups.get(key);
    if (!entry) return;
    if (--entry.refs > 0) return;
    iface.groups.delete(key);
    for (const l of this.#groupListeners) l(iface, entry.address, false);
  }

  /**
   * Adds an address to `iface` (joining its solicited-node group). Callers (address
   * autoconfiguration) manage its state; a `tentative` address receives nothing but DAD traffic.
   */
  addAddress(iface: Ipv6Interface, entry: Ipv6AddressEntry): void {
    if (iface.addresses.some((e) => e.address.equals(entry.address))) {
      throw new MorganaError('ERR_IPV6_ADDRESS_EXISTS', `${formatIpv6Address(entry.address)} is already on ${iface.name}`);
    }
    iface.addresses.push(entry);
    if (entry.state !== 'duplicated') this.joinGroup(iface, solicitedNode(entry.address));
  }

  /** Marks an address duplicated (leaving its solicited-node group). */
  markDuplicated(iface: Ipv6Interface, entry: Ipv6AddressEntry): void {
    if (entry.state === 'duplicated') return;
    entry.state = 'duplicated';
    this.leaveGroup(iface, solicitedNode(entry.address));
  }

  /** Removes an address from `iface`. */
  removeAddress(iface: Ipv6Interface, address: Uint8Array): void {
    const i = iface.addresses.findIndex((e) => e.address.equals(address));
    if (i < 0) return;
    const [entry] = iface.addresses.splice(i, 1);
    this.output?.clear();
    if (entry!.state !== 'duplicated') this.leaveGroup(iface, solicitedNode(entry!.address));
  }

  /** The entry of `address` on any interface (any state). */
  findAddress(address: Uint8Array): { iface: Ipv6Interface; entry: Ipv6AddressEntry } | undefined {
    for (const iface of this.interfaces) {
      for (const entry of iface.addresses) if (entry.address.equals(address)) return { iface, entry };
    }
    return undefined;
  }

  /** Adds or refreshes an on-link prefix of `iface`. */
  setOnLink(iface: Ipv6Interface, prefix: Uint8Array, length: number, validUntil: number): void {
    const existing = iface.prefixes.find((p) => p.length === length && inPrefix(prefix, p.prefix, length));
    if (existing) {
      existing.validUntil = validUntil;
      return;
    }
    const masked = Buffer.alloc(16);
    for (let bit = 0; bit < length; bit++) if (prefix[bit >> 3]! & (0x80 >> (bit & 7))) masked[bit >> 3]! |= 0x80 >> (bit & 7);
    iface.prefixes.push({ prefix: masked, length, validUntil });
  }

  /** Removes an on-link prefix. */
  removeOnLink(iface: Ipv6Interface, prefix: Uint8Array, length: number): void {
    const i = iface.prefixes.findIndex((p) => p.length === length && inPrefix(prefix, p.prefix, length));
    if (i >= 0) iface.prefixes.splice(i, 1);
  }

  /** Whether `address` is one of this stack's usable (not tentative, not duplicated) unicast addresses. */
  isLocal(address: Uint8Array): boolean {
    const found = this.findAddress(address);
    return found !== undefined && (found.entry.state === 'preferred' || found.entry.state === 'deprecated');
  }

  /** Usable unicast addresses (preferred or deprecated), RFC 5952 text, interface by interface. */
  addresses(): string[] {
    const out: string[] = [];
    for (const iface of this.interfaces) {
      for (const e of iface.addresses) if (e.state === 'preferred' || e.state === 'deprecated') out.push(formatIpv6Address(e.address));
    }
    return out;
  }

  /** Whether `group` is received on `iface`: all-nodes, a joined group, or a solicited-node group of ours. */
  acceptsGroup(iface: Ipv6Interface, group: Uint8Array): boolean {
    if (group[1] === 0x02 || group[1] === 0x01) {
      // ff02::1 and ff01::1: all nodes, never joined explicitly (RFC 3810 §6).
      if (group[15] === 1 && group.subarray(2, 15).every((b) => b === 0)) return true;
    }
    return iface.groups.has(addressKey(group));
  }

  /** The current path MTU towards `dst` over `iface`. */
  pathMtu(dst: Uint8Array, iface: Ipv6Interface): number {
    if (this.#pmtu.size === 0) return iface.mtu;
    const entry = this.#pmtu.get(addressKey(dst));
    if (!entry) return iface.mtu;
    if (entry.expiresAt <= this.#clock.now()) {
      // RFC 8201 §4: after the timeout, try the link MTU again.
      this.#pmtu.delete(addressKey(dst));
      return iface.mtu;
    }
    return Math.min(entry.mtu, iface.mtu);
  }

  /**
   * Lowers the path MTU towards `dst` after a Packet Too Big (RFC 8201 §4: never below 1280,
   * never raised by a PTB). Returns the path MTU now in force.
   */
  updatePathMtu(dst: Uint8Array, mtu: number): number {
    const key = addressKey(dst);
    const value = Math.max(IPV6_MIN_MTU, Math.floor(mtu));
    const now = this.#clock.now();
    const current = this.#pmtu.get(key);
    if (current && current.expiresAt > now && current.mtu <= value) return current.mtu;
    this.#pmtu.delete(key);
    if (this.#pmtu.size >= this.#pmtuLimit) {
      const oldest = this.#pmtu.keys().next().value;
      if (oldest !== undefined) this.#pmtu.delete(oldest);
    }
    this.#pmtu.set(key, { mtu: value, expiresAt: now + this.#pmtuTimeoutMs });
    this.output?.clear();
    return value;
  }

  /** The path MTU cache (destination, MTU, ms left). */
  pathMtuEntries(): Array<{ destination: string; mtu: number; expiresInMs: number }> {
    const now = this.#clock.now();
    const out: Array<{ destination: string; mtu: number; expiresInMs: number }> = [];
    for (const [key, e] of this.#pmtu) {
      if (e.expiresAt > now) out.push({ destination: formatIpv6Address(Buffer.from(key, 'latin1')), mtu: e.mtu, expiresInMs: e.expiresAt - now });
    }
    return out;
  }

  /** Interface and next hop for `dst` (no source selection). */
  #nextHop(dst: Buffer, preferred?: Ipv6Interface): { iface: Ipv6Interface; nextHop: Buffer } | undefined {
    if (isMulticast(dst) || isLinkLocal(dst)) {
      const iface = preferred ?? this.interfaces[0];
      return iface && { iface, nextHop: dst };
    }
    const now = this.#clock.now();
    let best: { iface: Ipv6Interface; nextHop: Buffer; length: number } | undefined;
    for (const iface of this.interfaces) {
      if (preferred && iface !== preferred) continue;
      for (const p of iface.prefixes) {
        if (p.validUntil > now && (!best || p.length > best.length) && inPrefix(dst, p.prefix, p.length)) best = { iface, nextHop: dst, length: p.length };
      }
    }
    if (best) return best;
    // Default routers: reachable (or probably reachable) ones first, then by preference, RFC 4861 §6.3.6 / RFC 4191.
    let router: { iface: Ipv6Interface; nextHop: Buffer; score: number } | undefined;
    for (const iface of this.interfaces) {
      if (preferred && iface !== preferred) continue;
      for (const r of iface.routers) {
        if (r.validUntil <= now) continue;
        const score = (iface.neighbours?.probablyReachable(r.address) ? 4 : 0) + r.preference;
        if (!router || score > router.score) router = { iface, nextHop: r.address, score };
      }
    }
    if (router) return router;
    if (this.gateway && (!preferred || preferred === this.gateway.iface)) return { iface: this.gateway.iface, nextHop: this.gateway.address };
    return undefined;
  }

  /**
   * RFC 6724 §5 source address selection for `dst` out of `iface`: the destination itself, then
   * appropriate scope, non-deprecated, temporary (when preferred), longest matching prefix.
   * Candidates are the interface's usable addresses; for a global destination, other
   * interfaces' addresses when it has none.
   */
  selectSource(dst: Uint8Array, iface: Ipv6Interface): Buffer | undefined {
    let best = this.#bestSource(dst, iface.addresses);
    if (!best && scopeOf(dst) > 2) {
      for (const other of this.interfaces) if (other !== iface) best = this.#bestSource(dst, other.addresses, best);
    }
    return best?.address;
  }

  #bestSource(dst: Uint8Array, candidates: readonly Ipv6AddressEntry[], initial?: Ipv6AddressEntry): Ipv6AddressEntry | undefined {
    let best = initial;
    const dstScope = scopeOf(dst);
    for (const c of candidates) {
      if (c.state !== 'preferred' && c.state !== 'deprecated') continue;
      if (!best || this.#preferSource(c, best, dst, dstScope)) best = c;
    }
    return best;
  }

  /** Whether `a` is a better source than `b` for `dst` (RFC 6724 §5 rules 1, 2, 3, 7, 8). */
  #preferSource(a: Ipv6AddressEntry, b: Ipv6AddressEntry, dst: Uint8Array, dstScope: number): boolean {
    // Rule 1: prefer the destination itself.
    if (a.address.equals(dst)) return true;
    if (b.address.equals(dst)) return false;
    // Rule 2: prefer appropriate scope.
    const sa = scopeOf(a.address);
    const sb = scopeOf(b.address);
    if (sa < sb) return sa >= dstScope;
    if (sb < sa) return sb < dstScope;
    // Rule 3: avoid deprecated addresses.
    if (a.state !== b.state) return a.state === 'preferred';
    // Rule 7: prefer temporary addresses (RFC 8981 §3.7), when enabled.
    const ta = a.origin === 'temporary';
    const tb = b.origin === 'temporary';
    if (ta !== tb) return this.preferTemporary ? ta : tb;
    // Rule 8: longest matching prefix (up to the source's prefix length).
    return commonPrefixLength(a.address, dst, a.prefixLength) > commonPrefixLength(b.address, dst, b.prefixLength);
  }

  /**
   * The interface, next hop, selected source and path MTU for `dst`, or undefined when there is
   * no route or no usable source address. `iface` restricts (and for link-local and multicast
   * destinations, names) the outgoing interface.
   */
  route(dst: Uint8Array, iface?: Ipv6Interface): { iface: Ipv6Interface; nextHop: Buffer; src: Buffer; mtu: number } | undefined {
    const d = Buffer.isBuffer(dst) ? dst : Buffer.from(dst.buffer, dst.byteOffset, 16);
    const hop = this.#nextHop(d, iface);
    if (!hop) return undefined;
    const src = this.selectSource(d, hop.iface);
    if (!src) return undefined;
    return { iface: hop.iface, nextHop: hop.nextHop, src, mtu: this.pathMtu(d, hop.iface) };
  }

  /**
   * The source address {@link write} would use for `dst` (what an upper layer needs for its
   * pseudo-header checksum). Throws `ERR_NO_ROUTE` or `ERR_NO_SOURCE_ADDRESS`.
   */
  sourceFor(dst: Uint8Array, iface?: Ipv6Interface): Buffer {
    const d = Buffer.isBuffer(dst) ? dst : Buffer.from(dst.buffer, dst.byteOffset, 16);
    const hop = this.#nextHop(d, iface);
    if (!hop) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv6Address(d)}`);
    const src = this.selectSource(d, hop.iface);
    if (!src) throw new MorganaError('ERR_NO_SOURCE_ADDRESS', `no usable source address for ${formatIpv6Address(d)} on ${hop.iface.name}`);
    return src;
  }

  // -------------------------------------------------------------------------------------------
  // Send

  /**
   * Sends a datagram of `nextHeader` to `destination`. What `fill` writes and the `payloads` are
   * assembled in place in the device's buffer when the packet fits the path MTU and the next
   * hop's link-layer address is known; otherwise the packet is built once and queued for
   * neighbour resolution. Throws `ERR_NO_ROUTE`, `ERR_NO_SOURCE_ADDRESS` (no usable address of
   * a fitting scope yet, e.g. while DAD runs), `ERR_STACK_CLOSED`, or {@link PacketTooBigError}.
   */
  write(destination: Ipv6AddressLike, nextHeader: number, options: Ipv6WriteOptions = {}): void {
    if (this.#closed) throw new MorganaError('ERR_STACK_CLOSED', 'the stack is closed');
    const dst = ipv6Bytes(destination, 'dst');
    const hop = this.#nextHop(dst, options.iface);
    if (!hop) {
      this.#stats.sendFailures++;
      throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv6Address(dst)}`);
    }
    const { iface, nextHop } = hop;
    const src = options.src !== undefined ? ipv6Bytes(options.src, 'src') : this.selectSource(dst, iface);
    if (!src) {
      this.#stats.sendFailures++;
      throw new MorganaError('ERR_NO_SOURCE_ADDRESS', `no usable source address for ${formatIpv6Address(dst)} on ${iface.name} (duplicate address detection may still run)`);
    }
    const size = options.size ?? 0;
    const payloads = options.payloads ?? [];
    let payloadBytes = 0;
    for (const p of payloads) payloadBytes += p.length;
    const hopLimit = options.hopLimit ?? this.hopLimit;
    if (!Number.isInteger(hopLimit) || hopLimit < 0 || hopLimit > 255) throw new OutOfRangeError(`hopLimit must be 0..255, got ${hopLimit}`);
    const trafficClass = options.trafficClass ?? 0;
    if (!Number.isInteger(trafficClass) || trafficClass < 0 || trafficClass > 255) throw new OutOfRangeError(`trafficClass must be 0..255, got ${trafficClass}`);
    const hbh = options.hopByHopOptions;
    const extLength = hbh ? (((2 + hbh.length + 7) >> 3) << 3) : 0;
    if (extLength > 2048) throw new OutOfRangeError('hop-by-hop options longer than 2046 bytes');
    const maxPayload = extLength + size + payloadBytes;
    if (maxPayload > MAX_PAYLOAD) throw new MorganaError('ERR_IPV6_PACKET_TOO_LONG', `a ${maxPayload}-byte IPv6 payload exceeds 65535 bytes`);
    const maxTotal = HEADER + maxPayload;
    const build = (out: Buffer): number => {
      let at = HEADER;
      if (hbh) {
        out[at] = nextHeader;
        out[at + 1] = (extLength >> 3) - 1;
        out.set(hbh, at + 2);
        writePadding(out, at + 2 + hbh.length, extLength - 2 - hbh.length);
        at += extLength;
      }
      const written = options.fill ? options.fill(out.subarray(at, at + size)) : 0;
      if (!Number.isInteger(written) || written < 0 || written > size) {
        throw new OutOfRangeError(`fill must return a length from 0 to ${size}, got ${written}`);
      }
      at += written;
      for (const p of payloads) {
        out.set(p, at);
        at += p.length;
      }
      const result = native.ipv6EmitHeader(
        out,
        0,
        { trafficClass, flowLabel: 0, nextHeader: hbh ? NH.HOP_BY_HOP : nextHeader, hopLimit, payloadLength: at - HEADER },
        src,
        dst,
      );
      if (result < 0) throw nativeFailure(result);
      return at;
    };
    const mtu = this.pathMtu(dst, iface);
    const multicast = isMulticast(dst);
    if (maxTotal <= mtu) {
      const mac = multicast ? multicastMac(dst) : iface.neighbours?.lookup(nextHop);
      if (mac) {
        iface.eth.write(mac, ETHERTYPE.IPV6, { size: maxTotal, fill: build });
        this.#stats.sent++;
        return;
      }
      // Not resolved yet: build now (the caller's buffers may change) and queue it.
      const packet = Buffer.allocUnsafe(maxTotal);
      const length = build(packet);
      this.#transmit(packet.subarray(0, length), iface, nextHop, false);
      return;
    }
    const packet = Buffer.allocUnsafe(maxTotal);
    const length = build(packet);
    if (length <= mtu) {
      this.#transmit(packet.subarray(0, length), iface, nextHop, multicast);
      return;
    }
    if (options.fragment === false) {
      this.#stats.sendFailures++;
      throw new PacketTooBigError(mtu, length);
    }
    const pieces = fragmentPacket(packet.subarray(0, length), mtu, this.#random() >>> 0);
    this.#stats.fragmentsSent += pieces.length;
    this.#transmit(packet, iface, nextHop, multicast, pieces);
  }

  /** Sends whole packets out of `iface` to `nextHop` (resolving it unless multicast). */
  #transmit(packet: Buffer, iface: Ipv6Interface, nextHop: Buffer, multicast: boolean, pieces: Buffer[] = [packet]): void {
    const send = (mac: Buffer) => {
      for (const piece of pieces) {
        iface.eth.write(mac, ETHERTYPE.IPV6, {
          size: piece.length,
          fill: (b) => {
            piece.copy(b);
            return piece.length;
          },
        });
      }
      this.#stats.sent++;
    };
    if (multicast) return send(multicastMac(nextHop));
    if (!iface.neighbours) {
      this.#stats.sendFailures++;
      return;
    }
    if (!iface.neighbours.resolve(Buffer.from(nextHop), send)) this.#stats.sendFailures++;
  }

  /**
   * @internal Lets packets to `dst` take the Rust fast path for a while (see {@link IpOutput}):
   * installs its neighbour entry when the route, the neighbour's MAC and the path MTU are known.
   * Link-local and multicast destinations always take the general path (they name an interface).
   */
  offerFastPath(dst: Buffer): void {
    const output = this.output;
    if (!output || isMulticast(dst) || (dst[0] === 0xfe && (dst[1]! & 0xc0) === 0x80)) return;
    const route = this.route(dst);
    const mac = route && route.iface.neighbours?.lookup(route.nextHop);
    if (!route || !mac) return;
    output.native.setHopLimit(this.hopLimit);
    output.install6(dst, route.iface.eth, mac, Math.min(route.mtu, route.iface.eth.mtu), this.#clock.now() + NEIGHBOUR_REFRESH_MS);
  }

  // -------------------------------------------------------------------------------------------
  // Receive

  #drop(reason: string): void {
    this.#stats.dropped[reason] = (this.#stats.dropped[reason] ?? 0) + 1;
  }

  /** Returns true only when the handler kept no reference to the packet's bytes. */
  #receive(payload: Buffer, iface: Ipv6Interface, linkMulticast: boolean, offload?: FrameOffload): boolean | void {
    this.#stats.received++;
    if (this.#closed) return;
    const n = native.ipv6Parse(payload, slots);
    if (n < 0) {
      const error = nativeFailure(n);
      this.#drop(error.code);
      const pointer = slots[0]!;
      // Extension-header errors (the fixed header was valid): parameter problem, code 0.
      if (pointer !== 0xffffffff && payload.length >= HEADER) {
        const packet = payload.subarray(0, Math.min(payload.length, HEADER + payload.readUInt16BE(4)));
        if (this.#isForUs(packet.subarray(24, 40), iface)) {
          this.icmpErrorSender?.(4, 0, pointer, packet, { iface, linkMulticast, evenIfMulticast: false });
        }
      }
      return;
    }
    const packet = payload.subarray(0, slots[0]!);
    const dst = packet.subarray(24, 40);
    const src = packet.subarray(8, 24);
    if (isMulticast(src)) {
      this.#drop('martian-source');
      return;
    }
    const multicast = isMulticast(dst);
    if (multicast) {
      if (!this.acceptsGroup(iface, dst)) {
        this.#drop('not-joined');
        return;
      }
    } else {
      const found = this.findAddress(dst);
      if (!found) {
        this.#drop('not-for-us');
        return;
      }
      if (found.entry.state === 'tentative' || found.entry.state === 'duplicated') {
        // RFC 4862 §5.4: a tentative address receives nothing but DAD's neighbour discovery,
        // which is sent to the solicited-node group.
        this.#drop('tentative-destination');
        return;
      }
    }
    const nextHeader = slots[1]!;
    const nextHeaderPointer = slots[2]!;
    const payloadOffset = slots[3]!;
    const count = slots[8]!;
    const extensions: Array<[number, number, number]> = [];
    for (let i = 0; i < count; i++) extensions.push([slots[9 + i * 3]!, slots[10 + i * 3]!, slots[11 + i * 3]!]);
    const fragmented = slots[4] === 1 && !(slots[5] === 0 && slots[6] === 0);
    for (const [kind, offset, length] of extensions) {
      if (!this.#extensionOk(packet, kind, offset, length, iface, linkMulticast, multicast)) return;
    }
    if (fragmented) {
      // Reassembled with the other fragments of this turn, in one batch.
      this.#fragments.add({ packet, iface, linkMulticast, multicast, fragmentAt: extensions.at(-1)![1] });
      return;
    }
    // Delivered in order behind the fragments queued before it. Unfragmented, the packet is the
    // frame's bytes: reusable when the handler kept nothing.
    this.#fragments.flush();
    const verified = transportChecksumCovered(offload, payloadOffset, nextHeader);
    return this.#deliver(packet, dst, nextHeader, nextHeaderPointer, payloadOffset, iface, linkMulticast, multicast, verified);
  }

  /**
   * Hands the queued fragments to the reassembler in one batch, sends the ICMPv6 errors it
   * asked for, and delivers the packets they complete. Fragments that are views of one buffer
   * (a TAP read) are passed where they lie; others are copied back to back into a staging
   * buffer first.
   */
  #reassembleBatch(batch: readonly QueuedFragment[], count: number): void {
    let oneInterface: Ipv6Interface | undefined = batch[0]!.iface;
    for (let i = 1; i < count && oneInterface; i++) if (batch[i]!.iface !== oneInterface) oneInterface = undefined;
    const data = this.#fragments.lay(batch, count);
    const done = this.reassembler.pushBatch(data, this.#fragments.spans, this.#clock.now(), { count });
    this.#fragments.release();
    if (this.reassembler.pendingReports > 0) this.#sendReassemblyReports(oneInterface);
    for (let i = 0; i < count; i++) {
      const whole = done[i];
      if (whole === undefined) continue;
      const { iface, linkMulticast, multicast, fragmentAt } = batch[i]!;
      // Completed packets are Buffers of their own; an atomic fragment comes back as a view of
      // `data`, which may be the staging buffer: copied.
      const packet = whole.buffer === data.buffer ? Buffer.from(whole) : (whole as Buffer);
      this.#deliverReassembled(packet, fragmentAt, iface, linkMulticast, multicast);
    }
  }

  /** Checks what was fragment data in a reassembled packet (the headers from `fragmentAt` on) and delivers it. */
  #deliverReassembled(packet: Buffer, fragmentAt: number, iface: Ipv6Interface, linkMulticast: boolean, multicast: boolean): void {
    const m = native.ipv6Parse(packet, slots);
    if (m < 0 || (slots[4] === 1 && !(slots[5] === 0 && slots[6] === 0))) {
      this.#drop('bad-reassembly');
      return;
    }
    const nextHeader = slots[1]!;
    const nextHeaderPointer = slots[2]!;
    const payloadOffset = slots[3]!;
    // The unfragmentable part was checked before reassembly.
    const inner: Array<[number, number, number]> = [];
    for (let i = 0; i < slots[8]!; i++) {
      if (slots[10 + i * 3]! >= fragmentAt) inner.push([slots[9 + i * 3]!, slots[10 + i * 3]!, slots[11 + i * 3]!]);
    }
    for (const [kind, offset, length] of inner) {
      if (!this.#extensionOk(packet, kind, offset, length, iface, linkMulticast, multicast)) return;
    }
    this.#deliver(packet, packet.subarray(24, 40), nextHeader, nextHeaderPointer, payloadOffset, iface, linkMulticast, multicast, false);
  }

  /**
   * Hands a packet for us to the handler of its upper-layer protocol; true when a handler
   * registered with {@link onReusing} kept no reference to it.
   */
  #deliver(
    packet: Buffer,
    dst: Buffer,
    nextHeader: number,
    nextHeaderPointer: number,
    payloadOffset: number,
    iface: Ipv6Interface,
    linkMulticast: boolean,
    multicast: boolean,
    checksumVerified: boolean,
  ): boolean {
    if (nextHeader === NH.NO_NEXT_HEADER) {
      this.#drop('no-next-header');
      return false;
    }
    const handler = this.#handlers.get(nextHeader);
    if (!handler) {
      this.#drop('unknown-next-header');
      // RFC 8200 §4: parameter problem code 1 pointing at the field that named it (not for multicast, RFC 4443 §2.4 e).
      this.icmpErrorSender?.(4, 1, nextHeaderPointer, packet, { iface, linkMulticast, evenIfMulticast: false });
      return false;
    }
    this.#stats.delivered++;
    const kept = handler({
      src: packet.subarray(8, 24),
      dst,
      nextHeader,
      hopLimit: packet[7]!,
      header: packet.subarray(0, payloadOffset),
      payload: packet.subarray(payloadOffset),
      iface,
      multicast,
      checksumVerified,
    });
    return kept === true && this.#reusing.has(nextHeader);
  }

  #isForUs(dst: Uint8Array, iface: Ipv6Interface): boolean {
    if (isMulticast(dst)) return this.acceptsGroup(iface, dst);
    return this.isLocal(dst);
  }

  /** Processes one extension header; false when the packet was dropped. */
  #extensionOk(packet: Buffer, kind: number, offset: number, length: number, iface: Ipv6Interface, linkMulticast: boolean, multicast: boolean): boolean {
    if (kind === NH.HOP_BY_HOP || kind === NH.DESTINATION_OPTIONS) {
      const verdict = checkOptions(packet, offset + 2, offset + length, kind === NH.HOP_BY_HOP);
      if (!verdict) return true;
      this.#drop(verdict.drop);
      if (verdict.pointer !== undefined && (!multicast || verdict.evenIfMulticast)) {
        this.icmpErrorSender?.(4, 2, verdict.pointer, packet, { iface, linkMulticast, evenIfMulticast: verdict.evenIfMulticast ?? false });
      }
      return false;
    }
    if (kind === NH.ROUTING) {
      // Segments left 0: ignore the header and go on (RFC 8200 §4.4). Otherwise we would have to
      // forward, which this host does not: parameter problem pointing at the routing type.
      if (packet[offset + 3] === 0) return true;
      this.#drop('routing-header');
      this.icmpErrorSender?.(4, 0, offset + 2, packet, { iface, linkMulticast, evenIfMulticast: false });
      return false;
    }
    return true; // fragment headers: handled by the caller
  }

  /** Sends the ICMPv6 errors the reassembler asked for (parameter problem, time exceeded). */
  #sendReassemblyReports(iface?: Ipv6Interface): void {
    for (const r of this.reassembler.takeReports()) {
      if (r.packet.length < HEADER) continue;
      const out = iface ?? this.#nextHop(r.packet.subarray(8, 24))?.iface ?? this.interfaces[0];
      if (out) this.icmpErrorSender?.(r.type, r.code, r.pointer, r.packet, { iface: out, linkMulticast: false, evenIfMulticast: false });
    }
  }

  #scheduleExpiry(): void {
    if (this.#closed) return;
    this.#expiryTimer = this.#clock.setTimer(1_000, () => {
      this.reassembler.expire(this.#clock.now());
      if (this.reassembler.pendingReports > 0) this.#sendReassemblyReports();
      this.#scheduleExpiry();
    });
  }

  /** Counters (including the reassembly cache's). */
  stats(): Ipv6Stats & { reassembly: Ipv6ReassemblerStats } {
    const sent = this.#stats.sent + (this.output?.sent().v6 ?? 0);
    return { ...this.#stats, sent, dropped: { ...this.#stats.dropped }, pathMtuEntries: this.#pmtu.size, reassembly: this.reassembler.stats() };
  }

  /** Stops timers; later writes throw `ERR_STACK_CLOSED` and received packets are ignored. */
  close(): void {
    // Fragments still queued are dropped with the stack, as the cache's datagrams are.
    this.#fragments.clear();
    this.#closed = true;
    this.#expiryTimer?.cancel();
  }
}

/** Pad1/PadN filling `length` bytes at `at`. */
function writePadding(out: Buffer, at: number, length: number): void {
  if (length === 0) return;
  if (length === 1) {
    out[at] = PAD1;
    return;
  }
  out[at] = PADN;
  out[at + 1] = length - 2;
  out.fill(0, at + 2, at + length);
}

/**
 * Walks the TLV options between `start` and `end` (lengths were checked by the Rust walk) and
 * applies RFC 8200 §4.2 to unknown ones by the two high-order bits of their type: 00 skip,
 * 01 discard, 10 discard and send parameter problem code 2, 11 the same unless the destination
 * was multicast.
 */
function checkOptions(packet: Buffer, start: number, end: number, hopByHop: boolean): OptionVerdict {
  let at = start;
  while (at < end) {
    const type = packet[at]!;
    if (type === PAD1) {
      at++;
      continue;
    }
    const length = packet[at + 1]!;
    if (type === PADN || (hopByHop && type === ROUTER_ALERT && length === 2)) {
      at += 2 + length;
      continue;
    }
    switch (type >> 6) {
      case 0:
        break;
      case 1:
        return { drop: 'unknown-option' };
      case 2:
        return { drop: 'unknown-option', pointer: at, evenIfMulticast: true };
      default:
        return { drop: 'unknown-option', pointer: at, evenIfMulticast: false };
    }
    at += 2 + length;
  }
  return undefined;
}
