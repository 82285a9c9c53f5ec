/**
 * ICMPv6 wire formats: the messages of RFC 4443 (echo, destination unreachable, packet too big,
 * time exceeded, parameter problem), Neighbor Discovery (RFC 4861: router and neighbour
 * solicitations and advertisements, redirect) with their options (link-layer addresses, prefix
 * information, MTU, nonce of RFC 3971/7527, recursive DNS servers of RFC 8106), and the MLDv2
 * query and report of RFC 3810. Pure functions over byte arrays: every parser checks each length
 * before reading and throws {@link Icmpv6MalformedError}; emitters return fresh buffers with a
 * zero checksum that {@link setIcmpv6Checksum} fills once the source address is known.
 * @module
 */
import { checksum, pseudoHeaderSum6 } from '../checksum.js';
import { MorganaError } from '../errors.js';

/** ICMPv6 message types Morgana knows. */
export const ICMPV6 = Object.freeze({
  DESTINATION_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAMETER_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  MLD_QUERY: 130,
  MLD_REPORT_V1: 131,
  MLD_DONE: 132,
  ROUTER_SOLICITATION: 133,
  ROUTER_ADVERTISEMENT: 134,
  NEIGHBOR_SOLICITATION: 135,
  NEIGHBOR_ADVERTISEMENT: 136,
  REDIRECT: 137,
  MLD_REPORT_V2: 143,
});

/** Codes of destination unreachable (RFC 4443 §3.1). */
export const UNREACHABLE_CODE = Object.freeze({
  NO_ROUTE: 0,
  ADMINISTRATIVELY_PROHIBITED: 1,
  BEYOND_SCOPE: 2,
  ADDRESS_UNREACHABLE: 3,
  PORT_UNREACHABLE: 4,
});

/** Codes of parameter problem (RFC 4443 §3.4). */
export const PARAMETER_PROBLEM_CODE = Object.freeze({
  ERRONEOUS_HEADER_FIELD: 0,
  UNRECOGNIZED_NEXT_HEADER: 1,
  UNRECOGNIZED_OPTION: 2,
});

/** Neighbor Discovery option types. */
export const ND_OPTION = Object.freeze({
  SOURCE_LINK_LAYER: 1,
  TARGET_LINK_LAYER: 2,
  PREFIX_INFORMATION: 3,
  REDIRECTED_HEADER: 4,
  MTU: 5,
  NONCE: 14,
  RDNSS: 25,
});

/** MLDv2 multicast address record types (RFC 3810 §5.2.12). */
export const MLD_RECORD = Object.freeze({
  MODE_IS_INCLUDE: 1,
  MODE_IS_EXCLUDE: 2,
  CHANGE_TO_INCLUDE: 3,
  CHANGE_TO_EXCLUDE: 4,
  ALLOW_NEW_SOURCES: 5,
  BLOCK_OLD_SOURCES: 6,
});

/** The ICMPv6 next-header value. */
export const NEXT_HEADER_ICMPV6 = 58;
/** Size of the header common to error messages and echo (type, code, checksum, 4 more bytes). */
export const ICMPV6_HEADER = 8;
/** An error message never makes the packet carrying it exceed the minimum MTU (RFC 4443 §2.4 c). */
export const MAX_ERROR_MESSAGE = 1280 - 40;

/** A malformed ICMPv6 message (code `ERR_ICMPV6_MALFORMED`). */
export class Icmpv6MalformedError extends MorganaError {
  constructor(message: string) {
    super('ERR_ICMPV6_MALFORMED', message);
    this.name = 'Icmpv6MalformedError';
  }
}

