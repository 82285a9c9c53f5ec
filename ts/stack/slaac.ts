/**
 * IPv6 stateless address autoconfiguration (RFC 4862): the link-local address, addresses formed
 * from router advertisements' prefix information (A flag, valid and preferred lifetimes, the
 * two-hour rule of §5.5.3 e), and duplicate address detection (§5.4) for every unicast address,
 * static ones included: the address stays tentative while DupAddrDetectTransmits neighbour
 * solicitations go out RetransTimer apart; a conflict marks it `duplicated`, counts it and emits
 * an event.
 *
 * Interface identifiers are, by default, the stable and semantically opaque ones of RFC 7217:
 * the first 64 bits of SHA-256 over the prefix, the interface name, the DAD counter and a secret
 * key drawn from the stack's random device, so an address is stable per network yet reveals no
 * MAC; after a conflict the identifier is drawn again with the counter incremented, up to
 * IDGEN_RETRIES (3) times. EUI-64 identifiers (RFC 4291 appendix A) are available as an option,
 * and temporary addresses (RFC 8981) are formed next to the stable ones when asked for.
 *
 * Not done: optimistic DAD (RFC 4429), the random delay before the first DAD probe of §5.4.2
 * (probes start at once), DHCPv6 for the M and O flags, and disabling the interface when an
 * EUI-64 link-local address is duplicated (§5.4.5: the address is only marked duplicated).
 * @module
 */
import { createHash } from 'node:crypto';
import { formatIpv6Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError } from '../errors.js';
import type { PrefixInformation } from '../wire/icmpv6.js';
import {
  type Ipv6AddressEntry,
  type Ipv6AddressOrigin,
  type Ipv6AddressState,
  type Ipv6Interface,
  type Ipv6Layer,
  addressKey,
  isLinkLocal,
  longTimer,
} from './ipv6.js';
import { type Ndp, lifetimeEnd } from './ndp.js';

/** RFC 7217 §6: new identifiers tried after DAD conflicts. */
const IDGEN_RETRIES = 3;
/** RFC 8981 §3.8 defaults. */
const TEMP_IDGEN_RETRIES = 3;
const MAX_DESYNC_FACTOR = 0.4;
const TWO_HOURS = 7_200_000;

/** Options of address autoconfiguration. */
export interface SlaacOptions {
  /** Interface identifiers: `'stable'` (RFC 7217, default) or `'eui64'` (from the MAC). */
  iid?: 'stable' | 'eui64';
  /** Also form RFC 8981 temporary addresses for autoconfigured prefixes (default false). */
  temporary?: boolean;
  /** DupAddrDetectTransmits (default 1; 0 turns DAD off and addresses are usable at once). */
  dadTransmits?: number;
  /** RFC 7217 secret key (default 16 bytes from the stack's random device). */
  secretKey?: Uint8Array;
  /** Form addresses from prefix information with the A flag (default true). */
  autoconf?: boolean;
  /** Autoconfigured addresses per interface (stable and temporary; default 16). */
  maxAddresses?: number;
  /** RFC 8981 TEMP_VALID_LIFETIME in s (default 2 days). */
  tempValidLifetime?: number;
  /** RFC 8981 TEMP_PREFERRED_LIFETIME in s (default 1 day). */
  tempPreferredLifetime?: number;
}

/** What happened to an address. */
export interface Ipv6AddressEvent {
  type: 'tentative' | 'preferred' | 'deprecated' | 'removed' | 'duplicate';
  /** Interface index. */
  iface: number;
  address: string;
  prefixLength: number;
  origin: Ipv6AddressOrigin;
}

/** An address as reported by {@link Slaac.addresses}. */
export interface Ipv6AddressInfo {
  iface: number;
  address: string;
  prefixLength: number;
  state: Ipv6AddressState;
  origin: Ipv6AddressOrigin;
  /** Milliseconds left (`Infinity` for static and link-local addresses). */
  validLifetimeMs: number;
  preferredLifetimeMs: number;
}

