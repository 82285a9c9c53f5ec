/**
 * The IPv4 wire format (RFC 791): zero-copy parsing, header emission and fragmentation.
 * Validation (every length, the version, IHL and the header checksum) and fragmentation run in
 * Rust; fields are read here straight from the caller's bytes.
 * @module
 */
import { type Ipv4AddressLike, formatIpv4Address, toIpv4Number } from '../address.js';
import {
  FragmentationNeededError,
  MorganaError,
  assertBytes,
  assertInteger,
  nativeFailure,
} from '../errors.js';
import { native } from '../native.js';

/** IP protocol numbers. */
export const PROTOCOL = Object.freeze({ ICMP: 1, TCP: 6, UDP: 17 });

/** Header length without options. */
export const MIN_HEADER_LENGTH = 20;
/** The largest IPv4 datagram. */
export const MAX_PACKET_LENGTH = 65_535;

/** A parsed IPv4 packet. `options` and `payload` are views into the parsed bytes. */
export interface Ipv4Packet {
  headerLength: number;
  tos: number;
  /** Total length field: header plus payload (trailing link padding is excluded). */
  totalLength: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** Fragment offset in bytes (the field counts 8-byte units). */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  /** Source address, dotted quad. */
  src: string;
  /** Destination address, dotted quad. */
  dst: string;
  /** Options area (opaque), possibly empty. */
  options: Buffer;
  /** Payload, up to the total length. */
  payload: Buffer;
}

