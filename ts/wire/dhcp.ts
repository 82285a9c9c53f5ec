/**
 * The DHCP wire format (RFC 2131 §2, RFC 2132 options): parse and emit BOOTP messages with their
 * options over byte slices. Every length is checked; {@link parseDhcp} throws a
 * {@link MorganaError} with code `ERR_DHCP_MALFORMED` (and a `reason`) for anything it cannot
 * trust, so receivers can count and drop.
 * @module
 */
import { MorganaError } from '../errors.js';

/** UDP port of DHCP servers. */
export const DHCP_SERVER_PORT = 67;
/** UDP port of DHCP clients. */
export const DHCP_CLIENT_PORT = 68;

/** BOOTP op codes. */
export const BOOTP_OP = Object.freeze({ REQUEST: 1, REPLY: 2 });

/** DHCP message types (option 53). */
export const DHCP_MESSAGE = Object.freeze({
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
});

/** The option codes Morgana reads or writes (RFC 2132). */
export const DHCP_OPTION = Object.freeze({
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST_ADDRESS: 28,
  REQUESTED_ADDRESS: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  END: 255,
});

/** The broadcast bit of the `flags` field. */
export const DHCP_FLAG_BROADCAST = 0x8000;

/** Length of the fixed BOOTP part, magic cookie included. */
export const DHCP_FIXED_LENGTH = 240;
/** Emitted messages are padded to this size, the BOOTP minimum (RFC 1542 §2.1). */
export const DHCP_MIN_LENGTH = 300;
const MAGIC_COOKIE = 0x63825363;
const SNAME_OFFSET = 44;
const FILE_OFFSET = 108;
const OPTIONS_OFFSET = 240;

/** A decoded DHCP message. Addresses are 32-bit unsigned numbers. */
export interface DhcpMessage {
  /** 1 request (client to server), 2 reply. */
  op: number;
  /** Hardware type (1 Ethernet). */
  htype: number;
  /** Hardware address length (6 for Ethernet). */
  hlen: number;
  hops: number;
  /** Transaction id chosen by the client. */
  xid: number;
  /** Seconds since the client began acquiring or renewing. */
  secs: number;
  /** Flags; bit 15 ({@link DHCP_FLAG_BROADCAST}) asks for broadcast replies. */
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** Client hardware address, `hlen` bytes. */
  chaddr: Buffer;
  /** DHCP message type (option 53), one of {@link DHCP_MESSAGE}. */
  type: number;
  /**
   * Every option but pad, end, overload and message type, by code. Options that occur more
   * than once are concatenated (RFC 3396).
   */
  options: Map<number, Buffer>;
}

/** What {@link emitDhcp} takes: a message without the fields that have defaults. */
export interface DhcpMessageInit {
  op: number;
  type: number;
  xid: number;
  chaddr: Uint8Array;
  htype?: number;
  hops?: number;
  secs?: number;
  flags?: number;
  ciaddr?: number;
  yiaddr?: number;
  siaddr?: number;
  giaddr?: number;
  /** Options in the order to write them (message type is written first, end last). */
  options?: Iterable<readonly [number, Uint8Array]>;
}

function malformed(reason: string): MorganaError & { reason: string } {
  const error = new MorganaError('ERR_DHCP_MALFORMED', `malformed DHCP message: ${reason}`) as MorganaError & { reason: string };
  error.reason = reason;
  return error;
}

/** Fixed lengths (or length multiples) of the options whose format this module checks. */
const FIXED_LENGTH: Record<number, number> = {
  [DHCP_OPTION.SUBNET_MASK]: 4,
  [DHCP_OPTION.BROADCAST_ADDRESS]: 4,
  [DHCP_OPTION.REQUESTED_ADDRESS]: 4,
  [DHCP_OPTION.LEASE_TIME]: 4,
  [DHCP_OPTION.SERVER_ID]: 4,
  [DHCP_OPTION.MAX_MESSAGE_SIZE]: 2,
  [DHCP_OPTION.RENEWAL_TIME]: 4,
  [DHCP_OPTION.REBINDING_TIME]: 4,
};
const ADDRESS_LIST = new Set<number>([DHCP_OPTION.ROUTER, DHCP_OPTION.DNS]);

