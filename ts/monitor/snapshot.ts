/**
 * What the dashboard shows, as plain JSON: the topology (stacks, switches, gateways, forwards,
 * TAP devices), per-interface counters, the connection table (like `ss -ti`), ARP and neighbour
 * caches, drop counters with their reasons, captures and the log. Built from the live objects on
 * every call; the server sends it to the page and to scripts alike (`/api/…`).
 * @module
 */
import { formatIpv4Address, formatIpv6Address } from '../address.js';
import type { VirtualSwitch } from '../net/vswitch.js';
import type { DhcpServerLease } from '../stack/dhcp-server.js';
import type { Stack } from '../stack/index.js';

/** A stack the monitor shows, with the name it goes by (`stack0`, `vnet gateway`). */
export interface MonitoredStack {
  name: string;
  stack: Stack;
  /** `'unikernel'` (default) or `'gateway'`. */
  role?: 'unikernel' | 'gateway';
}

/** A host port relayed into a virtual network. */
export interface MonitoredForward {
  protocol: 'tcp' | 'udp';
  /** `127.0.0.1:8080` */
  host: string;
  /** `10.0.0.2:80` */
  guest: string;
  /** Name of the stack that relays it. */
  via: string;
}

/** Everything the monitor can see; functions, so that it follows devices that come and go. */
export interface MonitorSource {
  /** Shown as the page's title. */
  title: string;
  stacks(): MonitoredStack[];
  switches(): Array<{ name: string; sw: VirtualSwitch }>;
  forwards(): MonitoredForward[];
  /** DHCP servers (the vnet gateway's, when the unikernel takes its address by DHCP). */
  dhcpServers?(): Array<{ name: string; leases(): DhcpServerLease[]; /** The server's clock (lease times are on it). */ now(): number }>;
  /** Recent log lines, oldest first. */
  log(): string[];
}

/** One interface's counters and addresses. */
export interface InterfaceView {
  id: string;
  stack: string;
  index: number;
  mac: string;
  mtu: number;
  addresses: string[];
  medium: string;
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  rxDropped: number;
  txDropped: number;
}

/** One row of the connection table. */
export interface ConnectionView {
  id: string;
  stack: string;
  state: string;
  local: string;
  remote: string;
  bytesRead: number;
  bytesWritten: number;
  rttMs: number | undefined;
  cwnd: number | undefined;
  retransmits: number | undefined;
}

/** The topology as nodes and links. */
export interface TopologyView {
  nodes: Array<{ id: string; kind: 'stack' | 'gateway' | 'switch' | 'tap' | 'host'; label: string }>;
  links: Array<{ from: string; to: string; label: string }>;
}

/** A complete snapshot. */
export interface Snapshot {
  time: number;
  title: string;
  topology: TopologyView;
  interfaces: InterfaceView[];
  connections: ConnectionView[];
  arp: Array<{ stack: string; interface: number; address: string; mac: string; expiresInMs: number | null }>;
  neighbours: Array<{ stack: string; interface: number; address: string; mac: string | null; state: string; router: boolean }>;
  drops: Array<{ stack: string; layer: string; reason: string; count: number }>;
  /** IP reassembly per stack and family: datagrams put together, and what is held now. */
  reassembly: Array<{ stack: string; family: 'IPv4' | 'IPv6'; fragments: number; reassembled: number; pendingDatagrams: number; bufferedBytes: number }>;
  /** Leases: those the monitored DHCP servers gave, and those the stacks hold as clients. */
  dhcp: Array<{ role: 'server' | 'client'; via: string; address: string; mac: string | null; state: string; expiresInMs: number | null }>;
  forwards: MonitoredForward[];
  log: string[];
}

function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function pick(info: Record<string, unknown> | undefined, ...keys: string[]): number | undefined {
  if (!info) return undefined;
  for (const k of keys) if (typeof info[k] === 'number') return info[k] as number;
  return undefined;
}

