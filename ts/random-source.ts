/**
 * The {@link Random} interface, apart from its implementations (`Fortuna` in fortuna.ts,
 * `BufferedRandom` and the defaults in random.ts) so that each can implement it without importing
 * the other. Import it from random.ts or the package root.
 * @module
 */

/**
 * A source of random bytes and numbers. The stack (TCP initial sequence numbers, IPv4
 * identification, ephemeral ports, ARP/DHCP transaction ids) takes one, so tests can inject
 * `seededRandom()` (random.ts).
 */
export interface Random {
  /** `n` random bytes in a new Buffer. */
  generate(n: number): Buffer;
  /** Fills `buffer` with random bytes and returns it. */
  fill<T extends Uint8Array>(buffer: T): T;
  /** A uniform 32-bit unsigned integer. */
  uint32(): number;
  /** A uniform integer in [0, below), `below` from 1 to 2^53. */
  int(below: number): number;
}

/** Anything that fills buffers with random bytes (a `Fortuna`, for instance). */
export interface RandomFiller {
  fill<T extends Uint8Array>(buffer: T): T;
}
