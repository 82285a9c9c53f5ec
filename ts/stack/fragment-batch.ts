/**
 * How the IPv4 and IPv6 receive paths lay out a turn's fragments for the reassembler's
 * `pushBatch`: one byte array and (offset, length) spans into it.
 * @module
 */

/**
 * Fragments per reassembly batch: a turn's fragments go to the reassembler together, at most
 * this many at a time (a TAP read delivers up to 64 frames); this bounds the staging buffer.
 */
export const FRAGMENT_BATCH = 64;

/**
 * A staging buffer larger than this (64 fragments of more than 4 KiB: a link with a large MTU)
 * is released after its batch rather than kept.
 */
const STAGING_KEEP = 256 * 1024;

/** The spans of one batch and the staging buffer they may point into, reused batch after batch. */
export class FragmentBatchLayout {
  /** `[offset, length]` of each packet of the batch in the array {@link lay} returned. */
  readonly spans = new Uint32Array(2 * FRAGMENT_BATCH);
  /** Where fragments from different buffers are put back to back. */
  #staging = Buffer.allocUnsafeSlow(0);

  /**
   * Fills {@link spans} for the first `count` (at most {@link FRAGMENT_BATCH}) packets and
   * returns the bytes they index: the packets' own buffer when all are views of one (a TAP
   * read), passed where they lie; otherwise the staging buffer, with the packets copied into it.
   */
  lay(batch: ReadonlyArray<{ readonly packet: Buffer }>, count: number): Uint8Array {
    const spans = this.spans;
    const first = batch[0]!.packet;
    let shared = true;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const p = batch[i]!.packet;
      if (p.buffer !== first.buffer) shared = false;
      bytes += p.length;
    }
    if (shared) {
      for (let i = 0; i < count; i++) {
        spans[2 * i] = batch[i]!.packet.byteOffset;
        spans[2 * i + 1] = batch[i]!.packet.length;
      }
      return new Uint8Array(first.buffer);
    }
    if (this.#staging.length < bytes) this.#staging = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * this.#staging.length));
    let at = 0;
    for (let i = 0; i < count; i++) {
      const p = batch[i]!.packet;
      this.#staging.set(p, at);
      spans[2 * i] = at;
      spans[2 * i + 1] = p.length;
      at += p.length;
    }
    return this.#staging;
  }

  /** After a batch: a staging buffer grown past 256 KiB is let go. */
  release(): void {
    if (this.#staging.length > STAGING_KEEP) this.#staging = Buffer.allocUnsafeSlow(0);
  }
}
