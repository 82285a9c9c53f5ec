/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624), computed in Rust over
 * the caller's bytes without copying them (short inputs in JavaScript), and the IPv4 and IPv6
 * pseudo-header sums (a handful of words, summed in JavaScript).
 *
 * Values are the 16-bit numbers as stored big-endian in headers.
 * @module
 */
import { assertBytes, assertInteger } from './errors.js';
import { type Ipv4AddressLike, type Ipv6AddressLike, toIpv4Number, toIpv6Bytes } from './address.js';
import { native } from './native.js';

/** The Rust sums as plain Node-API functions (no napi-rs per-call bookkeeping). */
const fast = native.checksumFastCalls();

/**
 * Up to this many bytes the sum is computed in JavaScript (IPv4, UDP and TCP headers, small ICMP
 * messages). The call into Rust costs about 45 ns of CPU before any work (a plain Node-API
 * function; napi-rs's own wrapper cost ~120), which a JS loop beats only below ~50 bytes in a
 * tight loop; between the two, the stack's ping and UDP benchmarks could not tell them apart, so
 * the JS path keeps the headers and small messages it had. Measured by `npm run bench -- --filter
 * checksum`.
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

/** A sum of 16-bit words below 2^31 folded to 16 bits (end-around carries). */
function fold(sum: number): number {
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
  return fast.checksum(data, initial);
}

/**
 * The 16-bit one's-complement sum of `data`, not complemented, continuing from `initial`. Sums
 * chain when each piece starts at an even offset of the whole message.
 */
export function onesComplementSum(data: Uint8Array, initial = 0): number {
  assertBytes(data, 'data');
  assertInteger(initial, 'initial', 0, 0xffff);
  if (data.length <= JS_MAX_LENGTH) return sumJs(data, initial);
  return fast.onesComplementSum(data, initial);
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
  // Six 16-bit words: summed here, cheaper than any crossing into Rust.
  const s = toIpv4Number(src, 'src');
  const d = toIpv4Number(dst, 'dst');
  return fold((s >>> 16) + (s & 0xffff) + (d >>> 16) + (d & 0xffff) + protocol + length);
}

/**
 * The one's-complement sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an ICMPv6, UDP or TCP
 * message of `length` bytes (upper-layer header and data, not extension headers) to the final
 * destination `dst`; pass it as `initial` to {@link checksum}.
 */
export function pseudoHeaderSum6(src: Ipv6AddressLike, dst: Ipv6AddressLike, nextHeader: number, length: number): number {
  assertInteger(nextHeader, 'nextHeader', 0, 0xff);
  assertInteger(length, 'length', 0, 0xffffffff);
  const s = toIpv6Bytes(src, 'src');
  const d = toIpv6Bytes(dst, 'dst');
  // 35 16-bit words of at most 0xffff: far below 2^31.
  let sum = nextHeader + (length >>> 16) + (length & 0xffff);
  for (let i = 0; i < 16; i += 2) sum += ((s[i]! << 8) | s[i + 1]!) + ((d[i]! << 8) | d[i + 1]!);
  return fold(sum);
}
