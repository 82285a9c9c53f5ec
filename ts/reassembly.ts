/**
 * The bounded IPv4 reassembly cache, in Rust (the MirageOS 3.5 design).
 * @module
 */
import { assertBytes, assertInteger } from './errors.js';
import { native } from './native.js';

/** Limits of a {@link Reassembler}. */
export interface ReassemblerOptions {
  /** Fragment payload bytes held across all datagrams (default 256 KiB). */
  maxBytes?: number;
  /** Fragments held per datagram (default 16). */
  maxFragments?: number;
  /** Milliseconds after its first fragment that an incomplete datagram is dropped (default 10 s). */
  timeoutMs?: number;
}

/** Counters of a {@link Reassembler}; `bufferedBytes` and `pendingDatagrams` are current. */
export interface ReassemblerStats {
  /** Fragments accepted into the cache. */
  fragments: number;
  /** Datagrams completed and returned. */
  reassembled: number;
  /** Exact duplicate fragments ignored. */
  duplicates: number;
  /** Datagrams dropped because two of their fragments overlapped. */
  droppedOverlap: number;
  /** Incomplete datagrams dropped at their timeout. */
  droppedTimeout: number;
  /** Datagrams evicted, least recently used first, to stay within `maxBytes`. */
  droppedMemory: number;
  /** Datagrams dropped for having more than `maxFragments` fragments. */
  droppedTooManyFragments: number;
  /** Datagrams dropped because they would exceed 65,535 bytes. */
  droppedTooBig: number;
  /** Single fragments dropped: non-final with a payload not a multiple of 8 bytes, or empty. */
  droppedBadLength: number;
  /** Datagrams dropped for conflicting final fragments or data past the final fragment. */
  droppedInconsistent: number;
  /** Packets dropped because they were not valid IPv4. */
  droppedMalformed: number;
  /** Fragment payload bytes held now. */
  bufferedBytes: number;
  /** Datagrams being reassembled now. */
  pendingDatagrams: number;
}

/** Native `push` results: 0 not a fragment, 1 held, 2 dropped, from 20 up a completed datagram's length. */
const NOT_FRAGMENT = 0;
const MIN_DATAGRAM = 20;

/**
 * Reassembles IPv4 fragments, keyed by (source, destination, protocol, identification), in any
 * arrival order, within fixed limits: at most `maxBytes` of fragment payload in total (least
 * recently used datagrams are evicted first), `maxFragments` per datagram, and `timeoutMs` from a
 * datagram's first fragment. Overlapping fragments drop the whole datagram; exact duplicates are
 * ignored. Time is an argument, so a virtual clock drives it in tests.
 */
export class Reassembler {
  readonly maxBytes: number;
  readonly maxFragments: number;
  readonly timeoutMs: number;
  readonly #native: InstanceType<typeof native.NativeReassembler>;

  constructor(options: ReassemblerOptions = {}) {
    const { maxBytes = 256 * 1024, maxFragments = 16, timeoutMs = 10_000 } = options;
    assertInteger(maxBytes, 'maxBytes', 0, 0xffffffff);
    assertInteger(maxFragments, 'maxFragments', 1, 0xffff);
    assertInteger(timeoutMs, 'timeoutMs', 0, Number.MAX_SAFE_INTEGER);
    this.maxBytes = maxBytes;
    this.maxFragments = maxFragments;
    this.timeoutMs = timeoutMs;
    this.#native = new native.NativeReassembler(maxBytes, maxFragments, timeoutMs);
  }

  /**
   * Takes one IPv4 packet received at `nowMs`. Returns the complete datagram when this fragment
   * completed it (header from the first fragment, More Fragments clear, offset 0, total length
   * and checksum recomputed), the packet itself when it is not a fragment, and `undefined` when
   * the fragment is held or was dropped (malformed packets are counted and dropped, not thrown).
   */
  push(packet: Uint8Array, nowMs: number): Uint8Array | undefined {
    assertBytes(packet, 'packet');
    const result = this.#native.push(packet, nowMs);
    if (result >= MIN_DATAGRAM) {
      // Completed: the datagram is written straight into a buffer allocated here.
      const whole = Buffer.allocUnsafe(result);
      this.#native.take(whole);
      return whole;
    }
    return result === NOT_FRAGMENT ? packet : undefined;
  }

  /** Drops incomplete datagrams whose timeout has passed at `nowMs`; returns how many. */
  expire(nowMs: number): number {
    return this.#native.expire(nowMs);
  }

  /** Counters and current occupancy. */
  stats(): ReassemblerStats {
    return this.#native.stats();
  }
}
