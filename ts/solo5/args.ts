/**
 * Guest command lines. A Solo5 tender joins the guest arguments with single spaces and no
 * escaping; the bindings strip leading `--solo5:<level>` tokens; MirageOS splits the rest with
 * parse-argv (backslash escapes the next character, `"` toggles quoting, whitespace separates).
 * So each argument is escaped here for parse-argv, which delivers it byte for byte.
 * @module
 */
import { MorganaError } from '../errors.js';

/** Solo5 log levels accepted as leading `--solo5:<level>` guest arguments. */
export type Solo5LogLevel = 'quiet' | 'error' | 'warn' | 'info' | 'debug';
/** All {@link Solo5LogLevel} values. */
export const SOLO5_LOG_LEVELS: readonly Solo5LogLevel[] = ['quiet', 'error', 'warn', 'info', 'debug'];

/** Largest guest command line the hvt and spt tenders accept (`HVT_CMDLINE_SIZE` - 1). */
export const GUEST_CMDLINE_MAX = 8191;

/**
 * Escapes one argument for parse-argv: backslash, double quote and ASCII whitespace (space, tab,
 * newline, vertical tab, form feed, carriage return; the older parser splits on all of them) get
 * a backslash. Throws `ERR_SOLO5_BAD_GUEST_ARG` for an empty argument (parse-argv drops empty
 * tokens, so it cannot arrive) or one containing NUL (the guest command line is a C string).
 */
export function escapeGuestArg(arg: string): string {
  if (typeof arg !== 'string') throw new MorganaError('ERR_SOLO5_BAD_GUEST_ARG', 'guest arguments must be strings');
  if (arg === '') throw new MorganaError('ERR_SOLO5_BAD_GUEST_ARG', 'an empty guest argument cannot be delivered (parse-argv drops empty tokens)');
  if (arg.includes('\0')) throw new MorganaError('ERR_SOLO5_BAD_GUEST_ARG', 'guest arguments cannot contain NUL');
  return arg.replace(/[\\"\t\n\v\f\r ]/g, (c) => `\\${c}`);
}

/**
 * Splits a command line the way MirageOS's parse-argv does (used by tests, and to show what a
 * guest will see): whitespace separates, backslash escapes the next character, `"` toggles
 * quoting, empty tokens are dropped. A trailing lone backslash is an error
 * (`ERR_SOLO5_BAD_GUEST_ARG`).
 */
export function parseGuestCmdline(cmdline: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < cmdline.length; i++) {
    const c = cmdline[i]!;
    if (c === '\\') {
      if (i + 1 >= cmdline.length) throw new MorganaError('ERR_SOLO5_BAD_GUEST_ARG', 'invalid escaping at end of string');
      current += cmdline[++i];
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && /[ \t\n\v\f\r]/.test(c)) {
      if (current !== '') out.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  if (current !== '') out.push(current);
  return out;
}

/**
 * The guest argument vector to hand to a tender: `--solo5:<logLevel>` first (when given), then
 * each argument escaped with {@link escapeGuestArg} (or verbatim with `raw`). Throws
 * `ERR_SOLO5_CMDLINE_TOO_LONG` when the command line the tender will assemble (arguments joined
 * by spaces) exceeds {@link GUEST_CMDLINE_MAX} bytes.
 */
export function guestArgv(args: readonly string[], options: { logLevel?: Solo5LogLevel; raw?: boolean } = {}): string[] {
  const out: string[] = [];
  if (options.logLevel !== undefined) {
    if (!SOLO5_LOG_LEVELS.includes(options.logLevel)) throw new MorganaError('ERR_SOLO5_BAD_OPTION', `unknown Solo5 log level '${options.logLevel}'`);
    out.push(`--solo5:${options.logLevel}`);
  }
  for (const a of args) out.push(options.raw ? a : escapeGuestArg(a));
  const length = out.reduce((n, a) => n + Buffer.byteLength(a), 0) + Math.max(0, out.length - 1);
  if (length > GUEST_CMDLINE_MAX) {
    throw new MorganaError('ERR_SOLO5_CMDLINE_TOO_LONG', `guest command line is ${length} bytes after escaping; the tender accepts at most ${GUEST_CMDLINE_MAX}`);
  }
  return out;
}
