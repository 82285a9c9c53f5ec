/**
 * The Internet checksum (RFC 1071), its incremental update (RFC 1624) and the IPv4 and IPv6
 * pseudo-header sums, computed in Rust over the caller's bytes without copying them.
 *
 * Values are the 16-bit numbers as stored big-endian in headers.
 * @module
 */
import { assertBytes, assertInteger, nativeFailure } from './errors.js';
import { type Ipv4AddressLike, type Ipv6AddressLike, toIpv4Number, toIpv6Bytes } from './address.js';
import { native } from './native.js';

/**
 * Up to this many bytes the sum is computed in JavaScript: a napi call costs about 100 ns before
 * any work, which a JS loop over up to ~150 bytes beats (IPv4, UDP and TCP headers, small ICMP
 * messages). Measured by `npm run bench -- --filter checksum`.
 */
export const JS_MAX_LENGTH = 128;

/** RFC 1071 over a short buffer: big-endian 16-bit words summed, carries folded at the end. */
function sumJs(data: Uint8Array, initial: number): number {
  let sum = initial;
  const even = data.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (even !== data.length) sum += data[even]! << 8;
  // At most 64 words of 0xffff plus `initial`: far below 2^32, so `>>>` is exact.
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/**
 * The value to store in a checksum field: the complement of the one's-complement sum of `data`,
 * continuing from `initial` (e.g. a {@link pseudoHeaderSum}). Over data whose checksum field is
 * already correct it returns 0.
 */
export function checksum(data: Uint8Array, initial = 0): number {
  assertBytes(data, 'data');
  assertInteger(initial, 'initial', 0, 0xffff);
  if (data.length <= JS_MAX_LENGTH) return ~sumJs(data, initial) & 0xffff;
  return native.checksum(data, initial);
}

/**
 * The 16-bit one's-complement sum of `data`, not complemented, continuing from `initial`. Sums
 * chain when each piece starts at an even offset of the whole message.
 */
export function onesComplementSum(data: Uint8Array, initial = 0): number {
  assertBytes(data, 'data');
  assertInteger(initial, 'initial', 0, 0xffff);
  if (data.length <= JS_MAX_LENGTH) return sumJs(data, initial);
  return native.onesComplementSum(data, initial);
}

/**
 * The checksum after one 16-bit word of the covered data changed from `oldWord` to `newWord`
 * (RFC 1624 eqn. 3), e.g. when a router decrements the TTL or a NAT rewrites a port.
 */
export function checksumUpdate(oldChecksum: number, oldWord: number, newWord: number): number {
  assertInteger(oldChecksum, 'oldChecksum', 0, 0xffff);
  assertInteger(oldWord, 'oldWord', 0, 0xffff);
  assertInteger(newWord, 'newWord', 0, 0xffff);
  return native.checksumUpdate(oldChecksum, oldWord, newWord);
}

/**
 * The one's-complement sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1) for a UDP or TCP
 * segment of `length` bytes; pass it as `initial` to {@link checksum}.
 */
export function pseudoHeaderSum(src: Ipv4AddressLike, dst: Ipv4AddressLike, protocol: number, length: number): number {
  assertInteger(protocol, 'protocol', 0, 0xff);
  assertInteger(length, 'length', 0, 0xffff);
  return native.pseudoHeaderSum(toIpv4Number(src, 'src'), toIpv4Number(dst, 'dst'), protocol, length);
}

/**
 * The one's-complement sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an ICMPv6, UDP or TCP
 * message of `length` bytes (upper-layer header and data, not extension headers) to the final
 * destination `dst`; pass it as `initial` to {@link checksum}.
 */
export function pseudoHeaderSum6(src: Ipv6AddressLike, dst: Ipv6AddressLike, nextHeader: number, length: number): number {
  assertInteger(nextHeader, 'nextHeader', 0, 0xff);
  assertInteger(length, 'length', 0, 0xffffffff);
  const sum = native.pseudoHeaderSum6(toIpv6Bytes(src, 'src'), toIpv6Bytes(dst, 'dst'), nextHeader, length);
  if (sum < 0) throw nativeFailure(sum);
  return sum;
}
