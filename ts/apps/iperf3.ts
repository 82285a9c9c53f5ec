/**
 * An iperf3-protocol server and client on a Morgana stack, so that the standard `iperf3` tool can
 * measure Morgana and Morgana can measure a kernel `iperf3 -s`.
 *
 * The control protocol: the client opens a TCP control connection and sends a 37-byte cookie
 * (36 printable characters and a NUL). The server drives the test by writing one-byte states on
 * it: PARAM_EXCHANGE (the client answers with its parameters as JSON, prefixed by a 32-bit
 * big-endian length), CREATE_STREAMS (the client opens `parallel` data streams per direction:
 * TCP connections that each send the cookie first, or UDP streams opened with a connect
 * datagram, see `iperf3-udp.ts`), TEST_START and TEST_RUNNING (data flows: client to server,
 * server to client in reverse mode, both ways at once in bidirectional mode, where the client
 * opens its sending streams first). The client ends the test with TEST_END when its duration
 * (plus the omitted seconds) has passed or its byte or block count has been transferred; the
 * server answers EXCHANGE_RESULTS, the client sends its per-stream results as JSON and reads the
 * server's, the server writes DISPLAY_RESULTS and the client closes with IPERF_DONE.
 *
 * Both ends count what they send and receive, report it every `interval` seconds, forget what
 * was counted during the first `omit` seconds (TCP slow start), and build a result shaped like
 * `iperf3 -J` output from their own counts and the peer's.
 * @module
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { MorganaError, assertInteger } from '../errors.js';
import type { Stack } from '../stack/index.js';
import type { TcpConnection, TcpServer } from '../stack/tcp.js';
import type { UdpPeer, UdpSocket } from '../stack/udp.js';
import {
  IPERF3_UDP_CONNECT_MSG,
  IPERF3_UDP_CONNECT_REPLY,
  IPERF3_UDP_DEFAULT_BLOCK,
  IPERF3_UDP_DEFAULT_RATE,
  IPERF3_UDP_LEGACY_CONNECT_MSG,
  IPERF3_UDP_LEGACY_CONNECT_REPLY,
  IPERF3_UDP_MAX_BLOCK,
  IPERF3_UDP_MIN_BLOCK,
  UdpReceiveStats,
  connectByteOrder,
  udpConnectDatagram,
  udpHeaderLength,
  wallClock,
  writeUdpHeader,
} from './iperf3-udp.js';

/** iperf3's control-connection states (one signed byte each). */
export const IPERF3_STATE = {
  TEST_START: 1,
  TEST_RUNNING: 2,
  TEST_END: 4,
  PARAM_EXCHANGE: 9,
  CREATE_STREAMS: 10,
  SERVER_TERMINATE: 11,
  CLIENT_TERMINATE: 12,
  EXCHANGE_RESULTS: 13,
  DISPLAY_RESULTS: 14,
  IPERF_START: 15,
  IPERF_DONE: 16,
  ACCESS_DENIED: -1,
  SERVER_ERROR: -2,
} as const;

/** The cookie's length on the wire (36 characters and a NUL). */
export const IPERF3_COOKIE_SIZE = 37;
/** iperf3's default port. */
export const IPERF3_DEFAULT_PORT = 5201;
/** iperf3's default TCP block size (128 KiB). */
export const IPERF3_DEFAULT_BLOCK = 128 * 1024;
/** iperf3's largest TCP block (1 MiB). */
const MAX_TCP_BLOCK = 1 << 20;
/** iperf3's limit on streams per direction. */
const MAX_STREAMS = 128;

const MAX_JSON = 1 << 20;
/** iperf3's i_errno for "not implemented" (sent with SERVER_ERROR). */
const IEUNIMP = 13;
/** iperf3's i_errno for a bad block size. */
const IEBLOCKSIZE = 7;
/** iperf3's i_errno for "unable to listen for a stream". */
const IESTREAMLISTEN = 105;
/** How long a client waits for the server to answer a UDP stream's connect datagram. */
const UDP_CONNECT_TIMEOUT_MS = 10_000;
/** The client sends the connect datagram again after this long without an answer. */
const UDP_CONNECT_RETRY_MS = 1_000;
/** Datagrams one pacing tick may send at most, so a stalled event loop does not burst unboundedly. */
const UDP_BURST_LIMIT = 1_000;

/** Transport of a test's data streams. */
export type Iperf3Protocol = 'TCP' | 'UDP';

/**
 * Totals of one direction of a test, shaped like iperf3's `sum_sent` / `sum_received` (and, for
 * UDP, `sum`). The UDP fields are present in UDP tests only.
 */
export interface Iperf3Sum {
  start: number;
  end: number;
  seconds: number;
  bytes: number;
  bits_per_second: number;
  /** Present for the sender when it knows its retransmissions. */
  retransmits?: number;
  /** UDP: the receiver's jitter estimate (RFC 1889), milliseconds (0 in `sum_sent`). */
  jitter_ms?: number;
  /** UDP: datagrams lost on the way (0 in `sum_sent`). */
  lost_packets?: number;
  /** UDP: datagrams sent (`sum_sent`, `sum`) or expected by the receiver (`sum_received`). */
  packets?: number;
  /** UDP: 100 × lost / packets. */
  lost_percent?: number;
  /**
   * iperf3's flag: for TCP, whether this end sent the data summed; for UDP, true in `sum_sent`
   * and false in `sum_received`.
   */
  sender: boolean;
}

/** A TCP stream's totals, seen from both ends. */
export interface Iperf3TcpStreamEnd {
  sender: Iperf3Sum & { id: number };
  receiver: Iperf3Sum & { id: number };
}

/** A UDP stream's totals: the sender's bytes and packets with the receiver's loss and jitter. */
export interface Iperf3UdpStreamEnd {
  udp: Iperf3Sum & { id: number; out_of_order: number };
}

/** One stream during one reporting interval. */
export interface Iperf3IntervalStream {
  id: number;
  start: number;
  end: number;
  seconds: number;
  bytes: number;
  bits_per_second: number;
  /** UDP: datagrams sent (sender) or expected (receiver) in the interval. */
  packets?: number;
  /** UDP receiver: jitter at the end of the interval, milliseconds. */
  jitter_ms?: number;
  /** UDP receiver: datagrams lost in the interval. */
  lost_packets?: number;
  lost_percent?: number;
  /** Counted during the omitted seconds at the start (not part of the totals). */
  omitted: boolean;
  /** Whether this end sent the stream's data. */
  sender: boolean;
}

/** Sum of one direction's streams over one interval. */
export type Iperf3IntervalSum = Omit<Iperf3IntervalStream, 'id'>;

/** One reporting interval, as in iperf3's `intervals`. */
export interface Iperf3Interval {
  streams: Iperf3IntervalStream[];
  /** The client-to-server direction in a bidirectional test, else the only one. */
  sum: Iperf3IntervalSum;
  /** Bidirectional tests: the server-to-client direction. */
  sum_bidir_reverse?: Iperf3IntervalSum;
}

/** A test's parameters, as the result reports them (iperf3's `start.test_start`). */
export interface Iperf3TestStart {
  protocol: Iperf3Protocol;
  /** Streams per direction. */
  num_streams: number;
  blksize: number;
  omit: number;
  /** Seconds, 0 when the test is bounded by `bytes` or `blocks`. */
  duration: number;
  bytes: number;
  blocks: number;
  reverse: 0 | 1;
  bidir: 0 | 1;
  /** Bits per second per stream, 0 for unlimited. */
  target_bitrate: number;
}

