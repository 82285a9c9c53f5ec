/**
 * TCP for a stack: the Rust engine (`crates/morgana-tcp`) owns every connection of both address
 * families and does all segment processing; this module feeds it received segments, sends what
 * it produces through IPv4 or IPv6, drives its timers from the stack's {@link Clock} (one timer
 * for the engine's next deadline) and turns connections into Node `Duplex` streams shaped like
 * `net.Socket`. Listeners are dual-stack unless `ipv6Only` (or an IPv4 `host`) says otherwise.
 *
 * One crossing per event-loop turn: segments received during the turn are copied into one
 * input buffer (IPv4 addresses as numbers, IPv6 ones as 16 bytes before the segment), and a
 * single `turn` (scheduled as a microtask, or run by the engine's timer) processes them, runs the
 * timers and returns every packet to send in one buffer, every event as `[kind, handle, arg]`
 * triples and the next deadline. Packets to destinations the IP layer has a neighbour entry for
 * come back as whole Ethernet frames (headers written by the IP layer's send path in Rust,
 * {@link IpOutput}); the rest as bare segments, handed to the IP layer's general path (ARP,
 * neighbour discovery, routes, path MTU), which may then install the entry. A connection is
 * touched only to hand it data (`send`) or take data (`recv`).
 * @module
 */
import { KeepAlive } from './keep-alive.js';
import { TcpServer } from './tcp-server.js';
import { Duplex } from 'node:stream';
import { formatIpv4Address, formatIpv6Address } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import { InvalidArgumentError, MorganaError, OutOfRangeError, assertInteger } from '../errors.js';
import { native } from '../native.js';
import { ETHERNET_HEADER_LENGTH, type FrameOffload, GSO_NONE, GSO_TCPV4, GSO_TCPV6, NEEDS_CSUM, RECEIVE_LENGTH_MASK, type ReceiveBatch } from '../net/device.js';
import { Slab } from '../net/slab.js';
import { tsoMax } from './ip-output.js';
import { type InetAddressLike, formatEndpoint, parseInetAddress, zoneInterface } from './inet.js';
import type { IcmpErrorReport, Ipv4Datagram, Ipv4Layer } from './ipv4.js';
import type { Icmpv6ErrorReport, Ipv6Datagram, Ipv6Layer } from './ipv6.js';

const PROTO_TCP = 6;
/** Output length word flags and mask, and input words per segment (from the binding). */
const OUT_IPV6 = native.TCP_OUT_IPV6;
const OUT_FRAME = native.TCP_OUT_FRAME;
const OUT_PARTIAL_CHECKSUM = native.TCP_OUT_PARTIAL_CHECKSUM;
const OUT_LENGTH = native.TCP_OUT_LENGTH;
const IN_WORDS = native.TCP_IN_WORDS;
const IN_CHECKSUM_VERIFIED = native.TCP_IN_CHECKSUM_VERIFIED;
/** Largest super-segment payload when an interface takes TCP super-frames (TSO). */
const GSO_MAX = 65_000;
/** Input batch: bytes, and segments, per turn (a fuller batch runs a turn at once). */
const IN_BYTES = 1 << 20;
const IN_SEGMENTS = 2048;
/** Segments from this size on (super-frames, coalesced ones) are read in place, not batched. */
const IN_PLACE = 8192;
const EPHEMERAL_LOW = 49_152;
const EPHEMERAL_COUNT = 65_536 - EPHEMERAL_LOW;
const READ_CHUNK = 64 * 1024;
/** Output room per turn: at most, at least (else a fresh slab), and the slabs it comes from. */
const OUT_MAX = 512 * 1024;
const OUT_MIN = 128 * 1024;
const OUT_SLAB = 1 << 20;
/** Output slabs whose frames all came back, kept for reuse. */
const OUT_SLABS_KEPT = 4;

const EVENT_CONNECTED = native.TCP_EVENT_CONNECTED;
const EVENT_ACCEPTED = native.TCP_EVENT_ACCEPTED;
const EVENT_READABLE = native.TCP_EVENT_READABLE;
const EVENT_WRITABLE = native.TCP_EVENT_WRITABLE;
const EVENT_PEER_CLOSED = native.TCP_EVENT_PEER_CLOSED;
const EVENT_CLOSED = native.TCP_EVENT_CLOSED;
const EVENT_ERROR = native.TCP_EVENT_ERROR;
/** Connection failure codes: an error event's arg n names entry n − 1. */
const ERROR_NAMES = native.tcpSocketErrorCodes();
const ERROR_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'no route to host',
};

type NativeEngine = InstanceType<typeof native.NativeTcpEngine>;
type FastCalls = ReturnType<typeof native.tcpFastCalls>;

/** Bytes of the scratch buffer strings are encoded in on their way into the engine. */
const STRING_SCRATCH = 16 * 1024;
/** The most bytes a character takes in each encoding a string is written with through it. */
const SCRATCH_BYTES_PER_CHAR: Partial<Record<BufferEncoding, number>> = { utf8: 3, 'utf-8': 3, latin1: 1, binary: 1, ascii: 1 };

const engineErrors = native.tcpErrorCodes();

function engineFailure(result: number, what: string): MorganaError {
  const code = engineErrors[-result - 1] ?? 'ERR_INTERNAL';
  return new MorganaError(code, `${what}: ${code}`);
}

/**
 * The offload metadata of the TCP frame at `out[at..]` (Ethernet + IPv4/IPv6 + TCP): a
 * super-frame to be cut at `gsoSize` payload bytes (0: an ordinary frame), its checksum complete
 * or, with `partial`, holding only the pseudo-header sum for the device to complete.
 */
function tcpFrameOffload(out: Buffer, at: number, gsoSize: number, partial: boolean): FrameOffload {
  const v6 = out[at + 12] === 0x86 && out[at + 13] === 0xdd;
  const csumStart = ETHERNET_HEADER_LENGTH + (v6 ? 40 : (out[at + 14]! & 0x0f) * 4);
  return {
    flags: partial ? NEEDS_CSUM : 0,
    gsoType: gsoSize === 0 ? GSO_NONE : v6 ? GSO_TCPV6 : GSO_TCPV4,
    gsoSize,
    hdrLen: csumStart + (out[at + csumStart + 12]! >> 4) * 4,
    csumStart,
    csumOffset: 16,
  };
}

/**
 * Whether a received batch has a frame that looks like TCP over IPv`family` (EtherType and
 * protocol bytes only): a batch of UDP, ICMP, ARP or neighbour discovery is not worth a call
 * into the engine.
 */
function mayHoldTcp(batch: ReceiveBatch, family: 4 | 6): boolean {
  const { frames, lengths, count, framing } = batch;
  // EtherType 0x0800 with the protocol byte of the IPv4 header, or 0x86dd with IPv6's next header.
  const [typeHigh, typeLow, protocolAt] = family === 4 ? [0x08, 0x00, 23] : [0x86, 0xdd, 20];
  for (let i = 0, at = framing; i < count; at += lengths[i++]! & RECEIVE_LENGTH_MASK) {
    if (frames[at + 12] === typeHigh && frames[at + 13] === typeLow && frames[at + protocolAt] === 6) return true;
  }
  return false;
}

