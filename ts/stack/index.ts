/**
 * `createStack`: composes Ethernet, ARP, IPv4, ICMP and UDP over one or more NET devices.
 * TCP (the Rust engine in ts/stack/tcp.ts) attaches to the same IPv4 layer.
 * @module
 */
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import { type Clock, systemClock } from '../clock.js';
import { MorganaError, OutOfRangeError } from '../errors.js';
import type { NetDevice, NetStats } from '../net/device.js';
import type { ReassemblerOptions } from '../reassembly.js';
import { type MetricsOptions, stackMetrics } from '../metrics/collect.js';
import { defaultRandom } from '../random.js';
import { Arp, type ArpOptions, type ArpStats } from './arp.js';
import { DhcpClient, type DhcpClientOptions, type DhcpLease } from './dhcp-client.js';
import { Ethernet, type EthernetStats } from './ethernet.js';
import { Icmp, type IcmpOptions, type IcmpStats } from './icmp.js';
import type { IpOutput } from './ip-output.js';
import { type Ipv4Interface, Ipv4Layer, type Ipv4Stats, type Route } from './ipv4.js';
import { Icmpv6, type Icmpv6Options, type Icmpv6Stats } from './icmpv6.js';
import { Ipv6Layer, type Ipv6Stats, ipv6Bytes, isMulticast, isUnspecified } from './ipv6.js';
import { Mld, type MldOptions, type MldStats } from './mld.js';
import { Ndp, type NdpOptions, type NdStats, type RouterAdvertisementOptions } from './ndp.js';
import { Slaac, type SlaacOptions, type SlaacStats } from './slaac.js';
import { Tcp, type TcpOptions, type TcpStats, validateTcpOptions } from './tcp.js';
import { Udp, type UdpStats } from './udp.js';

/**
 * What the stack draws randomness from: 32-bit values for ISNs, IP identification, ephemeral
 * ports, ARP/DHCP transaction ids. Morgana's `Random` device satisfies it, and so does a
 * `seededRandom(seed)` for reproducible simulations.
 */
export interface StackRandom {
  uint32(): number;
}

/** An address with its prefix length, as `'10.0.0.2/24'`. */
export type Cidr = string;

/** One interface of a multi-homed stack (a router). */
export interface InterfaceConfig {
  net: NetDevice;
  /** Address and prefix, e.g. `'10.0.0.1/24'`. */
  ipv4: Cidr;
  /**
   * IPv6 on this interface when the stack has `ipv6`: static address(es) such as
   * `'2001:db8:2::1/64'`, and optionally the router role. It always gets a link-local address.
   */
  ipv6?: Cidr | { address?: Cidr | Cidr[]; routerAdvertisements?: RouterAdvertisementOptions };
}

/**
 * IPv6 settings of a stack (see {@link StackOptions.ipv6}). Address autoconfiguration options
 * (`iid`, `temporary`, `dadTransmits`, `secretKey`, …) are those of {@link SlaacOptions}.
 */
export interface Ipv6Options extends SlaacOptions {
  /** Static address(es) of the first interface with their prefix, e.g. `'2001:db8::2/64'`. */
  address?: Cidr | Cidr[];
  /**
   * Accept router advertisements: default routers, on-link prefixes, SLAAC addresses, MTU, hop
   * limit and RDNSS servers (default true without `address`, false with one).
   */
  auto?: boolean;
  /** Make the first interface a router that advertises prefixes (for appliances and tests). */
  routerAdvertisements?: RouterAdvertisementOptions;
  /** Default hop limit (default 64; an accepted RA's Cur Hop Limit replaces it). */
  hopLimit?: number;
  /** Neighbour discovery limits and timings. */
  nd?: NdpOptions;
  mld?: MldOptions;
  icmp?: Icmpv6Options;
  /** How long a path MTU learned from Packet Too Big holds (default 10 min, RFC 8201). */
  pathMtuTimeoutMs?: number;
}

