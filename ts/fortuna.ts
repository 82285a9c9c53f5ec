/**
 * Fortuna in Rust (Ferguson, Schneier and Kohno, *Cryptography Engineering* ch. 9, or
 * mirage-crypto-rng's variant), its entropy sources and the periodic task that feeds it.
 * @module
 */
import { MorganaError, assertBytes, assertInteger, nativeFailure } from './errors.js';
import { native } from './native.js';
import type { Random } from './random-source.js';

/**
 * Which Fortuna to run:
 * - `'book'` (default): *Cryptography Engineering* ch. 9: SHA_d-256 with the 64 zero bytes
 *   prefix, little-endian counter, 2^20-byte requests, reseed when pool 0 holds ≥ 64 bytes
 *   (headers included) and ≥ 100 ms have passed, events of 1 to 32 bytes.
 * - `'mirage'`: output-compatible with mirage-crypto-rng's `Fortuna`: SHA-256(SHA-256(m)),
 *   big-endian counter, 64 KiB chunks, reseed when pool 0 holds more than 64 data bytes and more
 *   than 1 s has passed, events of any length.
 */
export type FortunaMode = 'book' | 'mirage';

/** A monotonic clock in milliseconds (a Morgana `Clock` or a `VirtualClock` fits). */
export interface MonotonicClock {
  now(): number;
}

/** Options of {@link Fortuna.create}. */
export interface FortunaOptions {
  /** Which Fortuna (default `'book'`). */
  mode?: FortunaMode;
  /**
   * The clock deciding when the pools may reseed the generator (default `performance.now()`).
   * The time of "the last reseed" starts at 0 on this clock.
   */
  clock?: MonotonicClock;
  /**
   * Seed it at once: bytes for one direct {@link Fortuna.reseed}, or `'entropy'` for
   * {@link Fortuna.seedFromEntropy}. Without it the generator starts unseeded and refuses output.
   */
  seed?: Uint8Array | 'entropy';
}

/** Options of {@link Fortuna.startFeeding}. */
export interface EntropyFeederOptions {
  /** Milliseconds between feeding rounds (default 1000, as MirageOS). */
  intervalMs?: number;
}

/** What the machine's entropy sources can do, from {@link entropySources}. */
export interface EntropySources {
  /** getrandom(2) produced bytes. */
  os: boolean;
  /** RDRAND is listed by cpuid and its self-test drew a value that was not all ones. */
  rdrand: boolean;
  /** RDSEED likewise. */
  rdseed: boolean;
  /** What the cycle counter reads: `'rdtsc'`, `'cntvct_el0'` or `'monotonic-clock'`. */
  cycleCounter: string;
  /** RDRAND samples drawn in this process so far. */
  rdrandCalls: number;
  /** RDRAND samples that failed after 10 tries (or were all ones). */
  rdrandFailures: number;
  /** RDSEED samples drawn in this process so far. */
  rdseedCalls: number;
  /** RDSEED samples that failed after 100 tries (or were all ones). */
  rdseedFailures: number;
}

/** Probes the entropy sources (getrandom, RDRAND/RDSEED, cycle counter) and their counters. */
export function entropySources(): EntropySources {
  return native.entropyStatus();
}

/** Pools of a Fortuna accumulator. */
export const POOLS = 32;
/** Longest random event data in book mode. */
export const MAX_EVENT_BYTES = 32;

const MAX_REQUEST = 0x7fff_ffff;
const UNSEEDED_MESSAGE =
  'the generator has not been seeded: pass a seed to Fortuna.create, call reseed() or seedFromEntropy(), or use defaultRandom()';

function raise(result: number): never {
  const error = nativeFailure(result);
  if (error.code === 'ERR_RNG_UNSEEDED') throw new MorganaError(error.code, UNSEEDED_MESSAGE);
  throw error;
}

const systemNow = () => performance.now();

