/**
 * A small DHCP server (RFC 2131 §4.3) for a network a Morgana appliance owns: one address pool
 * on the subnet of the stack's first interface, leases remembered per client identifier (option
 * 61) or else per MAC, requested addresses honoured when free, DHCPNAK for requests it cannot
 * grant, RELEASE and DECLINE, expiry on the stack's clock, and counters. It is authoritative: a
 * client renewing or rebooting with a free address of the pool gets it. Relayed messages
 * (`giaddr` set) are not supported and are ignored.
 * @module
 */
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError } from '../errors.js';
import {
  BOOTP_OP,
  DHCP_CLIENT_PORT,
  DHCP_MESSAGE,
  DHCP_OPTION,
  DHCP_SERVER_PORT,
  type DhcpMessage,
  addressListOption,
  addressOption,
  emitDhcp,
  parseDhcp,
  prefixOfMask,
  readUint32Option,
  uint32Option,
} from '../wire/dhcp.js';
import type { Ipv4Interface } from './ipv4.js';
import type { Udp, UdpSocket } from './udp.js';

/** Options of {@link startDhcpServer}. */
export interface DhcpServerOptions {
  /** First and last address of the pool (inclusive), on the interface's subnet; at most 65,536 addresses. */
  range: readonly [string, string];
  /** Lease duration in ms (default 1 hour; whole seconds on the wire, at least 1 s). */
  leaseTimeMs?: number;
  /** Router handed out (option 3). */
  router?: string;
  /** DNS servers handed out (option 6). */
  dns?: string | readonly string[];
  /** Subnet mask handed out, e.g. `'255.255.255.0'` (default: the interface's prefix). */
  subnet?: string;
  /** Domain name handed out (option 15). */
  domainName?: string;
  /** How long an offered address stays reserved for the client (default 30 s). */
  offerHoldMs?: number;
  /** How long a declined address stays out of the pool (default 10 minutes). */
  declineHoldMs?: number;
}

/** A lease as reported by {@link DhcpServer.leases}. */
export interface DhcpServerLease {
  address: string;
  /** Client hardware address. */
  mac: string;
  /** Client identifier (option 61) in hex, if the client sent one. */
  clientId: string | undefined;
  hostname: string | undefined;
  /** `offered` (reserved for a pending REQUEST) or `bound`. */
  state: 'offered' | 'bound';
  /** When the lease or reservation ends, on the stack's clock (ms). */
  expiresAt: number;
}

/** DHCP server counters. */
export interface DhcpServerStats {
  /** DHCP messages received on port 67. */
  received: number;
  /** Messages that failed to parse (dropped). */
  malformed: number;
  /** Well-formed messages not for this server (replies, other servers' selections, relayed, unknown clients). */
  ignored: number;
  discovers: number;
  requests: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  informs: number;
  /** DISCOVERs left unanswered because every address was taken. */
  poolExhausted: number;
  /** Leases and reservations that ran out. */
  expired: number;
  /** Replies that could not be sent. */
  sendFailures: number;
}

/** A running DHCP server. */
export interface DhcpServer {
  /** The server identifier (the interface's address). */
  readonly address: string;
  /** Current leases and reservations. */
  leases(): DhcpServerLease[];
  stats(): DhcpServerStats;
  /** Stops answering and frees UDP port 67. Leases are forgotten. */
  close(): void;
}

/** What the server needs from a stack (a {@link Stack} satisfies it). */
export interface DhcpServerHost {
  readonly udp: Udp;
  readonly interfaces: readonly Ipv4Interface[];
  readonly clock: Clock;
}

interface LeaseRecord {
  key: string;
  mac: string;
  clientId: string | undefined;
  hostname: string | undefined;
  address: number;
  state: 'offered' | 'bound';
  expiresAt: number;
}

const LIMITED_BROADCAST = 0xffffffff;
const MAX_POOL = 65_536;

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function configError(message: string): MorganaError {
  return new MorganaError('ERR_DHCP_CONFIG', message);
}

/**
 * Starts a DHCP server on the first interface of `stack`, which must have an address:
 * `startDhcpServer(stack, { range: ['10.0.0.100', '10.0.0.200'], router: '10.0.0.1', dns: ['10.0.0.1'] })`.
 * Throws `ERR_DHCP_CONFIG` for a range off the subnet or too large, and `EADDRINUSE`
 * when port 67 is bound.
 */
