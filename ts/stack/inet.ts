/**
 * Addresses of either family as the transport layers take them: `'10.0.0.2'`, `'2001:db8::2'`,
 * `'fe80::1%net0'` (a zone: interface name or 0-based index), a 32-bit number, or 4 or 16 bytes.
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.2`) mean the IPv4 address, as on a dual-stack
 * socket.
 * @module
 */
import { formatIpv4Address, formatIpv6Address, parseIpv4Address, parseIpv6Address } from '../address.js';
import { InvalidArgumentError, MorganaError } from '../errors.js';
import type { Ipv6Interface, Ipv6Layer } from './ipv6.js';

/** An address of either family: text, a 32-bit IPv4 number, or 4 or 16 bytes. */
export type InetAddressLike = string | number | Uint8Array;

/** A parsed destination. */
export type InetAddress =
  | { readonly family: 4; readonly v4: number }
  | { readonly family: 6; readonly v6: Buffer; readonly zone: string | undefined };

const MAPPED_PREFIX = Buffer.from('00000000000000000000ffff', 'hex');

/** Whether 16 bytes are an IPv4-mapped IPv6 address (`::ffff:0:0/96`). */
export function isIpv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 12; i++) if (bytes[i] !== MAPPED_PREFIX[i]) return false;
  return true;
}

function fromBytes16(bytes: Uint8Array, zone: string | undefined): InetAddress {
  if (isIpv4Mapped(bytes)) {
    return { family: 4, v4: ((bytes[12]! << 24) | (bytes[13]! << 16) | (bytes[14]! << 8) | bytes[15]!) >>> 0 };
  }
  return { family: 6, v6: Buffer.from(bytes.buffer, bytes.byteOffset, 16), zone };
}

/**
 * Parses any {@link InetAddressLike}. Throws `ERR_INVALID_IP_ADDRESS` for malformed text and
 * `ERR_INVALID_ARG_TYPE`-style errors for other values.
 */
export function parseInetAddress(address: InetAddressLike, name = 'address'): InetAddress {
  if (typeof address === 'string') {
    if (!address.includes(':')) return { family: 4, v4: parseIpv4Address(address) };
    const percent = address.indexOf('%');
    const zone = percent < 0 ? undefined : address.slice(percent + 1);
    if (zone === '') throw new MorganaError('ERR_INVALID_IP_ADDRESS', `empty zone in ${JSON.stringify(address)}`);
    return fromBytes16(parseIpv6Address(percent < 0 ? address : address.slice(0, percent)), zone);
  }
  if (typeof address === 'number') {
    if (Number.isInteger(address) && address >= 0 && address <= 0xffffffff) return { family: 4, v4: address };
  } else if (address instanceof Uint8Array) {
    if (address.length === 4) {
      return { family: 4, v4: ((address[0]! << 24) | (address[1]! << 16) | (address[2]! << 8) | address[3]!) >>> 0 };
    }
    if (address.length === 16) return fromBytes16(address, undefined);
  }
  throw new InvalidArgumentError(`${name} must be IPv4 or IPv6 text, a 32-bit unsigned number, or 4 or 16 bytes`);
}

/** RFC 5952 text for IPv6, dotted quad for IPv4. */
export function formatInetAddress(a: InetAddress): string {
  return a.family === 4 ? formatIpv4Address(a.v4) : formatIpv6Address(a.v6);
}

/** `addr:port`, with the IPv6 address in brackets (RFC 5952 §6). */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The interface a zone names (`'net0'`, or a 0-based index as text). Throws `ERR_NO_ROUTE` for
 * a zone the stack does not have.
 */
export function zoneInterface(ip6: Ipv6Layer, zone: string): Ipv6Interface {
  const byName = ip6.interfaces.find((i) => i.name === zone);
  if (byName) return byName;
  const index = /^\d+$/.test(zone) ? Number(zone) : -1;
  const byIndex = ip6.interfaces.find((i) => i.index === index);
  if (byIndex) return byIndex;
  throw new MorganaError('ERR_NO_ROUTE', `no interface ${JSON.stringify(zone)} for the zone of an IPv6 address`);
}