/** One test's outcome, shaped like (a subset of) `iperf3 -J` output. */
export interface Iperf3Result {
  start: {
    version: string;
    cookie: string;
    connected: Array<{ id: number; local_host: string; local_port: number; remote_host: string; remote_port: number }>;
    test_start: Iperf3TestStart;
  };
  intervals: Iperf3Interval[];
  end: {
    /** TCP tests: `{ sender, receiver }` per stream; UDP tests: `{ udp }`. */
    streams: Array<Iperf3TcpStreamEnd | Iperf3UdpStreamEnd>;
    sum_sent: Iperf3Sum;
    sum_received: Iperf3Sum;
    /** UDP tests: iperf3's combined summary (the sender's bytes, the receiver's loss). */
    sum?: Iperf3Sum;
    /** Bidirectional tests: the server-to-client direction. */
    sum_sent_bidir_reverse?: Iperf3Sum;
    sum_received_bidir_reverse?: Iperf3Sum;
    sum_bidir_reverse?: Iperf3Sum;
    cpu_utilization_percent: {
      host_total: number;
      host_user: number;
      host_system: number;
      remote_total: number;
      remote_user: number;
      remote_system: number;
    };
  };
}

/** What both ends of a test agree on (from the client's parameters). */
interface TestSpec {
  protocol: Iperf3Protocol;
  parallel: number;
  reverse: boolean;
  bidir: boolean;
  duration: number;
  bytes: number;
  blocks: number;
  omit: number;
  blksize: number;
  /** Bits per second per sending stream; 0 is unlimited. */
  rate: number;
  counters64: boolean;
  /** Microseconds between pacing decisions. */
  pacingUs: number;
}

/** The parameters a client sends (the subset Morgana reads or writes). */
interface Params {
  tcp?: boolean;
  udp?: boolean;
  sctp?: boolean;
  time?: number;
  num?: number;
  blockcount?: number;
  parallel?: number;
  reverse?: boolean;
  bidirectional?: boolean;
  len?: number;
  omit?: number;
  bandwidth?: number;
  pacing_timer?: number;
  udp_counters_64bit?: number;
  client_version?: string;
}

/** One stream of the results JSON each side sends the other. */
interface PeerStream {
  id: number;
  bytes: number;
  retransmits: number;
  jitter: number;
  errors: number;
  omitted_errors?: number;
  packets: number;
  omitted_packets?: number;
  start_time?: number;
  end_time?: number;
}

/** The results JSON each side sends the other. */
interface PeerResults {
  cpu_util_total: number;
  cpu_util_user: number;
  cpu_util_system: number;
  sender_has_retransmits: number;
  streams: PeerStream[];
}

function protocolError(message: string): MorganaError {
  return new MorganaError('ERR_IPERF3_PROTOCOL', message);
}

