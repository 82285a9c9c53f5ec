/**
 * A NET device backed by a Linux TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`).
 *
 * The descriptor is opened from Rust, optionally inside a named network namespace. Reception runs
 * on the event loop thread: libuv watches the descriptor, and when it is readable the frames that
 * are ready (up to 64 frames or 64 KiB) are read straight into a receive buffer this device lent
 * to Rust, and the listener gets views of it in one callback: no thread hop, no allocation, no
 * copy of our own. The buffer is reused for the next batch when the listener said it kept no
 * frame (a {@link ReusingFrameHandler} from `listenReusing` returning true, as Morgana's stack
 * does for TCP); otherwise those frames keep their bytes and the next batch is read after them,
 * in the same slab while it has room.
 *
 * Writes: a TAP `write(2)` runs the kernel's whole receive path for the frame (its TCP, its
 * ACKs) before returning, so a Rust writer thread does most of them, on another core, off the
 * event loop. `write(size, fill)` lends `fill` the free slot of the writer's transmit ring (a
 * preallocated slab shared with Rust, `mtu + 14`-byte slots, 1024 of them at MTU 1500) and
 * hands the frame over with one native call: no copy, no allocation. The first 32 frames of
 * an event-loop turn are written at once on the JS thread when nothing is queued (a thread hop
 * costs more than small exchanges gain); the rest are queued. A stack's TCP frames come through
 * `writeFrom` instead: written straight from the stack's output buffer (one `writev` with the
 * virtio header), inline for the first 4 MiB of a turn, copied into the ring only beyond that
 * or when something is queued. A full ring whose writer thread
 * is not running (starved of CPU on a busy machine) is written out on the JS thread rather than
 * dropped; while the writer is writing, a full ring is waited on for up to 1 ms (pacing the
 * caller to the kernel, as a blocking write would); if no room frees, the frame is dropped and
 * counted in `txDropped`, as a NIC drops on a full transmit queue. `txFrames` counts frames written to the kernel; `close()` writes what
 * is still queued first.
 *
 * Offloads (`vnetHdr: true`): the interface is opened with `IFF_VNET_HDR`, `TUNSETVNETHDRSZ` 12
 * and `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`. Every frame the listener receives
 * and every frame `write` sends then starts with a 12-byte `virtio_net_hdr` (see `vnet-hdr.ts`
 * for its fields and a parser/writer): received frames may be coalesced TCP frames of up to
 * 64 KiB with a partial checksum, written ones may be TCP super-frames the kernel segments. A
 * kernel that refuses the header gives a plain TAP: {@link TapDevice.vnetHdr} says which framing
 * is in effect, {@link TapDevice.kernelOffloads} which offloads.
 *
 * Software receive coalescing (`rxCoalesce`, on by default for a TAP without the header, such
 * as one a Solo5 tender opened): before the listener is called, the native reader merges each
 * batch's runs of adjacent in-order TCP segments of one flow into super-frames of up to 64 KiB
 * (the conditions of Linux's GRO; checksums verified and rewritten), delivered with
 * {@link FrameOffload} metadata as the kernel's GRO'd frames are; the device advertises
 * `offloads.rxCoalesce`. A stack then does its per-frame work once per ~40 segments.
 *
 * Like a socket, an open device keeps the event loop alive; `close()` releases it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, MorganaError, OutOfRangeError, assertInteger } from '../errors.js';
import { native } from '../native.js';
import {
  type FrameFill,
  type FrameHandler,
  type FrameOffload,
  type ReusingFrameHandler,
  type NetDevice,
  type NetOffloads,
  type NetStats,
  type ReceiveBatch,
  type ReceiveSteer,
  ETHERNET_HEADER_LENGTH,
  RECEIVE_LENGTH_MASK,
  MAX_SUPER_FRAME,
} from './device.js';
import { formatMac, parseMac, randomLocalMac } from './mac.js';
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_LENGTH,
} from './vnet-hdr.js';

/** Options of {@link openTap}. */
export interface TapOptions {
  /**
   * Interface name, 1 to 15 bytes (`%d` lets the kernel number it, e.g. `'mtap%d'`; the chosen
   * name is {@link TapDevice.name}). An existing persistent TAP of that name is attached to.
   */
  name: string;
  /**
   * Network namespace to create the interface in: a name as `ip netns add` creates it (under
   * `/var/run/netns/`) or an absolute path such as `/proc/<pid>/ns/net`. Default: the process's.
   */
  netns?: string;
  /**
   * The MAC address Morgana's stack uses on this interface (not the kernel side's own MAC).
   * Default: a random locally administered unicast address.
   */
  mac?: string;
  /** IP MTU, 68 to 65,521 (default 1500); also set on the kernel side of the interface. */
  mtu?: number;
  /**
   * Ask for a 12-byte `virtio_net_hdr` in front of every frame, both ways, with checksum and TCP
   * segmentation offloads (default false). See {@link TapDevice.vnetHdr} for whether it is in
   * effect. Frames with the header are not plain Ethernet frames: a stack must expect them.
   */
  vnetHdr?: boolean;
  /**
   * Software receive coalescing (GRO) on a TAP without `virtio_net_hdr` (default true): each
   * received batch's runs of in-order TCP segments of one flow reach the listener as one
   * super-frame with {@link FrameOffload} metadata (checksums verified, `gsoSize` the first
   * segment's payload), as the kernel's GRO delivers them on a `vnetHdr` TAP; the device then
   * advertises `offloads.rxCoalesce`. False: every frame as the kernel wrote it.
   */
  rxCoalesce?: boolean;
}

