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
 * At most {@link MAX_OUTBOUND_UDP_PEERS} UDP peers are relayed; datagrams of more are dropped
 * and counted.
 * @module
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { relayConnected } from '../config/tcp-relay.js';
import type { Stack } from '../stack/index.js';

/** UDP peers (address and port on the virtual network) relayed at most; iperf3 uses one per stream. */
export const MAX_OUTBOUND_UDP_PEERS = 256;

/** Datagrams of one peer held while its host socket connects; more are dropped (and counted). */
const MAX_QUEUED = 64;

/** A running outbound relay. */
export interface VnetOutbound {
  /** Datagrams dropped: of peers beyond {@link MAX_OUTBOUND_UDP_PEERS}, or beyond the queue of a peer whose host socket was still connecting. */
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
      const outer = relayConnected({ host, port }, inner).host;
      hostSockets.add(outer);
      outer.once('close', () => hostSockets.delete(outer));
      outer.once('error', (error) => onError(`tcp ${host}:${port}: ${error.message}`));
    },
    { allowHalfOpen: true },
  );
  const peers = new Map<string, { socket: dgram.Socket; queue: Buffer[] | undefined }>();
  let droppedUdp = 0;
  // A refused UDP peer fails every send: each distinct error is reported once, not per datagram.
  const reported = new Set<string>();
  const udpError = (error: Error) => {
    const message = `udp ${host}:${port}: ${error.message}`;
    if (reported.size < 64 && !reported.has(message)) reported.add(message), onError(message);
  };
  const send = (socket: dgram.Socket, data: Buffer) => socket.send(data, (error) => error && udpError(error));
  const udp = gateway.udp.bind(port, (data, from) => {
    const id = `${from.address}|${from.port}`;
    let peer = peers.get(id);
    if (!peer) {
      if (peers.size >= MAX_OUTBOUND_UDP_PEERS) {
        droppedUdp++;
        return;
      }
      const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      const created = { socket, queue: [] as Buffer[] | undefined };
      peer = created;
      peers.set(id, created);
      socket.on('message', (reply) => udp.send(from.address, from.port, reply));
      socket.on('error', udpError);
      // Datagrams that arrive before connect() completes wait for it (at most MAX_QUEUED).
      socket.connect(port, host, () => {
        for (const d of created.queue ?? []) send(created.socket, d);
        created.queue = undefined;
      });
    }
    if (!peer.queue) send(peer.socket, data);
    else if (peer.queue.length < MAX_QUEUED) peer.queue.push(data);
    else droppedUdp++;
  });
  return {
    get droppedUdp() {
      return droppedUdp;
    },
    async stop() {
      udp.close();
      for (const p of peers.values()) p.socket.close();
      peers.clear();
      for (const s of hostSockets) s.destroy();
      server.close();
    },
  };
}
