/**
 * The user-mode gateway of a Solo5 unikernel's NET device (`morgana deploy --net NAME=user`):
 * a Morgana stack at the other end of the unikernel's private link that
 *
 * - answers ARP and ping for the gateway address (and ARP for the DNS address);
 * - relays forwarded host ports into the guest, TCP through the stack's TCP and UDP as
 *   datagrams (as `vnet --forward` does);
 * - proxies the guest's outbound TCP and UDP through host sockets, as slirp does: a guest
 *   SYN to any address is held until a host socket to that address connected, then handed to
 *   the stack's proxy listener with its destination translated (and every later segment of
 *   the flow, both ways); a host that refuses gets the guest a RST. UDP flows get a host
 *   socket per guest source port. The gateway address stands for the host's loopback
 *   (`10.0.2.2:8080` reaches `127.0.0.1:8080`) and the DNS address for the host's resolver.
 *
 * Limits (documented, bounded): `maxConnections` TCP connections at a time (forwarded and
 * outbound together), `maxUdpFlows` UDP flows (each outbound guest port and each forwarded
 * client), idle UDP flows closed after `udpIdleMs`. What is refused is counted in
 * {@link UserGatewayStats.refused}; a refused TCP connection gets a RST, a refused datagram is
 * dropped.
 * @module
 */
import dgram from 'node:dgram';
import { getServers } from 'node:dns';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { formatIpv4Address, parseIpv4Address } from '../address.js';
import type { Forward } from '../config/targets.js';
import { type TcpRelay, relayAccepted } from '../config/tcp-relay.js';
import { MorganaError } from '../errors.js';
import { type FrameFill, type FrameHandler, type FrameOffload, type NetDevice, type NetOffloads, type NetStats, MAX_SUPER_FRAME, NEEDS_CSUM, acceptsOffload, emptyNetStats } from '../net/device.js';
import { realFrames } from '../net/gso.js';
import { native } from '../native.js';
import { formatMac, parseMac, randomLocalMac } from '../net/mac.js';
import { pcapRecorder } from '../net/pcap.js';
import { startDhcpServer } from '../stack/dhcp-server.js';
import { type Stack, createStack } from '../stack/index.js';
import type { TcpConnection } from '../stack/tcp.js';
import {
  type L4View,
  PROTO_TCP,
  PROTO_UDP,
  TCP_ACK,
  TCP_SYN,
  arpRequestTarget,
  l4View,
  rewriteAddress,
  rewritePort,
  senderIpv4,
  udpFrameLength,
  writeArpReply,
  writeUdpFrame,
} from './gateway-wire.js';

/** Options of {@link startUserGateway}. */
export interface UserGatewayOptions {
  /** The guest's address and prefix (default `10.0.2.15/24`, as QEMU's user networking). */
  guest?: string;
  /** The gateway's address (default: host 2 of the guest's network, `10.0.2.2`). */
  gateway?: string;
  /** The DNS address the guest is told (default: host 3, `10.0.2.3`); relayed to the host's resolver. */
  dns?: string;
  /** The host resolver DNS goes to (default: the first IPv4 server of `dns.getServers()`). */
  hostResolver?: string;
  /** Forwarded host ports (guest address: the guest's unless given). */
  forwards?: Forward[];
  /** Let the gateway address stand for the host's 127.0.0.1 (default true). */
  hostLoopback?: boolean;
  /** Proxy the guest's connections to other addresses through host sockets (default true). */
  outbound?: boolean;
  /** TCP connections at a time, forwarded and outbound (default 256). */
  maxConnections?: number;
  /** UDP flows at a time, outbound and forwarded (default 256). */
  maxUdpFlows?: number;
  /** An outbound UDP flow idle this long is closed (default 60 s). */
  udpIdleMs?: number;
  /** Serve DHCP on the link (default true: a guest without boot arguments still gets its address). */
  dhcp?: boolean;
  /** Record the private link to this pcap file. */
  pcap?: string;
  /** Where diagnostics go (default: nowhere). */
  log?: (message: string) => void;
}

/** A forwarded port as bound (`hostPort` is the one chosen when 0 was asked for). */
export interface BoundForward {
  protocol: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestAddress: string;
  guestPort: number;
}