/** Options of {@link createStack}. */
export interface StackOptions {
  /** The NET device of the stack's (first) interface. */
  net?: NetDevice;
  /** Its address and prefix, e.g. `'10.0.0.2/24'`. Required with `net` unless `dhcp` is set. */
  ipv4?: Cidr;
  /**
   * Configure the `net` interface with DHCP instead of `ipv4`: `createStack` then resolves once a
   * lease is bound, or rejects with `ERR_DHCP_TIMEOUT` after `timeoutMs` (default 30 s).
   */
  dhcp?: boolean | DhcpClientOptions;
  /** More interfaces (for routers). */
  interfaces?: InterfaceConfig[];
  /** Default gateway. */
  gateway?: string;
  /**
   * IPv6: `'auto'` (a link-local address, then SLAAC, default routers and RDNSS from router
   * advertisements), `'ADDR/PREFIX'` (a static address plus the link-local one; router
   * advertisements ignored) or {@link Ipv6Options}. Every address goes through duplicate address
   * detection first (about 1 s; `await stack.slaac.settled()`, or `dadTransmits: 0` to skip it).
   * With `ipv6`, `ipv4` becomes optional (an IPv6-only stack).
   */
  ipv6?: 'auto' | Cidr | Ipv6Options;
  /** Static IPv6 default router, e.g. `'fe80::1'` (reached over the first interface) or `'2001:db8::1'`. */
  gateway6?: string;
  /** Static routes, e.g. `{ destination: '10.2.0.0/16', gateway: '10.0.0.1' }`. */
  routes?: Array<{ destination: Cidr; gateway?: string }>;
  /** Forward packets between interfaces (default false). */
  forwarding?: boolean;
  /** Default TTL (default 64). */
  ttl?: number;
  /** Random device (default `defaultRandom()`: the process-wide Fortuna seeded from entropy). */
  random?: StackRandom;
  /** Clock (default the system clock). */
  clock?: Clock;
  arp?: ArpOptions;
  icmp?: IcmpOptions;
  /**
   * Reassembly limits (default 256 KiB / 128 fragments / 10 s): any datagram up to 65,535 bytes
   * at an MTU of 576 or more is reassembled (a 64 KiB one at MTU 1500 is 45 fragments), at most
   * 256 KiB of fragment payload is held, the least recently used datagram evicted first.
   */
  reassembly?: ReassemblerOptions;
  /** TCP settings (buffers, timers), each checked against its range (`ERR_OUT_OF_RANGE`). */
  tcp?: TcpOptions;
}

/** Counters of every layer. */
export interface StackStats {
  net: NetStats[];
  ethernet: EthernetStats[];
  arp: ArpStats[];
  ipv4: ReturnType<Ipv4Layer['stats']>;
  icmp: IcmpStats;
  /** IPv6 counters, when the stack has IPv6. */
  ipv6?: ReturnType<Ipv6Layer['stats']>;
  icmpv6?: Icmpv6Stats;
  /** Neighbour discovery. */
  nd?: NdStats;
  mld?: MldStats;
  slaac?: SlaacStats;
  udp: UdpStats;
  tcp: TcpStats;
}

