/**
 * How `morgana run` and `morgana start` keep a unikernel process tied to them:
 *
 * - every signal a unikernel handles (stop: SIGINT, SIGTERM, SIGHUP; summary: SIGUSR2; and
 *   SIGQUIT, SIGUSR1) is forwarded to it instead of killing the wrapper and orphaning the child;
 * - the child gets the read end of a pipe on fd 3 (its number in `MORGANA_PARENT_FD`): when the
 *   wrapper dies, even by SIGKILL, the kernel closes the write end, the child reads end-of-file
 *   and stops as if it had been sent SIGTERM (what prctl(PR_SET_PDEATHSIG) does, portably).
 * @module
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { constants } from 'node:os';

/** The signals forwarded to the child. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** The environment variable naming the child's end of the parent-watch pipe. */
export const PARENT_FD_ENV = 'MORGANA_PARENT_FD';

/** A supervised child: the process, its exit code (128 + n when a signal ended it), and a detach. */
export interface Supervised {
  child: ChildProcess;
  /** The exit code; a signal `n` that ended the child gives 128 + n, as shells report it. */
  exited: Promise<number>;
  /** Stops forwarding signals (called once the child has exited). */
  release(): void;
}

/** The shell's exit code for a process ended by `signal`. */
export function signalExitCode(signal: NodeJS.Signals | null): number {
  const n = signal ? constants.signals[signal] : undefined;
  return n ? 128 + n : 1;
}

/**
 * Spawns `command args`, forwarding {@link FORWARDED_SIGNALS} to it and handing it the
 * parent-watch pipe on fd 3. `stdio` gives fds 0–2 (default inherit; a number is a file descriptor of ours).
 */
export function superviseChild(
  command: string,
  args: readonly string[],
  options: { stdio?: Array<'inherit' | 'pipe' | 'ignore' | number>; env?: NodeJS.ProcessEnv } = {},
): Supervised {
  const stdio = [...(options.stdio ?? ['inherit', 'inherit', 'inherit']), 'pipe'] as SpawnOptions['stdio'];
  const child = spawn(command, args, { stdio, env: { ...(options.env ?? process.env), [PARENT_FD_ENV]: '3' } });
  // Our end of the pipe stays open for as long as we live, without keeping us alive.
  const watch = child.stdio[3] as (NodeJS.WritableStream & { unref?(): void; on(e: string, f: () => void): unknown }) | null;
  watch?.on('error', () => {});
  watch?.unref?.();
  const handlers = FORWARDED_SIGNALS.map((signal) => {
    const handler = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  const release = () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
  const exited = new Promise<number>((resolve) => {
    child.on('error', (error) => {
      process.stderr.write(`morgana: ${command}: ${error.message}\n`);
      release();
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      release();
      resolve(code ?? signalExitCode(signal));
    });
  });
  return { child, exited, release };
}
