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
  /**
   * Of `rxFrames`, those a stack's steer took whole out of the device's received batches
   * ({@link NetDevice.steerReceive}); reported by devices that have one.
   */
  rxSteered?: number;
}

/**
 * What a device accepts beyond plain frames, in the terms of virtio-net's features. A device
 * without `offloads` (or with every field off) takes and delivers only real frames of at most
 * `mtu + 14` bytes with complete checksums, and ignores {@link FrameOffload} arguments.
 */
export interface NetOffloads {
  /** Frames may be written with a partial checksum (`NEEDS_CSUM`; `VIRTIO_NET_F_CSUM`). */
  checksum: boolean;
  /** TCP/IPv4 super-frames (`gsoType` {@link GSO_TCPV4}; `VIRTIO_NET_F_HOST_TSO4`). */
  tso4: boolean;
  /** TCP/IPv6 super-frames (`gsoType` {@link GSO_TCPV6}; `VIRTIO_NET_F_HOST_TSO6`). */
  tso6: boolean;
  /** The largest super-frame, Ethernet header included (at most and by default 65,535 + 14). */
  maxFrame?: number;
  /** Received frames may be coalesced in-order TCP segments (GRO), with metadata (default false). */
  rxCoalesce?: boolean;
}

/** `FrameOffload.flags`: the checksum from `csumStart` on is still to be computed. */
export const NEEDS_CSUM = 1;
/** `FrameOffload.flags`: the checksums were verified (or never crossed a wire). */
export const DATA_VALID = 2;
/** `FrameOffload.gsoType`: not a super-frame. */
export const GSO_NONE = 0;
/** `FrameOffload.gsoType`: TCP over IPv4. */
export const GSO_TCPV4 = 1;
/** `FrameOffload.gsoType`: TCP over IPv6. */
export const GSO_TCPV6 = 4;

/**
 * Offload metadata of one frame, in the shape of Linux's `struct virtio_net_hdr`: a super-frame
 * (`gsoType` ≠ {@link GSO_NONE}) carries a TCP segment of up to 64 KiB to be cut at `gsoSize`
 * payload bytes; `flags` say whether a checksum is still to be computed ({@link NEEDS_CSUM}, at
 * `csumStart + csumOffset` over the bytes from `csumStart`) or was verified ({@link DATA_VALID}).
 */
export interface FrameOffload {
  flags: number;
  gsoType: number;
  /** Payload bytes per segment (the MSS). */
  gsoSize: number;
  /** Bytes of headers (Ethernet + IP + TCP). */
  hdrLen: number;
  csumStart: number;
  csumOffset: number;
}

/**
 * Receives one Ethernet frame (without FCS). The buffer belongs to the handler from then on.
 * `offload` comes only from devices that advertise {@link NetOffloads}.
 */
export type FrameHandler = (frame: Buffer, offload?: FrameOffload) => void;

/**
 * A {@link FrameHandler} that returns `true` when it kept no reference to the frame's bytes (it
 * copied what it needed), so that an in-process medium may reuse them at once; `false` leaves
 * them to the handler. See {@link NetDevice.listenReusing}.
 */
