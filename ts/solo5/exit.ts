/**
 * What a tender's exit means, and whether a restart-on-failure policy restarts it. The codes
 * follow Solo5 (`solo5_exit`, `SOLO5_EXIT_ABORT` 255, `errx(1)` for tender errors, hvt's exit 1 on
 * SIGTERM) and MirageOS (2 OCaml exception, 63 help/version, 64 argument error), as albatross
 * interprets them.
 * @module
 */

/** The kind of exit. */
export type ExitKind =
  | 'clean' // exit 0
  | 'stopped' // stopped on request (SIGTERM / SIGKILL we sent; hvt then exits 1)
  | 'tender-error' // exit 1: bad option, device, ELF, KVM failure, …
  | 'guest-abort' // exit 255: solo5_abort, failed assertion, trap on hvt
  | 'ocaml-exception' // exit 2: uncaught OCaml exception
  | 'mirage-help' // exit 63: --help / --version
  | 'mirage-argument-error' // exit 64 (and 60–62): argument parsing
  | 'guest-exit' // any other guest exit status
  | 'signal' // the tender was killed by a signal (spt traps: SIGSEGV, seccomp: SIGSYS)
  | 'spawn-error'; // the tender could not be started

/** How a run of a unikernel ended. */
export interface ExitInfo {
  kind: ExitKind;
  /** Exit status, or null when killed by a signal or never started. */
  code: number | null;
  /** The signal that killed the tender, or null. */
  signal: NodeJS.Signals | null;
  /** One line for humans. */
  description: string;
  /** Whether this exit counts as a failure (anything but a clean exit or a requested stop). */
  failed: boolean;
}

/** Classifies an exit. `stopRequested` tells a stop we asked for from a crash. */
export function classifyExit(code: number | null, signal: NodeJS.Signals | null, stopRequested = false, stderrTail = ''): ExitInfo {
  const make = (kind: ExitKind, description: string, failed = true): ExitInfo => ({ kind, code, signal, description, failed });
  if (stopRequested && (signal === 'SIGTERM' || signal === 'SIGKILL' || signal === 'SIGINT' || code === 1)) {
    return make('stopped', signal ? `stopped (${signal})` : 'stopped (tender exited 1 on SIGTERM)', false);
  }
  if (signal) {
    const hint = signal === 'SIGSEGV' ? ' (a guest trap under spt)' : signal === 'SIGSYS' ? ' (a seccomp violation under spt)' : '';
    return make('signal', `killed by ${signal}${hint}`);
  }
  switch (code) {
    case 0:
      return make('clean', 'clean exit', false);
    case 1: {
      const why = /solo5-[a-z]+: (.*)/.exec(stderrTail.trim().split('\n').pop() ?? '')?.[1];
      return make('tender-error', `tender error (exit 1)${why ? `: ${why}` : ''}`);
    }
    case 2:
      return make('ocaml-exception', 'guest failed with an uncaught exception (exit 2)');
    case 63:
      return make('mirage-help', 'guest printed help or version (exit 63)');
    case 60:
    case 61:
    case 62:
    case 64:
      return make('mirage-argument-error', `guest rejected its arguments (exit ${code})`);
    case 255:
      return make('guest-abort', 'guest aborted (exit 255: solo5_abort, assertion or trap)');
    default:
      return make('guest-exit', `guest exited with status ${code}`);
  }
}

/** Restart policy. */
export interface RestartPolicy {
  /** `no` (default) or `on-failure`. */
  mode: 'no' | 'on-failure';
  /** Most restarts before giving up (default 5). */
  maxRestarts?: number;
  /** First delay in ms (default 1000); doubled on each consecutive restart. */
  backoffMs?: number;
  /** Longest delay in ms (default 30000). */
  maxBackoffMs?: number;
  /** Restart only on these exit statuses (default: all failing ones). */
  exitCodes?: number[];
}

/**
 * Whether a failed exit is restarted: never after a requested stop, a signal, a tender error
 * (exit 1: the configuration will not get better) or a MirageOS help/argument error (60–64);
 * otherwise when the policy is `on-failure`, the limit is not reached, and the status is in
 * `exitCodes` (when given).
 */
export function shouldRestart(exit: ExitInfo, policy: RestartPolicy | undefined, restarts: number): boolean {
  if (!policy || policy.mode !== 'on-failure' || !exit.failed) return false;
  if (restarts >= (policy.maxRestarts ?? 5)) return false;
  if (exit.code === null || exit.kind === 'signal' || exit.kind === 'spawn-error') return false;
  if (exit.code === 1 || (exit.code >= 60 && exit.code <= 64)) return false;
  return policy.exitCodes === undefined || policy.exitCodes.includes(exit.code);
}

/** The delay before restart number `restarts + 1`. */
export function restartDelay(policy: RestartPolicy, restarts: number): number {
  const base = policy.backoffMs ?? 1000;
  return Math.min(policy.maxBackoffMs ?? 30_000, base * 2 ** restarts);
}
