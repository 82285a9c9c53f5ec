/**
 * Whether a device's offload metadata vouches for a received packet's transport checksum, for
 * IPv4 and IPv6 alike: the receiver then need not sum the payload (64 KiB of it for a
 * super-frame).
 * @module
 */
import { DATA_VALID, ETHERNET_HEADER_LENGTH, type FrameOffload, NEEDS_CSUM } from '../net/device.js';

/** Offset of the checksum field in each transport header: TCP, UDP, ICMP, ICMPv6. */
const CHECKSUM_OFFSET: Readonly<Record<number, number>> = { 6: 16, 17: 6, 1: 2, 58: 2 };

/**
 * Whether the offload metadata of an unfragmented packet's frame covers the checksum of its
 * transport header, which starts `transportOffset` bytes into the packet (after the IPv4
 * options or IPv6 extension headers) and is of protocol `protocol`: a checksum left partial
 * (`NEEDS_CSUM`, by a local sender, the device completing it on the way out) counts only when
 * `csumStart` and `csumOffset` name exactly that header's checksum field; a device's
 * `DATA_VALID` (Linux `CHECKSUM_UNNECESSARY`) is about the transport checksum, wherever it
 * lies. A reassembled packet is never covered: its fragments' metadata is not about the whole.
 */
export function transportChecksumCovered(offload: FrameOffload | undefined, transportOffset: number, protocol: number): boolean {
  if (!offload) return false;
  if ((offload.flags & NEEDS_CSUM) !== 0) {
    return offload.csumStart === ETHERNET_HEADER_LENGTH + transportOffset && offload.csumOffset === CHECKSUM_OFFSET[protocol];
  }
  return (offload.flags & DATA_VALID) !== 0;
}
