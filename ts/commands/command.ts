/**
 * What every CLI command is: the {@link Command} shape and the shared exit codes. Commands import
 * these from here, never from cli.ts, so that cli.ts (which imports every command) has no back edge.
 * @module
 */

/** A CLI command: a one-line summary and a function from its arguments to an exit code. */
export interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

/** Exit code for bad usage (sysexits EX_USAGE, as MirageOS uses). */
export const EXIT_USAGE = 64;
