/**
 * Software segmentation of TCP super-frames for devices, links and captures that take only real
 * frames: the cutting is done in Rust (`crates/morgana-net/src/gso.rs`: every piece gets its own
 * sequence number, lengths, IPv4 identification and checksums), one crossing per super-frame.
 * @module
 */
import { native } from '../native.js';
import { type FrameOffload, GSO_NONE, NEEDS_CSUM } from './device.js';

/** The most pieces one super-frame makes (64 KiB at the smallest MSS). */
const MAX_PIECES = 128;
const scratch = Buffer.allocUnsafe(MAX_PIECES * (14 + 60 + 60) + 65_536);
const lengths = new Uint32Array(MAX_PIECES);

/**
 * Whether a frame with `offload` differs from what a wire would carry: a super-frame, or a
 * checksum left partial (`NEEDS_CSUM`).
 */
export function differsFromWire(offload: FrameOffload | undefined): offload is FrameOffload {
  return offload !== undefined && (offload.gsoType !== GSO_NONE || (offload.flags & NEEDS_CSUM) !== 0);
}

/**
 * As {@link realFrames}, leaving `frame` as it is (a partial checksum is completed in a copy):
 * for observers (captures, mirrors) of a frame that goes on to its receiver unchanged.
 */
export function wireFrames(frame: Buffer, offload: FrameOffload | undefined): Buffer[] {
  if (!differsFromWire(offload)) return [frame];
  return realFrames(offload.gsoType === GSO_NONE ? Buffer.from(frame) : frame, offload);
}

/**
 * The real frames `frame` stands for: itself (its partial checksum completed in place) when it
 * is no super-frame, else its pieces, each in a buffer of its own. Empty for a frame that cannot be
 * cut (not Ethernet + IP + TCP): the caller counts it dropped.
 */
export function realFrames(frame: Buffer, offload: FrameOffload | undefined): Buffer[] {
  if (!offload) return [frame];
  if (offload.gsoType === GSO_NONE) {
    if ((offload.flags & NEEDS_CSUM) !== 0 && !native.gsoCompleteChecksum(frame, offload.csumStart, offload.csumOffset)) return [];
    return [frame];
  }
  const n = native.gsoSegmentFrame(frame, offload.gsoSize, scratch, lengths);
  if (n <= 0) return [];
  const pieces: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const len = lengths[i]!;
    pieces.push(Buffer.from(scratch.subarray(at, at + len)));
    at += len;
  }
  return pieces;
}
