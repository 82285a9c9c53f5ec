/**
 * The bookkeeping of `ping` shared by ICMP and ICMPv6: one identifier per layer, a 16-bit
 * sequence number per echo request, and the pending requests by sequence number, each with its
 * timeout (at most 65,536 pending, one per sequence number; a reused number cancels the old one).
 * @module
 */
import type { Clock, Timer } from '../clock.js';
import { MorganaError } from '../errors.js';

interface PendingPing<R> {
  resolve: (r: R) => void;
  reject: (e: Error) => void;
  sentAt: number;
  timer: Timer;
}

/** Pending echo requests of one ICMP layer; `R` is what a reply resolves with. */
export class PingTracker<R> {
  /** The echo identifier of this layer's requests (random, 16 bits). */
  readonly identifier: number;
  readonly #clock: Clock;
  readonly #pings = new Map<number, PendingPing<R>>();
  #sequence = 0;

  constructor(clock: Clock, randomUint32: () => number) {
    this.#clock = clock;
    this.identifier = randomUint32() & 0xffff;
  }

  /**
   * Starts a ping: `send(sequence, data)` sends the echo request carrying `size` bytes of a
   * counting pattern. The promise rejects with `ERR_PING_TIMEOUT` (naming `dst`) after
   * `timeoutMs`, or with whatever `send` throws.
   */
  start(dst: string, size: number, timeoutMs: number, send: (sequence: number, data: Buffer) => void): Promise<R> {
    return new Promise((resolve, reject) => {
      const sequence = (this.#sequence = (this.#sequence + 1) & 0xffff);
      const timer = this.#clock.setTimer(timeoutMs, () => {
        this.#pings.delete(sequence);
        reject(new MorganaError('ERR_PING_TIMEOUT', `no echo reply from ${dst} within ${timeoutMs} ms`));
      });
      this.#pings.get(sequence)?.timer.cancel();
      this.#pings.set(sequence, { resolve, reject, sentAt: this.#clock.now(), timer });
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i++) data[i] = i & 0xff;
      try {
        send(sequence, data);
      } catch (error) {
        timer.cancel();
        this.#pings.delete(sequence);
        reject(error);
      }
    });
  }

  /** Resolves the pending ping `sequence` with `result(rttMs)`; false when none is pending. */
  resolve(identifier: number, sequence: number, result: (rttMs: number) => R): boolean {
    const pending = this.#take(identifier, sequence);
    pending?.resolve(result(this.#clock.now() - pending.sentAt));
    return pending !== undefined;
  }

  /** Rejects the pending ping `sequence` with `error(rttMs)`; false when none is pending. */
  reject(identifier: number, sequence: number, error: (rttMs: number) => Error): boolean {
    const pending = this.#take(identifier, sequence);
    pending?.reject(error(this.#clock.now() - pending.sentAt));
    return pending !== undefined;
  }

  #take(identifier: number, sequence: number): PendingPing<R> | undefined {
    if (identifier !== this.identifier) return undefined;
    const pending = this.#pings.get(sequence);
    if (!pending) return undefined;
    this.#pings.delete(sequence);
    pending.timer.cancel();
    return pending;
  }
}