/** Offloads a TAP device opened with `vnetHdr` has in effect. */
export interface TapOffloads {
  /** `TUN_F_CSUM`: frames may carry partial checksums (`NEEDS_CSUM`) both ways. */
  checksum: boolean;
  /** `TUN_F_TSO4`: TCP/IPv4 super-frames both ways (GRO'd on receive, GSO on send). */
  tso4: boolean;
  /** `TUN_F_TSO6`: the same for TCP/IPv6. */
  tso6: boolean;
}

/** A TAP-backed NET device. */
export interface TapDevice extends NetDevice {
  /** The kernel interface name (with any `%d` expanded). */
  readonly name: string;
  /**
   * Whether every frame received and written starts with a 12-byte `virtio_net_hdr` (asked for
   * with `vnetHdr` and granted by the kernel). Frames are then up to 12 + 14 + 65,535 bytes.
   */
  readonly vnetHdr: boolean;
  /**
   * The offloads the kernel granted on this TAP (all false without the header). Not
   * `NetDevice.offloads`: frames of a `vnetHdr` TAP carry the raw header in front.
   */
  readonly kernelOffloads: TapOffloads;
  /** Whether software receive coalescing is on (see {@link TapOptions.rxCoalesce}). */
  readonly rxCoalesce: boolean;
  /** Super-frames made by software receive coalescing, and the received segments in them. */
  coalesceStats(): { superFrames: number; segments: number };
}

type Handle = ReturnType<typeof native.TapHandle.open>;

/** Largest MTU the kernel's TUN/TAP driver accepts (65,535 minus the Ethernet header). */
const MAX_TAP_MTU = 65_521;
/** `write` asks for at most this many bytes. */
const MAX_WRITE_SIZE = 1 << 20;
/** The longest frame with the header: header, Ethernet header, a 65,535-byte IP packet. */
const MAX_OFFLOAD_FRAME = VIRTIO_NET_HDR_LENGTH + ETHERNET_HEADER_LENGTH + 65_535;
/**
 * Frames per event-loop turn (until the microtask queue drains) that may be written on the JS
 * thread when nothing is queued: small exchanges (a response, ACKs, a ping) then leave without
 * the cost of a thread hop, ~3 µs of CPU a frame, while the rest of a burst goes to the writer
 * thread. Bounds the kernel work done on the JS thread per turn to a few hundred µs.
 */
const INLINE_PER_TURN = 32;
/**
 * Bytes per event-loop turn that `writeFrom` may write on the JS thread when nothing is queued
 * (a stack's TCP output, sent from its own buffer). Counted in bytes, not frames: a TCP
 * super-frame sent inline costs no copy and no thread hop, and on a 2-core machine the writer
 * thread's parallelism did not pay for those (with 32 frames a turn, a 4 MiB window went 35 %
 * inline: 0.75 CPU-s per GiB; all of it inline: 0.52 and 1.5× the rate).
 */
const INLINE_BYTES_PER_TURN = 4 << 20;
/** No header in front of a frame sent with `writeFrom`. */
const EMPTY = Buffer.alloc(0);
/** A receive slab holds this many receive buffers (batches kept whole by their listeners). */
const RX_SLAB_BUFFERS = 4;

/**
 * Opens a TAP interface as a NET device. Needs `CAP_NET_ADMIN` (in the target namespace) and
 * access to `/dev/net/tun`. The kernel side starts down: bring it up (and attach it to a bridge,
 * give it an address…) with `ip`.
 *
 * Errors (all {@link MorganaError}): `ERR_TAP_PERMISSION` (not allowed), `ERR_TAP_UNAVAILABLE`
 * (no `/dev/net/tun`), `ERR_TAP_NETNS` (namespace missing), `ERR_TAP_OPEN` (anything else, with
 * the OS error text); invalid options throw `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE` /
 * `ERR_INVALID_MAC`.
 */
