/**
 * What keeps a process alive while it uses a stack, decided as Node's `net` does: a listening
 * TCP server and an open TCP connection keep the event loop alive until they close, unless
 * `unref()`ed (and `ref()` undoes that). The stack's own timers never do. Every holder shares
 * one ref'd interval that exists only while something holds it.
 * @module
 */

let holders = 0;
let interval: ReturnType<typeof setInterval> | undefined;

/** One thing that may keep the process alive; starts held. */
export class KeepAlive {
  #held = false;
  #refd = true;
  #done = false;

  constructor() {
    this.#update();
  }

  /** Keeps the process alive while not done (the default). */
  ref(): void {
    this.#refd = true;
    this.#update();
  }

  /** Lets the process exit even while not done. */
  unref(): void {
    this.#refd = false;
    this.#update();
  }

  /** Whether it currently keeps the process alive. */
  get holding(): boolean {
    return this.#held;
  }

  /** Done for good (the server or connection closed): never holds again. */
  release(): void {
    this.#done = true;
    this.#update();
  }

  #update(): void {
    const want = this.#refd && !this.#done;
    if (want === this.#held) return;
    this.#held = want;
    holders += want ? 1 : -1;
    if (holders > 0 && interval === undefined) interval = setInterval(() => {}, 1 << 30);
    if (holders === 0 && interval !== undefined) {
      clearInterval(interval);
      interval = undefined;
    }
  }
}