export type ReusingFrameHandler = (frame: Buffer, offload?: FrameOffload) => boolean;

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
   * are dropped and counted. Throws `ERR_NET_CLOSED` after {@link close}. `offload` describes
   * a super-frame or partial checksum; pass it only to a device whose {@link offloads} accept it.
   */
  write(size: number, fill: FrameFill, offload?: FrameOffload): void;
  /**
   * Optional: sends a frame the caller gives away. The device may keep `frame` itself (queue
   * it, hand it to a receiver) instead of copying it, so the caller must not write to those
   * bytes again until `done` is called. `done`, if given, is called at most once, when nothing
   * refers to the bytes any more (dropped, copied, or read by a receiver whose
   * {@link ReusingFrameHandler} returned true); it may never be called. The frame reaches a
   * receiver on a later turn, never from inside this call (the caller may still be sending the
   * rest of its batch from the same memory). Otherwise as {@link write}. In-process media
   * implement it to save a copy per frame; callers fall back to {@link write} when it is absent.
   */
  writeOwned?(frame: Buffer, offload?: FrameOffload, done?: () => void): void;
  /**
   * Optional: sends the whole frame at `source[at..at+length]`, which the caller keeps: the
   * device has read it (written it out, or copied it) when this returns, and leaves its bytes
   * as they were. Devices that write frames to the kernel implement it to send straight from
   * the caller's memory, saving the copy into the buffer {@link write} lends. Otherwise as
   * {@link write}.
   */
  writeFrom?(source: Buffer, at: number, length: number, offload?: FrameOffload): void;
  /** What the device accepts beyond plain frames; absent: nothing. */
  readonly offloads?: NetOffloads;
  /** Sets the function that receives every incoming frame (replacing any earlier one). */
  listen(handler: FrameHandler): void;
  /**
   * Optional: as {@link listen}, for a handler that says whether it kept the frame's bytes
   * (Morgana's Ethernet layer); a medium that gives frames away without a copy can then give
   * their memory back to the sender (see {@link writeOwned}'s `done`).
   */
  listenReusing?(handler: ReusingFrameHandler): void;
  /**
   * Optional, for devices that receive frames in batches (a TAP): sets the function that sees
   * each batch before its frames are handed to the listener one by one (`undefined` removes
   * it). Frames it marks in {@link ReceiveBatch.taken} were handled whole (copied or processed,
   * nothing kept) and are not delivered again. A stack uses it to take the TCP segments of a
   * batch into its engine in one call.
   */
  steerReceive?(steer: ReceiveSteer | undefined): void;
  /** Counters since the device was created. */
  stats(): NetStats;
  /** Stops sending and receiving and releases the medium. Idempotent. */
  close(): Promise<void>;
}

/**
 * A batch of received frames, as {@link NetDevice.steerReceive} shows it. The object and its
 * arrays are the device's and reused from batch to batch: valid only during the call.
 */
export interface ReceiveBatch {
  /** The frames, back to back from offset 0. */
  readonly frames: Buffer;
  /**
   * Each frame's length in its low 17 bits ({@link RECEIVE_LENGTH_MASK}); a segment size above
   * them marks a TCP frame the device coalesced from segments whose checksums it checked.
   */
  readonly lengths: Uint32Array;
  /** How many frames. */
  count: number;
  /** Bytes in front of each Ethernet frame: 0, or 12 for a `virtio_net_hdr`. */
  readonly framing: number;
  /** All 0 when the steer is called; it sets 1 for each frame it takes. */
  readonly taken: Uint8Array;
  /** `[taken, with a partial checksum, coalesced]`: 0 when the steer is called, which adds to them. */
  readonly counts: Uint32Array;
}

/** See {@link NetDevice.steerReceive}. */
export type ReceiveSteer = (batch: ReceiveBatch) => void;

/** The bits of a {@link ReceiveBatch.lengths} entry that hold the frame's length. */
export const RECEIVE_LENGTH_MASK = (1 << 17) - 1;

/** The largest Ethernet header Morgana writes (no VLAN tag). */
export const ETHERNET_HEADER_LENGTH = 14;

/** Whether `device` takes `offload`'s super-frame of `length` bytes, or its partial checksum. */
export function acceptsOffload(device: { readonly offloads?: NetOffloads }, offload: FrameOffload, length: number): boolean {
  const o = device.offloads;
  if (!o) return false;
  if ((offload.flags & NEEDS_CSUM) !== 0 && !o.checksum) return false;
  if (offload.gsoType === GSO_NONE) return true;
  const tso = offload.gsoType === GSO_TCPV4 ? o.tso4 : offload.gsoType === GSO_TCPV6 ? o.tso6 : false;
  return tso && length <= (o.maxFrame ?? MAX_SUPER_FRAME);
}

/** The largest super-frame: an Ethernet header and a 65,535-byte IP packet. */
export const MAX_SUPER_FRAME = 14 + 65_535;

/** Counters all at zero. */
export function emptyNetStats(): NetStats {
  return { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, txDropped: 0 };
}
