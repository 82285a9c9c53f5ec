/** Processes in tests: whether one runs, and killing what a test started even when it fails. */
import { readFileSync } from 'node:fs';

/** Whether `pid` runs (a zombie waiting for its parent or init to reap it does not count). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** SIGKILLs every pid of `pids` that still exists (for `test.after.always`). */
export function killAll(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}
