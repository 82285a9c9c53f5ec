/**
 * The ICMPv4 wire format (RFC 792): echo request/reply headers and error messages (destination
 * unreachable, time exceeded, parameter problem) with the IPv4 packet they quote. Pure functions
 * over bytes; the rate limit, RFC 1122's rules about when to send and the ping bookkeeping live in
 * stack/icmp.ts.
 * @module
 */
import { checksum, onesComplementSum } from '../checksum.js';

/** The IP protocol number of ICMPv4. */
export const IP_PROTOCOL_ICMP = 1;

/** ICMPv4 message types Morgana reads or writes. */
export const ICMPV4 = Object.freeze({
  ECHO_REPLY: 0,
  UNREACHABLE: 3,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
  PARAMETER_PROBLEM: 12,
  TIMESTAMP: 13,
  TIMESTAMP_REPLY: 14,
});

/** Length of the ICMPv4 header (type, code, checksum and four bytes of the message). */
export const ICMPV4_HEADER_LENGTH = 8;

/** Whether `message` holds a whole header and its checksum verifies. */
export const icmpv4Valid = (message: Buffer): boolean => message.length >= ICMPV4_HEADER_LENGTH && checksum(message) === 0;

/** The identifier of an echo request or reply. */
export const echoIdentifier = (message: Buffer): number => message.readUInt16BE(4);

/** The sequence number of an echo request or reply. */
export const echoSequence = (message: Buffer): number => message.readUInt16BE(6);

/**
 * The 8-byte header of an echo request or reply (`type`) carrying `data`, checksummed over both;
 * send it followed by `data`.
 */
export function echoHeader(type: number, identifier: number, sequence: number, data: Uint8Array): Buffer {
  const header = Buffer.alloc(ICMPV4_HEADER_LENGTH);
  header[0] = type;
  header.writeUInt16BE(identifier, 4);
  header.writeUInt16BE(sequence, 6);
  header.writeUInt16BE(checksum(data, onesComplementSum(header)), 2);
  return header;
}

/**
 * An error message of `type`/`code` quoting `quoted` (the offending packet's IPv4 header and
 * first 8 payload bytes); `mtu` is the next-hop MTU of "fragmentation needed" (type 3 code 4).
 */
export function errorMessage(type: number, code: number, quoted: Uint8Array, mtu?: number): Buffer {
  const message = Buffer.alloc(ICMPV4_HEADER_LENGTH + quoted.length);
  message[0] = type;
  message[1] = code;
  if (type === ICMPV4.UNREACHABLE && code === 4 && mtu !== undefined) message.writeUInt16BE(mtu, 6);
  message.set(quoted, ICMPV4_HEADER_LENGTH);
  message.writeUInt16BE(checksum(message), 2);
  return message;
}

/** An error message as read: the packet it quotes, cut after the quoted IPv4 header. */
export interface Icmpv4Error {
  type: number;
  code: number;
  /** Next-hop MTU of "fragmentation needed" (type 3 code 4), when given. */
  mtu: number | undefined;
  original: { src: number; dst: number; protocol: number; payload: Buffer };
}

/**
 * Reads an error message (type 3, 11 or 12) whose checksum was verified; undefined when the
 * quoted packet is not a whole IPv4 header.
 */
export function parseIcmpv4Error(message: Buffer): Icmpv4Error | undefined {
  const type = message[0]!;
  const code = message[1]!;
  const inner = message.subarray(ICMPV4_HEADER_LENGTH);
  if (inner.length < 20 || inner[0]! >> 4 !== 4) return undefined;
  const innerHeader = (inner[0]! & 0x0f) * 4;
  if (inner.length < innerHeader) return undefined;
  return {
    type,
    code,
    mtu: type === ICMPV4.UNREACHABLE && code === 4 ? message.readUInt16BE(6) : undefined,
    original: { src: inner.readUInt32BE(12), dst: inner.readUInt32BE(16), protocol: inner[9]!, payload: inner.subarray(innerHeader) },
  };
}