/**
 * The Fortuna generator and accumulator, in Rust. Every {@link generate} / {@link fill} call is
 * one Fortuna request: the pools reseed the generator first when due, the output is the AES-256
 * encryption of successive counter blocks, and the generator then rekeys with two more blocks,
 * so output already returned cannot be reconstructed from the state. Requests over the mode's
 * limit are served in rekeyed chunks. Output before the first seeding throws `ERR_RNG_UNSEEDED`.
 *
 * For many small draws, wrap it in a `BufferedRandom` (what {@link defaultRandom} returns).
 */
export class Fortuna implements Random {
  /** Which Fortuna this is. */
  readonly mode: FortunaMode;
  readonly #native: InstanceType<typeof native.NativeFortuna>;
  readonly #now: () => number;
  readonly #word = Buffer.alloc(4);
  #feeder: EntropyFeeder | undefined;

  /** Prefer {@link Fortuna.create}. */
  constructor(options: FortunaOptions = {}) {
    const { mode = 'book', clock, seed } = options;
    if (mode !== 'book' && mode !== 'mirage') {
      throw new MorganaError('ERR_INVALID_ARG_VALUE', `mode must be 'book' or 'mirage', got ${String(mode)}`);
    }
    this.mode = mode;
    this.#native = new native.NativeFortuna(mode === 'mirage');
    this.#now = clock ? () => clock.now() : systemNow;
    if (seed === 'entropy') this.seedFromEntropy();
    else if (seed !== undefined) this.reseed(seed);
  }

  /** A Fortuna (default: book mode, unseeded, on the system's monotonic clock). */
  static create(options: FortunaOptions = {}): Fortuna {
    return new Fortuna(options);
  }

  /** Whether the generator has been seeded (directly or from the pools). */
  get seeded(): boolean {
    return this.#native.seeded;
  }

  /** How many times the pools have reseeded the generator (the reseed counter `r`). */
  get reseedCount(): number {
    return this.#native.reseedCount;
  }

  /** The size of pool `index`: bytes appended (book mode) or data bytes (mirage mode). */
  poolSize(index: number): number {
    assertInteger(index, 'index', 0, POOLS - 1);
    return this.#native.poolSize(index);
  }

  /** Reseeds the generator directly, `K = SHA_d(K ‖ seed)`, `C = C + 1` (the pools are untouched). */
  reseed(seed: Uint8Array): void {
    assertBytes(seed, 'seed');
    this.#native.reseed(seed);
  }

  /**
   * Seeds from the operating system (getrandom), RDSEED/RDRAND when the CPU has them and
   * cycle-counter jitter, in one direct reseed. Throws `ERR_RNG_NO_ENTROPY` when neither the
   * operating system nor the CPU produced anything (jitter alone is not trusted).
   */
  seedFromEntropy(): void {
    const result = this.#native.seedFromEntropy();
    if (result < 0) raise(result);
  }

  /**
   * Adds a random event to a pool: `source` 0–255, `pool` 0–31, and in book mode 1 to 32 bytes
   * of `data` (any length in mirage mode). Throws `ERR_RNG_BAD_EVENT` otherwise. Sources should
   * spread their events over the pools round-robin.
   */
  addRandomEvent(source: number, pool: number, data: Uint8Array): void {
    if (!Number.isInteger(source) || source < 0 || source > 255) {
      throw new MorganaError('ERR_RNG_BAD_EVENT', `random event source must be an integer from 0 to 255, got ${source}`);
    }
    if (!Number.isInteger(pool) || pool < 0 || pool >= POOLS) {
      throw new MorganaError('ERR_RNG_BAD_EVENT', `random event pool must be an integer from 0 to 31, got ${pool}`);
    }
    assertBytes(data, 'data');
    if (this.mode === 'book' && (data.length < 1 || data.length > MAX_EVENT_BYTES)) {
      throw new MorganaError('ERR_RNG_BAD_EVENT', `random event data must be 1 to 32 bytes, got ${data.length}`);
    }
    const result = this.#native.addRandomEvent(source, pool, data);
    if (result < 0) raise(result);
  }

