/**
 * The iperf3 control protocol: states, limits and error codes, the cookie, the test
 * parameters exchanged as JSON (and their checks), the length-prefixed JSON and state writers,
 * and the reader of the control connection.
 * @module
 */
import type { Duplex } from 'node:stream';
import { MorganaError } from '../../errors.js';
import { type Iperf3Protocol } from './reports.js';
import { IPERF3_UDP_DEFAULT_BLOCK, IPERF3_UDP_DEFAULT_RATE, IPERF3_UDP_MAX_BLOCK, udpHeaderLength } from './udp.js';

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

/**
 * The TCP send and receive buffer per connection of the stacks `morgana iperf3` makes (its
 * `-w` default): 4 MiB, the most Linux's buffer autotuning gives a socket to send
 * (`net.ipv4.tcp_wmem`), which the kernel's iperf3 gets. Morgana's TCP does not autotune: with
 * its 512 KiB default a stream moves at most 512 KiB per round trip, and round trips stretch to
 * milliseconds on a loaded machine.
 */
export const IPERF3_DEFAULT_WINDOW = 4 * 1024 * 1024;

/** iperf3's largest TCP block (1 MiB). */
export const MAX_TCP_BLOCK = 1 << 20;

/** iperf3's limit on streams per direction. */
export const MAX_STREAMS = 128;

export const MAX_JSON = 1 << 20;

/** iperf3's i_errno for "not implemented" (sent with SERVER_ERROR). */
export const IEUNIMP = 13;

/** iperf3's i_errno for a bad block size. */
export const IEBLOCKSIZE = 7;

/** iperf3's i_errno for "unable to listen for a stream". */
export const IESTREAMLISTEN = 105;

/** What both ends of a test agree on (from the client's parameters). */
export interface TestSpec {
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
export interface Params {
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
export interface PeerStream {
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
export interface PeerResults {
  cpu_util_total: number;
  cpu_util_user: number;
  cpu_util_system: number;
  sender_has_retransmits: number;
  streams: PeerStream[];
}

export function protocolError(message: string): MorganaError {
  return new MorganaError('ERR_IPERF3_PROTOCOL', message);
}

/** Reads exact byte counts from a connection (the control channel, and cookies of data streams). */
export class ByteReader {
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

export function writeState(conn: Duplex, state: number): void {
  const b = Buffer.alloc(1);
  b.writeInt8(state, 0);
  conn.write(b);
}

export function writeJson(conn: Duplex, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  conn.write(Buffer.concat([head, body]));
}

export function writeServerError(conn: Duplex, code: number): void {
  writeState(conn, IPERF3_STATE.SERVER_ERROR);
  const codes = Buffer.alloc(8);
  codes.writeInt32BE(code, 0);
  conn.write(codes);
}

export const COOKIE_CHARS = 'abcdefghijklmnopqrstuvwxyz234567';

/** A fresh cookie: 36 random base32 characters and a NUL, as iperf3 makes them. */
export function makeIperf3Cookie(random: (n: number) => Uint8Array): Buffer {
  const bytes = random(IPERF3_COOKIE_SIZE - 1);
  const cookie = Buffer.alloc(IPERF3_COOKIE_SIZE);
  for (let i = 0; i < IPERF3_COOKIE_SIZE - 1; i++) cookie[i] = COOKIE_CHARS.charCodeAt(bytes[i]! % 32);
  return cookie;
}

export function cookieText(cookie: Buffer): string {
  const nul = cookie.indexOf(0);
  return cookie.subarray(0, nul < 0 ? cookie.length : nul).toString('latin1');
}

/** iperf3 numbers its streams 1, 3, 4, 5, … (the second stream gets 3); both sides must agree. */
export function streamId(index: number): number {
  return index === 0 ? 1 : index + 2;
}

/** Parses a client's parameters into a test, or explains (with an iperf3 error code) why not. */
export function specFromParams(params: Params): TestSpec | { error: string; code: number } {
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

export function paramsFromSpec(spec: TestSpec): Params {
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

export function parsePeerResults(value: unknown): PeerResults {
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

export function assertInterval(value: number, name: string): void {
  if (typeof value !== 'number' || !(value === 0 || (value >= 0.1 && value <= 60))) {
    throw new MorganaError('ERR_OUT_OF_RANGE', `${name} must be 0 or a number of seconds in [0.1, 60], got ${value}`);
  }
}