export async function openTap(options: TapOptions): Promise<TapDevice> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
  const { name, netns } = options;
  if (typeof name !== 'string') throw new InvalidArgumentError('options.name must be a string');
  if (netns !== undefined && typeof netns !== 'string') throw new InvalidArgumentError('options.netns must be a string');
  if (options.vnetHdr !== undefined && typeof options.vnetHdr !== 'boolean') throw new InvalidArgumentError('options.vnetHdr must be a boolean');
  const mtu = options.mtu ?? 1500;
  assertInteger(mtu, 'options.mtu', 68, MAX_TAP_MTU);
  const mac = formatMac(parseMac(options.mac ?? randomLocalMac((n) => randomBytes(n))));
  const vnetHdr = options.vnetHdr ?? false;
  const coalesce = rxCoalesceOption(options.rxCoalesce);
  return new Tap((onBatch) => native.TapHandle.open(name, netns, mtu, vnetHdr, onBatch), mac, mtu, coalesce);
}

/**
 * Makes a NET device of a TAP descriptor opened elsewhere: by a helper inside a network
 * namespace this process may not enter, which sent it over a socket (`SCM_RIGHTS`). The device
 * owns `fd` from then on, also when this throws (`ERR_TAP_OPEN`: not a TAP descriptor). The
 * kernel side's MTU is left as it is: `mtu` (default 1500) should match it.
 */
export function adoptTap(fd: number, options: Omit<TapOptions, 'name' | 'netns' | 'vnetHdr'> = {}): TapDevice {
  assertInteger(fd, 'fd', 0, 0x7fffffff);
  const mtu = options.mtu ?? 1500;
  assertInteger(mtu, 'options.mtu', 68, MAX_TAP_MTU);
  const mac = formatMac(parseMac(options.mac ?? randomLocalMac((n) => randomBytes(n))));
  const coalesce = rxCoalesceOption(options.rxCoalesce);
  return new Tap((onBatch) => native.TapHandle.adopt(fd, mtu, onBatch), mac, mtu, coalesce);
}

function rxCoalesceOption(value: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') throw new InvalidArgumentError('options.rxCoalesce must be a boolean');
  return value ?? true;
}

/** A lengths entry of a coalesced frame holds its segment size above these bits (Rust's `gro::GSO_SHIFT`). */
const GSO_SHIFT = 17;
const LENGTH_MASK = RECEIVE_LENGTH_MASK;
/** What a plain TAP with software receive coalescing accepts and delivers. */
const RX_COALESCE_OFFLOADS: NetOffloads = Object.freeze({ checksum: false, tso4: false, tso6: false, rxCoalesce: true });

/** The metadata of a frame the native reader coalesced from segments of `gsoSize` bytes. */
function coalescedOffload(frame: Buffer, gsoSize: number): FrameOffload {
  const v6 = frame.readUInt16BE(12) === 0x86dd;
  const csumStart = ETHERNET_HEADER_LENGTH + (v6 ? 40 : 20);
  return {
    flags: VIRTIO_NET_HDR_F_DATA_VALID,
    gsoType: v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
    hdrLen: csumStart + (frame[csumStart + 12]! >> 4) * 4,
    gsoSize,
    csumStart,
    csumOffset: 16,
  };
}

