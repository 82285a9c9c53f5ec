/**
 * The vnet target's gateway: a Morgana stack on the in-process {@link VirtualSwitch} that the
 * unikernel's network sits on (DHCP server and IPv6 router when the unikernel needs them), and
 * the host ports it forwards into that network. The vnet target's boot and `morgana iperf3
 * --vnet` use it, so that something on the switch is reachable from the host without root.
 * @module
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { formatIpv4Address, formatIpv6Address, parseIpv4Address, parseIpv6Address } from '../address.js';
import { MorganaError } from '../errors.js';
import type { VirtualSwitch } from '../net/vswitch.js';
import { type DhcpServer, startDhcpServer } from '../stack/dhcp-server.js';
import { type Ipv6Options, type Stack, createStack } from '../stack/index.js';
import { formatEndpoint } from '../stack/inet.js';
import type { Tcp } from '../stack/tcp.js';
import type { MonitoredForward } from '../monitor/snapshot.js';
import { VNET_PORT_OFFLOADS } from './devices.js';
import { relayAccepted } from './tcp-relay.js';
import { DEFAULT_VNET_MTU, type Forward, formatForward } from './targets.js';

const log = (message: string) => void process.stderr.write(`[morgana] ${message}\n`);

/** A forward that could not listen; a busy host port says how to pick another. */
function forwardError(f: Forward, error: NodeJS.ErrnoException): MorganaError {
  const hint =
    error.code === 'EADDRINUSE'
      ? ` (host port ${f.hostPort} is taken by another program: forward another, e.g. --forward ${f.protocol === 'udp' ? 'udp:' : ''}${f.hostPort === 65_535 ? 0 : f.hostPort + 1}:${f.guestPort}, or 0 for a free one)`
      : error.code === 'EACCES'
        ? ` (host ports below 1024 need root: forward a higher one, e.g. --forward ${f.protocol === 'udp' ? 'udp:' : ''}${f.hostPort + 8000}:${f.guestPort})`
        : '';
  return new MorganaError('ERR_FORWARD', `--forward ${formatForward(f)}: ${error.message}${hint}`, { cause: error });
}

/** Something started that stops asynchronously. */
export interface Running {
  stop(): Promise<void>;
}

/** How the unikernel's first stack is addressed, as its device's arguments say. */
export interface GuestAddressing {
  dhcp: boolean;
  ipv4: string;
  gateway: string | undefined;
  /** The unikernel has IPv6 (it is not IPv4-only). */
  ipv6: boolean;
  /** The unikernel has no IPv4. */
  ipv6Only: boolean;
  /** Its static IPv6 address and prefix, if any. */
  ipv6Address: string | undefined;
  /** Its static IPv6 default router, if any. */
  gateway6: string | undefined;
}

/**
 * The prefix the vnet gateway advertises when the unikernel has no static IPv6 address: a
 * unique local prefix (RFC 4193) whose 40-bit global ID and subnet ID spell "morgana".
 */
export const VNET_IPV6_PREFIX = 'fd6d:6f72:6761:6e61::/64';

