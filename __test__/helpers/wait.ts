/** Polling for a condition in tests (a liveness deadline, never a timing assertion). */

/** Resolves once `f` holds; rejects naming `what` after `timeoutMs` (default 15 s). */
export async function until(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