/** Reads exact byte counts from a connection (the control channel, and cookies of data streams). */
class ByteReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: (() => void) | undefined;
  #ended: Error | undefined;
  readonly #conn: Duplex;
  readonly #onData = (chunk: Buffer): void => {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#wake();
  };
  readonly #onEnd = (): void => {
    this.#ended ??= protocolError('connection closed by the peer');
    this.#wake();
  };
  readonly #onError = (error: Error): void => {
    this.#ended ??= error;
    this.#wake();
  };

  constructor(conn: Duplex) {
    this.#conn = conn;
    conn.on('data', this.#onData);
    conn.on('end', this.#onEnd);
    conn.on('close', this.#onEnd);
    conn.on('error', this.#onError);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Resolves with exactly `n` bytes; rejects when the connection ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.#length < n) {
      if (this.#ended) throw this.#ended;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    return out;
  }

  /** A state byte, signed. */
  async state(): Promise<number> {
    return (await this.read(1)).readInt8(0);
  }

  /** A length-prefixed JSON value. */
  async json(): Promise<unknown> {
    const length = (await this.read(4)).readUInt32BE(0);
    if (length === 0 || length > MAX_JSON) throw protocolError(`implausible JSON length ${length}`);
    const text = (await this.read(length)).toString('utf8');
    try {
      return JSON.parse(text.replace(/\0+$/, ''));
    } catch {
      throw protocolError('malformed JSON on the control connection');
    }
  }

  /** Stops reading; returns what was buffered beyond the last read. */
  detach(): Buffer {
    this.#conn.off('data', this.#onData);
    this.#conn.off('end', this.#onEnd);
    this.#conn.off('close', this.#onEnd);
    this.#conn.off('error', this.#onError);
    const rest = Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return rest;
  }
}

function writeState(conn: Duplex, state: number): void {
  const b = Buffer.alloc(1);
  b.writeInt8(state, 0);
  conn.write(b);
}

function writeJson(conn: Duplex, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  conn.write(Buffer.concat([head, body]));
}

function writeServerError(conn: Duplex, code: number): void {
  writeState(conn, IPERF3_STATE.SERVER_ERROR);
  const codes = Buffer.alloc(8);
  codes.writeInt32BE(code, 0);
  conn.write(codes);
}

const COOKIE_CHARS = 'abcdefghijklmnopqrstuvwxyz234567';

/** A fresh cookie: 36 random base32 characters and a NUL, as iperf3 makes them. */
export function makeIperf3Cookie(random: (n: number) => Uint8Array): Buffer {
  const bytes = random(IPERF3_COOKIE_SIZE - 1);
  const cookie = Buffer.alloc(IPERF3_COOKIE_SIZE);
  for (let i = 0; i < IPERF3_COOKIE_SIZE - 1; i++) cookie[i] = COOKIE_CHARS.charCodeAt(bytes[i]! % 32);
  return cookie;
}

function cookieText(cookie: Buffer): string {
  const nul = cookie.indexOf(0);
  return cookie.subarray(0, nul < 0 ? cookie.length : nul).toString('latin1');
}

/** iperf3 numbers its streams 1, 3, 4, 5, … (the second stream gets 3); both sides must agree. */
function streamId(index: number): number {
  return index === 0 ? 1 : index + 2;
}

/** Parses a client's parameters into a test, or explains (with an iperf3 error code) why not. */
function specFromParams(params: Params): TestSpec | { error: string; code: number } {
  if (params.sctp || (!params.udp && params.tcp === false)) return { error: 'only TCP and UDP tests are supported', code: IEUNIMP };
  const protocol: Iperf3Protocol = params.udp ? 'UDP' : 'TCP';
  const int = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? Math.floor(v) : fallback);
  const blksize = int(params.len, protocol === 'UDP' ? IPERF3_UDP_DEFAULT_BLOCK : IPERF3_DEFAULT_BLOCK);
  const counters64 = int(params.udp_counters_64bit, 0) !== 0;
  const [minBlock, maxBlock] = protocol === 'UDP' ? [udpHeaderLength(counters64), IPERF3_UDP_MAX_BLOCK] : [1, MAX_TCP_BLOCK];
  if (blksize < minBlock || blksize > maxBlock) return { error: `block size ${blksize} outside [${minBlock}, ${maxBlock}]`, code: IEBLOCKSIZE };
  return {
    protocol,
    parallel: Math.max(1, Math.min(MAX_STREAMS, int(params.parallel, 1))),
    reverse: Boolean(params.reverse),
    bidir: Boolean(params.bidirectional),
    duration: Math.max(0, int(params.time, 10)),
    bytes: Math.max(0, int(params.num, 0)),
    blocks: Math.max(0, int(params.blockcount, 0)),
    omit: Math.max(0, Math.min(600, int(params.omit, 0))),
    blksize,
    rate: Math.max(0, int(params.bandwidth, protocol === 'UDP' ? IPERF3_UDP_DEFAULT_RATE : 0)),
    counters64,
    pacingUs: Math.max(1, int(params.pacing_timer, 1000)),
  };
}

function paramsFromSpec(spec: TestSpec): Params {
  const params: Params = {
    ...(spec.protocol === 'UDP' ? { udp: true } : { tcp: true }),
    omit: spec.omit,
    time: spec.duration,
    num: spec.bytes,
    blockcount: spec.blocks,
    parallel: spec.parallel,
    len: spec.blksize,
    pacing_timer: spec.pacingUs,
    client_version: 'morgana',
  };
  if (spec.reverse) params.reverse = true;
  if (spec.bidir) params.bidirectional = true;
  if (spec.rate > 0) params.bandwidth = spec.rate;
  if (spec.counters64) params.udp_counters_64bit = 1;
  return params;
}

/** CPU use of this process since `since`, as iperf3 reports it (percent of wall time). */
function cpuPercent(since: NodeJS.CpuUsage, wallMs: number): { total: number; user: number; system: number } {
  const used = process.cpuUsage(since);
  const wallUs = Math.max(1, wallMs * 1000);
  const user = (used.user / wallUs) * 100;
  const system = (used.system / wallUs) * 100;
  return { total: user + system, user, system };
}

function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? (bytes * 8) / seconds : 0;
}

function sum(seconds: number, bytes: number, sender: boolean): Iperf3Sum {
  return { start: 0, end: seconds, seconds, bytes, bits_per_second: rate(bytes, seconds), sender };
}

function percent(part: number, whole: number): number {
  return whole > 0 ? (100 * part) / whole : 0;
}

/** What a stream's peer reported about it in the results exchange. */
interface PeerView {
  bytes: number;
  jitter: number;
  errors: number;
  omittedErrors: number;
  packets: number;
  omittedPackets: number;
  /** The peer's measuring time, or undefined when it did not say. */
  seconds: number | undefined;
}

/**
 * One data stream of a test: what this end counts of it. Senders count what they hand to the
 * transport; receivers what arrives while the test runs.
 */
abstract class DataStream {
  /** Bytes handed to the transport, from the start (including omitted seconds). */
  bytesSent = 0;
  /** `bytesSent` when the omitted seconds ended. */
  bytesSentOmit = 0;
  /** Bytes received since the omitted seconds ended. */
  bytesReceived = 0;
  /** Bytes sent or received in the current interval. */
  intervalBytes = 0;
  /** UDP: datagrams sent (sender). */
  datagramsSent = 0;
  /** UDP receiver accounting, or undefined (TCP, or a UDP sender). */
  readonly udpStats: UdpReceiveStats | undefined;
  /** Packet, loss and reordering counts when the omitted seconds ended. */
  omittedPackets = 0;
  omittedErrors = 0;
  omittedOutOfOrder = 0;
  /** Counts at the start of the current interval (UDP). */
  intervalStartPackets = 0;
  intervalStartErrors = 0;
  /** `performance.now()` at the start of the measured time (reset when omitting ends). */
  startMs = 0;
  /** Start of the current interval. */
  intervalStartMs = 0;
  /** End of the measured time. */
  endMs = 0;
  /** Receivers count only while the test runs. */
  counting = false;
  /** When the first byte was counted (a client's receiving streams may count before TEST_RUNNING is read). */
  firstCountedMs: number | undefined;
  peer: PeerView | undefined;

  constructor(
    readonly session: Session,
    readonly id: number,
    readonly sender: boolean,
  ) {
    this.udpStats = session.spec.protocol === 'UDP' && !sender ? new UdpReceiveStats(session.spec.counters64) : undefined;
  }

  abstract readonly addresses: { local_host: string; local_port: number; remote_host: string; remote_port: number };
  /** Starts sending (senders only). */
  abstract startSending(): void;
  abstract stopSending(): void;
  /** Resolves once what was sent has been handed to the transport. */
  abstract flushed(): Promise<void>;
  abstract close(): void;

  /** Counts received payload. */
  received(bytes: number): void {
    this.firstCountedMs ??= performance.now();
    this.bytesReceived += bytes;
    this.intervalBytes += bytes;
    this.session.progress(0, bytes);
  }

  /** Packets this end counts: sent datagrams, or the highest sequence number received. */
  get packets(): number {
    return this.sender ? this.datagramsSent : (this.udpStats?.highestSeq ?? 0);
  }

  get errors(): number {
    return this.udpStats?.lost ?? 0;
  }

  /** Forgets what was counted so far (the omitted seconds ended). */
  resetStats(now: number): void {
    this.bytesSentOmit = this.bytesSent;
    this.bytesReceived = 0;
    this.intervalBytes = 0;
    this.omittedPackets = this.packets;
    this.omittedErrors = this.errors;
    this.omittedOutOfOrder = this.udpStats?.outOfOrder ?? 0;
    this.intervalStartPackets = this.packets;
    this.intervalStartErrors = this.errors;
    this.udpStats?.resetJitter();
    this.startMs = now;
    this.intervalStartMs = now;
  }

  /** The stream's line of an interval report; starts the next interval. */
  takeInterval(now: number, omitted: boolean): Iperf3IntervalStream {
    const seconds = (now - this.intervalStartMs) / 1000;
    const out: Iperf3IntervalStream = {
      id: this.id,
      start: (this.intervalStartMs - this.startMs) / 1000,
      end: (now - this.startMs) / 1000,
      seconds,
      bytes: this.intervalBytes,
      bits_per_second: rate(this.intervalBytes, seconds),
      omitted,
      sender: this.sender,
    };
    if (this.session.spec.protocol === 'UDP') {
      out.packets = this.packets - this.intervalStartPackets;
      if (!this.sender) {
        out.jitter_ms = (this.udpStats?.jitter ?? 0) * 1000;
        out.lost_packets = this.errors - this.intervalStartErrors;
        out.lost_percent = percent(out.lost_packets, out.packets);
      }
    }
    this.intervalBytes = 0;
    this.intervalStartPackets = this.packets;
    this.intervalStartErrors = this.errors;
    this.intervalStartMs = now;
    return out;
  }

  /** This stream in the results JSON sent to the peer. */
  results(): PeerStream {
    return {
      id: this.id,
      bytes: this.sender ? this.bytesSent - this.bytesSentOmit : this.bytesReceived,
      retransmits: -1,
      jitter: this.udpStats?.jitter ?? 0,
      errors: this.errors,
      omitted_errors: this.omittedErrors,
      packets: this.packets,
      omitted_packets: this.omittedPackets,
      start_time: 0,
      end_time: (this.endMs - this.startMs) / 1000,
    };
  }

  /** Seconds this end measured. */
  get seconds(): number {
    return (this.endMs - this.startMs) / 1000;
  }
}

/** A data stream over a TCP connection. */
class TcpDataStream extends DataStream {
  #sending = false;
  #pendingWrites = 0;
  #flushWaiters: Array<() => void> = [];
  #retry: NodeJS.Timeout | undefined;
  readonly conn: TcpConnection;

  constructor(session: Session, id: number, sender: boolean, conn: TcpConnection, leftover: Buffer) {
    super(session, id, sender);
    this.conn = conn;
    conn.on('error', () => {});
    // Keep reading even after the test ended, so a peer still sending is never blocked.
    conn.on('data', (chunk: Buffer) => {
      if (this.counting && !this.sender) this.received(chunk.length);
    });
    if (leftover.length > 0) conn.unshift(leftover);
  }

  get addresses() {
    const c = this.conn;
    return { local_host: c.localAddress, local_port: c.localPort, remote_host: c.remoteAddress, remote_port: c.remotePort };
  }

  startSending(): void {
    this.#sending = true;
    const block = Buffer.alloc(this.session.spec.blksize, 0x5a);
    const written = (): void => {
      if (--this.#pendingWrites === 0) for (const w of this.#flushWaiters.splice(0)) w();
    };
    const pump = (): void => {
      this.#retry = undefined;
      while (this.#sending && !this.conn.destroyed) {
        const may = this.session.maySend(this);
        if (may === 'never') return this.stopSending();
        if (may === 'later') {
          this.#retry = setTimeout(pump, Math.max(1, this.session.spec.pacingUs / 1000));
          return;
        }
        this.bytesSent += block.length;
        this.intervalBytes += block.length;
        this.#pendingWrites++;
        const more = this.conn.write(block, written);
        this.session.progress(block.length, 0);
        if (!more) {
          this.conn.once('drain', pump);
          return;
        }
      }
    };
    pump();
  }

  stopSending(): void {
    this.#sending = false;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  flushed(): Promise<void> {
    if (this.#pendingWrites === 0 || this.conn.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  close(): void {
    this.stopSending();
    this.conn.destroy();
  }
}

/** A data stream of UDP datagrams to and from one peer address and port. */
class UdpDataStream extends DataStream {
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  readonly #socket: UdpSocket;
  readonly #peer: UdpPeer;
  /** The local address the peer's datagrams arrive at (known once one has). */
  localHost: string;
  /** Datagrams the stack refused to send (no route, …). */
  sendFailures = 0;

  constructor(session: Session, id: number, sender: boolean, socket: UdpSocket, localHost: string, peer: UdpPeer) {
    super(session, id, sender);
    this.#socket = socket;
    this.#peer = peer;
    this.localHost = localHost;
  }

  get addresses() {
    return { local_host: this.localHost, local_port: this.#socket.port, remote_host: this.#peer.address, remote_port: this.#peer.port };
  }

  /** A datagram from the peer. */
  onDatagram(data: Buffer): void {
    // A repeated connect datagram or its answer is not data.
    if (!this.counting || this.sender || !this.udpStats || data.length === 4) return;
    const arrival = (performance.timeOrigin + performance.now()) / 1000;
    if (this.udpStats.receive(data, arrival)) this.received(data.length);
  }

  startSending(): void {
    const spec = this.session.spec;
    const block = Buffer.alloc(spec.blksize, 0x5a);
    const startedAt = performance.now();
    const tick = (): void => {
      this.#timer = undefined;
      const now = performance.now();
      // Like iperf3, pace on the average since the start: send while below the target rate.
      const allowed = spec.rate > 0 ? Math.ceil((spec.rate * (now - startedAt)) / 8000) : Infinity;
      for (let n = 0; n < (spec.rate > 0 ? UDP_BURST_LIMIT : 64); n++) {
        if (this.bytesSent >= allowed) break;
        const may = this.session.maySend(this);
        if (may === 'never') return;
        if (may === 'later') break;
        this.datagramsSent++;
        writeUdpHeader(block, { ...wallClock(), seq: this.datagramsSent }, spec.counters64);
        try {
          this.#socket.send(this.#peer.address, this.#peer.port, block);
        } catch {
          this.sendFailures++;
        }
        this.bytesSent += block.length;
        this.intervalBytes += block.length;
        this.session.progress(block.length, 0);
      }
      if (this.#timer === undefined && !this.session.stopped) {
        this.#timer = spec.rate > 0 ? setTimeout(tick, Math.max(1, spec.pacingUs / 1000)) : setImmediate(tick);
      }
    };
    tick();
  }

  stopSending(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer as NodeJS.Timeout);
      clearImmediate(this.#timer as NodeJS.Immediate);
    }
    this.#timer = undefined;
  }

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.stopSending();
  }
}

/**
 * The measuring half of a test, shared by client and server: the streams, the clock (omitted
 * seconds, interval reports), the byte and block budget, and the results.
 */
class Session {
  readonly streams: DataStream[] = [];
  readonly intervals: Iperf3Interval[] = [];
  omitting = false;
  /** TEST_RUNNING has been reached: no more streams are accepted. */
  begun = false;
  stopped = false;
  /** Bytes and blocks sent and received since the omitted seconds ended (iperf3's test totals). */
  bytesSent = 0;
  blocksSent = 0;
  bytesReceived = 0;
  blocksReceived = 0;
  startedAtMs = 0;
  cpu = { total: 0, user: 0, system: 0 };
  #cpuStart = process.cpuUsage();
  #omitTimer: NodeJS.Timeout | undefined;
  #intervalTimer: NodeJS.Timeout | undefined;
  /** Called after every send or receive (the client checks its end condition). */
  onProgress: (() => void) | undefined;

  constructor(
    readonly spec: TestSpec,
    readonly role: 'client' | 'server',
    readonly interval: number,
    readonly onInterval: ((interval: Iperf3Interval) => void) | undefined,
  ) {}

  /** Whether the local end sends on the stream with this creation index. */
  sendsOnStream(index: number): boolean {
    const { parallel, reverse, bidir } = this.spec;
    const forward = bidir || !reverse ? parallel : 0;
    const clientToServer = index < forward;
    return this.role === 'client' ? clientToServer : !clientToServer;
  }

  /** Data streams the client opens: its sending ones first in a bidirectional test. */
  get streamCount(): number {
    return this.spec.bidir ? 2 * this.spec.parallel : this.spec.parallel;
  }

  /** Starts measuring and sending (TEST_RUNNING). */
  begin(): void {
    this.begun = true;
    const now = performance.now();
    this.startedAtMs = now;
    this.#cpuStart = process.cpuUsage();
    for (const s of this.streams) {
      s.startMs = s.intervalStartMs = Math.min(now, s.firstCountedMs ?? now);
      s.counting = true;
    }
    if (this.spec.omit > 0) {
      this.omitting = true;
      this.#omitTimer = setTimeout(() => this.#omitEnded(), this.spec.omit * 1000);
    }
    this.#startIntervals();
    for (const s of this.streams) if (s.sender) s.startSending();
  }

  #startIntervals(): void {
    if (this.#intervalTimer) clearInterval(this.#intervalTimer);
    if (this.interval > 0) this.#intervalTimer = setInterval(() => this.#report(performance.now(), false), this.interval * 1000);
  }

  #omitEnded(): void {
    this.#omitTimer = undefined;
    const now = performance.now();
    // Report what is left of the omitted time first, then forget everything counted so far.
    if (this.interval > 0) this.#report(now, true);
    this.omitting = false;
    this.bytesSent = this.blocksSent = this.bytesReceived = this.blocksReceived = 0;
    for (const s of this.streams) s.resetStats(now);
    this.#cpuStart = process.cpuUsage();
    this.#startIntervals();
    this.onProgress?.();
  }

  #report(now: number, final: boolean): void {
    const streams = this.streams.map((s) => ({ s, line: s.takeInterval(now, this.omitting) }));
    // Like iperf3, drop a last interval that is both short (under 10 %) and empty.
    if (final && streams.every(({ line }) => line.bytes === 0 && line.seconds < this.interval * 0.1)) return;
    if (streams.length === 0) return;
    const direction = (clientToServer: boolean): Iperf3IntervalSum | undefined => {
      const members = streams.filter(({ s }) => s.sender === (this.role === 'client' ? clientToServer : !clientToServer));
      if (members.length === 0) return undefined;
      const first = members[0]!.line;
      const bytes = members.reduce((t, { line }) => t + line.bytes, 0);
      const out: Iperf3IntervalSum = {
        start: first.start,
        end: first.end,
        seconds: first.seconds,
        bytes,
        bits_per_second: rate(bytes, first.seconds),
        omitted: first.omitted,
        sender: first.sender,
      };
      if (this.spec.protocol === 'UDP') {
        out.packets = members.reduce((t, { line }) => t + (line.packets ?? 0), 0);
        if (!first.sender) {
          out.jitter_ms = members.reduce((t, { line }) => t + (line.jitter_ms ?? 0), 0) / members.length;
          out.lost_packets = members.reduce((t, { line }) => t + (line.lost_packets ?? 0), 0);
          out.lost_percent = percent(out.lost_packets, out.packets);
        }
      }
      return out;
    };
    const forward = direction(true);
    const backward = direction(false);
    const interval: Iperf3Interval = this.spec.bidir
      ? { streams: streams.map(({ line }) => line), sum: forward!, sum_bidir_reverse: backward! }
      : { streams: streams.map(({ line }) => line), sum: (forward ?? backward)! };
    this.intervals.push(interval);
    this.onInterval?.(interval);
  }

  /** Whether `stream` may send another block now, later (rate limit) or never (budget spent). */
  maySend(stream: DataStream): 'yes' | 'later' | 'never' {
    if (this.stopped) return 'never';
    if (!this.omitting) {
      if (this.spec.bytes > 0 && this.bytesSent >= this.spec.bytes) return 'never';
      if (this.spec.blocks > 0 && this.blocksSent >= this.spec.blocks) return 'never';
    }
    if (this.spec.protocol === 'TCP' && this.spec.rate > 0) {
      const seconds = (performance.now() - this.startedAtMs) / 1000;
      if (seconds > 0 && (stream.bytesSent * 8) / seconds >= this.spec.rate) return 'later';
    }
    return 'yes';
  }

  /** Counts a block sent or bytes received, then lets the owner check its end condition. */
  progress(sent: number, received: number): void {
    if (sent > 0) {
      this.bytesSent += sent;
      this.blocksSent++;
    }
    if (received > 0) {
      this.bytesReceived += received;
      this.blocksReceived++;
    }
    this.onProgress?.();
  }

  /** The client's end condition by bytes or blocks (duration is a timer). */
  transferDone(): boolean {
    if (this.omitting) return false;
    const { bytes, blocks } = this.spec;
    return (
      (bytes > 0 && (this.bytesSent >= bytes || this.bytesReceived >= bytes)) ||
      (blocks > 0 && (this.blocksSent >= blocks || this.blocksReceived >= blocks))
    );
  }

  /** Stops sending and counting (TEST_END); takes the last interval. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const now = performance.now();
    if (this.#omitTimer) clearTimeout(this.#omitTimer);
    if (this.#intervalTimer) clearInterval(this.#intervalTimer);
    for (const s of this.streams) {
      s.stopSending();
      s.counting = false;
    }
    if (this.interval > 0) this.#report(now, true);
    for (const s of this.streams) s.endMs = now;
    this.cpu = cpuPercent(this.#cpuStart, now - this.startedAtMs);
  }

  /** Stops timers and closes every stream. */
  close(): void {
    this.stop();
    for (const s of this.streams) s.close();
  }

  /** The results JSON for the peer. */
  ourResults(): PeerResults {
    const sends = this.streams.some((s) => s.sender);
    const receives = this.streams.some((s) => !s.sender);
    return {
      cpu_util_total: this.cpu.total,
      cpu_util_user: this.cpu.user,
      cpu_util_system: this.cpu.system,
      // Morgana does not report per-connection retransmissions: like a sender without TCP_INFO.
      sender_has_retransmits: sends || !receives ? 0 : -1,
      streams: this.streams.map((s) => s.results()),
    };
  }

  /** Takes in the peer's results JSON. */
  peerResults(peer: PeerResults): void {
    const byId = new Map(peer.streams.map((p) => [p.id, p]));
    for (const s of this.streams) {
      const p = byId.get(s.id);
      if (!p) continue;
      s.peer = {
        bytes: p.bytes,
        jitter: p.jitter,
        errors: p.errors,
        omittedErrors: p.omitted_errors ?? 0,
        packets: p.packets,
        omittedPackets: p.omitted_packets ?? 0,
        seconds: p.end_time !== undefined && p.end_time > 0 ? p.end_time - (p.start_time ?? 0) : undefined,
      };
    }
  }

  /** The test's parameters and streams, as `start` of the result. */
  start(cookie: Buffer): Iperf3Result['start'] {
    const spec = this.spec;
    return {
      version: 'morgana iperf3',
      cookie: cookieText(cookie),
      connected: this.streams.map((s) => ({ id: s.id, ...s.addresses })),
      test_start: {
        protocol: spec.protocol,
        num_streams: spec.parallel,
        blksize: spec.blksize,
        omit: spec.omit,
        duration: spec.duration,
        bytes: spec.bytes,
        blocks: spec.blocks,
        reverse: spec.reverse ? 1 : 0,
        bidir: spec.bidir ? 1 : 0,
        target_bitrate: spec.rate,
      },
    };
  }

  /** The outcome, shaped like `iperf3 -J`. */
  result(cookie: Buffer, peer: PeerResults): Iperf3Result {
    const spec = this.spec;
    const udp = spec.protocol === 'UDP';
    const end: Partial<Iperf3Result['end']> & { streams: Iperf3Result['end']['streams'] } = { streams: [] };
    // The client-to-server direction first, as iperf3 orders it; in a bidirectional test the
    // server-to-client one is the "bidir_reverse" one on both ends.
    const clientToServer = (s: DataStream) => s.sender === (this.role === 'client');
    const directions: Array<{ streams: DataStream[]; suffix: string }> = spec.bidir
      ? [
          { streams: this.streams.filter(clientToServer), suffix: '' },
          { streams: this.streams.filter((s) => !clientToServer(s)), suffix: '_bidir_reverse' },
        ]
      : [{ streams: this.streams, suffix: '' }];
    for (const { streams, suffix } of directions) {
      let sentBytes = 0;
      let receivedBytes = 0;
      let sentPackets = 0;
      let receivedPackets = 0;
      let lost = 0;
      let jitter = 0;
      let senderSeconds = 0;
      let receiverSeconds = 0;
      for (const s of streams) {
        const local = s.seconds;
        const remote = s.peer?.seconds ?? local;
        const sSeconds = s.sender ? local : remote;
        const rSeconds = s.sender ? remote : local;
        const sBytes = s.sender ? s.bytesSent - s.bytesSentOmit : (s.peer?.bytes ?? 0);
        const rBytes = s.sender ? (s.peer?.bytes ?? 0) : s.bytesReceived;
        senderSeconds = Math.max(senderSeconds, sSeconds);
        receiverSeconds = Math.max(receiverSeconds, rSeconds);
        sentBytes += sBytes;
        receivedBytes += rBytes;
        if (!udp) {
          end.streams.push({ sender: { id: s.id, ...sum(sSeconds, sBytes, s.sender) }, receiver: { id: s.id, ...sum(rSeconds, rBytes, s.sender) } });
          continue;
        }
        // The sender knows how many datagrams it sent; the receiver the loss, jitter and order.
        const sPackets = s.sender ? s.packets - s.omittedPackets : (s.peer ? s.peer.packets - s.peer.omittedPackets : 0);
        const rPackets = s.sender ? (s.peer ? s.peer.packets - s.peer.omittedPackets : 0) : s.packets - s.omittedPackets;
        const sLost = s.sender ? (s.peer ? s.peer.errors - s.peer.omittedErrors : 0) : s.errors - s.omittedErrors;
        const sJitter = s.sender ? (s.peer?.jitter ?? 0) : (s.udpStats?.jitter ?? 0);
        const outOfOrder = s.udpStats ? s.udpStats.outOfOrder - s.omittedOutOfOrder : 0;
        const packets = sPackets || rPackets;
        sentPackets += sPackets;
        receivedPackets += rPackets;
        lost += sLost;
        jitter += sJitter;
        end.streams.push({
          udp: {
            id: s.id,
            ...sum(sSeconds, sBytes, s.sender),
            jitter_ms: sJitter * 1000,
            lost_packets: sLost,
            packets,
            lost_percent: percent(sLost, packets),
            out_of_order: outOfOrder,
          },
        });
      }
      const put = (name: 'sum' | 'sum_sent' | 'sum_received', value: Iperf3Sum): void => {
        (end as Record<string, unknown>)[`${name}${suffix}`] = value;
      };
      const flag = streams[0]?.sender ?? true;
      if (!udp) {
        put('sum_sent', sum(senderSeconds, sentBytes, flag));
        put('sum_received', sum(receiverSeconds, receivedBytes, flag));
        continue;
      }
      const jitterMs = streams.length > 0 ? (jitter / streams.length) * 1000 : 0;
      const total = sentPackets || receivedPackets;
      put('sum', {
        ...sum(receiverSeconds, sentBytes, flag),
        bits_per_second: rate(sentBytes, senderSeconds),
        jitter_ms: jitterMs,
        lost_packets: lost,
        packets: total,
        lost_percent: percent(lost, total),
      });
      put('sum_sent', { ...sum(senderSeconds, sentBytes, true), jitter_ms: 0, lost_packets: 0, packets: sentPackets, lost_percent: 0 });
      put('sum_received', {
        ...sum(receiverSeconds, receivedBytes, false),
        jitter_ms: jitterMs,
        lost_packets: lost,
        packets: receivedPackets,
        lost_percent: percent(lost, receivedPackets),
      });
    }
    end.cpu_utilization_percent = {
      host_total: this.cpu.total,
      host_user: this.cpu.user,
      host_system: this.cpu.system,
      remote_total: peer.cpu_util_total,
      remote_user: peer.cpu_util_user,
      remote_system: peer.cpu_util_system,
    };
    return {
      start: this.start(cookie),
      intervals: this.intervals,
      end: end as Iperf3Result['end'],
    };
  }
}

function parsePeerResults(value: unknown): PeerResults {
  const v = value as Partial<PeerResults> | null;
  if (!v || typeof v !== 'object' || !Array.isArray(v.streams)) throw protocolError('results JSON without streams');
  const num = (x: unknown, fallback: number) => (typeof x === 'number' && Number.isFinite(x) ? x : fallback);
  return {
    cpu_util_total: num(v.cpu_util_total, 0),
    cpu_util_user: num(v.cpu_util_user, 0),
    cpu_util_system: num(v.cpu_util_system, 0),
    sender_has_retransmits: num(v.sender_has_retransmits, -1),
    streams: v.streams.map((s: Partial<PeerStream>) => ({
      id: num(s.id, -1),
      bytes: num(s.bytes, 0),
      retransmits: num(s.retransmits, -1),
      jitter: num(s.jitter, 0),
      errors: num(s.errors, 0),
      packets: num(s.packets, 0),
      ...(s.omitted_errors !== undefined ? { omitted_errors: num(s.omitted_errors, 0) } : {}),
      ...(s.omitted_packets !== undefined ? { omitted_packets: num(s.omitted_packets, 0) } : {}),
      ...(s.start_time !== undefined ? { start_time: num(s.start_time, 0) } : {}),
      ...(s.end_time !== undefined ? { end_time: num(s.end_time, 0) } : {}),
    })),
  };
}

/** Options of {@link startIperf3Server}. */
export interface Iperf3ServerOptions {
  /** TCP (control and TCP streams) and UDP (UDP streams) port (default 5201). */
  port?: number;
  /** Serve one test, then stop listening (`iperf3 -s -1`). */
  oneOff?: boolean;
  /** Seconds between interval reports (default 1; 0 for none), as `-i`. */
  interval?: number;
  /** Called when a test's streams are connected and data starts to flow. */
  onStart?: (start: Iperf3Result['start']) => void;
  /** Called with each interval report of a running test. */
  onInterval?: (interval: Iperf3Interval) => void;
  /** Called with each completed test's result (as the server saw it). */
  onResult?: (result: Iperf3Result) => void;
  /** Called when a test fails (protocol error, client gone). */
  onError?: (error: Error) => void;
}

/** A running iperf3 server. */
export interface Iperf3Server {
  readonly port: number;
  /** Resolves with the next completed test's result. */
  nextResult(): Promise<Iperf3Result>;
  /** Stops listening and aborts a running test. */
  close(): void;
}

interface ServerTest {
  cookie: Buffer;
  session: Session | undefined;
  allIn: (() => void) | undefined;
  /** UDP streams by `address:port` of the client's socket. */
  udpPeers: Map<string, UdpDataStream>;
}

function assertInterval(value: number, name: string): void {
  if (typeof value !== 'number' || !(value === 0 || (value >= 0.1 && value <= 60))) {
    throw new MorganaError('ERR_OUT_OF_RANGE', `${name} must be 0 or a number of seconds in [0.1, 60], got ${value}`);
  }
}

/**
 * Serves the iperf3 protocol on `stack`'s TCP `port` (default 5201), and for UDP tests on the
 * same UDP port, one test at a time (a second client meanwhile gets ACCESS_DENIED, as with
 * iperf3). TCP and UDP tests, reverse and bidirectional, bounded by time, bytes or blocks, with
 * omitted seconds; SCTP tests are refused with SERVER_ERROR (not implemented).
 */
export function startIperf3Server(stack: Stack, options: Iperf3ServerOptions = {}): Iperf3Server {
  const port = options.port ?? IPERF3_DEFAULT_PORT;
  const interval = options.interval ?? 1;
  assertInteger(port, 'options.port', 1, 65_535);
  assertInterval(interval, 'options.interval');
  let current: ServerTest | undefined;
  let closed = false;
  const waiting: Array<{ resolve: (r: Iperf3Result) => void; reject: (e: Error) => void }> = [];
  const open = new Set<TcpConnection>();
  let udpSocket: UdpSocket | undefined;

  const finish = (result: Iperf3Result | Error): void => {
    if (result instanceof Error) {
      options.onError?.(result);
      for (const w of waiting.splice(0)) w.reject(result);
    } else {
      options.onResult?.(result);
      for (const w of waiting.splice(0)) w.resolve(result);
      if (options.oneOff) server.close();
    }
  };

  /** A datagram on the UDP port: a stream's connect datagram, or data of a stream. */
  const onDatagram = (data: Buffer, from: UdpPeer, info: { to: string }): void => {
    const test = current;
    const session = test?.session;
    if (!test || !session || session.spec.protocol !== 'UDP') return;
    const key = `${from.address}:${from.port}`;
    const known = test.udpPeers.get(key);
    if (data.length === 4 && (!known || !session.begun)) {
      // A connect datagram (or its repetition): answer in the byte order the client used.
      if (!known) {
        const index = session.streams.length;
        if (index >= session.streamCount) return;
        const stream = new UdpDataStream(session, streamId(index), session.sendsOnStream(index), udpSocket!, info.to, from);
        session.streams.push(stream);
        test.udpPeers.set(key, stream);
      }
      const order = connectByteOrder(data, [IPERF3_UDP_CONNECT_MSG, IPERF3_UDP_LEGACY_CONNECT_MSG]);
      udpSocket!.send(from.address, from.port, udpConnectDatagram(IPERF3_UDP_CONNECT_REPLY, order !== 'be'));
      if (session.streams.length === session.streamCount) test.allIn?.();
      return;
    }
    known?.onDatagram(data);
  };

  const runTest = async (control: TcpConnection, reader: ByteReader, test: ServerTest): Promise<Iperf3Result> => {
    writeState(control, IPERF3_STATE.PARAM_EXCHANGE);
    const params = (await reader.json()) as Params;
    const spec = specFromParams(params && typeof params === 'object' ? params : {});
    if ('error' in spec) {
      writeServerError(control, spec.code);
      throw new MorganaError('ERR_IPERF3_UNSUPPORTED', spec.error);
    }
    const session = new Session(spec, 'server', interval, options.onInterval);
    test.session = session;
    if (spec.protocol === 'UDP') {
      try {
        udpSocket = stack.udp.bind(port, onDatagram);
      } catch (error) {
        writeServerError(control, IESTREAMLISTEN);
        throw error;
      }
    }
    try {
      const allIn = new Promise<void>((resolve) => (test.allIn = resolve));
      writeState(control, IPERF3_STATE.CREATE_STREAMS);
      await Promise.race([
        allIn,
        once(control, 'close').then(() => Promise.reject(protocolError('control connection closed while streams were being created'))),
      ]);
      writeState(control, IPERF3_STATE.TEST_START);
      writeState(control, IPERF3_STATE.TEST_RUNNING);
      options.onStart?.(session.start(test.cookie));
      session.begin();
      let state: number;
      try {
        state = await reader.state();
      } finally {
        session.stop();
      }
      if (state !== IPERF3_STATE.TEST_END) throw protocolError(`client sent state ${state} instead of TEST_END`);
      // Like iperf3, close the data streams now: a receiving iperf3 client may be blocked reading
      // a whole block and only an end of stream frees it. What is queued still goes out before FIN.
      for (const s of session.streams) if (s instanceof TcpDataStream) s.conn.end();
      writeState(control, IPERF3_STATE.EXCHANGE_RESULTS);
      const peer = parsePeerResults(await reader.json());
      session.peerResults(peer);
      writeJson(control, session.ourResults());
      writeState(control, IPERF3_STATE.DISPLAY_RESULTS);
      const done = await reader.state().catch(() => IPERF3_STATE.IPERF_DONE);
      if (done !== IPERF3_STATE.IPERF_DONE) throw protocolError(`client sent state ${done} instead of IPERF_DONE`);
      return session.result(test.cookie, peer);
    } finally {
      udpSocket?.close();
      udpSocket = undefined;
    }
  };

  const onConnection = (conn: TcpConnection): void => {
    open.add(conn);
    conn.on('error', () => {});
    // State bytes must not wait for Nagle while data streams are busy.
    conn.setNoDelay(true);
    conn.once('close', () => open.delete(conn));
    const reader = new ByteReader(conn);
    void (async () => {
      let cookie: Buffer;
      try {
        cookie = Buffer.from(await reader.read(IPERF3_COOKIE_SIZE));
      } catch {
        conn.destroy();
        return;
      }
      const test = current;
      if (test && test.cookie.equals(cookie)) {
        // A TCP data stream of the running test; iperf3 gives the first ones to the direction
        // the server receives.
        const session = test.session;
        if (!session || session.spec.protocol !== 'TCP' || session.streams.length >= session.streamCount || session.begun) {
          return void conn.destroy();
        }
        const index = session.streams.length;
        session.streams.push(new TcpDataStream(session, streamId(index), session.sendsOnStream(index), conn, reader.detach()));
        if (session.streams.length === session.streamCount) test.allIn?.();
        return;
      }
      if (test) {
        writeState(conn, IPERF3_STATE.ACCESS_DENIED);
        conn.end();
        return;
      }
      const mine: ServerTest = { cookie, session: undefined, allIn: undefined, udpPeers: new Map() };
      current = mine;
      let outcome: Iperf3Result | Error;
      try {
        outcome = await runTest(conn, reader, mine);
      } catch (error) {
        outcome = error instanceof Error ? error : new Error(String(error));
      }
      current = undefined;
      reader.detach();
      conn.end();
      mine.session?.close();
      finish(outcome);
    })();
  };

  const listener: TcpServer = stack.tcp.listen(port, onConnection);
  const server: Iperf3Server = {
    port,
    nextResult: () => new Promise((resolve, reject) => waiting.push({ resolve, reject })),
    close() {
      if (closed) return;
      closed = true;
      listener.close();
      if (current) {
        current.session?.close();
        for (const c of open) c.destroy();
      }
      udpSocket?.close();
    },
  };
  return server;
}

/** Options of {@link runIperf3Client}. */
export interface Iperf3ClientOptions {
  /** Server port (default 5201). */
  port?: number;
  /** `'UDP'` for a UDP test (as `-u`); default `'TCP'`. */
  protocol?: Iperf3Protocol;
  /**
   * Test duration in seconds, after the omitted ones (default 10, as `-t`). Ignored when
   * `bytes` or `blocks` is given, as in iperf3.
   */
  duration?: number;
  /** Transfer this many bytes instead of running for a duration (as `-n`). */
  bytes?: number;
  /** Transfer this many blocks instead of running for a duration (as `-k`). */
  blocks?: number;
  /** Seconds at the start not counted in the results (default 0, as `-O`). */
  omit?: number;
  /** Seconds between interval reports (default 1; 0 for none, as `-i`). */
  interval?: number;
  /** Called when the streams are connected and data starts to flow. */
  onStart?: (start: Iperf3Result['start']) => void;
  /** Called with each interval report while the test runs. */
  onInterval?: (interval: Iperf3Interval) => void;
  /** Parallel streams per direction (default 1, as `-P`). */
  parallel?: number;
  /** Reverse mode: the server sends (as `-R`). */
  reverse?: boolean;
  /** Bidirectional mode: both ends send at once (as `--bidir`). */
  bidir?: boolean;
  /** Block size: bytes per write, or per datagram for UDP (default 128 KiB for TCP, 1460 for UDP, as `-l`). */
  blockSize?: number;
  /**
   * Target bits per second per sending stream, 0 for unlimited (default: 1 Mbit/s for UDP,
   * unlimited for TCP, as `-b`).
   */
  bitrate?: number;
  /** UDP: 64-bit datagram counters (as `--udp-counters-64bit`). */
  udpCounters64?: boolean;
  /** Random bytes for the cookie (default `crypto.getRandomValues`). */
  random?: (n: number) => Uint8Array;
}

function clientSpec(options: Iperf3ClientOptions): TestSpec {
  const protocol = options.protocol ?? 'TCP';
  if (protocol !== 'TCP' && protocol !== 'UDP') throw new MorganaError('ERR_OUT_OF_RANGE', `options.protocol must be 'TCP' or 'UDP', got ${String(protocol)}`);
  const udp = protocol === 'UDP';
  const bytes = options.bytes ?? 0;
  const blocks = options.blocks ?? 0;
  const duration = bytes > 0 || blocks > 0 ? 0 : (options.duration ?? 10);
  const parallel = options.parallel ?? 1;
  const counters64 = options.udpCounters64 ?? false;
  const blksize = options.blockSize ?? (udp ? IPERF3_UDP_DEFAULT_BLOCK : IPERF3_DEFAULT_BLOCK);
  const bitrate = options.bitrate ?? (udp ? IPERF3_UDP_DEFAULT_RATE : 0);
  const omit = options.omit ?? 0;
  assertInteger(parallel, 'options.parallel', 1, MAX_STREAMS);
  assertInteger(blksize, 'options.blockSize', udp ? Math.max(IPERF3_UDP_MIN_BLOCK, udpHeaderLength(counters64)) : 1, udp ? IPERF3_UDP_MAX_BLOCK : MAX_TCP_BLOCK);
  assertInteger(bytes, 'options.bytes', 0, Number.MAX_SAFE_INTEGER);
  assertInteger(blocks, 'options.blocks', 0, Number.MAX_SAFE_INTEGER);
  assertInteger(omit, 'options.omit', 0, 600);
  assertInteger(bitrate, 'options.bitrate', 0, Number.MAX_SAFE_INTEGER);
  if (duration !== 0 && (typeof duration !== 'number' || !(duration > 0) || duration > 86_400)) {
    throw new MorganaError('ERR_OUT_OF_RANGE', `options.duration must be a number of seconds in (0, 86400], got ${duration}`);
  }
  if (options.reverse && options.bidir) throw new MorganaError('ERR_OUT_OF_RANGE', 'options.reverse and options.bidir exclude each other');
  return {
    protocol,
    parallel,
    reverse: options.reverse ?? false,
    bidir: options.bidir ?? false,
    duration,
    bytes,
    blocks,
    omit,
    blksize,
    rate: bitrate,
    counters64,
    pacingUs: 1000,
  };
}

/** Opens one UDP stream: binds a port, sends the connect datagram until the server answers. */
async function connectUdpStream(stack: Stack, session: Session, index: number, host: string, port: number): Promise<UdpDataStream> {
  let answered: (() => void) | undefined;
  // The stream exists before the server answers: its first datagrams may follow the answer
  // before this function has resumed.
  let stream: UdpDataStream | undefined;
  const socket = stack.udp.bind(0, (data, from, info) => {
    if (from.address !== host || from.port !== port || !stream) return;
    if (answered && connectByteOrder(data, [IPERF3_UDP_CONNECT_REPLY, IPERF3_UDP_LEGACY_CONNECT_REPLY]) !== undefined) {
      stream.localHost = info.to;
      answered();
      return;
    }
    stream.onDatagram(data);
  });
  stream = new UdpDataStream(session, streamId(index), session.sendsOnStream(index), socket, '', { address: host, port });
  // The server sends right after TEST_RUNNING, which may be read after its first datagrams.
  stream.counting = !stream.sender;
  try {
    const hello = udpConnectDatagram(IPERF3_UDP_CONNECT_MSG);
    await new Promise<void>((resolve, reject) => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const attempt = (): void => {
        if (Date.now() - started >= UDP_CONNECT_TIMEOUT_MS) {
          answered = undefined;
          reject(new MorganaError('ERR_IPERF3_TIMEOUT', `no answer to UDP stream ${index + 1}'s connect datagram from ${host}:${port}`));
          return;
        }
        try {
          socket.send(host, port, hello);
        } catch (error) {
          answered = undefined;
          reject(error);
          return;
        }
        timer = setTimeout(attempt, UDP_CONNECT_RETRY_MS);
      };
      answered = () => {
        answered = undefined;
        if (timer) clearTimeout(timer);
        resolve();
      };
      attempt();
    });
  } catch (error) {
    socket.close();
    throw error;
  }
  const close = stream.close.bind(stream);
  stream.close = () => {
    close();
    socket.close();
  };
  return stream;
}

