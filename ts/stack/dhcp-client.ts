/**
 * The DHCP client (RFC 2131 §4.4): DISCOVER/OFFER/REQUEST/ACK from 0.0.0.0:68 to
 * 255.255.255.255:67, retransmission with exponential backoff (4 s, 8 s, … up to 64 s, each
 * randomised by ±1 s from the stack's random device) on the stack's clock, an optional ARP probe
 * of the offered address (DECLINE on conflict), renewal at T1 (unicast to the server), rebinding
 * at T2 (broadcast), expiry at the end of the lease (the address is removed and discovery
 * restarts) and DHCPRELEASE on close. A bound lease sets the interface's address and prefix, the
 * default gateway (first router) and the DNS servers ({@link DhcpLease.dns}).
 * @module
 */
import { EventEmitter } from 'node:events';
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError, OutOfRangeError } from '../errors.js';
import type { Arp } from './arp.js';
import {
  BOOTP_OP,
  DHCP_CLIENT_PORT,
  DHCP_FLAG_BROADCAST,
  DHCP_MESSAGE,
  DHCP_OPTION,
  DHCP_SERVER_PORT,
  type DhcpMessage,
  addressOption,
  emitDhcp,
  parseDhcp,
  prefixOfMask,
  readAddressListOption,
  readUint32Option,
} from '../wire/dhcp.js';
import type { Ipv4Interface, Ipv4Layer } from './ipv4.js';
import type { Udp, UdpSocket } from './udp.js';

/** Options of the DHCP client (`createStack({ dhcp: { … } })`). */
export interface DhcpClientOptions {
  /** How long `createStack` waits for the first lease before rejecting with `ERR_DHCP_TIMEOUT` (default 30 s). */
  timeoutMs?: number;
  /** Client identifier, option 61 (default: hardware type 1 followed by the MAC). */
  clientId?: Uint8Array;
  /** Host name sent in option 12. */
  hostname?: string;
  /** An address to ask for in DISCOVER (option 50), e.g. the one of a previous lease. */
  requestedAddress?: string;
  /** Ask servers to broadcast their replies (the BROADCAST flag; default false). */
  broadcastReplies?: boolean;
  /** Cap of the retransmission delay in SELECTING and REQUESTING, in ms (default 64 s). */
  maxRetransmitMs?: number;
  /** REQUESTs sent for one offer before discovery restarts (default 4). */
  requestAttempts?: number;
  /**
   * Probe the offered address with ARP before using it and DECLINE it when someone answers
   * (RFC 2131 §4.4.1; adds the ARP give-up time, 3 s by default, to every binding). Default false.
   */
  arpProbe?: boolean;
  /**
   * Send DHCPRELEASE when the client (or its stack) closes (default true). When false, closing
   * the client leaves the address configured and the lease runs out on the server.
   */
  releaseOnClose?: boolean;
  /**
   * How long close waits for the server's MAC (ARP) before giving up on the RELEASE, in ms on the
   * stack's clock (default 1 s). With a {@link VirtualClock} and a server that is already gone,
   * that wait only ends when the clock is advanced: close clients before their server.
   */
  releaseWaitMs?: number;
}

/** A bound lease. Times are on the stack's clock (ms). */
export interface DhcpLease {
  /** The leased address. */
  address: string;
  /** Prefix length from the subnet mask option (or the class default). */
  prefix: number;
  /** The subnet mask as a dotted quad. */
  subnetMask: string;
  /** Routers (option 3); the first is the stack's default gateway. */
  routers: string[];
  /** DNS servers (option 6). */
  dns: string[];
  /** Domain name (option 15), if given. */
  domainName: string | undefined;
  /** The server that granted the lease (option 54). */
  server: string;
  /** Lease duration in ms (`Infinity` for an infinite lease). */
  leaseTimeMs: number;
  /** When the lease starts (when the REQUEST that got it was sent). */
  obtainedAt: number;
  /** When renewal starts (T1). */
  renewAt: number;
  /** When rebinding starts (T2). */
  rebindAt: number;
  /** When the lease ends. */
  expiresAt: number;
}