/** A composed network stack. */
export interface Stack {
  /** Ethernet of the first interface. */
  readonly ethernet: Ethernet;
  /** ARP of the first interface. */
  readonly arp: Arp;
  readonly ipv4: Ipv4Layer;
  readonly icmp: Icmp;
  readonly udp: Udp;
  /** TCP: `listen`, `connect`, `stats`. */
  readonly tcp: Tcp;
  /** Every interface, first one first. */
  readonly interfaces: Ipv4Interface[];
  readonly clock: Clock;
  readonly random: StackRandom;
  /** The first interface's address, dotted quad. */
  readonly address: string;
  /** The DHCP client of the first interface, when the stack was created with `dhcp`. */
  readonly dhcp: DhcpClient | undefined;
  /** Name servers: those of the current DHCP lease (option 6), then RDNSS servers from router advertisements. */
  readonly dns: { readonly servers: string[] };
  /** The IPv6 layer (`on`, `write`, `route`, `addresses()`…), undefined without `ipv6`. */
  readonly ipv6: Ipv6Layer | undefined;
  /** ICMPv6: `ping` (`stack.icmpv6.ping('fe80::1')`), counters. */
  readonly icmpv6: Icmpv6 | undefined;
  /** Neighbour discovery: the neighbour cache, routers, RDNSS. */
  readonly ndp: Ndp | undefined;
  /** Address autoconfiguration and DAD: `addresses()`, `onEvent`, `settled()`. */
  readonly slaac: Slaac | undefined;
  readonly mld: Mld | undefined;
  stats(): StackStats;
  /**
   * Every layer's counters as Prometheus text (or OpenMetrics with `{ format: 'openmetrics' }`):
   * `morgana_tcp_segments_received_total{stack="10.0.0.2"}`, … — the same values as {@link stats}.
   */
  metrics(options?: MetricsOptions): string;
  /** Stops timers and closes the NET devices. */
  close(): Promise<void>;
}

/** Parses `'10.0.0.2/24'` into numbers; throws `ERR_INVALID_CIDR`. */
export function parseCidr(text: string): { address: number; prefix: number } {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  const prefix = slash < 0 ? NaN : Number(text.slice(slash + 1));
  if (slash < 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > 32 || !/^\d+$/.test(text.slice(slash + 1))) {
    throw new MorganaError('ERR_INVALID_CIDR', `expected ADDRESS/PREFIX such as 10.0.0.2/24, got ${JSON.stringify(text)}`);
  }
  return { address: parseIpv4Address(text.slice(0, slash)), prefix };
}

/**
 * Builds a stack: `await createStack({ net, ipv4: '10.0.0.2/24', gateway: '10.0.0.1' })`.
 * Every layer takes the same clock and random device, so a test can run the whole stack on a
 * {@link VirtualClock} with a seeded generator.
 */