/** Builds a snapshot of `source` now. */
export function takeSnapshot(source: MonitorSource, captures: { medium(mac: string): string | undefined }): Snapshot {
  const stacks = source.stacks();
  const switches = source.switches();
  const interfaces: InterfaceView[] = [];
  const connections: ConnectionView[] = [];
  const arp: Snapshot['arp'] = [];
  const neighbours: Snapshot['neighbours'] = [];
  const drops: Snapshot['drops'] = [];
  const reassembly: Snapshot['reassembly'] = [];
  const dhcp: Snapshot['dhcp'] = [];
  const nodes: TopologyView['nodes'] = [];
  const links: TopologyView['links'] = [];
  const switchOfMac = new Map<string, string>();
  for (const { name, sw } of switches) {
    nodes.push({ id: `switch:${name}`, kind: 'switch', label: name });
    for (const port of sw.ports()) switchOfMac.set(port.mac, `switch:${name}`);
  }
  for (const { name, stack, role } of stacks) {
    const stackId = `stack:${name}`;
    nodes.push({ id: stackId, kind: role === 'gateway' ? 'gateway' : 'stack', label: `${name} ${stack.address}` });
    const stats = stack.stats();
    stack.interfaces.forEach((iface, i) => {
      const mac = iface.eth.net.mac;
      const v6 = stack.ipv6?.interfaces[i]?.addresses.map((a) => `${formatIpv6Address(a.address)}/${a.prefixLength}`) ?? [];
      const net = stats.net[i]!;
      const sw = switchOfMac.get(mac);
      const medium = sw ? sw.slice('switch:'.length) : (captures.medium(mac) ?? 'device');
      interfaces.push({
        id: `${name}/${i}`,
        stack: name,
        index: i,
        mac,
        mtu: iface.eth.mtu,
        addresses: [`${formatIpv4Address(iface.address)}/${iface.prefix}`, ...v6],
        medium,
        ...net,
      });
      if (sw) links.push({ from: stackId, to: sw, label: mac });
      else {
        nodes.push({ id: `tap:${name}/${i}`, kind: 'tap', label: `${medium} (${mac})` });
        links.push({ from: stackId, to: `tap:${name}/${i}`, label: mac });
      }
      for (const e of iface.arp.entries()) arp.push({ stack: name, interface: i, address: e.address, mac: e.mac, expiresInMs: e.static ? null : e.expiresInMs });
    });
    for (const n of stack.ndp?.neighbours() ?? []) {
      neighbours.push({ stack: name, interface: n.iface, address: n.address, mac: n.mac ?? null, state: n.state, router: n.isRouter });
    }
    for (const conn of stack.tcp.connections()) {
      const info = conn.info() as Record<string, unknown> | undefined;
      connections.push({
        id: `${name}/${conn.handle}`,
        stack: name,
        state: conn.state,
        local: endpoint(conn.localAddress, conn.localPort),
        remote: endpoint(conn.remoteAddress, conn.remotePort),
        bytesRead: conn.bytesRead,
        bytesWritten: conn.bytesWritten,
        rttMs: pick(info, 'srttMs', 'smoothedRttMs', 'rttMs'),
        cwnd: pick(info, 'cwnd', 'congestionWindow'),
        retransmits: pick(info, 'retransmits'),
      });
    }
    const layered: Array<[string, Record<string, number> | undefined]> = [
      ['ipv4', stats.ipv4.dropped],
      ['ipv6', stats.ipv6?.dropped],
      ['nd', stats.nd?.invalid],
    ];
    for (const [layer, counts] of layered) {
      for (const [reason, count] of Object.entries(counts ?? {})) if (count > 0) drops.push({ stack: name, layer, reason, count });
    }
    for (const [reason, count] of Object.entries(stats.ipv4.reassembly)) {
      if (reason.startsWith('dropped') && typeof count === 'number' && count > 0) drops.push({ stack: name, layer: 'ipv4 reassembly', reason, count });
    }
    for (const [family, r] of [['IPv4', stats.ipv4.reassembly], ['IPv6', stats.ipv6?.reassembly]] as const) {
      if (r) reassembly.push({ stack: name, family, fragments: r.fragments, reassembled: r.reassembled, pendingDatagrams: r.pendingDatagrams, bufferedBytes: r.bufferedBytes });
    }
    const lease = stack.dhcp?.lease;
    if (lease) dhcp.push({ role: 'client', via: name, address: `${lease.address}/${lease.prefix}`, mac: stack.interfaces[0]?.eth.net.mac ?? null, state: `from ${lease.server}`, expiresInMs: Math.max(0, lease.expiresAt - stack.clock.now()) });
    const tcp = stats.tcp as unknown as Record<string, number>;
    for (const reason of ['badChecksum', 'malformed', 'outOfOrderDropped', 'synQueueDrops', 'backlogDrops', 'pawsRejected', 'unacceptableAcksSuppressed', 'challengeAcksSuppressed']) {
      if ((tcp[reason] ?? 0) > 0) drops.push({ stack: name, layer: 'tcp', reason, count: tcp[reason]! });
    }
  }
  for (const server of source.dhcpServers?.() ?? []) {
    for (const l of server.leases()) dhcp.push({ role: 'server', via: server.name, address: l.address, mac: l.mac, state: l.state, expiresInMs: Number.isFinite(l.expiresAt) ? Math.max(0, l.expiresAt - server.now()) : null });
  }
  const forwards = source.forwards();
  for (const f of forwards) {
    const id = `host:${f.protocol}:${f.host}`;
    nodes.push({ id, kind: 'host', label: `${f.protocol} ${f.host}` });
    links.push({ from: id, to: `stack:${f.via}`, label: `→ ${f.guest}` });
  }
  return {
    time: Date.now(),
    title: source.title,
    topology: { nodes, links },
    interfaces,
    connections,
    arp,
    neighbours,
    drops,
    reassembly,
    dhcp,
    forwards,
    log: source.log(),
  };
}
