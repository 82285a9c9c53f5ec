/**
 * Progress lines of the CLI (what was configured, built, started where) and the global
 * `-q/--quiet` that silences them. Errors and a command's results are not progress: they are
 * written as before, whatever `-q` says.
 * @module
 */

let quiet = false;

/** Sets the global `-q/--quiet` (`morgana -q <command> …`). */
export function setQuiet(on: boolean): void {
  quiet = on;
}

/** Whether the global `-q/--quiet` was given. */
export function isQuiet(): boolean {
  return quiet;
}

/** Writes a progress line (on stderr unless told otherwise), unless `-q/--quiet` was given. */
export function progress(text: string, stream: NodeJS.WritableStream = process.stderr): void {
  if (!quiet) stream.write(text);
}
