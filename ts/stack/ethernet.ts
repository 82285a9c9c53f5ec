/**
 * Ethernet II: decapsulation, dispatch by EtherType, and in-place frame assembly.
 * @module
 */
import { OutOfRangeError } from '../errors.js';
import type { FrameOffload, NetDevice, ReceiveBatch } from '../net/device.js';
import { parseMac } from '../net/mac.js';

/** EtherTypes Morgana handles. */
export const ETHERTYPE = Object.freeze({ IPV4: 0x0800, ARP: 0x0806, IPV6: 0x86dd });

/** Length of an Ethernet II header. */
export const ETHERNET_HEADER = 14;

/** The broadcast MAC as bytes. */
export const BROADCAST = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/**
 * Receives the payload of a frame of a registered EtherType. `payload` is a view into `frame`;
 * both belong to the handler.
 */
export type EthernetHandler = (payload: Buffer, src: Buffer, frame: Buffer, offload?: FrameOffload) => void;

/**
 * An {@link EthernetHandler} that returns `true` when it kept no reference to the frame's bytes
 * (see {@link Ethernet.onReusing}).
 */
export type ReusingEthernetHandler = (payload: Buffer, src: Buffer, frame: Buffer, offload?: FrameOffload) => boolean;

/** What {@link Ethernet.write} asks of its caller. */
export interface EthernetWrite {
  /** Room to lend to `fill` after the Ethernet header, in bytes. */
  size: number;
  /** Writes the payload into `payload` (a view after the header) and returns its length. */
  fill: (payload: Buffer) => number;
  /** Source MAC (default the device's). */
  src?: Buffer;
}

/**
 * Sees a copy of every frame an {@link Ethernet} layer sends or receives (a capture). `frame` is
 * only valid during the call; super-frames come with their `offload`.
 */
export type EthernetMirror = (frame: Buffer, direction: 'in' | 'out', offload?: FrameOffload) => void;

/** Ethernet counters. */
export interface EthernetStats {
  rxFrames: number;
  txFrames: number;
  /** Frames shorter than an Ethernet header. */
  droppedMalformed: number;
  /** Frames of an EtherType nobody registered. */
  droppedUnknownType: number;
  /** Unicast frames for another MAC (the medium flooded them). */
  droppedNotForUs: number;
}

/** The Ethernet layer over one NET device. */
export class Ethernet {
  readonly net: NetDevice;
  /** This interface's MAC, as bytes. */
  readonly mac: Buffer;
  readonly #handlers = new Map<number, EthernetHandler | ReusingEthernetHandler>();
  /** EtherTypes whose handler was registered with {@link onReusing}. */
  readonly #reusing = new Set<number>();
  readonly #stats: EthernetStats = { rxFrames: 0, txFrames: 0, droppedMalformed: 0, droppedUnknownType: 0, droppedNotForUs: 0 };
  /** Captures watching this interface (none on the usual path: one length check per frame). */
  #mirrors: EthernetMirror[] = [];