/** Counters of a {@link UserGateway}. */
export interface UserGatewayStats {
  /** TCP connections open now (forwarded + outbound). */
  tcpConnections: number;
  /** UDP flows open now. */
  udpFlows: number;
  /** Connections and flows accepted since the start. */
  accepted: { forwardedTcp: number; outboundTcp: number; forwardedUdp: number; outboundUdp: number };
  /** Refused by a limit or a policy (`outbound: false`, no host loopback), or by the host. */
  refused: { tcp: number; udp: number; hostRefusedTcp: number };
  /**
   * Frames dropped: datagrams too large for the link, frames while no link was attached,
   * datagrams for a guest whose MAC did not resolve (ARP's queue for it was full).
   */
  dropped: { oversizedUdp: number; noLink: number; noGuestMac: number };
  /**
   * TCP super-frames of the gateway's stack cut into real frames here because the attached
   * device takes none (a TAP without the `virtio_net_hdr`, a plain switch port).
   */
  segmented: number;
  /**
   * Bytes of forwarded TCP connections relayed since the start: `inward` from host clients to
   * the guest, `outward` back (counted as the relay hands them on, open connections included).
   */
  forwardedBytes: { inward: number; outward: number };
  /** Frames of the private link. */
  link: NetStats;
}

/** The gateway end of a unikernel's private link. */
export interface UserGateway {
  /** Guest address with prefix (`10.0.2.15/24`). */
  readonly guest: string;
  readonly gateway: string;
  readonly dns: string;
  readonly forwards: readonly BoundForward[];
  /** The gateway's stack (its TCP, ICMP, counters). */
  readonly stack: Stack;
  /** Attaches the private link's device (a TAP the unikernel's tender is bridged to), replacing and closing any earlier one. */
  attach(device: NetDevice): void;
  /** Closes the attached device, if any (the tender ended). */
  detach(): Promise<void>;
  stats(): UserGatewayStats;
  /** Stops forwarding, closes host sockets, the stack, the link and the pcap file. */
  close(): Promise<void>;
}

/** The stack's listener that outbound TCP flows are translated to, and a port nobody listens on (answers RST). */
const PROXY_PORT = 1;
const CLOSED_PORT = 2;
/** How long a finished TCP flow's translation outlives it (its last ACKs). */
const TCP_LINGER_MS = 5_000;
/** Gateway-side ports given to forwarded UDP clients. */
const UDP_FORWARD_PORTS: [number, number] = [20_000, 29_999];

function bad(message: string): never {
  throw new MorganaError('ERR_GATEWAY_OPTION', message);
}

function limit(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0 || v > 1_000_000) bad(`${what} must be a whole number from 0 to 1000000, got ${value}`);
  return v;
}

/**
 * What the gateway's stack may hand its link: TCP/IPv4 super-frames of up to 64 KiB. The
 * private link's TAP takes them when it was opened with the `virtio_net_hdr` (the kernel cuts
 * them on the bridge to the tender's plain TAP, in one write instead of one per 1,500 bytes);
 * for a device that does not, {@link LinkSlot} cuts them itself.
 */
const LINK_OFFLOADS: NetOffloads = Object.freeze({ checksum: false, tso4: true, tso6: false, maxFrame: MAX_SUPER_FRAME, rxCoalesce: true });

/** A device whose medium (the TAP of the current tender run) can be swapped. */
class LinkSlot implements NetDevice {
  readonly mac: string;
  readonly mtu = 1500;
  readonly offloads = LINK_OFFLOADS;
  device: NetDevice | undefined;
  #handler: FrameHandler | undefined;
  noLink = 0;
  /** Super-frames the attached device did not take, cut here into real frames. */
  segmented = 0;
  #closedStats: NetStats = emptyNetStats();
  /** Where a super-frame for a device without TSO is built before it is cut. */
  #scratch: Buffer | undefined;

  constructor(mac: string) {
    this.mac = mac;
  }

