/**
 * The random device: the {@link Random} interface every layer takes as an injected dependency,
 * the process-wide {@link defaultRandom} (Fortuna seeded from entropy and fed periodically) and
 * {@link seededRandom} for reproducible tests and simulations.
 * @module
 */
import { InvalidArgumentError, assertBytes, assertInteger } from './errors.js';
import { Fortuna, uniformInt } from './fortuna.js';
import type { Random, RandomFiller } from './random-source.js';

export type { Random, RandomFiller } from './random-source.js';

/** Options of {@link BufferedRandom}. */
export interface BufferedRandomOptions {
  /** Bytes drawn from the source at a time (default 4096, at least 64). */
  chunkBytes?: number;
}

const DEFAULT_CHUNK = 4096;

/**
 * A {@link Random} that draws its source in chunks (one Fortuna request per chunk, so one napi
 * call per 1024 `uint32()` draws) and hands small requests out of the chunk; requests of a
 * quarter chunk or more go to the source directly. Bytes handed out are wiped from the chunk, so
 * the only output held is output not yet returned.
 */
export class BufferedRandom implements Random {
  readonly #source: RandomFiller;
  readonly #chunk: Buffer;
  readonly #direct: number;
  #pos: number;

  constructor(source: RandomFiller, options: BufferedRandomOptions = {}) {
    if (typeof source !== 'object' || source === null || typeof (source as Partial<RandomFiller>).fill !== 'function') {
      throw new InvalidArgumentError('source must be a random source: an object with a fill(buffer) method (such as a Fortuna)');
    }
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
    const { chunkBytes = DEFAULT_CHUNK } = options;
    assertInteger(chunkBytes, 'chunkBytes', 64, 1 << 20);
    this.#source = source;
    this.#chunk = Buffer.alloc(chunkBytes);
    this.#direct = chunkBytes >>> 2;
    this.#pos = chunkBytes;
  }

  #refill(): void {
    this.#source.fill(this.#chunk);
    this.#pos = 0;
  }

  /** `n` random bytes in a new Buffer. */
  generate(n: number): Buffer {
    assertInteger(n, 'n', 0, 0x7fff_ffff);
    const out = Buffer.allocUnsafe(n);
    if (n >= this.#direct) return this.#source.fill(out);
    this.#copyInto(out);
    return out;
  }

  /** Fills `buffer` with random bytes and returns it. */
  fill<T extends Uint8Array>(buffer: T): T {
    assertBytes(buffer, 'buffer');
    if (buffer.length >= this.#direct) return this.#source.fill(buffer);
    this.#copyInto(buffer);
    return buffer;
  }

  #copyInto(out: Uint8Array): void {
    const chunk = this.#chunk;
    let done = 0;
    while (done < out.length) {
      if (this.#pos === chunk.length) this.#refill();
      const take = Math.min(out.length - done, chunk.length - this.#pos);
      out.set(chunk.subarray(this.#pos, this.#pos + take), done);
      chunk.fill(0, this.#pos, this.#pos + take);
      this.#pos += take;
      done += take;
    }
  }

  /** A uniform 32-bit unsigned integer (little-endian from the next 4 bytes). */
  uint32(): number {
    if (this.#pos + 4 > this.#chunk.length) {
      // Drop the few bytes left rather than straddle two chunks.
      this.#chunk.fill(0, this.#pos);
      this.#refill();
    }
    const c = this.#chunk;
    const p = this.#pos;
    const value = (c[p]! | (c[p + 1]! << 8) | (c[p + 2]! << 16) | (c[p + 3]! << 24)) >>> 0;
    c[p] = 0;
    c[p + 1] = 0;
    c[p + 2] = 0;
    c[p + 3] = 0;
    this.#pos = p + 4;
    return value;
  }

  /** A uniform integer in [0, below), `below` from 1 to 2^53 (rejection sampling, no bias). */
  int(below: number): number {
    return uniformInt(this, below);
  }
}

let processDefault: { fortuna: Fortuna; random: BufferedRandom } | undefined;

/**
 * The process-wide random device: a book-mode {@link Fortuna} seeded from the operating system,
 * RDSEED/RDRAND and cycle-counter jitter on first use, fed every second from an unref'd timer
 * (it never keeps the process alive), behind a {@link BufferedRandom}.
 */
export function defaultRandom(): Random {
  return defaultInstance().random;
}

/** The {@link Fortuna} behind {@link defaultRandom} (to add events or stop its feeder). */
export function defaultFortuna(): Fortuna {
  return defaultInstance().fortuna;
}

function defaultInstance(): { fortuna: Fortuna; random: BufferedRandom } {
  if (processDefault === undefined) {
    const fortuna = Fortuna.create({ seed: 'entropy' });
    fortuna.startFeeding();
    processDefault = { fortuna, random: new BufferedRandom(fortuna) };
  }
  return processDefault;
}

/**
 * A reproducible {@link Random}: a book-mode Fortuna reseeded once with `seed` (bytes; a string
 * as UTF-8; a number as its decimal digits), never fed and never reseeded from pools, behind a
 * {@link BufferedRandom}. The same seed and the same sequence of calls give the same output on
 * every machine. Not for secrets unless the seed is one.
 */
export function seededRandom(seed: Uint8Array | string | number): Random {
  let bytes: Uint8Array;
  if (typeof seed === 'string') bytes = Buffer.from(seed, 'utf8');
  else if (typeof seed === 'number') {
    assertInteger(seed, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    bytes = Buffer.from(String(seed), 'utf8');
  } else {
    assertBytes(seed, 'seed');
    bytes = seed;
  }
  const fortuna = Fortuna.create({ mode: 'book', clock: { now: () => 0 }, seed: bytes });
  return new BufferedRandom(fortuna);
}