  constructor(net: NetDevice) {
    this.net = net;
    this.mac = parseMac(net.mac);
    if (net.listenReusing) net.listenReusing((frame, offload) => this.#receive(frame, offload));
    else net.listen((frame, offload) => void this.#receive(frame, offload));
  }

  /** The IP MTU of the device. */
  get mtu(): number {
    return this.net.mtu;
  }

  /** Registers the handler for one EtherType (replacing any earlier one). */
  on(ethertype: number, handler: EthernetHandler): void {
    this.#handlers.set(ethertype, handler);
    this.#reusing.delete(ethertype);
  }

  /**
   * As {@link on}, for a handler that returns true when it kept no reference to the frame (it
   * copied what it needed): a device that gave the frame away without a copy may then give its
   * memory back to the sender (see {@link NetDevice.listenReusing}).
   */
  onReusing(ethertype: number, handler: ReusingEthernetHandler): void {
    this.#handlers.set(ethertype, handler);
    this.#reusing.add(ethertype);
  }

  /**
   * @internal Lets `steer` take frames of `ethertype` out of the device's received batches
   * (see {@link NetDevice.steerReceive}; nothing happens on a device without it), counted as
   * received: only while that EtherType's handler is the one registered now and no capture
   * watches the interface, so that both still see every frame they would. `undefined`
   * removes it. The steers of several EtherTypes see each batch in turn.
   */
  steerReceive(ethertype: number, steer: ((batch: ReceiveBatch, mac: Buffer) => void) | undefined): void {
    if (!this.net.steerReceive) return;
    if (steer === undefined) this.#steers.delete(ethertype);
    else this.#steers.set(ethertype, { steer, handler: this.#handlers.get(ethertype) });
    this.net.steerReceive(this.#steers.size === 0 ? undefined : this.#steerBatch);
  }

  /** Steers by EtherType, with the handler each was installed behind. */
  readonly #steers = new Map<number, { steer: (batch: ReceiveBatch, mac: Buffer) => void; handler: unknown }>();
  readonly #steerBatch = (batch: ReceiveBatch): void => {
    if (this.#mirrors.length > 0) return;
    const before = batch.counts[0]!;
    for (const [ethertype, { steer, handler }] of this.#steers) {
      if (this.#handlers.get(ethertype) === handler) steer(batch, this.mac);
    }
    this.#stats.rxFrames += batch.counts[0]! - before;
  };

  /**
   * Calls `observer` with every frame this interface sends and receives from now on, before
   * filtering (as a capture on the device would see them); returns the function that stops it.
   * The dashboard's capture of an interface (a TAP device, a socket link) uses it.
   */
  mirror(observer: EthernetMirror): () => void {
    this.#mirrors = [...this.#mirrors, observer];
    return () => {
      this.#mirrors = this.#mirrors.filter((m) => m !== observer);
    };
  }

  #mirrorOut(frame: Buffer, offload?: FrameOffload): void {
    for (const m of this.#mirrors) m(frame, 'out', offload);
  }

  /** Sends a frame to `dst` (6 bytes or `'aa:bb:…'`), its payload written in place by `request.fill`. */
  write(dst: Buffer | string, ethertype: number, request: EthernetWrite): void {
    const dstBytes = typeof dst === 'string' ? parseMac(dst) : dst;
    if (request.size > this.net.mtu) {
      throw new OutOfRangeError(`payload of ${request.size} bytes exceeds the MTU ${this.net.mtu}`);
    }
    const src = request.src ?? this.mac;
    this.net.write(ETHERNET_HEADER + request.size, (buffer) => {
      dstBytes.copy(buffer, 0, 0, 6);
      src.copy(buffer, 6, 0, 6);
      buffer[12] = ethertype >>> 8;
      buffer[13] = ethertype & 0xff;
      const length = request.fill(buffer.subarray(ETHERNET_HEADER, ETHERNET_HEADER + request.size));
      if (!Number.isInteger(length) || length < 0 || length > request.size) {
        throw new OutOfRangeError(`fill must return a length from 0 to ${request.size}, got ${length}`);
      }
      if (this.#mirrors.length > 0) this.#mirrorOut(buffer.subarray(0, ETHERNET_HEADER + length));
      return ETHERNET_HEADER + length;
    });
    this.#stats.txFrames++;
  }

  #frameSource: Buffer = BROADCAST;
  #frameAt = 0;
  #frameLength = 0;
  readonly #copyFrame = (buffer: Buffer): number => {
    this.#frameSource.copy(buffer, 0, this.#frameAt, this.#frameAt + this.#frameLength);
    return this.#frameLength;
  };

  /**
   * Sends a frame built whole elsewhere (headers included) at `source[at..at+length]`, copied
   * once into the device's buffer (or sent from `source` by a device with
   * {@link NetDevice.writeFrom}). Frames longer than the MTU allows are the device's to drop,
   * unless `offload` describes a super-frame the device accepts. With `giveAway` the caller
   * gives those bytes up: a device that can keep them ({@link NetDevice.writeOwned}) takes them
   * without a copy, and the result is true; false means they were copied and are the caller's.
   * `done` goes with bytes given away (see {@link NetDevice.writeOwned}).
   */
  writeFrame(source: Buffer, at: number, length: number, offload?: FrameOffload, giveAway = false, done?: () => void): boolean {
    if (giveAway && this.net.writeOwned) {
      const frame = source.subarray(at, at + length);
      // Before it is given away: from then on the bytes are the device's.
      if (this.#mirrors.length > 0) this.#mirrorOut(frame, offload);
      this.net.writeOwned(frame, offload, done);
      this.#stats.txFrames++;
      return true;
    }
    if (this.net.writeFrom) {
      this.net.writeFrom(source, at, length, offload);
      if (this.#mirrors.length > 0) this.#mirrorOut(source.subarray(at, at + length), offload);
      this.#stats.txFrames++;
      return false;
    }
    this.#frameSource = source;
    this.#frameAt = at;
    this.#frameLength = length;
    this.net.write(length, this.#copyFrame, offload);
    if (this.#mirrors.length > 0) this.#mirrorOut(source.subarray(at, at + length), offload);
    this.#stats.txFrames++;
    return false;
  }

  /** Counters. */
  stats(): EthernetStats {
    return { ...this.#stats };
  }

  /** Returns true when nothing here kept a reference to `frame` (the EtherType handler said so). */
  #receive(frame: Buffer, offload?: FrameOffload): boolean {
    if (this.#mirrors.length > 0) for (const m of this.#mirrors) m(frame, 'in', offload);
    if (frame.length < ETHERNET_HEADER) {
      this.#stats.droppedMalformed++;
      return false;
    }
    // Accept frames for our MAC and group (broadcast/multicast) frames.
    if ((frame[0]! & 1) === 0 && this.mac.compare(frame, 0, 6) !== 0) {
      this.#stats.droppedNotForUs++;
      return false;
    }
    const ethertype = (frame[12]! << 8) | frame[13]!;
    const handler = this.#handlers.get(ethertype);
    if (!handler) {
      this.#stats.droppedUnknownType++;
      return false;
    }
    this.#stats.rxFrames++;
    const kept = handler(frame.subarray(ETHERNET_HEADER), frame.subarray(6, 12), frame, offload);
    return kept === true && this.#reusing.has(ethertype);
  }
}
