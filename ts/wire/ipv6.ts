/**
 * The IPv6 wire format (RFC 8200): zero-copy parsing with a bounded walk of the extension
 * headers, header emission, and fragmentation at the source ({@link fragment}). Validation and the walk run in Rust; fields are read here straight
 * from the caller's bytes.
 * @module
 */
import { type Ipv6AddressLike, formatIpv6Address, toIpv6Bytes } from '../address.js';
import { MorganaError, assertBytes, assertInteger, nativeFailure } from '../errors.js';
import { native } from '../native.js';

/** Next-header values. */
export const NEXT_HEADER = Object.freeze({
  HOP_BY_HOP: 0,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  NO_NEXT_HEADER: 59,
  DESTINATION_OPTIONS: 60,
});

/** Length of the fixed IPv6 header. */
export const HEADER_LENGTH = 40;
/** The largest payload (jumbograms are not supported). */
export const MAX_PAYLOAD_LENGTH = 65_535;
/** The smallest MTU every IPv6 link carries (RFC 8200 §5). */
export const MIN_MTU = 1280;

/** One extension header walked by {@link parse}. */
export interface Ipv6Extension {
  /** Its next-header value: 0 (hop-by-hop), 43 (routing), 44 (fragment) or 60 (destination options). */
  type: number;
  /** Offset of its first byte in the packet. */
  offset: number;
  /** The whole header (a view). */
  bytes: Buffer;
}

/** A fragment header (RFC 8200 §4.5). */
export interface Ipv6Fragment {
  /** Offset of the fragment's data in the fragmentable part, in bytes. */
  offset: number;
  moreFragments: boolean;
  identification: number;
  /** Offset 0 and More Fragments clear: a packet that was never fragmented (RFC 6946). */
  atomic: boolean;
}

/** A parsed IPv6 packet. `extensions[].bytes` and `payload` are views into the parsed bytes. */
export interface Ipv6Packet {
  trafficClass: number;
  flowLabel: number;
  /** Payload length field: bytes after the fixed header (trailing link padding is excluded). */
  payloadLength: number;
  hopLimit: number;
  /** Source address, RFC 5952 text. */
  src: string;
  /** Destination address, RFC 5952 text. */
  dst: string;
  /**
   * The next header after the extension headers walked: an upper-layer protocol, 59 (no next
   * header), a value the walk does not know, or, for a fragment that is not atomic, the first
   * header of the fragmentable part (then `payload` is fragment data).
   */
  nextHeader: number;
  /** Offset of the field holding `nextHeader`: an ICMPv6 parameter problem's pointer. */
  nextHeaderPointer: number;
  /** The extension headers walked, in order. */
  extensions: Ipv6Extension[];
  /** The fragment header, if there is one. */
  fragment?: Ipv6Fragment;
  /** What follows the extension headers, up to the payload length. */
  payload: Buffer;
}

/** A malformed packet. `pointer` is where an ICMPv6 parameter problem would point, if anywhere. */
export class Ipv6ParseError extends MorganaError {
  /** Offset of the byte at fault, for extension-header errors. */
  readonly pointer: number | undefined;
  constructor(error: MorganaError, pointer: number | undefined) {
    super(error.code, pointer === undefined ? error.message : `${error.message} (at byte ${pointer})`);
    this.name = 'Ipv6ParseError';
    this.pointer = pointer;
  }
}

const slots = new Uint32Array(native.IPV6_PARSE_SLOTS);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Parses an IPv6 packet without copying it and walks its extension headers (hop-by-hop only
 * first, routing, fragment, destination options; at most 8 headers and 1024 bytes of them).
 * Throws an {@link Ipv6ParseError} with code `ERR_IPV6_TRUNCATED`, `ERR_IPV6_BAD_VERSION`,
 * `ERR_IPV6_BAD_EXTENSION`, `ERR_IPV6_MISPLACED_HOP_BY_HOP` or `ERR_IPV6_TOO_MANY_EXTENSIONS`.
 */
export function parse(packet: Uint8Array): Ipv6Packet {
  assertBytes(packet, 'packet');
  const n = native.ipv6Parse(packet, slots);
  if (n < 0) {
    const pointer = slots[0] === 0xffffffff ? undefined : slots[0];
    throw new Ipv6ParseError(nativeFailure(n), pointer);
  }
  const bytes = asBuffer(packet);
  const total = slots[0]!;
  const extensions: Ipv6Extension[] = [];
  for (let i = 0; i < slots[8]!; i++) {
    const offset = slots[10 + i * 3]!;
    extensions.push({ type: slots[9 + i * 3]!, offset, bytes: bytes.subarray(offset, offset + slots[11 + i * 3]!) });
  }
  const word = bytes.readUInt32BE(0);
  const result: Ipv6Packet = {
    trafficClass: (word >>> 20) & 0xff,
    flowLabel: word & 0xfffff,
    payloadLength: total - HEADER_LENGTH,
    hopLimit: bytes[7]!,
    src: formatIpv6Address(bytes.subarray(8, 24)),
    dst: formatIpv6Address(bytes.subarray(24, 40)),
    nextHeader: slots[1]!,
    nextHeaderPointer: slots[2]!,
    extensions,
    payload: bytes.subarray(slots[3]!, total),
  };
  if (slots[4] === 1) {
    const offset = slots[5]!;
    const moreFragments = slots[6] === 1;
    result.fragment = { offset, moreFragments, identification: slots[7]!, atomic: offset === 0 && !moreFragments };
  }
  return result;
}