/** Options for {@link parse}. */
export interface ParseOptions {
  /** Verify the header checksum (default true). */
  verifyChecksum?: boolean;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Parses an IPv4 packet without copying it. Throws a {@link MorganaError} with code
 * `ERR_IPV4_TRUNCATED`, `ERR_IPV4_BAD_VERSION`, `ERR_IPV4_BAD_IHL`, `ERR_IPV4_BAD_TOTAL_LENGTH`
 * or `ERR_IPV4_BAD_CHECKSUM` for malformed input.
 */
export function parse(packet: Uint8Array, options: ParseOptions = {}): Ipv4Packet {
  assertBytes(packet, 'packet');
  const total = native.ipv4Validate(packet, options.verifyChecksum ?? true);
  if (total < 0) throw nativeFailure(total);
  const bytes = asBuffer(packet);
  const headerLength = (bytes[0]! & 0x0f) * 4;
  const flags = bytes.readUInt16BE(6);
  return {
    headerLength,
    tos: bytes[1]!,
    totalLength: total,
    identification: bytes.readUInt16BE(4),
    dontFragment: (flags & 0x4000) !== 0,
    moreFragments: (flags & 0x2000) !== 0,
    fragmentOffset: (flags & 0x1fff) * 8,
    ttl: bytes[8]!,
    protocol: bytes[9]!,
    checksum: bytes.readUInt16BE(10),
    src: formatIpv4Address(bytes.readUInt32BE(12)),
    dst: formatIpv4Address(bytes.readUInt32BE(16)),
    options: bytes.subarray(MIN_HEADER_LENGTH, headerLength),
    payload: bytes.subarray(headerLength, total),
  };
}

/** The fields of a header to emit. */
export interface HeaderFields {
  src: Ipv4AddressLike;
  dst: Ipv4AddressLike;
  protocol: number;
  /** Time to live (default 64). */
  ttl?: number;
  /** Type of service / DSCP+ECN (default 0). */
  tos?: number;
  /** Identification (default 0). */
  identification?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** Fragment offset in bytes, a multiple of 8 (default 0). */
  fragmentOffset?: number;
  /** Options area, padded with End of Option List to 4 bytes; at most 40 bytes. */
  options?: Uint8Array;
}

/** Header length for the given options. */
export function headerLength(options?: Uint8Array): number {
  return MIN_HEADER_LENGTH + Math.ceil((options?.length ?? 0) / 4) * 4;
}

/**
 * Writes a header for a payload of `payloadLength` bytes at `out[offset]`, checksum included,
 * and returns the header length. The payload is the caller's to place after it.
 */
export function emitHeader(out: Uint8Array, offset: number, fields: HeaderFields, payloadLength: number): number {
  assertBytes(out, 'out');
  assertInteger(offset, 'offset', 0, out.length);
  assertInteger(payloadLength, 'payloadLength', 0, MAX_PACKET_LENGTH);
  const { ttl = 64, tos = 0, identification = 0, fragmentOffset = 0 } = fields;
  assertInteger(fields.protocol, 'protocol', 0, 0xff);
  assertInteger(ttl, 'ttl', 0, 0xff);
  assertInteger(tos, 'tos', 0, 0xff);
  assertInteger(identification, 'identification', 0, 0xffff);
  assertInteger(fragmentOffset, 'fragmentOffset', 0, MAX_PACKET_LENGTH);
  if (fields.options !== undefined) assertBytes(fields.options, 'options');
  const result = native.ipv4EmitHeader(
    out,
    offset,
    {
      src: toIpv4Number(fields.src, 'src'),
      dst: toIpv4Number(fields.dst, 'dst'),
      protocol: fields.protocol,
      ttl,
      tos,
      identification,
      dontFragment: fields.dontFragment ?? false,
      moreFragments: fields.moreFragments ?? false,
      fragmentOffset,
      payloadLength,
    },
    fields.options,
  );
  if (result < 0) throw nativeFailure(result);
  return result;
}

/** Builds a whole packet: a header for `fields` followed by a copy of `payload`. */
export function emit(fields: HeaderFields, payload: Uint8Array = new Uint8Array(0)): Buffer {
  assertBytes(payload, 'payload');
  const length = headerLength(fields.options);
  const out = Buffer.allocUnsafe(length + payload.length);
  emitHeader(out, 0, fields, payload.length);
  out.set(payload, length);
  return out;
}

/**
 * Splits a complete IPv4 packet into packets of at most `mtu` bytes (RFC 791 §3.2): payload
 * offsets in 8-byte units, More Fragments on all but the last, only options with the copy bit in
 * later fragments, header checksums recomputed. A packet that fits is returned as it is (a view).
 * The fragments are views into one buffer.
 *
 * Throws {@link FragmentationNeededError} (code `ERR_FRAGMENTATION_NEEDED`, with `mtu`) when Don't
 * Fragment is set and the packet is larger, `ERR_MTU_TOO_SMALL` when the MTU cannot carry a
 * header and 8 bytes, and the parse errors for malformed packets.
 */
export function fragment(packet: Uint8Array, mtu: number): Buffer[] {
  assertBytes(packet, 'packet');
  assertInteger(mtu, 'mtu', 0, 0xffffffff);
  const total = native.ipv4Validate(packet, true);
  if (total < 0) throw nativeFailure(total);
  const bytes = asBuffer(packet);
  if (total <= mtu) return [bytes.subarray(0, total)];
  // Each fragment carries at least 8 payload bytes and at most the first fragment's header
  // (later ones copy a subset of its options), which bounds the output.
  const header = (bytes[0]! & 0x0f) * 4;
  const room = Math.max(8, Math.floor((mtu - header) / 8) * 8);
  const count = Math.ceil((total - header) / room) + 1;
  const out = Buffer.allocUnsafe(total + count * header);
  const lengths = new Uint32Array(count);
  const n = native.ipv4Fragment(bytes, mtu, out, lengths);
  if (n < 0) {
    const error = nativeFailure(n);
    if (error.code === 'ERR_FRAGMENTATION_NEEDED') throw new FragmentationNeededError(mtu);
    if (error.code === 'ERR_MTU_TOO_SMALL') {
      throw new MorganaError(error.code, `MTU ${mtu} cannot carry an IPv4 header and 8 bytes of payload`);
    }
    throw error;
  }
  const fragments: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    fragments.push(out.subarray(at, at + lengths[i]!));
    at += lengths[i]!;
  }
  return fragments;
}
