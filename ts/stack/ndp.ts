/**
 * Neighbor Discovery for IPv6 (RFC 4861): per interface, a bounded neighbour cache with
 * neighbour unreachability detection (INCOMPLETE, REACHABLE, STALE, DELAY, PROBE, timed on the
 * stack's clock) and a bounded queue of packets per unresolved neighbour; neighbour
 * solicitations and advertisements sent and received with the validity checks of §7.1 (hop
 * limit 255, code 0, lengths, options, the unspecified-source rules) and the update rules of
 * §7.2.5 (solicited, override, router flags); router solicitations at start (§6.3.7: at most 3,
 * 4 s apart, after a random delay); router advertisements processed as a host (§6.3.4: default
 * routers with lifetimes and RFC 4191 preference, on-link prefixes, MTU, Cur Hop Limit,
 * reachable time and retransmission timer, RDNSS servers of RFC 8106), with prefix information
 * passed on to address autoconfiguration; and, for appliances, the router side (§6.2): periodic
 * and solicited router advertisements with prefixes, MTU and RDNSS.
 *
 * Not done: redirects are parsed and counted but not followed; no proxy or anycast
 * advertisements; no SEND (RFC 3971); route information options (RFC 4191 §2.3) are ignored.
 * @module
 */
import { formatIpv6Address, parseIpv6Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError, OutOfRangeError } from '../errors.js';
import { formatMac } from '../net/mac.js';
import type { Icmpv6 } from './icmpv6.js';
import {
  ICMPV6,
  ND_OPTION,
  type NdOptions,
  type PrefixInformation,
  emitLinkLayerOption,
  emitMtuOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  emitNonceOption,
  emitPrefixOption,
  emitRdnssOption,
  emitRouterAdvertisement,
  emitRouterSolicitation,
  maskPrefix,
  parseNeighborAdvertisement,
  parseNeighborSolicitation,
  parseRedirect,
  parseRouterAdvertisement,
  parseRouterSolicitation,
} from '../wire/icmpv6.js';
import {
  ALL_NODES,
  ALL_ROUTERS,
  type Ipv6Datagram,
  type Ipv6Interface,
  type Ipv6Layer,
  type NeighbourResolver,
  UNSPECIFIED,
  addressKey,
  isLinkLocal,
  isMulticast,
  isSolicitedNode,
  isUnspecified,
  longTimer,
  solicitedNode,
} from './ipv6.js';

/** RFC 4861 §10 protocol constants. */
const MAX_MULTICAST_SOLICIT = 3;
const MAX_UNICAST_SOLICIT = 3;
const DELAY_FIRST_PROBE_TIME = 5_000;
const MAX_RTR_SOLICITATION_DELAY = 1_000;
const RTR_SOLICITATION_INTERVAL = 4_000;
const MAX_RTR_SOLICITATIONS = 3;
const MAX_INITIAL_RTR_ADVERT_INTERVAL = 16_000;
const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
const MIN_DELAY_BETWEEN_RAS = 3_000;
const MAX_RA_DELAY_TIME = 500;
const MAX_REACHABLE_TIME = 3_600_000;
const INFINITE = 0xffffffff;

/** Neighbour unreachability detection states (RFC 4861 §7.3.2). */
export type NudState = 'INCOMPLETE' | 'REACHABLE' | 'STALE' | 'DELAY' | 'PROBE';

/** A neighbour cache entry as reported by {@link Ndp.neighbours}. */
export interface NeighbourEntry {
  /** Interface index. */
  iface: number;
  address: string;
  /** Link-layer address, undefined while INCOMPLETE. */
  mac: string | undefined;
  state: NudState;
  isRouter: boolean;
  /** Packets waiting for resolution. */
  queued: number;
}

/** A prefix the router role advertises. Lifetimes in seconds. */
export interface AdvertisedPrefix {
  /** `'2001:db8:1::/64'`. */
  prefix: string;
  /** L flag (default true). */
  onLink?: boolean;
  /** A flag (default true). */
  autonomous?: boolean;
  /** Default 2,592,000 s (30 days, RFC 4861 §6.2.1 AdvValidLifetime). */
  validLifetime?: number;
  /** Default 604,800 s (7 days). */
  preferredLifetime?: number;
}

/** The router role of an interface: what its router advertisements say. */
export interface RouterAdvertisementOptions {
  /** Prefixes to advertise (`'2001:db8:1::/64'` or with flags and lifetimes); at most 16. */
  prefixes: Array<string | AdvertisedPrefix>;
  /** Link MTU to advertise (MTU option). */
  mtu?: number;
  /** Recursive DNS servers (RFC 8106), at most 8. */
  rdnss?: string[];
  /** Their lifetime in seconds (default 3 × the maximum interval). */
  rdnssLifetime?: number;
  /** MaxRtrAdvInterval in ms (default 600 s); unsolicited RAs go out every 0.33–1 × this. */
  intervalMs?: number;
  /** Router lifetime in s (default 3 × the maximum interval, at most 9000; 0: not a default router). */
  routerLifetime?: number;
  /** Cur Hop Limit to advertise (default 64). */
  curHopLimit?: number;
  /** Reachable time and retransmission timer to advertise, ms (default 0: unspecified). */
  reachableTimeMs?: number;
  retransTimerMs?: number;
  /** M and O flags (default false). */
  managed?: boolean;
  other?: boolean;
}

