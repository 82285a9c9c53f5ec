/**
 * The Rust packet core through the Node binding (issue 2 §7): the Internet checksum of 64 B,
 * 1500 B and 64 KiB buffers, and IPv4 reassembly of 64 KiB datagrams cut into 1500-byte
 * fragments; each against a pure-JS implementation written here and measured in the same run.
 * IPv6 fragmentation and reassembly of 64 KiB packets at MTU 1500 are measured too, reassembly
 * against a JS IPv6 reassembler of the same kind.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Ipv6Reassembler, Reassembler, checksum, fragmentIpv6, ipv4, ipv6 } from '../../ts/index.js';
import { JS_MAX_LENGTH } from '../../ts/checksum.js';
import { native } from '../../ts/native.js';
import { type BenchCase, blackhole } from '../harness.js';

/**
 * RFC 1071 in plain JavaScript, the way it is usually written: big-endian 16-bit words added
 * into a number (no overflow below 2^53), the carries folded once at the end.
 */
export function checksumJs(data: Uint8Array, initial = 0): number {
  let sum = initial;
  const even = data.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (even !== data.length) sum += data[even]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

function checksumCases(size: number, label: string): BenchCase[] {
  // An odd offset into a larger buffer, as a packet inside a frame would be.
  const data = randomBytes(size + 3).subarray(1, size + 1);
  const group = `checksum ${label}`;
  const goal =
    size === 1500
      ? { minRatio: 4, source: 'issue 2' }
      : size === 65536
        ? { minBytesPerSec: 10e9, source: 'issue 2' }
        : undefined;
  return [
    {
      name: `${group} · pure JS`,
      group,
      baseline: true,
      bytesPerOp: size,
      description: `RFC 1071 in JavaScript over a ${label} Uint8Array`,
      setup() {
        if (checksumJs(data) !== checksum(data)) throw new Error('pure-JS checksum disagrees with the binding');
      },
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc ^= checksumJs(data);
        blackhole(acc);
      },
    },
    {
      name: `${group} · morgana`,
      group,
      bytesPerOp: size,
      description:
        size <= JS_MAX_LENGTH
          ? `checksum() from 'morgana', which sums up to ${JS_MAX_LENGTH} B in JS (the napi crossing costs more)`
          : `checksum() from 'morgana': Rust through napi-rs, over the same ${label} buffer`,
      ...(goal !== undefined && { goal }),
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc ^= checksum(data);
        blackhole(acc);
      },
    },
    ...(size <= JS_MAX_LENGTH
      ? [
          {
            name: `${group} · napi call`,
            group,
            bytesPerOp: size,
            description: 'the Rust checksum called through the binding directly, for the cost of the crossing',
            run(n: number) {
              let acc = 0;
              for (let i = 0; i < n; i++) acc ^= native.checksum(data, 0);
              blackhole(acc);
            },
          },
        ]
      : []),
  ];
}

// Reassembly: DATAGRAMS datagrams of 65,535 bytes (65,515 of UDP payload), each cut into 45
// fragments at MTU 1500, each datagram's fragments shuffled; the stream is replayed in a loop.
const DATAGRAMS = 32;
const MTU = 1500;

interface Stream {
  originals: Buffer[];
  fragments: Buffer[];
}

