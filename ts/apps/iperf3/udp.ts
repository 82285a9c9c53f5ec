/**
 * iperf3's UDP stream format, apart from any I/O: the "connect" datagrams that open a stream,
 * the header at the start of every data datagram, and the receiver's accounting of loss,
 * reordering and jitter.
 *
 * - Opening a stream: the client sends a 4-byte datagram to the server's port; the server
 *   answers with a 4-byte datagram from the port it will use for the stream. iperf3 writes both
 *   as a native-endian 32-bit integer (0x36373839 and 0x39383736 since 3.10, 123456789 and
 *   987654321 before), so on the usual little-endian machines the wire carries the ASCII text
 *   "9876" and "6789". A server accepts any 4-byte datagram; a client accepts either reply in
 *   either byte order.
 * - Data datagrams: 32-bit seconds and microseconds of the sending time, then the sequence number
 *   of the datagram (1, 2, 3, …), 32 bits or, when the client sent `udp_counters_64bit`, 64
 *   bits, all big-endian; the rest of the datagram is filler.
 * - Receiving: a sequence number above the next expected one counts the gap as lost; one below
 *   it is out of order and takes one loss back. Jitter is the RFC 1889 (§6.3.1, A.8) estimate:
 *   the transit time's change between consecutive datagrams, smoothed with gain 1/16; the first
 *   datagram only sets the reference. Sender and receiver clocks need not agree, only tick at
 *   the same rate.
 * @module
 */
/** What an iperf3 client's connect datagram holds, as a 32-bit integer. */
export const IPERF3_UDP_CONNECT_MSG = 0x36373839;
/** What an iperf3 server answers, as a 32-bit integer. */
export const IPERF3_UDP_CONNECT_REPLY = 0x39383736;
/** The connect messages of iperf3 before 3.10. */
export const IPERF3_UDP_LEGACY_CONNECT_MSG = 123_456_789;
export const IPERF3_UDP_LEGACY_CONNECT_REPLY = 987_654_321;
/** Size of the connect datagrams. */
export const IPERF3_UDP_CONNECT_SIZE = 4;
/** Smallest datagram iperf3 sends (room for a 64-bit counter). */
export const IPERF3_UDP_MIN_BLOCK = 16;
/** Largest UDP payload in one IPv4 datagram. */
export const IPERF3_UDP_MAX_BLOCK = 65_535 - 8 - 20;
/** iperf3's default UDP payload when the path MTU is unknown. */
export const IPERF3_UDP_DEFAULT_BLOCK = 1460;
/** iperf3's default UDP bitrate: 1 Mbit/s (1024 × 1024 bit/s). */
export const IPERF3_UDP_DEFAULT_RATE = 1024 * 1024;

/** A 4-byte connect datagram holding `value` in the given byte order. */
export function udpConnectDatagram(value: number, littleEndian = true): Buffer {
  const b = Buffer.alloc(IPERF3_UDP_CONNECT_SIZE);
  if (littleEndian) b.writeUInt32LE(value >>> 0, 0);
  else b.writeUInt32BE(value >>> 0, 0);
  return b;
}

/**
 * The byte order of a connect datagram carrying one of `values` (`'le'` or `'be'`), or
 * undefined when it is not 4 bytes or holds none of them.
 */
export function connectByteOrder(datagram: Uint8Array, values: readonly number[]): 'le' | 'be' | undefined {
  if (datagram.length !== IPERF3_UDP_CONNECT_SIZE) return undefined;
  const view = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (values.includes(view.readUInt32LE(0))) return 'le';
  if (values.includes(view.readUInt32BE(0))) return 'be';
  return undefined;
}

/** The header of a data datagram. */
export interface UdpDatagramHeader {
  /** Sending time, whole seconds (wraps at 2^32). */
  sec: number;
  /** Sending time, microseconds within the second. */
  usec: number;
  /** Sequence number, from 1. */
  seq: number;
}

/** Header length for 32- or 64-bit counters. */
export function udpHeaderLength(counters64: boolean): number {
  return counters64 ? 16 : 12;
}

/** Writes a data datagram's header at the start of `block` (at least {@link udpHeaderLength} bytes). */
export function writeUdpHeader(block: Buffer, header: UdpDatagramHeader, counters64: boolean): void {
  block.writeUInt32BE(header.sec >>> 0, 0);
  block.writeUInt32BE(header.usec >>> 0, 4);
  if (counters64) block.writeBigUInt64BE(BigInt(header.seq), 8);
  else block.writeUInt32BE(header.seq >>> 0, 8);
}

