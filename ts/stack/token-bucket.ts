/**
 * A token bucket on the stack's clock, the rate limit of ICMP and ICMPv6 error messages
 * (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)): `rate` tokens a second, holding at most `rate`.
 * @module
 */
import type { Clock } from '../clock.js';

/** Refills continuously at `rate` per second up to `rate`; starts full. */
export class TokenBucket {
  readonly #clock: Clock;
  readonly #rate: number;
  #tokens: number;
  #tokensAt: number;

  constructor(clock: Clock, rate: number) {
    this.#clock = clock;
    this.#rate = rate;
    this.#tokens = rate;
    this.#tokensAt = clock.now();
  }

  /** Takes a token if one is there. */
  take(): boolean {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#tokensAt) * this.#rate) / 1000);
    this.#tokensAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