function shuffle<T>(items: T[], seed: number): T[] {
  let s = seed;
  for (let i = items.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    const j = s % (i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

let stream6: Stream | undefined;
/** IPv6: DATAGRAMS packets with 65,535 bytes of payload (8 of UDP header, then data), 46 fragments each. */
function fragmentStream6(): Stream {
  if (stream6) return stream6;
  const originals: Buffer[] = [];
  const fragments: Buffer[] = [];
  for (let id = 0; id < DATAGRAMS; id++) {
    const packet = ipv6.emit({ src: '2001:db8::1', dst: '2001:db8::2', nextHeader: ipv6.NEXT_HEADER.UDP }, randomBytes(65_535));
    originals.push(packet);
    const pieces = fragmentIpv6(packet, MTU, id);
    if (pieces.length !== 46) throw new Error(`expected 46 fragments, got ${pieces.length}`);
    fragments.push(...shuffle([...pieces], id + 1));
  }
  stream6 = { originals, fragments };
  return stream6;
}

let stream: Stream | undefined;
function fragmentStream(): Stream {
  if (stream) return stream;
  const originals: Buffer[] = [];
  const fragments: Buffer[] = [];
  for (let id = 0; id < DATAGRAMS; id++) {
    const payload = randomBytes(65_535 - 20);
    const packet = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: ipv4.PROTOCOL.UDP, identification: id }, payload);
    originals.push(packet);
    const pieces = ipv4.fragment(packet, MTU);
    if (pieces.length !== 45) throw new Error(`expected 45 fragments, got ${pieces.length}`);
    fragments.push(...shuffle([...pieces], id + 1));
  }
  stream = { originals, fragments };
  return stream;
}

/** The interface both reassemblers share here. */
interface Reassembling {
  push(packet: Uint8Array, nowMs: number): Uint8Array | undefined;
}

interface JsDatagram {
  pieces: { offset: number; data: Uint8Array }[];
  header?: Uint8Array;
  end: number;
  bytes: number;
}

/**
 * A straightforward JS reassembler for the baseline: a Map keyed by (source, destination,
 * protocol, identification), header checksum verified, fragments kept as views (no copy), an
 * overlap check against the neighbours, the datagram assembled once all bytes are there. It has
 * no memory cap, LRU, fragment limit or timeout, so it does less than the Rust cache.
 */
class JsReassembler implements Reassembling {
  readonly #pending = new Map<string, JsDatagram>();

  push(packet: Uint8Array, _nowMs: number): Uint8Array | undefined {
    if (packet.length < 20 || packet[0]! >> 4 !== 4) return undefined;
    const headerLength = (packet[0]! & 0x0f) * 4;
    const total = (packet[2]! << 8) | packet[3]!;
    if (headerLength < 20 || total < headerLength || total > packet.length) return undefined;
    if (checksumJs(packet.subarray(0, headerLength)) !== 0) return undefined;
    const flags = (packet[6]! << 8) | packet[7]!;
    const more = (flags & 0x2000) !== 0;
    const offset = (flags & 0x1fff) * 8;
    if (!more && offset === 0) return packet;
    const key = `${packet[12]}.${packet[13]}.${packet[14]}.${packet[15]}>${packet[16]}.${packet[17]}.${packet[18]}.${packet[19]}/${packet[9]}#${(packet[4]! << 8) | packet[5]!}`;
    let datagram = this.#pending.get(key);
    if (datagram === undefined) {
      datagram = { pieces: [], end: -1, bytes: 0 };
      this.#pending.set(key, datagram);
    }
    const data = packet.subarray(headerLength, total);
    const pieces = datagram.pieces;
    let at = pieces.length;
    while (at > 0 && pieces[at - 1]!.offset > offset) at--;
    const before = pieces[at - 1];
    const after = pieces[at];
    if ((before && before.offset + before.data.length > offset) || (after && after.offset < offset + data.length)) {
      this.#pending.delete(key);
      return undefined;
    }
    pieces.splice(at, 0, { offset, data });
    datagram.bytes += data.length;
    if (offset === 0) datagram.header = packet.subarray(0, headerLength);
    if (!more) datagram.end = offset + data.length;
    if (datagram.header === undefined || datagram.bytes !== datagram.end) return undefined;
    this.#pending.delete(key);
    const header = datagram.header;
    const whole = Buffer.allocUnsafe(header.length + datagram.end);
    whole.set(header, 0);
    for (const piece of pieces) whole.set(piece.data, header.length + piece.offset);
    whole.writeUInt16BE(whole.length, 2);
    whole[6]! &= 0xc0;
    whole[7] = 0;
    whole.writeUInt16BE(0, 10);
    whole.writeUInt16BE(checksumJs(whole.subarray(0, header.length)), 10);
    return whole;
  }
}

/**
 * The IPv6 counterpart of {@link JsReassembler} for the baseline: fragments whose Fragment header
 * follows the fixed header (as `fragmentIpv6` makes them for a packet without extension
 * headers), keyed by (source, destination, identification), kept as views, overlap-checked
 * against their neighbours, assembled once all bytes are there. No limits, no ICMPv6 reports.
 */
class JsIpv6Reassembler implements Reassembling {
  readonly #pending = new Map<string, JsDatagram>();

  push(packet: Uint8Array, _nowMs: number): Uint8Array | undefined {
    if (packet.length < 40 || packet[0]! >> 4 !== 6) return undefined;
    const total = 40 + ((packet[4]! << 8) | packet[5]!);
    if (total > packet.length) return undefined;
    if (packet[6] !== 44) return packet;
    if (total < 48) return undefined;
    const word = (packet[42]! << 8) | packet[43]!;
    const offset = word & 0xfff8;
    const more = (word & 1) !== 0;
    const data = packet.subarray(48, total);
    if (more && (data.length === 0 || data.length % 8 !== 0)) return undefined;
    if (offset === 0 && !more) return packet;
    const id = ((packet[44]! << 24) | (packet[45]! << 16) | (packet[46]! << 8) | packet[47]!) >>> 0;
    const key = `${Buffer.from(packet.buffer, packet.byteOffset + 8, 32).toString('latin1')}#${id}`;
    let datagram = this.#pending.get(key);
    if (datagram === undefined) {
      datagram = { pieces: [], end: -1, bytes: 0 };
      this.#pending.set(key, datagram);
    }
    const pieces = datagram.pieces;
    let at = pieces.length;
    while (at > 0 && pieces[at - 1]!.offset > offset) at--;
    const before = pieces[at - 1];
    const after = pieces[at];
    if ((before && before.offset + before.data.length > offset) || (after && after.offset < offset + data.length)) {
      this.#pending.delete(key);
      return undefined;
    }
    pieces.splice(at, 0, { offset, data });
    datagram.bytes += data.length;
    if (offset === 0) datagram.header = packet.subarray(0, 48);
    if (!more) datagram.end = offset + data.length;
    if (datagram.header === undefined || datagram.bytes !== datagram.end || datagram.end > 65_535) return undefined;
    this.#pending.delete(key);
    const whole = Buffer.allocUnsafe(40 + datagram.end);
    whole.set(datagram.header.subarray(0, 40), 0);
    whole[6] = datagram.header[40]!; // the Fragment header's Next Header
    whole.writeUInt16BE(datagram.end, 4);
    for (const piece of pieces) whole.set(piece.data, 40 + piece.offset);
    return whole;
  }
}

function reassemblyCase(
  name: string,
  make: () => Reassembling,
  extra: Partial<BenchCase>,
  streamOf: () => Stream = fragmentStream,
): BenchCase {
  let reassembler: Reassembling | undefined;
  let fragments: Buffer[] = [];
  let cursor = 0;
  return {
    name,
    group: 'reassembly 64 KiB / MTU 1500',
    unit: 'fragments',
    // Every datagram carries 65,515 payload bytes in 45 fragments.
    bytesPerOp: 65_515 / 45,
    ...extra,
    setup() {
      const current = streamOf();
      const originals = current.originals;
      fragments = current.fragments;
      reassembler = make();
      // One pass to check that every datagram comes back whole, which also warms up.
      const done = fragments.map((f) => reassembler!.push(f, 0)).filter((x) => x !== undefined);
      if (done.length !== originals.length || !Buffer.from(done[0]!).equals(originals[0]!)) {
        throw new Error(`${name}: ${done.length} of ${originals.length} datagrams reassembled correctly`);
      }
      cursor = 0;
    },
    run(n) {
      const r = reassembler!;
      let completed = 0;
      for (let i = 0; i < n; i++) {
        if (r.push(fragments[cursor]!, 0) !== undefined) completed++;
        if (++cursor === fragments.length) cursor = 0;
      }
      blackhole(completed);
    },
    teardown() {
      reassembler = undefined;
    },
  };
}

/** Fragments per `pushBatch` call: a TAP read batch holds up to 64 frames. */
const BATCH = 64;

/**
 * The same stream through `Reassembler.pushBatch`: the fragments back to back in one buffer (as
 * a TAP batch delivers frames), `BATCH` per call. With `reuseOutput`, completed datagrams are
 * written into one 128 KiB output buffer the caller passes again on every call (views valid
 * until then); without it, each completed datagram gets a Buffer of its own, like the JS
 * reassembler's.
 */
function batchedReassemblyCase(reuseOutput: boolean, family: 4 | 6 = 4): BenchCase {
  let reassembler: Reassembler | Ipv6Reassembler | undefined;
  let data = Buffer.alloc(0);
  let spans = new Uint32Array(0);
  const output = reuseOutput ? Buffer.alloc(128 * 1024) : undefined;
  let count = 0;
  let cursor = 0;
  const v6 = family === 6;
  return {
    name: `${v6 ? 'IPv6 ' : ''}reassembly · napi, batched${reuseOutput ? '' : ', own Buffers'}`,
    group: v6 ? 'IPv6 reassembly 64 KiB / MTU 1500' : 'reassembly 64 KiB / MTU 1500',
    unit: 'fragments',
    bytesPerOp: v6 ? 65_535 / 46 : 65_515 / 45,
    description: reuseOutput
      ? `Reassembler.pushBatch from 'morgana' (default limits, same stream), ${BATCH} contiguous fragments per call, datagrams written into one reused 128 KiB output`
      : `Reassembler.pushBatch from 'morgana' (default limits, same stream), ${BATCH} contiguous fragments per call, each datagram a new Buffer (fresh memory: like the JS baseline's, its page faults can dominate)`,
    setup() {
      const { originals, fragments } = v6 ? fragmentStream6() : fragmentStream();
      data = Buffer.concat(fragments);
      count = fragments.length;
      spans = new Uint32Array(2 * count);
      let at = 0;
      fragments.forEach((f, i) => {
        spans[2 * i] = at;
        spans[2 * i + 1] = f.length;
        at += f.length;
      });
      reassembler = v6 ? new Ipv6Reassembler() : new Reassembler();
      // The whole stream in one call, checked datagram by datagram (a 128 KiB output holds two;
      // the rest get their own Buffers).
      const done = reassembler.pushBatch(data, spans, 0, { count, output }).filter((x) => x !== undefined);
      if (done.length !== originals.length || !done.every((d, i) => Buffer.from(d!).equals(originals[i]!))) {
        throw new Error(`batched: ${done.length} of ${originals.length} datagrams reassembled correctly`);
      }
      cursor = 0;
    },
    run(n) {
      const r = reassembler!;
      let completed = 0;
      let left = n;
      while (left > 0) {
        const take = Math.min(BATCH, left, count - cursor);
        // A window of the spans: the packets from `cursor` on.
        const out = r.pushBatch(data, spans.subarray(2 * cursor, 2 * (cursor + take)), 0, { count: take, output });
        for (const d of out) if (d !== undefined) completed++;
        left -= take;
        cursor += take;
        if (cursor === count) cursor = 0;
      }
      blackhole(completed);
    },
    teardown() {
      reassembler = undefined;
    },
  };
}

export const cases: BenchCase[] = [
  ...checksumCases(64, '64 B'),
  ...checksumCases(1500, '1500 B'),
  ...checksumCases(65536, '64 KiB'),
  reassemblyCase('reassembly · pure JS', () => new JsReassembler(), {
    baseline: true,
    description: 'a Map-based JS reassembler without limits; 45 shuffled fragments per 64 KiB datagram',
  }),
  reassemblyCase('reassembly · napi', () => new Reassembler({ maxFragments: 64 }), {
    description: "Reassembler from 'morgana' (Rust, 256 KiB / 64 fragments / 10 s limits); same stream",
    goal: { minOpsPerSec: 1_000_000, source: 'issue 2' },
  }),
  { ...batchedReassemblyCase(true), goal: { minRatio: 2, source: 'issue 14' } },
  batchedReassemblyCase(false),
  reassemblyCase(
    'IPv6 reassembly · pure JS',
    () => new JsIpv6Reassembler(),
    {
      group: 'IPv6 reassembly 64 KiB / MTU 1500',
      bytesPerOp: 65_535 / 46,
      baseline: true,
      description: 'a Map-based JS IPv6 reassembler without limits or reports; 46 shuffled fragments per 64 KiB packet',
    },
    fragmentStream6,
  ),
  reassemblyCase(
    'IPv6 reassembly · napi',
    () => new Ipv6Reassembler({ maxFragments: 64 }),
    {
      group: 'IPv6 reassembly 64 KiB / MTU 1500',
      bytesPerOp: 65_535 / 46,
      description: "Ipv6Reassembler from 'morgana' (Rust, 256 KiB / 64 fragments / 10 s); 46 shuffled fragments per 64 KiB packet",
    },
    fragmentStream6,
  ),
  { ...batchedReassemblyCase(true, 6), goal: { minRatio: 2, source: 'issue 14' } },
  fragmentCase(),
];

/** IPv6 fragmentation of a 64 KiB packet at MTU 1500 (46 fragments, one output buffer). */
function fragmentCase(): BenchCase {
  let packet: Buffer | undefined;
  return {
    name: 'IPv6 fragmentation · napi',
    // Its own group: the reassembly group's JS baseline measures something else.
    group: 'IPv6 fragmentation 64 KiB / MTU 1500',
    unit: 'packets',
    bytesPerOp: 65_535,
    description: "fragmentIpv6 from 'morgana': a 64 KiB UDP packet into 46 fragments at MTU 1500",
    setup() {
      packet = fragmentStream6().originals[0]!;
      if (fragmentIpv6(packet, MTU, 1).length !== 46) throw new Error('expected 46 fragments');
    },
    run(n) {
      let count = 0;
      for (let i = 0; i < n; i++) count += fragmentIpv6(packet!, MTU, i).length;
      blackhole(count);
    },
    teardown() {
      packet = undefined;
    },
  };
}
