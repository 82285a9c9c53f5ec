/**
 * An iperf3-protocol server and client on a Morgana stack, so that the standard `iperf3` tool can
 * measure Morgana and Morgana can measure a kernel `iperf3 -s`.
 *
 * The protocol (TCP only): the client opens a control connection and sends a 37-byte cookie (36
 * printable characters and a NUL). The server drives the test by writing one-byte states on the
 * control connection: PARAM_EXCHANGE (the client answers with its parameters as JSON, prefixed
 * by a 32-bit big-endian length), CREATE_STREAMS (the client opens `parallel` data connections,
 * each sending the cookie first), TEST_START and TEST_RUNNING (data flows: client to server, or
 * server to client in reverse mode). When its timer expires the client writes TEST_END; the
 * server answers EXCHANGE_RESULTS, the client sends its results JSON and reads the server's,
 * the server writes DISPLAY_RESULTS and the client closes with IPERF_DONE.
 * @module
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { MorganaError, assertInteger } from '../errors.js';
import type { Stack } from '../stack/index.js';
import type { TcpConnection, TcpServer } from '../stack/tcp.js';

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

const MAX_JSON = 1 << 20;
/** iperf3's i_errno for "not implemented" (sent with SERVER_ERROR). */
const IEUNIMP = 13;

/** Totals of one direction of a test, shaped like iperf3's `sum_sent` / `sum_received`. */
export interface Iperf3Sum {
  start: number;
  end: number;
  seconds: number;
  bytes: number;
  bits_per_second: number;
  /** Present for the sender when it knows its retransmissions. */
  retransmits?: number;
  sender: boolean;
}

/** One test's outcome, shaped like (a subset of) `iperf3 -J` output. */
export interface Iperf3Result {
  start: {
    version: string;
    cookie: string;
    connected: Array<{ local_host: string; local_port: number; remote_host: string; remote_port: number }>;
    test_start: { protocol: 'TCP'; num_streams: number; blksize: number; omit: 0; duration: number; reverse: 0 | 1 };
  };
  intervals: Array<{ sum: { start: number; end: number; seconds: number; bytes: number; bits_per_second: number } }>;
  end: {
    streams: Array<{ sender: Iperf3Sum & { id: number }; receiver: Iperf3Sum & { id: number } }>;
    sum_sent: Iperf3Sum;
    sum_received: Iperf3Sum;
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
}

/** The results JSON each side sends the other. */
interface PeerResults {
  cpu_util_total: number;
  cpu_util_user: number;
  cpu_util_system: number;
  sender_has_retransmits: number;
  streams: Array<{ id: number; bytes: number; retransmits: number; jitter: number; errors: number; packets: number; start_time?: number; end_time?: number }>;
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

/** One data stream's counters. */
class DataStream {
  bytes = 0;
  counting = false;
  sending = false;
  readonly conn: TcpConnection;

  constructor(conn: TcpConnection, leftover: Buffer) {
    this.conn = conn;
    conn.on('error', () => {});
    conn.on('data', (chunk: Buffer) => {
      if (this.counting) this.bytes += chunk.length;
    });
    if (leftover.length > 0) conn.unshift(leftover);
  }

  /** Writes `block` repeatedly, honouring backpressure, until {@link stop}. */
  send(block: Buffer): void {
    this.sending = true;
    const pump = (): void => {
      while (this.sending && !this.conn.destroyed) {
        this.bytes += block.length;
        if (!this.conn.write(block)) {
          this.conn.once('drain', pump);
          return;
        }
      }
    };
    pump();
  }

