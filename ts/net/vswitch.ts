/**
 * An in-process learning Ethernet switch. Each {@link VirtualSwitch.connect} returns a NET device
 * (a switch port); frames are forwarded to the port that last sent from the destination MAC, or
 * flooded when the destination is unknown, broadcast or multicast. Delivery is asynchronous (a
 * batch per event-loop turn), so a reply written from inside a listener never recurses.
 *
 * For tests the switch injects faults — loss, duplication, reordering and delay — driven by a
 * seeded random source and the injected clock, so a lossy run is reproducible.
 *
 * Offloads: a port may accept TCP super-frames (TSO) and partial checksums
 * (`connect({ offloads })`). A super-frame goes whole to a port that accepts it, and is cut
 * into real frames in Rust for one that does not; while faults are set every super-frame is
 * cut first, so loss, duplication and reordering apply per wire segment.
 * @module
 */
import { type Clock, systemClock } from '../clock.js';
import { defaultRandom } from '../random.js';
import { MorganaError, OutOfRangeError, assertInteger } from '../errors.js';
import {
  DATA_VALID,
  type FrameFill,
  type FrameHandler,
  type FrameOffload,
  GSO_NONE,
  MAX_SUPER_FRAME,
  type NetDevice,
  type NetOffloads,
  type NetStats,
  type ReusingFrameHandler,
  acceptsOffload,
  emptyNetStats,
} from './device.js';
import { realFrames, wireFrames } from './gso.js';
import { Slab } from './slab.js';
import { formatMac, parseMac } from './mac.js';
import { type MetricsOptions, switchMetrics } from '../metrics/collect.js';

/** A source of uniformly distributed 32-bit values (Morgana's random device satisfies it). */
export interface Uint32Source {
  uint32(): number;
}

/** Faults injected on every frame leaving the switch towards a port. Probabilities are 0..1. */
export interface SwitchFaults {
  /** Probability that a frame is lost. */
  loss?: number;
  /** Probability that a frame is delivered twice. */
  duplicate?: number;
  /** Probability that a frame is held back and delivered after later ones. */
  reorder?: number;
  /** Fixed delay in milliseconds added to every frame. */
  delayMs?: number;
  /** Extra random delay, uniform in [0, jitterMs). */
  jitterMs?: number;
}

/** Options of a {@link VirtualSwitch}. */
export interface VirtualSwitchOptions {
  /** IP MTU of every port (default 1500). */
  mtu?: number;
  /** Faults to inject (default none). */
  faults?: SwitchFaults;
  /**
   * Random source for faults and generated MACs (default `defaultRandom()`; pass
   * `seededRandom(seed)` for a reproducible lossy run).
   */
  random?: Uint32Source;
  /** Clock for delays (default the system clock). */
  clock?: Clock;
  /** Frames queued towards one port before further ones are dropped (default 65536). */
  queueLimit?: number;
}

/** Switch-wide counters. */
export interface VirtualSwitchStats {
  /** Frames forwarded to a single learned port. */
  forwarded: number;
  /** Frames flooded to every other port. */
  flooded: number;
  /** Frames dropped by injected loss. */
  lost: number;
  /** Extra copies from injected duplication. */
  duplicated: number;
  /** Frames held back by injected reordering. */
  reordered: number;
  /** Frames dropped because a port's queue was full. */
  queueDrops: number;
  /** Super-frames cut into real frames (for a port without TSO, or because faults are set). */
  segmented: number;
  /** Super-frames dropped because they could not be cut (not Ethernet + IP + TCP). */
  segmentDrops: number;
}

/** Frames up to this size come from Node's own buffer pool (Buffer.allocUnsafe). */
const SMALL_FRAME = 4096;

/** A frame on its way through the switch, with its offload metadata if it has any. */
interface Queued {
  frame: Buffer;
  offload: FrameOffload | undefined;
  /** For a frame given with {@link SwitchPort.writeOwned}: called once nothing refers to it. */
  done?: (() => void) | undefined;
}

class SwitchPort implements NetDevice {
  readonly mac: string;
  readonly mtu: number;
  readonly offloads: NetOffloads | undefined;
  readonly #switch: VirtualSwitch;
  readonly id: number;
  #handler: FrameHandler | ReusingFrameHandler | undefined;
  /** The handler came through listenReusing: its `true` gives a frame given away back. */
  #reusing = false;
  #stats: NetStats = emptyNetStats();
  #closed = false;
  /** Frames waiting for the next delivery turn. */
  queue: Queued[] = [];

