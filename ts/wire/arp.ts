/**
 * The ARP wire format for IPv4 over Ethernet (RFC 826): hardware type 1, protocol 0x0800,
 * 6-byte hardware and 4-byte protocol addresses, 28 bytes. Parsing reads fields straight from the
 * caller's bytes (MACs are views, not copies); the cache and its timers live in stack/arp.ts.
 * @module
 */

/** ARP operation codes. */
export const ARP_OP = Object.freeze({ REQUEST: 1, REPLY: 2 });

/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_PACKET_LENGTH = 28;

/** An Ethernet/IPv4 ARP packet; addresses are IPv4 numbers and 6-byte MACs. */
export interface ArpPacket {
  op: number;
  senderMac: Buffer;
  senderIp: number;
  targetMac: Buffer;
  targetIp: number;
}

/**
 * Parses an ARP packet (the Ethernet payload); `undefined` when it is shorter than 28 bytes or
 * not Ethernet/IPv4. The operation is returned as found: the caller decides what it accepts.
 */
export function parseArp(p: Buffer): ArpPacket | undefined {
  if (p.length < ARP_PACKET_LENGTH || p.readUInt16BE(0) !== 1 || p.readUInt16BE(2) !== 0x0800 || p[4] !== 6 || p[5] !== 4) {
    return undefined;
  }
  return {
    op: p.readUInt16BE(6),
    senderMac: p.subarray(8, 14),
    senderIp: p.readUInt32BE(14),
    targetMac: p.subarray(18, 24),
    targetIp: p.readUInt32BE(24),
  };
}

/** Writes `packet` at the start of `b` (at least 28 bytes); returns the length written. */
export function writeArp(b: Buffer, packet: ArpPacket): number {
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(packet.op, 6);
  b.set(packet.senderMac.subarray(0, 6), 8);
  b.writeUInt32BE(packet.senderIp >>> 0, 14);
  b.set(packet.targetMac.subarray(0, 6), 18);
  b.writeUInt32BE(packet.targetIp >>> 0, 24);
  return ARP_PACKET_LENGTH;
}