/** Limits and timings of neighbour discovery. */
export interface NdpOptions {
  /** Process router advertisements as a host (default true). */
  acceptRouterAdvertisements?: boolean;
  /** Neighbour cache entries per interface; the oldest stale one is evicted beyond (default 512). */
  maxEntries?: number;
  /** Packets queued per unresolved neighbour; more are dropped and counted (default 16). */
  queueLimit?: number;
  /** BaseReachableTime in ms until an RA says otherwise (default 30 s). */
  baseReachableTimeMs?: number;
  /** RetransTimer in ms until an RA says otherwise (default 1 s). */
  retransTimerMs?: number;
  /** STALE entries are removed after this long unused (default 10 min). */
  staleTimeoutMs?: number;
  /** Default routers kept per interface (default 8). */
  maxRouters?: number;
  /** On-link prefixes learned per interface (default 16). */
  maxPrefixes?: number;
  /** RDNSS servers kept (default 8). */
  maxDnsServers?: number;
}

/** Neighbour discovery counters. */
export interface NdStats {
  neighborSolicitationsSent: number;
  neighborSolicitationsReceived: number;
  neighborAdvertisementsSent: number;
  neighborAdvertisementsReceived: number;
  routerSolicitationsSent: number;
  routerSolicitationsReceived: number;
  routerAdvertisementsSent: number;
  routerAdvertisementsReceived: number;
  redirectsReceived: number;
  /** Messages that failed the validity checks, by reason (`hop-limit`, `malformed`, …). */
  invalid: Record<string, number>;
  /** Packets dropped because a neighbour's queue was full or the cache was full. */
  queueDrops: number;
  /** Packets dropped because their neighbour did not resolve. */
  resolutionFailures: number;
  /** Entries removed by NUD (unreachable neighbours) or expiry. */
  removed: number;
  /** Entries evicted to stay within the cache size. */
  evicted: number;
  /** Neighbour advertisements for one of our own (non-tentative) addresses. */
  duplicatesSeen: number;
}

interface Neighbour {
  readonly ip: Buffer;
  mac: Buffer | undefined;
  state: NudState;
  isRouter: boolean;
  probes: number;
  timer: Timer | undefined;
  queue: Array<(mac: Buffer) => void>;
  failures: Array<() => void>;
}

/** Per-interface neighbour-discovery state. */
interface InterfaceNd {
  readonly iface: Ipv6Interface;
  readonly cache: NeighbourCache;
  baseReachableMs: number;
  reachableMs: number;
  retransMs: number;
  rsTimer: Timer | undefined;
  rsStarted: boolean;
  rsSent: number;
  raReceived: boolean;
  router: RouterRole | undefined;
}

interface RouterRole {
  readonly options: RouterAdvertisementOptions;
  readonly prefixes: PrefixInformation[];
  readonly rdnss: Buffer[];
  readonly maxIntervalMs: number;
  readonly minIntervalMs: number;
  initialSent: number;
  timer: Timer | undefined;
  solicitedTimer: Timer | undefined;
  lastMulticastAt: number;
  started: boolean;
}

/** The neighbour cache of one interface (RFC 4861 §5.1, §7.3). */
export class NeighbourCache implements NeighbourResolver {
  readonly #nd: Ndp;
  readonly #state: () => InterfaceNd;
  readonly #entries = new Map<string, Neighbour>();
  readonly #maxEntries: number;
  readonly #queueLimit: number;

  /** @internal */
  constructor(nd: Ndp, state: () => InterfaceNd, maxEntries: number, queueLimit: number) {
    this.#nd = nd;
    this.#state = state;
    this.#maxEntries = maxEntries;
    this.#queueLimit = queueLimit;
  }

  /** The link-layer address to use now; using a STALE entry starts NUD (→ DELAY). */
  lookup(ip: Buffer): Buffer | undefined {
    const n = this.#entries.get(addressKey(ip));
    if (!n || !n.mac || n.state === 'INCOMPLETE') return undefined;
    if (n.state === 'STALE') this.#enter(n, 'DELAY');
    return n.mac;
  }

  probablyReachable(ip: Buffer): boolean {
    const n = this.#entries.get(addressKey(ip));
    return n !== undefined && n.state !== 'INCOMPLETE';
  }

  resolve(ip: Buffer, send: (mac: Buffer) => void): boolean {
    const mac = this.lookup(ip);
    if (mac) {
      send(mac);
      return true;
    }
    let n = this.#entries.get(addressKey(ip));
    if (!n) {
      if (!this.#makeRoom()) {
        this.#nd.count('queueDrops');
        return false;
      }
      n = { ip: Buffer.from(ip), mac: undefined, state: 'INCOMPLETE', isRouter: false, probes: 0, timer: undefined, queue: [], failures: [] };
      this.#entries.set(addressKey(ip), n);
      this.#enter(n, 'INCOMPLETE');
    }
    if (n.queue.length >= this.#queueLimit) {
      this.#nd.count('queueDrops');
      return false;
    }
    n.queue.push(send);
    return true;
  }

  /** Resolves `ip` to a MAC; rejects with `ERR_ND_UNREACHABLE` when address resolution fails. */
  query(ip: Buffer): Promise<string> {
    return new Promise((resolve, reject) => {
      if (!this.resolve(ip, (mac) => resolve(formatMac(mac)))) {
        reject(new MorganaError('ERR_ND_QUEUE_FULL', `too many packets waiting for ${formatIpv6Address(ip)}`));
        return;
      }
      const n = this.#entries.get(addressKey(ip));
      if (n && n.state === 'INCOMPLETE') {
        n.failures.push(() => reject(new MorganaError('ERR_ND_UNREACHABLE', `no neighbour advertisement from ${formatIpv6Address(ip)}`)));
      }
    });
  }

