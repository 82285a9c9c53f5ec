/**
 * MAC address conversions.
 * @module
 */
import { MorganaError } from '../errors.js';

const MAC = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i;

/** The broadcast address ff:ff:ff:ff:ff:ff. */
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';

/** Parses `'02:00:00:00:00:01'` into 6 bytes; throws `ERR_INVALID_MAC` otherwise. */
export function parseMac(text: string): Buffer {
  const match = MAC.exec(text);
  if (!match) throw new MorganaError('ERR_INVALID_MAC', `invalid MAC address: ${JSON.stringify(text)}`);
  return Buffer.from(match.slice(1).join(''), 'hex');
}

/** Formats 6 bytes (at `offset`) as a lower-case colon-separated MAC address. */
export function formatMac(bytes: Uint8Array, offset = 0): string {
  let out = '';
  for (let i = 0; i < 6; i++) {
    const b = bytes[offset + i]!;
    out += (i ? ':' : '') + (b < 16 ? '0' : '') + b.toString(16);
  }
  return out;
}

/** A locally administered unicast MAC address (02:xx:…) from 5 bytes of `randomBytes`. */
export function randomLocalMac(randomBytes: (n: number) => Uint8Array): string {
  const tail = randomBytes(5);
  return formatMac(Uint8Array.of(0x02, ...tail));
}
