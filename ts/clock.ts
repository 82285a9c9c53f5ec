/**
 * Clocks: Morgana's layers never read the system time or arm timers directly; they take a
 * {@link Clock}, so simulations and tests run on a {@link VirtualClock} deterministically.
 * @module
 */

/** A cancellable timer returned by {@link Clock.setTimer}. */
export interface Timer {
  /** Cancels the timer; harmless after it fired. */
  cancel(): void;
}

/** Monotonic time in milliseconds and one-shot timers. */
export interface Clock {
  /** Monotonic milliseconds (arbitrary origin, never goes backwards). */
  now(): number;
  /**
   * Runs `callback` after `delayMs`. Timers of the system clock do not keep the process alive
   * on their own (they are unref'd): only I/O does.
   */
  setTimer(delayMs: number, callback: () => void): Timer;
}

/** The process's monotonic clock (`performance.now()`) and Node timers, unref'd. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(delayMs, callback) {
    const handle = setTimeout(callback, Math.max(0, delayMs));
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};

interface PendingTimer {
  at: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to: {@link advance} runs every timer that falls due, in time
 * order, with `now()` set to each timer's due time while it runs.
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: PendingTimer[] = [];

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimer(delayMs: number, callback: () => void): Timer {
    const timer: PendingTimer = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, callback, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** Timers armed and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing due timers (including ones armed while advancing). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      let next: PendingTimer | undefined;
      for (const t of this.#timers) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (!next) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = target;
  }
}