  constructor(sw: VirtualSwitch, id: number, mac: string, mtu: number, offloads: NetOffloads | undefined) {
    this.#switch = sw;
    this.id = id;
    this.mac = mac;
    this.mtu = mtu;
    this.offloads = offloads;
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(size: number, fill: FrameFill, offload?: FrameOffload): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', 'write on a closed switch port');
    assertInteger(size, 'size', 0, 0x7fffffff);
    // A buffer per frame: it is the one queued and handed to the receiver, so the frame is
    // copied once, by `fill`. Large frames are carved from a shared slab (see slab.ts).
    const buffer = size <= SMALL_FRAME ? Buffer.allocUnsafe(size) : this.#switch.slab.take(size);
    const length = fill(buffer);
    if (!Number.isInteger(length) || length < 0 || length > size) {
      throw new OutOfRangeError(`fill must return a length from 0 to ${size}, got ${length}`);
    }
    if (size > SMALL_FRAME) this.#switch.slab.commit(length);
    this.#admit(buffer.subarray(0, length), offload, undefined);
  }

  /**
   * Takes `frame` as it is, with no copy: it is the buffer queued and handed to the receiver.
   * `done` is called once the frame was dropped, cut into copies, or read by a receiver whose
   * handler returned true.
   */
  writeOwned(frame: Buffer, offload?: FrameOffload, done?: () => void): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', 'write on a closed switch port');
    this.#admit(frame, offload, done);
  }

  /** Counts and forwards a written frame, or drops it when it is too long or too short. */
  #admit(frame: Buffer, offload: FrameOffload | undefined, done: (() => void) | undefined): void {
    const length = frame.length;
    // Offload metadata counts only from a port that advertised it; a super-frame may exceed
    // the MTU up to the advertised size.
    const meta = offload && (offload.gsoType !== GSO_NONE || offload.flags !== 0) && acceptsOffload(this, offload, length) ? offload : undefined;
    const limit = meta && meta.gsoType !== GSO_NONE ? (this.offloads!.maxFrame ?? MAX_SUPER_FRAME) : this.mtu + 14;
    if (length > limit || length < 14) {
      this.#stats.txDropped++;
      done?.();
      return;
    }
    this.#stats.txFrames++;
    this.#stats.txBytes += length;
    this.#switch.forward(this, frame, meta, done);
  }

  listen(handler: FrameHandler): void {
    this.#handler = handler;
    this.#reusing = false;
  }

  listenReusing(handler: ReusingFrameHandler): void {
    this.#handler = handler;
    this.#reusing = true;
  }

  stats(): NetStats {
    return { ...this.#stats };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.queue = [];
    this.#switch.disconnect(this);
  }

  /** Hands a frame to the listener (called by the switch's delivery turn). */
  deliver(frame: Buffer, offload: FrameOffload | undefined, done: (() => void) | undefined): void {
    if (this.#closed) return done?.();
    if (!this.#handler) {
      this.#stats.rxDropped++;
      return done?.();
    }
    this.#stats.rxFrames++;
    this.#stats.rxBytes += frame.length;
    // Only a handler that says it kept nothing lets the sender reuse the bytes.
    const kept = this.#handler(frame, offload);
    if (this.#reusing && kept === true) done?.();
  }

  countQueueDrop(): void {
    this.#stats.rxDropped++;
  }
}

/** The in-process learning switch. */
export class VirtualSwitch {
  readonly mtu: number;
  #faults!: Required<SwitchFaults>;
  readonly #random: Uint32Source;
  readonly #clock: Clock;
  readonly #queueLimit: number;
  readonly #ports = new Set<SwitchPort>();
  readonly #mirrors = new Set<(frame: Buffer, port: number) => void>();
  /** @internal Where ports' large frames are carved from (see slab.ts). */
  readonly slab = new Slab();
  /** MAC (as a 48-bit number: no string per frame) → port that last sent from it. */
  readonly #table = new Map<number, SwitchPort>();
  #nextPortId = 0;
  #deliveryScheduled = false;
  /** Frames held back for reordering, released after the next frame to the same port. */
  readonly #held = new Map<SwitchPort, Queued>();
  #faulty = false;
  #stats: VirtualSwitchStats = { forwarded: 0, flooded: 0, lost: 0, duplicated: 0, reordered: 0, queueDrops: 0, segmented: 0, segmentDrops: 0 };

  constructor(options: VirtualSwitchOptions = {}) {
    const { mtu = 1500, queueLimit = 65_536 } = options;
    assertInteger(mtu, 'mtu', 68, 65_535);
    assertInteger(queueLimit, 'queueLimit', 1, 0x7fffffff);
    this.mtu = mtu;
    this.#queueLimit = queueLimit;
    this.#random = options.random ?? defaultRandom();
    this.#clock = options.clock ?? systemClock;
    this.#setFaults(options.faults ?? {});
  }

  #setFaults(faults: SwitchFaults): void {
    const f = VirtualSwitch.#checkFaults(faults);
    this.#faults = f;
    this.#faulty = f.loss > 0 || f.duplicate > 0 || f.reorder > 0 || f.delayMs > 0 || f.jitterMs > 0;
  }

  static #checkFaults(faults: SwitchFaults): Required<SwitchFaults> {
    const checked = { loss: 0, duplicate: 0, reorder: 0, delayMs: 0, jitterMs: 0, ...faults };
    for (const key of ['loss', 'duplicate', 'reorder'] as const) {
      const p = checked[key];
      if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new OutOfRangeError(`faults.${key} must be from 0 to 1`);
    }
    for (const key of ['delayMs', 'jitterMs'] as const) {
      const d = checked[key];
      if (typeof d !== 'number' || !(d >= 0)) throw new OutOfRangeError(`faults.${key} must be ≥ 0`);
    }
    return checked;
  }

  /** Replaces the injected faults (e.g. turn loss on after a handshake). */
  setFaults(faults: SwitchFaults): void {
    this.#setFaults(faults);
  }

  /**
   * Adds a port. `mac` defaults to a locally administered address drawn from the random source.
   * `offloads`: what the port accepts beyond real frames (default nothing); `maxFrame` defaults
   * to 65,535 + 14 when TSO is on.
   */
  connect(options: { mac?: string; offloads?: Partial<NetOffloads> } = {}): NetDevice {
    let mac = options.mac;
    if (mac === undefined) {
      const bytes = Buffer.alloc(6);
      bytes[0] = 0x02;
      bytes.writeUInt32BE(this.#random.uint32(), 1);
      bytes[5] = this.#nextPortId & 0xff;
      mac = formatMac(bytes);
    } else {
      mac = formatMac(parseMac(mac));
    }
    const o = options.offloads;
    const offloads: NetOffloads | undefined = o && {
      checksum: o.checksum ?? false,
      tso4: o.tso4 ?? false,
      tso6: o.tso6 ?? false,
      maxFrame: o.maxFrame ?? 65_535 + 14,
      rxCoalesce: o.rxCoalesce ?? false,
    };
    if (offloads) assertInteger(offloads.maxFrame, 'offloads.maxFrame', this.mtu + 14, 65_535 + 14);
    const port = new SwitchPort(this, this.#nextPortId++, mac, this.mtu, offloads);
    this.#ports.add(port);
    return port;
  }

  /** Counters. */
  stats(): VirtualSwitchStats {
    return { ...this.#stats };
  }

  /** The connected ports with their frame counters (as each port's device sees them). */
  ports(): Array<{ id: number; mac: string; stats: NetStats }> {
    return [...this.#ports].map((p) => ({ id: p.id, mac: p.mac, stats: p.stats() }));
  }

  /**
   * The switch's counters and every port's as Prometheus text (or OpenMetrics):
   * `morgana_switch_forwarded_total{switch="switch"}`, `morgana_switch_port_rx_frames_total{…,port="0",mac="…"}`.
   */
  metrics(options?: MetricsOptions): string {
    return switchMetrics(this, options);
  }

  /** Closes every port. */
  async close(): Promise<void> {
    await Promise.all([...this.#ports].map((p) => p.close()));
  }

  /** @internal */
  disconnect(port: SwitchPort): void {
    this.#ports.delete(port);
    this.#held.delete(port);
    for (const [mac, p] of this.#table) if (p === port) this.#table.delete(mac);
  }

  /**
   * Calls `onFrame` with every frame a port writes, before faults apply (what the port put on the
   * wire), and the writing port's id; the frame must not be kept past the call. Super-frames are
   * shown as the real frames they stand for, so a capture looks like the wire. Returns a function
   * that stops it. The dashboard's capture button uses this.
   */
  mirror(onFrame: (frame: Buffer, port: number) => void): () => void {
    this.#mirrors.add(onFrame);
    return () => void this.#mirrors.delete(onFrame);
  }

  /**
   * @internal Forwards a frame written by `from` (with the offload metadata it may carry);
   * `done` (a frame given away) is called once nothing here or at the receiver refers to it.
   */
  forward(from: SwitchPort, frame: Buffer, offload?: FrameOffload, done?: () => void): void {
    if (this.#mirrors.size > 0) {
      // Copies where checksums are completed: the frame itself goes on as it was written.
      const pieces = wireFrames(frame, offload);
      for (const mirror of this.#mirrors) for (const piece of pieces) mirror(piece, from.id);
    }
    // Learn the source unless it is a group address (a forged multicast source must not stick).
    if ((frame[6]! & 1) === 0) this.#table.set(frame.readUIntBE(6, 6), from);
    const multicast = (frame[0]! & 1) === 1;
    const target = multicast ? undefined : this.#table.get(frame.readUIntBE(0, 6));
    if (target && target !== from && !target.closed) {
      this.#stats.forwarded++;
      this.#send(target, frame, offload, done);
      return;
    }
    if (target !== from) {
      this.#stats.flooded++;
      let first = true;
      for (const port of this.#ports) {
        if (port === from) continue;
        // Every receiver owns its frame, so all but the first get a copy (all of them when the
        // frame goes back to its sender once the copies are made).
        this.#send(port, first && !done ? frame : Buffer.from(frame), offload, undefined);
        first = false;
      }
    }
    // Flooded as copies, or for the ingress port itself (nothing to do): the frame is free.
    done?.();
  }

  /**
   * Sends a frame towards `port`: a super-frame (or partial checksum) whole when the port takes
   * it and no faults are set, else as the real frames it stands for, each meeting the faults.
   */
  #send(port: SwitchPort, frame: Buffer, offload: FrameOffload | undefined, done: (() => void) | undefined): void {
    if (!offload || (!this.#faulty && acceptsOffload(port, offload, frame.length))) {
      this.#emit(port, { frame, offload: offload && { ...offload, flags: offload.flags | DATA_VALID }, done });
      return;
    }
    const pieces = realFrames(frame, offload);
    if (pieces.length === 0) {
      this.#stats.segmentDrops++;
      done?.();
      return;
    }
    if (offload.gsoType !== GSO_NONE) this.#stats.segmented++;
    // A super-frame's pieces are copies (the frame is free now); a real frame is itself.
    const same = pieces[0] === frame;
    for (const piece of pieces) this.#emit(port, { frame: piece, offload: undefined, done: same ? done : undefined });
    if (!same) done?.();
  }

  #chance(p: number): boolean {
    return p > 0 && this.#random.uint32() / 0x1_0000_0000 < p;
  }

  #emit(port: SwitchPort, frame: Queued): void {
    const f = this.#faults;
    if (this.#chance(f.loss)) {
      this.#stats.lost++;
      frame.done?.();
      return;
    }
    const copies = this.#chance(f.duplicate) ? 2 : 1;
    if (copies === 2) this.#stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      const copy = i === 0 ? frame : { frame: Buffer.from(frame.frame), offload: frame.offload, done: undefined };
      if (this.#chance(f.reorder) && !this.#held.has(port)) {
        this.#stats.reordered++;
        this.#held.set(port, copy);
        continue;
      }
      this.#schedule(port, copy);
      const held = this.#held.get(port);
      if (held) {
        this.#held.delete(port);
        this.#schedule(port, held);
      }
    }
  }

  #schedule(port: SwitchPort, frame: Queued): void {
    const f = this.#faults;
    const delay = f.delayMs + (f.jitterMs > 0 ? (this.#random.uint32() / 0x1_0000_0000) * f.jitterMs : 0);
    if (delay > 0) {
      this.#clock.setTimer(delay, () => this.#enqueue(port, frame));
    } else {
      this.#enqueue(port, frame);
    }
  }

  #enqueue(port: SwitchPort, frame: Queued): void {
    if (port.closed) return frame.done?.();
    if (port.queue.length >= this.#queueLimit) {
      this.#stats.queueDrops++;
      port.countQueueDrop();
      frame.done?.();
      return;
    }
    port.queue.push(frame);
    if (!this.#deliveryScheduled) {
      this.#deliveryScheduled = true;
      setImmediate(() => this.#deliver());
    }
  }

  /** Delivers what was queued before this turn; frames written meanwhile wait for the next. */
  #deliver(): void {
    this.#deliveryScheduled = false;
    const batches: Array<[SwitchPort, Queued[]]> = [];
    for (const port of this.#ports) {
      if (port.queue.length > 0) {
        batches.push([port, port.queue]);
        port.queue = [];
      }
    }
    for (const [port, frames] of batches) for (const q of frames) port.deliver(q.frame, q.offload, q.done);
    // Release frames held for reordering that nothing overtook this turn.
    if (this.#held.size > 0 && !this.#deliveryScheduled) {
      for (const [port, frame] of this.#held) this.#schedule(port, frame);
      this.#held.clear();
    }
  }
}
