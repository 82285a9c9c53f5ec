/**
 * IPv4 address conversions between dotted-quad strings, 32-bit numbers and 4-byte arrays.
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