class Tap implements TapDevice {
  readonly mac: string;
  readonly mtu: number;
  readonly name: string;
  readonly vnetHdr: boolean;
  readonly kernelOffloads: TapOffloads;
  readonly rxCoalesce: boolean;
  readonly offloads: NetOffloads | undefined;
  /** The longest frame `write` sends (header included with `vnetHdr`). */
  readonly #maxFrame: number;
  /** The shortest: an Ethernet header (after the virtio header with `vnetHdr`). */
  readonly #minFrame: number;
  #handle: Handle;
  /** `#handle.send` as a plain native function (no napi-rs per-call bookkeeping). */
  #send: (length: number) => number;
  /** `#handle.sendParts`, likewise. */
  #sendParts: (head: Buffer, source: Buffer, at: number, length: number, inline: boolean) => number;
  #closed = false;
  #handler: FrameHandler | ReusingFrameHandler | undefined;
  /** The handler came through listenReusing: its `true` lets the receive buffer be reused. */
  #reusing = false;
  /** The receive buffer lent to Rust: each batch's frames, back to back (a view of the slab). */
  #rxBuffer!: Buffer;
  /** Receive buffers are carved from this, one after the other, as listeners keep frames. */
  #rxSlab: Buffer | undefined;
  /** Where {@link #rxBuffer} starts in the slab. */
  #rxAt = 0;
  /** Their lengths, written by Rust (never handed out, so never replaced). */
  readonly #rxLengths: Uint32Array;
  /** The transmit ring's memory (external, owned by Rust), or undefined when not shareable. */
  #slab: Buffer | undefined;
  /** Bytes per ring slot (≥ mtu + 14). */
  #slotLength: number;
  /** A view of each slot, made on first use. */
  #slots: Buffer[] = [];
  /** The free slot the next frame goes into, or -1 when one must be reserved first. */
  #slot = -1;
  /** Lent to `fill` when no slot is: a full ring, a `size` larger than a slot, no slab. Off-heap. */
  #scratch: Buffer;
  /** Frames refused here: bad lengths, oversized, closed during fill. */
  #txDropped = 0;
  /** Frames this turn may still `send` (possibly inline) rather than `commit`. */
  #inlineLeft = INLINE_PER_TURN;
  /** Bytes this turn may still send inline with `writeFrom` / `writeParts`. */
  #inlineBytesLeft = INLINE_BYTES_PER_TURN;
  #turnPending = false;
  readonly #newTurn = (): void => {
    this.#inlineLeft = INLINE_PER_TURN;
    this.#inlineBytesLeft = INLINE_BYTES_PER_TURN;
    this.#turnPending = false;
  };
  #rxFrames = 0;
  #rxBytes = 0;
  #rxUnheard = 0;
  #rxSteered = 0;
  /** Sees each batch first (see {@link NetDevice.steerReceive}). */
  #steer: ReceiveSteer | undefined;
  /** What it is shown: this object, reused from batch to batch. */
  readonly #steerBatch: { -readonly [K in keyof ReceiveBatch]: ReceiveBatch[K] };

  constructor(open: (onBatch: (count: number) => void) => Handle, mac: string, mtu: number, coalesce: boolean) {
    this.mac = mac;
    this.mtu = mtu;
    try {
      this.#handle = open((count) => this.#receive(count));
    } catch (error) {
      throw tapError(error);
    }
    this.#send = native.tapFastSend(this.#handle);
    this.#sendParts = native.tapFastSendParts(this.#handle);
    this.#rxLengths = new Uint32Array(this.#handle.rxBatchFrames);
    this.#lendRxBuffer(0);
    this.name = this.#handle.name;
    this.vnetHdr = this.#handle.vnetHdr;
    const bits = this.#handle.offloads;
    this.kernelOffloads = Object.freeze({ checksum: (bits & 1) !== 0, tso4: (bits & 2) !== 0, tso6: (bits & 4) !== 0 });
    // The kernel coalesces for a TAP with the header; software does it for one without.
    this.rxCoalesce = coalesce && !this.vnetHdr;
    this.offloads = this.rxCoalesce ? RX_COALESCE_OFFLOADS : undefined;
    this.#handle.rxCoalesce(this.rxCoalesce);
    this.#steerBatch = {
      frames: this.#rxBuffer,
      lengths: this.#rxLengths,
      count: 0,
      framing: this.vnetHdr ? VIRTIO_NET_HDR_LENGTH : 0,
      taken: new Uint8Array(this.#rxLengths.length),
      counts: new Uint32Array(3),
    };
    this.#maxFrame = this.vnetHdr ? MAX_OFFLOAD_FRAME : mtu + ETHERNET_HEADER_LENGTH;
    this.#minFrame = ETHERNET_HEADER_LENGTH + (this.vnetHdr ? VIRTIO_NET_HDR_LENGTH : 0);
    this.#scratch = Buffer.allocUnsafeSlow(mtu + ETHERNET_HEADER_LENGTH + (this.vnetHdr ? VIRTIO_NET_HDR_LENGTH : 0));
    this.#slab = this.#handle.txSlab() ?? undefined;
    this.#slotLength = this.#handle.txSlotLength;
  }

  /** The buffer over ring slot `slot`. */
  #view(slot: number): Buffer {
    let view = this.#slots[slot];
    if (view === undefined) {
      const start = slot * this.#slotLength;
      view = this.#slab!.subarray(start, start + this.#slotLength);
      this.#slots[slot] = view;
    }
    return view;
  }

  /**
   * Lends Rust the receive buffer for the batches from now on: the slab's room after the `kept`
   * bytes of the last batch (which a listener may still refer to), or a new slab when too little
   * is left. Small batches kept by listeners (ARP, ICMP, UDP) then share a slab, as Node's
   * Buffer pool does, instead of costing a full-size buffer each.
   */
  #lendRxBuffer(kept: number): void {
    const length = this.#handle.rxBufferLength;
    let at = (this.#rxAt + kept + 7) & ~7;
    if (this.#rxSlab === undefined || at + length > this.#rxSlab.length) {
      this.#rxSlab = Buffer.allocUnsafeSlow(length * RX_SLAB_BUFFERS);
      at = 0;
    }
    this.#rxAt = at;
    this.#rxBuffer = this.#rxSlab.subarray(at, at + length);
    this.#handle.rxLend(this.#rxBuffer, this.#rxLengths);
  }

  /** A batch of `count` frames is in the receive buffer (called from the event loop). */
  #receive(count: number): void {
    if (this.#closed) return;
    const frames = this.#rxBuffer;
    const lengths = this.#rxLengths;
    let offset = 0;
    // Whether every listener call returned "kept nothing", so the buffer may be read into again.
    let reusable = true;
    try {
      // The steer takes what it can of the batch in one call; the rest goes frame by frame.
      let taken: Uint8Array | undefined;
      const steer = this.#steer;
      if (steer !== undefined && this.#handler !== undefined) {
        const batch = this.#steerBatch;
        batch.frames = frames;
        batch.count = count;
        batch.taken.fill(0, 0, count);
        batch.counts.fill(0);
        steer(batch);
        if (batch.counts[0]! > 0) taken = batch.taken;
      }
      for (let i = 0; i < count; i++) {
        const entry = lengths[i]!;
        const length = entry & LENGTH_MASK;
        const handler = this.#handler;
        if (handler === undefined || this.#closed) {
          this.#rxUnheard++;
          offset += length;
          continue;
        }
        if (taken !== undefined && taken[i] === 1) {
          this.#rxSteered++;
          this.#rxFrames++;
          this.#rxBytes += length;
          offset += length;
          continue;
        }
        const frame = frames.subarray(offset, offset + length);
        offset += length;
        this.#rxFrames++;
        this.#rxBytes += length;
        const gsoSize = entry >>> GSO_SHIFT;
        reusable = (gsoSize === 0 ? handler(frame) : handler(frame, coalescedOffload(frame, gsoSize))) === true && this.#reusing && reusable;
      }
    } catch (error) {
      reusable = false;
      throw error;
    } finally {
      // Frames a listener may still refer to keep their bytes; the next batch goes after them.
      if (!reusable && !this.#closed) {
        let kept = 0;
        for (let i = 0; i < count; i++) kept += lengths[i]! & LENGTH_MASK;
        this.#lendRxBuffer(kept);
      }
    }
  }

  write(size: number, fill: FrameFill): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', `write on closed TAP device ${this.name}`);
    assertInteger(size, 'size', 0, MAX_WRITE_SIZE);
    if (this.#slab !== undefined && size <= this.#slotLength) {
      // Fill the ring slot in place, then hand it over: one native call, no copy.
      let slot = this.#slot;
      if (slot < 0) slot = this.#handle.reserve(); // a full ring: written out here if the writer is starved, else waits up to 1 ms
      if (slot >= 0) {
        this.#slot = slot;
        const length = this.#checked(fill(this.#view(slot)), size);
        if (!this.#sendable(length)) return; // the slot stays reserved for the next frame
        let next: number;
        if (this.#inlineLeft > 0) {
          this.#inlineLeft--;
          if (!this.#turnPending) {
            this.#turnPending = true;
            queueMicrotask(this.#newTurn);
          }
          next = this.#send(length);
        } else {
          next = this.#handle.commit(length);
        }
        this.#slot = next < 0 ? -1 : next;
        if (next < -1) this.#txDropped++; // not queued (cannot happen with a reserved slot)
        return;
      }
    }
    // Through the scratch buffer: the ring stayed full (the frame is then dropped and counted
    // by the native side, after fill has run), the caller asks for more than a slot, or no slab.
    if (this.#scratch.length < size) this.#scratch = Buffer.allocUnsafeSlow(size);
    const length = this.#checked(fill(this.#scratch), size);
    if (!this.#sendable(length)) return;
    if (this.#slab !== undefined) {
      const slot = this.#handle.claim(); // -1: full, counted as dropped
      if (slot >= 0) {
        this.#scratch.copy(this.#view(slot), 0, 0, length);
        const next = this.#handle.commit(length);
        this.#slot = next < 0 ? -1 : next;
        if (next < -1) this.#txDropped++;
      }
      return;
    }
    const written = this.#handle.write(this.#scratch, length); // -105: full, counted natively
    if (written !== length && written !== -105) this.#txDropped++;
  }

  /**
   * Sends `source[at..at+length]` (a whole frame, the virtio header first when `vnetHdr`)
   * without filling a slot: written from `source` on this thread when nothing is queued and
   * the turn's inline budget allows, else copied into the ring. `source` is left unchanged.
   */
  writeFrom(source: Buffer, at: number, length: number): void {
    this.writeParts(EMPTY, source, at, length);
  }

  /** As {@link writeFrom}, for a frame made of `head` (e.g. a virtio header) and `source[at..at+length]`. */
  writeParts(head: Buffer, source: Buffer, at: number, length: number): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', `write on closed TAP device ${this.name}`);
    if (!Number.isInteger(at) || !Number.isInteger(length) || at < 0 || length < 0 || at + length > source.length) {
      throw new OutOfRangeError(`frame range ${at}+${length} outside a buffer of ${source.length} bytes`);
    }
    if (!this.#sendable(head.length + length)) return;
    let inline = false;
    if (this.#inlineBytesLeft > 0) {
      this.#inlineBytesLeft -= head.length + length;
      if (!this.#turnPending) {
        this.#turnPending = true;
        queueMicrotask(this.#newTurn);
      }
      inline = true;
    }
    const next = this.#sendParts(head, source, at, length, inline);
    // Like `send`: the next free slot (or -1: full); -105 was counted natively as dropped.
    this.#slot = next < 0 ? -1 : next;
    if (next < -1 && next !== -105) this.#txDropped++;
  }

  /** `fill`'s result, which must be a length from 0 to `size`. */
  #checked(length: number, size: number): number {
    if (!Number.isInteger(length) || length < 0 || length > size) {
      throw new OutOfRangeError(`fill must return a length from 0 to ${size}, got ${length}`);
    }
    return length;
  }

  /** Whether a frame of `length` bytes goes out; counts it as dropped otherwise. */
  #sendable(length: number): boolean {
    if (length > this.#maxFrame || length < this.#minFrame || this.#closed) {
      this.#txDropped++;
      return false;
    }
    return true;
  }

  steerReceive(steer: ReceiveSteer | undefined): void {
    if (steer !== undefined && typeof steer !== 'function') throw new InvalidArgumentError('steer must be a function');
    this.#steer = steer;
  }

  listen(handler: FrameHandler): void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('handler must be a function');
    this.#handler = handler;
    this.#reusing = false;
  }

  listenReusing(handler: ReusingFrameHandler): void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('handler must be a function');
    this.#handler = handler;
    this.#reusing = true;
  }

  coalesceStats(): { superFrames: number; segments: number } {
    const n = this.#handle.stats();
    return { superFrames: n.rxSuperFrames, segments: n.rxCoalescedSegments };
  }

  stats(): NetStats {
    const n = this.#handle.stats();
    return {
      rxFrames: this.#rxFrames,
      rxBytes: this.#rxBytes,
      txFrames: n.txFrames,
      txBytes: n.txBytes,
      rxDropped: this.#rxUnheard + n.rxOversized,
      txDropped: this.#txDropped + n.txQueueFull + n.txErrors,
      rxSteered: this.#rxSteered,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = undefined;
    this.#handle.close(); // writes what is queued, then joins both threads
    this.#slab = undefined;
    this.#slots = [];
    this.#slot = -1;
  }
}