  stop(): void {
    this.sending = false;
    this.counting = false;
  }
}

/** CPU use of this process since `since`, as iperf3 reports it (percent of wall time). */
function cpuPercent(since: NodeJS.CpuUsage, wallMs: number): { total: number; user: number; system: number } {
  const used = process.cpuUsage(since);
  const wallUs = Math.max(1, wallMs * 1000);
  const user = (used.user / wallUs) * 100;
  const system = (used.system / wallUs) * 100;
  return { total: user + system, user, system };
}

function sum(start: number, seconds: number, bytes: number, sender: boolean): Iperf3Sum {
  return { start, end: start + seconds, seconds, bytes, bits_per_second: seconds > 0 ? (bytes * 8) / seconds : 0, sender };
}

/** Runs a per-second interval sampler over `streams`; returns a function that stops it. */
function sampleIntervals(streams: readonly DataStream[], startedAt: number, out: Iperf3Result['intervals']): () => void {
  let lastBytes = 0;
  let lastAt = startedAt;
  const take = (): void => {
    const now = performance.now();
    const total = streams.reduce((s, d) => s + d.bytes, 0);
    const seconds = (now - lastAt) / 1000;
    // A sliver left at the very end (under 50 ms) is not worth a line of its own.
    if (seconds >= 0.05) out.push({ sum: sum((lastAt - startedAt) / 1000, seconds, total - lastBytes, false) });
    lastBytes = total;
    lastAt = now;
  };
  const timer = setInterval(take, 1000);
  return () => {
    clearInterval(timer);
    take();
  };
}

function buildResult(args: {
  cookie: Buffer;
  streams: readonly DataStream[];
  weSend: boolean;
  seconds: number;
  blksize: number;
  duration: number;
  reverse: boolean;
  cpu: { total: number; user: number; system: number };
  peer: PeerResults;
  intervals: Iperf3Result['intervals'];
}): Iperf3Result {
  const { streams, weSend, seconds, peer } = args;
  const peerById = new Map(peer.streams.map((s, i) => [s.id, { s, i }]));
  const perStream = streams.map((d, i) => {
    const id = streamId(i);
    const remote = peerById.get(id)?.s ?? peer.streams[i];
    const remoteBytes = remote?.bytes ?? 0;
    const remoteSeconds = remote?.end_time !== undefined && remote.end_time > 0 ? remote.end_time - (remote.start_time ?? 0) : seconds;
    const ours = { id, ...sum(0, seconds, d.bytes, weSend) };
    const theirs = { id, ...sum(0, remoteSeconds, remoteBytes, !weSend) };
    if (!weSend && peer.sender_has_retransmits === 1 && remote) theirs.retransmits = remote.retransmits;
    return weSend ? { sender: ours, receiver: theirs } : { sender: theirs, receiver: ours };
  });
  const total = (side: 'sender' | 'receiver'): Iperf3Sum => {
    const bytes = perStream.reduce((s, p) => s + p[side].bytes, 0);
    const secs = perStream.reduce((m, p) => Math.max(m, p[side].seconds), 0) || seconds;
    const out = sum(0, secs, bytes, side === 'sender');
    if (side === 'sender' && perStream.every((p) => p.sender.retransmits !== undefined) && perStream.length > 0) {
      out.retransmits = perStream.reduce((s, p) => s + (p.sender.retransmits ?? 0), 0);
    }
    return out;
  };
  return {
    start: {
      version: 'morgana iperf3',
      cookie: cookieText(args.cookie),
      connected: streams.map((d) => ({
        local_host: d.conn.localAddress,
        local_port: d.conn.localPort,
        remote_host: d.conn.remoteAddress,
        remote_port: d.conn.remotePort,
      })),
      test_start: { protocol: 'TCP', num_streams: streams.length, blksize: args.blksize, omit: 0, duration: args.duration, reverse: args.reverse ? 1 : 0 },
    },
    intervals: args.intervals,
    end: {
      streams: perStream,
      sum_sent: total('sender'),
      sum_received: total('receiver'),
      cpu_utilization_percent: {
        host_total: args.cpu.total,
        host_user: args.cpu.user,
        host_system: args.cpu.system,
        remote_total: peer.cpu_util_total,
        remote_user: peer.cpu_util_user,
        remote_system: peer.cpu_util_system,
      },
    },
  };
}

function ourResults(streams: readonly DataStream[], weSend: boolean, seconds: number, cpu: { total: number; user: number; system: number }): PeerResults {
  return {
    cpu_util_total: cpu.total,
    cpu_util_user: cpu.user,
    cpu_util_system: cpu.system,
    // Morgana does not report per-connection retransmissions: like a sender without TCP_INFO.
    sender_has_retransmits: weSend ? 0 : -1,
    streams: streams.map((d, i) => ({
      id: streamId(i),
      bytes: d.bytes,
      retransmits: -1,
      jitter: 0,
      errors: 0,
      omitted_errors: 0,
      packets: 0,
      omitted_packets: 0,
      start_time: 0,
      end_time: seconds,
    })),
  };
}

function parsePeerResults(value: unknown): PeerResults {
  const v = value as Partial<PeerResults> | null;
  if (!v || typeof v !== 'object' || !Array.isArray(v.streams)) throw protocolError('results JSON without streams');
  return {
    cpu_util_total: Number(v.cpu_util_total ?? 0),
    cpu_util_user: Number(v.cpu_util_user ?? 0),
    cpu_util_system: Number(v.cpu_util_system ?? 0),
    sender_has_retransmits: Number(v.sender_has_retransmits ?? -1),
    streams: v.streams.map((s) => ({
      id: Number(s.id),
      bytes: Number(s.bytes),
      retransmits: Number(s.retransmits ?? -1),
      jitter: Number(s.jitter ?? 0),
      errors: Number(s.errors ?? 0),
      packets: Number(s.packets ?? 0),
      ...(s.start_time !== undefined ? { start_time: Number(s.start_time) } : {}),
      ...(s.end_time !== undefined ? { end_time: Number(s.end_time) } : {}),
    })),
  };
}

/** Options of {@link startIperf3Server}. */
export interface Iperf3ServerOptions {
  /** TCP port (default 5201). */
  port?: number;
  /** Serve one test, then stop listening (`iperf3 -s -1`). */
  oneOff?: boolean;
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
  expected: number;
  streams: DataStream[];
  allIn: (() => void) | undefined;
}

/**
 * Serves the iperf3 protocol on `stack`'s TCP `port` (default 5201), one test at a time (a
 * second client meanwhile gets ACCESS_DENIED, as with iperf3). UDP, SCTP and bidirectional tests
 * are refused with SERVER_ERROR (not implemented).
 */
export function startIperf3Server(stack: Stack, options: Iperf3ServerOptions = {}): Iperf3Server {
  const port = options.port ?? IPERF3_DEFAULT_PORT;
  assertInteger(port, 'options.port', 1, 65_535);
  let current: ServerTest | undefined;
  let closed = false;
  const waiting: Array<{ resolve: (r: Iperf3Result) => void; reject: (e: Error) => void }> = [];
  const open = new Set<TcpConnection>();

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

  const runTest = async (control: TcpConnection, reader: ByteReader, cookie: Buffer): Promise<Iperf3Result> => {
    writeState(control, IPERF3_STATE.PARAM_EXCHANGE);
    const params = (await reader.json()) as Params;
    if (params.udp || params.sctp || params.bidirectional || (params.num ?? 0) > 0 || (params.blockcount ?? 0) > 0) {
      writeState(control, IPERF3_STATE.SERVER_ERROR);
      const codes = Buffer.alloc(8);
      codes.writeInt32BE(IEUNIMP, 0);
      control.write(codes);
      throw new MorganaError('ERR_IPERF3_UNSUPPORTED', 'only TCP tests bounded by time are supported (no -u, --sctp, --bidir, -n, -k)');
    }
    const parallel = Math.max(1, Math.min(128, Number(params.parallel ?? 1)));
    const blksize = Math.max(1, Math.min(1 << 20, Number(params.len ?? IPERF3_DEFAULT_BLOCK)));
    const reverse = Boolean(params.reverse);
    const test: ServerTest = { cookie, expected: parallel, streams: [], allIn: undefined };
    current = test;
    const allIn = new Promise<void>((resolve) => (test.allIn = resolve));
    writeState(control, IPERF3_STATE.CREATE_STREAMS);
    await Promise.race([
      allIn,
      once(control, 'close').then(() => Promise.reject(protocolError('control connection closed while streams were being created'))),
    ]);
    writeState(control, IPERF3_STATE.TEST_START);
    writeState(control, IPERF3_STATE.TEST_RUNNING);
    const startedAt = performance.now();
    const cpuStart = process.cpuUsage();
    const intervals: Iperf3Result['intervals'] = [];
    for (const s of test.streams) s.counting = true;
    const block = Buffer.alloc(blksize, 0x5a);
    if (reverse) for (const s of test.streams) s.send(block);
    const stopSampling = sampleIntervals(test.streams, startedAt, intervals);
    let state: number;
    try {
      state = await reader.state();
    } finally {
      for (const s of test.streams) s.stop();
      stopSampling();
    }
    if (state !== IPERF3_STATE.TEST_END) throw protocolError(`client sent state ${state} instead of TEST_END`);
    // Like iperf3, close the data streams now: a receiving iperf3 client may be blocked reading a
    // whole block and only an end of stream frees it. What is queued still goes out before FIN.
    for (const s of test.streams) s.conn.end();
    const seconds = (performance.now() - startedAt) / 1000;
    const cpu = cpuPercent(cpuStart, seconds * 1000);
    writeState(control, IPERF3_STATE.EXCHANGE_RESULTS);
    const peer = parsePeerResults(await reader.json());
    writeJson(control, ourResults(test.streams, reverse, seconds, cpu));
    writeState(control, IPERF3_STATE.DISPLAY_RESULTS);
    const done = await reader.state().catch(() => IPERF3_STATE.IPERF_DONE);
    if (done !== IPERF3_STATE.IPERF_DONE) throw protocolError(`client sent state ${done} instead of IPERF_DONE`);
    const duration = Number(params.time ?? 0);
    return buildResult({ cookie, streams: test.streams, weSend: reverse, seconds, blksize, duration, reverse, cpu, peer, intervals });
  };

  const onConnection = (conn: TcpConnection): void => {
    open.add(conn);
    conn.on('error', () => {});
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
        // A data stream of the running test.
        if (test.streams.length >= test.expected) return void conn.destroy();
        test.streams.push(new DataStream(conn, reader.detach()));
        if (test.streams.length === test.expected) test.allIn?.();
        return;
      }
      if (test) {
        writeState(conn, IPERF3_STATE.ACCESS_DENIED);
        conn.end();
        return;
      }
      current = { cookie, expected: 0, streams: [], allIn: undefined };
      let outcome: Iperf3Result | Error;
      try {
        outcome = await runTest(conn, reader, cookie);
      } catch (error) {
        outcome = error instanceof Error ? error : new Error(String(error));
      }
      const streams = current?.streams ?? [];
      current = undefined;
      reader.detach();
      conn.end();
      for (const s of streams) s.conn.destroy();
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
      if (current) for (const c of open) c.destroy();
    },
  };
  return server;
}

