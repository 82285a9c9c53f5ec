/**
 * The fragments the IPv4 and IPv6 receive paths collect in one event-loop turn for the
 * reassembler's `pushBatch` (one crossing into Rust per turn, not one per fragment), and how
 * they are laid out for it: one byte array and (offset, length) spans into it.
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

/**
 * A turn's queued fragments (with whatever the layer keeps beside each), handed to `process`
 * at the end of the turn, when {@link FRAGMENT_BATCH} are queued, or when the layer flushes
 * them first to keep packets in order; plus the spans and the staging buffer they may point
 * into, reused batch after batch.
 */
export class FragmentBatch<T extends { readonly packet: Buffer }> {
  /** `[offset, length]` of each packet of the batch in the array {@link lay} returned. */
  readonly spans = new Uint32Array(2 * FRAGMENT_BATCH);
  /** Where fragments from different buffers are put back to back. */
  #staging = Buffer.allocUnsafeSlow(0);
  #items: T[] = [];
  #count = 0;
  readonly #process: (items: readonly T[], count: number) => void;

  /** `process` gets the first `count` of `items`: it lays them out, reassembles and delivers. */
  constructor(process: (items: readonly T[], count: number) => void) {
    this.#process = process;
  }

  /** Queues a fragment; the batch goes at the end of the turn, or now when it is full. */
  add(item: T): void {
    const i = this.#count++;
    this.#items[i] = item;
    if (this.#count === FRAGMENT_BATCH) this.flush();
    else if (i === 0) queueMicrotask(this.#flushTurn);
  }

  /** Hands the queued fragments to `process` now, if there are any. */
  flush(): void {
    const count = this.#count;
    if (count === 0) return;
    this.#count = 0;
    // `process` may receive (loop back) fragments while it delivers: they start a new batch.
    const items = this.#items;
    this.#items = [];
    this.#process(items, count);
  }

  readonly #flushTurn = (): void => this.flush();

  /** Forgets what is queued (the stack closes: queued fragments go with it, as the cache's do). */
  clear(): void {
    this.#items = [];
    this.#count = 0;
  }

  /**
   * Fills {@link spans} for the first `count` (at most {@link FRAGMENT_BATCH}) packets and
   * returns the bytes they index: the packets' own buffer when all are views of one (a TAP
   * read), passed where they lie; otherwise the staging buffer, with the packets copied into it.
   */
  lay(batch: readonly T[], count: number): Uint8Array {
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