  /** `n` random bytes, as one Fortuna request. */
  generate(n: number): Buffer {
    assertInteger(n, 'n', 0, MAX_REQUEST);
    const out = Buffer.allocUnsafe(n);
    const result = this.#native.fill(out, this.#now());
    if (result < 0) raise(result);
    return out;
  }

  /** Fills `buffer` with random bytes, as one Fortuna request, and returns it. */
  fill<T extends Uint8Array>(buffer: T): T {
    assertBytes(buffer, 'buffer');
    const result = this.#native.fill(buffer, this.#now());
    if (result < 0) raise(result);
    return buffer;
  }

  /** A uniform 32-bit unsigned integer (one 4-byte request; no allocation). */
  uint32(): number {
    const word = this.#word;
    const result = this.#native.fill(word, this.#now());
    if (result < 0) raise(result);
    const value = word.readUInt32LE(0);
    word.writeUInt32LE(0, 0);
    return value;
  }

  /** A uniform integer in [0, below), `below` from 1 to 2^53 (rejection sampling, no bias). */
  int(below: number): number {
    return uniformInt(this, below);
  }

  /**
   * One feeding round: a CPU RNG sample (RDRAND, else RDSEED) for each of the 32 pools and a
   * cycle-counter reading for the next pool in turn. Returns the number of events added.
   */
  feedEntropy(): number {
    return this.#native.feedEntropy();
  }

  /**
   * Starts feeding the pools every `intervalMs` (default 1 s) from an unref'd timer, so it never
   * keeps the process alive. Returns the running feeder (the same one if already started); call
   * its `stop()` to end it.
   */
  startFeeding(options: EntropyFeederOptions = {}): EntropyFeeder {
    if (this.#feeder?.running) return this.#feeder;
    this.#feeder = new EntropyFeeder(this, options);
    this.#feeder.start();
    return this.#feeder;
  }
}

/** A uniform integer in [0, below) from `random.uint32()`, by rejection sampling. */
export function uniformInt(random: { uint32(): number }, below: number): number {
  assertInteger(below, 'below', 1, 2 ** 53);
  if (below <= 0x1_0000_0000) {
    // Reject the top (2^32 mod below) values so every residue is equally likely.
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % below);
    for (;;) {
      const x = random.uint32();
      if (x < limit) return x % below;
    }
  }
  // 53 bits: 21 from one draw and 32 from another.
  const limit = 2 ** 53 - (2 ** 53 % below);
  for (;;) {
    const x = (random.uint32() & 0x1f_ffff) * 0x1_0000_0000 + random.uint32();
    if (x < limit) return x % below;
  }
}

/**
 * The periodic entropy task of a {@link Fortuna}: every `intervalMs` it runs
 * {@link Fortuna.feedEntropy}. Its timer is unref'd; `stop()` clears it.
 */
export class EntropyFeeder {
  /** Milliseconds between rounds. */
  readonly intervalMs: number;
  readonly #fortuna: Fortuna;
  #timer: NodeJS.Timeout | undefined;
  #rounds = 0;
  #events = 0;

  constructor(fortuna: Fortuna, options: EntropyFeederOptions = {}) {
    const { intervalMs = 1000 } = options;
    assertInteger(intervalMs, 'intervalMs', 1, 2 ** 31 - 1);
    this.#fortuna = fortuna;
    this.intervalMs = intervalMs;
  }

  /** Whether the timer is armed. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Rounds run so far. */
  get rounds(): number {
    return this.#rounds;
  }

  /** Events added to the pools so far. */
  get events(): number {
    return this.#events;
  }

  /** Arms the timer (no-op when running). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.feedOnce(), this.intervalMs);
    this.#timer.unref();
  }

  /** Runs one round now; returns the events added. */
  feedOnce(): number {
    const added = this.#fortuna.feedEntropy();
    this.#rounds++;
    this.#events += added;
    return added;
  }

  /** Clears the timer; no round runs after this returns. Harmless when stopped. */
  stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
