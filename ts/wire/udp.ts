/**
 * The UDP wire format (RFC 768): the 8-byte header (source port, destination port, length,
 * checksum over the family's pseudo-header). Ports, bindings and delivery live in stack/udp.ts.
 * @module
 */
import { checksum, onesComplementSum } from '../checksum.js';

/** The IP protocol number of UDP. */
export const IP_PROTOCOL_UDP = 17;

/** Length of the UDP header. */
export const UDP_HEADER_LENGTH = 8;

/**
 * A UDP header for `data` with its checksum over `pseudo` (the family's pseudo-header sum, e.g.
 * from `pseudoHeaderSum`). A computed zero is sent as all ones: over IPv4 zero means "no
 * checksum" (RFC 768), over IPv6 it is never valid (RFC 8200 §8.1).
 */
export function udpHeader(srcPort: number, dstPort: number, data: Uint8Array, pseudo: number): Buffer {
  const header = Buffer.allocUnsafe(UDP_HEADER_LENGTH);
  header.writeUInt16BE(srcPort, 0);
  header.writeUInt16BE(dstPort, 2);
  header.writeUInt16BE(UDP_HEADER_LENGTH + data.length, 4);
  header.writeUInt16BE(0, 6);
  const sum = checksum(data, onesComplementSum(header, pseudo));
  header.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
  return header;
}

/**
 * The UDP datagram at the start of an IP payload, cut to its length field; undefined when the
 * header or the length it gives does not fit the payload.
 */
export function udpDatagram(payload: Buffer): Buffer | undefined {
  const length = payload.length < UDP_HEADER_LENGTH ? 0 : payload.readUInt16BE(4);
  if (length < UDP_HEADER_LENGTH || length > payload.length) return undefined;
  return payload.subarray(0, length);
}

/** The source port of a UDP header (at least 2 bytes, as quoted in an ICMP error). */
export const udpSourcePort = (header: Buffer): number => header.readUInt16BE(0);

/** The destination port of a UDP header (at least 4 bytes). */
export const udpDestinationPort = (header: Buffer): number => header.readUInt16BE(2);

/** The checksum field of a UDP header as sent; zero means "none" over IPv4 only. */
export const udpChecksumField = (header: Buffer): number => header.readUInt16BE(6);

/** Whether a whole datagram's checksum verifies over `pseudo` (its pseudo-header sum). */
export const udpChecksumValid = (datagram: Buffer, pseudo: number): boolean => checksum(datagram, pseudo) === 0;