export function startDhcpServer(stack: DhcpServerHost, options: DhcpServerOptions): DhcpServer {
  const iface = stack.interfaces[0];
  if (!iface || iface.address === 0) throw configError('the DHCP server needs an interface with an address');
  if (!options || !Array.isArray(options.range) || options.range.length !== 2) throw configError('range must be [first, last]');
  const first = parseIpv4Address(options.range[0]);
  const last = parseIpv4Address(options.range[1]);
  const mask = options.subnet !== undefined ? parseIpv4Address(options.subnet) : maskOf(iface.prefix);
  const prefix = prefixOfMask(mask);
  if (prefix < 0) throw configError(`subnet mask ${options.subnet} is not contiguous`);
  const network = (iface.address & mask) >>> 0;
  if (last < first) throw configError('the range ends before it starts');
  if (last - first + 1 > MAX_POOL) throw configError(`the range holds more than ${MAX_POOL} addresses`);
  const broadcastAddress = (network | ~mask) >>> 0;
  for (const a of [first, last]) {
    if (((a & mask) >>> 0) !== network || (prefix < 31 && (a === network || a === broadcastAddress))) {
      throw configError(`${formatIpv4Address(a)} is not a host address of ${formatIpv4Address(network)}/${prefix}`);
    }
  }
  const leaseSeconds = Math.max(1, Math.round((options.leaseTimeMs ?? 3_600_000) / 1000));
  const dns = options.dns === undefined ? [] : (typeof options.dns === 'string' ? [options.dns] : [...options.dns]).map((d) => parseIpv4Address(d));
  const router = options.router !== undefined ? parseIpv4Address(options.router) : undefined;
  const offerHoldMs = options.offerHoldMs ?? 30_000;
  const declineHoldMs = options.declineHoldMs ?? 600_000;
  const serverId = iface.address;
  return new Server(stack, {
    serverId,
    first,
    last,
    mask,
    network,
    leaseSeconds,
    router,
    dns,
    domainName: options.domainName,
    offerHoldMs,
    declineHoldMs,
  });
}

interface ServerConfig {
  serverId: number;
  first: number;
  last: number;
  mask: number;
  network: number;
  leaseSeconds: number;
  router: number | undefined;
  dns: number[];
  domainName: string | undefined;
  offerHoldMs: number;
  declineHoldMs: number;
}

