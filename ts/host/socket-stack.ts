/**
 * The host-socket stack of `unix --net socket`: the {@link StackV4} interface on the host
 * kernel's sockets (`node:dgram`, `node:net`), so a unikernel written against Morgana's stack runs
 * unchanged as an ordinary process. ICMP echo uses the system's `ping` command, since Node has no
 * ICMP sockets.
 * @module
 */
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { parseIpv4Address } from '../address.js';
import { MorganaError, assertBytes, assertInteger } from '../errors.js';
import type { PingResult } from '../stack/icmp.js';
import type { UdpHandler } from '../stack/udp.js';
import type { StackV4, TcpListenerV4, UdpSocketV4 } from '../stack/stackv4.js';

/** Options of {@link socketStack}. */
export interface SocketStackOptions {
  /** The host address to bind listening sockets to (default `0.0.0.0`, every interface). */
  bind?: string;
}

/** A {@link StackV4} on host sockets, with its listening sockets reported. */
export interface SocketStack extends StackV4 {
  readonly tcp: {
    listen(port: number, onConnection: (connection: Duplex) => void, options?: { backlog?: number }): Promise<TcpListenerV4 & { port: number }>;
    connect(host: string, port: number): Promise<Duplex>;
  };
}

function socketError(error: NodeJS.ErrnoException, what: string): MorganaError {
  return new MorganaError(error.code === 'EADDRINUSE' ? 'ERR_ADDRESS_IN_USE' : error.code === 'EACCES' ? 'ERR_PERMISSION' : 'ERR_SOCKET', `${what}: ${error.message}`, { cause: error });
}

/** Creates a host-socket stack. */
export function socketStack(options: SocketStackOptions = {}): SocketStack {
  const bind = options.bind ?? '0.0.0.0';
  parseIpv4Address(bind);
  const sockets = new Set<dgram.Socket>();
  const servers = new Set<net.Server>();
  const connections = new Set<net.Socket>();
  let sender: dgram.Socket | undefined;
  let closed = false;

  const check = () => {
    if (closed) throw new MorganaError('ERR_STACK_CLOSED', 'the stack is closed');
  };

  const udp = {
    bind(port: number, handler: UdpHandler): UdpSocketV4 {
      check();
      assertInteger(port, 'port', 0, 65_535);
      const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
      sockets.add(socket);
      const listeners: Array<(error: MorganaError) => void> = [];
      let bound = port;
      socket.on('message', (data, rinfo) => handler(data, { address: rinfo.address, port: rinfo.port }, { to: bind, ttl: 64 }));
      socket.on('error', (error) => {
        const e = socketError(error, `UDP port ${port}`);
        // Unheard, a bind failure must not pass for a warning while the unikernel claims to
        // serve: thrown, as Node's dgram does with an unhandled 'error' (the boot reports it).
        if (listeners.length === 0) throw e;
        for (const l of listeners) l(e);
      });
      socket.on('listening', () => (bound = socket.address().port));
      socket.bind(port, bind);
      return {
        get port() {
          return bound;
        },
        send(dst, dstPort, data) {
          assertBytes(data, 'data');
          socket.send(data, dstPort, dst);
        },
        onError: (l) => void listeners.push(l),
        close() {
          sockets.delete(socket);
          socket.close();
        },
      };
    },
    send(dst: string, dstPort: number, data: Uint8Array) {
      check();
      assertBytes(data, 'data');
      assertInteger(dstPort, 'dstPort', 1, 65_535);
      if (!sender) {
        sender = dgram.createSocket('udp4');
        sender.on('error', () => {});
        sender.unref();
        sockets.add(sender);
      }
      sender.send(data, dstPort, dst);
    },
  };

  const icmp = {
    ping(dst: string, opts: { size?: number; timeoutMs?: number; ttl?: number } = {}): Promise<PingResult> {
      check();
      parseIpv4Address(dst);
      const { size = 56, timeoutMs = 1000, ttl } = opts;
      const args = ['-n', '-c', '1', '-s', String(size), '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000)))];
      if (ttl !== undefined) args.push('-t', String(ttl));
      args.push(dst);
      return new Promise((resolve, reject) => {
        execFile('ping', args, { timeout: timeoutMs + 2000 }, (error, stdout) => {
          const m = /(\d+) bytes from ([\d.]+):.*ttl=(\d+).*time=([\d.]+) ms/.exec(stdout);
          if (m) return resolve({ bytes: Number(m[1]), from: m[2]!, ttl: Number(m[3]), rttMs: Number(m[4]) });
          if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
            return reject(new MorganaError('ERR_ICMP_UNAVAILABLE', 'the socket stack pings with the system ping command, which is not installed'));
          }
          reject(new MorganaError('ERR_PING_TIMEOUT', `no echo reply from ${dst} within ${timeoutMs} ms`));
        });
      });
    },
  };

  const tcp = {
    listen(port: number, onConnection: (connection: Duplex) => void, listenOptions: { backlog?: number } = {}) {
      check();
      assertInteger(port, 'port', 0, 65_535);
      const server = net.createServer((socket) => {
        connections.add(socket);
        socket.on('close', () => connections.delete(socket));
        onConnection(socket);
      });
      servers.add(server);
      return new Promise<TcpListenerV4 & { port: number }>((resolve, reject) => {
        server.once('error', (error) => {
          servers.delete(server);
          reject(socketError(error, `TCP port ${port}`));
        });
        server.listen({ port, host: bind, backlog: listenOptions.backlog ?? 511 }, () => {
          const address = server.address() as net.AddressInfo;
          resolve({
            port: address.port,
            close: () =>
              new Promise<void>((done) => {
                servers.delete(server);
                server.close(() => done());
              }),
          });
        });
      });
    },
    connect(host: string, port: number): Promise<Duplex> {
      check();
      return new Promise((resolve, reject) => {
        const socket = net.connect({ host, port });
        socket.once('connect', () => {
          connections.add(socket);
          socket.on('close', () => connections.delete(socket));
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', (error) => reject(socketError(error, `TCP connect to ${host}:${port}`)));
      });
    },
  };

  return {
    address: bind,
    udp,
    icmp,
    tcp,
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.close();
      sockets.clear();
      for (const c of connections) c.destroy();
      await Promise.all([...servers].map((s) => new Promise<void>((r) => s.close(() => r()))));
      servers.clear();
    },
  };
}