const HINTS: Record<string, string> = {
  ERR_TAP_PERMISSION: 'opening a TAP device needs CAP_NET_ADMIN and access to /dev/net/tun',
  ERR_TAP_UNAVAILABLE: 'the kernel offers no TUN/TAP driver; try `modprobe tun`',
  ERR_TAP_NETNS: 'create it with `ip netns add <name>`',
};

const TAP_CODE = /^(ERR_TAP_[A-Z_]+): ([\s\S]*)$/;

/** Turns the native open failure (`'ERR_TAP_…: text'`) into a MorganaError with that code. */
function tapError(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  const match = TAP_CODE.exec(message);
  if (match) {
    const hint = HINTS[match[1]!];
    return new MorganaError(match[1]!, hint ? `${match[2]} (${hint})` : match[2]!, { cause: error });
  }
  return new MorganaError('ERR_TAP_OPEN', message, { cause: error });
}

/**
 * The NET device of a TAP opened with `vnetHdr: true`: frames without the 12-byte
 * `virtio_net_hdr`, whose fields travel as {@link FrameOffload} metadata instead, so a stack
 * gets the kernel's coalesced (GRO) TCP frames of up to 64 KiB with partial checksums, and
 * hands it TCP super-frames (TSO) the kernel cuts. Its {@link NetOffloads} are the ones the
 * kernel granted. A TAP without the header passes frames through as they are, with no offloads.
 */
