/**
 * One iperf3 test as either end runs it: its data streams (the common accounting, TCP
 * and UDP streams) and the session that starts, times, reports and ends the test.
 * @module
 */
import type { TcpConnection } from '../../stack/tcp.js';
import type { UdpPeer, UdpSocket } from '../../stack/udp.js';
import { cookieText, type PeerResults, type PeerStream, type TestSpec } from './protocol.js';
import { cpuPercent, type Iperf3Interval, type Iperf3IntervalStream, type Iperf3IntervalSum, type Iperf3Result, type Iperf3Sum, percent, rate, sum } from './reports.js';
import { UDP_BURST_LIMIT, UDP_PACING_BURST, UdpReceiveStats, wallClock, writeUdpHeader } from './udp.js';

/** What a stream's peer reported about it in the results exchange. */
export interface PeerView {
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
export abstract class DataStream {
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

/** The receive buffer of a TCP data stream: one engine read at a time fills at most this. */
const READ_BUFFER = 256 * 1024;

/** A data stream over a TCP connection. */
export class TcpDataStream extends DataStream {
  #sending = false;
  #pendingWrites = 0;
  #flushWaiters: Array<() => void> = [];
  #retry: NodeJS.Timeout | undefined;
  readonly conn: TcpConnection;

  constructor(session: Session, id: number, sender: boolean, conn: TcpConnection, leftover: Buffer) {
    super(session, id, sender);
    this.conn = conn;
    conn.on('error', () => {});
    // Keep reading even after the test ended, so a peer still sending is never blocked. The
    // payload is only counted, so it is read into one reused buffer (as iperf3 does), not a
    // Buffer per chunk.
    const count = (n: number): void => {
      if (this.counting && !this.sender) this.received(n);
    };
    conn.setOnRead({ buffer: Buffer.allocUnsafeSlow(READ_BUFFER), callback: count });
    // What arrived with the handshake, counted when the stream would have delivered it.
    if (leftover.length > 0) process.nextTick(count, leftover.length);
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
export class UdpDataStream extends DataStream {
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
    // A rate that would send more than UDP_PACING_BURST datagrams per pacing interval is paced
    // on every event-loop turn, a few datagrams at a time (catching up after a stall spread over
    // turns too), not in bursts per interval.
    const smooth = spec.rate > 0 && (spec.rate * spec.pacingUs) / 8e6 > UDP_PACING_BURST * block.length;
    const burst = spec.rate === 0 ? 64 : smooth ? UDP_PACING_BURST : UDP_BURST_LIMIT;
    const tick = (): void => {
      this.#timer = undefined;
      const now = performance.now();
      // Like iperf3, pace on the average since the start: send while below the target rate.
      const allowed = spec.rate > 0 ? Math.ceil((spec.rate * (now - startedAt)) / 8000) : Infinity;
      for (let n = 0; n < burst; n++) {
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
        this.#timer = spec.rate > 0 && !smooth ? setTimeout(tick, Math.max(1, spec.pacingUs / 1000)) : setImmediate(tick);
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
export class Session {
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
