/**
 * The bounded IPv4 and IPv6 reassembly caches, in Rust (the MirageOS 3.5 design).
 * @module
 */
import { InvalidArgumentError, type MorganaError, OutOfRangeError, assertBytes, assertInteger, nativeFailure } from './errors.js';
import { native } from './native.js';

/** Limits of a {@link Reassembler}. */
export interface ReassemblerOptions {
  /** Fragment payload bytes held across all datagrams (default 256 KiB). */
  maxBytes?: number;
  /**
   * Fragments held per datagram (default {@link DEFAULT_MAX_FRAGMENTS}, 128: a 65,535-byte
   * datagram at any MTU from 576 up, even with 40 bytes of IPv4 options; it is 45 fragments at
   * MTU 1500). A datagram with more is dropped, and its later fragments too (counted in
   * `droppedDiscarded`) until its timeout. This bounds the work per fragment; `maxBytes` bounds
   * memory (each fragment held is charged at least 8 bytes of payload).
   */
  maxFragments?: number;
  /** Milliseconds after its first fragment that an incomplete datagram is dropped (default 10 s). */
  timeoutMs?: number;
}

/** Options of {@link Reassembler.pushBatch}. */
export interface PushBatchOptions {
  /** Packets to take (default all that `spans` describes). */
  count?: number;
  /**
   * A buffer of the caller's that completed datagrams are written into (each at a multiple of 8
   * bytes) and returned as views of: no allocation, warm memory. The views are the caller's to
   * consume, or copy, before it passes the same `output` again. A datagram that does not fit
   * gets a Buffer of its own (65,535 bytes at most; 128 KiB holds any two).
   */
  output?: Uint8Array;
  /**
   * Called for each packet dropped as not valid IPv4 (also counted in `droppedMalformed`), with
   * its index and the error (`ERR_IPV4_BAD_CHECKSUM`, `ERR_IPV4_TRUNCATED`, …) `ipv4.parse`
   * would throw.
   */
  onMalformed?: (index: number, error: MorganaError) => void;
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
  /** Fragments dropped because their datagram was already dropped (too many fragments) and is remembered until its timeout. */
  droppedDiscarded: number;
  /** Fragment payload bytes held now. */
  bufferedBytes: number;
  /** Datagrams being reassembled now. */
  pendingDatagrams: number;
}

/** Default {@link ReassemblerOptions.maxBytes}: 256 KiB of fragment payload (as MirageOS 3.5). */
export const DEFAULT_MAX_BYTES = 256 * 1024;
/**
 * Default {@link ReassemblerOptions.maxFragments}: 128, enough for the largest datagram at MTU 576
 * (MirageOS 3.5 allows 16, which drops UDP datagrams past 23,680 bytes at MTU 1500).
 */
export const DEFAULT_MAX_FRAGMENTS = 128;
/** Default {@link ReassemblerOptions.timeoutMs}: 10 s. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Native `push` results: 0 not a fragment, 1 held, 2 dropped, from 20 up a completed datagram's length. */
const NOT_FRAGMENT = 0;
const MIN_DATAGRAM = 20;
/** `pushBatch`: the packet was not valid IPv4; the error's index in the native error table follows. */
const MALFORMED = 3;
/** `pushBatch`: the completed datagram did not fit in the output and waits for `take`. */
const NOT_WRITTEN = 0xffff_ffff;
/** An output of no room: every completed datagram stops the native batch and gets its own Buffer. */
const NO_OUTPUT = new Uint8Array(0);

/** The native side of a batch: `NativeReassembler` or `NativeIpv6Reassembler`. */
interface NativeBatchCache {
  pushBatch(data: Uint8Array, spans: Uint32Array, first: number, end: number, nowMs: number, out: Uint8Array, outAt: number, results: Uint32Array): number;
  take(out: Uint8Array): number;
}

/** What a reassembler keeps between batches: the per-packet [status, value] pairs, grown as needed. */
interface BatchState {
  results: Uint32Array;
}

/** Whether two views share a byte of the same memory. */
function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * The body of `pushBatch` for both families: checks the arguments, runs the native batch (again
 * after each completed packet that did not fit in the output), and maps the results. Statuses
 * from `minPacket` up are completed packets; `passThrough` (a second one, the IPv6 atomic
 * fragment, as `passThrough2`) hands the packet back as a view of `data`.
 */