export async function createStack(options: StackOptions): Promise<Stack> {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? defaultRandom();
  const randomUint32 = () => random.uint32();
  const configs: InterfaceConfig[] = [];
  const dhcp = options.dhcp === true ? {} : options.dhcp || undefined;
  if (dhcp && !options.net) throw new MorganaError('ERR_STACK_CONFIG', 'dhcp configures the net interface: net is required');
  if (dhcp && options.ipv4) throw new MorganaError('ERR_STACK_CONFIG', 'give either ipv4 or dhcp, not both');
  if (options.net) {
    if (!options.ipv4 && !dhcp && !options.ipv6) throw new MorganaError('ERR_STACK_CONFIG', 'ipv4 (ADDRESS/PREFIX), dhcp or ipv6 is required with net');
    configs.push({ net: options.net, ipv4: options.ipv4 ?? '0.0.0.0/0' });
  }
  configs.push(...(options.interfaces ?? []));
  if (configs.length === 0) throw new MorganaError('ERR_STACK_CONFIG', 'a stack needs net (or interfaces)');
  if (options.ttl !== undefined && (!Number.isInteger(options.ttl) || options.ttl < 1 || options.ttl > 255)) {
    throw new OutOfRangeError(`ttl must be 1..255, got ${options.ttl}`);
  }
  validateTcpOptions(options.tcp);

  const interfaces: Ipv4Interface[] = configs.map(({ net, ipv4 }) => {
    const { address, prefix } = parseCidr(ipv4);
    const eth = new Ethernet(net);
    const arp = new Arp(eth, clock, options.arp);
    return { eth, arp, address, prefix };
  });
  const routes: Route[] = (options.routes ?? []).map((r) => {
    const { address, prefix } = parseCidr(r.destination);
    return { network: address, prefix, gateway: r.gateway ? parseIpv4Address(r.gateway) : 0 };
  });
  const ipv4 = new Ipv4Layer({
    interfaces,
    gateway: options.gateway ? parseIpv4Address(options.gateway) : 0,
    routes,
    ttl: options.ttl,
    forwarding: options.forwarding,
    reassembly: options.reassembly,
    clock,
    randomUint32,
  });
  const icmp = new Icmp(ipv4, clock, randomUint32, options.icmp);
  const v6 = options.ipv6 === undefined ? undefined : setUpIpv6(options, configs, interfaces.map((i) => i.eth), clock, randomUint32, ipv4.output);
  const udp = new Udp(ipv4, icmp, randomUint32);
  const tcp = new Tcp(ipv4, clock, randomUint32, interfaces[0]!.eth.mtu, options.tcp);
  let closed = false;
  const dhcpClient = dhcp
    ? new DhcpClient({ udp, ipv4, iface: interfaces[0]!, arp: interfaces[0]!.arp, clock, random }, dhcp)
    : undefined;

  const stack: Stack = {
    ethernet: interfaces[0]!.eth,
    arp: interfaces[0]!.arp,
    ipv4,
    icmp,
    udp,
    tcp,
    interfaces,
    clock,
    random,
    get address() {
      return formatIpv4Address(interfaces[0]!.address);
    },
    dhcp: dhcpClient,
    dns: {
      get servers() {
        const servers = [...(dhcpClient?.lease?.dns ?? [])];
        for (const s of v6?.ndp.dnsServers() ?? []) if (!servers.includes(s)) servers.push(s);
        return servers;
      },
    },
    ipv6: v6?.ipv6,
    icmpv6: v6?.icmpv6,
    ndp: v6?.ndp,
    slaac: v6?.slaac,
    mld: v6?.mld,
    stats: () => ({
      net: interfaces.map((i) => i.eth.net.stats()),
      ethernet: interfaces.map((i) => i.eth.stats()),
      arp: interfaces.map((i) => i.arp.stats()),
      ipv4: ipv4.stats(),
      icmp: icmp.stats(),
      udp: udp.stats(),
      tcp: tcp.stats(),
      ...(v6 && {
        ipv6: v6.ipv6.stats(),
        icmpv6: v6.icmpv6.stats(),
        nd: v6.ndp.stats(),
        mld: v6.mld.stats(),
        slaac: v6.slaac.stats(),
      }),
    }),
    metrics(metricsOptions?: MetricsOptions) {
      return stackMetrics(stack, metricsOptions);
    },
    async close() {
      if (closed) return;
      closed = true;
      await dhcpClient?.close();
      tcp.close();
      ipv4.close();
      // Neighbour discovery first: a router says goodbye (router lifetime 0) while the device is open.
      v6?.ndp.close();
      v6?.mld.close();
      v6?.slaac.close();
      v6?.ipv6.close();
      for (const i of interfaces) i.arp.close();
      await Promise.all(interfaces.map((i) => i.eth.net.close()));
    },
  };
  // UDP and TCP carry IPv6 too when the stack has it (issue 10).
  if (v6) {
    udp.attachIpv6(v6.ipv6);
    tcp.attachIpv6(v6.ipv6);
  }
  if (dhcpClient) await waitForFirstLease(stack, dhcpClient, clock, dhcp?.timeoutMs ?? 30_000);
  return stack;
}

/** Parses `'2001:db8::2/64'`; throws `ERR_INVALID_CIDR`. */
export function parseCidr6(text: string): { address: Buffer; prefix: number } {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  const prefix = slash < 0 ? NaN : Number(text.slice(slash + 1));
  if (slash < 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > 128 || !/^\d+$/.test(text.slice(slash + 1))) {
    throw new MorganaError('ERR_INVALID_CIDR', `expected IPV6ADDRESS/PREFIX such as 2001:db8::2/64, got ${JSON.stringify(text)}`);
  }
  return { address: ipv6Bytes(text.slice(0, slash)), prefix };
}