export function tapNetDevice(tap: TapDevice): TapNetDevice {
  return new VnetHdrDevice(tap);
}

/** A TAP as a NET device, with counts of the offload metadata received. */
export interface TapNetDevice extends NetDevice {
  /** The TAP device underneath (its name, framing and the offloads the kernel granted). */
  readonly tap: TapDevice;
  /** Frames received with a partial checksum (`NEEDS_CSUM`), and coalesced (GRO) TCP frames. */
  offloadStats(): { partialChecksum: number; coalesced: number };
}

class VnetHdrDevice implements TapNetDevice {
  readonly #tap: TapDevice;
  readonly tap: TapDevice;
  #partialChecksum = 0;
  #coalesced = 0;
  readonly offloads: NetOffloads | undefined;
  #fill: FrameFill | undefined;
  #offload: FrameOffload | undefined;
  /** The virtio header of a frame sent with `writeFrom`. */
  readonly #header = Buffer.alloc(VIRTIO_NET_HDR_LENGTH);
  readonly #fillWithHeader = (buffer: Buffer): number => {
    const offload = this.#offload;
    const frame = buffer.subarray(VIRTIO_NET_HDR_LENGTH);
    const length = this.#fill!(frame);
    buffer.fill(0, 0, VIRTIO_NET_HDR_LENGTH);
    if (offload && (offload.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
      // Written with its checksum left partial (the field holds the pseudo-header sum).
      writeSuperFrameHeader(buffer, offload);
    } else if (offload && offload.gsoType !== VIRTIO_NET_HDR_GSO_NONE && Number.isInteger(length) && length > offload.csumStart + offload.csumOffset + 1) {
      // Linux cuts a super-frame from a partial checksum: the TCP checksum field holds the
      // pseudo-header sum over the whole segment (NEEDS_CSUM), as a kernel stack leaves it.
      const partial = pseudoSum(frame, 0, offload.csumStart, length, offload.gsoType === VIRTIO_NET_HDR_GSO_TCPV4);
      frame.writeUInt16BE(partial, offload.csumStart + offload.csumOffset);
      writeSuperFrameHeader(buffer, offload);
    }
    return Number.isInteger(length) ? length + VIRTIO_NET_HDR_LENGTH : length;
  };

