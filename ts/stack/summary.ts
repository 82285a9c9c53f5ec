/**
 * A one-screen, human-readable summary of a stack: addresses (IPv4, and IPv6 with their
 * autoconfiguration state), the ARP and neighbour caches, connections and the counters of every
 * layer. Used by `morgana start` and by a running unikernel on SIGUSR2.
 * @module
 */
import { formatIpv4Address, formatIpv6Address } from '../address.js';
import type { Stack } from './index.js';

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function dropped(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  return entries.length ? entries.map(([why, n]) => `${why} ${n}`).join(', ') : 'none';
}

/** Formats `stack`'s state as a few labelled lines (no trailing newline). */
export function formatStackSummary(stack: Stack): string {
  const lines: string[] = [];
  const stats = stack.stats();
  stack.interfaces.forEach((iface, i) => {
    const gateway = stack.ipv4.gateway ? ` · gateway ${formatIpv4Address(stack.ipv4.gateway)}` : '';
    lines.push(`interface ${i}  ${formatIpv4Address(iface.address)}/${iface.prefix} · MAC ${iface.eth.net.mac} · MTU ${iface.eth.mtu}${i === 0 ? gateway : ''}`);
    const arp = iface.arp.entries();
    const shown = arp.slice(0, 4).map((e) => `${e.address} ${e.mac}${e.static ? ' (static)' : ` (${Math.round(e.expiresInMs / 1000)} s)`}`);
    lines.push(`  ARP        ${shown.length ? shown.join(' · ') : 'empty'}${arp.length > 4 ? ` · and ${arp.length - 4} more` : ''}`);
    const v6 = stack.ipv6?.interfaces[i];
    if (v6) {
      const addresses = v6.addresses.map((e) => `${formatIpv6Address(e.address)}/${e.prefixLength} (${e.origin}, ${e.state})`);
      lines.push(`  IPv6       ${addresses.length ? addresses.join(' · ') : 'no address'}${v6.mtu !== iface.eth.mtu ? ` · MTU ${v6.mtu}` : ''}`);
      const routers = v6.routers.map((r) => formatIpv6Address(r.address));
      if (routers.length) lines.push(`  routers    ${routers.join(' · ')}`);
      const neighbours = (stack.ndp?.neighbours() ?? []).filter((n) => n.iface === i);
      const shownN = neighbours.slice(0, 4).map((n) => `${n.address} ${n.mac ?? '(none)'} ${n.state}${n.isRouter ? ' router' : ''}`);
      lines.push(`  neighbours ${shownN.length ? shownN.join(' · ') : 'empty'}${neighbours.length > 4 ? ` · and ${neighbours.length - 4} more` : ''}`);
    }
    const net = stats.net[i]!;
    lines.push(
      `  NET        rx ${net.rxFrames} frames (${bytes(net.rxBytes)}), tx ${net.txFrames} frames (${bytes(net.txBytes)}), dropped rx ${net.rxDropped} / tx ${net.txDropped}`,
    );
  });
  const ip = stats.ipv4;
  lines.push(
    `IPv4         received ${ip.received}, delivered ${ip.delivered}, sent ${ip.sent}, forwarded ${ip.forwarded}, fragments sent ${ip.fragmentsSent}, reassembled ${ip.reassembly.reassembled}; dropped: ${dropped(ip.dropped)}`,
  );
  if (stats.ipv6 && stats.icmpv6 && stats.nd) {
    const v6 = stats.ipv6;
    lines.push(
      `IPv6         received ${v6.received}, delivered ${v6.delivered}, sent ${v6.sent}, fragments sent ${v6.fragmentsSent}, reassembled ${v6.reassembly.reassembled}; dropped: ${dropped(v6.dropped)}`,
    );
    const nd = stats.nd;
    lines.push(
      `ICMPv6 · ND  echo requests ${stats.icmpv6.echoRequestsReceived}, errors sent ${stats.icmpv6.errorsSent}, bad checksums ${stats.icmpv6.badChecksum} · NS ${nd.neighborSolicitationsSent}/${nd.neighborSolicitationsReceived}, NA ${nd.neighborAdvertisementsSent}/${nd.neighborAdvertisementsReceived}, RS ${nd.routerSolicitationsSent}/${nd.routerSolicitationsReceived}, RA ${nd.routerAdvertisementsSent}/${nd.routerAdvertisementsReceived} (sent/received); invalid: ${dropped(nd.invalid)}`,
    );
  }
  const tcp = stats.tcp;
  lines.push(
    `TCP          ${tcp.connections} connection${tcp.connections === 1 ? '' : 's'} (${tcp.halfOpen} half-open, ${tcp.timeWait} in TIME_WAIT) · segments in ${tcp.segmentsIn}, out ${tcp.segmentsOut}, retransmits ${tcp.retransmits} · bytes in ${bytes(tcp.bytesIn)}, out ${bytes(tcp.bytesOut)}`,
  );
  lines.push(
    `UDP · ICMP   udp received ${stats.udp.received}, sent ${stats.udp.sent}, no port ${stats.udp.noPort} · echo requests ${stats.icmp.echoRequestsReceived}, ICMP errors sent ${stats.icmp.errorsSent}`,
  );
  return lines.join('\n');
}

/**
 * `stack`'s state as plain data that `JSON.stringify` keeps whole: what {@link formatStackSummary}
 * prints, with every counter of `stack.stats()` (`Infinity`, a static ARP entry's lifetime,
 * becomes `null`). Used by a running unikernel's SIGUSR2 summary under `MORGANA_SUMMARY_JSON=1`
 * and by `morgana start --json`.
 */
export function stackSummaryData(stack: Stack): Record<string, unknown> {
  const interfaces = stack.interfaces.map((iface, i) => {
    const v6 = stack.ipv6?.interfaces[i];
    return {
      address: `${formatIpv4Address(iface.address)}/${iface.prefix}`,
      mac: iface.eth.net.mac,
      mtu: iface.eth.mtu,
      arp: iface.arp.entries().map((e) => ({ ...e, expiresInMs: Number.isFinite(e.expiresInMs) ? Math.round(e.expiresInMs) : null })),
      ...(v6 && {
        ipv6: v6.addresses.map((e) => ({ address: formatIpv6Address(e.address), prefixLength: e.prefixLength, origin: e.origin, state: e.state })),
        ipv6Mtu: v6.mtu,
        routers: v6.routers.map((r) => formatIpv6Address(r.address)),
        neighbours: (stack.ndp?.neighbours() ?? []).filter((n) => n.iface === i),
      }),
    };
  });
  return {
    interfaces,
    gateway: stack.ipv4.gateway ? formatIpv4Address(stack.ipv4.gateway) : null,
    stats: stack.stats(),
  };
}