/** Builds the IPv6 side of a stack: layer, ICMPv6, ND, MLD, then addresses (DAD starts here). */
function setUpIpv6(options: StackOptions, configs: InterfaceConfig[], eths: Ethernet[], clock: Clock, randomUint32: () => number, output: IpOutput) {
  const given = options.ipv6!;
  const o: Ipv6Options = given === 'auto' ? { auto: true } : typeof given === 'string' ? { address: given } : given;
  const list = (a: Cidr | Cidr[] | undefined) => (a === undefined ? [] : Array.isArray(a) ? a : [a]).map(parseCidr6);
  const perInterface = configs.map((c, i) => {
    if (i === 0 && options.net) return { addresses: list(o.address), ra: o.routerAdvertisements };
    const v = c.ipv6;
    return typeof v === 'string' || v === undefined ? { addresses: list(v), ra: undefined } : { addresses: list(v.address), ra: v.routerAdvertisements };
  });
  const auto = o.auto ?? o.address === undefined;
  let gateway: Buffer | undefined;
  if (options.gateway6 !== undefined) {
    gateway = ipv6Bytes(options.gateway6, 'gateway6');
    if (isMulticast(gateway) || isUnspecified(gateway)) throw new MorganaError('ERR_STACK_CONFIG', `gateway6 must be a unicast address, got ${options.gateway6}`);
  }
  if (o.hopLimit !== undefined && (!Number.isInteger(o.hopLimit) || o.hopLimit < 1 || o.hopLimit > 255)) {
    throw new OutOfRangeError(`ipv6.hopLimit must be 1..255, got ${o.hopLimit}`);
  }
  const ipv6 = new Ipv6Layer({
    interfaces: eths.map((eth, i) => ({ eth, name: `net${i}` })),
    clock,
    hopLimit: o.hopLimit ?? options.ttl,
    gateway,
    pathMtuTimeoutMs: o.pathMtuTimeoutMs,
    preferTemporary: o.temporary,
    reassembly: options.reassembly,
    randomUint32,
    output,
  });
  const icmpv6 = new Icmpv6(ipv6, clock, randomUint32, o.icmp);
  const ndp = new Ndp(ipv6, icmpv6, clock, randomUint32, { ...o.nd, acceptRouterAdvertisements: o.nd?.acceptRouterAdvertisements ?? auto });
  const mld = new Mld(ipv6, icmpv6, clock, randomUint32, o.mld);
  const slaac = new Slaac(ipv6, ndp, clock, randomUint32, { ...o, autoconf: o.autoconf ?? auto });
  ipv6.interfaces.forEach((iface, i) => {
    const config = perInterface[i]!;
    if (config.ra) ndp.enableRouter(iface, config.ra);
    slaac.addLinkLocal(iface);
    for (const a of config.addresses) slaac.addStatic(iface, a.address, a.prefix);
  });
  return { ipv6, icmpv6, ndp, mld, slaac };
}

/** Starts the client and waits for its first lease; closes the stack on timeout. */
async function waitForFirstLease(stack: Stack, client: DhcpClient, clock: Clock, timeoutMs: number): Promise<DhcpLease> {
  let timer: { cancel(): void } | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = clock.setTimer(timeoutMs, () =>
      reject(new MorganaError('ERR_DHCP_TIMEOUT', `no DHCP lease within ${timeoutMs} ms`)),
    );
  });
  try {
    client.start();
    return await Promise.race([client.waitForLease(), timeout]);
  } catch (error) {
    await stack.close();
    throw error;
  } finally {
    timer?.cancel();
  }
}

export { Arp, DhcpClient, Ethernet, Icmp, Ipv4Layer, Udp };
export type { ArpOptions, ArpStats, EthernetStats, IcmpStats, Ipv4Stats, UdpStats };
export { Icmpv6, Ipv6Layer, Mld, Ndp, Slaac };
export type { Icmpv6Options, Icmpv6Stats, Ipv6Stats, MldOptions, MldStats, NdpOptions, NdStats, RouterAdvertisementOptions, SlaacOptions, SlaacStats };
