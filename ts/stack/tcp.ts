/**
 * TCP for a stack: the Rust engine (`crates/morgana-tcp`) owns every connection and does all
 * segment processing; this module feeds it received segments, sends what it produces through
 * IPv4, drives its timers from the stack's {@link Clock} (one timer for the engine's next
 * deadline) and turns connections into Node `Duplex` streams shaped like `net.Socket`.
 *
 * Crossings are batched: segments received in one delivery turn are handed in one by one, then a
 * single `poll` (scheduled as a microtask) produces every segment to send into one buffer with a
 * Uint32Array of lengths and addresses, and every event as `[kind, handle, arg]` triples.
 * @module
 */
import { Duplex } from 'node:stream';
import { formatIpv4Address, type Ipv4AddressLike, toIpv4Number } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { MorganaError, assertInteger } from '../errors.js';
import { native } from '../native.js';
import { ETHERTYPE } from './ethernet.js';
import type { IcmpErrorReport, Ipv4Datagram, Ipv4Layer } from './ipv4.js';

const PROTO_TCP = 6;
const IPV4_HEADER = 20;
const EPHEMERAL_LOW = 49_152;
const EPHEMERAL_COUNT = 65_536 - EPHEMERAL_LOW;
const READ_CHUNK = 64 * 1024;

const EVENT_CONNECTED = 1;
const EVENT_ACCEPTED = 2;
const EVENT_READABLE = 3;
const EVENT_WRITABLE = 4;
const EVENT_PEER_CLOSED = 5;
const EVENT_CLOSED = 6;
const EVENT_ERROR = 7;
const ERROR_NAMES = ['', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH'] as const;
const ERROR_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'no route to host',
};

type NativeEngine = InstanceType<typeof native.NativeTcpEngine>;

const engineErrors = native.tcpErrorCodes();

function engineFailure(result: number, what: string): MorganaError {
  const code = engineErrors[-result - 1] ?? 'ERR_INTERNAL';
  return new MorganaError(code, `${what}: ${code}`);
}

/** Settings of a stack's TCP (all optional). Times are in milliseconds. */
export interface TcpOptions {
  /** Send buffer per connection in bytes (default 512 KiB). */
  sendBuffer?: number;
  /** Receive buffer per connection, the largest window, in bytes (default 512 KiB). */
  recvBuffer?: number;
  /** Out-of-order ranges (runs of contiguous segments past a hole) held per connection (default 64); their bytes are bounded by the receive buffer. */
  maxOutOfOrder?: number;
  /** Initial retransmission timeout (default 1000, RFC 6298). */
  rtoInitialMs?: number;
  /** Minimum retransmission timeout (default 200). */
  rtoMinMs?: number;
  /** Maximum retransmission timeout (default 60 000). */
  rtoMaxMs?: number;
  /** TIME_WAIT, i.e. 2·MSL (default 60 000). */
  timeWaitMs?: number;
  /** Delayed-ACK timeout (default 40). */
  delayedAckMs?: number;
  /** SYN retransmissions before `ETIMEDOUT` (default 6: 127 s). */
  synRetries?: number;
  /** Data retransmissions before `ETIMEDOUT` (default 15). */
  dataRetries?: number;
  /** Offer RFC 7323 timestamps (default true). */
  timestamps?: boolean;
  /** Most connections in every state (default 2^20). */
  maxConnections?: number;
  /** Challenge ACKs per second for the whole stack, RFC 5961 §7 (default 1000). */
  challengeAckLimit?: number;
  /** Answer SYNs with SYN cookies once a listener's SYN queue is full (default true). */
  synCookies?: boolean;
}

/** Options of {@link Tcp.listen}. */
export interface TcpListenOptions {
  /**
   * Bound of the SYN queue (half-open connections) and of the accept backlog (default 511, like
   * Node). When the SYN queue is full, SYNs are answered with SYN cookies.
   */
  backlog?: number;
  /** Keep the write side open after the peer's FIN (default false, like `net`). */
  allowHalfOpen?: boolean;
}

/** Options of {@link Tcp.connect}. */
export interface TcpConnectOptions {
  /** Local port (default: a random free ephemeral port). */
  localPort?: number;
  /** Keep the write side open after the peer's FIN (default false, like `net`). */
  allowHalfOpen?: boolean;
}