  /** Upper-layer reachability confirmation (RFC 4861 §7.3.1), e.g. TCP acknowledging new data. */
  confirm(ip: Buffer): void {
    const n = this.#entries.get(addressKey(ip));
    if (n?.mac && n.state !== 'INCOMPLETE') this.#enter(n, 'REACHABLE');
  }

  /** @internal Sets IsRouter on an existing entry (an RA without a link-layer option). */
  markRouter(ip: Buffer): void {
    const n = this.#entries.get(addressKey(ip));
    if (n) n.isRouter = true;
  }

  /** The entry's state, if any. */
  state(ip: Buffer): NudState | undefined {
    return this.#entries.get(addressKey(ip))?.state;
  }

  /** @internal Entries for reporting. */
  list(index: number): NeighbourEntry[] {
    return [...this.#entries.values()].map((n) => ({
      iface: index,
      address: formatIpv6Address(n.ip),
      mac: n.mac && formatMac(n.mac),
      state: n.state,
      isRouter: n.isRouter,
      queued: n.queue.length,
    }));
  }

  /** Removes an entry (and drops what it queued). */
  remove(ip: Buffer): void {
    const n = this.#entries.get(addressKey(ip));
    if (!n) return;
    n.timer?.cancel();
    this.#entries.delete(addressKey(ip));
  }

  /** @internal Stops every timer. */
  close(): void {
    for (const n of this.#entries.values()) n.timer?.cancel();
    this.#entries.clear();
  }

  /**
   * @internal Link-layer information from an NS, RS or RA (RFC 4861 §7.2.3, §6.2.6, §6.3.4):
   * creates a STALE entry, or updates one whose address changed (to STALE).
   */
  learn(ip: Buffer, mac: Buffer, isRouter?: boolean): void {
    let n = this.#entries.get(addressKey(ip));
    if (!n) {
      if (!this.#makeRoom()) return;
      n = { ip: Buffer.from(ip), mac: Buffer.from(mac), state: 'STALE', isRouter: isRouter ?? false, probes: 0, timer: undefined, queue: [], failures: [] };
      this.#entries.set(addressKey(ip), n);
      this.#enter(n, 'STALE');
      return;
    }
    if (isRouter !== undefined) n.isRouter = isRouter;
    if (n.state === 'INCOMPLETE' || !n.mac || !n.mac.equals(mac)) {
      n.mac = Buffer.from(mac);
      this.#enter(n, 'STALE');
    }
  }

  /**
   * @internal A neighbour advertisement for `target` (RFC 4861 §7.2.5). Returns whether the
   * IsRouter flag went from true to false (the caller then drops the default router).
   */
  advertised(target: Buffer, flags: { solicited: boolean; override: boolean; router: boolean }, mac: Buffer | undefined): boolean {
    const n = this.#entries.get(addressKey(target));
    if (!n) return false; // no entry: silently discarded
    const wasRouter = n.isRouter;
    if (n.state === 'INCOMPLETE') {
      if (!mac) return false;
      n.mac = Buffer.from(mac);
      n.isRouter = flags.router;
      this.#enter(n, flags.solicited ? 'REACHABLE' : 'STALE');
      return wasRouter && !flags.router;
    }
    const different = mac !== undefined && n.mac !== undefined && !n.mac.equals(mac);
    if (!flags.override && different) {
      // Keep the address we have; a REACHABLE entry becomes suspect.
      if (n.state === 'REACHABLE') this.#enter(n, 'STALE');
      return false;
    }
    if (mac && different) n.mac = Buffer.from(mac);
    if (flags.solicited) this.#enter(n, 'REACHABLE');
    else if (different) this.#enter(n, 'STALE');
    n.isRouter = flags.router;
    return wasRouter && !flags.router;
  }

  #makeRoom(): boolean {
    if (this.#entries.size < this.#maxEntries) return true;
    let victim: Neighbour | undefined;
    for (const n of this.#entries.values()) {
      if (n.state === 'STALE') {
        victim = n;
        break;
      }
      if (!victim && n.state !== 'INCOMPLETE') victim = n;
    }
    if (!victim) return false;
    victim.timer?.cancel();
    this.#entries.delete(addressKey(victim.ip));
    this.#nd.count('evicted');
    return true;
  }

  #enter(n: Neighbour, state: NudState): void {
    const s = this.#state();
    n.timer?.cancel();
    n.timer = undefined;
    n.state = state;
    const clock = this.#nd.clock;
    switch (state) {
      case 'INCOMPLETE':
        n.probes = 0;
        this.#probe(n, false);
        break;
      case 'REACHABLE':
        n.timer = clock.setTimer(s.reachableMs, () => this.#enter(n, 'STALE'));
        break;
      case 'STALE':
        n.timer = longTimer(clock, this.#nd.staleTimeoutMs, () => this.#removeEntry(n));
        break;
      case 'DELAY':
        n.timer = clock.setTimer(DELAY_FIRST_PROBE_TIME, () => this.#enter(n, 'PROBE'));
        break;
      case 'PROBE':
        n.probes = 0;
        this.#probe(n, true);
        break;
    }
    if (n.mac && state !== 'INCOMPLETE' && n.queue.length > 0) {
      const queue = n.queue;
      const mac = n.mac;
      n.queue = [];
      n.failures = [];
      for (const send of queue) send(mac);
      // Sending to a STALE entry starts NUD (§7.3.3), queued packets included.
      if (state === 'STALE') this.#enter(n, 'DELAY');
    }
  }

  /** Sends one more solicitation, or gives up after the last (RFC 4861 §7.3.3). */
  #probe(n: Neighbour, unicast: boolean): void {
    const limit = unicast ? MAX_UNICAST_SOLICIT : MAX_MULTICAST_SOLICIT;
    if (n.probes >= limit) {
      this.#nd.count('resolutionFailures', n.queue.length);
      for (const fail of n.failures) fail();
      this.#removeEntry(n);
      return;
    }
    n.probes++;
    this.#nd.solicit(this.#state().iface, n.ip, unicast ? n.mac : undefined);
    n.timer = this.#nd.clock.setTimer(this.#state().retransMs, () => this.#probe(n, unicast));
  }

  #removeEntry(n: Neighbour): void {
    n.timer?.cancel();
    if (this.#entries.get(addressKey(n.ip)) === n) this.#entries.delete(addressKey(n.ip));
    this.#nd.count('removed');
  }
}

/** Where RA prefix information and DAD evidence go (address autoconfiguration listens). */
export interface NdpListeners {
  /** A prefix information option from a valid RA (any flags; autoconfiguration checks A). */
  prefix?: (iface: Ipv6Interface, prefix: PrefixInformation) => void;
  /** Evidence that a tentative address of ours is in use elsewhere (RFC 4862 §5.4.3/§5.4.4). */
  duplicate?: (iface: Ipv6Interface, target: Buffer) => void;
  /**
   * Router discovery on `iface` ended: the first router advertisement was processed (its
   * prefixes already passed to `prefix`), or the last solicitation went unanswered.
   */
  routerDiscoveryDone?: (iface: Ipv6Interface) => void;
}

/** Neighbor Discovery for all interfaces of a stack. */
export class Ndp {
  /** @internal */
  readonly clock: Clock;
  /** @internal */
  readonly staleTimeoutMs: number;
  readonly #ip: Ipv6Layer;
  readonly #icmp: Icmpv6;
  readonly #random: () => number;
  readonly #accept: boolean;
  readonly #maxRouters: number;
  readonly #maxPrefixes: number;
  readonly #maxDns: number;
  readonly #state = new Map<Ipv6Interface, InterfaceNd>();
  readonly #dns: Array<{ address: Buffer; validUntil: number }> = [];
  readonly #dadNonces = new Map<string, Buffer>();
  readonly #listeners: NdpListeners[] = [];
  #closed = false;
  readonly #stats: NdStats = {
    neighborSolicitationsSent: 0,
    neighborSolicitationsReceived: 0,
    neighborAdvertisementsSent: 0,
    neighborAdvertisementsReceived: 0,
    routerSolicitationsSent: 0,
    routerSolicitationsReceived: 0,
    routerAdvertisementsSent: 0,
    routerAdvertisementsReceived: 0,
    redirectsReceived: 0,
    invalid: {},
    queueDrops: 0,
    resolutionFailures: 0,
    removed: 0,
    evicted: 0,
    duplicatesSeen: 0,
  };

  constructor(ip: Ipv6Layer, icmp: Icmpv6, clock: Clock, randomUint32: () => number, options: NdpOptions = {}) {
    this.#ip = ip;
    this.#icmp = icmp;
    this.clock = clock;
    this.#random = randomUint32;
    this.#accept = options.acceptRouterAdvertisements ?? true;
    this.staleTimeoutMs = options.staleTimeoutMs ?? 600_000;
    this.#maxRouters = options.maxRouters ?? 8;
    this.#maxPrefixes = options.maxPrefixes ?? 16;
    this.#maxDns = options.maxDnsServers ?? 8;
    const base = options.baseReachableTimeMs ?? 30_000;
    const retrans = options.retransTimerMs ?? 1_000;
    for (const iface of ip.interfaces) {
      const state: InterfaceNd = {
        iface,
        cache: new NeighbourCache(this, () => state, options.maxEntries ?? 512, options.queueLimit ?? 16),
        baseReachableMs: base,
        reachableMs: this.#randomReachable(base),
        retransMs: retrans,
        rsTimer: undefined,
        rsStarted: false,
        rsSent: 0,
        raReceived: false,
        router: undefined,
      };
      this.#state.set(iface, state);
      iface.neighbours = state.cache;
    }
    icmp.on(ICMPV6.NEIGHBOR_SOLICITATION, (m, d) => this.#onNeighborSolicitation(m, d));
    icmp.on(ICMPV6.NEIGHBOR_ADVERTISEMENT, (m, d) => this.#onNeighborAdvertisement(m, d));
    icmp.on(ICMPV6.ROUTER_SOLICITATION, (m, d) => this.#onRouterSolicitation(m, d));
    icmp.on(ICMPV6.ROUTER_ADVERTISEMENT, (m, d) => this.#onRouterAdvertisement(m, d));
    icmp.on(ICMPV6.REDIRECT, (m, d) => this.#onRedirect(m, d));
  }

  /** Listens to prefix information and DAD evidence. */
  listen(listeners: NdpListeners): void {
    this.#listeners.push(listeners);
  }

  /** The neighbour cache of `iface`. */
  cache(iface: Ipv6Interface): NeighbourCache {
    return this.#nd(iface).cache;
  }

  /** RetransTimer of `iface` in ms (DAD paces its solicitations with it). */
  retransTimerMs(iface: Ipv6Interface): number {
    return this.#nd(iface).retransMs;
  }

  /** The current ReachableTime of `iface` in ms. */
  reachableTimeMs(iface: Ipv6Interface): number {
    return this.#nd(iface).reachableMs;
  }

  /** Every neighbour cache entry of every interface. */
  neighbours(): NeighbourEntry[] {
    return [...this.#state.values()].flatMap((s) => s.cache.list(s.iface.index));
  }

  /** Recursive DNS servers learned from router advertisements (RFC 8106), still valid, RFC 5952 text. */
  dnsServers(): string[] {
    const now = this.clock.now();
    return this.#dns.filter((d) => d.validUntil > now).map((d) => formatIpv6Address(d.address));
  }

  /** Counters. */
  stats(): NdStats {
    return { ...this.#stats, invalid: { ...this.#stats.invalid } };
  }

  /** @internal */
  count(key: 'queueDrops' | 'resolutionFailures' | 'removed' | 'evicted', n = 1): void {
    this.#stats[key] += n;
  }

  #invalid(reason: string): void {
    this.#stats.invalid[reason] = (this.#stats.invalid[reason] ?? 0) + 1;
  }

  #nd(iface: Ipv6Interface): InterfaceNd {
    const s = this.#state.get(iface);
    if (!s) throw new MorganaError('ERR_STACK_CONFIG', `interface ${iface.name} has no neighbour discovery`);
    return s;
  }

  /** ReachableTime: uniformly random in [0.5, 1.5] × base (RFC 4861 §6.3.2). */
  #randomReachable(base: number): number {
    return Math.round(base * (0.5 + this.#random() / 0x1_0000_0000));
  }

  #uniform(maxMs: number): number {
    return Math.floor((this.#random() / 0x1_0000_0000) * maxMs);
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  #linkLocal(iface: Ipv6Interface): Buffer | undefined {
    return iface.addresses.find((e) => isLinkLocal(e.address) && (e.state === 'preferred' || e.state === 'deprecated'))?.address;
  }

  #sendNd(iface: Ipv6Interface, dst: Buffer, message: Buffer, src: Buffer): boolean {
    try {
      this.#icmp.send(dst, message, { src, iface, hopLimit: 255 });
      return true;
    } catch {
      return false; // closed device or no neighbour path: counted by the IPv6 layer
    }
  }

  /** @internal Sends a neighbour solicitation for `target`: multicast, or unicast to `mac` (NUD probe). */
  solicit(iface: Ipv6Interface, target: Buffer, mac: Buffer | undefined): void {
    if (this.#closed) return;
    const src = this.#ip.selectSource(target, iface);
    if (!src) return; // no usable address on this interface yet: nothing to solicit from
    const message = emitNeighborSolicitation(target, [emitLinkLayerOption(ND_OPTION.SOURCE_LINK_LAYER, iface.eth.mac)]);
    if (this.#sendNd(iface, mac ? target : solicitedNode(target), message, src)) this.#stats.neighborSolicitationsSent++;
  }

  /**
   * Sends a duplicate address detection probe for `target` (RFC 4862 §5.4.2): from `::` to the
   * solicited-node group, with a nonce (RFC 7527) so that a looped-back copy is not a conflict.
   */
  solicitForDad(iface: Ipv6Interface, target: Buffer): void {
    if (this.#closed) return;
    const nonce = Buffer.alloc(6);
    nonce.writeUInt32BE(this.#random(), 0);
    nonce.writeUInt16BE(this.#random() & 0xffff, 4);
    this.#dadNonces.set(addressKey(target), nonce);
    const message = emitNeighborSolicitation(target, [emitNonceOption(nonce)]);
    if (this.#sendNd(iface, solicitedNode(target), message, UNSPECIFIED)) this.#stats.neighborSolicitationsSent++;
  }

  /** Forgets the nonce of a finished DAD. */
  dadDone(target: Buffer): void {
    this.#dadNonces.delete(addressKey(target));
  }

  #advertise(iface: Ipv6Interface, target: Buffer, dst: Buffer, solicited: boolean): void {
    const message = emitNeighborAdvertisement(
      { router: iface.isRouter, solicited, override: true },
      target,
      [emitLinkLayerOption(ND_OPTION.TARGET_LINK_LAYER, iface.eth.mac)],
    );
    if (this.#sendNd(iface, dst, message, target)) this.#stats.neighborAdvertisementsSent++;
  }

  /**
   * Starts router solicitation on `iface` (RFC 4861 §6.3.7): after a random delay of up to 1 s,
   * at most 3 solicitations 4 s apart, until a router advertisement arrives. Called once the
   * link-local address is usable (or DAD is off).
   */
  startRouterSolicitation(iface: Ipv6Interface): void {
    const s = this.#nd(iface);
    if (!this.#accept || iface.isRouter || s.rsStarted || s.raReceived || this.#closed) return;
    s.rsStarted = true;
    s.rsSent = 0;
    const next = (delay: number) => {
      s.rsTimer = this.clock.setTimer(delay, () => {
        if (this.#closed || s.raReceived || s.rsSent >= MAX_RTR_SOLICITATIONS) {
          s.rsTimer = undefined;
          // No advertisement within RTR_SOLICITATION_INTERVAL of the last solicitation: no router.
          if (!s.raReceived) for (const l of this.#listeners) l.routerDiscoveryDone?.(iface);
          return;
        }
        s.rsSent++;
        const src = this.#linkLocal(iface);
        // Without a usable address the RS goes from :: and carries no link-layer option (§4.1).
        const message = emitRouterSolicitation(src ? [emitLinkLayerOption(ND_OPTION.SOURCE_LINK_LAYER, iface.eth.mac)] : []);
        if (this.#sendNd(iface, ALL_ROUTERS, message, src ?? UNSPECIFIED)) this.#stats.routerSolicitationsSent++;
        next(RTR_SOLICITATION_INTERVAL);
      });
    };
    next(this.#uniform(MAX_RTR_SOLICITATION_DELAY));
  }

  // -------------------------------------------------------------------------------------------
  // Router role

  /**
   * Makes the stack a router on `iface` (for appliances): it answers to ff02::2, sets the R flag,
   * ignores other routers' advertisements, and advertises `options` periodically and in answer
   * to solicitations once its link-local address is usable ({@link linkLocalReady}).
   */
  enableRouter(iface: Ipv6Interface, options: RouterAdvertisementOptions): void {
    const s = this.#nd(iface);
    const maxIntervalMs = options.intervalMs ?? 600_000;
    if (!Number.isFinite(maxIntervalMs) || maxIntervalMs < 1) throw new OutOfRangeError('routerAdvertisements.intervalMs must be ≥ 1 ms');
    if (options.prefixes.length > 16) throw new OutOfRangeError('at most 16 advertised prefixes');
    if ((options.rdnss?.length ?? 0) > 8) throw new OutOfRangeError('at most 8 RDNSS servers');
    if (options.mtu !== undefined && (!Number.isInteger(options.mtu) || options.mtu < 1280 || options.mtu > iface.eth.mtu)) {
      throw new OutOfRangeError(`routerAdvertisements.mtu must be 1280..${iface.eth.mtu}`);
    }
    const prefixes = options.prefixes.map((p) => {
      const config = typeof p === 'string' ? { prefix: p } : p;
      const slash = config.prefix.indexOf('/');
      const length = Number(config.prefix.slice(slash + 1));
      if (slash < 0 || !Number.isInteger(length) || length < 1 || length > 128) {
        throw new MorganaError('ERR_INVALID_CIDR', `expected PREFIX/LENGTH such as 2001:db8:1::/64, got ${JSON.stringify(config.prefix)}`);
      }
      const validLifetime = config.validLifetime ?? 2_592_000;
      const preferredLifetime = config.preferredLifetime ?? 604_800;
      if (preferredLifetime > validLifetime) throw new OutOfRangeError(`prefix ${config.prefix}: preferred lifetime above the valid lifetime`);
      return {
        prefixLength: length,
        onLink: config.onLink ?? true,
        autonomous: config.autonomous ?? true,
        validLifetime,
        preferredLifetime,
        prefix: maskPrefix(parseIpv6Address(config.prefix.slice(0, slash)), length),
      };
    });
    s.router = {
      options,
      prefixes,
      rdnss: (options.rdnss ?? []).map((a) => parseIpv6Address(a)),
      maxIntervalMs,
      minIntervalMs: Math.max(1, Math.floor(maxIntervalMs * 0.33)),
      initialSent: 0,
      timer: undefined,
      solicitedTimer: undefined,
      lastMulticastAt: -Infinity,
      started: false,
    };
    if (!iface.isRouter) {
      iface.isRouter = true;
      this.#ip.joinGroup(iface, ALL_ROUTERS);
    }
    // Our own prefixes are on-link for us too.
    for (const p of prefixes) if (p.onLink) this.#ip.setOnLink(iface, p.prefix, p.prefixLength, Infinity);
    if (this.#linkLocal(iface)) this.linkLocalReady(iface);
  }

  /** @internal The link-local address of `iface` became usable: start advertising / soliciting. */
  linkLocalReady(iface: Ipv6Interface): void {
    const s = this.#nd(iface);
    if (s.router && !s.router.started) {
      s.router.started = true;
      this.#scheduleUnsolicited(s, 0);
    } else if (!s.router) {
      this.startRouterSolicitation(iface);
    }
  }

  #routerLifetime(r: RouterRole): number {
    return r.options.routerLifetime ?? Math.min(9000, Math.ceil((3 * r.maxIntervalMs) / 1000));
  }

  #sendRouterAdvertisement(s: InterfaceNd, dst: Buffer, lifetime?: number): void {
    const r = s.router;
    const src = this.#linkLocal(s.iface);
    if (!r || !src || this.#closed) return;
    const options: Buffer[] = [emitLinkLayerOption(ND_OPTION.SOURCE_LINK_LAYER, s.iface.eth.mac)];
    if (r.options.mtu !== undefined) options.push(emitMtuOption(r.options.mtu));
    for (const p of r.prefixes) options.push(emitPrefixOption(p));
    if (r.rdnss.length > 0) {
      options.push(emitRdnssOption(r.options.rdnssLifetime ?? Math.ceil((3 * r.maxIntervalMs) / 1000), r.rdnss));
    }
    const message = emitRouterAdvertisement(
      {
        curHopLimit: r.options.curHopLimit ?? 64,
        managed: r.options.managed ?? false,
        other: r.options.other ?? false,
        preference: 0,
        routerLifetime: lifetime ?? this.#routerLifetime(r),
        reachableTime: r.options.reachableTimeMs ?? 0,
        retransTimer: r.options.retransTimerMs ?? 0,
      },
      options,
    );
    if (this.#sendNd(s.iface, dst, message, src)) {
      this.#stats.routerAdvertisementsSent++;
      if (isMulticast(dst)) r.lastMulticastAt = this.clock.now();
    }
  }

  /** Unsolicited advertisements: the first few at most 16 s apart, then every 0.33–1 × the interval. */
  #scheduleUnsolicited(s: InterfaceNd, delay: number): void {
    const r = s.router!;
    r.timer?.cancel();
    r.timer = longTimer(this.clock, delay, () => {
      this.#sendRouterAdvertisement(s, ALL_NODES);
      let next = r.minIntervalMs + this.#uniform(r.maxIntervalMs - r.minIntervalMs + 1);
      if (r.initialSent < MAX_INITIAL_RTR_ADVERTISEMENTS) {
        r.initialSent++;
        next = Math.min(next, MAX_INITIAL_RTR_ADVERT_INTERVAL);
      }
      this.#scheduleUnsolicited(s, next);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Receiving

  /** RFC 4861 §6.1 / §7.1 checks common to all ND messages; false when invalid. */
  #valid(m: Buffer, d: Ipv6Datagram): boolean {
    if (d.hopLimit !== 255) {
      this.#invalid('hop-limit');
      return false;
    }
    if (m[1] !== 0) {
      this.#invalid('code');
      return false;
    }
    // An (atomic) fragment header in front of an ND message is refused (RFC 6980).
    if (d.header.length > 40 && d.header[6] === 44) {
      this.#invalid('fragmented');
      return false;
    }
    return true;
  }

  #parse<T>(parse: (m: Buffer) => T, m: Buffer): T | undefined {
    try {
      return parse(m);
    } catch {
      this.#invalid('malformed');
      return undefined;
    }
  }

  #onNeighborSolicitation(m: Buffer, d: Ipv6Datagram): void {
    if (!this.#valid(m, d)) return;
    const ns = this.#parse(parseNeighborSolicitation, m);
    if (!ns) return;
    if (isMulticast(ns.target)) return this.#invalid('multicast-target');
    const fromUnspecified = isUnspecified(d.src);
    if (fromUnspecified && (!isSolicitedNode(d.dst) || ns.options.sourceLinkLayer)) return this.#invalid('unspecified-source');
    this.#stats.neighborSolicitationsReceived++;
    const iface = d.iface;
    const mine = iface.addresses.find((e) => e.address.equals(ns.target));
    if (!mine || mine.state === 'duplicated') return;
    if (mine.state === 'tentative') {
      // RFC 4862 §5.4.3: another node is probing the same address (unless it is our own probe looped back).
      if (fromUnspecified) {
        const ours = this.#dadNonces.get(addressKey(ns.target));
        if (ours && ns.options.nonce && ours.equals(ns.options.nonce.subarray(0, 6))) return;
        for (const l of this.#listeners) l.duplicate?.(iface, Buffer.from(ns.target));
      }
      return;
    }
    const target = Buffer.from(ns.target);
    if (fromUnspecified) {
      // Someone probes an address we hold: defend it (§7.2.4).
      this.#advertise(iface, target, ALL_NODES, false);
      return;
    }
    const src = Buffer.from(d.src);
    if (ns.options.sourceLinkLayer) this.#nd(iface).cache.learn(src, ns.options.sourceLinkLayer);
    this.#advertise(iface, target, src, true);
  }

  #onNeighborAdvertisement(m: Buffer, d: Ipv6Datagram): void {
    if (!this.#valid(m, d)) return;
    const na = this.#parse(parseNeighborAdvertisement, m);
    if (!na) return;
    if (isMulticast(na.target)) return this.#invalid('multicast-target');
    if (d.multicast && na.solicited) return this.#invalid('solicited-to-multicast');
    this.#stats.neighborAdvertisementsReceived++;
    const iface = d.iface;
    // A duplicated address of ours is someone else's: learn it like any neighbour.
    const mine = iface.addresses.find((e) => e.address.equals(na.target) && e.state !== 'duplicated');
    if (mine) {
      if (mine.state === 'tentative') {
        for (const l of this.#listeners) l.duplicate?.(iface, Buffer.from(na.target));
      } else {
        this.#stats.duplicatesSeen++;
      }
      return;
    }
    const target = Buffer.from(na.target);
    const lostRouter = this.#nd(iface).cache.advertised(target, na, na.options.targetLinkLayer);
    if (lostRouter) {
      const i = iface.routers.findIndex((r) => r.address.equals(target));
      if (i >= 0) iface.routers.splice(i, 1);
    }
  }

  #onRouterSolicitation(m: Buffer, d: Ipv6Datagram): void {
    const s = this.#nd(d.iface);
    // Hosts silently discard solicitations (RFC 4861 §6.2.6).
    if (!s.router) return;
    if (!this.#valid(m, d)) return;
    const rs = this.#parse(parseRouterSolicitation, m);
    if (!rs) return;
    const fromUnspecified = isUnspecified(d.src);
    if (fromUnspecified && rs.options.sourceLinkLayer) return this.#invalid('unspecified-source');
    this.#stats.routerSolicitationsReceived++;
    const src = Buffer.from(d.src);
    if (!fromUnspecified && rs.options.sourceLinkLayer) s.cache.learn(src, rs.options.sourceLinkLayer, false);
    const r = s.router;
    const delay = this.#uniform(MAX_RA_DELAY_TIME + 1);
    if (!fromUnspecified) {
      // Answered to the soliciting host directly (allowed by §6.2.6).
      this.clock.setTimer(delay, () => this.#sendRouterAdvertisement(s, src));
      return;
    }
    if (r.solicitedTimer) return; // one multicast answer already scheduled
    const at = Math.max(this.clock.now() + delay, r.lastMulticastAt + MIN_DELAY_BETWEEN_RAS);
    r.solicitedTimer = this.clock.setTimer(at - this.clock.now(), () => {
      r.solicitedTimer = undefined;
      this.#sendRouterAdvertisement(s, ALL_NODES);
    });
  }

  #onRouterAdvertisement(m: Buffer, d: Ipv6Datagram): void {
    const s = this.#nd(d.iface);
    if (!isLinkLocal(d.src)) return this.#invalid('source-not-link-local');
    if (!this.#valid(m, d)) return;
    const ra = this.#parse(parseRouterAdvertisement, m);
    if (!ra) return;
    this.#stats.routerAdvertisementsReceived++;
    if (!this.#accept || s.router) return;
    const first = !s.raReceived;
    s.raReceived = true;
    s.rsTimer?.cancel();
    s.rsTimer = undefined;
    const iface = d.iface;
    const now = this.clock.now();
    const src = Buffer.from(d.src);
    if (ra.curHopLimit !== 0) this.#ip.hopLimit = ra.curHopLimit;
    // Default router list (§6.3.4).
    const i = iface.routers.findIndex((r) => r.address.equals(src));
    if (ra.routerLifetime === 0) {
      if (i >= 0) iface.routers.splice(i, 1);
    } else if (i >= 0) {
      iface.routers[i]!.validUntil = now + ra.routerLifetime * 1000;
      iface.routers[i]!.preference = ra.preference;
    } else {
      this.#prune(iface, now);
      if (iface.routers.length < this.#maxRouters) iface.routers.push({ address: src, validUntil: now + ra.routerLifetime * 1000, preference: ra.preference });
      else this.#invalid('router-list-full');
    }
    if (ra.reachableTime !== 0 && ra.reachableTime <= MAX_REACHABLE_TIME && ra.reachableTime !== s.baseReachableMs) {
      s.baseReachableMs = ra.reachableTime;
      s.reachableMs = this.#randomReachable(ra.reachableTime);
    }
    if (ra.retransTimer !== 0) s.retransMs = ra.retransTimer;
    if (ra.options.sourceLinkLayer) s.cache.learn(src, ra.options.sourceLinkLayer, true);
    else s.cache.markRouter(src);
    this.#applyOptions(iface, ra.options, now);
    if (first) for (const l of this.#listeners) l.routerDiscoveryDone?.(iface);
  }

  /**
   * Whether router discovery on `iface` may still bring prefixes: not yet started (the
   * link-local address is in DAD) or soliciting. False once an advertisement arrived, the
   * solicitations went unanswered, or advertisements are not accepted (routers, static setups).
   */
  routerDiscoveryPending(iface: Ipv6Interface): boolean {
    const s = this.#nd(iface);
    if (!this.#accept || iface.isRouter || s.router || s.raReceived || this.#closed) return false;
    return !s.rsStarted || s.rsTimer !== undefined;
  }

  #applyOptions(iface: Ipv6Interface, options: NdOptions, now: number): void {
    if (options.mtu !== undefined) {
      if (options.mtu >= 1280 && options.mtu <= iface.eth.mtu) iface.mtu = options.mtu;
      else this.#invalid('mtu-option');
    }
    for (let k = iface.prefixes.length - 1; k >= 0; k--) if (iface.prefixes[k]!.validUntil <= now) iface.prefixes.splice(k, 1);
    for (const p of options.prefixes) {
      if (isLinkLocal(p.prefix)) continue;
      if (p.onLink) {
        if (p.validLifetime === 0) this.#ip.removeOnLink(iface, p.prefix, p.prefixLength);
        else if (iface.prefixes.length < this.#maxPrefixes || iface.prefixes.some((x) => x.length === p.prefixLength && maskPrefix(p.prefix, p.prefixLength).equals(x.prefix))) {
          this.#ip.setOnLink(iface, p.prefix, p.prefixLength, lifetimeEnd(now, p.validLifetime));
        } else {
          this.#invalid('prefix-list-full');
        }
      }
      for (const l of this.#listeners) l.prefix?.(iface, p);
    }
    for (const o of options.rdnss) {
      for (const server of o.servers) {
        if (isMulticast(server) || isUnspecified(server)) continue;
        const existing = this.#dns.findIndex((x) => x.address.equals(server));
        if (o.lifetime === 0) {
          if (existing >= 0) this.#dns.splice(existing, 1);
        } else if (existing >= 0) {
          this.#dns[existing]!.validUntil = lifetimeEnd(now, o.lifetime);
        } else {
          for (let k = this.#dns.length - 1; k >= 0; k--) if (this.#dns[k]!.validUntil <= now) this.#dns.splice(k, 1);
          if (this.#dns.length < this.#maxDns) this.#dns.push({ address: Buffer.from(server), validUntil: lifetimeEnd(now, o.lifetime) });
        }
      }
    }
  }

  #prune(iface: Ipv6Interface, now: number): void {
    for (let k = iface.routers.length - 1; k >= 0; k--) if (iface.routers[k]!.validUntil <= now) iface.routers.splice(k, 1);
  }

  #onRedirect(m: Buffer, d: Ipv6Datagram): void {
    if (!isLinkLocal(d.src)) return this.#invalid('source-not-link-local');
    if (!this.#valid(m, d)) return;
    if (!this.#parse(parseRedirect, m)) return;
    this.#stats.redirectsReceived++; // not followed (see the module documentation)
  }

  /**
   * Stops timers. A router first sends a final advertisement with router lifetime 0 (§6.2.5) so
   * hosts stop using it at once.
   */
  close(): void {
    if (this.#closed) return;
    for (const s of this.#state.values()) {
      if (s.router?.started) this.#sendRouterAdvertisement(s, ALL_NODES, 0);
      s.router?.timer?.cancel();
      s.router?.solicitedTimer?.cancel();
      s.rsTimer?.cancel();
      s.cache.close();
    }
    this.#closed = true;
  }
}

/** The clock time a lifetime in seconds ends (0xffffffff: never). */
export function lifetimeEnd(now: number, seconds: number): number {
  return seconds === INFINITE ? Infinity : now + seconds * 1000;
}
