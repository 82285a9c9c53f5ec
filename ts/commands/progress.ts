/**
 * Progress lines of the CLI (what was configured, built, started where), the global
 * `-q/--quiet` that silences them, and the global `-v/--verbose` that adds details: the
 * commands run, the files written, how long each step took. Errors and a command's results are
 * not progress: they are written as before, whatever `-q` or `-v` say.
 * @module
 */

/** Quotes `text` for a POSIX shell when it needs it. */
function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

let quiet = false;
let verbose = false;

/** Sets the global `-q/--quiet` (`morgana -q <command> …`). */
export function setQuiet(on: boolean): void {
  quiet = on;
}

/** Whether the global `-q/--quiet` was given. */
export function isQuiet(): boolean {
  return quiet;
}

/** Sets the global `-v/--verbose` (`morgana -v <command> …`). */
export function setVerbose(on: boolean): void {
  verbose = on;
}

/** Whether the global `-v/--verbose` was given. */
export function isVerbose(): boolean {
  return verbose;
}

/** Writes a progress line (on stderr unless told otherwise), unless `-q/--quiet` was given. */
export function progress(text: string, stream: NodeJS.WritableStream = process.stderr): void {
  if (!quiet) stream.write(text);
}

/** Writes a detail line on stderr, `morgana: <text>`, when `-v/--verbose` was given. */
export function detail(text: string): void {
  if (verbose) process.stderr.write(`morgana: ${text}\n`);
}

/** A detail line for a command about to run: `morgana: run: node /x/main.mjs --port=80`. */
export function detailCommand(what: string, argv: readonly string[], env?: Record<string, string | undefined>): void {
  if (!verbose) return;
  const vars = Object.entries(env ?? {})
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${shellQuote(v)} `)
    .join('');
  detail(`${what}: ${vars}${argv.map(shellQuote).join(' ')}`);
}

/** Milliseconds since `since` (a `performance.now()`), as `1234 ms` or `1.23 s`. */
export function elapsed(since: number): string {
  const ms = performance.now() - since;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
