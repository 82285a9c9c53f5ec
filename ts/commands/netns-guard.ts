/**
 * The network namespaces `morgana start --tap` creates (`morgana-start-<pid>`) must not outlive
 * it, even when it is killed with SIGKILL and runs no cleanup of its own:
 *
 * - {@link guardNetns}: a watchdog process holding a pipe to us deletes the namespace when the
 *   pipe breaks (the kernel closes our end however we die). It ignores the terminal's signals, so
 *   a Ctrl-C that kills us both still finds it there to clean up.
 * - {@link sweepStaleNetns}: the next `start --tap` deletes namespaces of start processes that no
 *   longer exist (left by a machine that lost the watchdog too, e.g. `kill -9` of the process group).
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

/** The name prefix of the namespaces of `morgana start --tap`; the pid of the start process follows. */
export const START_NETNS_PREFIX = 'morgana-start-';

/** A running watchdog; `disarm()` stops it once the namespace has been deleted the normal way. */
export interface NetnsGuard {
  disarm(): void;
}

/** Starts a watchdog that runs `ip netns del name` when this process dies. */
export function guardNetns(name: string): NetnsGuard {
  // `cat` returns at end of file, i.e. when our end of its stdin closes: at our death at the latest.
  const script = `trap '' INT TERM HUP QUIT USR1 USR2; cat >/dev/null; exec ip netns del "$1" 2>/dev/null`;
  const child: ChildProcess = spawn('sh', ['-c', script, 'morgana-netns-guard', name], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  child.on('error', () => {});
  child.stdin?.on('error', () => {});
  // Neither the process nor the pipe keeps us alive.
  child.unref();
  (child.stdin as unknown as { unref?(): void } | null)?.unref?.();
  return {
    disarm() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes the `morgana-start-<pid>` namespaces whose start process is gone; resolves to their
 * names. Namespaces of live processes (other `start --tap` runs) are left alone.
 */
export function sweepStaleNetns(): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (list.status !== 0) return [];
  const deleted: string[] = [];
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${START_NETNS_PREFIX}(\\d+)$`).exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    if (spawnSync('ip', ['netns', 'del', name]).status === 0) deleted.push(name);
  }
  return deleted;
}