/** No addresses of the other family, for a steer call that is about one. */
const NO_ADDRESSES4 = new Uint32Array(0);
const NO_ADDRESSES6 = Buffer.alloc(0);

/** The error of a call or pending operation that the stack's closing cut short. */
function stackClosed(what: string): MorganaError {
  return new MorganaError('ERR_STACK_CLOSED', `${what}: the stack is closed`);
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
  /**
   * Congestion control of new connections (default `'cubic'`, RFC 9438, as Linux; `'newreno'`
   * is RFC 5681/6582). Per connection: {@link TcpConnectOptions.congestionControl} and
   * {@link TcpConnection.setCongestionControl}.
   */
  congestionControl?: TcpCongestionControl;
}

/**
 * The range of each numeric {@link TcpOptions} field. Buffers: from 1 KiB to 1 GiB (the largest
 * window RFC 7323's scale 14 can offer); delayed ACK at most 500 ms (RFC 1122 §4.2.3.2).
 */
const TCP_OPTION_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  sendBuffer: [1024, 1 << 30],
  recvBuffer: [1024, 1 << 30],
  maxOutOfOrder: [0, 65_535],
  rtoInitialMs: [1, 3_600_000],
  rtoMinMs: [1, 3_600_000],
  rtoMaxMs: [1, 3_600_000],
  timeWaitMs: [0, 3_600_000],
  delayedAckMs: [0, 500],
  synRetries: [0, 255],
  dataRetries: [0, 255],
  maxConnections: [1, 0xffff_ffff],
  challengeAckLimit: [0, 0xffff_ffff],
};
const TCP_BOOLEAN_OPTIONS = ['timestamps', 'synCookies'];

/**
 * Checks {@link TcpOptions} before the engine sees them: unknown fields, numbers outside their
 * range (`ERR_OUT_OF_RANGE` naming the option and its range), wrong types. `createStack` calls it
 * before building anything.
 * @internal
 */
export function validateTcpOptions(options: unknown): asserts options is TcpOptions | undefined {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('tcp options must be an object');
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const range = TCP_OPTION_RANGES[key];
    if (range) assertInteger(value, `tcp.${key}`, range[0], range[1]);
    else if (TCP_BOOLEAN_OPTIONS.includes(key)) {
      if (typeof value !== 'boolean') throw new InvalidArgumentError(`tcp.${key} must be a boolean, got ${typeof value}`);
    } else if (key === 'congestionControl') assertCongestionControl(value);
    else {
      const hint = key === 'mtu' ? ' (the MSS follows the interface MTU)' : '';
      throw new MorganaError('ERR_INVALID_ARG_VALUE', `unknown TCP option tcp.${key}${hint}`);
    }
  }
  const { rtoMinMs = 200, rtoMaxMs = 60_000 } = options as TcpOptions;
  if (rtoMinMs > rtoMaxMs) throw new OutOfRangeError(`tcp.rtoMinMs (${rtoMinMs}) must not exceed tcp.rtoMaxMs (${rtoMaxMs})`);
}

/** The congestion control algorithms of the engine. */
export type TcpCongestionControl = 'newreno' | 'cubic';

const CONGESTION_CONTROLS: readonly string[] = ['newreno', 'cubic'];

function assertCongestionControl(value: unknown): asserts value is TcpCongestionControl {
  if (typeof value !== 'string' || !CONGESTION_CONTROLS.includes(value)) {
    throw new MorganaError('ERR_INVALID_ARG_VALUE', `congestionControl must be one of ${CONGESTION_CONTROLS.join(', ')}, got ${String(value)}`);
  }
}

/** One connection's congestion state and loss-recovery counters, like Linux's `tcp_info`. */
export type TcpConnectionInfo = NonNullable<ReturnType<NativeEngine['connStats']>>;

/** Options of {@link Tcp.listen}. */
export interface TcpListenOptions {
  /**
   * Bound of the SYN queue (half-open connections) and of the accept backlog (default 511, like
   * Node). When the SYN queue is full, SYNs are answered with SYN cookies.
   */
  backlog?: number;
  /** Keep the write side open after the peer's FIN (default false, like `net`). */
  allowHalfOpen?: boolean;
  /**
   * Accept IPv6 connections only (like Node's `ipv6Only`). By default a listener is dual-stack:
   * it accepts IPv4 and (when the stack has IPv6) IPv6 connections.
   */
  ipv6Only?: boolean;
  /**
   * `'0.0.0.0'` listens on IPv4 only, `'::'` (or omitted) on both families. The engine listens on
   * every local address, so no other host is accepted.
   */
  host?: '0.0.0.0' | '::';
}

/** What {@link TcpConnection.setOnRead} takes: a buffer received data is copied into, and its reader. */
export interface TcpOnRead {
  /**
   * Reused for every chunk: at most its length is copied at a time. It is read again for each
   * chunk, so the callback may replace it (with a larger one, say) for the chunks that follow;
   * it must stay a non-empty Buffer.
   */
  buffer: Buffer;
  /** Called with the number of bytes just copied to the start of `buffer`. */
  callback: (nread: number, buffer: Buffer) => unknown;
}

/** Options of {@link Tcp.connect}. */
export interface TcpConnectOptions {
  /** Local port (default: a random free ephemeral port). */
  localPort?: number;
  /** Congestion control of this connection (default: the stack's {@link TcpOptions.congestionControl}). */
  congestionControl?: TcpCongestionControl;
  /** Keep the write side open after the peer's FIN (default false, like `net`). */
  allowHalfOpen?: boolean;
  /**
   * Milliseconds the handshake may take (default {@link DEFAULT_CONNECT_TIMEOUT}, 75 s, the BSD
   * connection-establishment timer); then the connect fails with `ETIMEDOUT` and the attempt is
   * dropped. `Infinity` leaves it to the engine's SYN retries (6, about 127 s). Unlike `net`'s
   * `timeout` option (an idle timeout, here {@link TcpConnection.setTimeout}), this one bounds the
   * connect only. It reports `ETIMEDOUT` even when a soft ICMP error was heard meanwhile (the
   * engine's own SYN timeout reports that one as `EHOSTUNREACH`).
   */
  timeout?: number;
}

/** Default bound of a connect's handshake, in milliseconds (see {@link TcpConnectOptions.timeout}). */
export const DEFAULT_CONNECT_TIMEOUT = 75_000;

/** Engine counters plus the glue's. */
export interface TcpStats extends ReturnType<NativeEngine['stats']> {
  /** Segments IPv4 refused to send (no route, …). */
  sendFailures: number;
}

