/**
 * ARP for IPv4 over Ethernet (RFC 826): a bounded cache with expiry, answers for the stack's own
 * addresses, gratuitous announcements, request retries with a give-up time, and a bounded queue
 * of packets waiting for each resolution.
 * @module
 */
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError } from '../errors.js';
import { formatMac, parseMac } from '../net/mac.js';
import { ARP_OP, ARP_PACKET_LENGTH, parseArp, writeArp } from '../wire/arp.js';
import { BROADCAST, ETHERTYPE, type Ethernet } from './ethernet.js';

/** Limits and timings of the ARP layer. */
export interface ArpOptions {
  /** How long a learned entry stays valid, in ms (default 60 s). */
  expiryMs?: number;
  /** Interval between requests for one address, in ms; also the rate limit (default 1 s). */
  retryMs?: number;
  /** Requests sent before giving up on an address (default 3). */
  retries?: number;
  /** Packets queued per unresolved address; more are dropped and counted (default 16). */
  queueLimit?: number;
  /** Addresses being resolved at once; more are refused and counted (default 256). */
  maxPending?: number;
  /** Learned entries kept; the oldest is evicted beyond it (default 1024). */
  maxEntries?: number;
}

/** ARP counters. */
export interface ArpStats {
  requestsSent: number;
  repliesSent: number;
  requestsReceived: number;
  repliesReceived: number;
  gratuitousSent: number;
  /** Packets dropped because an address's queue was full or too many were pending. */
  queueDrops: number;
  /** Packets dropped because their address did not resolve in time. */
  resolutionFailures: number;
  /** ARP packets that were too short or not Ethernet/IPv4. */
  malformed: number;
  /** Entries expired or evicted. */
  expired: number;
}

/** A cache entry as reported by {@link Arp.entries}. */
export interface ArpEntry {
  address: string;
  mac: string;
  static: boolean;
  /** Milliseconds until expiry (`Infinity` for static entries). */
  expiresInMs: number;
}

interface CacheEntry {
  mac: Buffer;
  expiresAt: number;
}

interface Pending {
  waiters: Array<(mac: Buffer) => void>;
  sent: number;
  timer: Timer;
}

const ZERO_MAC = Buffer.alloc(6);