/** Autoconfiguration counters. */
export interface SlaacStats {
  dadStarted: number;
  dadSucceeded: number;
  dadFailed: number;
  /** Addresses formed from prefix information (stable and EUI-64). */
  addressesFormed: number;
  temporaryFormed: number;
  /** Prefix information options not used, by reason. */
  prefixesIgnored: Record<string, number>;
}

interface Managed {
  readonly iface: Ipv6Interface;
  readonly entry: Ipv6AddressEntry;
  /** The /64 prefix it was formed from (autoconfigured and link-local addresses). */
  readonly prefix: Buffer | undefined;
  readonly dadCounter: number;
  readonly createdAt: number;
  dadSent: number;
  dadTimer: Timer | undefined;
  preferredTimer: Timer | undefined;
  validTimer: Timer | undefined;
  regenTimer: Timer | undefined;
}

/** RFC 5453 reserved interface identifiers, which a generated one must avoid. */
function reservedIid(iid: Buffer): boolean {
  if (iid.every((b) => b === 0)) return true; // subnet-router anycast
  const hi = iid.readUInt32BE(0);
  const lo = iid.readUInt32BE(4);
  if (hi === 0xfdffffff && lo >= 0xffffff80) return true; // reserved subnet anycast
  if (hi === 0x02005eff && lo >>> 24 === 0xfe) return true; // proxy mobile IPv6
  return false;
}

/** The EUI-64 interface identifier of a 48-bit MAC (universal/local bit inverted). */
export function eui64Iid(mac: Uint8Array): Buffer {
  return Buffer.from([mac[0]! ^ 0x02, mac[1]!, mac[2]!, 0xff, 0xfe, mac[3]!, mac[4]!, mac[5]!]);
}

/**
 * The RFC 7217 interface identifier: the leftmost 64 bits of SHA-256(prefix ‖ interface name ‖
 * DAD counter ‖ secret key).
 */
export function stableIid(prefix: Uint8Array, ifaceName: string, dadCounter: number, secretKey: Uint8Array): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(dadCounter);
  return createHash('sha256').update(prefix.subarray(0, 8)).update(ifaceName).update(counter).update(secretKey).digest().subarray(0, 8);
}

const LINK_LOCAL_PREFIX = Buffer.from('fe800000000000000000000000000000', 'hex');

/** Address autoconfiguration and duplicate address detection for all interfaces. */
export class Slaac {
  readonly #ip: Ipv6Layer;
  readonly #ndp: Ndp;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #iid: 'stable' | 'eui64';
  readonly #temporary: boolean;
  readonly #dadTransmits: number;
  readonly #secret: Buffer;
  readonly #autoconf: boolean;
  readonly #maxAddresses: number;
  readonly #tempValidMs: number;
  readonly #tempPreferredMs: number;
  readonly #desyncMs: number;
  readonly #managed = new Map<string, Managed>();
  readonly #listeners: Array<(event: Ipv6AddressEvent) => void> = [];
  #settledWaiters: Array<() => void> = [];
  #closed = false;
  readonly #stats: SlaacStats = { dadStarted: 0, dadSucceeded: 0, dadFailed: 0, addressesFormed: 0, temporaryFormed: 0, prefixesIgnored: {} };

