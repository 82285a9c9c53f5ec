/**
 * The frame-level pieces of the user-mode gateway ({@link ./gateway.ts}): reading the IPv4,
 * TCP and UDP header fields it translates on, rewriting addresses and ports in place with
 * incremental checksum updates (RFC 1624), and building the few frames it sends itself (UDP
 * datagrams relayed from host sockets, ARP replies for the DNS address). No state, no I/O.
 * @module
 */

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
const ETH = 14;

/** TCP flag bits (byte 13 of the header). */
export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;

/** The fields of an unfragmented IPv4 TCP or UDP packet the gateway looks at. */
export interface L4View {
  protocol: number;
  src: number;
  dst: number;
  /** Offset of the TCP/UDP header in the frame. */
  l4: number;
  srcPort: number;
  dstPort: number;
  /** TCP flags (0 for UDP). */
  flags: number;
  /** Offset of the payload and its length (UDP: from the UDP length field). */
  payload: number;
  payloadLength: number;
}

/**
 * Reads an Ethernet II frame carrying IPv4 TCP or UDP; undefined for anything else, for
 * fragments and for truncated or inconsistent headers (those are left to the stack, which
 * counts and drops them).
 */
export function l4View(frame: Buffer): L4View | undefined {
  if (frame.length < ETH + 20 || frame.readUInt16BE(12) !== ETHERTYPE_IPV4) return undefined;
  const vihl = frame[ETH]!;
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20) return undefined;
  const total = frame.readUInt16BE(ETH + 2);
  if (total < ihl || ETH + total > frame.length) return undefined;
  if ((frame.readUInt16BE(ETH + 6) & 0x3fff) !== 0) return undefined; // MF or an offset: a fragment
  const protocol = frame[ETH + 9]!;
  const l4 = ETH + ihl;
  const end = ETH + total;
  if (protocol === PROTO_TCP) {
    if (end - l4 < 20) return undefined;
    const dataOffset = (frame[l4 + 12]! >> 4) * 4;
    if (dataOffset < 20 || l4 + dataOffset > end) return undefined;
    return {
      protocol,
      src: frame.readUInt32BE(ETH + 12),
      dst: frame.readUInt32BE(ETH + 16),
      l4,
      srcPort: frame.readUInt16BE(l4),
      dstPort: frame.readUInt16BE(l4 + 2),
      flags: frame[l4 + 13]!,
      payload: l4 + dataOffset,
      payloadLength: end - l4 - dataOffset,
    };
  }
  if (protocol === PROTO_UDP) {
    if (end - l4 < 8) return undefined;
    const length = frame.readUInt16BE(l4 + 4);
    if (length < 8 || l4 + length > end) return undefined;
    return {
      protocol,
      src: frame.readUInt32BE(ETH + 12),
      dst: frame.readUInt32BE(ETH + 16),
      l4,
      srcPort: frame.readUInt16BE(l4),
      dstPort: frame.readUInt16BE(l4 + 2),
      flags: 0,
      payload: l4 + 8,
      payloadLength: length - 8,
    };
  }
  return undefined;
}