  constructor(tap: TapDevice) {
    this.#tap = tap;
    this.tap = tap;
    const o = tap.kernelOffloads;
    this.offloads = tap.vnetHdr ? Object.freeze({ checksum: o.checksum, tso4: o.tso4, tso6: o.tso6, maxFrame: MAX_SUPER_FRAME, rxCoalesce: true }) : tap.offloads;
  }

  get mac(): string {
    return this.#tap.mac;
  }

  get mtu(): number {
    return this.#tap.mtu;
  }

  write(size: number, fill: FrameFill, offload?: FrameOffload): void {
    if (!this.#tap.vnetHdr) return this.#tap.write(size, fill);
    this.#fill = fill;
    this.#offload = offload;
    try {
      this.#tap.write(size + VIRTIO_NET_HDR_LENGTH, this.#fillWithHeader);
    } finally {
      this.#fill = undefined;
      this.#offload = undefined;
    }
  }

  /**
   * Sends `source[at..at+length]` from where it is (see {@link NetDevice.writeFrom}): the
   * virtio header goes in front through `writev`, and a super-frame's TCP checksum field holds
   * the pseudo-header sum the kernel needs only for the duration of the call.
   */
  writeFrom(source: Buffer, at: number, length: number, offload?: FrameOffload): void {
    const tap = this.#tap;
    if (!(tap instanceof Tap)) {
      this.write(length, (buffer) => source.copy(buffer, 0, at, at + length), offload);
      return;
    }
    if (!tap.vnetHdr) return tap.writeFrom(source, at, length);
    const header = this.#header;
    header.fill(0);
    if (offload && (offload.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
      // Its checksum already left partial by the sender: the kernel completes it.
      writeSuperFrameHeader(header, offload);
      return tap.writeParts(header, source, at, length);
    }
    if (!offload || offload.gsoType === VIRTIO_NET_HDR_GSO_NONE || length <= offload.csumStart + offload.csumOffset + 1) {
      return tap.writeParts(header, source, at, length);
    }
    // As `#fillWithHeader`, but the caller's bytes are put back afterwards.
    const field = at + offload.csumStart + offload.csumOffset;
    const saved = source.readUInt16BE(field);
    source.writeUInt16BE(pseudoSum(source, at, offload.csumStart, length, offload.gsoType === VIRTIO_NET_HDR_GSO_TCPV4), field);
    writeSuperFrameHeader(header, offload);
    try {
      tap.writeParts(header, source, at, length);
    } finally {
      source.writeUInt16BE(saved, field);
    }
  }

  steerReceive(steer: ReceiveSteer | undefined): void {
    const tap = this.#tap;
    if (!tap.steerReceive) return;
    if (!tap.vnetHdr || steer === undefined) return tap.steerReceive(steer);
    // The TAP shows frames with their virtio header; what the steer takes is counted here as
    // `#receive` counts the rest.
    tap.steerReceive((batch) => {
      const { counts } = batch;
      const partial = counts[1]!;
      const coalesced = counts[2]!;
      steer(batch);
      this.#partialChecksum += counts[1]! - partial;
      this.#coalesced += counts[2]! - coalesced;
    });
  }

  listen(handler: FrameHandler): void {
    if (!this.#tap.vnetHdr) return this.#tap.listen(handler);
    this.#tap.listen((raw) => void this.#receive(raw, handler));
  }

  listenReusing(handler: ReusingFrameHandler): void {
    if (!this.#tap.vnetHdr) return this.#tap.listenReusing!(handler);
    this.#tap.listenReusing!((raw) => this.#receive(raw, handler));
  }

  /** Strips the header and passes the frame on, with its metadata; returns what `handler` did. */
  #receive(raw: Buffer, handler: FrameHandler | ReusingFrameHandler): boolean {
    if (raw.length < VIRTIO_NET_HDR_LENGTH + ETHERNET_HEADER_LENGTH) return true;
    const flags = raw[0]!;
    const gsoType = raw[1]!;
    const frame = raw.subarray(VIRTIO_NET_HDR_LENGTH);
    if (flags === 0 && gsoType === VIRTIO_NET_HDR_GSO_NONE) return handler(frame) === true;
    if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) this.#partialChecksum++;
    if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) this.#coalesced++;
    // TCP is trusted as the kernel marks it (the stack's engine skips the sum): over IPv4, and
    // over IPv6 when the partial checksum is the TCP header's right after the fixed header
    // (where the IPv6 layer takes its word). Anything else with a partial checksum is completed
    // here, for layers that verify checksums.
    const tcp4 = frame.readUInt16BE(12) === 0x0800 && frame[23] === 6;
    const tcp6 = frame.readUInt16BE(12) === 0x86dd && frame[20] === 6 && raw.readUInt16LE(6) === ETHERNET_HEADER_LENGTH + 40 && raw.readUInt16LE(8) === 16;
    let marked = flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID);
    if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 && !tcp4 && !tcp6) {
      if (!native.gsoCompleteChecksum(frame, raw.readUInt16LE(6), raw.readUInt16LE(8))) return true;
      // Complete now, and valid by construction: a router must not complete it a second time.
      marked = VIRTIO_NET_HDR_F_DATA_VALID;
    }
    return handler(frame, {
      flags: marked,
      gsoType,
      hdrLen: raw.readUInt16LE(2),
      gsoSize: raw.readUInt16LE(4),
      csumStart: raw.readUInt16LE(6),
      csumOffset: raw.readUInt16LE(8),
    }) === true;
  }

  stats(): NetStats {
    return this.#tap.stats();
  }

  offloadStats(): { partialChecksum: number; coalesced: number } {
    const coalesced = this.#tap.vnetHdr ? this.#coalesced : this.#tap.coalesceStats().superFrames;
    return { partialChecksum: this.#partialChecksum, coalesced };
  }

  close(): Promise<void> {
    return this.#tap.close();
  }
}

/**
 * The `virtio_net_hdr` of a TCP frame (a super-frame, or with `gsoType` none an ordinary one)
 * whose checksum field holds the pseudo-header sum (`NEEDS_CSUM`), into `header`'s first 10 bytes. Not `writeVirtioNetHdr` (vnet-hdr.ts): this runs per
 * super-frame and needs neither its checks nor its DataView.
 */
function writeSuperFrameHeader(header: Buffer, offload: FrameOffload): void {
  header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  header[1] = offload.gsoType;
  header.writeUInt16LE(offload.hdrLen, 2);
  header.writeUInt16LE(offload.gsoSize, 4);
  header.writeUInt16LE(offload.csumStart, 6);
  header.writeUInt16LE(offload.csumOffset, 8);
}

/** The TCP pseudo-header sum (folded, not complemented) of the segment at `frame[start..end]` of the frame at `frame[base..]`. */
function pseudoSum(frame: Buffer, base: number, start: number, end: number, v4: boolean): number {
  const ip = base + ETHERNET_HEADER_LENGTH;
  let sum = 6 + (end - start);
  const [from, to] = v4 ? [ip + 12, ip + 20] : [ip + 8, ip + 40];
  for (let i = from; i < to; i += 2) sum += frame.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}