  set(device: NetDevice | undefined): void {
    this.device = device;
    if (device && this.#handler) device.listen(this.#handler);
  }

  write(size: number, fill: FrameFill, offload?: FrameOffload): void {
    const device = this.device;
    if (!device) {
      this.noLink++;
      return;
    }
    if (!offload || acceptsOffload(device, offload, size)) return device.write(size, fill, offload);
    // A super-frame for a device without TSO (a TAP the kernel gave no header): cut in Rust.
    this.segmented++;
    const scratch = this.#scratch && this.#scratch.length >= size ? this.#scratch : (this.#scratch = Buffer.allocUnsafe(Math.max(size, MAX_SUPER_FRAME)));
    const length = fill(scratch);
    for (const piece of realFrames(scratch.subarray(0, length), offload)) {
      device.write(piece.length, (out) => piece.copy(out));
    }
  }

  listen(handler: FrameHandler): void {
    this.#handler = handler;
    this.device?.listen(handler);
  }

  /** Adds a closed device's counters to the total. */
  retire(stats: NetStats): void {
    for (const k of Object.keys(stats) as (keyof NetStats)[]) this.#closedStats[k] = (this.#closedStats[k] ?? 0) + (stats[k] ?? 0);
  }

  stats(): NetStats {
    const now = this.device?.stats() ?? emptyNetStats();
    const total = { ...this.#closedStats };
    for (const k of Object.keys(now) as (keyof NetStats)[]) total[k] = (total[k] ?? 0) + (now[k] ?? 0);
    return total;
  }

  async close(): Promise<void> {
    const d = this.device;
    this.device = undefined;
    if (d) {
      this.retire(d.stats());
      await d.close();
    }
  }
}

interface TcpFlow {
  guestIp: number;
  guestPort: number;
  dstIp: number;
  dstPort: number;
  state: 'connecting' | 'open' | 'refused';
  syn: Buffer | undefined;
  host: net.Socket | undefined;
  counted: boolean;
  /** The proxied connection ended (its translation lingers for the last segments). */
  finished: boolean;
  linger: NodeJS.Timeout | undefined;
}

interface UdpFlow {
  socket: dgram.Socket;
  guestIp: number;
  guestPort: number;
  lastUsed: number;
  /** Host `address:port` → the address the guest sees replies come from. */
  visible: Map<string, number>;
}

interface UdpPeer {
  port: number;
  /** Its forward's client table and its key there (removed together when idle). */
  clients: Map<string, UdpPeer>;
  clientKey: string;
  guestIp: number;
  guestPort: number;
  socket: dgram.Socket;
  address: string;
  remotePort: number;
  lastUsed: number;
}

/** The addresses of a gateway's link, as numbers. */
interface LinkAddresses {
  guestIp: number;
  prefix: number;
  gwIp: number;
  dnsIp: number;
  network: number;
  mask: number;
}

function linkAddresses(options: Pick<UserGatewayOptions, 'guest' | 'gateway' | 'dns'>): LinkAddresses {
  const [guestText, prefixText = '24'] = (options.guest ?? '10.0.2.15/24').split('/') as [string, string?];
  const prefix = Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 8 || prefix > 30) bad(`the guest's prefix must be 8 to 30, got ${prefixText}`);
  let guestIp: number;
  try {
    guestIp = parseIpv4Address(guestText);
  } catch {
    bad(`bad guest address ${JSON.stringify(guestText)}`);
  }
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (guestIp & mask) >>> 0;
  const inNetwork = (a: number) => ((a & mask) >>> 0) === network;
  const address = (text: string | undefined, host: number, what: string): number => {
    if (text === undefined) return (network + host) >>> 0;
    let a: number;
    try {
      a = parseIpv4Address(text);
    } catch {
      bad(`bad ${what} address ${JSON.stringify(text)}`);
    }
    if (!inNetwork(a)) bad(`the ${what} address ${text} is outside the guest's network ${formatIpv4Address(network)}/${prefix}`);
    return a;
  };
  const gwIp = address(options.gateway, 2, 'gateway');
  const dnsIp = address(options.dns, 3, 'DNS');
  if (new Set([gwIp, dnsIp, guestIp]).size !== 3) bad('the guest, gateway and DNS addresses must differ');
  return { guestIp, prefix, gwIp, dnsIp, network, mask };
}

/**
 * The guest, gateway and DNS addresses a gateway with these options uses (`10.0.2.15/24`,
 * `10.0.2.2`, `10.0.2.3` by default). Throws `ERR_GATEWAY_OPTION` for bad or clashing addresses.
 */
export function userGatewayAddresses(options: Pick<UserGatewayOptions, 'guest' | 'gateway' | 'dns'> = {}): { guest: string; gateway: string; dns: string; prefix: number } {
  const a = linkAddresses(options);
  return { guest: `${formatIpv4Address(a.guestIp)}/${a.prefix}`, gateway: formatIpv4Address(a.gwIp), dns: formatIpv4Address(a.dnsIp), prefix: a.prefix };
}

/**
 * Starts a gateway (stack, forwards, proxy) with no link yet: {@link UserGateway.attach} the
 * private link's device once the tender's namespace has it. Throws `ERR_GATEWAY_OPTION` for bad
 * options and `ERR_FORWARD` when a host port cannot be bound (nothing is left open then).
 */
export async function startUserGateway(options: UserGatewayOptions = {}): Promise<UserGateway> {
  const { guestIp, prefix, gwIp, dnsIp, network, mask } = linkAddresses(options);
  const inNetwork = (a: number) => ((a & mask) >>> 0) === network;
  const maxConnections = limit(options.maxConnections, 256, 'maxConnections');
  const maxUdpFlows = limit(options.maxUdpFlows, 256, 'maxUdpFlows');
  const udpIdleMs = limit(options.udpIdleMs, 60_000, 'udpIdleMs');
  const hostLoopback = options.hostLoopback ?? true;
  const outbound = options.outbound ?? true;
  const resolver = options.hostResolver ?? getServers().find((s) => net.isIPv4(s));
  const log = options.log ?? (() => {});

  const gwMacText = randomLocalMac((n) => randomBytes(n));
  const gwMac = Buffer.from(parseMac(gwMacText));
  const slot = new LinkSlot(formatMac(gwMac));
  const lower: NetDevice = options.pcap ? pcapRecorder(slot, options.pcap) : slot;

  const stats = {
    accepted: { forwardedTcp: 0, outboundTcp: 0, forwardedUdp: 0, outboundUdp: 0 },
    refused: { tcp: 0, udp: 0, hostRefusedTcp: 0 },
    dropped: { oversizedUdp: 0, noGuestMac: 0 },
  };
  let tcpActive = 0;
  /** Forwarded connections' relays while open, and the bytes of those that closed. */
  const relays = new Set<TcpRelay>();
  const relayedClosed = { inward: 0, outward: 0 };
  let guestMac: Buffer | undefined;
  let identification = 0;
  const tcpFlows = new Map<number, TcpFlow>();
  const udpFlows = new Map<number, UdpFlow>();
  const udpPeers = new Map<number, UdpPeer>();
  let nextPeerPort = UDP_FORWARD_PORTS[0];
  let closed = false;
  /** A flow's key, address and port in one number (no string per frame). */
  const flowKey = (ip: number, port: number) => (ip >>> 0) * 65_536 + port;

  /** Sends a UDP datagram into the link, as if from `src:srcPort`. */
  const sendUdp = (src: number, srcPort: number, dst: number, dstPort: number, payload: Uint8Array): void => {
    if (udpFrameLength(payload.length) > lower.mtu + 14) {
      stats.dropped.oversizedUdp++;
      return;
    }
    const send = (mac: Buffer) => {
      identification = (identification + 1) & 0xffff;
      lower.write(udpFrameLength(payload.length), (out) => writeUdpFrame(out, { dstMac: mac, srcMac: gwMac, src, dst, srcPort, dstPort, identification, payload }));
    };
    if (guestMac) return send(guestMac);
    // The guest has not spoken yet (a datagram for a forwarded port came first): ask for its MAC
    // through the gateway stack's ARP, which queues a few packets per address and counts drops.
    if (!stack.arp.resolve(dst, send)) stats.dropped.noGuestMac++;
  };

  /** The host endpoint for a guest destination, or undefined when policy refuses it. */
  const hostTarget = (dst: number, port: number): { host: string; port: number } | undefined => {
    if (dst === gwIp) return hostLoopback ? { host: '127.0.0.1', port } : undefined;
    if (dst === dnsIp) return resolver ? { host: resolver, port } : undefined;
    if (inNetwork(dst) || !outbound) return undefined;
    const first = dst >>> 24;
    if (first === 0 || first === 127 || first >= 224) return undefined;
    return { host: formatIpv4Address(dst), port };
  };

  // --- TCP: guest SYNs held until the host side connects -------------------------------------

  let deliver: FrameHandler = () => {};
  const finishFlow = (key: number, flow: TcpFlow): void => {
    flow.finished = true;
    if (flow.counted) {
      flow.counted = false;
      tcpActive--;
    }
    flow.host?.destroy();
    if (flow.linger) clearTimeout(flow.linger);
    flow.linger = setTimeout(() => {
      if (tcpFlows.get(key) === flow) tcpFlows.delete(key);
    }, TCP_LINGER_MS);
    flow.linger.unref();
  };
  /** Hands a guest segment of `flow` to the stack, translated to the proxy (or closed) port. */
  const toStack = (frame: Buffer, v: L4View, flow: TcpFlow, offload?: FrameOffload): void => {
    // The rewrite updates checksums incrementally: a partial one (NEEDS_CSUM, the pseudo-header
    // sum) is completed first.
    if (offload && (offload.flags & NEEDS_CSUM) !== 0) {
      if (!native.gsoCompleteChecksum(frame, offload.csumStart, offload.csumOffset)) return;
      offload = { ...offload, flags: offload.flags & ~NEEDS_CSUM };
    }
    rewriteAddress(frame, v, 'dst', gwIp);
    rewritePort(frame, v, 'dst', flow.state === 'open' ? PROXY_PORT : CLOSED_PORT);
    deliver(frame, offload);
  };
  const guestTcp = (frame: Buffer, v: L4View, offload: FrameOffload | undefined): void => {
    const key = flowKey(v.src, v.srcPort);
    let flow = tcpFlows.get(key);
    const isSyn = (v.flags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
    // Another destination from the same port, or the same one again after the last connection
    // ended: a new flow.
    if (flow && (flow.dstIp !== v.dst || flow.dstPort !== v.dstPort || (isSyn && flow.finished && flow.state === 'open'))) {
      if (!isSyn) return deliver(frame, offload); // not this flow's: the stack drops what is not its own
      finishFlow(key, flow);
      tcpFlows.delete(key);
      flow = undefined;
    }
    if (!flow) {
      if (!isSyn) return deliver(frame, offload); // forwarded connections (to the gateway's own ports)
      const target = hostTarget(v.dst, v.dstPort);
      // A held SYN goes to the stack later without its metadata: its checksum is made whole now.
      if (offload && (offload.flags & NEEDS_CSUM) !== 0 && !native.gsoCompleteChecksum(frame, offload.csumStart, offload.csumOffset)) return;
      flow = { guestIp: v.src, guestPort: v.srcPort, dstIp: v.dst, dstPort: v.dstPort, state: 'connecting', syn: frame, host: undefined, counted: false, finished: false, linger: undefined };
      tcpFlows.set(key, flow);
      if (!target || tcpActive >= maxConnections) {
        stats.refused.tcp++;
        flow.state = 'refused';
        finishFlow(key, flow);
        return toStack(frame, v, flow);
      }
      tcpActive++;
      flow.counted = true;
      const f = flow;
      const host = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
      f.host = host;
      host.pause();
      host.once('connect', () => {
        if (tcpFlows.get(key) !== f || closed) return host.destroy();
        f.state = 'open';
        const syn = f.syn;
        f.syn = undefined;
        const sv = syn && l4View(syn);
        if (syn && sv) toStack(syn, sv, f);
      });
      host.once('error', (error) => {
        if (f.state !== 'connecting') return;
        stats.refused.hostRefusedTcp++;
        log(`gateway: ${formatIpv4Address(v.dst)}:${v.dstPort} → ${target.host}:${target.port}: ${error.message}`);
        f.state = 'refused';
        finishFlow(key, f);
        const syn = f.syn;
        f.syn = undefined;
        const sv = syn && l4View(syn);
        if (syn && sv) toStack(syn, sv, f);
      });
      return;
    }
    if (flow.state === 'connecting') {
      // A retransmitted SYN replaces the held one.
      if (isSyn && !(offload && (offload.flags & NEEDS_CSUM) !== 0 && !native.gsoCompleteChecksum(frame, offload.csumStart, offload.csumOffset))) flow.syn = frame;
      return;
    }
    toStack(frame, v, flow, offload);
  };
  /** A stack segment from the proxy (or closed) port goes out as if from the original destination. */
  const fromStackTcp = (frame: Buffer, v: L4View): void => {
    if (v.src !== gwIp || (v.srcPort !== PROXY_PORT && v.srcPort !== CLOSED_PORT)) return;
    const flow = tcpFlows.get(flowKey(v.dst, v.dstPort));
    if (!flow) return;
    rewritePort(frame, v, 'src', flow.dstPort);
    rewriteAddress(frame, v, 'src', flow.dstIp);
  };

  // --- UDP: outbound flows and forwarded clients ---------------------------------------------

  const guestUdp = (frame: Buffer, v: L4View): void => {
    if (v.dstPort === 67 && options.dhcp !== false) return deliver(frame);
    const payload = Buffer.from(frame.subarray(v.payload, v.payload + v.payloadLength));
    if (v.dst === gwIp) {
      const peer = udpPeers.get(v.dstPort);
      if (peer) {
        peer.lastUsed = Date.now();
        peer.socket.send(payload, peer.remotePort, peer.address);
        return;
      }
    }
    const target = hostTarget(v.dst, v.dstPort);
    const key = flowKey(v.src, v.srcPort);
    let flow = udpFlows.get(key);
    if (!target || (!flow && udpFlows.size + udpPeers.size >= maxUdpFlows)) {
      stats.refused.udp++;
      return;
    }
    if (!flow) {
      const socket = dgram.createSocket('udp4');
      const f: UdpFlow = { socket, guestIp: v.src, guestPort: v.srcPort, lastUsed: Date.now(), visible: new Map() };
      flow = f;
      udpFlows.set(key, f);
      stats.accepted.outboundUdp++;
      socket.on('message', (data, rinfo) => {
        f.lastUsed = Date.now();
        const from = f.visible.get(`${rinfo.address}:${rinfo.port}`) ?? (net.isIPv4(rinfo.address) ? parseIpv4Address(rinfo.address) : undefined);
        if (from === undefined) return;
        sendUdp(from, rinfo.port, f.guestIp, f.guestPort, data);
      });
      socket.on('error', (e) => log(`gateway: UDP flow from port ${f.guestPort}: ${e.message}`));
    }
    flow.lastUsed = Date.now();
    flow.visible.set(`${target.host}:${target.port}`, v.dst);
    flow.socket.send(payload, target.port, target.host);
  };

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [key, flow] of udpFlows) {
      if (now - flow.lastUsed > udpIdleMs) {
        udpFlows.delete(key);
        flow.socket.close();
      }
    }
    for (const [port, peer] of udpPeers) {
      if (now - peer.lastUsed <= udpIdleMs) continue;
      udpPeers.delete(port);
      if (peer.clients.get(peer.clientKey) === peer) peer.clients.delete(peer.clientKey);
    }
  }, Math.max(1000, Math.min(10_000, udpIdleMs / 2)));
  sweep.unref();

  // --- the stack's device: translation in both directions ------------------------------------

  const port: NetDevice = {
    mac: slot.mac,
    mtu: slot.mtu,
    offloads: slot.offloads,
    write(size, fill, offload) {
      lower.write(
        size,
        (buf) => {
          const n = fill(buf);
          const frame = buf.subarray(0, n);
          const v = l4View(frame);
          if (v?.protocol === PROTO_TCP) fromStackTcp(frame, v);
          return n;
        },
        offload,
      );
    },
    listen(handler) {
      deliver = handler;
    },
    stats: () => lower.stats(),
    close: async () => {},
  };
  lower.listen((frame, offload) => {
    // Copied only when it changes: every frame of a bulk transfer comes this way.
    if (!(frame[6]! & 1) && senderIpv4(frame) === guestIp && (!guestMac || guestMac.compare(frame, 6, 12) !== 0)) guestMac = Buffer.from(frame.subarray(6, 12));
    const asked = arpRequestTarget(frame);
    if (asked === dnsIp) {
      lower.write(42, (out) => writeArpReply(out, frame, gwMac, dnsIp));
      return;
    }
    const v = l4View(frame);
    if (v?.protocol === PROTO_TCP) return guestTcp(frame, v, offload);
    if (v?.protocol === PROTO_UDP) return guestUdp(frame, v);
    deliver(frame, offload);
  });

  const stack = await createStack({ net: port, tcp: GATEWAY_TCP, ipv4: `${formatIpv4Address(gwIp)}/${prefix}` });
  const dhcp = options.dhcp !== false ? startDhcpServer(stack, { range: [formatIpv4Address(guestIp), formatIpv4Address(guestIp)], router: formatIpv4Address(gwIp), dns: formatIpv4Address(dnsIp) }) : undefined;
  const proxy = stack.tcp.listen(
    PROXY_PORT,
    (conn: TcpConnection) => {
      const flow = tcpFlows.get(flowKey(parseIpv4Address(conn.remoteAddress), conn.remotePort));
      const host = flow?.host;
      if (!flow || !host || flow.state !== 'open') {
        conn.destroy();
        return;
      }
      stats.accepted.outboundTcp++;
      const key = flowKey(flow.guestIp, flow.guestPort);
      pipeBoth(host, conn, () => {
        if (tcpFlows.get(key) === flow) finishFlow(key, flow);
      });
    },
    { allowHalfOpen: true },
  );

  // --- forwarded host ports --------------------------------------------------------------------

  const closers: Array<() => Promise<void> | void> = [];
  const bound: BoundForward[] = [];
  const cleanUp = async () => {
    for (const c of closers.reverse()) await c();
    closers.length = 0;
  };
  try {
    for (const f of options.forwards ?? []) {
      const guestAddress = f.guestAddress ?? formatIpv4Address(guestIp);
      if (!net.isIPv4(guestAddress)) bad(`forward ${f.hostPort}: the guest address must be IPv4, got ${guestAddress}`);
      const guestTarget = parseIpv4Address(guestAddress);
      if (f.protocol === 'tcp') {
        // Open host sockets, destroyed by close(): a half-open one (its client's FIN relayed to a
        // guest that is gone and never answers) would otherwise hold server.close() forever.
        const sockets = new Set<net.Socket>();
        const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (host) => {
          sockets.add(host);
          host.once('close', () => sockets.delete(host));
          if (tcpActive >= maxConnections) {
            stats.refused.tcp++;
            host.destroy();
            return;
          }
          tcpActive++;
          let counted = true;
          const release = () => {
            if (counted) tcpActive--;
            counted = false;
          };
          stack.tcp.connect(guestAddress, f.guestPort, { allowHalfOpen: true }).then(
            (inner) => {
              stats.accepted.forwardedTcp++;
              // The relay reads the client into a reused buffer through a socket that takes over
              // the accepted one's descriptor (see relayAccepted): that socket is the one tracked.
              sockets.delete(host);
              const { relay, host: relayed } = relayAccepted(host, inner);
              sockets.add(relayed);
              relays.add(relay);
              relayed.once('close', () => {
                sockets.delete(relayed);
                relays.delete(relay);
                relayedClosed.inward += relay.inward;
                relayedClosed.outward += relay.outward;
                release();
              });
            },
            (error: Error) => {
              release();
              log(`gateway: ${guestAddress}:${f.guestPort} refused a forwarded connection: ${error.message}`);
              host.destroy();
            },
          );
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', (e) => reject(new MorganaError('ERR_FORWARD', `forward tcp ${f.hostAddress}:${f.hostPort}: ${e.message}`)));
          server.listen(f.hostPort, f.hostAddress, () => resolve());
        });
        closers.push(
          () =>
            new Promise<void>((r) => {
              server.close(() => r());
              for (const socket of sockets) socket.destroy();
            }),
        );
        bound.push({ protocol: 'tcp', hostAddress: f.hostAddress, hostPort: (server.address() as net.AddressInfo).port, guestAddress, guestPort: f.guestPort });
      } else {
        const socket = dgram.createSocket(f.hostAddress.includes(':') ? 'udp6' : 'udp4');
        const byClient = new Map<string, UdpPeer>();
        socket.on('message', (data, rinfo) => {
          const id = `${rinfo.address}:${rinfo.port}`;
          let peer = byClient.get(id);
          if (peer && udpPeers.get(peer.port) !== peer) {
            byClient.delete(id);
            peer = undefined;
          }
          if (!peer) {
            if (udpFlows.size + udpPeers.size >= maxUdpFlows) {
              stats.refused.udp++;
              return;
            }
            let p = nextPeerPort;
            for (let tries = 0; udpPeers.has(p) && tries < 10_000; tries++) p = p >= UDP_FORWARD_PORTS[1] ? UDP_FORWARD_PORTS[0] : p + 1;
            nextPeerPort = p >= UDP_FORWARD_PORTS[1] ? UDP_FORWARD_PORTS[0] : p + 1;
            peer = { port: p, clients: byClient, clientKey: id, guestIp: guestTarget, guestPort: f.guestPort, socket, address: rinfo.address, remotePort: rinfo.port, lastUsed: Date.now() };
            udpPeers.set(p, peer);
            byClient.set(id, peer);
            stats.accepted.forwardedUdp++;
          }
          peer.lastUsed = Date.now();
          sendUdp(gwIp, peer.port, peer.guestIp, peer.guestPort, data);
        });
        await new Promise<void>((resolve, reject) => {
          socket.once('error', (e) => reject(new MorganaError('ERR_FORWARD', `forward udp ${f.hostAddress}:${f.hostPort}: ${e.message}`)));
          socket.bind(f.hostPort, f.hostAddress, () => resolve());
        });
        closers.push(() => {
          socket.close();
        });
        bound.push({ protocol: 'udp', hostAddress: f.hostAddress, hostPort: socket.address().port, guestAddress, guestPort: f.guestPort });
      }
    }
  } catch (error) {
    await cleanUp();
    proxy.close();
    dhcp?.close();
    clearInterval(sweep);
    await stack.close();
    await lower.close();
    throw error;
  }

  return {
    guest: `${formatIpv4Address(guestIp)}/${prefix}`,
    gateway: formatIpv4Address(gwIp),
    dns: formatIpv4Address(dnsIp),
    forwards: bound,
    stack,
    attach(device) {
      const old = slot.device;
      if (old) {
        slot.retire(old.stats());
        void old.close();
      }
      guestMac = undefined;
      slot.set(device);
    },
    async detach() {
      const old = slot.device;
      slot.set(undefined);
      if (old) {
        slot.retire(old.stats());
        await old.close();
      }
    },
    stats: () => ({
      tcpConnections: tcpActive,
      udpFlows: udpFlows.size + udpPeers.size,
      accepted: { ...stats.accepted },
      refused: { ...stats.refused },
      dropped: { ...stats.dropped, noLink: slot.noLink },
      segmented: slot.segmented,
      forwardedBytes: [...relays].reduce((sum, r) => ({ inward: sum.inward + r.inward, outward: sum.outward + r.outward }), { ...relayedClosed }),
      link: slot.stats(),
    }),
    async close() {
      if (closed) return;
      closed = true;
      await cleanUp();
      clearInterval(sweep);
      for (const [key, flow] of tcpFlows) {
        flow.host?.destroy();
        if (flow.linger) clearTimeout(flow.linger);
        tcpFlows.delete(key);
      }
      for (const flow of udpFlows.values()) flow.socket.close();
      udpFlows.clear();
      udpPeers.clear();
      proxy.close();
      dhcp?.close();
      await stack.close();
      await lower.close();
    },
  };
}

/** Pipes two duplexes both ways, half-close included; `done` runs once both are closed (or one failed). */
/**
 * The gateway's TCP buffers, larger than a stack's default 512 KiB (as the vnet gateway's): it
 * relays forwarded ports and outbound connections, and its send buffer must hold more than the
 * guest's window so that data is ready the moment an ACK opens it, however late this process
 * is scheduled; its receive buffer is the window the guest may fill towards the host. At most
 * this much is held per connection in each direction (the engine allocates as data arrives).
 */
const GATEWAY_TCP = { sendBuffer: 2 << 20, recvBuffer: 2 << 20 } as const;

function pipeBoth(a: net.Socket, b: TcpConnection, done: () => void): void {
  let finished = false;
  const end = () => {
    a.destroy();
    b.destroy();
    if (!finished) {
      finished = true;
      done();
    }
  };
  a.pipe(b);
  b.pipe(a);
  a.resume();
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}