/** States of RFC 2131 figure 5, plus probing, stopped and closed. */
export type DhcpState = 'init' | 'selecting' | 'requesting' | 'probing' | 'bound' | 'renewing' | 'rebinding' | 'stopped' | 'closed';

/** DHCP client counters. */
export interface DhcpClientStats {
  discoversSent: number;
  requestsSent: number;
  declinesSent: number;
  releasesSent: number;
  offersReceived: number;
  acksReceived: number;
  naksReceived: number;
  /** Retransmissions among the messages sent. */
  retransmissions: number;
  /** Messages that failed to parse (dropped). */
  malformed: number;
  /** Well-formed messages that were not for us or not expected now (dropped). */
  ignored: number;
  /** Sends that failed (no route and the like). */
  sendFailures: number;
  /** Leases that ran out without renewal. */
  expirations: number;
}

/** Events of a {@link DhcpClient}. */
export interface DhcpClientEvents {
  /** A lease was obtained (from INIT). */
  bound: [lease: DhcpLease];
  /** A lease was extended by renewal or rebinding. */
  renewed: [lease: DhcpLease];
  /** The lease ran out; the address has been removed and discovery restarts. */
  expired: [lease: DhcpLease];
  /** A server refused (DHCPNAK); any lease has been dropped and discovery restarts. */
  nak: [info: { server: string; message: string | undefined }];
  /** The offered address was in use (ARP probe answered); it was declined. */
  declined: [info: { address: string; by: string }];
  /** The lease was released (DHCPRELEASE sent, address removed). */
  released: [lease: DhcpLease];
}

/** What the client needs from its stack. */
export interface DhcpClientHost {
  readonly udp: Udp;
  readonly ipv4: Ipv4Layer;
  /** The interface to configure. It must be the one that broadcasts go out of (the first). */
  readonly iface: Ipv4Interface;
  readonly arp: Arp;
  readonly clock: Clock;
  readonly random: { uint32(): number };
}

const PARAMETER_LIST = Uint8Array.of(
  DHCP_OPTION.SUBNET_MASK,
  DHCP_OPTION.ROUTER,
  DHCP_OPTION.DNS,
  DHCP_OPTION.DOMAIN_NAME,
  DHCP_OPTION.BROADCAST_ADDRESS,
  DHCP_OPTION.LEASE_TIME,
  DHCP_OPTION.RENEWAL_TIME,
  DHCP_OPTION.REBINDING_TIME,
);
const LIMITED_BROADCAST = 0xffffffff;
const FIRST_RETRANSMIT_MS = 4_000;
/** RFC 2131 §4.4.5: retransmissions in RENEWING and REBINDING wait at least 60 s. */
const MIN_RENEW_RETRANSMIT_MS = 60_000;
/** RFC 2131 §3.1.5: wait at least 10 s after a DECLINE. */
const DECLINE_WAIT_MS = 10_000;
const INFINITE = 0xffffffff;

function classfulPrefix(address: number): number {
  const first = address >>> 24;
  return first < 128 ? 8 : first < 192 ? 16 : 24;
}

/**
 * A DHCP client for one interface of a stack. `createStack({ dhcp })` builds and starts one;
 * it is then `stack.dhcp`.
 */
