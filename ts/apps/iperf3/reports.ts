/**
 * iperf3 results and interval reports, shaped like `iperf3 -J` output, and the arithmetic
 * that fills them (rates, sums, CPU use).
 * @module
 */

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

/** CPU use of this process since `since`, as iperf3 reports it (percent of wall time). */
export function cpuPercent(since: NodeJS.CpuUsage, wallMs: number): { total: number; user: number; system: number } {
  const used = process.cpuUsage(since);
  const wallUs = Math.max(1, wallMs * 1000);
  const user = (used.user / wallUs) * 100;
  const system = (used.system / wallUs) * 100;
  return { total: user + system, user, system };
}

export function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? (bytes * 8) / seconds : 0;
}

export function sum(seconds: number, bytes: number, sender: boolean): Iperf3Sum {
  return { start: 0, end: seconds, seconds, bytes, bits_per_second: rate(bytes, seconds), sender };
}

export function percent(part: number, whole: number): number {
  return whole > 0 ? (100 * part) / whole : 0;
}
