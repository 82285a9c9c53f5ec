/**
 * The NET device interface, shaped like MirageOS 3.5's mirage-net, and what every backend
 * (VirtualSwitch port, TAP, pcap recorder) implements.
 * @module
 */

/** Frame counters of a NET device. */
export interface NetStats {
  /** Frames received and delivered to the listener. */
  rxFrames: number;
  /** Bytes of those frames. */
  rxBytes: number;
  /** Frames written and handed to the medium. */
  txFrames: number;
  /** Bytes of those frames. */
  txBytes: number;
  /** Received frames dropped (no listener, queue full, oversized, malformed). */
  rxDropped: number;
  /** Written frames dropped (oversized, queue full, medium refused). */
  txDropped: number;
}

/** Receives one Ethernet frame (without FCS). The buffer belongs to the handler from then on. */
export type FrameHandler = (frame: Buffer) => void;

/**
 * Fills the buffer a device lends it with one Ethernet frame and returns the frame's length.
 * The buffer must not be kept after `fill` returns.
 */
export type FrameFill = (buffer: Buffer) => number;

/** A network interface that sends and receives Ethernet II frames. */
export interface NetDevice {
  /** The interface's MAC address, lower-case colon-separated (`'02:00:00:00:00:01'`). */
  readonly mac: string;
  /** The IP MTU: the largest Ethernet payload in bytes. A frame is at most `mtu + 14` bytes. */
  readonly mtu: number;
  /**
   * Sends one frame assembled in place: the device lends a buffer of at least `size` bytes,
   * `fill` writes the frame and returns its length (≤ `size`). Frames longer than `mtu + 14`
   * are dropped and counted. Throws `ERR_NET_CLOSED` after {@link close}.
   */
  write(size: number, fill: FrameFill): void;
  /** Sets the function that receives every incoming frame (replacing any earlier one). */
  listen(handler: FrameHandler): void;
  /** Counters since the device was created. */
  stats(): NetStats;
  /** Stops sending and receiving and releases the medium. Idempotent. */
  close(): Promise<void>;
}

/** The largest Ethernet header Morgana writes (no VLAN tag). */
export const ETHERNET_HEADER_LENGTH = 14;

/** Counters all at zero. */
export function emptyNetStats(): NetStats {
  return { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, txDropped: 0 };
}
