/**
 * The way out of an in-process virtual network for `morgana iperf3 -c HOST --vnet`: the vnet
 * gateway (10.0.0.1) accepts TCP connections and UDP datagrams on one port of its own and relays
 * them to `HOST:PORT` through the host's sockets, as a forward does the other way. So a Morgana
 * client on the virtual network reaches a server on the host (Debian's `iperf3 -s`, or Morgana's
 * own `iperf3 -s --vnet` through its forwarded port) without root.
 *
 * Each TCP connection to the gateway gets one host connection (half-open both ways, relayed by
 * {@link relayTcp}); each UDP peer on the virtual network (address and port) gets one host
 * socket connected to `HOST:PORT`, whose replies go back to that peer from the gateway's port.
 * At most {@link MAX_OUTBOUND_UDP_PEERS} UDP peers are relayed; datagrams of more are dropped.
 * @module
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { relayTcp } from '../config/tcp-relay.js';
import type { Stack } from '../stack/index.js';

/** UDP peers (address and port on the virtual network) relayed at most; iperf3 uses one per stream. */
export const MAX_OUTBOUND_UDP_PEERS = 256;

/** A running outbound relay. */
export interface VnetOutbound {
  /** Datagrams dropped because {@link MAX_OUTBOUND_UDP_PEERS} peers were already relayed. */
  readonly droppedUdp: number;
  stop(): Promise<void>;
}

/**
 * Relays TCP and UDP to `port` of the gateway stack to `host:port` on the host. Errors of a host
 * connection (refused, reset) reset the virtual one; `onError` hears them.
 */
export function relayOutbound(gateway: Stack, host: string, port: number, onError: (message: string) => void = () => {}): VnetOutbound {
  const hostSockets = new Set<net.Socket>();
  const server = gateway.tcp.listen(
    port,
    (inner) => {
      const outer = net.connect({ host, port, allowHalfOpen: true });
      hostSockets.add(outer);
      outer.once('close', () => hostSockets.delete(outer));
      outer.once('error', (error) => onError(`tcp ${host}:${port}: ${error.message}`));
      relayTcp(outer, inner);
    },
    { allowHalfOpen: true },
  );
  const peers = new Map<string, dgram.Socket>();
  let droppedUdp = 0;
  const udp = gateway.udp.bind(port, (data, from) => {
    const id = `${from.address}|${from.port}`;
    let socket = peers.get(id);
    if (!socket) {
      if (peers.size >= MAX_OUTBOUND_UDP_PEERS) {
        droppedUdp++;
        return;
      }
      const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      socket = s;
      peers.set(id, s);
      s.on('message', (reply) => udp.send(from.address, from.port, reply));
      s.on('error', (error) => onError(`udp ${host}:${port}: ${error.message}`));
      s.connect(port, host);
    }
    // Until connect() completes, send() with no address fails: queue through the 'connect' event.
    const s = socket;
    const send = () => s.send(data, (error) => error && onError(`udp ${host}:${port}: ${error.message}`));
    if (isConnected(s)) send();
    else s.once('connect', send);
  });
  return {
    get droppedUdp() {
      return droppedUdp;
    },
    async stop() {
      udp.close();
      for (const s of peers.values()) s.close();
      peers.clear();
      for (const s of hostSockets) s.destroy();
      server.close();
    },
  };
}

/** Whether a dgram socket has finished `connect()`. */
function isConnected(socket: dgram.Socket): boolean {
  try {
    socket.remoteAddress();
    return true;
  } catch {
    return false;
  }
}