/** RFC 1624 eqn. 3: the checksum after a 16-bit word of the covered data changed. */
function adjust(checksum: number, oldWord: number, newWord: number): number {
  let sum = (~checksum & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Offset of the transport checksum, or -1 when there is none to update (UDP checksum 0). */
function l4ChecksumOffset(frame: Buffer, v: L4View): number {
  if (v.protocol === PROTO_TCP) return v.l4 + 16;
  return frame.readUInt16BE(v.l4 + 6) === 0 ? -1 : v.l4 + 6;
}

/** Rewrites the source or destination address (IP header and transport pseudo-header checksums). */
export function rewriteAddress(frame: Buffer, v: L4View, which: 'src' | 'dst', address: number): void {
  const at = ETH + (which === 'src' ? 12 : 16);
  const old = frame.readUInt32BE(at);
  if (old === address >>> 0) return;
  const oldHi = old >>> 16;
  const oldLo = old & 0xffff;
  const newHi = address >>> 16;
  const newLo = address & 0xffff;
  frame.writeUInt32BE(address >>> 0, at);
  const ipSum = adjust(adjust(frame.readUInt16BE(ETH + 10), oldHi, newHi), oldLo, newLo);
  frame.writeUInt16BE(ipSum, ETH + 10);
  const c = l4ChecksumOffset(frame, v);
  if (c >= 0) {
    let sum = adjust(adjust(frame.readUInt16BE(c), oldHi, newHi), oldLo, newLo);
    if (v.protocol === PROTO_UDP && sum === 0) sum = 0xffff; // 0 means "no checksum" in UDP
    frame.writeUInt16BE(sum, c);
  }
  if (which === 'src') v.src = address >>> 0;
  else v.dst = address >>> 0;
}

/** Rewrites the source or destination port (transport checksum). */
export function rewritePort(frame: Buffer, v: L4View, which: 'src' | 'dst', port: number): void {
  const at = v.l4 + (which === 'src' ? 0 : 2);
  const old = frame.readUInt16BE(at);
  if (old === port) return;
  frame.writeUInt16BE(port, at);
  const c = l4ChecksumOffset(frame, v);
  if (c >= 0) {
    let sum = adjust(frame.readUInt16BE(c), old, port);
    if (v.protocol === PROTO_UDP && sum === 0) sum = 0xffff;
    frame.writeUInt16BE(sum, c);
  }
  if (which === 'src') v.srcPort = port;
  else v.dstPort = port;
}

function sum16(buf: Buffer, start: number, end: number, initial: number): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += buf.readUInt16BE(i);
  if ((end - start) & 1) sum += buf[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Length of the UDP frame {@link writeUdpFrame} writes for `payloadLength` bytes. */
export function udpFrameLength(payloadLength: number): number {
  return ETH + 20 + 8 + payloadLength;
}

/** Fields of a UDP datagram the gateway sends into the private link. */
export interface UdpFrameFields {
  dstMac: Buffer;
  srcMac: Buffer;
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  identification: number;
  payload: Uint8Array;
}

/** Writes an Ethernet + IPv4 + UDP frame with both checksums into `out`; returns its length. */
export function writeUdpFrame(out: Buffer, f: UdpFrameFields): number {
  const length = udpFrameLength(f.payload.length);
  f.dstMac.copy(out, 0, 0, 6);
  f.srcMac.copy(out, 6, 0, 6);
  out.writeUInt16BE(ETHERTYPE_IPV4, 12);
  const ip = ETH;
  out[ip] = 0x45;
  out[ip + 1] = 0;
  out.writeUInt16BE(20 + 8 + f.payload.length, ip + 2);
  out.writeUInt16BE(f.identification & 0xffff, ip + 4);
  out.writeUInt16BE(0, ip + 6);
  out[ip + 8] = 64;
  out[ip + 9] = PROTO_UDP;
  out.writeUInt16BE(0, ip + 10);
  out.writeUInt32BE(f.src >>> 0, ip + 12);
  out.writeUInt32BE(f.dst >>> 0, ip + 16);
  out.writeUInt16BE(~sum16(out, ip, ip + 20, 0) & 0xffff, ip + 10);
  const udp = ip + 20;
  out.writeUInt16BE(f.srcPort, udp);
  out.writeUInt16BE(f.dstPort, udp + 2);
  out.writeUInt16BE(8 + f.payload.length, udp + 4);
  out.writeUInt16BE(0, udp + 6);
  out.set(f.payload, udp + 8);
  // Pseudo-header: addresses, protocol, UDP length; then the datagram itself.
  let pseudo = (f.src >>> 16) + (f.src & 0xffff) + (f.dst >>> 16) + (f.dst & 0xffff) + PROTO_UDP + 8 + f.payload.length;
  while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
  let sum = ~sum16(out, udp, udp + 8 + f.payload.length, pseudo) & 0xffff;
  if (sum === 0) sum = 0xffff;
  out.writeUInt16BE(sum, udp + 6);
  return length;
}

/** The target address of an ARP request for IPv4 over Ethernet, or undefined. */
export function arpRequestTarget(frame: Buffer): number | undefined {
  if (frame.length < ETH + 28 || frame.readUInt16BE(12) !== ETHERTYPE_ARP) return undefined;
  if (frame.readUInt16BE(ETH) !== 1 || frame.readUInt16BE(ETH + 2) !== ETHERTYPE_IPV4 || frame[ETH + 4] !== 6 || frame[ETH + 5] !== 4) return undefined;
  if (frame.readUInt16BE(ETH + 6) !== 1) return undefined;
  return frame.readUInt32BE(ETH + 24);
}

/**
 * The IPv4 address a frame says it comes from: an ARP packet's sender address or an IPv4
 * header's source; undefined for anything else. The gateway learns the guest's MAC only from
 * frames sent from the guest's address: the kernel's bridge and TAP on the private link may
 * send frames of their own (IPv6 chatter, for one) from other MACs.
 */
export function senderIpv4(frame: Buffer): number | undefined {
  if (frame.length < ETH + 20) return undefined;
  const type = frame.readUInt16BE(12);
  if (type === ETHERTYPE_IPV4) return frame[ETH]! >> 4 === 4 ? frame.readUInt32BE(ETH + 12) : undefined;
  if (type === ETHERTYPE_ARP && frame.length >= ETH + 28 && frame.readUInt16BE(ETH + 2) === ETHERTYPE_IPV4) return frame.readUInt32BE(ETH + 14);
  return undefined;
}

/** Writes the ARP reply to `request` saying `address` is at `mac`; returns its length (42). */
export function writeArpReply(out: Buffer, request: Buffer, mac: Buffer, address: number): number {
  request.copy(out, 0, 6, 12); // to the asker
  mac.copy(out, 6, 0, 6);
  out.writeUInt16BE(ETHERTYPE_ARP, 12);
  out.writeUInt16BE(1, ETH);
  out.writeUInt16BE(ETHERTYPE_IPV4, ETH + 2);
  out[ETH + 4] = 6;
  out[ETH + 5] = 4;
  out.writeUInt16BE(2, ETH + 6);
  mac.copy(out, ETH + 8, 0, 6);
  out.writeUInt32BE(address >>> 0, ETH + 14);
  request.copy(out, ETH + 18, ETH + 8, ETH + 18); // the asker's MAC and address
  return ETH + 28;
}