/**
 * Runs one iperf3 test against `host` from `stack` and resolves with its result (sender and
 * receiver totals from both sides). Rejects with `ERR_IPERF3_BUSY` when the server is running
 * another test, `ERR_IPERF3_SERVER` when it reports an error, `ERR_IPERF3_TIMEOUT` when a UDP
 * stream gets no answer, `ERR_IPERF3_PROTOCOL` on anything unexpected, or the connection's own
 * error.
 */
export async function runIperf3Client(stack: Stack, host: string, options: Iperf3ClientOptions = {}): Promise<Iperf3Result> {
  const port = options.port ?? IPERF3_DEFAULT_PORT;
  const interval = options.interval ?? 1;
  assertInteger(port, 'options.port', 1, 65_535);
  assertInterval(interval, 'options.interval');
  const spec = clientSpec(options);
  const random = options.random ?? ((n: number) => crypto.getRandomValues(new Uint8Array(n)));
  const cookie = makeIperf3Cookie(random);
  const control = await stack.tcp.connect(host, port);
  control.setNoDelay(true);
  control.on('error', () => {});
  const reader = new ByteReader(control);
  const session = new Session(spec, 'client', interval, options.onInterval);
  let timer: NodeJS.Timeout | undefined;
  let peer: PeerResults | undefined;
  let ending = false;
  const endTest = (): void => {
    if (ending) return;
    ending = true;
    if (timer) clearTimeout(timer);
    // Like iperf3, TEST_END once what was written has been handed to the transport.
    const senders = session.streams.filter((s) => s.sender);
    for (const s of senders) s.stopSending();
    void Promise.all(senders.map((s) => s.flushed())).then(() => {
      session.stop();
      if (!control.destroyed) writeState(control, IPERF3_STATE.TEST_END);
    });
  };
  try {
    control.write(cookie);
    for (;;) {
      const state = await reader.state();
      switch (state) {
        case IPERF3_STATE.PARAM_EXCHANGE:
          writeJson(control, paramsFromSpec(spec));
          break;
        case IPERF3_STATE.CREATE_STREAMS:
          for (let i = 0; i < session.streamCount; i++) {
            if (spec.protocol === 'UDP') {
              session.streams.push(await connectUdpStream(stack, session, i, host, port));
              continue;
            }
            const conn = await stack.tcp.connect(host, port);
            conn.write(cookie);
            const stream = new TcpDataStream(session, streamId(i), session.sendsOnStream(i), conn, Buffer.alloc(0));
            // The server sends right after TEST_RUNNING, which may be read after its first bytes.
            stream.counting = !stream.sender;
            session.streams.push(stream);
          }
          break;
        case IPERF3_STATE.TEST_START:
          break;
        case IPERF3_STATE.TEST_RUNNING:
          session.onProgress = () => {
            if (session.transferDone()) endTest();
          };
          options.onStart?.(session.start(cookie));
          session.begin();
          if (spec.duration > 0) timer = setTimeout(endTest, (spec.duration + spec.omit) * 1000);
          break;
        case IPERF3_STATE.EXCHANGE_RESULTS:
          session.stop();
          writeJson(control, session.ourResults());
          peer = parsePeerResults(await reader.json());
          session.peerResults(peer);
          break;
        case IPERF3_STATE.DISPLAY_RESULTS:
          writeState(control, IPERF3_STATE.IPERF_DONE);
          if (!peer) throw protocolError('DISPLAY_RESULTS before EXCHANGE_RESULTS');
          return session.result(cookie, peer);
        case IPERF3_STATE.ACCESS_DENIED:
          throw new MorganaError('ERR_IPERF3_BUSY', `the iperf3 server at ${host}:${port} is busy running a test`);
        case IPERF3_STATE.SERVER_ERROR: {
          const codes = await reader.read(8).catch(() => Buffer.alloc(8));
          throw new MorganaError('ERR_IPERF3_SERVER', `the iperf3 server reported error ${codes.readInt32BE(0)} (errno ${codes.readInt32BE(4)})`);
        }
        case IPERF3_STATE.SERVER_TERMINATE:
          throw new MorganaError('ERR_IPERF3_SERVER', 'the iperf3 server terminated the test');
        default:
          throw protocolError(`unexpected state ${state} from the server`);
      }
    }
  } finally {
    if (timer) clearTimeout(timer);
    session.stop();
    reader.detach();
    control.end();
    // Let IPERF_DONE and FIN leave before the data streams go.
    await Promise.race([once(control, 'finish').catch(() => undefined), new Promise((r) => setTimeout(r, 200))]);
    session.close();
  }
}