/** Engine counters plus the glue's. */
export interface TcpStats extends ReturnType<NativeEngine['stats']> {
  /** Segments IPv4 refused to send (no route, …). */
  sendFailures: number;
}

/** A listening port. */
export interface TcpServer {
  readonly port: number;
  /** Stops accepting; established connections stay. */
  close(): void;
}

interface Listener {
  onConnection: (conn: TcpConnection) => void;
  allowHalfOpen: boolean;
}

interface PendingConnect {
  resolve: (conn: TcpConnection) => void;
  reject: (error: Error) => void;
}

/** The TCP layer of a stack. */
export class Tcp {
  readonly #ip: Ipv4Layer;
  readonly #clock: Clock;
  readonly #random: () => number;
  /** @internal */
  readonly engine: NativeEngine;
  readonly #conns = new Map<number, TcpConnection>();
  readonly #listeners = new Map<number, Listener>();
  readonly #connecting = new Map<number, PendingConnect>();
  readonly #out = Buffer.allocUnsafe(1 << 20);
  readonly #outMeta = new Uint32Array(3 * 4096);
  readonly #events = new Uint32Array(3 * 1024);
  #timer: Timer | undefined;
  #timerAt = -1;
  #scheduled = false;
  #closed = false;
  #sendFailures = 0;