/** The fields of a fixed header to emit. */
export interface HeaderFields {
  src: Ipv6AddressLike;
  dst: Ipv6AddressLike;
  /** The first extension header in the payload, or the upper-layer protocol. */
  nextHeader: number;
  /** Hop limit (default 64). */
  hopLimit?: number;
  /** Traffic class (default 0). */
  trafficClass?: number;
  /** Flow label, 20 bits (default 0). */
  flowLabel?: number;
}

/**
 * Writes a fixed header for a payload (extension headers included) of `payloadLength` bytes at
 * `out[offset]` and returns its length (40). The payload is the caller's to place after it.
 */
export function emitHeader(out: Uint8Array, offset: number, fields: HeaderFields, payloadLength: number): number {
  assertBytes(out, 'out');
  assertInteger(offset, 'offset', 0, out.length);
  assertInteger(payloadLength, 'payloadLength', 0, MAX_PAYLOAD_LENGTH);
  const { hopLimit = 64, trafficClass = 0, flowLabel = 0 } = fields;
  assertInteger(fields.nextHeader, 'nextHeader', 0, 0xff);
  assertInteger(hopLimit, 'hopLimit', 0, 0xff);
  assertInteger(trafficClass, 'trafficClass', 0, 0xff);
  assertInteger(flowLabel, 'flowLabel', 0, 0xfffff);
  const result = native.ipv6EmitHeader(
    out,
    offset,
    { trafficClass, flowLabel, nextHeader: fields.nextHeader, hopLimit, payloadLength },
    toIpv6Bytes(fields.src, 'src'),
    toIpv6Bytes(fields.dst, 'dst'),
  );
  if (result < 0) throw nativeFailure(result);
  return result;
}

/** Builds a whole packet: a fixed header for `fields` followed by a copy of `payload`. */
export function emit(fields: HeaderFields, payload: Uint8Array = new Uint8Array(0)): Buffer {
  assertBytes(payload, 'payload');
  if (payload.length > MAX_PAYLOAD_LENGTH) {
    throw new MorganaError('ERR_IPV6_PAYLOAD_TOO_LONG', `IPv6 payload longer than ${MAX_PAYLOAD_LENGTH} bytes`);
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  emitHeader(out, 0, fields, payload.length);
  out.set(payload, HEADER_LENGTH);
  return out;
}

const fragmentPlan = new Uint32Array(2);

/**
 * Fragments a complete IPv6 packet at the source (RFC 8200 §4.5) into packets of at most `mtu`
 * bytes whose Fragment headers carry `identification` (32 bits; the caller picks it, unique per
 * source and destination for the lifetime of a packet). The unfragmentable part (the fixed
 * header, and the extension headers through the last Routing header, else the Hop-by-Hop Options
 * header) is copied into each fragment with its last Next Header set to 44 and the Payload Length
 * fixed; the rest is cut into 8-byte-aligned pieces. A packet that fits is returned as it is (a
 * view, without a Fragment header). The fragments are views into one buffer.
 *
 * IPv6 links carry at least 1280 bytes, but any MTU that holds the unfragmentable part, a
 * Fragment header and 8 bytes of data works. Throws `ERR_MTU_TOO_SMALL` when it does not,
 * `ERR_IPV6_HEADER_CHAIN_TOO_LONG` when the first fragment could not hold the whole header chain
 * through the upper-layer header (RFC 7112), `ERR_IPV6_ALREADY_FRAGMENT` for a packet with a
 * Fragment header, and the {@link parse} errors for malformed packets.
 */
export function fragment(packet: Uint8Array, mtu: number, identification: number): Buffer[] {
  assertBytes(packet, 'packet');
  assertInteger(mtu, 'mtu', 0, 0xffffffff);
  assertInteger(identification, 'identification', 0, 0xffffffff);
  const planned = native.ipv6FragmentSize(packet, mtu, fragmentPlan);
  if (planned < 0) throw fragmentFailure(planned, mtu);
  const bytes = asBuffer(packet);
  const [count, size] = fragmentPlan as unknown as [number, number];
  if (count === 1 && size <= mtu) return [bytes.subarray(0, size)];
  const out = Buffer.allocUnsafe(size);
  const lengths = new Uint32Array(count);
  const n = native.ipv6Fragment(bytes, mtu, identification, out, lengths);
  if (n < 0) throw fragmentFailure(n, mtu);
  const fragments: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    fragments.push(out.subarray(at, at + lengths[i]!));
    at += lengths[i]!;
  }
  return fragments;
}

function fragmentFailure(result: number, mtu: number): MorganaError {
  const error = nativeFailure(result);
  if (error.code === 'ERR_MTU_TOO_SMALL') {
    return new MorganaError(
      error.code,
      `MTU ${mtu} cannot carry the unfragmentable part, a fragment header and 8 bytes of data`,
    );
  }
  if (error.code === 'ERR_IPV6_HEADER_CHAIN_TOO_LONG') {
    return new MorganaError(error.code, `MTU ${mtu} cannot carry the whole IPv6 header chain in the first fragment (RFC 7112)`);
  }
  return error;
}
