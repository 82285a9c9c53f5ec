/**
 * Buffers carved out of large slabs, for data paths that hand out many buffers of up to 64 KiB
 * (switch frames, a TCP turn's output). A fresh ArrayBuffer per 64 KiB frame made the garbage
 * collector the largest cost of a bulk transfer at MTU 65535; with slabs there is one
 * allocation per slab. The price, as with Node's own `Buffer` pool: whoever keeps one buffer
 * keeps its whole slab alive.
 * @module
 */

/** A slab allocator: {@link take} lends a view, {@link commit} consumes part of it. */
export class Slab {
  readonly size: number;
  #slab: Buffer | undefined;
  #used = 0;

  /** Slabs of `size` bytes (a larger request gets a slab of its own size). */
  constructor(size = 1 << 20) {
    this.size = size;
  }

  /** A view of `size` bytes; only the part given to {@link commit} is consumed. */
  take(size: number): Buffer {
    if (this.#slab === undefined || this.#used + size > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(Math.max(this.size, size));
      this.#used = 0;
    }
    return this.#slab.subarray(this.#used, this.#used + size);
  }

  /** Bytes left in the current slab (0 before the first {@link take}). */
  get left(): number {
    return this.#slab === undefined ? 0 : this.#slab.length - this.#used;
  }

  /** Consumes the first `length` bytes of the last view (kept 8-byte aligned). */
  commit(length: number): void {
    this.#used = Math.min(this.#used + ((length + 7) & ~7), this.#slab?.length ?? 0);
  }
}
