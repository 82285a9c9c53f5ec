/**
 * A flow-controlled sender for message-rate benchmarks: keeps at most {@link WINDOW} messages in
 * flight, so a case measures the medium's rate rather than how fast its queues overflow.
 * @module
 */

/** Messages in flight. */
export const WINDOW = 64;

/**
 * Sends `n` messages with at most {@link WINDOW} in flight: `send()` starts one and the receiver
 * calls the returned `arrived()` for each. `done` resolves when all `n` arrived, and rejects
 * after `timeoutMs` when the medium lost some.
 */
export function windowed(n: number, send: () => void, timeoutMs = 30_000): { done: Promise<void>; arrived: () => void } {
  let sent = 0;
  let received = 0;
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  const timer = setTimeout(() => reject(new Error(`only ${received} of ${n} arrived`)), timeoutMs);
  const arrived = () => {
    received++;
    if (received === n) {
      clearTimeout(timer);
      resolve();
    } else if (sent < n) {
      sent++;
      send();
    }
  };
  queueMicrotask(() => {
    for (; sent < Math.min(n, WINDOW); ) {
      sent++;
      send();
    }
  });
  return { done, arrived };
}
