/**
 * The iperf3 client on a Morgana stack: opens the control connection, exchanges parameters,
 * opens the data streams (TCP, UDP with its connect handshake) and collects the result.
 * @module
 */
import { once } from 'node:events';
import { MorganaError, assertInteger } from '../../errors.js';
import type { Stack } from '../../stack/index.js';
import { assertInterval, ByteReader, IPERF3_DEFAULT_BLOCK, IPERF3_DEFAULT_PORT, IPERF3_STATE, makeIperf3Cookie, MAX_STREAMS, MAX_TCP_BLOCK, paramsFromSpec, parsePeerResults, type PeerResults, protocolError, streamId, type TestSpec, writeJson, writeState } from './protocol.js';
import { type Iperf3Interval, type Iperf3Protocol, type Iperf3Result } from './reports.js';
import { Session, TcpDataStream, UdpDataStream } from './session.js';
import { connectByteOrder, IPERF3_UDP_CONNECT_MSG, IPERF3_UDP_CONNECT_REPLY, IPERF3_UDP_DEFAULT_BLOCK, IPERF3_UDP_DEFAULT_RATE, IPERF3_UDP_LEGACY_CONNECT_REPLY, IPERF3_UDP_MAX_BLOCK, IPERF3_UDP_MIN_BLOCK, UDP_CONNECT_RETRY_MS, UDP_CONNECT_TIMEOUT_MS, udpConnectDatagram, udpHeaderLength } from './udp.js';

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

export function clientSpec(options: Iperf3ClientOptions): TestSpec {
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
export async function connectUdpStream(stack: Stack, session: Session, index: number, host: string, port: number): Promise<UdpDataStream> {
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
