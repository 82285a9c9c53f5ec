/**
 * Buffers carved out of large slabs, for data paths that hand out many buffers of up to 64 KiB
 * (switch frames, a TCP turn's output). A fresh ArrayBuffer per 64 KiB frame made the garbage
 * collector the largest cost of a bulk transfer at MTU 65535; with slabs there is one
 * allocation per slab. The price, as with Node's own `Buffer` pool: whoever keeps one buffer
 * keeps its whole slab alive.
 *
 * Slabs can also be recycled: each view given away is {@link Slab.lend lent}, and when every
 * view lent from a used-up slab has been released the slab is reused rather than left to the
 * garbage collector. Reused memory is still in the CPU's caches and costs no page faults, and
 * fewer ArrayBuffer bytes mean fewer collections. A view never released only keeps its slab
 * from being reused.
 * @module
 */

/** One slab and the views lent from it that are not back yet. */
class SlabMemory {
  readonly buffer: Buffer;
  used = 0;
  lent = 0;
  /** Used up: back to the free list once nothing lent from it is out. */
  retired = false;
  /** Releases one lent view (one function per slab, not one per view). */
  readonly release: () => void;

  constructor(size: number, free: SlabMemory[], keep: number) {
    this.buffer = Buffer.allocUnsafeSlow(size);
    this.release = () => {
      if (this.lent <= 0) return; // a release with nothing out is a caller's bug: ignore it
      this.lent--;
      if (this.lent === 0 && this.retired && free.length < keep) free.push(this);
    };
  }
}

/** A slab allocator: {@link take} lends a view, {@link commit} consumes part of it. */
export class Slab {
  readonly size: number;
  #slab: SlabMemory | undefined;
  /** Used-up slabs with nothing lent out, ready for reuse. */
  readonly #free: SlabMemory[] = [];
  readonly #keep: number;

  /**
   * Slabs of `size` bytes (a larger request gets a slab of its own size). With `keep` > 0, up to
   * that many used-up slabs wait for reuse: a used-up slab with nothing {@link lend lent} out is
   * reused, so bytes committed but not lent must be free once the slab is used up. With `keep` 0 (the
   * default) nothing is reused and views need no lending.
   */
  constructor(size = 1 << 20, keep = 0) {
    this.size = size;
    this.#keep = keep;
  }

  /** A view of `size` bytes; only the part given to {@link commit} is consumed. */
  take(size: number): Buffer {
    let slab = this.#slab;
    if (slab === undefined || slab.used + size > slab.buffer.length) {
      if (slab) {
        slab.retired = true;
        if (slab.lent === 0 && this.#free.length < this.#keep) this.#free.push(slab);
      }
      slab = size <= this.size ? this.#free.pop() : undefined;
      if (slab) {
        slab.used = 0;
        slab.retired = false;
      } else {
        slab = new SlabMemory(Math.max(this.size, size), this.#free, this.#keep);
      }
      this.#slab = slab;
    }
    return slab.buffer.subarray(slab.used, slab.used + size);
  }

  /** Bytes left in the current slab (0 before the first {@link take}). */
  get left(): number {
    return this.#slab === undefined ? 0 : this.#slab.buffer.length - this.#slab.used;
  }

  /** Consumes the first `length` bytes of the last view (kept 8-byte aligned). */
  commit(length: number): void {
    const slab = this.#slab;
    if (slab) slab.used = Math.min(slab.used + ((length + 7) & ~7), slab.buffer.length);
  }

  /**
   * Counts one more view of the current slab as lent out and returns the function that gives it
   * back (call it exactly once, when nothing refers to the view's bytes any more). The slab is
   * reused only after every view lent from it came back.
   */
  lend(): () => void {
    const slab = this.#slab;
    if (!slab) return () => {};
    slab.lent++;
    return slab.release;
  }
}