  constructor(ip: Ipv6Layer, ndp: Ndp, clock: Clock, randomUint32: () => number, options: SlaacOptions = {}) {
    this.#ip = ip;
    this.#ndp = ndp;
    this.#clock = clock;
    this.#random = randomUint32;
    this.#iid = options.iid ?? 'stable';
    if (this.#iid !== 'stable' && this.#iid !== 'eui64') throw new MorganaError('ERR_STACK_CONFIG', `iid must be 'stable' or 'eui64', got ${JSON.stringify(options.iid)}`);
    this.#temporary = options.temporary ?? false;
    this.#dadTransmits = options.dadTransmits ?? 1;
    if (!Number.isInteger(this.#dadTransmits) || this.#dadTransmits < 0 || this.#dadTransmits > 10) {
      throw new MorganaError('ERR_STACK_CONFIG', `dadTransmits must be 0..10, got ${options.dadTransmits}`);
    }
    this.#autoconf = options.autoconf ?? true;
    this.#maxAddresses = options.maxAddresses ?? 16;
    this.#tempValidMs = (options.tempValidLifetime ?? 172_800) * 1000;
    this.#tempPreferredMs = (options.tempPreferredLifetime ?? 86_400) * 1000;
    this.#desyncMs = Math.floor((this.#random() / 0x1_0000_0000) * MAX_DESYNC_FACTOR * this.#tempPreferredMs);
    if (options.secretKey) {
      this.#secret = Buffer.from(options.secretKey);
    } else {
      this.#secret = Buffer.alloc(16);
      for (let i = 0; i < 16; i += 4) this.#secret.writeUInt32BE(this.#random() >>> 0, i);
    }
    ndp.listen({
      prefix: (iface, p) => this.#onPrefix(iface, p),
      duplicate: (iface, target) => this.#onDuplicate(iface, target),
      routerDiscoveryDone: () => this.#wakeSettled(),
    });
  }

  /** Listens to address events (`tentative`, `preferred`, `deprecated`, `removed`, `duplicate`). */
  onEvent(listener: (event: Ipv6AddressEvent) => void): void {
    this.#listeners.push(listener);
  }

  /** Counters. */
  stats(): SlaacStats {
    return { ...this.#stats, prefixesIgnored: { ...this.#stats.prefixesIgnored } };
  }

  /** Every address of every interface, in every state. */
  addresses(): Ipv6AddressInfo[] {
    const now = this.#clock.now();
    return this.#ip.interfaces.flatMap((iface) =>
      iface.addresses.map((e) => ({
        iface: iface.index,
        address: formatIpv6Address(e.address),
        prefixLength: e.prefixLength,
        state: e.state,
        origin: e.origin,
        validLifetimeMs: Math.max(0, e.validUntil - now),
        preferredLifetimeMs: Math.max(0, e.preferredUntil - now),
      })),
    );
  }

  /**
   * Resolves once autoconfiguration is done: router discovery ended (an advertisement arrived
   * and the addresses of its prefixes were formed, or the solicitations went unanswered, about
   * 13 s after start: then there are definitively no SLAAC addresses) and no address is
   * tentative (every DAD finished). With `{ dadOnly: true }` only the second: the addresses
   * configured so far are usable. Rejects with `ERR_IPV6_DUPLICATE_ADDRESS` when a static
   * address turned out to be in use elsewhere. While pending it keeps the process alive (the
   * stack's own timers do not).
   */
  async settled(options: { dadOnly?: boolean } = {}): Promise<void> {
    const pending = () =>
      [...this.#managed.values()].some((m) => m.entry.state === 'tentative') ||
      (!options.dadOnly && this.#autoconf && this.#ip.interfaces.some((iface) => this.#ndp.routerDiscoveryPending(iface)));
    if (!this.#closed && pending()) {
      const keepAlive = setInterval(() => {}, 1 << 30);
      try {
        while (!this.#closed && pending()) await new Promise<void>((resolve) => this.#settledWaiters.push(resolve));
      } finally {
        clearInterval(keepAlive);
      }
    }
    const duplicate = [...this.#managed.values()].find((m) => m.entry.origin === 'static' && m.entry.state === 'duplicated');
    if (duplicate) {
      throw new MorganaError('ERR_IPV6_DUPLICATE_ADDRESS', `${formatIpv6Address(duplicate.entry.address)} is already in use on the link (duplicate address detection)`);
    }
  }

  /** Configures the link-local address of `iface` (fe80::/64 and the chosen identifier). */
  addLinkLocal(iface: Ipv6Interface): void {
    this.#formFromPrefix(iface, LINK_LOCAL_PREFIX, 'link-local', 0, Infinity, Infinity);
  }

  /** Adds a static address (its prefix becomes on-link); DAD runs as for any other. */
  addStatic(iface: Ipv6Interface, address: Buffer, prefixLength: number): void {
    const entry: Ipv6AddressEntry = { address: Buffer.from(address), prefixLength, state: 'tentative', origin: 'static', validUntil: Infinity, preferredUntil: Infinity };
    if (prefixLength < 128 && !isLinkLocal(address)) this.#ip.setOnLink(iface, address, prefixLength, Infinity);
    this.#add(iface, entry, undefined, 0);
  }

  #iidFor(iface: Ipv6Interface, prefix: Buffer, counter: number): Buffer | undefined {
    if (this.#iid === 'eui64') return counter === 0 ? eui64Iid(iface.eth.mac) : undefined;
    for (let c = counter; c <= IDGEN_RETRIES + 8; c++) {
      const iid = stableIid(prefix, iface.name, c, this.#secret);
      if (!reservedIid(iid)) return iid;
    }
    return undefined;
  }

  #formFromPrefix(iface: Ipv6Interface, prefix: Buffer, origin: Ipv6AddressOrigin, counter: number, validUntil: number, preferredUntil: number): void {
    const iid = origin === 'temporary' ? this.#randomIid() : this.#iidFor(iface, prefix, counter);
    if (!iid) return;
    const address = Buffer.concat([prefix.subarray(0, 8), iid]);
    if (this.#ip.findAddress(address)) return;
    this.#add(iface, { address, prefixLength: 64, state: 'tentative', origin, validUntil, preferredUntil }, Buffer.from(prefix.subarray(0, 16)), counter);
  }

  #randomIid(): Buffer {
    for (;;) {
      const iid = Buffer.alloc(8);
      iid.writeUInt32BE(this.#random() >>> 0, 0);
      iid.writeUInt32BE(this.#random() >>> 0, 4);
      if (!reservedIid(iid)) return iid;
    }
  }

  #emit(type: Ipv6AddressEvent['type'], m: Managed): void {
    const event: Ipv6AddressEvent = { type, iface: m.iface.index, address: formatIpv6Address(m.entry.address), prefixLength: m.entry.prefixLength, origin: m.entry.origin };
    for (const l of this.#listeners) l(event);
  }

  #add(iface: Ipv6Interface, entry: Ipv6AddressEntry, prefix: Buffer | undefined, dadCounter: number): void {
    const m: Managed = {
      iface,
      entry,
      prefix,
      dadCounter,
      createdAt: this.#clock.now(),
      dadSent: 0,
      dadTimer: undefined,
      preferredTimer: undefined,
      validTimer: undefined,
      regenTimer: undefined,
    };
    this.#managed.set(addressKey(entry.address), m);
    this.#ip.addAddress(iface, entry);
    this.#scheduleLifetimes(m);
    if (this.#dadTransmits === 0) {
      this.#dadSucceeded(m);
      return;
    }
    this.#stats.dadStarted++;
    this.#emit('tentative', m);
    this.#probe(m);
  }

  /** One DAD probe; after the last, one more RetransTimer of silence means success (§5.4.2). */
  #probe(m: Managed): void {
    if (this.#closed || m.entry.state !== 'tentative') return;
    if (m.dadSent >= this.#dadTransmits) {
      this.#dadSucceeded(m);
      return;
    }
    m.dadSent++;
    this.#ndp.solicitForDad(m.iface, m.entry.address);
    m.dadTimer = this.#clock.setTimer(this.#ndp.retransTimerMs(m.iface), () => this.#probe(m));
  }

  #dadSucceeded(m: Managed): void {
    m.dadTimer?.cancel();
    this.#ndp.dadDone(m.entry.address);
    if (this.#dadTransmits > 0) this.#stats.dadSucceeded++;
    const deprecated = m.entry.preferredUntil <= this.#clock.now();
    m.entry.state = deprecated ? 'deprecated' : 'preferred';
    this.#emit(m.entry.state, m);
    if (isLinkLocal(m.entry.address)) this.#ndp.linkLocalReady(m.iface);
    if (m.entry.origin === 'temporary') this.#scheduleRegeneration(m);
    this.#wakeSettled();
  }

  #wakeSettled(): void {
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const w of waiters) w();
  }

  #onDuplicate(iface: Ipv6Interface, target: Buffer): void {
    const m = this.#managed.get(addressKey(target));
    if (!m || m.iface !== iface || m.entry.state !== 'tentative') return;
    m.dadTimer?.cancel();
    this.#ndp.dadDone(m.entry.address);
    this.#stats.dadFailed++;
    this.#ip.markDuplicated(iface, m.entry);
    this.#emit('duplicate', m);
    // Draw another identifier: RFC 7217 §6 (counter + 1) or RFC 8981 §3.4 (a new random one).
    if (m.prefix && m.entry.origin !== 'static') {
      if (m.entry.origin === 'temporary') {
        if (m.dadCounter < TEMP_IDGEN_RETRIES) this.#formFromPrefix(iface, m.prefix, 'temporary', m.dadCounter + 1, m.entry.validUntil, m.entry.preferredUntil);
      } else if (this.#iid === 'stable' && m.dadCounter < IDGEN_RETRIES) {
        this.#formFromPrefix(iface, m.prefix, m.entry.origin, m.dadCounter + 1, m.entry.validUntil, m.entry.preferredUntil);
      }
    }
    this.#wakeSettled();
  }

  #scheduleLifetimes(m: Managed): void {
    m.preferredTimer?.cancel();
    m.validTimer?.cancel();
    const now = this.#clock.now();
    m.preferredTimer = longTimer(this.#clock, Math.max(0, m.entry.preferredUntil - now), () => {
      if (m.entry.state === 'preferred') {
        m.entry.state = 'deprecated';
        this.#emit('deprecated', m);
      }
    });
    m.validTimer = longTimer(this.#clock, Math.max(0, m.entry.validUntil - now), () => this.#remove(m));
  }

  #remove(m: Managed): void {
    m.dadTimer?.cancel();
    m.preferredTimer?.cancel();
    m.validTimer?.cancel();
    m.regenTimer?.cancel();
    this.#ndp.dadDone(m.entry.address);
    this.#managed.delete(addressKey(m.entry.address));
    this.#ip.removeAddress(m.iface, m.entry.address);
    this.#emit('removed', m);
    this.#wakeSettled();
  }

  #ignore(reason: string): void {
    this.#stats.prefixesIgnored[reason] = (this.#stats.prefixesIgnored[reason] ?? 0) + 1;
  }

  /** RFC 4862 §5.5.3 for one prefix information option. */
  #onPrefix(iface: Ipv6Interface, p: PrefixInformation): void {
    if (this.#closed || !this.#autoconf || !p.autonomous) return;
    if (isLinkLocal(p.prefix)) return this.#ignore('link-local');
    if (p.preferredLifetime > p.validLifetime) return this.#ignore('preferred-above-valid');
    if (p.prefixLength !== 64) return this.#ignore('prefix-length');
    const now = this.#clock.now();
    const prefix = Buffer.concat([p.prefix.subarray(0, 8), Buffer.alloc(8)]);
    const formed = [...this.#managed.values()].filter(
      (m) => m.iface === iface && m.prefix?.subarray(0, 8).equals(prefix.subarray(0, 8)) && m.entry.state !== 'duplicated',
    );
    const stable = formed.filter((m) => m.entry.origin === 'slaac');
    const receivedValid = lifetimeEnd(now, p.validLifetime);
    const receivedPreferred = lifetimeEnd(now, p.preferredLifetime);
    if (stable.length === 0) {
      if (p.validLifetime === 0) return;
      if (this.#countOn(iface) >= this.#maxAddresses) return this.#ignore('address-limit');
      this.#stats.addressesFormed++;
      this.#formFromPrefix(iface, prefix, 'slaac', 0, receivedValid, receivedPreferred);
    } else {
      for (const m of stable) {
        // (e) the two-hour rule protects against a spoofed short lifetime.
        const remaining = m.entry.validUntil - now;
        if (receivedValid - now > TWO_HOURS || receivedValid - now > remaining) m.entry.validUntil = receivedValid;
        else if (remaining > TWO_HOURS) m.entry.validUntil = now + TWO_HOURS;
        m.entry.preferredUntil = receivedPreferred;
        if (m.entry.state === 'deprecated' && receivedPreferred > now) m.entry.state = 'preferred';
        this.#scheduleLifetimes(m);
      }
    }
    if (!this.#temporary) return;
    const stableNow = [...this.#managed.values()].find((m) => m.iface === iface && m.entry.origin === 'slaac' && m.prefix?.subarray(0, 8).equals(prefix.subarray(0, 8)) && m.entry.state !== 'duplicated');
    if (!stableNow) return;
    const temps = formed.filter((m) => m.entry.origin === 'temporary');
    // RFC 8981 §3.4: a temporary address lives no longer than the prefix nor its own maxima.
    for (const t of temps) {
      t.entry.validUntil = Math.min(stableNow.entry.validUntil, t.createdAt + this.#tempValidMs);
      t.entry.preferredUntil = Math.min(stableNow.entry.preferredUntil, t.createdAt + this.#tempPreferredMs - this.#desyncMs);
      this.#scheduleLifetimes(t);
    }
    if (!temps.some((t) => t.entry.state === 'preferred' || t.entry.state === 'tentative') && stableNow.entry.preferredUntil > now) {
      this.#formTemporary(iface, prefix, stableNow);
    }
  }

  #countOn(iface: Ipv6Interface): number {
    let n = 0;
    for (const m of this.#managed.values()) if (m.iface === iface && (m.entry.origin === 'slaac' || m.entry.origin === 'temporary')) n++;
    return n;
  }

  #formTemporary(iface: Ipv6Interface, prefix: Buffer, stable: Managed): void {
    if (this.#countOn(iface) >= this.#maxAddresses) return this.#ignore('address-limit');
    const now = this.#clock.now();
    const validUntil = Math.min(stable.entry.validUntil, now + this.#tempValidMs);
    const preferredUntil = Math.min(stable.entry.preferredUntil, now + this.#tempPreferredMs - this.#desyncMs);
    // RFC 8981 §3.4 step 6: no temporary address whose preferred lifetime would not exceed REGEN_ADVANCE.
    if (preferredUntil - now <= this.#regenAdvanceMs(iface)) return;
    this.#stats.temporaryFormed++;
    this.#formFromPrefix(iface, prefix, 'temporary', 0, validUntil, preferredUntil);
  }

  /** REGEN_ADVANCE = 2 s + TEMP_IDGEN_RETRIES × DupAddrDetectTransmits × RetransTimer (RFC 8981 §3.8). */
  #regenAdvanceMs(iface: Ipv6Interface): number {
    return 2_000 + TEMP_IDGEN_RETRIES * this.#dadTransmits * this.#ndp.retransTimerMs(iface);
  }

  /** A new temporary address REGEN_ADVANCE before this one is deprecated (RFC 8981 §3.5). */
  #scheduleRegeneration(m: Managed): void {
    m.regenTimer?.cancel();
    const at = m.entry.preferredUntil - this.#regenAdvanceMs(m.iface);
    m.regenTimer = longTimer(this.#clock, Math.max(0, at - this.#clock.now()), () => {
      if (this.#closed || !m.prefix || !this.#managed.has(addressKey(m.entry.address))) return;
      const stable = [...this.#managed.values()].find((s) => s.iface === m.iface && s.entry.origin === 'slaac' && s.prefix?.equals(m.prefix!) && s.entry.state === 'preferred');
      if (stable) this.#formTemporary(m.iface, m.prefix, stable);
    });
  }

  /** Stops timers. */
  close(): void {
    this.#closed = true;
    for (const m of this.#managed.values()) {
      m.dadTimer?.cancel();
      m.preferredTimer?.cancel();
      m.validTimer?.cancel();
      m.regenTimer?.cancel();
    }
    this.#wakeSettled();
  }
}