/** Reads a data datagram's header, or undefined when the datagram is too short to hold one. */
export function readUdpHeader(datagram: Buffer, counters64: boolean): UdpDatagramHeader | undefined {
  if (datagram.length < udpHeaderLength(counters64)) return undefined;
  const seq = counters64 ? Number(datagram.readBigUInt64BE(8)) : datagram.readUInt32BE(8);
  return { sec: datagram.readUInt32BE(0), usec: datagram.readUInt32BE(4), seq };
}

/** The wall clock as iperf3 stamps datagrams: seconds and microseconds since the Unix epoch. */
export function wallClock(nowMs: number = performance.timeOrigin + performance.now()): { sec: number; usec: number } {
  const us = Math.floor(nowMs * 1000);
  return { sec: Math.floor(us / 1e6), usec: us % 1e6 };
}

/**
 * The receiving side of one UDP stream: counts bytes and datagrams, detects loss and reordering
 * from sequence numbers, and estimates jitter. Feed it every data datagram with its arrival
 * time. All state is a few numbers, whatever arrives.
 */
export class UdpReceiveStats {
  /** Payload bytes of the datagrams counted. */
  bytes = 0;
  /** Datagrams counted. */
  datagrams = 0;
  /** The highest sequence number seen (iperf3's `packet_count` on a receiver). */
  highestSeq = 0;
  /** Datagrams missing from the sequence, less those that turned up late (iperf3's `cnt_error`). */
  lost = 0;
  /** Datagrams that arrived after a higher sequence number. */
  outOfOrder = 0;
  /** Smoothed jitter in seconds. */
  jitter = 0;
  /** Datagrams too short for a header (not counted anywhere else). */
  malformed = 0;
  #prevTransit: number | undefined;
  readonly #counters64: boolean;

  constructor(counters64: boolean) {
    this.#counters64 = counters64;
  }

  /**
   * Accounts for one datagram that arrived at `arrivalSec` (seconds, the same epoch as the
   * sender's stamps). Returns false (and counts it as malformed) when it has no header.
   */
  receive(datagram: Buffer, arrivalSec: number): boolean {
    const header = readUdpHeader(datagram, this.#counters64);
    if (!header) {
      this.malformed++;
      return false;
    }
    this.bytes += datagram.length;
    this.datagrams++;
    if (header.seq > this.highestSeq) {
      // A gap ahead of the expected sequence number counts as loss until proven otherwise.
      if (header.seq > this.highestSeq + 1) this.lost += header.seq - 1 - this.highestSeq;
      this.highestSeq = header.seq;
    } else {
      this.outOfOrder++;
      if (this.lost > 0) this.lost--;
    }
    const transit = arrivalSec - (header.sec + header.usec / 1e6);
    if (this.#prevTransit !== undefined) {
      const d = Math.abs(transit - this.#prevTransit);
      this.jitter += (d - this.jitter) / 16;
    }
    this.#prevTransit = transit;
    return true;
  }

  /** Forgets the jitter history (iperf3 restarts jitter when the omitted seconds end). */
  resetJitter(): void {
    this.jitter = 0;
    this.#prevTransit = undefined;
  }
}

/** How long a client waits for the server to answer a UDP stream's connect datagram. */
export const UDP_CONNECT_TIMEOUT_MS = 10_000;

/** The client sends the connect datagram again after this long without an answer. */
export const UDP_CONNECT_RETRY_MS = 1_000;

/** Datagrams one pacing tick may send at most, so a stalled event loop does not burst unboundedly. */
export const UDP_BURST_LIMIT = 1_000;

/**
 * Datagrams a pacing interval may send in one burst. A rate above this many per interval is
 * paced on every event-loop turn instead, at most this many at a time: a burst of a millisecond at 1 Gbit/s (85 datagrams of
 * 1,470 bytes) is about what a kernel receiver's default socket buffer holds (212,992 bytes of
 * buffer truesize), so bursts of that size overran it while the average rate did not (the
 * kernel's iperf3 -s lost 30 % of a 1 Gbit/s test over a TAP; paced per turn, 3 %).
 */
export const UDP_PACING_BURST = 16;