function pushBatchInto(
  cache: NativeBatchCache,
  data: Uint8Array,
  spans: Uint32Array,
  nowMs: number,
  options: PushBatchOptions,
  state: BatchState,
  minPacket: number,
  passThrough: number,
  passThrough2 = passThrough,
): Array<Uint8Array | undefined> {
  assertBytes(data, 'data');
  if (!(spans instanceof Uint32Array)) throw new InvalidArgumentError('spans must be a Uint32Array');
  const { count = spans.length >>> 1, output, onMalformed } = options;
  assertInteger(count, 'count', 0, spans.length >>> 1);
  if (output !== undefined) {
    assertBytes(output, 'output');
    // Rust writes into `output` while it reads `data` and `spans`.
    if (overlaps(output, data) || overlaps(output, spans)) throw new InvalidArgumentError('output must not share memory with data or spans');
  }
  for (let i = 0; i < count; i++) {
    if (spans[2 * i]! + spans[2 * i + 1]! > data.length) {
      throw new OutOfRangeError(`packet ${i} (${spans[2 * i + 1]} bytes at ${spans[2 * i]}) lies outside the ${data.length}-byte data`);
    }
  }
  if (state.results.length < 2 * count) state.results = new Uint32Array(2 * count);
  const results = state.results;
  const target = output ?? NO_OUTPUT;
  const out = new Array<Uint8Array | undefined>(count);
  let outAt = 0;
  let next = 0;
  while (next < count) {
    const end = cache.pushBatch(data, spans, next, count, nowMs, target, outAt, results);
    for (let i = next; i < end; i++) {
      const status = results[2 * i]!;
      if (status >= minPacket) {
        const at = results[2 * i + 1]!;
        if (at === NOT_WRITTEN) {
          const whole = Buffer.allocUnsafe(status);
          cache.take(whole);
          out[i] = whole;
        } else {
          out[i] = target.subarray(at, at + status);
          outAt = at + status;
        }
      } else if (status === passThrough || status === passThrough2) {
        out[i] = data.subarray(spans[2 * i], spans[2 * i]! + spans[2 * i + 1]!);
      } else if (status === MALFORMED && minPacket === MIN_DATAGRAM && onMalformed !== undefined) {
        onMalformed(i, nativeFailure(-results[2 * i + 1]! - 1));
      }
    }
    next = end;
  }
  return out;
}

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
  /** `push`, `take` and `pushBatch` bound to `#native`, without napi-rs's per-call bookkeeping. */
  readonly #fast: ReturnType<typeof native.reassemblyFastCalls>;
  readonly #batch: BatchState = { results: new Uint32Array(128) };

  constructor(options: ReassemblerOptions = {}) {
    const { maxBytes = DEFAULT_MAX_BYTES, maxFragments = DEFAULT_MAX_FRAGMENTS, timeoutMs = DEFAULT_TIMEOUT_MS } = options;
    assertInteger(maxBytes, 'maxBytes', 0, 0xffffffff);
    assertInteger(maxFragments, 'maxFragments', 1, 0xffff);
    assertInteger(timeoutMs, 'timeoutMs', 0, Number.MAX_SAFE_INTEGER);
    this.maxBytes = maxBytes;
    this.maxFragments = maxFragments;
    this.timeoutMs = timeoutMs;
    this.#native = new native.NativeReassembler(maxBytes, maxFragments, timeoutMs);
    this.#fast = native.reassemblyFastCalls(this.#native);
  }

  /**
   * Takes one IPv4 packet received at `nowMs`. Returns the complete datagram when this fragment
   * completed it (header from the first fragment, More Fragments clear, offset 0, total length
   * and checksum recomputed), the packet itself when it is not a fragment, and `undefined` when
   * the fragment is held or was dropped (malformed packets are counted and dropped, not thrown).
   */
  push(packet: Uint8Array, nowMs: number): Uint8Array | undefined {
    assertBytes(packet, 'packet');
    const result = this.#fast.push(packet, nowMs);
    if (result >= MIN_DATAGRAM) {
      // Completed: the datagram is written straight into a buffer allocated here.
      const whole = Buffer.allocUnsafe(result);
      this.#fast.take(whole);
      return whole;
    }
    return result === NOT_FRAGMENT ? packet : undefined;
  }

  /**
   * {@link push} for many packets with one crossing into Rust: packet `i` is `data.subarray(
   * spans[2i], spans[2i] + spans[2i+1])` (the shape of a TAP batch: frames back to back), for
   * `i` from 0 to `count - 1`. Each packet's IPv4 header is validated in Rust (malformed ones are
   * counted in `droppedMalformed` and dropped). Returns, per packet, what `push` would: the
   * packet itself (a view of `data`) when it is not a fragment, the completed datagram, or
   * `undefined`.
   *
   * Where completed datagrams go: without `options.output`, each gets a Buffer of its own, of
   * its exact length (the batch leaves Rust once per completed datagram to fetch it: one
   * crossing per datagram, not per fragment); with it, they are views of the caller's reusable
   * `output` (see {@link PushBatchOptions.output}).
   *
   * Throws `ERR_OUT_OF_RANGE` (nothing taken) when a span lies outside `data` or `count` is past
   * the spans, and `ERR_INVALID_ARG_TYPE` for arguments of the wrong type or an `output` that
   * shares memory with `data` or `spans`.
   */
  pushBatch(data: Uint8Array, spans: Uint32Array, nowMs: number, options: PushBatchOptions = {}): Array<Uint8Array | undefined> {
    return pushBatchInto(this.#fast, data, spans, nowMs, options, this.#batch, MIN_DATAGRAM, NOT_FRAGMENT);
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

/** Limits of an {@link Ipv6Reassembler}: those of {@link ReassemblerOptions} plus the report queue. */
export interface Ipv6ReassemblerOptions extends ReassemblerOptions {
  /** ICMPv6 error reports queued before further ones are dropped (default 16). */
  maxReports?: number;
}

/**
 * Counters of an {@link Ipv6Reassembler}: the {@link ReassemblerStats} fields (with
 * `droppedBadLength` counting fragments with M set whose data is empty or not a multiple of 8
 * bytes, `droppedTooBig` fragments or datagrams past 65,535 bytes of payload, `droppedMalformed`
 * packets that are not valid IPv6, and `bufferedBytes` including stored headers and remembered
 * discarded datagrams) plus the IPv6 rules' own.
 */
export interface Ipv6ReassemblerStats extends ReassemblerStats {
  /** Atomic fragments (offset 0, M clear; RFC 6946) handed back without reassembly. */
  atomic: number;
  /** Fragments dropped because their datagram had been discarded for an overlap (RFC 5722). */
  droppedDiscarded: number;
  /** Offset-0 fragments dropped for not holding the whole header chain (RFC 7112). */
  droppedIncompleteChain: number;
  /** ICMPv6 error reports queued. */
  reports: number;
  /** ICMPv6 error reports dropped because the queue was full. */
  droppedReports: number;
}

/**
 * An ICMPv6 error that the IPv6 layer should send to the source of `packet`, produced by an
 * {@link Ipv6Reassembler}:
 * - type 4 (Parameter Problem) code 0, pointer 4: a fragment with M set whose data is not a
 *   multiple of 8 bytes (the Payload Length field is at fault);
 * - type 4 code 0, pointer at the fragment's Fragment Offset field: reassembly would exceed
 *   65,535 bytes of payload;
 * - type 4 code 3, pointer 0: the first fragment does not hold the whole header chain (RFC 7112);
 * - type 3 (Time Exceeded) code 1, pointer 0: reassembly timed out after the first fragment
 *   arrived; `packet` is that first fragment.
 *
 * Reports are never made for packets sent to a multicast address or from a multicast or
 * unspecified one (RFC 4443 §2.4); rate limiting is the sender's job.
 */
export interface Ipv6ReassemblyReport {
  /** ICMPv6 type: 4 (Parameter Problem) or 3 (Time Exceeded). */
  type: number;
  /** ICMPv6 code. */
  code: number;
  /** Parameter Problem's pointer into `packet` (0 for Time Exceeded). */
  pointer: number;
  /** The start of the offending packet (at most 1232 bytes, what an ICMPv6 error can quote). */
  packet: Buffer;
}

/** Native IPv6 `push` results below {@link MIN_IPV6_PACKET}. */
const IPV6_NOT_FRAGMENT = 0;
const IPV6_ATOMIC = 3;
const MIN_IPV6_PACKET = 40;

/**
 * Reassembles IPv6 fragments (RFC 8200 §4.5), keyed by (source, destination, identification),
 * in any arrival order, on the same bounded cache as {@link Reassembler}: at most `maxBytes` held
 * (fragment data plus the stored unfragmentable parts; least recently used datagrams are evicted
 * first), `maxFragments` per datagram, `timeoutMs` from a datagram's first fragment.
 *
 * The rules: atomic fragments (offset 0, M clear) are returned at once and never touch the cache
 * (RFC 6946); any overlap drops the whole datagram, and its later fragments are dropped until its
 * timeout (RFC 5722), while exact duplicates are ignored; a fragment with M set whose data is not
 * a multiple of 8 bytes, a fragment that would make the payload exceed 65,535 bytes, and a first
 * fragment without the whole header chain (RFC 7112) are dropped with an ICMPv6 Parameter
 * Problem report; a datagram that times out after its first fragment arrived yields a Time
 * Exceeded report. Reports wait in a bounded queue (`maxReports`) for {@link takeReports}.
 * Time is an argument, so a virtual clock drives it in tests.
 */
export class Ipv6Reassembler {
  readonly maxBytes: number;
  readonly maxFragments: number;
  readonly timeoutMs: number;
  readonly maxReports: number;
  readonly #native: InstanceType<typeof native.NativeIpv6Reassembler>;
  /** `push`, `take` and `pushBatch` bound to `#native`, without napi-rs's per-call bookkeeping. */
  readonly #fast: ReturnType<typeof native.ipv6ReassemblyFastCalls>;
  readonly #batch: BatchState = { results: new Uint32Array(128) };

  constructor(options: Ipv6ReassemblerOptions = {}) {
    const { maxBytes = DEFAULT_MAX_BYTES, maxFragments = DEFAULT_MAX_FRAGMENTS, timeoutMs = DEFAULT_TIMEOUT_MS, maxReports = 16 } = options;
    assertInteger(maxBytes, 'maxBytes', 0, 0xffffffff);
    assertInteger(maxFragments, 'maxFragments', 1, 0xffff);
    assertInteger(timeoutMs, 'timeoutMs', 0, Number.MAX_SAFE_INTEGER);
    assertInteger(maxReports, 'maxReports', 0, 0xffff);
    this.maxBytes = maxBytes;
    this.maxFragments = maxFragments;
    this.timeoutMs = timeoutMs;
    this.maxReports = maxReports;
    this.#native = new native.NativeIpv6Reassembler(maxBytes, maxFragments, timeoutMs, maxReports);
    this.#fast = native.ipv6ReassemblyFastCalls(this.#native);
  }

  /**
   * Takes one IPv6 packet received at `nowMs`. Returns the packet itself when it is not a
   * fragment or is an atomic fragment; a new Buffer holding the reassembled packet when this
   * fragment completed one (the first fragment's unfragmentable part with the Fragment header
   * removed, the Next Header that named it set to the Fragment header's, Payload Length fixed,
   * then the data); and `undefined` when the fragment is held or was dropped. Malformed packets
   * are counted and dropped, not thrown. After `undefined`, {@link pendingReports} says whether
   * an ICMPv6 error is due (a push also expires old datagrams, which can queue Time Exceeded).
   */
  push(packet: Uint8Array, nowMs: number): Uint8Array | undefined {
    assertBytes(packet, 'packet');
    const result = this.#fast.push(packet, nowMs);
    if (result >= MIN_IPV6_PACKET) {
      const whole = Buffer.allocUnsafe(result);
      this.#fast.take(whole);
      return whole;
    }
    return result === IPV6_NOT_FRAGMENT || result === IPV6_ATOMIC ? packet : undefined;
  }

  /**
   * {@link push} for many packets with one crossing into Rust, with the arguments of
   * {@link Reassembler.pushBatch} (`onMalformed` is not called: malformed IPv6 packets are only
   * counted). Returns, per packet, what `push` would: the packet itself (a view of `data`) when
   * it is not a fragment or is an atomic fragment, the reassembled packet (a Buffer of its own,
   * or a view of `options.output`), or `undefined`. Reports queue as with `push`.
   */
  pushBatch(data: Uint8Array, spans: Uint32Array, nowMs: number, options: PushBatchOptions = {}): Array<Uint8Array | undefined> {
    return pushBatchInto(this.#fast, data, spans, nowMs, options, this.#batch, MIN_IPV6_PACKET, IPV6_NOT_FRAGMENT, IPV6_ATOMIC);
  }

  /**
   * Drops incomplete datagrams whose timeout has passed at `nowMs`, queueing a Time Exceeded
   * report for each whose first fragment had arrived; returns how many were dropped.
   */
  expire(nowMs: number): number {
    return this.#native.expire(nowMs);
  }

  /** ICMPv6 error reports waiting in the queue. */
  get pendingReports(): number {
    return this.#native.pendingReports();
  }

  /** Takes every queued ICMPv6 error report, oldest first (see {@link Ipv6ReassemblyReport}). */
  takeReports(): Ipv6ReassemblyReport[] {
    const reports: Ipv6ReassemblyReport[] = [];
    for (;;) {
      const length = this.#native.takeReport(reportQuote, reportInfo);
      if (length < 0) return reports;
      reports.push({
        type: reportInfo[0]!,
        code: reportInfo[1]!,
        pointer: reportInfo[2]!,
        packet: Buffer.from(reportQuote.subarray(0, length)),
      });
    }
  }

  /** Counters and current occupancy. */
  stats(): Ipv6ReassemblerStats {
    return this.#native.stats();
  }
}

/** Scratch for {@link Ipv6Reassembler.takeReports}: the quote and [type, code, pointer]. */
const reportQuote = Buffer.allocUnsafe(native.IPV6_REPORT_MAX_QUOTE);
const reportInfo = new Uint32Array(3);