/** The vnet gateway's IPv6 side: its addresses and what its router advertisements say. */
function gatewayIpv6(guest: GuestAddressing): { ipv6: Ipv6Options; text: string } {
  const [guestAddress, guestPrefix] = guest.ipv6Address ? (guest.ipv6Address.split('/') as [string, string]) : [undefined, undefined];
  const [base, lengthText] = guestAddress ? [guestAddress, guestPrefix!] : (VNET_IPV6_PREFIX.split('/') as [string, string]);
  const length = Number(lengthText);
  const network = parseIpv6Address(base);
  for (let bit = length; bit < 128; bit++) network[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const host = (n: number) => {
    const a = Buffer.from(network);
    a.writeUInt16BE((a.readUInt16BE(14) + n) & 0xffff, 14);
    return formatIpv6Address(a);
  };
  const prefix = `${formatIpv6Address(network)}/${length}`;
  let own = host(1);
  if (own === guestAddress) own = host(2);
  const addresses = [`${own}/${length}`];
  // A router address the unikernel was told to use is the gateway's too (link-local ones as well).
  if (guest.gateway6 && guest.gateway6 !== own) addresses.push(`${guest.gateway6}/${guest.gateway6.startsWith('fe80:') ? 64 : length}`);
  return {
    ipv6: {
      address: addresses,
      dadTransmits: 0,
      // SLAAC only where the unikernel has no static address (and only a /64 can carry it).
      routerAdvertisements: { prefixes: [{ prefix, autonomous: !guestAddress && length === 64 }] },
    },
    text: `${addresses.join(', ')}, advertising ${prefix}`,
  };
}

/**
 * The gateway's TCP buffers, larger than a stack's default 512 KiB: its connections relay
 * forwarded ports, and its receive buffer is the window the unikernel may fill towards the host
 * (the unikernel's own receive buffer bounds the other direction), so that a bulk transfer keeps
 * more than eight 64 KiB super-segments in flight. Per relayed connection at most this much is
 * held in each direction (the engine allocates as data arrives).
 */
const GATEWAY_TCP = { sendBuffer: 2 << 20, recvBuffer: 2 << 20 } as const;

/** The vnet gateway: a stack on the switch (with a DHCP server when the unikernel uses DHCP, an IPv6 router when it has IPv6). */
export async function vnetGateway(sw: VirtualSwitch, guest: GuestAddressing): Promise<{ stack: Stack; dhcp: DhcpServer | undefined; stop(): Promise<void> }> {
  const [address, prefixText] = guest.ipv4.split('/') as [string, string];
  const prefix = Number(prefixText);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (parseIpv4Address(address) & mask) >>> 0;
  let gw = guest.gateway ?? formatIpv4Address(network + 1);
  if (!guest.dhcp && gw === address) gw = formatIpv4Address(network + 2);
  const v6 = guest.ipv6 ? gatewayIpv6(guest) : undefined;
  const stack = await createStack({ net: sw.connect({ offloads: VNET_PORT_OFFLOADS }), tcp: GATEWAY_TCP, ipv4: `${gw}/${prefix}`, ...(v6 ? { ipv6: v6.ipv6 } : {}) });
  let dhcp: DhcpServer | undefined;
  if (guest.dhcp) {
    const broadcast = (network | (~mask >>> 0)) >>> 0;
    dhcp = startDhcpServer(stack, { range: [formatIpv4Address(network + 2), formatIpv4Address(broadcast - 1)], router: gw });
    log(`vnet: gateway ${gw}/${prefix}, DHCP server for the unikernel`);
  } else log(`vnet: gateway ${gw}/${prefix}, unikernel ${guest.ipv6Only ? 'IPv6-only' : address}`);
  if (sw.mtu !== DEFAULT_VNET_MTU) log(`vnet: link MTU ${sw.mtu}`);
  if (v6) log(`vnet: IPv6 router ${v6.text}`);
  return {
    stack,
    dhcp,
    async stop() {
      dhcp?.close();
      await stack.close();
    },
  };
}

/** Relays forwarded host ports into the virtual network through the gateway stack. */
export async function vnetForwards(gateway: Stack, target: { forward: readonly Forward[] }, address: string): Promise<Running & { list: MonitoredForward[] }> {
  const closers: Array<() => Promise<void> | void> = [];
  const list: MonitoredForward[] = [];
  for (const f of target.forward) {
    const guestAddress = f.guestAddress ?? address;
    if (f.protocol === 'tcp') {
      const tcp = (gateway as unknown as { tcp?: Tcp }).tcp;
      // Relayed host sockets (the server no longer counts them: see relayAccepted), destroyed by stop().
      const sockets = new Set<net.Socket>();
      // Half-open: the client's FIN is relayed as a FIN, and the reply still flows back. Nothing
      // is read from the client until the guest accepted (pauseOnConnect).
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (host) => {
        if (!tcp) {
          log(`vnet: cannot forward a TCP connection: this build of Morgana has no TCP (stack.tcp)`);
          host.destroy();
          return;
        }
        tcp.connect(guestAddress, f.guestPort, { allowHalfOpen: true }).then(
          (inner) => {
            const relayed = relayAccepted(host, inner).host;
            sockets.add(relayed);
            relayed.once('close', () => sockets.delete(relayed));
          },
          (error: Error) => {
            log(`vnet: ${formatEndpoint(guestAddress, f.guestPort)} refused a forwarded connection: ${error.message}`);
            host.destroy();
          },
        );
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(forwardError(f, e)));
        server.listen(f.hostPort, f.hostAddress, () => resolve());
      });
      const port = (server.address() as net.AddressInfo).port;
      log(`vnet: forwarding tcp ${formatEndpoint(f.hostAddress, port)} -> ${formatEndpoint(guestAddress, f.guestPort)}`);
      list.push({ protocol: 'tcp', host: formatEndpoint(f.hostAddress, port), guest: formatEndpoint(guestAddress, f.guestPort), via: 'vnet gateway' });
      closers.push(
        () =>
          new Promise<void>((r) => {
            server.close(() => r());
            for (const socket of sockets) socket.destroy();
          }),
      );
    } else {
      const socket = dgram.createSocket(f.hostAddress.includes(':') ? 'udp6' : 'udp4');
      const peers = new Map<string, { send(d: string, p: number, data: Uint8Array): void; close(): void }>();
      socket.on('message', (data, rinfo) => {
        const id = `${rinfo.address}:${rinfo.port}`;
        let binding = peers.get(id);
        if (!binding) {
          binding = gateway.udp.bind(0, (reply) => socket.send(reply, rinfo.port, rinfo.address));
          peers.set(id, binding);
        }
        binding.send(guestAddress, f.guestPort, data);
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('error', (e) => reject(forwardError(f, e)));
        socket.bind(f.hostPort, f.hostAddress, () => resolve());
      });
      log(`vnet: forwarding udp ${formatEndpoint(f.hostAddress, socket.address().port)} -> ${formatEndpoint(guestAddress, f.guestPort)}`);
      list.push({ protocol: 'udp', host: formatEndpoint(f.hostAddress, socket.address().port), guest: formatEndpoint(guestAddress, f.guestPort), via: 'vnet gateway' });
      closers.push(() => {
        for (const b of peers.values()) b.close();
        socket.close();
      });
    }
  }
  return {
    list,
    async stop() {
      for (const c of closers.reverse()) await c();
    },
  };
}