export class DhcpClient extends EventEmitter<DhcpClientEvents> {
  readonly #host: DhcpClientHost;
  readonly #mac: Buffer;
  readonly #clientId: Buffer;
  readonly #hostname: Buffer | undefined;
  readonly #requested: number;
  readonly #broadcastFlag: number;
  readonly #maxRetransmitMs: number;
  readonly #requestAttempts: number;
  readonly #arpProbe: boolean;
  readonly #releaseOnClose: boolean;
  readonly #releaseWaitMs: number;
  #socket: UdpSocket | undefined;
  #state: DhcpState = 'stopped';
  #xid = 0;
  #attempt = 0;
  #exchangeStartedAt = 0;
  #requestSentAt = 0;
  #timer: Timer | undefined;
  #leaseTimers: Timer[] = [];
  #offer: { address: number; server: number } | undefined;
  #lease: DhcpLease | undefined;
  #waiters: Array<{ resolve: (lease: DhcpLease) => void; reject: (error: Error) => void }> = [];
  readonly #stats: DhcpClientStats = {
    discoversSent: 0,
    requestsSent: 0,
    declinesSent: 0,
    releasesSent: 0,
    offersReceived: 0,
    acksReceived: 0,
    naksReceived: 0,
    retransmissions: 0,
    malformed: 0,
    ignored: 0,
    sendFailures: 0,
    expirations: 0,
  };

  constructor(host: DhcpClientHost, options: DhcpClientOptions = {}) {
    super();
    this.#host = host;
    this.#mac = Buffer.from(host.iface.eth.mac);
    this.#clientId = options.clientId ? Buffer.from(options.clientId) : Buffer.concat([Buffer.of(1), this.#mac]);
    if (this.#clientId.length < 2 || this.#clientId.length > 255) throw new OutOfRangeError('clientId must be 2 to 255 bytes');
    this.#hostname = options.hostname ? Buffer.from(options.hostname, 'utf8') : undefined;
    this.#requested = options.requestedAddress ? parseIpv4Address(options.requestedAddress) : 0;
    this.#broadcastFlag = options.broadcastReplies ? DHCP_FLAG_BROADCAST : 0;
    this.#maxRetransmitMs = options.maxRetransmitMs ?? 64_000;
    this.#requestAttempts = options.requestAttempts ?? 4;
    this.#arpProbe = options.arpProbe ?? false;
    this.#releaseOnClose = options.releaseOnClose ?? true;
    this.#releaseWaitMs = options.releaseWaitMs ?? 1_000;
  }

  /** The current state. */
  get state(): DhcpState {
    return this.#state;
  }

  /** The current lease, if bound (also while renewing or rebinding). */
  get lease(): DhcpLease | undefined {
    return this.#lease && { ...this.#lease, routers: [...this.#lease.routers], dns: [...this.#lease.dns] };
  }

  /** Binds UDP port 68 and starts discovery. Throws `EADDRINUSE` if port 68 is taken. */
  start(): void {
    if (this.#state === 'closed') throw new MorganaError('ERR_DHCP_CLOSED', 'the DHCP client is closed');
    if (this.#socket) return;
    this.#socket = this.#host.udp.bind(DHCP_CLIENT_PORT, (data) => this.#receive(data));
    this.#init();
  }

  /** Resolves with the lease once bound (at once if bound); rejects with `ERR_DHCP_CLOSED` on close. */
  waitForLease(): Promise<DhcpLease> {
    if (this.#lease) return Promise.resolve(this.lease!);
    if (this.#state === 'closed') return Promise.reject(new MorganaError('ERR_DHCP_CLOSED', 'the DHCP client is closed'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Counters. */
  stats(): DhcpClientStats {
    return { ...this.#stats };
  }

  /**
   * Sends DHCPRELEASE for the current lease (if any), removes the address and stops. Waits up to
   * `releaseWaitMs` (stack clock) for the server's MAC so the unicast RELEASE leaves before
   * the stack closes. `start()` begins again.
   */
  async release(): Promise<void> {
    const lease = this.#lease;
    this.#cancelTimers();
    this.#state = 'stopped';
    this.#socket?.close();
    this.#socket = undefined;
    if (!lease) return;
    const server = parseIpv4Address(lease.server);
    const address = parseIpv4Address(lease.address);
    this.#xid = this.#host.random.uint32() >>> 0;
    const sent = this.#send(
      DHCP_MESSAGE.RELEASE,
      server,
      { ciaddr: address },
      [[DHCP_OPTION.SERVER_ID, addressOption(server)]],
    );
    if (sent) this.#stats.releasesSent++;
    if (sent && !this.#host.arp.lookup(server)) await this.#waitForMac(server);
    this.#unbind();
    this.emit('released', lease);
  }

  /** Releases the lease (unless `releaseOnClose` is false), stops timers and frees port 68. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#releaseOnClose && this.#lease) await this.release();
    this.#cancelTimers();
    this.#socket?.close();
    this.#socket = undefined;
    this.#state = 'closed';
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(new MorganaError('ERR_DHCP_CLOSED', 'the DHCP client was closed before it got a lease'));
  }

  #waitForMac(ip: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.#host.clock.setTimer(this.#releaseWaitMs, resolve);
      this.#host.arp.query(formatIpv4Address(ip)).then(
        () => {
          timer.cancel();
          resolve();
        },
        () => {
          timer.cancel();
          resolve();
        },
      );
    });
  }

  // ── state machine ──────────────────────────────────────────────────────────────────────────

  #init(delayMs = 0): void {
    this.#cancelTimers();
    this.#state = 'init';
    this.#offer = undefined;
    const begin = () => {
      this.#state = 'selecting';
      this.#xid = this.#host.random.uint32() >>> 0;
      this.#attempt = 0;
      this.#exchangeStartedAt = this.#host.clock.now();
      this.#sendDiscover();
    };
    if (delayMs > 0) this.#timer = this.#host.clock.setTimer(delayMs, begin);
    else begin();
  }

  /** The backoff delay before retransmission number `attempt` (0-based): 4 s, 8 s, … ± 1 s. */
  #backoff(attempt: number): number {
    const base = Math.min(FIRST_RETRANSMIT_MS * 2 ** attempt, this.#maxRetransmitMs);
    const jitter = (this.#host.random.uint32() % 2001) - 1000;
    return Math.max(1, base + jitter);
  }

  #sendDiscover(): void {
    if (this.#attempt > 0) this.#stats.retransmissions++;
    const options: Array<[number, Uint8Array]> = [];
    if (this.#requested) options.push([DHCP_OPTION.REQUESTED_ADDRESS, addressOption(this.#requested)]);
    if (this.#send(DHCP_MESSAGE.DISCOVER, LIMITED_BROADCAST, {}, options)) this.#stats.discoversSent++;
    this.#timer = this.#host.clock.setTimer(this.#backoff(this.#attempt++), () => this.#sendDiscover());
  }

  #sendSelectingRequest(): void {
    const offer = this.#offer!;
    if (this.#attempt >= this.#requestAttempts) {
      this.#init();
      return;
    }
    if (this.#attempt > 0) this.#stats.retransmissions++;
    this.#requestSentAt = this.#host.clock.now();
    const sent = this.#send(DHCP_MESSAGE.REQUEST, LIMITED_BROADCAST, {}, [
      [DHCP_OPTION.REQUESTED_ADDRESS, addressOption(offer.address)],
      [DHCP_OPTION.SERVER_ID, addressOption(offer.server)],
    ]);
    if (sent) this.#stats.requestsSent++;
    this.#timer = this.#host.clock.setTimer(this.#backoff(this.#attempt++), () => this.#sendSelectingRequest());
  }

  /** RENEWING (unicast to the server) or REBINDING (broadcast), retransmitted per §4.4.5. */
  #sendRenewal(): void {
    const lease = this.#lease;
    if (!lease) return;
    const now = this.#host.clock.now();
    if (this.#attempt++ > 0) this.#stats.retransmissions++;
    this.#requestSentAt = now;
    const dst = this.#state === 'renewing' ? parseIpv4Address(lease.server) : LIMITED_BROADCAST;
    if (this.#send(DHCP_MESSAGE.REQUEST, dst, { ciaddr: parseIpv4Address(lease.address) }, [])) this.#stats.requestsSent++;
    const until = this.#state === 'renewing' ? lease.rebindAt : lease.expiresAt;
    const wait = Math.max((until - now) / 2, MIN_RENEW_RETRANSMIT_MS);
    // The lease timers (T2, expiry) take over when the wait would pass them.
    if (now + wait < until) this.#timer = this.#host.clock.setTimer(wait, () => this.#sendRenewal());
  }

  #receive(data: Buffer): void {
    let message: DhcpMessage;
    try {
      message = parseDhcp(data);
    } catch {
      this.#stats.malformed++;
      return;
    }
    if (message.op !== BOOTP_OP.REPLY || message.xid !== this.#xid || !message.chaddr.equals(this.#mac)) {
      this.#stats.ignored++;
      return;
    }
    const server = readUint32Option(message, DHCP_OPTION.SERVER_ID) ?? 0;
    switch (message.type) {
      case DHCP_MESSAGE.OFFER:
        if (this.#state !== 'selecting' || message.yiaddr === 0 || message.yiaddr === LIMITED_BROADCAST || server === 0) break;
        this.#stats.offersReceived++;
        this.#cancelTimers();
        this.#offer = { address: message.yiaddr, server };
        this.#state = 'requesting';
        this.#attempt = 0;
        this.#sendSelectingRequest();
        return;
      case DHCP_MESSAGE.ACK:
        if (this.#state === 'requesting' && message.yiaddr === this.#offer!.address && (server === 0 || server === this.#offer!.server)) {
          this.#stats.acksReceived++;
          this.#accept(message, this.#offer!.server);
          return;
        }
        if ((this.#state === 'renewing' || this.#state === 'rebinding') && message.yiaddr !== 0) {
          this.#stats.acksReceived++;
          this.#accept(message, server || parseIpv4Address(this.#lease!.server));
          return;
        }
        break;
      case DHCP_MESSAGE.NAK:
        if (this.#state === 'requesting' || this.#state === 'renewing' || this.#state === 'rebinding') {
          if (this.#state === 'requesting' && server !== 0 && server !== this.#offer!.server) break;
          this.#stats.naksReceived++;
          const text = message.options.get(DHCP_OPTION.MESSAGE);
          if (this.#lease) this.#unbind();
          this.emit('nak', { server: formatIpv4Address(server), message: text?.toString('utf8') });
          this.#init();
          return;
        }
        break;
    }
    this.#stats.ignored++;
  }

  #leaseFrom(message: DhcpMessage, server: number): DhcpLease {
    const now = this.#requestSentAt;
    const mask = readUint32Option(message, DHCP_OPTION.SUBNET_MASK);
    let prefix = mask === undefined ? -1 : prefixOfMask(mask);
    if (prefix < 0) prefix = classfulPrefix(message.yiaddr);
    const maskValue = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const leaseSeconds = readUint32Option(message, DHCP_OPTION.LEASE_TIME) ?? INFINITE;
    const infinite = leaseSeconds === INFINITE;
    const leaseMs = infinite ? Infinity : leaseSeconds * 1000;
    let t1 = readUint32Option(message, DHCP_OPTION.RENEWAL_TIME);
    let t2 = readUint32Option(message, DHCP_OPTION.REBINDING_TIME);
    let t1Ms = infinite ? Infinity : t1 !== undefined ? t1 * 1000 : leaseMs * 0.5;
    let t2Ms = infinite ? Infinity : t2 !== undefined ? t2 * 1000 : leaseMs * 0.875;
    // Keep 0 < T1 <= T2 <= lease whatever the server said.
    if (!(t2Ms <= leaseMs)) t2Ms = leaseMs * 0.875;
    if (!(t1Ms <= t2Ms)) t1Ms = Math.min(leaseMs * 0.5, t2Ms);
    const domain = message.options.get(DHCP_OPTION.DOMAIN_NAME);
    return {
      address: formatIpv4Address(message.yiaddr),
      prefix,
      subnetMask: formatIpv4Address(maskValue),
      routers: readAddressListOption(message, DHCP_OPTION.ROUTER).map(formatIpv4Address),
      dns: readAddressListOption(message, DHCP_OPTION.DNS).map(formatIpv4Address),
      domainName: domain ? domain.toString('utf8').replace(/\0+$/, '') : undefined,
      server: formatIpv4Address(server),
      leaseTimeMs: leaseMs,
      obtainedAt: now,
      renewAt: now + t1Ms,
      rebindAt: now + t2Ms,
      expiresAt: now + leaseMs,
    };
  }

  #accept(message: DhcpMessage, server: number): void {
    const lease = this.#leaseFrom(message, server);
    this.#cancelTimers();
    const renewal = this.#lease !== undefined;
    if (!renewal && this.#arpProbe) {
      this.#state = 'probing';
      this.#host.arp.query(lease.address).then(
        (mac) => {
          if (this.#state !== 'probing') return;
          this.#decline(message, server, mac);
        },
        () => {
          if (this.#state === 'probing') this.#bind(lease, false);
        },
      );
      return;
    }
    this.#bind(lease, renewal);
  }

  #decline(message: DhcpMessage, server: number, by: string): void {
    this.#send(DHCP_MESSAGE.DECLINE, LIMITED_BROADCAST, {}, [
      [DHCP_OPTION.REQUESTED_ADDRESS, addressOption(message.yiaddr)],
      [DHCP_OPTION.SERVER_ID, addressOption(server)],
    ]);
    this.#stats.declinesSent++;
    this.emit('declined', { address: formatIpv4Address(message.yiaddr), by });
    this.#init(DECLINE_WAIT_MS);
  }

  #bind(lease: DhcpLease, renewal: boolean): void {
    const { ipv4, iface, clock } = this.#host;
    const address = parseIpv4Address(lease.address);
    const previous = this.#lease;
    if (previous && previous.address !== lease.address) this.#unbind();
    if (iface.address !== address || iface.prefix !== lease.prefix) ipv4.setAddress(iface, address, lease.prefix);
    const router = lease.routers[0];
    const previousRouter = previous?.routers[0];
    if (router) ipv4.gateway = parseIpv4Address(router);
    else if (previousRouter && ipv4.gateway === parseIpv4Address(previousRouter)) ipv4.gateway = 0;
    this.#lease = lease;
    this.#state = 'bound';
    const now = clock.now();
    if (Number.isFinite(lease.expiresAt)) {
      this.#leaseTimers = [
        clock.setTimer(lease.renewAt - now, () => this.#enterRenewal('renewing')),
        clock.setTimer(lease.rebindAt - now, () => this.#enterRenewal('rebinding')),
        clock.setTimer(lease.expiresAt - now, () => this.#expire()),
      ];
    }
    if (renewal) this.emit('renewed', this.lease!);
    else this.emit('bound', this.lease!);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve(this.lease!);
  }

  #enterRenewal(state: 'renewing' | 'rebinding'): void {
    if (!this.#lease) return;
    this.#timer?.cancel();
    this.#state = state;
    this.#xid = this.#host.random.uint32() >>> 0;
    this.#attempt = 0;
    this.#exchangeStartedAt = this.#host.clock.now();
    this.#sendRenewal();
  }

  #expire(): void {
    const lease = this.#lease;
    if (!lease) return;
    this.#stats.expirations++;
    this.#unbind();
    this.emit('expired', lease);
    this.#init();
  }

  /** Removes the lease's address and gateway from the stack. */
  #unbind(): void {
    const lease = this.#lease;
    if (!lease) return;
    const { ipv4, iface } = this.#host;
    if (iface.address === parseIpv4Address(lease.address)) ipv4.setAddress(iface, 0, 0);
    const router = lease.routers[0];
    if (router && ipv4.gateway === parseIpv4Address(router)) ipv4.gateway = 0;
    this.#lease = undefined;
    for (const t of this.#leaseTimers) t.cancel();
    this.#leaseTimers = [];
  }

  #cancelTimers(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const t of this.#leaseTimers) t.cancel();
    this.#leaseTimers = [];
  }

  #send(type: number, dst: number, fields: { ciaddr?: number }, options: Array<[number, Uint8Array]>): boolean {
    const secs = Math.min(0xffff, Math.floor((this.#host.clock.now() - this.#exchangeStartedAt) / 1000));
    const all: Array<[number, Uint8Array]> = [[DHCP_OPTION.CLIENT_ID, this.#clientId], ...options];
    if (type === DHCP_MESSAGE.DISCOVER || type === DHCP_MESSAGE.REQUEST) {
      all.push([DHCP_OPTION.PARAMETER_LIST, PARAMETER_LIST]);
      if (this.#hostname) all.push([DHCP_OPTION.HOSTNAME, this.#hostname]);
    }
    const packet = emitDhcp({
      op: BOOTP_OP.REQUEST,
      type,
      xid: this.#xid,
      secs: type === DHCP_MESSAGE.DECLINE || type === DHCP_MESSAGE.RELEASE ? 0 : secs,
      flags: fields.ciaddr ? 0 : this.#broadcastFlag,
      ciaddr: fields.ciaddr ?? 0,
      chaddr: this.#mac,
      options: all,
    });
    try {
      this.#host.udp.send(dst, DHCP_SERVER_PORT, packet, { srcPort: DHCP_CLIENT_PORT });
      return true;
    } catch {
      this.#stats.sendFailures++;
      return false;
    }
  }
}