/** Reads options from `area` into `into`; returns the overload value if option 52 was seen. */
function readOptions(area: Buffer, into: Map<number, Buffer[]>, where: string): number {
  let overload = 0;
  let at = 0;
  while (at < area.length) {
    const code = area[at]!;
    if (code === DHCP_OPTION.PAD) {
      at++;
      continue;
    }
    if (code === DHCP_OPTION.END) return overload;
    if (at + 2 > area.length) throw malformed(`option ${code} in ${where} has no length`);
    const length = area[at + 1]!;
    if (at + 2 + length > area.length) throw malformed(`option ${code} in ${where} runs past the end`);
    const value = area.subarray(at + 2, at + 2 + length);
    if (code === DHCP_OPTION.OVERLOAD) {
      if (length !== 1 || value[0]! < 1 || value[0]! > 3) throw malformed('bad overload option');
      overload = value[0]!;
    } else {
      const list = into.get(code);
      if (list) list.push(value);
      else into.set(code, [value]);
    }
    at += 2 + length;
  }
  // The main options area must end with END; sname and file may simply run out.
  if (where === 'options') throw malformed('options have no end marker');
  return overload;
}

/**
 * Parses a DHCP message (the UDP payload). The returned buffers are views into `data`.
 * Throws `ERR_DHCP_MALFORMED` (with `reason`) when the message is truncated, is not BOOTP over
 * Ethernet-like hardware, lacks the magic cookie or a valid message type, has an option that runs
 * past its area, or a fixed-size option of the wrong length.
 */
export function parseDhcp(data: Uint8Array): DhcpMessage {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < DHCP_FIXED_LENGTH) throw malformed(`${b.length} bytes is shorter than the ${DHCP_FIXED_LENGTH}-byte header`);
  const op = b[0]!;
  if (op !== BOOTP_OP.REQUEST && op !== BOOTP_OP.REPLY) throw malformed(`op ${op}`);
  const hlen = b[2]!;
  if (hlen < 1 || hlen > 16) throw malformed(`hardware address length ${hlen}`);
  if (b.readUInt32BE(236) !== MAGIC_COOKIE) throw malformed('no magic cookie');
  const collected = new Map<number, Buffer[]>();
  const overload = readOptions(b.subarray(OPTIONS_OFFSET), collected, 'options');
  if (overload & 1) readOptions(b.subarray(FILE_OFFSET, OPTIONS_OFFSET - 4), collected, 'file');
  if (overload & 2) readOptions(b.subarray(SNAME_OFFSET, FILE_OFFSET), collected, 'sname');
  const options = new Map<number, Buffer>();
  for (const [code, parts] of collected) options.set(code, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  const typeOption = options.get(DHCP_OPTION.MESSAGE_TYPE);
  options.delete(DHCP_OPTION.MESSAGE_TYPE);
  if (!typeOption || typeOption.length !== 1) throw malformed('no message type');
  const type = typeOption[0]!;
  if (type < DHCP_MESSAGE.DISCOVER || type > DHCP_MESSAGE.INFORM) throw malformed(`message type ${type}`);
  for (const [code, value] of options) {
    const fixed = FIXED_LENGTH[code];
    if (fixed !== undefined && value.length !== fixed) throw malformed(`option ${code} has length ${value.length}, expected ${fixed}`);
    if (ADDRESS_LIST.has(code) && (value.length === 0 || value.length % 4 !== 0)) {
      throw malformed(`option ${code} has length ${value.length}, expected a multiple of 4`);
    }
    if (code === DHCP_OPTION.CLIENT_ID && value.length < 2) throw malformed('client identifier shorter than 2 bytes');
  }
  return {
    op,
    htype: b[1]!,
    hlen,
    hops: b[3]!,
    xid: b.readUInt32BE(4),
    secs: b.readUInt16BE(8),
    flags: b.readUInt16BE(10),
    ciaddr: b.readUInt32BE(12),
    yiaddr: b.readUInt32BE(16),
    siaddr: b.readUInt32BE(20),
    giaddr: b.readUInt32BE(24),
    chaddr: b.subarray(28, 28 + hlen),
    type,
    options,
  };
}

