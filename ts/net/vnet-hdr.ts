/**
 * The `virtio_net_hdr` (its `_v1` layout, 12 bytes, little-endian) that a TAP device opened with
 * `vnetHdr: true` puts in front of every frame in both directions: the offload metadata Linux,
 * virtio-net and gVisor exchange with a NIC.
 *
 * - Received frames: `gsoType` other than {@link VIRTIO_NET_HDR_GSO_NONE} marks a coalesced
 *   (GRO'd) TCP frame of up to 64 KiB whose segments were `gsoSize` payload bytes each;
 *   {@link VIRTIO_NET_HDR_F_NEEDS_CSUM} says the transport checksum is not computed yet: the
 *   field at `csumStart + csumOffset` holds only the pseudo-header sum, and the Internet checksum
 *   over the bytes from `csumStart` to the end completes it. {@link VIRTIO_NET_HDR_F_DATA_VALID}
 *   says the checksum was already verified.
 * - Written frames: a TCP super-frame with `gsoType` TCPV4/TCPV6, `gsoSize` the MSS, `hdrLen`
 *   the Ethernet + IP + TCP header length and NEEDS_CSUM (checksum start and offset of the TCP
 *   checksum, which holds the pseudo-header sum) is cut into segments by the kernel.
 * @module
 */
import { OutOfRangeError } from '../errors.js';

/** Bytes of the header in front of each frame. */
export const VIRTIO_NET_HDR_LENGTH = 12;
/** `flags`: the checksum from `csumStart` on is left to the receiver (partial checksum). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** `flags`: the checksum was verified by the sender's side. */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** `gsoType`: an ordinary frame. */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** `gsoType`: a TCP/IPv4 super-frame. */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** `gsoType`: a TCP/IPv6 super-frame. */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** `gsoType` bit: the segments carry ECN (CWR on the first only). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** The fields of a `virtio_net_hdr`. */
export interface VirtioNetHdr {
  /** {@link VIRTIO_NET_HDR_F_NEEDS_CSUM} and/or {@link VIRTIO_NET_HDR_F_DATA_VALID}. */
  flags: number;
  /** `VIRTIO_NET_HDR_GSO_*`, possibly with {@link VIRTIO_NET_HDR_GSO_ECN}. */
  gsoType: number;
  /** Bytes of headers (Ethernet + IP + TCP) before the payload of a super-frame. */
  hdrLen: number;
  /** Payload bytes per segment of a super-frame (the MSS). */
  gsoSize: number;
  /** Offset in the frame where checksumming starts (the transport header). */
  csumStart: number;
  /** Offset of the checksum field from `csumStart` (16 for TCP, 6 for UDP). */
  csumOffset: number;
}

/** A header saying nothing: no offload, checksums complete. */
export const VIRTIO_NET_HDR_NO_OFFLOAD: Readonly<VirtioNetHdr> = Object.freeze({
  flags: 0,
  gsoType: VIRTIO_NET_HDR_GSO_NONE,
  hdrLen: 0,
  gsoSize: 0,
  csumStart: 0,
  csumOffset: 0,
});

/** Reads the header at `offset` of `buffer`; throws `ERR_OUT_OF_RANGE` when it does not fit. */
export function parseVirtioNetHdr(buffer: Uint8Array, offset = 0): VirtioNetHdr {
  if (offset < 0 || buffer.length - offset < VIRTIO_NET_HDR_LENGTH) {
    throw new OutOfRangeError(`a virtio_net_hdr needs ${VIRTIO_NET_HDR_LENGTH} bytes at offset ${offset}`);
  }
  const view = new DataView(buffer.buffer, buffer.byteOffset + offset, VIRTIO_NET_HDR_LENGTH);
  return {
    flags: view.getUint8(0),
    gsoType: view.getUint8(1),
    hdrLen: view.getUint16(2, true),
    gsoSize: view.getUint16(4, true),
    csumStart: view.getUint16(6, true),
    csumOffset: view.getUint16(8, true),
  };
}

/**
 * Writes `hdr` at `offset` of `buffer` (with `num_buffers` 0) and returns the header length.
 * Throws `ERR_OUT_OF_RANGE` when it does not fit or a field is out of its range.
 */
export function writeVirtioNetHdr(buffer: Uint8Array, hdr: VirtioNetHdr, offset = 0): number {
  if (offset < 0 || buffer.length - offset < VIRTIO_NET_HDR_LENGTH) {
    throw new OutOfRangeError(`a virtio_net_hdr needs ${VIRTIO_NET_HDR_LENGTH} bytes at offset ${offset}`);
  }
  const check = (value: number, name: string, max: number) => {
    if (!Number.isInteger(value) || value < 0 || value > max) throw new OutOfRangeError(`${name} must be an integer from 0 to ${max}, got ${value}`);
  };
  check(hdr.flags, 'flags', 0xff);
  check(hdr.gsoType, 'gsoType', 0xff);
  check(hdr.hdrLen, 'hdrLen', 0xffff);
  check(hdr.gsoSize, 'gsoSize', 0xffff);
  check(hdr.csumStart, 'csumStart', 0xffff);
  check(hdr.csumOffset, 'csumOffset', 0xffff);
  const view = new DataView(buffer.buffer, buffer.byteOffset + offset, VIRTIO_NET_HDR_LENGTH);
  view.setUint8(0, hdr.flags);
  view.setUint8(1, hdr.gsoType);
  view.setUint16(2, hdr.hdrLen, true);
  view.setUint16(4, hdr.gsoSize, true);
  view.setUint16(6, hdr.csumStart, true);
  view.setUint16(8, hdr.csumOffset, true);
  view.setUint16(10, 0, true);
  return VIRTIO_NET_HDR_LENGTH;
}