function need(message: Uint8Array, length: number, what: string): void {
  if (message.length < length) throw new Icmpv6MalformedError(`${what}: ${message.length} bytes, at least ${length} needed`);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Checksum

/** Computes the checksum of `message` (checksum field zeroed first) for `src` → `dst` and stores it. */
export function setIcmpv6Checksum(message: Buffer, src: Uint8Array, dst: Uint8Array): Buffer {
  need(message, 4, 'ICMPv6 message');
  message.writeUInt16BE(0, 2);
  message.writeUInt16BE(checksum(message, pseudoHeaderSum6(src, dst, NEXT_HEADER_ICMPV6, message.length)), 2);
  return message;
}

/** Whether `message`, received from `src` for `dst`, carries a correct checksum. */
export function verifyIcmpv6Checksum(message: Uint8Array, src: Uint8Array, dst: Uint8Array): boolean {
  return checksum(message, pseudoHeaderSum6(src, dst, NEXT_HEADER_ICMPV6, message.length)) === 0;
}

// ---------------------------------------------------------------------------------------------
// Echo and errors (RFC 4443)

/** An echo request or reply. `data` is a view into the message. */
export interface Icmpv6Echo {
  type: number;
  identifier: number;
  sequence: number;
  data: Buffer;
}

/** Parses an echo request or reply (at least 8 bytes). */
export function parseEcho(message: Uint8Array): Icmpv6Echo {
  need(message, ICMPV6_HEADER, 'ICMPv6 echo');
  const m = view(message);
  return { type: m[0]!, identifier: m.readUInt16BE(4), sequence: m.readUInt16BE(6), data: m.subarray(ICMPV6_HEADER) };
}

/** Builds an echo request (128) or reply (129) carrying `data`; checksum left zero. */
export function emitEcho(type: number, identifier: number, sequence: number, data: Uint8Array): Buffer {
  const m = Buffer.allocUnsafe(ICMPV6_HEADER + data.length);
  m[0] = type;
  m[1] = 0;
  m.writeUInt16BE(0, 2);
  m.writeUInt16BE(identifier & 0xffff, 4);
  m.writeUInt16BE(sequence & 0xffff, 6);
  m.set(data, ICMPV6_HEADER);
  return m;
}

/** An error message: `parameter` is the MTU (packet too big), the pointer (parameter problem) or unused. */
export interface Icmpv6Error {
  type: number;
  code: number;
  parameter: number;
  /** As much of the invoking packet as the sender quoted (a view). */
  invoking: Buffer;
}

/** Parses any of the four error messages (types 1–4, at least 8 bytes). */
export function parseError(message: Uint8Array): Icmpv6Error {
  need(message, ICMPV6_HEADER, 'ICMPv6 error');
  const m = view(message);
  if (m[0]! < 1 || m[0]! > 127) throw new Icmpv6MalformedError(`type ${m[0]} is not an error message`);
  return { type: m[0]!, code: m[1]!, parameter: m.readUInt32BE(4), invoking: m.subarray(ICMPV6_HEADER) };
}

/**
 * Builds an error message quoting as much of `invoking` as fits in {@link MAX_ERROR_MESSAGE}
 * bytes (RFC 4443 §2.4 c); checksum left zero.
 */
export function emitError(type: number, code: number, parameter: number, invoking: Uint8Array): Buffer {
  const quoted = Math.min(invoking.length, MAX_ERROR_MESSAGE - ICMPV6_HEADER);
  const m = Buffer.allocUnsafe(ICMPV6_HEADER + quoted);
  m[0] = type;
  m[1] = code;
  m.writeUInt16BE(0, 2);
  m.writeUInt32BE(parameter >>> 0, 4);
  m.set(invoking.subarray(0, quoted), ICMPV6_HEADER);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Neighbor Discovery options (RFC 4861 §4.6)

/** A prefix information option (RFC 4861 §4.6.2). Lifetimes in seconds; 0xffffffff is infinity. */
export interface PrefixInformation {
  prefixLength: number;
  /** L: the prefix is on-link. */
  onLink: boolean;
  /** A: the prefix may be used for stateless autoconfiguration. */
  autonomous: boolean;
  validLifetime: number;
  preferredLifetime: number;
  /** 16 bytes; bits past `prefixLength` are as sent. */
  prefix: Buffer;
}

/** A recursive DNS server option (RFC 8106 §5.1). Lifetime in seconds; 0xffffffff is infinity. */
export interface RdnssOption {
  lifetime: number;
  servers: Buffer[];
}

/** The options of a Neighbor Discovery message. Repeated single options keep the first. */
export interface NdOptions {
  sourceLinkLayer?: Buffer;
  targetLinkLayer?: Buffer;
  prefixes: PrefixInformation[];
  mtu?: number;
  nonce?: Buffer;
  rdnss: RdnssOption[];
  /** The redirected header option's data (the quoted packet). */
  redirectedHeader?: Buffer;
  /** Options of types Morgana does not know (skipped, as RFC 4861 §4.6 requires). */
  unknown: number;
}

/**
 * Parses the options area of an ND message. Every option must have a non-zero length that fits
 * (RFC 4861 §7.1: otherwise the whole message is invalid); known options must have their size.
 */
export function parseNdOptions(area: Uint8Array): NdOptions {
  const a = view(area);
  const out: NdOptions = { prefixes: [], rdnss: [], unknown: 0 };
  let at = 0;
  while (at < a.length) {
    if (at + 2 > a.length) throw new Icmpv6MalformedError(`ND option at ${at} truncated`);
    const type = a[at]!;
    const length = a[at + 1]! * 8;
    if (length === 0) throw new Icmpv6MalformedError(`ND option at ${at} has length 0`);
    if (at + length > a.length) throw new Icmpv6MalformedError(`ND option at ${at} runs past the message`);
    const o = a.subarray(at, at + length);
    switch (type) {
      case ND_OPTION.SOURCE_LINK_LAYER:
      case ND_OPTION.TARGET_LINK_LAYER: {
        // Ethernet: exactly one unit (RFC 2464 §6).
        if (length !== 8) throw new Icmpv6MalformedError(`link-layer address option of ${length} bytes`);
        const key = type === ND_OPTION.SOURCE_LINK_LAYER ? 'sourceLinkLayer' : 'targetLinkLayer';
        out[key] ??= o.subarray(2, 8);
        break;
      }
      case ND_OPTION.PREFIX_INFORMATION: {
        if (length !== 32) throw new Icmpv6MalformedError(`prefix information option of ${length} bytes`);
        const prefixLength = o[2]!;
        if (prefixLength > 128) throw new Icmpv6MalformedError(`prefix length ${prefixLength}`);
        out.prefixes.push({
          prefixLength,
          onLink: (o[3]! & 0x80) !== 0,
          autonomous: (o[3]! & 0x40) !== 0,
          validLifetime: o.readUInt32BE(4),
          preferredLifetime: o.readUInt32BE(8),
          prefix: o.subarray(16, 32),
        });
        break;
      }
      case ND_OPTION.MTU:
        if (length !== 8) throw new Icmpv6MalformedError(`MTU option of ${length} bytes`);
        out.mtu ??= o.readUInt32BE(4);
        break;
      case ND_OPTION.NONCE:
        out.nonce ??= o.subarray(2);
        break;
      case ND_OPTION.RDNSS: {
        if (length < 24 || (length - 8) % 16 !== 0) throw new Icmpv6MalformedError(`RDNSS option of ${length} bytes`);
        const servers: Buffer[] = [];
        for (let s = 8; s < length; s += 16) servers.push(o.subarray(s, s + 16));
        out.rdnss.push({ lifetime: o.readUInt32BE(4), servers });
        break;
      }
      case ND_OPTION.REDIRECTED_HEADER:
        out.redirectedHeader ??= o.subarray(8);
        break;
      default:
        out.unknown++;
    }
    at += length;
  }
  return out;
}

/** A source (1) or target (2) link-layer address option for a 6-byte MAC. */
export function emitLinkLayerOption(type: number, mac: Uint8Array): Buffer {
  const o = Buffer.alloc(8);
  o[0] = type;
  o[1] = 1;
  o.set(mac.subarray(0, 6), 2);
  return o;
}

/** A prefix information option. */
export function emitPrefixOption(p: PrefixInformation): Buffer {
  const o = Buffer.alloc(32);
  o[0] = ND_OPTION.PREFIX_INFORMATION;
  o[1] = 4;
  o[2] = p.prefixLength;
  o[3] = (p.onLink ? 0x80 : 0) | (p.autonomous ? 0x40 : 0);
  o.writeUInt32BE(p.validLifetime >>> 0, 4);
  o.writeUInt32BE(p.preferredLifetime >>> 0, 8);
  // Bits past the prefix length are sent as zero (RFC 4861 §4.6.2 asks receivers to ignore them).
  const prefix = maskPrefix(p.prefix, p.prefixLength);
  prefix.copy(o, 16);
  return o;
}

/** An MTU option. */
export function emitMtuOption(mtu: number): Buffer {
  const o = Buffer.alloc(8);
  o[0] = ND_OPTION.MTU;
  o[1] = 1;
  o.writeUInt32BE(mtu >>> 0, 4);
  return o;
}

/** A nonce option (RFC 3971 §5.3.2) carrying 6 bytes. */
export function emitNonceOption(nonce: Uint8Array): Buffer {
  const o = Buffer.alloc(8);
  o[0] = ND_OPTION.NONCE;
  o[1] = 1;
  o.set(nonce.subarray(0, 6), 2);
  return o;
}

/** A recursive DNS server option. */
export function emitRdnssOption(lifetime: number, servers: readonly Uint8Array[]): Buffer {
  if (servers.length === 0) throw new MorganaError('ERR_INVALID_ARG', 'an RDNSS option needs at least one server');
  const o = Buffer.alloc(8 + 16 * servers.length);
  o[0] = ND_OPTION.RDNSS;
  o[1] = 1 + 2 * servers.length;
  o.writeUInt32BE(lifetime >>> 0, 4);
  servers.forEach((s, i) => o.set(s, 8 + 16 * i));
  return o;
}

/** `address` with the bits past `length` cleared (a new buffer). */
export function maskPrefix(address: Uint8Array, length: number): Buffer {
  const out = Buffer.from(address.subarray(0, 16));
  for (let bit = length; bit < 128; bit++) out[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Neighbor Discovery messages (RFC 4861 §4)

/** A router solicitation. */
export interface RouterSolicitation {
  options: NdOptions;
}

/** A router advertisement. Times as sent: router lifetime in s, reachable time and retrans timer in ms. */
export interface RouterAdvertisement {
  curHopLimit: number;
  managed: boolean;
  other: boolean;
  /** Default router preference (RFC 4191): 1 high, 0 medium, -1 low (2, reserved, reads as 0). */
  preference: number;
  routerLifetime: number;
  reachableTime: number;
  retransTimer: number;
  options: NdOptions;
}

/** A neighbour solicitation. */
export interface NeighborSolicitation {
  target: Buffer;
  options: NdOptions;
}

/** A neighbour advertisement. */
export interface NeighborAdvertisement {
  router: boolean;
  solicited: boolean;
  override: boolean;
  target: Buffer;
  options: NdOptions;
}

/** A redirect (parsed only: Morgana follows no redirects yet). */
export interface Redirect {
  target: Buffer;
  destination: Buffer;
  options: NdOptions;
}

/** Parses a router solicitation (at least 8 bytes). */
export function parseRouterSolicitation(message: Uint8Array): RouterSolicitation {
  need(message, 8, 'router solicitation');
  return { options: parseNdOptions(message.subarray(8)) };
}

/** Parses a router advertisement (at least 16 bytes). */
export function parseRouterAdvertisement(message: Uint8Array): RouterAdvertisement {
  need(message, 16, 'router advertisement');
  const m = view(message);
  const prf = (m[5]! >> 3) & 3;
  return {
    curHopLimit: m[4]!,
    managed: (m[5]! & 0x80) !== 0,
    other: (m[5]! & 0x40) !== 0,
    preference: prf === 1 ? 1 : prf === 3 ? -1 : 0,
    routerLifetime: m.readUInt16BE(6),
    reachableTime: m.readUInt32BE(8),
    retransTimer: m.readUInt32BE(12),
    options: parseNdOptions(m.subarray(16)),
  };
}

/** Parses a neighbour solicitation (at least 24 bytes). */
export function parseNeighborSolicitation(message: Uint8Array): NeighborSolicitation {
  need(message, 24, 'neighbour solicitation');
  const m = view(message);
  return { target: m.subarray(8, 24), options: parseNdOptions(m.subarray(24)) };
}

/** Parses a neighbour advertisement (at least 24 bytes). */
export function parseNeighborAdvertisement(message: Uint8Array): NeighborAdvertisement {
  need(message, 24, 'neighbour advertisement');
  const m = view(message);
  return {
    router: (m[4]! & 0x80) !== 0,
    solicited: (m[4]! & 0x40) !== 0,
    override: (m[4]! & 0x20) !== 0,
    target: m.subarray(8, 24),
    options: parseNdOptions(m.subarray(24)),
  };
}

/** Parses a redirect (at least 40 bytes). */
export function parseRedirect(message: Uint8Array): Redirect {
  need(message, 40, 'redirect');
  const m = view(message);
  return { target: m.subarray(8, 24), destination: m.subarray(24, 40), options: parseNdOptions(m.subarray(40)) };
}

function withOptions(head: Buffer, options: readonly Uint8Array[]): Buffer {
  return options.length === 0 ? head : Buffer.concat([head, ...options]);
}

/** Builds a router solicitation; checksum left zero. */
export function emitRouterSolicitation(options: readonly Uint8Array[] = []): Buffer {
  const m = Buffer.alloc(8);
  m[0] = ICMPV6.ROUTER_SOLICITATION;
  return withOptions(m, options);
}

/** Builds a router advertisement (its `options` field holds encoded options); checksum left zero. */
export function emitRouterAdvertisement(ra: Omit<RouterAdvertisement, 'options'>, options: readonly Uint8Array[] = []): Buffer {
  const m = Buffer.alloc(16);
  m[0] = ICMPV6.ROUTER_ADVERTISEMENT;
  m[4] = ra.curHopLimit;
  const prf = ra.preference > 0 ? 1 : ra.preference < 0 ? 3 : 0;
  m[5] = (ra.managed ? 0x80 : 0) | (ra.other ? 0x40 : 0) | (prf << 3);
  m.writeUInt16BE(ra.routerLifetime, 6);
  m.writeUInt32BE(ra.reachableTime >>> 0, 8);
  m.writeUInt32BE(ra.retransTimer >>> 0, 12);
  return withOptions(m, options);
}

/** Builds a neighbour solicitation for `target`; checksum left zero. */
export function emitNeighborSolicitation(target: Uint8Array, options: readonly Uint8Array[] = []): Buffer {
  const m = Buffer.alloc(24);
  m[0] = ICMPV6.NEIGHBOR_SOLICITATION;
  m.set(target.subarray(0, 16), 8);
  return withOptions(m, options);
}

/** Builds a neighbour advertisement for `target`; checksum left zero. */
export function emitNeighborAdvertisement(
  flags: { router: boolean; solicited: boolean; override: boolean },
  target: Uint8Array,
  options: readonly Uint8Array[] = [],
): Buffer {
  const m = Buffer.alloc(24);
  m[0] = ICMPV6.NEIGHBOR_ADVERTISEMENT;
  m[4] = (flags.router ? 0x80 : 0) | (flags.solicited ? 0x40 : 0) | (flags.override ? 0x20 : 0);
  m.set(target.subarray(0, 16), 8);
  return withOptions(m, options);
}

// ---------------------------------------------------------------------------------------------
// MLDv2 (RFC 3810)

/** A multicast listener query, version 1 (24 bytes) or 2 (28 bytes and more). */
export interface MldQuery {
  version: 1 | 2;
  /** Maximum response delay in milliseconds (decoded from the v2 exponential form). */
  maxResponseDelayMs: number;
  /** The group asked about; `::` for a general query. */
  group: Buffer;
  /** S flag: suppress router-side processing. */
  suppress: boolean;
  /** Querier's robustness variable (0 when unset or v1). */
  robustness: number;
  /** Querier's query interval in seconds (decoded QQIC; 0 for v1). */
  queryIntervalS: number;
  sources: Buffer[];
}

/** Decodes the floating-point form of RFC 3810 §5.1.3 (code ≥ 32768) or returns the value as is. */
function decodeFloat16(code: number, expShift: number, mantBits: number, threshold: number): number {
  if (code < threshold) return code;
  const exp = (code >> mantBits) & 7;
  const mant = code & ((1 << mantBits) - 1);
  return (mant | (1 << mantBits)) << (exp + expShift);
}

/** Parses a multicast listener query. */
export function parseMldQuery(message: Uint8Array): MldQuery {
  need(message, 24, 'MLD query');
  const m = view(message);
  const group = m.subarray(8, 24);
  if (m.length < 28) {
    return { version: 1, maxResponseDelayMs: m.readUInt16BE(4), group, suppress: false, robustness: 0, queryIntervalS: 0, sources: [] };
  }
  const count = m.readUInt16BE(26);
  need(m, 28 + 16 * count, 'MLDv2 query sources');
  const sources: Buffer[] = [];
  for (let i = 0; i < count; i++) sources.push(m.subarray(28 + 16 * i, 44 + 16 * i));
  return {
    version: 2,
    maxResponseDelayMs: decodeFloat16(m.readUInt16BE(4), 3, 12, 32768),
    group,
    suppress: (m[24]! & 0x08) !== 0,
    robustness: m[24]! & 0x07,
    queryIntervalS: decodeFloat16(m[25]!, 3, 4, 128),
    sources,
  };
}

/** One multicast address record of an MLDv2 report. */
export interface MldRecord {
  type: number;
  group: Buffer;
  sources: Buffer[];
}

/** Size of one record without sources or auxiliary data. */
export const MLD_RECORD_HEADER = 20;

/** Builds an MLDv2 report (type 143) with `records`; checksum left zero. */
export function emitMldv2Report(records: readonly MldRecord[]): Buffer {
  let size = 8;
  for (const r of records) size += MLD_RECORD_HEADER + 16 * r.sources.length;
  const m = Buffer.alloc(size);
  m[0] = ICMPV6.MLD_REPORT_V2;
  m.writeUInt16BE(records.length, 6);
  let at = 8;
  for (const r of records) {
    m[at] = r.type;
    m.writeUInt16BE(r.sources.length, at + 2);
    m.set(r.group.subarray(0, 16), at + 4);
    at += MLD_RECORD_HEADER;
    for (const s of r.sources) {
      m.set(s.subarray(0, 16), at);
      at += 16;
    }
  }
  return m;
}

/** Parses an MLDv2 report. */
export function parseMldv2Report(message: Uint8Array): MldRecord[] {
  need(message, 8, 'MLDv2 report');
  const m = view(message);
  const count = m.readUInt16BE(6);
  const records: MldRecord[] = [];
  let at = 8;
  for (let i = 0; i < count; i++) {
    need(m, at + MLD_RECORD_HEADER, 'MLDv2 record');
    const auxBytes = m[at + 1]! * 4;
    const n = m.readUInt16BE(at + 2);
    const end = at + MLD_RECORD_HEADER + 16 * n + auxBytes;
    need(m, end, 'MLDv2 record sources');
    const sources: Buffer[] = [];
    for (let s = 0; s < n; s++) sources.push(m.subarray(at + 20 + 16 * s, at + 36 + 16 * s));
    records.push({ type: m[at]!, group: m.subarray(at + 4, at + 20), sources });
    at = end;
  }
  return records;
}