/**
 * Emits a DHCP message: the BOOTP header, the magic cookie, the message type, `options` in
 * order, the end marker, and padding to 300 bytes. Option values longer than 255 bytes are split
 * into several options (RFC 3396). Throws `ERR_OUT_OF_RANGE` for a hardware address longer than
 * 16 bytes or an option code of 0 or 255.
 */
export function emitDhcp(message: DhcpMessageInit): Buffer {
  const options: Array<readonly [number, Uint8Array]> = [[DHCP_OPTION.MESSAGE_TYPE, Uint8Array.of(message.type)], ...(message.options ?? [])];
  let length = OPTIONS_OFFSET + 1;
  for (const [code, value] of options) {
    if (!Number.isInteger(code) || code <= 0 || code >= 255) throw new MorganaError('ERR_OUT_OF_RANGE', `DHCP option code ${code}`);
    length += value.length === 0 ? 2 : value.length + 2 * Math.ceil(value.length / 255);
  }
  if (message.chaddr.length > 16) throw new MorganaError('ERR_OUT_OF_RANGE', 'DHCP hardware address longer than 16 bytes');
  const b = Buffer.alloc(Math.max(DHCP_MIN_LENGTH, length));
  b[0] = message.op;
  b[1] = message.htype ?? 1;
  b[2] = message.chaddr.length;
  b[3] = message.hops ?? 0;
  b.writeUInt32BE(message.xid >>> 0, 4);
  b.writeUInt16BE(message.secs ?? 0, 8);
  b.writeUInt16BE(message.flags ?? 0, 10);
  b.writeUInt32BE((message.ciaddr ?? 0) >>> 0, 12);
  b.writeUInt32BE((message.yiaddr ?? 0) >>> 0, 16);
  b.writeUInt32BE((message.siaddr ?? 0) >>> 0, 20);
  b.writeUInt32BE((message.giaddr ?? 0) >>> 0, 24);
  b.set(message.chaddr, 28);
  b.writeUInt32BE(MAGIC_COOKIE, 236);
  let at = OPTIONS_OFFSET;
  for (const [code, value] of options) {
    let from = 0;
    do {
      const part = value.subarray(from, from + 255);
      b[at] = code;
      b[at + 1] = part.length;
      b.set(part, at + 2);
      at += 2 + part.length;
      from += 255;
    } while (from < value.length);
  }
  b[at] = DHCP_OPTION.END;
  return b;
}

/** An option value of one IPv4 address. */
export function addressOption(address: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(address >>> 0);
  return b;
}

/** An option value of several IPv4 addresses. */
export function addressListOption(addresses: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * addresses.length);
  addresses.forEach((a, i) => b.writeUInt32BE(a >>> 0, 4 * i));
  return b;
}

/** An option value of one 32-bit number (times in seconds). */
export function uint32Option(value: number): Buffer {
  return addressOption(value);
}

/** Reads an address (or 32-bit number) option, if present. */
export function readUint32Option(message: DhcpMessage, code: number): number | undefined {
  const value = message.options.get(code);
  return value && value.length >= 4 ? value.readUInt32BE(0) : undefined;
}

/** Reads an address-list option (routers, DNS servers); empty when absent. */
export function readAddressListOption(message: DhcpMessage, code: number): number[] {
  const value = message.options.get(code);
  const out: number[] = [];
  if (value) for (let at = 0; at + 4 <= value.length; at += 4) out.push(value.readUInt32BE(at));
  return out;
}

/** The prefix length of a contiguous subnet mask, or -1 when the mask is not contiguous. */
export function prefixOfMask(mask: number): number {
  const inverted = ~mask >>> 0;
  if ((inverted & (inverted + 1)) !== 0) return -1;
  return Math.clz32(inverted);
}