interface Listener {
  onConnection: (conn: TcpConnection) => void;
  allowHalfOpen: boolean;
  server: TcpServer;
}

/** The engine's listen family argument: 0 dual-stack, 4, 6. */
type ListenFamily = 0 | 4 | 6;

interface PendingConnect {
  resolve: (conn: TcpConnection) => void;
  reject: (error: Error) => void;
  /** Failures are the connection's `'error'` event (createConnection), not only a rejection. */
  emits: boolean;
}

/** The TCP layer of a stack. */
export class Tcp {
  readonly #ip: Ipv4Layer;
  readonly #clock: Clock;
  readonly #random: () => number;
  /** @internal */
  readonly engine: NativeEngine;
  /**
   * @internal The engine's per-request and per-turn calls (`send`, `recv`, `readable`, `turn`,
   * `feed`, `drain`, `takeEvents`) as plain native functions bound to it: without napi-rs's per-call receiver and borrow bookkeeping,
   * which costs several times their work on a small request.
   */
  readonly fast: FastCalls;
  readonly #conns = new Map<number, TcpConnection>();
  /** Listeners by port, per family (a dual-stack listener is in both maps). */
  readonly #listeners4 = new Map<number, Listener>();
  readonly #listeners6 = new Map<number, Listener>();
  #ip6: Ipv6Layer | undefined;
  /** Scratch for the engine's `addresses6` and for `feed`'s IPv6 addresses. */
  readonly #addr6 = Buffer.alloc(32);
  readonly #connecting = new Map<number, PendingConnect>();
  /** Segments received this turn: bytes, `[offset, length, family, src, dst]` per segment. */
  readonly #in = Buffer.allocUnsafe(IN_BYTES);
  readonly #inMeta = new Uint32Array(IN_WORDS * IN_SEGMENTS);
  #inCount = 0;
  #inAt = 0;
  /**
   * Where each turn's output is written: frames for a device that keeps what it is given
   * ({@link NetDevice.writeOwned}, e.g. a switch port) leave without a copy, and the slab moves
   * past them; everything else is copied out and its room reused.
   */
  readonly #outSlab = new Slab(OUT_SLAB, OUT_SLABS_KEPT);
  readonly #outMeta = new Uint32Array(3 * 4096);
  /** @internal Where connections encode the strings they write, one at a time. */
  readonly scratch = Buffer.allocUnsafeSlow(STRING_SCRATCH);
  readonly #events = new Uint32Array(3 * 1024);
  /** `turn`'s result: packets, events, next deadline, more. */
  readonly #result = new Float64Array(4);
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
    validateTcpOptions(options);
    assertInteger(mtu, 'the interface MTU', 68, 65_535);
    // Super-segments (generic segmentation offload) when some interface takes TCP super-frames;
    // they are cut in Rust for any path that does not.
    const gsoMax = ip.interfaces.some((i) => tsoMax(i.eth, 4) > 0 || tsoMax(i.eth, 6) > 0) ? GSO_MAX : 0;
    this.engine = new native.NativeTcpEngine({ ...options, mtu, gsoMax }, key);
    this.fast = native.tcpFastCalls(this.engine, ip.output.native);
    // The first output slab now, as a stack's fixed cost (not counted against its first connections).
    this.#outRoom();
    ip.onReusing(PROTO_TCP, (d) => this.#receive(d));
    ip.onIcmpError(PROTO_TCP, (report) => this.#icmpError(report));
    // Segments in a TAP's received batch go into the engine in one call (see #ingest).
    ip.steerReceive(PROTO_TCP, (batch, mac, locals) => {
      if (mayHoldTcp(batch, 4)) this.#ingest(batch, mac, locals, NO_ADDRESSES6);
    });
  }

  /**
   * Takes the plain TCP segments for this host (to `locals` over IPv4, to `locals6` over
   * IPv6) out of a device's received batch, into the engine in one call, after the segments
   * batched so far (order kept); the rest of the batch goes through the layers frame by frame
   * as before. Schedules the turn that runs the timers and output.
   */
  #ingest(batch: ReceiveBatch, mac: Buffer, locals: Uint32Array, locals6: Buffer): void {
    if (this.#closed) return;
    const count = this.#inCount;
    this.#inCount = 0;
    this.#inAt = 0;
    const now = this.#clock.now();
    const taken = this.fast.ingest(this.#in, this.#inMeta, count, batch.frames, batch.lengths, batch.count, batch.framing, mac, locals, locals6, batch.taken, batch.counts, now);
    if (taken > 0 || count > 0) this.schedule();
  }

  /**
   * Carries TCP over IPv6 too: registers for next header 6 and its ICMPv6 errors. `createStack`
   * calls it when the stack has IPv6; connections of both families share the one engine.
   */
  attachIpv6(ip6: Ipv6Layer): void {
    if (this.#ip6) throw new MorganaError('ERR_STACK_CONFIG', 'TCP already carries IPv6');
    this.#ip6 = ip6;
    ip6.onReusing(PROTO_TCP, (d) => this.#receive6(d));
    ip6.onIcmpError(PROTO_TCP, (report) => this.#icmpError6(report));
    ip6.steerReceive(PROTO_TCP, (batch, mac, locals6) => {
      if (mayHoldTcp(batch, 6)) this.#ingest(batch, mac, NO_ADDRESSES4, locals6);
    });
  }

  /** Returns true: a segment is copied into the batch or read in place, never kept. */
  #receive6(d: Ipv6Datagram): boolean {
    if (this.#closed || d.multicast) return true;
    const family = d.checksumVerified ? 6 | IN_CHECKSUM_VERIFIED : 6;
    if (d.payload.length >= IN_PLACE) {
      this.#addr6.set(d.src, 0);
      this.#addr6.set(d.dst, 16);
      this.#feed(d.payload, family, 0, 0, this.#addr6);
      return true;
    }
    const at = this.#reserve(32 + d.payload.length);
    this.#in.set(d.src, at);
    this.#in.set(d.dst, at + 16);
    this.#push(at + 32, d.payload, family, 0, 0);
    return true;
  }

  /** Room for `size` bytes in the input batch (running a turn first when it is full). */
  #reserve(size: number): number {
    if (this.#inAt + size > IN_BYTES || this.#inCount === IN_SEGMENTS) this.#flush();
    return this.#inAt;
  }

  /**
   * Hands a large segment to the engine in place, after the batch so far (order kept), and
   * schedules the turn that runs the timers and output.
   */
  #feed(payload: Buffer, family: number, src: number, dst: number, addresses6: Buffer): void {
    const count = this.#inCount;
    this.#inCount = 0;
    this.#inAt = 0;
    this.fast.feed(this.#in, this.#inMeta, count, payload, family, src, dst, addresses6, this.#clock.now());
    this.schedule();
  }

  /** Copies one segment into the input batch at `at` and schedules the turn. */
  #push(at: number, payload: Buffer, family: number, src: number, dst: number): void {
    this.#in.set(payload, at);
    const m = this.#inCount++ * IN_WORDS;
    const meta = this.#inMeta;
    meta[m] = at;
    meta[m + 1] = payload.length;
    meta[m + 2] = family;
    meta[m + 3] = src;
    meta[m + 4] = dst;
    this.#inAt = (at + payload.length + 7) & ~7;
    this.schedule();
  }

  /**
   * ICMPv6 errors quoting our segments (RFC 4443): Packet Too Big lowers the segment size;
   * port unreachable, administratively prohibited, reject route and unrecognised next header
   * are hard errors (ECONNREFUSED while connecting); the rest are soft (RFC 1122 §4.2.3.9:
   * remembered, reported as EHOSTUNREACH if the connection then times out).
   */
  #icmpError6(report: Icmpv6ErrorReport): void {
    if (this.#closed) return;
    const { original } = report;
    const hard = (report.type === 1 && (report.code === 1 || report.code === 4 || report.code === 5 || report.code === 6)) || (report.type === 4 && report.code === 1);
    const mtu = report.type === 2 ? (report.mtu ?? 0) : 0;
    if (report.type === 4 && !hard) return; // a parameter problem in our own header: nothing TCP can do
    this.engine.onIcmpError6(original.src, original.dst, original.payload, hard, mtu, this.#clock.now());
    this.schedule();
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

  /** Returns true: a segment is copied into the batch or read in place, never kept. */
  #receive(d: Ipv4Datagram): boolean {
    if (this.#closed || d.broadcast) return true;
    const family = d.checksumVerified ? 4 | IN_CHECKSUM_VERIFIED : 4;
    if (d.payload.length >= IN_PLACE) this.#feed(d.payload, family, d.src, d.dst, this.#addr6);
    else this.#push(this.#reserve(d.payload.length), d.payload, family, d.src, d.dst);
    return true;
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

  /** One turn of the engine: the input batch in; packets, events and the deadline out. */
  #flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    const count = this.#inCount;
    this.#inCount = 0;
    this.#inAt = 0;
    const r = this.#result;
    let out = this.#outRoom();
    this.fast.turn(this.#in, this.#inMeta, count, this.#clock.now(), out, this.#outMeta, this.#events, r);
    let packets = r[0]!;
    const events = r[1]!;
    const deadline = r[2]!;
    const more = r[3]! !== 0;
    // Copy the events: handlers may take further events into the shared array.
    const batch = events > 0 ? this.#events.slice(0, events * 3) : undefined;
    while (packets > 0) {
      this.#outSlab.commit(this.#transmit(out, packets));
      if (!more) break;
      out = this.#outRoom();
      packets = this.fast.drain(out, this.#outMeta, this.#clock.now());
    }
    if (batch) this.#dispatch(batch, events);
    if (more) {
      for (let n = this.fast.takeEvents(this.#events); n > 0; n = this.fast.takeEvents(this.#events)) {
        this.#dispatch(this.#events.slice(0, n * 3), n);
      }
      this.schedule();
    }
    this.#armTimer(deadline);
  }

  /**
   * Sends the `n` packets of a turn's output: whole frames straight to their interface's
   * Ethernet, bare segments through the IP layer's general path, which may then install the
   * destination's neighbour entry so that later packets come back as frames. Returns how many
   * bytes of `out` were given away (up to the end of the last frame a device kept).
   */
  #transmit(out: Buffer, n: number): number {
    const meta = this.#outMeta;
    const ipOutput = this.#ip.output;
    let at = 0;
    let given = 0;
    let lastOffer = -1;
    for (let i = 0; i < n; i++) {
      const word = meta[i * 3]!;
      const len = word & OUT_LENGTH;
      try {
        if ((word & OUT_FRAME) !== 0) {
          const eth = ipOutput.device(meta[i * 3 + 1]!);
          const word3 = meta[i * 3 + 2]!;
          const gsoSize = word3 & 0xffff;
          const partial = (word3 & OUT_PARTIAL_CHECKSUM) !== 0;
          if (!eth) this.#sendFailures++;
          else {
            // Frames given away are lent from the output slab, which is reused once all are back.
            const done = eth.net.writeOwned ? this.#outSlab.lend() : undefined;
            const offload = gsoSize === 0 && !partial ? undefined : tcpFrameOffload(out, at, gsoSize, partial);
            if (eth.writeFrame(out, at, len, offload, true, done)) given = at + len;
          }
        } else if ((word & OUT_IPV6) !== 0) {
          this.#transmit6(out, at, len);
          at += 32;
        } else {
          const dst = meta[i * 3 + 2]!;
          this.#ip.write(dst, PROTO_TCP, { payloads: [out.subarray(at, at + len)], fragment: false, src: meta[i * 3 + 1]! });
          if (dst !== lastOffer) {
            lastOffer = dst;
            this.#ip.offerFastPath(dst);
          }
        }
      } catch {
        this.#sendFailures++;
      }
      at += len;
    }
    return given;
  }

  /** Room for a turn's output: the rest of the output slab, or a fresh one when little is left. */
  #outRoom(): Buffer {
    const left = this.#outSlab.left;
    return this.#outSlab.take(left >= OUT_MIN ? Math.min(left, OUT_MAX) : OUT_MAX);
  }

  /**
   * Sends one bare IPv6 segment of `len` bytes at `out[at+32..]` (its source and destination
   * addresses in the 32 bytes before) through the IPv6 layer. A link-local destination leaves
   * through the interface that owns the source address.
   */
  #transmit6(out: Buffer, at: number, len: number): void {
    const ip6 = this.#ip6;
    if (!ip6) {
      this.#sendFailures++;
      return;
    }
    // Copied: the layer may keep them while the neighbour resolves, and `out` is reused.
    const src = Buffer.from(out.subarray(at, at + 16));
    const dst = Buffer.from(out.subarray(at + 16, at + 32));
    const linkLocal = dst[0] === 0xfe && (dst[1]! & 0xc0) === 0x80;
    const iface = linkLocal ? ip6.findAddress(src)?.iface : undefined;
    ip6.write(dst, PROTO_TCP, { payloads: [out.subarray(at + 32, at + 32 + len)], fragment: false, src, iface });
    ip6.offerFastPath(dst);
  }

  #dispatch(batch: Uint32Array, n: number): void {
    for (let i = 0; i < n; i++) this.#event(batch[i * 3]!, batch[i * 3 + 1]!, batch[i * 3 + 2]!);
  }

  #event(kind: number, handle: number, arg: number): void {
    if (kind === EVENT_ACCEPTED) {
      const v6 = this.engine.info(handle)?.family === 6;
      const listener = (v6 ? this.#listeners6 : this.#listeners4).get(arg);
      this.engine.accept(handle);
      if (!listener) {
        this.engine.abort(handle);
        return;
      }
      const conn = new TcpConnection(this, handle, listener.allowHalfOpen);
      this.#conns.set(handle, conn);
      listener.server._accepted(conn);
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
        conn._pull(arg);
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
        const code = ERROR_NAMES[arg - 1] ?? 'ECONNRESET';
        const error = new MorganaError(code, `${ERROR_TEXT[code] ?? code} (${formatEndpoint(conn.remoteAddress, conn.remotePort)})`);
        const pending = this.#connecting.get(handle);
        this.#connecting.delete(handle);
        // A connection still being opened by connect() fails through its promise only.
        conn._failed(pending && !pending.emits ? undefined : error);
        pending?.reject(error);
        break;
      }
    }
  }

  #armTimer(at: number): void {
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
   * Listens on `port` and calls `onConnection` with every established connection: of both
   * families by default (dual-stack), IPv6 only with `ipv6Only`, IPv4 only with
   * `host: '0.0.0.0'`. One port holds one dual-stack listener or one per family. Throws
   * `EADDRINUSE` when the port is taken.
   */
  listen(port: number, onConnection: (conn: TcpConnection) => void, options: TcpListenOptions = {}): TcpServer {
    if (this.#closed) throw stackClosed(`listen on port ${port}`);
    assertInteger(port, 'port', 1, 65_535);
    const backlog = options.backlog ?? 511;
    assertInteger(backlog, 'backlog', 1, 0xffff_ffff);
    const host = options.host ?? '::';
    if (host !== '::' && host !== '0.0.0.0') {
      throw new MorganaError('ERR_INVALID_ARG_VALUE', `host must be '::' or '0.0.0.0' (a listener takes every local address), got ${String(host)}`);
    }
    if (host === '0.0.0.0' && options.ipv6Only) throw new MorganaError('ERR_INVALID_ARG_VALUE', "ipv6Only needs host '::'");
    const family: ListenFamily = host === '0.0.0.0' ? 4 : options.ipv6Only ? 6 : 0;
    const result = this.engine.listen(port, backlog, family);
    if (result < 0) throw engineFailure(result, `listen on port ${port}`);
    const server = new TcpServer(port, family === 4 ? 'IPv4' : family === 6 ? 'IPv6' : 'dual', () => {
      let open = false;
      if (this.#listeners4.get(port) === listener) open = this.#listeners4.delete(port);
      if (this.#listeners6.get(port) === listener) open = this.#listeners6.delete(port);
      if (open) this.engine.unlisten(port, family);
    });
    const listener: Listener = { onConnection, allowHalfOpen: options.allowHalfOpen ?? false, server };
    if (family !== 6) this.#listeners4.set(port, listener);
    if (family !== 4) this.#listeners6.set(port, listener);
    return server;
  }

  /**
   * Opens a connection to an IPv4 or IPv6 `host` (`'10.0.0.2'`, `'2001:db8::2'`, `'fe80::1%net0'`,
   * a number or 4/16 bytes; `::ffff:a.b.c.d` means IPv4); resolves once it is established,
   * rejects with `ECONNREFUSED`, `ETIMEDOUT`, `EHOSTUNREACH`, `ERR_NO_ROUTE` (also for IPv6 on a
   * stack without it) or `ERR_NO_SOURCE_ADDRESS` (no usable IPv6 address yet, e.g. during DAD),
   * and with `ERR_STACK_CLOSED` when the stack is closed before the connection is established.
   */
  connect(host: InetAddressLike, port: number, options: TcpConnectOptions = {}): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      try {
        this.#start(host, port, options, { resolve, reject, emits: false });
      } catch (error) {
        reject(error);
      }
    });
  }

  /**
   * Opens a connection the way `net.createConnection(port, host, listener)` does: returns the
   * {@link TcpConnection} at once (`readyState` `'opening'`, `pending` true, writes queued), then
   * emits `'connect'` and `'ready'` (`connectListener` is a `'connect'` listener) or `'error'`
   * (`ECONNREFUSED`, `ETIMEDOUT` after `options.timeout`, `EHOSTUNREACH`, `ERR_STACK_CLOSED`)
   * followed by `'close'` with `hadError` true. Bad arguments and a destination without a route
   * throw at once (they need no network round trip), unlike net's asynchronous lookup errors.
   */
  createConnection(host: InetAddressLike, port: number, options: TcpConnectOptions = {}, connectListener?: () => void): TcpConnection {
    const conn = this.#start(host, port, options, { resolve: () => {}, reject: () => {}, emits: true });
    if (connectListener) conn.once('connect', connectListener);
    return conn;
  }

  /** @internal Opens a new engine connection under `conn`, a closed connection object (TcpConnection#connect). */
  _reopen(conn: TcpConnection, host: InetAddressLike, port: number, options: TcpConnectOptions): void {
    this.#start(host, port, options, { resolve: () => {}, reject: () => {}, emits: true }, conn);
  }

  /** Validates, opens the engine connection and registers it as connecting, with its timeout. */
  #start(host: InetAddressLike, port: number, options: TcpConnectOptions, pending: PendingConnect, reuse?: TcpConnection): TcpConnection {
    if (this.#closed) throw stackClosed(`connect to ${formatEndpoint(String(host), port)}`);
    assertInteger(port, 'port', 1, 65_535);
    const timeout = options.timeout ?? DEFAULT_CONNECT_TIMEOUT;
    if (timeout !== Infinity) assertInteger(timeout, 'timeout', 1, 0x7fff_ffff);
    if (options.congestionControl !== undefined) assertCongestionControl(options.congestionControl);
    const handle = this.#open(host, port, options.localPort);
    if (options.congestionControl !== undefined) this.engine.setCongestionControl(handle, options.congestionControl);
    const conn = reuse ? reuse._attach(handle) : new TcpConnection(this, handle, options.allowHalfOpen ?? false, true);
    this.#conns.set(handle, conn);
    const timer = timeout !== Infinity ? this.#clock.setTimer(timeout, () => this.#connectTimedOut(handle, timeout)) : undefined;
    this.#connecting.set(handle, {
      resolve: (c) => {
        timer?.cancel();
        pending.resolve(c);
      },
      reject: (error) => {
        timer?.cancel();
        pending.reject(error);
      },
      emits: pending.emits,
    });
    this.schedule();
    return conn;
  }

  /** A connect's `timeout` passed before the handshake completed: drop the attempt, reject. */
  #connectTimedOut(handle: number, timeout: number): void {
    const pending = this.#connecting.get(handle);
    const conn = this.#conns.get(handle);
    if (!pending || !conn) return;
    this.#connecting.delete(handle);
    const error = new MorganaError(
      'ETIMEDOUT',
      `connect to ${formatEndpoint(conn.remoteAddress, conn.remotePort)} timed out after ${timeout} ms (no answer to the SYN: is the host up and the address right?)`,
    );
    conn._abort(pending.emits ? error : undefined);
    pending.reject(error);
  }

  /** Routes `host`, picks the source address and port, and opens the engine connection. */
  #open(host: InetAddressLike, port: number, localPort: number | undefined): number {
    const dst = parseInetAddress(host, 'host');
    if (localPort !== undefined) assertInteger(localPort, 'localPort', 1, 65_535);
    const now = this.#clock.now();
    if (dst.family === 4) {
      const route = this.#ip.route(dst.v4);
      if (!route) throw new MorganaError('ERR_NO_ROUTE', `no route to ${formatIpv4Address(dst.v4)}`);
      const src = route.iface.address;
      const lp = localPort ?? this.#ephemeralPort((p) => this.engine.inUse(src, p, dst.v4, port, now));
      const handle = this.engine.connect(src, lp, dst.v4, port, now);
      if (handle < 0) throw engineFailure(handle, `connect to ${formatIpv4Address(dst.v4)}:${port}`);
      return handle;
    }
    const text = formatIpv6Address(dst.v6);
    const ip6 = this.#ip6;
    if (!ip6) throw new MorganaError('ERR_NO_ROUTE', `no route to ${text}: the stack has no IPv6`);
    const iface = dst.zone === undefined ? undefined : zoneInterface(ip6, dst.zone);
    const route = ip6.route(dst.v6, iface);
    // Without a route, sourceFor throws the precise error (no route, or no usable source yet).
    const src = route ? route.src : ip6.sourceFor(dst.v6, iface);
    const lp = localPort ?? this.#ephemeralPort((p) => this.engine.inUse6(src, p, dst.v6, port, now));
    const handle = this.engine.connect6(src, lp, dst.v6, port, now);
    if (handle < 0) throw engineFailure(handle, `connect to ${formatEndpoint(text, port)}`);
    return handle;
  }