/** Options of {@link runIperf3Client}. */
export interface Iperf3ClientOptions {
  /** Server port (default 5201). */
  port?: number;
  /** Test duration in seconds (default 10, as `-t`). */
  duration?: number;
  /** Parallel streams (default 1, as `-P`). */
  parallel?: number;
  /** Reverse mode: the server sends (as `-R`). */
  reverse?: boolean;
  /** Block size in bytes (default 128 KiB, as `-l`). */
  blockSize?: number;
  /** Random bytes for the cookie (default `crypto.getRandomValues`). */
  random?: (n: number) => Uint8Array;
}

/**
 * Runs one iperf3 TCP test against `host` from `stack` and resolves with its result (sender and
 * receiver totals from both sides). Rejects with `ERR_IPERF3_BUSY` when the server is running
 * another test, `ERR_IPERF3_SERVER` when it reports an error, `ERR_IPERF3_PROTOCOL` on anything
 * unexpected, or the connection's own error.
 */
export async function runIperf3Client(stack: Stack, host: string, options: Iperf3ClientOptions = {}): Promise<Iperf3Result> {
  const port = options.port ?? IPERF3_DEFAULT_PORT;
  const duration = options.duration ?? 10;
  const parallel = options.parallel ?? 1;
  const blksize = options.blockSize ?? IPERF3_DEFAULT_BLOCK;
  const reverse = options.reverse ?? false;
  assertInteger(port, 'options.port', 1, 65_535);
  assertInteger(parallel, 'options.parallel', 1, 128);
  assertInteger(blksize, 'options.blockSize', 1, 1 << 20);
  if (typeof duration !== 'number' || !(duration > 0) || duration > 86_400) {
    throw new MorganaError('ERR_OUT_OF_RANGE', `options.duration must be a number of seconds in (0, 86400], got ${duration}`);
  }
  const random = options.random ?? ((n: number) => crypto.getRandomValues(new Uint8Array(n)));
  const cookie = makeIperf3Cookie(random);
  const control = await stack.tcp.connect(host, port);
  control.setNoDelay(true);
  control.on('error', () => {});
  const reader = new ByteReader(control);
  const streams: DataStream[] = [];
  const intervals: Iperf3Result['intervals'] = [];
  let startedAt = 0;
  let cpuStart = process.cpuUsage();
  let seconds = 0;
  let cpu = { total: 0, user: 0, system: 0 };
  let stopSampling: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let peer: PeerResults | undefined;
  try {
    control.write(cookie);
    for (;;) {
      const state = await reader.state();
      switch (state) {
        case IPERF3_STATE.PARAM_EXCHANGE: {
          const params: Params & { pacing_timer: number } = {
            tcp: true,
            omit: 0,
            time: duration,
            num: 0,
            blockcount: 0,
            parallel,
            len: blksize,
            pacing_timer: 1000,
          };
          if (reverse) params.reverse = true;
          writeJson(control, params);
          break;
        }
        case IPERF3_STATE.CREATE_STREAMS:
          for (let i = 0; i < parallel; i++) {
            const conn = await stack.tcp.connect(host, port);
            conn.write(cookie);
            const stream = new DataStream(conn, Buffer.alloc(0));
            // The server sends only after TEST_RUNNING: count from the start, so that no early
            // bytes slip past before this side has processed that state.
            stream.counting = reverse;
            streams.push(stream);
          }
          break;
        case IPERF3_STATE.TEST_START:
          break;
        case IPERF3_STATE.TEST_RUNNING: {
          startedAt = performance.now();
          cpuStart = process.cpuUsage();
          for (const s of streams) s.counting = true;
          if (!reverse) {
            const block = Buffer.alloc(blksize, 0x5a);
            for (const s of streams) s.send(block);
          }
          stopSampling = sampleIntervals(streams, startedAt, intervals);
          timer = setTimeout(() => {
            for (const s of streams) s.stop();
            stopSampling?.();
            seconds = (performance.now() - startedAt) / 1000;
            cpu = cpuPercent(cpuStart, seconds * 1000);
            writeState(control, IPERF3_STATE.TEST_END);
          }, duration * 1000);
          break;
        }
        case IPERF3_STATE.EXCHANGE_RESULTS:
          writeJson(control, ourResults(streams, !reverse, seconds, cpu));
          peer = parsePeerResults(await reader.json());
          break;
        case IPERF3_STATE.DISPLAY_RESULTS: {
          writeState(control, IPERF3_STATE.IPERF_DONE);
          if (!peer) throw protocolError('DISPLAY_RESULTS before EXCHANGE_RESULTS');
          return buildResult({ cookie, streams, weSend: !reverse, seconds, blksize, duration, reverse, cpu, peer, intervals });
        }
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
    for (const s of streams) s.stop();
    stopSampling?.();
    reader.detach();
    control.end();
    // Let IPERF_DONE and FIN leave before the data streams go.
    await Promise.race([once(control, 'finish').catch(() => undefined), new Promise((r) => setTimeout(r, 200))]);
    for (const s of streams) s.conn.destroy();
  }
}