  constructor(ip: Ipv4Layer, clock: Clock, random: () => number, mtu: number, options: TcpOptions = {}) {
    this.#ip = ip;
    this.#clock = clock;
    this.#random = random;
    const key = Buffer.alloc(16);
    for (let i = 0; i < 16; i += 4) key.writeUInt32BE(random() >>> 0, i);
    this.engine = new native.NativeTcpEngine({ mtu, ...options }, key);
    ip.on(PROTO_TCP, (d) => this.#receive(d));
    ip.onIcmpError(PROTO_TCP, (report) => this.#icmpError(report));
  }

  /** ICMP errors quoting our segments: unreachable (hard while connecting), path MTU. */
  #icmpError(report: IcmpErrorReport): void {
    if (this.#closed) return;
    const { original } = report;
    const hard = report.type === 3 && (report.code === 2 || report.code === 3);
    const mtu = report.type === 3 && report.code === 4 ? (report.mtu ?? 0) : 0;
    this.engine.onIcmpError(original.src, original.dst, original.payload, hard, mtu, this.#clock.now());
    this.schedule();
  }

  #receive(d: Ipv4Datagram): void {
    if (this.#closed || d.broadcast) return;
    this.engine.onSegment(d.src, d.dst, d.payload, this.#clock.now());
    this.schedule();
  }

  /** @internal The stack's clock. */
  get clock(): Clock {
    return this.#clock;
  }

  /** @internal Runs the engine at the end of the current turn. */
  schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    for (let round = 0; round < 64; round++) {
      this.engine.poll(this.#clock.now());
      this.#transmit();
      this.#dispatch();
      if (!this.engine.hasPending()) break;
    }
    if (this.engine.hasPending()) setImmediate(() => this.schedule());
    this.#armTimer();
  }

  /**
   * Sends what the engine produced. The engine writes whole IPv4 packets (header included), so
   * when the next hop's MAC is known a packet goes straight to Ethernet, copied once into the
   * device's frame; otherwise (ARP pending, no route) it takes the IPv4 layer's general path.
   */
  #transmit(): void {
    const ttl = this.#ip.defaultTtl;
    let lastDst = -1;
    let route: ReturnType<Ipv4Layer['route']>;
    let mac: Buffer | undefined;
    for (;;) {
      const n = this.engine.drainPackets(this.#out, this.#outMeta, ttl);
      if (n === 0) return;
      let at = 0;
      for (let i = 0; i < n; i++) {
        const len = this.#outMeta[i * 3]!;
        const dst = this.#outMeta[i * 3 + 2]!;
        if (dst !== lastDst) {
          lastDst = dst;
          route = this.#ip.route(dst);
          mac = route ? route.iface.arp.lookup(route.nextHop) : undefined;
        }
        try {
          if (route && mac && len <= route.iface.eth.mtu) {
            this.#fillAt = at;
            this.#fillLength = len;
            this.#fillRequest.size = len;
            route.iface.eth.write(mac, ETHERTYPE.IPV4, this.#fillRequest);
            this.#ip.countSent(); // built in Rust, so IPv4's counters learn of it here
          } else {
            const src = this.#outMeta[i * 3 + 1]!;
            this.#ip.write(dst, PROTO_TCP, { payloads: [this.#out.subarray(at + IPV4_HEADER, at + len)], fragment: false, src });
            lastDst = -1;
          }
        } catch {
          this.#sendFailures++;
        }
        at += len;
      }
    }
  }

  #fillAt = 0;
  #fillLength = 0;
  readonly #fillRequest = {
    size: 0,
    fill: (frame: Buffer): number => {
      this.#out.copy(frame, 0, this.#fillAt, this.#fillAt + this.#fillLength);
      return this.#fillLength;
    },
  };

  #dispatch(): void {
    for (;;) {
      const n = this.engine.takeEvents(this.#events);
      if (n === 0) return;
      // Copy: handlers may re-enter the engine and overwrite the shared array.
      const batch = this.#events.slice(0, n * 3);
      for (let i = 0; i < n; i++) this.#event(batch[i * 3]!, batch[i * 3 + 1]!, batch[i * 3 + 2]!);
    }
  }

  #event(kind: number, handle: number, arg: number): void {
    if (kind === EVENT_ACCEPTED) {
      const listener = this.#listeners.get(arg);
      this.engine.accept(handle);
      if (!listener) {
        this.engine.abort(handle);
        return;
      }
      const conn = new TcpConnection(this, handle, listener.allowHalfOpen);
      this.#conns.set(handle, conn);
      listener.onConnection(conn);
      return;
    }
    const conn = this.#conns.get(handle);
    if (!conn) return;
    switch (kind) {
      case EVENT_CONNECTED: {
        conn._connected();
        const pending = this.#connecting.get(handle);
        this.#connecting.delete(handle);
        pending?.resolve(conn);
        break;
      }
      case EVENT_READABLE:
        conn._pull();
        break;
      case EVENT_WRITABLE:
        conn._drainPending();
        break;
      case EVENT_PEER_CLOSED:
        conn._peerClosed();
        break;
      case EVENT_CLOSED:
        conn._engineClosed();
        break;
      case EVENT_ERROR: {
        const code = ERROR_NAMES[arg] ?? 'ECONNRESET';
        const error = new MorganaError(code, `${ERROR_TEXT[code] ?? code} (${conn.remoteAddress}:${conn.remotePort})`);
        const pending = this.#connecting.get(handle);
        this.#connecting.delete(handle);
        // A connection still being opened fails through its promise only.
        conn._failed(pending ? undefined : error);
        pending?.reject(error);
        break;
      }
    }
  }

  #armTimer(): void {
    const at = this.engine.nextDeadline();
    if (at < 0) {
      this.#timer?.cancel();
      this.#timer = undefined;
      this.#timerAt = -1;
      return;
    }
    if (this.#timer && this.#timerAt === at) return;
    this.#timer?.cancel();
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(Math.max(0, at - this.#clock.now()), () => {
      this.#timer = undefined;
      this.#timerAt = -1;
      this.#flush();
    });
  }

  /**
   * Listens on `port` and calls `onConnection` with every established connection.
   * Throws `EADDRINUSE` when the port is taken.
   */
  listen(port: number, onConnection: (conn: TcpConnection) => void, options: TcpListenOptions = {}): TcpServer {
    assertInteger(port, 'port', 1, 65_535);
    const backlog = options.backlog ?? 511;
    assertInteger(backlog, 'backlog', 1, 0xffff_ffff);
    const result = this.engine.listen(port, backlog);
    if (result < 0) throw engineFailure(result, `listen on port ${port}`);
    this.#listeners.set(port, { onConnection, allowHalfOpen: options.allowHalfOpen ?? false });
    return {
      port,
      close: () => {
        this.#listeners.delete(port);
        this.engine.unlisten(port);
      },
    };
  }

  /**
   * Opens a connection; resolves once it is established, rejects with `ECONNREFUSED`,
   * `ETIMEDOUT` or `ERR_NO_ROUTE`.
   */
  connect(host: Ipv4AddressLike, port: number, options: TcpConnectOptions = {}): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      try {
        assertInteger(port, 'port', 1, 65_535);
        const dst = toIpv4Number(host, 'host');
        const route = this.#ip.route(dst);
        if (!route) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv4Address(dst)}`);
        const src = route.iface.address;
        const localPort = options.localPort ?? this.#ephemeralPort(src, dst, port);
        const handle = this.engine.connect(src, localPort, dst, port, this.#clock.now());
        if (handle < 0) throw engineFailure(handle, `connect to ${formatIpv4Address(dst)}:${port}`);
        const conn = new TcpConnection(this, handle, options.allowHalfOpen ?? false, true);
        this.#conns.set(handle, conn);
        this.#connecting.set(handle, { resolve, reject });
        this.schedule();
      } catch (error) {
        reject(error);
      }
    });
  }

  #ephemeralPort(src: number, dst: number, dstPort: number): number {
    for (let i = 0; i < 64; i++) {
      const p = EPHEMERAL_LOW + (this.#random() % EPHEMERAL_COUNT);
      if (!this.engine.inUse(src, p, dst, dstPort)) return p;
    }
    for (let p = EPHEMERAL_LOW; p < 65_536; p++) if (!this.engine.inUse(src, p, dst, dstPort)) return p;
    throw new MorganaError('EADDRNOTAVAIL', 'every ephemeral TCP port is in use towards that peer');
  }

  /** @internal */
  forget(handle: number): void {
    this.#conns.delete(handle);
    this.#connecting.delete(handle);
  }

  /** Counters (engine and glue). */
  stats(): TcpStats {
    return { ...this.engine.stats(), sendFailures: this.#sendFailures };
  }

  /** Stops the timer; connections are dropped without a word on the wire. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const conn of [...this.#conns.values()]) conn.destroy();
  }
}

/**
 * A TCP connection as a Node `Duplex`, shaped like `net.Socket`: backpressure both ways,
 * `end()` half-closes (FIN), `destroy()` closes (RST when received data is unread),
 * `'error'` carries `ECONNREFUSED`/`ECONNRESET`/`ETIMEDOUT` codes, `'close'` comes last.
 */
export class TcpConnection extends Duplex {
  readonly #tcp: Tcp;
  /** The engine's handle. */
  readonly handle: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly remoteFamily = 'IPv4';
  /** True until the handshake completes (active opens). */
  connecting: boolean;
  #wantRead = false;
  #peerEnded = false;
  #endPushed = false;
  #engineGone = false;
  #pending: { chunk: Buffer; callback: (error?: Error | null) => void } | undefined;
  #bytesRead = 0;
  #bytesWritten = 0;
  #idleMs = 0;
  #idleTimer: Timer | undefined;

  /** @internal */
  constructor(tcp: Tcp, handle: number, allowHalfOpen: boolean, connecting = false) {
    super({ allowHalfOpen, decodeStrings: true });
    this.#tcp = tcp;
    this.handle = handle;
    this.connecting = connecting;
    const info = tcp.engine.info(handle);
    this.localAddress = info ? formatIpv4Address(info.localAddress) : '0.0.0.0';
    this.localPort = info?.localPort ?? 0;
    this.remoteAddress = info ? formatIpv4Address(info.remoteAddress) : '0.0.0.0';
    this.remotePort = info?.remotePort ?? 0;
  }

  /** Bytes received and handed to the stream. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Bytes accepted by the engine. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** The engine's state name (`ESTABLISHED`, `FIN-WAIT-2`, …), or `CLOSED`. */
  get state(): string {
    return this.#engineGone ? 'CLOSED' : (this.#tcp.engine.info(this.handle)?.state ?? 'CLOSED');
  }

  /** Like `net.Socket.address()`. */
  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress, family: 'IPv4', port: this.localPort };
  }

  /** Turns Nagle's algorithm off (`true`, the default argument) or on. */
  setNoDelay(noDelay = true): this {
    if (!this.#engineGone) this.#tcp.engine.setNoDelay(this.handle, noDelay);
    this.#tcp.schedule();
    return this;
  }

  /**
   * Enables keep-alive: after `initialDelay` ms idle, probes every `interval` ms (default 75 s),
   * and after `count` (default 9) unanswered probes the connection fails with `ETIMEDOUT`.
   */
  setKeepAlive(enable = false, initialDelay = 0, options: { interval?: number; count?: number } = {}): this {
    if (!this.#engineGone) {
      const idle = initialDelay > 0 ? initialDelay : 7_200_000;
      this.#tcp.engine.setKeepAlive(this.handle, enable, idle, options.interval ?? 75_000, options.count ?? 9, this.#tcp.clock.now());
      this.#tcp.schedule();
    }
    return this;
  }

  /** Like `net.Socket.setTimeout`: `'timeout'` after `ms` without activity (0 turns it off). */
  setTimeout(ms: number, callback?: () => void): this {
    this.#idleMs = ms;
    if (callback) this.once('timeout', callback);
    this.#touch();
    return this;
  }

  #touch(): void {
    this.#idleTimer?.cancel();
    this.#idleTimer = undefined;
    if (this.#idleMs > 0 && !this.destroyed) {
      this.#idleTimer = this.#tcp.clock.setTimer(this.#idleMs, () => {
        this.#idleTimer = undefined;
        this.emit('timeout');
      });
    }
  }

  /** No-ops, for `net.Socket` compatibility. */
  ref(): this {
    return this;
  }

  /** No-ops, for `net.Socket` compatibility. */
  unref(): this {
    return this;
  }

  /** @internal */
  _connected(): void {
    this.connecting = false;
    this.emit('connect');
    this.emit('ready');
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#touch();
    this.#pending = { chunk, callback };
    this.#tcp.schedule();
    if (!this.connecting) this._drainPending();
  }

  /** @internal Pushes a pending write into the engine as room allows. */
  _drainPending(): void {
    const pending = this.#pending;
    if (!pending || this.#engineGone) return;
    const n = this.#tcp.engine.send(this.handle, pending.chunk);
    if (n < 0) {
      this.#pending = undefined;
      pending.callback(engineFailure(n, 'write'));
      return;
    }
    this.#bytesWritten += n;
    this.#tcp.schedule();
    if (n === pending.chunk.length) {
      this.#pending = undefined;
      pending.callback();
    } else {
      pending.chunk = pending.chunk.subarray(n);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.#engineGone) {
      this.#tcp.engine.shutdown(this.handle);
      this.#tcp.schedule();
    }
    callback();
  }

  override _read(): void {
    this.#wantRead = true;
    this._pull();
  }

  /** @internal Moves received data into the stream while it wants more. */
  _pull(): void {
    if (this.#engineGone && !this.#peerEnded) return;
    const engine = this.#tcp.engine;
    let moved = false;
    while (this.#wantRead && !this.#engineGone) {
      const available = engine.readable(this.handle);
      if (available === 0) break;
      const chunk = Buffer.allocUnsafe(Math.min(available, READ_CHUNK));
      const n = engine.recv(this.handle, chunk);
      if (n <= 0) break;
      moved = true;
      this.#bytesRead += n;
      this.#wantRead = this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    }
    if (moved) {
      this.#touch();
      this.#tcp.schedule();
    }
    if (this.#peerEnded && !this.#endPushed && (this.#engineGone || engine.readable(this.handle) === 0)) {
      this.#endPushed = true;
      this.push(null);
    }
  }

  /** @internal The peer sent FIN. */
  _peerClosed(): void {
    this.#peerEnded = true;
    this._pull();
  }

  /** @internal Both directions are finished in the engine. */
  _engineClosed(): void {
    this.#peerEnded = true;
    this._pull();
  }

  /** @internal The connection failed (RST, timeout). */
  _failed(error: Error | undefined): void {
    this.#engineGone = true;
    this.#tcp.engine.release(this.handle);
    this.destroy(error);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#idleTimer?.cancel();
    if (!this.#engineGone) {
      this.#engineGone = true;
      const engine = this.#tcp.engine;
      const state = engine.info(this.handle)?.state;
      if (state === 'CLOSED') engine.release(this.handle);
      else if (error || (this.readableLength > 0 && !this.readableEnded)) engine.abort(this.handle);
      else engine.close(this.handle);
      this.#tcp.schedule();
    }
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.callback(error ?? new MorganaError('ERR_STREAM_DESTROYED', 'connection destroyed'));
    this.#tcp.forget(this.handle);
    callback(error);
  }
}