class Server implements DhcpServer {
  readonly address: string;
  readonly #udp: Udp;
  readonly #clock: Clock;
  readonly #config: ServerConfig;
  readonly #socket: UdpSocket;
  readonly #byClient = new Map<string, LeaseRecord>();
  readonly #byAddress = new Map<number, LeaseRecord>();
  /** Declined addresses and when they return to the pool. */
  readonly #declined = new Map<number, number>();
  readonly #replyOptions: Array<[number, Uint8Array]>;
  #cursor: number;
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #closed = false;
  readonly #stats: DhcpServerStats = {
    received: 0,
    malformed: 0,
    ignored: 0,
    discovers: 0,
    requests: 0,
    offers: 0,
    acks: 0,
    naks: 0,
    releases: 0,
    declines: 0,
    informs: 0,
    poolExhausted: 0,
    expired: 0,
    sendFailures: 0,
  };

  constructor(host: DhcpServerHost, config: ServerConfig) {
    this.#udp = host.udp;
    this.#clock = host.clock;
    this.#config = config;
    this.address = formatIpv4Address(config.serverId);
    this.#cursor = config.first;
    this.#replyOptions = [
      [DHCP_OPTION.SERVER_ID, addressOption(config.serverId)],
      [DHCP_OPTION.SUBNET_MASK, addressOption(config.mask)],
    ];
    if (config.router !== undefined) this.#replyOptions.push([DHCP_OPTION.ROUTER, addressOption(config.router)]);
    if (config.dns.length > 0) this.#replyOptions.push([DHCP_OPTION.DNS, addressListOption(config.dns)]);
    if (config.domainName) this.#replyOptions.push([DHCP_OPTION.DOMAIN_NAME, Buffer.from(config.domainName, 'utf8')]);
    this.#socket = host.udp.bind(DHCP_SERVER_PORT, (data) => this.#receive(data));
  }

  leases(): DhcpServerLease[] {
    this.#expire();
    return [...this.#byAddress.values()]
      .sort((a, b) => a.address - b.address)
      .map((r) => ({ address: formatIpv4Address(r.address), mac: r.mac, clientId: r.clientId, hostname: r.hostname, state: r.state, expiresAt: r.expiresAt }));
  }

  stats(): DhcpServerStats {
    return { ...this.#stats };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#socket.close();
    this.#byClient.clear();
    this.#byAddress.clear();
  }

  // ── pool ───────────────────────────────────────────────────────────────────────────────────

  #inPool(a: number): boolean {
    return a >= this.#config.first && a <= this.#config.last && a !== this.#config.serverId;
  }

  #free(a: number): boolean {
    return this.#inPool(a) && !this.#byAddress.has(a) && !this.#declined.has(a);
  }

  /** The next free address after the last one handed out (round robin), or undefined. */
  #allocate(): number | undefined {
    const { first, last } = this.#config;
    const size = last - first + 1;
    for (let i = 0; i < size; i++) {
      const a = first + ((this.#cursor - first + i) % size);
      if (this.#free(a)) {
        this.#cursor = a === last ? first : a + 1;
        return a;
      }
    }
    return undefined;
  }

  #remove(record: LeaseRecord): void {
    if (this.#byClient.get(record.key) === record) this.#byClient.delete(record.key);
    if (this.#byAddress.get(record.address) === record) this.#byAddress.delete(record.address);
  }

  #record(key: string, message: DhcpMessage, address: number, state: 'offered' | 'bound', expiresAt: number): LeaseRecord {
    const existing = this.#byClient.get(key);
    if (existing) this.#remove(existing);
    const clientId = message.options.get(DHCP_OPTION.CLIENT_ID);
    const hostname = message.options.get(DHCP_OPTION.HOSTNAME);
    const record: LeaseRecord = {
      key,
      mac: [...message.chaddr].map((b) => b.toString(16).padStart(2, '0')).join(':'),
      clientId: clientId?.toString('hex'),
      hostname: hostname ? hostname.toString('utf8') : existing?.hostname,
      address,
      state,
      expiresAt,
    };
    this.#byClient.set(key, record);
    this.#byAddress.set(address, record);
    this.#schedule(expiresAt);
    return record;
  }

  /** Drops every lease, reservation and decline that has run out. */
  #expire(): void {
    const now = this.#clock.now();
    for (const record of [...this.#byAddress.values()]) {
      if (record.expiresAt <= now) {
        this.#remove(record);
        this.#stats.expired++;
      }
    }
    for (const [a, until] of this.#declined) if (until <= now) this.#declined.delete(a);
  }

  /** Makes sure a sweep runs at `at` at the latest. */
  #schedule(at: number): void {
    if (this.#closed || at >= this.#timerAt) return;
    this.#timer?.cancel();
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(at - this.#clock.now(), () => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#expire();
      let next = Infinity;
      for (const r of this.#byAddress.values()) next = Math.min(next, r.expiresAt);
      for (const until of this.#declined.values()) next = Math.min(next, until);
      if (next < Infinity) this.#schedule(next);
    });
  }

  // ── messages ───────────────────────────────────────────────────────────────────────────────

  #receive(data: Buffer): void {
    if (this.#closed) return;
    this.#stats.received++;
    let message: DhcpMessage;
    try {
      message = parseDhcp(data);
    } catch {
      this.#stats.malformed++;
      return;
    }
    if (message.op !== BOOTP_OP.REQUEST || message.giaddr !== 0) {
      this.#stats.ignored++;
      return;
    }
    this.#expire();
    const clientId = message.options.get(DHCP_OPTION.CLIENT_ID);
    const key = clientId ? `id:${clientId.toString('hex')}` : `hw:${message.htype}:${message.chaddr.toString('hex')}`;
    switch (message.type) {
      case DHCP_MESSAGE.DISCOVER:
        this.#stats.discovers++;
        return this.#discover(message, key);
      case DHCP_MESSAGE.REQUEST:
        this.#stats.requests++;
        return this.#request(message, key);
      case DHCP_MESSAGE.DECLINE:
        return this.#decline(message, key);
      case DHCP_MESSAGE.RELEASE:
        return this.#release(message, key);
      case DHCP_MESSAGE.INFORM:
        this.#stats.informs++;
        if (message.ciaddr === 0) break;
        this.#reply(message, DHCP_MESSAGE.ACK, 0, message.ciaddr, false);
        return;
    }
    this.#stats.ignored++;
  }

  #discover(message: DhcpMessage, key: string): void {
    const existing = this.#byClient.get(key);
    let address = existing?.address;
    if (address === undefined) {
      const requested = readUint32Option(message, DHCP_OPTION.REQUESTED_ADDRESS);
      address = requested !== undefined && this.#free(requested) ? requested : this.#allocate();
    }
    if (address === undefined) {
      this.#stats.poolExhausted++;
      return;
    }
    if (!existing || existing.state === 'offered') {
      this.#record(key, message, address, 'offered', this.#clock.now() + this.#config.offerHoldMs);
    }
    this.#reply(message, DHCP_MESSAGE.OFFER, address, LIMITED_BROADCAST, true);
  }

  #request(message: DhcpMessage, key: string): void {
    const server = readUint32Option(message, DHCP_OPTION.SERVER_ID);
    const requested = readUint32Option(message, DHCP_OPTION.REQUESTED_ADDRESS);
    const existing = this.#byClient.get(key);
    if (server !== undefined) {
      // SELECTING: the client answers one server's offer.
      if (server !== this.#config.serverId) {
        if (existing?.state === 'offered') this.#remove(existing);
        this.#stats.ignored++;
        return;
      }
      const wanted = requested ?? message.ciaddr;
      if (wanted !== 0 && (existing?.address === wanted || this.#free(wanted))) return this.#ack(message, key, wanted);
      return this.#nak(message, 'requested address not available');
    }
    if (requested !== undefined && message.ciaddr === 0) {
      // INIT-REBOOT: the client asks to keep an address it remembers.
      if (((requested & this.#config.mask) >>> 0) !== this.#config.network) return this.#nak(message, 'wrong network');
      if (existing?.address === requested || (!existing && this.#free(requested))) return this.#ack(message, key, requested);
      return this.#nak(message, 'address not available');
    }
    if (message.ciaddr !== 0) {
      // RENEWING (unicast) or REBINDING (broadcast).
      if (existing?.address === message.ciaddr || (!existing && this.#free(message.ciaddr))) return this.#ack(message, key, message.ciaddr);
      return this.#nak(message, 'lease unknown');
    }
    this.#stats.ignored++;
  }

  #ack(message: DhcpMessage, key: string, address: number): void {
    this.#record(key, message, address, 'bound', this.#clock.now() + this.#config.leaseSeconds * 1000);
    this.#reply(message, DHCP_MESSAGE.ACK, address, message.ciaddr !== 0 ? message.ciaddr : LIMITED_BROADCAST, true);
  }

  #nak(message: DhcpMessage, text: string): void {
    this.#reply(message, DHCP_MESSAGE.NAK, 0, LIMITED_BROADCAST, false, text);
  }

  #decline(message: DhcpMessage, key: string): void {
    const server = readUint32Option(message, DHCP_OPTION.SERVER_ID);
    const address = readUint32Option(message, DHCP_OPTION.REQUESTED_ADDRESS);
    if (server !== this.#config.serverId || address === undefined || !this.#inPool(address)) {
      this.#stats.ignored++;
      return;
    }
    this.#stats.declines++;
    const record = this.#byAddress.get(address);
    if (record && record.key === key) this.#remove(record);
    if (!this.#byAddress.has(address)) {
      const until = this.#clock.now() + this.#config.declineHoldMs;
      this.#declined.set(address, until);
      this.#schedule(until);
    }
  }

  #release(message: DhcpMessage, key: string): void {
    const server = readUint32Option(message, DHCP_OPTION.SERVER_ID);
    const record = this.#byClient.get(key);
    if ((server !== undefined && server !== this.#config.serverId) || !record || record.address !== message.ciaddr) {
      this.#stats.ignored++;
      return;
    }
    this.#stats.releases++;
    this.#remove(record);
  }

  #reply(request: DhcpMessage, type: number, yiaddr: number, dst: number, lease: boolean, text?: string): void {
    const options: Array<[number, Uint8Array]> = [];
    if (type === DHCP_MESSAGE.NAK) {
      options.push([DHCP_OPTION.SERVER_ID, addressOption(this.#config.serverId)]);
      if (text) options.push([DHCP_OPTION.MESSAGE, Buffer.from(text, 'utf8')]);
    } else {
      if (lease) {
        const seconds = this.#config.leaseSeconds;
        options.push([DHCP_OPTION.LEASE_TIME, uint32Option(seconds)]);
        options.push([DHCP_OPTION.RENEWAL_TIME, uint32Option(Math.floor(seconds / 2))]);
        options.push([DHCP_OPTION.REBINDING_TIME, uint32Option(Math.floor((seconds * 7) / 8))]);
      }
      options.push(...this.#replyOptions);
    }
    const packet = emitDhcp({
      op: BOOTP_OP.REPLY,
      type,
      xid: request.xid,
      htype: request.htype,
      flags: request.flags,
      ciaddr: type === DHCP_MESSAGE.NAK ? 0 : request.ciaddr,
      yiaddr,
      chaddr: request.chaddr,
      options,
    });
    try {
      this.#udp.send(dst, DHCP_CLIENT_PORT, packet, { srcPort: DHCP_SERVER_PORT });
    } catch {
      this.#stats.sendFailures++;
      return;
    }
    if (type === DHCP_MESSAGE.OFFER) this.#stats.offers++;
    else if (type === DHCP_MESSAGE.NAK) this.#stats.naks++;
    else this.#stats.acks++;
  }
}
