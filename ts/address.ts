/**
 * IPv4 address conversions between dotted-quad strings, 32-bit numbers and 4-byte arrays, and
 * IPv6 conversions between text (strict in, RFC 5952 canonical out) and 16-byte arrays.
 * @module
 */
import { InvalidArgumentError, MorganaError } from './errors.js';

/** An IPv4 address as `'10.0.0.1'`, a 32-bit unsigned number, or 4 bytes. */
export type Ipv4AddressLike = string | number | Uint8Array;

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Parses a dotted-quad IPv4 address strictly (no leading zeros, no shorthand forms) into a
 * 32-bit unsigned number. Throws `ERR_INVALID_IP_ADDRESS` otherwise.
 */
export function parseIpv4Address(text: string): number {
  const match = DOTTED_QUAD.exec(text);
  if (match) {
    let value = 0;
    let valid = true;
    for (let i = 1; i <= 4; i++) {
      const part = match[i]!;
      const octet = Number(part);
      if (octet > 255 || (part.length > 1 && part[0] === '0')) valid = false;
      value = value * 256 + octet;
    }
    if (valid) return value;
  }
  throw new MorganaError('ERR_INVALID_IP_ADDRESS', `invalid IPv4 address: ${JSON.stringify(text)}`);
}

/** Formats a 32-bit unsigned number as a dotted-quad address. */
export function formatIpv4Address(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}

/** Converts any {@link Ipv4AddressLike} to a 32-bit unsigned number. */
export function toIpv4Number(address: Ipv4AddressLike, name = 'address'): number {
  if (typeof address === 'string') return parseIpv4Address(address);
  if (typeof address === 'number') {
    if (Number.isInteger(address) && address >= 0 && address <= 0xffffffff) return address;
  } else if (address instanceof Uint8Array && address.length === 4) {
    return ((address[0]! << 24) | (address[1]! << 16) | (address[2]! << 8) | address[3]!) >>> 0;
  }
  throw new InvalidArgumentError(`${name} must be a dotted-quad string, a 32-bit unsigned number or 4 bytes`);
}

/** An IPv6 address as text (`'2001:db8::1'`) or 16 bytes. */
export type Ipv6AddressLike = string | Uint8Array;

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function invalidIpv6(text: string): MorganaError {
  return new MorganaError('ERR_INVALID_IP_ADDRESS', `invalid IPv6 address: ${JSON.stringify(text)}`);
}

/** The 16-bit groups of one side of `::`, or `undefined` if a group is malformed. */
function ipv6Groups(side: string, last: boolean): number[] | undefined {
  if (side === '') return [];
  const parts = side.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (last && i === parts.length - 1 && part.includes('.')) {
      let v4: number;
      try {
        v4 = parseIpv4Address(part);
      } catch {
        return undefined;
      }
      groups.push(v4 >>> 16, v4 & 0xffff);
    } else if (HEX_GROUP.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}

/**
 * Parses IPv6 text strictly (RFC 4291 §2.2: one to four hex digits per group, at most one `::`
 * standing for at least one zero group, an optional dotted-quad tail) into 16 bytes. Zone
 * identifiers, brackets and prefix lengths are not addresses. Throws `ERR_INVALID_IP_ADDRESS`
 * otherwise.
 */
export function parseIpv6Address(text: string): Buffer {
  if (typeof text !== 'string' || text.length > 45) throw invalidIpv6(String(text));
  const halves = text.split('::');
  let groups: number[] | undefined;
  if (halves.length === 1) {
    groups = ipv6Groups(text, true);
    if (groups?.length !== 8) groups = undefined;
  } else if (halves.length === 2) {
    const head = ipv6Groups(halves[0]!, false);
    const tail = ipv6Groups(halves[1]!, true);
    if (head && tail && head.length + tail.length <= 7) {
      groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
    }
  }
  if (groups === undefined) throw invalidIpv6(text);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/**
 * Formats 16 bytes as IPv6 text in the canonical form of RFC 5952 §4: lower-case hex without
 * leading zeros, the longest run of two or more zero groups (the first of equal runs) shortened
 * to `::`, and IPv4-mapped addresses (`::ffff:0:0/96`) with a dotted-quad tail (§5).
 */
export function formatIpv6Address(bytes: Uint8Array): string {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 16) {
    throw new InvalidArgumentError('an IPv6 address must be 16 bytes');
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Converts any {@link Ipv6AddressLike} to 16 bytes (text is parsed strictly; bytes are not copied). */
export function toIpv6Bytes(address: Ipv6AddressLike, name = 'address'): Uint8Array {
  if (typeof address === 'string') return parseIpv6Address(address);
  if (address instanceof Uint8Array && address.length === 16) return address;
  throw new InvalidArgumentError(`${name} must be IPv6 text or 16 bytes`);
}