/** The ARP layer of one Ethernet interface. */
export class Arp {
  readonly #eth: Ethernet;
  readonly #clock: Clock;
  readonly #expiryMs: number;
  readonly #retryMs: number;
  readonly #retries: number;
  readonly #queueLimit: number;
  readonly #maxPending: number;
  readonly #maxEntries: number;
  /** Own addresses (32-bit numbers). */
  #addresses: number[] = [];
  readonly #cache = new Map<number, CacheEntry>();
  readonly #static = new Map<number, Buffer>();
  readonly #pending = new Map<number, Pending>();
  #closed = false;
  readonly #stats: ArpStats = {
    requestsSent: 0,
    repliesSent: 0,
    requestsReceived: 0,
    repliesReceived: 0,
    gratuitousSent: 0,
    queueDrops: 0,
    resolutionFailures: 0,
    malformed: 0,
    expired: 0,
  };

  constructor(eth: Ethernet, clock: Clock, options: ArpOptions = {}) {
    this.#eth = eth;
    this.#clock = clock;
    this.#expiryMs = options.expiryMs ?? 60_000;
    this.#retryMs = options.retryMs ?? 1_000;
    this.#retries = options.retries ?? 3;
    this.#queueLimit = options.queueLimit ?? 16;
    this.#maxPending = options.maxPending ?? 256;
    this.#maxEntries = options.maxEntries ?? 1024;
    eth.on(ETHERTYPE.ARP, (payload) => this.#receive(payload));
  }

  /** Sets the addresses this interface answers for and announces new ones (gratuitous ARP). */
  setAddresses(addresses: number[]): void {
    const added = addresses.filter((a) => !this.#addresses.includes(a));
    this.#addresses = [...addresses];
    for (const address of added) {
      if (address === 0) continue;
      this.#send(ARP_OP.REQUEST, BROADCAST, address, ZERO_MAC, address);
      this.#stats.gratuitousSent++;
    }
  }

  /** Adds a static entry, which never expires and is not overwritten by what the wire says. */
  addStatic(address: string, mac: string): void {
    this.#static.set(parseIpv4Address(address), parseMac(mac));
  }

  /** Removes an entry, static or learned. */
  remove(address: string): void {
    const ip = parseIpv4Address(address);
    this.#static.delete(ip);
    this.#cache.delete(ip);
  }

  /** The current cache. */
  entries(): ArpEntry[] {
    const now = this.#clock.now();
    const out: ArpEntry[] = [];
    for (const [ip, mac] of this.#static) {
      out.push({ address: formatIpv4Address(ip), mac: formatMac(mac), static: true, expiresInMs: Infinity });
    }
    for (const [ip, e] of this.#cache) {
      if (e.expiresAt > now && !this.#static.has(ip)) {
        out.push({ address: formatIpv4Address(ip), mac: formatMac(e.mac), static: false, expiresInMs: e.expiresAt - now });
      }
    }
    return out;
  }

  /** Counters. */
  stats(): ArpStats {
    return { ...this.#stats };
  }

  /** The MAC for `ip` if known and fresh. */
  lookup(ip: number): Buffer | undefined {
    const fixed = this.#static.get(ip);
    if (fixed) return fixed;
    const entry = this.#cache.get(ip);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.#clock.now()) {
      this.#cache.delete(ip);
      this.#stats.expired++;
      return undefined;
    }
    return entry.mac;
  }

  /**
   * Calls `send` with the MAC of `ip`: at once when it is known, otherwise once it resolves
   * (the callback is queued, within the per-address limit). Returns false when the packet was
   * dropped because the queue is full.
   */
  resolve(ip: number, send: (mac: Buffer) => void): boolean {
    const mac = this.lookup(ip);
    if (mac) {
      send(mac);
      return true;
    }
    let pending = this.#pending.get(ip);
    if (!pending) {
      if (this.#pending.size >= this.#maxPending || this.#closed) {
        this.#stats.queueDrops++;
        return false;
      }
      pending = { waiters: [], sent: 0, timer: { cancel() {} } };
      this.#pending.set(ip, pending);
      this.#request(ip, pending);
    }
    if (pending.waiters.length >= this.#queueLimit) {
      this.#stats.queueDrops++;
      return false;
    }
    pending.waiters.push(send);
    return true;
  }

  /** Resolves `address` to a MAC, sending requests as needed; rejects with `ERR_ARP_TIMEOUT`. */
  query(address: string): Promise<string> {
    const ip = parseIpv4Address(address);
    return new Promise((resolve, reject) => {
      if (!this.resolve(ip, (mac) => resolve(formatMac(mac)))) {
        reject(new MorganaError('ERR_ARP_QUEUE_FULL', `too many packets waiting for ${address}`));
      } else if (this.#pending.has(ip)) {
        const fail = () => reject(new MorganaError('ERR_ARP_TIMEOUT', `no ARP reply from ${address}`));
        this.#failureListeners.set(ip, [...(this.#failureListeners.get(ip) ?? []), fail]);
      }
    });
  }

  readonly #failureListeners = new Map<number, Array<() => void>>();

  /** Stops retries and drops queued packets. */
  close(): void {
    this.#closed = true;
    for (const pending of this.#pending.values()) pending.timer.cancel();
    this.#pending.clear();
    this.#failureListeners.clear();
  }

  #request(ip: number, pending: Pending): void {
    if (this.#closed) return;
    if (pending.sent >= this.#retries) {
      this.#pending.delete(ip);
      this.#stats.resolutionFailures += pending.waiters.length;
      const listeners = this.#failureListeners.get(ip) ?? [];
      this.#failureListeners.delete(ip);
      for (const fail of listeners) fail();
      return;
    }
    pending.sent++;
    this.#stats.requestsSent++;
    this.#send(ARP_OP.REQUEST, BROADCAST, this.#sourceFor(ip), ZERO_MAC, ip);
    pending.timer = this.#clock.setTimer(this.#retryMs, () => this.#request(ip, pending));
  }

  /** Our address on the same subnet as `ip` if there is one, else the first (RFC 826 leaves it open). */
  #sourceFor(_ip: number): number {
    return this.#addresses[0] ?? 0;
  }

  #learn(ip: number, mac: Buffer): void {
    if (this.#static.has(ip) || ip === 0) return;
    if (!this.#cache.has(ip) && this.#cache.size >= this.#maxEntries) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) {
        this.#cache.delete(oldest);
        this.#stats.expired++;
      }
    }
    this.#cache.delete(ip); // re-insert so Map order is age order
    this.#cache.set(ip, { mac: Buffer.from(mac), expiresAt: this.#clock.now() + this.#expiryMs });
    const pending = this.#pending.get(ip);
    if (pending) {
      pending.timer.cancel();
      this.#pending.delete(ip);
      this.#failureListeners.delete(ip);
      const resolved = this.#cache.get(ip)!.mac;
      for (const send of pending.waiters) send(resolved);
    }
  }

  #receive(p: Buffer): void {
    const packet = parseArp(p);
    if (packet === undefined) {
      this.#stats.malformed++;
      return;
    }
    const { op, senderMac, senderIp, targetIp } = packet;
    if ((senderMac[0]! & 1) === 1) {
      this.#stats.malformed++; // a group MAC is never a host's address
      return;
    }
    const forUs = this.#addresses.includes(targetIp);
    // RFC 826 merge: refresh what we already know; learn the sender when we are the target or
    // we asked for it.
    if (this.#cache.has(senderIp) || forUs || this.#pending.has(senderIp)) this.#learn(senderIp, senderMac);
    if (op === ARP_OP.REQUEST) {
      this.#stats.requestsReceived++;
      if (forUs && senderIp !== targetIp) {
        this.#send(ARP_OP.REPLY, senderMac, targetIp, senderMac, senderIp);
        this.#stats.repliesSent++;
      }
    } else if (op === ARP_OP.REPLY) {
      this.#stats.repliesReceived++;
    } else {
      this.#stats.malformed++;
    }
  }

  #send(op: number, dstMac: Buffer, senderIp: number, targetMac: Buffer, targetIp: number): void {
    const own = this.#eth.mac;
    this.#eth.write(dstMac, ETHERTYPE.ARP, {
      size: ARP_PACKET_LENGTH,
      fill: (b) => writeArp(b, { op, senderMac: own, senderIp, targetMac, targetIp }),
    });
  }
}
