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
import { defaultRandom } from '../random.js';
import { Arp, type ArpOptions, type ArpStats } from './arp.js';
import { DhcpClient, type DhcpClientOptions, type DhcpLease } from './dhcp-client.js';
import { Ethernet, type EthernetStats } from './ethernet.js';
import { Icmp, type IcmpOptions, type IcmpStats } from './icmp.js';
import { type Ipv4Interface, Ipv4Layer, type Ipv4Stats, type Route } from './ipv4.js';
import { Tcp, type TcpOptions, type TcpStats } from './tcp.js';
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
  /** Reassembly limits (default 256 KiB / 16 fragments / 10 s, as MirageOS 3.5). */
  reassembly?: ReassemblerOptions;
  /** TCP settings (buffers, timers). */
  tcp?: TcpOptions;
}

/** Counters of every layer. */
export interface StackStats {
  net: NetStats[];
  ethernet: EthernetStats[];
  arp: ArpStats[];
  ipv4: ReturnType<Ipv4Layer['stats']>;
  icmp: IcmpStats;
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
  /** Name servers: those of the current DHCP lease (option 6), else empty. */
  readonly dns: { readonly servers: string[] };
  stats(): StackStats;
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
    if (!options.ipv4 && !dhcp) throw new MorganaError('ERR_STACK_CONFIG', 'ipv4 (ADDRESS/PREFIX) or dhcp is required with net');
    configs.push({ net: options.net, ipv4: options.ipv4 ?? '0.0.0.0/0' });
  }
  configs.push(...(options.interfaces ?? []));
  if (configs.length === 0) throw new MorganaError('ERR_STACK_CONFIG', 'a stack needs net (or interfaces)');
  if (options.ttl !== undefined && (!Number.isInteger(options.ttl) || options.ttl < 1 || options.ttl > 255)) {
    throw new OutOfRangeError(`ttl must be 1..255, got ${options.ttl}`);
  }

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
        return dhcpClient?.lease?.dns ?? [];
      },
    },
    stats: () => ({
      net: interfaces.map((i) => i.eth.net.stats()),
      ethernet: interfaces.map((i) => i.eth.stats()),
      arp: interfaces.map((i) => i.arp.stats()),
      ipv4: ipv4.stats(),
      icmp: icmp.stats(),
      udp: udp.stats(),
      tcp: tcp.stats(),
    }),
    async close() {
      if (closed) return;
      closed = true;
      await dhcpClient?.close();
      tcp.close();
      ipv4.close();
      for (const i of interfaces) i.arp.close();
      await Promise.all(interfaces.map((i) => i.eth.net.close()));
    },
  };
  if (dhcpClient) await waitForFirstLease(stack, dhcpClient, clock, dhcp?.timeoutMs ?? 30_000);
  return stack;
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
