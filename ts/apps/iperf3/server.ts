/**
 * The iperf3 server on a Morgana stack: accepts control connections, one test at a time,
 * and the data streams of that test (TCP connections, UDP connect datagrams).
 * @module
 */
import { once } from 'node:events';
import { MorganaError, assertInteger } from '../../errors.js';
import type { Stack } from '../../stack/index.js';
import type { TcpConnection, TcpServer } from '../../stack/tcp.js';
import type { UdpPeer, UdpSocket } from '../../stack/udp.js';
import { assertInterval, ByteReader, IESTREAMLISTEN, IPERF3_COOKIE_SIZE, IPERF3_DEFAULT_PORT, IPERF3_STATE, type Params, parsePeerResults, protocolError, specFromParams, streamId, writeJson, writeServerError, writeState } from './protocol.js';
import { type Iperf3Interval, type Iperf3Result } from './reports.js';
import { Session, TcpDataStream, UdpDataStream } from './session.js';
import { connectByteOrder, IPERF3_UDP_CONNECT_MSG, IPERF3_UDP_CONNECT_REPLY, IPERF3_UDP_LEGACY_CONNECT_MSG, udpConnectDatagram } from './udp.js';

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

export interface ServerTest {
  cookie: Buffer;
  session: Session | undefined;
  allIn: (() => void) | undefined;
  /** UDP streams by `address:port` of the client's socket. */
  udpPeers: Map<string, UdpDataStream>;
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