  #ephemeralPort(inUse: (port: number) => boolean): number {
    for (let i = 0; i < 64; i++) {
      const p = EPHEMERAL_LOW + (this.#random() % EPHEMERAL_COUNT);
      if (!inUse(p)) return p;
    }
    for (let p = EPHEMERAL_LOW; p < 65_536; p++) if (!inUse(p)) return p;
    throw new MorganaError('EADDRNOTAVAIL', 'every ephemeral TCP port is in use towards that peer');
  }

  /** @internal An IPv6 connection's local and remote address as RFC 5952 text. */
  _addresses6(handle: number): [string, string] | undefined {
    const out = this.#addr6;
    if (!this.engine.addresses6(handle, out)) return undefined;
    return [formatIpv6Address(out.subarray(0, 16)), formatIpv6Address(out.subarray(16, 32))];
  }

  /** @internal */
  forget(handle: number): void {
    this.#conns.delete(handle);
    this.#connecting.delete(handle);
  }

  /** Counters (engine and glue). */
  /** The open connections (accepted and connected, not yet closed), for views like `ss`. */
  connections(): TcpConnection[] {
    return [...this.#conns.values()];
  }

  stats(): TcpStats {
    return { ...this.engine.stats(), sendFailures: this.#sendFailures };
  }

  /**
   * Stops the timer; connections are dropped without a word on the wire. Pending connects reject
   * and pending writes fail with `ERR_STACK_CLOSED`; later `listen` and `connect` calls too.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    const servers = new Set([...this.#listeners4.values(), ...this.#listeners6.values()].map((l) => l.server));
    this.#listeners4.clear();
    this.#listeners6.clear();
    for (const server of servers) server._stackClosed();
    for (const [handle, pending] of [...this.#connecting]) {
      const conn = this.#conns.get(handle);
      const to = conn ? ` to ${formatEndpoint(conn.remoteAddress, conn.remotePort)}` : '';
      const error = stackClosed(`connect${to}`);
      pending.reject(error);
      if (pending.emits) conn?._failedOpening(error);
    }
    this.#connecting.clear();
    for (const conn of [...this.#conns.values()]) conn._stackClosed();
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
  /** `'IPv4'` or `'IPv6'` (addresses in RFC 5952 text), like `net.Socket`. */
  readonly remoteFamily: 'IPv4' | 'IPv6';
  /** The local address's family (the same). */
  readonly localFamily: 'IPv4' | 'IPv6';
  /** True until the handshake completes (active opens). */
  connecting: boolean;
  #wantRead = false;
  /** The last read emptied the engine's receive buffer and no readable event came since. */
  #drained = false;
  /** Set by {@link setOnRead}: data goes into this buffer and to this callback, not the stream. */
  #onread: TcpOnRead | undefined;
  #peerEnded = false;
  #endPushed = false;
  #engineGone = false;
  /** Destroyed because the stack closed. */
  #stackClosed = false;
  #pending: { chunk: Buffer; callback: (error?: Error | null) => void } | undefined;
  #bytesRead = 0;
  #bytesWritten = 0;
  #idleMs = 0;
  #idleTimer: Timer | undefined;
  /** When the armed idle timer fires, and the last activity it measures from. */
  #idleDue = 0;
  #lastActive = 0;
  /** An open connection keeps the process alive, as a `net.Socket` does (see keep-alive.ts). */
  #keepAlive = new KeepAlive();
  #hadError = false;

  /** @internal */
  constructor(tcp: Tcp, handle: number, allowHalfOpen: boolean, connecting = false) {
    // Strings reach _write as they are (see #sendString), as they reach net.Socket's.
    super({ allowHalfOpen, decodeStrings: false });
    this.once('close', () => this.#keepAlive.release());
    this.#tcp = tcp;
    this.handle = handle;
    this.connecting = connecting;
    const info = tcp.engine.info(handle);
    const addresses = info?.family === 6 ? tcp._addresses6(handle) : undefined;
    this.localFamily = this.remoteFamily = addresses ? 'IPv6' : 'IPv4';
    this.localAddress = addresses ? addresses[0] : info ? formatIpv4Address(info.localAddress) : '0.0.0.0';
    this.localPort = info?.localPort ?? 0;
    this.remoteAddress = addresses ? addresses[1] : info ? formatIpv4Address(info.remoteAddress) : '0.0.0.0';
    this.remotePort = info?.remotePort ?? 0;
  }

  /**
   * As `net.Socket#connect`: opens a new connection under this object once the old one has
   * closed (after `'close'`), so code that reconnects a socket it keeps works unchanged. The
   * forms are `connect(port, host?, listener?)` and `connect({ port, host, localPort, timeout,
   * congestionControl }, listener?)`; `host` and `port` default to the previous peer's, so
   * `connect()` alone reconnects to it. The object then goes through `'opening'` again (fresh
   * local port, `bytesRead`/`bytesWritten` from 0) to `'connect'`, or to `'error'` and
   * `'close'` with `hadError` true (`ECONNREFUSED`, `ETIMEDOUT`, `EHOSTUNREACH`; a destination
   * without a route or a bad argument arrives the same way, asynchronously, as net's lookup
   * errors do). While connecting, a second `connect()` fails the attempt with `EALREADY`, as
   * net's does; on a connection that is open it throws `EISCONN` (net's leaves such a socket
   * 'opening' for good).
   */
  connect(port?: number | (TcpConnectOptions & { port?: number; host?: InetAddressLike }), host?: InetAddressLike | (() => void), connectListener?: () => void): this {
    const options: TcpConnectOptions & { port?: number; host?: InetAddressLike } = typeof port === 'object' && port !== null ? { ...port } : { port, host: typeof host === 'function' ? undefined : host };
    const listener = typeof host === 'function' ? host : connectListener;
    const target = { host: options.host ?? this.remoteAddress, port: options.port ?? this.remotePort };
    if (this.connecting) {
      if (listener) this.once('connect', listener);
      const error = new MorganaError('EALREADY', `connect EALREADY ${formatEndpoint(String(target.host), target.port)}: a connect is already in progress`);
      process.nextTick(() => this._abort(error));
      return this;
    }
    if (!this.destroyed) {
      throw new MorganaError('EISCONN', `already connected to ${formatEndpoint(this.remoteAddress, this.remotePort)}: connect() reopens a connection once it has closed`);
    }
    if (listener) this.once('connect', listener);
    (this as unknown as { _undestroy(): void })._undestroy();
    this.#wantRead = false;
    this.#drained = false;
    this.#peerEnded = false;
    this.#endPushed = false;
    this.#stackClosed = false;
    this.#hadError = false;
    this.#bytesRead = 0;
    this.#bytesWritten = 0;
    this.#keepAlive = new KeepAlive();
    const keepAlive = this.#keepAlive;
    this.once('close', () => keepAlive.release());
    this.connecting = true;
    try {
      const { port: _p, host: _h, ...rest } = options;
      this.#tcp._reopen(this, target.host, target.port, rest);
      // As net does once connected: a reader that was flowing before the close reads again.
      this.read(0);
    } catch (error) {
      // No engine connection was opened: fail as net does with a lookup error, asynchronously.
      this.#engineGone = true;
      process.nextTick(() => {
        this.connecting = false;
        this.destroy(error as Error);
      });
    }
    return this;
  }

  /** @internal Puts a fresh engine connection under this (reopened) object. */
  _attach(handle: number): this {
    const info = this.#tcp.engine.info(handle);
    const addresses = info?.family === 6 ? this.#tcp._addresses6(handle) : undefined;
    const self = this as { -readonly [K in 'handle' | 'localFamily' | 'remoteFamily' | 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort']: TcpConnection[K] };
    self.handle = handle;
    self.localFamily = self.remoteFamily = addresses ? 'IPv6' : 'IPv4';
    self.localAddress = addresses ? addresses[0] : info ? formatIpv4Address(info.localAddress) : '0.0.0.0';
    self.localPort = info?.localPort ?? 0;
    self.remoteAddress = addresses ? addresses[1] : info ? formatIpv4Address(info.remoteAddress) : '0.0.0.0';
    self.remotePort = info?.remotePort ?? 0;
    this.#engineGone = false;
    this.connecting = true;
    return this;
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

  /**
   * Congestion window, ssthresh, RTT estimates and loss-recovery counters (retransmits, fast
   * retransmits, SACK recoveries, timeouts, tail-loss probes, PAWS drops); `undefined` once the
   * connection is gone.
   */
  info(): TcpConnectionInfo | undefined {
    return this.#engineGone ? undefined : (this.#tcp.engine.connStats(this.handle) ?? undefined);
  }

  /** Switches this connection's congestion control; cwnd and ssthresh carry over. */
  setCongestionControl(algorithm: TcpCongestionControl): this {
    assertCongestionControl(algorithm);
    if (!this.#engineGone) this.#tcp.engine.setCongestionControl(this.handle, algorithm);
    return this;
  }

  /** Like `net.Socket.address()`. */
  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress, family: this.localFamily, port: this.localPort };
  }

  /**
   * As `net.Socket.readyState`: `'opening'` while connecting, then `'open'`, `'readOnly'` (our
   * side ended), `'writeOnly'` (the peer's side ended and was read), `'closed'`.
   */
  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.connecting) return 'opening';
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  /** As `net.Socket.pending`: true while connecting and once destroyed (no connection under it). */
  get pending(): boolean {
    return this.connecting || this.destroyed;
  }

  /**
   * As `net.Socket.resetAndDestroy()`: closes with a RST (unsent and unread data dropped) instead
   * of a FIN; `'close'` then has `hadError` false. Throws nothing on a connection already gone.
   */
  resetAndDestroy(): this {
    if (this.destroyed) return this;
    if (!this.#engineGone) {
      this.#engineGone = true;
      this.#tcp.engine.abort(this.handle);
      this.#tcp.schedule();
    }
    this.destroy();
    return this;
  }

  /**
   * As `net.Socket.destroySoon()`: ends the write side (FIN after the queued data) and destroys
   * the connection once everything written has been handed to the engine.
   */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /**
   * @internal Drops a connection still being opened (its connect timed out); `error` is its
   * `'error'` event (none for a promise-form connect, which rejects instead).
   */
  _abort(error?: Error): void {
    if (!this.#engineGone) {
      this.#engineGone = true;
      this.#tcp.engine.abort(this.handle);
      this.#tcp.schedule();
    }
    this.connecting = false;
    this.destroy(error);
  }

  /**
   * Like `net.Socket`'s `onread` option: from now on received data is copied into
   * `onread.buffer` (up to its length at a time) and handed to `onread.callback(nread, buffer)`
   * as it arrives, instead of going through the stream ('data' events, `read()`). The bytes are
   * the callback's only until it returns: the same buffer takes the next chunk, so a reader that
   * looks at data and drops it (iperf3, a checksum, a parser that copies) allocates nothing per
   * chunk, where the stream allocates a Buffer per chunk (64 KiB at a time, whose turnover drives
   * V8's old-space collections at high rates). The callback's return value is ignored: data is
   * delivered as soon as it is readable. `'end'` and `'close'` come as usual. `undefined`
   * returns to the stream for data that arrives afterwards.
   */
  setOnRead(onread: TcpOnRead | undefined): this {
    if (onread !== undefined) {
      if (typeof onread !== 'object' || onread === null || !Buffer.isBuffer(onread.buffer) || onread.buffer.length === 0 || typeof onread.callback !== 'function') {
        throw new InvalidArgumentError('onread must be { buffer: a non-empty Buffer, callback: a function }');
      }
    }
    this.#onread = onread;
    if (onread !== undefined) this._pull();
    return this;
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

  /**
   * Activity: the idle timeout counts from now. The timer is not re-armed on every read and
   * write (node:http sets and clears a socket's timeout on every request): one armed for a
   * time no later than the new deadline stays, and when it fires early it arms itself again
   * for the rest, as Node's own socket timers are refreshed rather than replaced. A timer
   * left armed after `setTimeout(0)` does nothing when it fires.
   */
  #touch(): void {
    if (this.#idleMs <= 0 || this.destroyed) return;
    const now = this.#tcp.clock.now();
    this.#lastActive = now;
    const due = now + this.#idleMs;
    if (this.#idleTimer !== undefined && this.#idleDue <= due) return;
    this.#idleTimer?.cancel();
    this.#armIdle(now, due);
  }

  #armIdle(now: number, due: number): void {
    this.#idleDue = due;
    this.#idleTimer = this.#tcp.clock.setTimer(due - now, () => {
      this.#idleTimer = undefined;
      if (this.#idleMs <= 0 || this.destroyed) return;
      const at = this.#tcp.clock.now();
      const deadline = this.#lastActive + this.#idleMs;
      if (at < deadline) this.#armIdle(at, deadline);
      else this.emit('timeout');
    });
  }

  /** Keeps the process alive while the connection is open (the default, as `net.Socket`). */
  ref(): this {
    this.#keepAlive.ref();
    return this;
  }

  /** Lets the process exit while the connection is still open. */
  unref(): this {
    this.#keepAlive.unref();
    return this;
  }

  /** @internal */
  _connected(): void {
    this.connecting = false;
    this.emit('connect');
    this.emit('ready');
    // Writes queued while connecting (createConnection) go out now.
    this._drainPending();
  }

  /** @internal A createConnection attempt cut short by the stack's closing: `'error'`, then `'close'`. */
  _failedOpening(error: Error): void {
    this.#stackClosed = true;
    this.connecting = false;
    this.destroy(error);
  }

  override _write(chunk: Buffer | string, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // Nothing to hand over (node:http ends every response with an empty write).
    if (chunk.length === 0 && !this.#engineGone) return callback();
    if (typeof chunk === 'string') {
      if (this.#pending === undefined && !this.connecting && !this.#engineGone && this.#sendString(chunk, encoding, callback)) return;
      chunk = Buffer.from(chunk, encoding);
    }
    this.#touch();
    this.#pending = { chunk, callback };
    this.#tcp.schedule();
    if (!this.connecting) this._drainPending();
  }

  /**
   * Writes a string into the engine through the stack's scratch buffer, without a Buffer made
   * for it (as `net.Socket` writes strings natively; node:http writes every response head as
   * one): false when its encoding or length does not suit, for the caller to convert it. What
   * the engine has no room for yet stays pending as a copy.
   */
  #sendString(text: string, encoding: BufferEncoding, callback: (error?: Error | null) => void): boolean {
    const scratch = this.#tcp.scratch;
    const perChar = SCRATCH_BYTES_PER_CHAR[encoding];
    if (perChar === undefined || text.length * perChar > scratch.length) return false;
    const length = scratch.write(text, 0, encoding);
    this.#touch();
    const n = this.#tcp.fast.send(this.handle, scratch, length);
    if (n < 0) {
      callback(engineFailure(n, 'write'));
      return true;
    }
    this.#bytesWritten += n;
    this.#tcp.schedule();
    if (n === length) callback();
    else this.#pending = { chunk: Buffer.from(scratch.subarray(n, length)), callback };
    return true;
  }

  /** @internal Pushes a pending write into the engine as room allows. */
  _drainPending(): void {
    const pending = this.#pending;
    if (!pending || this.#engineGone) return;
    const n = this.#tcp.fast.send(this.handle, pending.chunk);
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

  /**
   * @internal Moves received data into the stream while it wants more. `readable`: the bytes
   * the engine reported readable at the end of this turn (else asked).
   */
  _pull(readable?: number): void {
    if (this.#engineGone && !this.#peerEnded) return;
    const fast = this.#tcp.fast;
    let moved = false;
    if (readable !== undefined) this.#drained = false;
    const onread = this.#onread;
    if (onread !== undefined && !this.#engineGone && (readable ?? this.#readable()) > 0) {
      // Into the reader's own buffer, as long as anything is readable (or it switches back).
      let n = fast.recv(this.handle, onread.buffer);
      for (; n > 0; n = this.#onread === onread && !this.#engineGone ? fast.recv(this.handle, onread.buffer) : -1) {
        moved = true;
        this.#bytesRead += n;
        onread.callback(n, onread.buffer);
      }
      // Read until nothing was left: the buffer is empty (a switch back leaves it unknown).
      this.#drained = n === 0;
    }
    let available = onread === undefined && this.#onread === undefined && this.#wantRead && !this.#engineGone ? (readable ?? this.#readable()) : 0;
    while (this.#wantRead && !this.#engineGone && available > 0) {
      const size = Math.min(available, READ_CHUNK);
      const chunk = Buffer.allocUnsafe(size);
      const n = fast.recv(this.handle, chunk);
      if (n <= 0) break;
      moved = true;
      this.#bytesRead += n;
      // All that was readable fitted (or a short read emptied the buffer); only a chunk cut at
      // READ_CHUNK may leave more behind.
      this.#drained = n < size || size < READ_CHUNK;
      this.#wantRead = this.push(n === size ? chunk : chunk.subarray(0, n));
      available = this.#drained ? 0 : this.#readable();
    }
    if (moved) {
      this.#touch();
      this.#tcp.schedule();
    }
    if (this.#peerEnded && !this.#endPushed && (this.#engineGone || this.#readable() === 0)) {
      this.#endPushed = true;
      this.push(null);
      // As net.Socket does on EOF: with nothing left unread, 'end' comes now even if nobody
      // reads, so a connection that is ended on both sides closes (and its server can close).
      if (this.readableLength === 0) this.read(0);
    }
  }

  /**
   * Bytes the engine holds for this connection. A read that emptied the buffer makes it 0
   * without asking: the engine raises a readable event for the next byte that arrives (its
   * readable signal is re-armed by every read), and that event's count clears `#drained`.
   */
  #readable(): number {
    return this.#drained ? 0 : this.#tcp.fast.readable(this.handle);
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

  /** @internal The stack closed: the connection goes, a pending write fails with `ERR_STACK_CLOSED`. */
  _stackClosed(): void {
    this.#stackClosed = true;
    this.destroy();
  }

  /** @internal The connection failed (RST, timeout). */
  _failed(error: Error | undefined): void {
    this.#engineGone = true;
    this.#tcp.engine.release(this.handle);
    this.destroy(error);
  }

  /** `'close'` carries `hadError`, as `net.Socket`'s does (a stream's own 'close' has no argument). */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'close' && args.length === 0) return super.emit('close', this.#hadError);
    return super.emit(event, ...args);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error) this.#hadError = true;
    this.connecting = false;
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
    pending?.callback(
      error ?? (this.#stackClosed ? stackClosed('write') : new MorganaError('ERR_STREAM_DESTROYED', 'connection destroyed')),
    );
    this.#tcp.forget(this.handle);
    callback(error);
  }
}

export { TcpServer };
