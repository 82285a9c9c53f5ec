/**
 * Boot-argument splitting with MirageOS's parse-argv rules (mirage/parse-argv 0.3.0): the whole
 * command line is one string, split again into arguments.
 * @module
 */
import { MorganaError } from '../errors.js';

const enum State {
  Normal,
  Escaped,
  Quoted,
  QuotedEscaped,
}

/**
 * Splits a command line into arguments as MirageOS's parse-argv does:
 *
 * - only the ASCII space separates arguments (runs of spaces collapse; tabs and newlines are
 *   ordinary characters);
 * - a backslash makes the next character literal, inside or outside quotes;
 * - double quotes group (`a"b c"d` is the one argument `ab cd`); single quotes are not special;
 * - empty arguments vanish (`""` gives nothing);
 * - an unterminated quote or a trailing backslash throws `ERR_BAD_ARGV`.
 *
 * `parseArgv('--hello=foo\\ bar x')` → `['--hello=foo bar', 'x']`.
 */
export function parseArgv(commandLine: string): string[] {
  if (typeof commandLine !== 'string') throw new MorganaError('ERR_BAD_ARGV', 'the command line must be a string');
  const out: string[] = [];
  let current = '';
  let state = State.Normal;
  for (const c of commandLine) {
    switch (state) {
      case State.Normal:
        if (c === ' ') {
          if (current !== '') out.push(current);
          current = '';
        } else if (c === '\\') state = State.Escaped;
        else if (c === '"') state = State.Quoted;
        else current += c;
        break;
      case State.Escaped:
        current += c;
        state = State.Normal;
        break;
      case State.Quoted:
        if (c === '\\') state = State.QuotedEscaped;
        else if (c === '"') state = State.Normal;
        else current += c;
        break;
      case State.QuotedEscaped:
        current += c;
        state = State.Quoted;
        break;
    }
  }
  if (state !== State.Normal) {
    throw new MorganaError(
      'ERR_BAD_ARGV',
      `bad boot command line (${state === State.Escaped || state === State.QuotedEscaped ? 'trailing backslash' : 'unterminated double quote'}): ${JSON.stringify(commandLine)}`,
    );
  }
  if (current !== '') out.push(current);
  return out;
}

/**
 * Escapes one argument so that {@link parseArgv} gives it back byte for byte: a backslash before
 * every space, backslash and double quote. An empty argument cannot be carried and throws
 * `ERR_BAD_ARGV`.
 */
export function quoteArgv(argument: string): string {
  if (argument === '') throw new MorganaError('ERR_BAD_ARGV', 'an empty argument cannot be passed as a boot argument');
  return argument.replace(/[ \\"]/g, (c) => `\\${c}`);
}

/**
 * What a unikernel sees of its process arguments: joined with single spaces and split again by
 * {@link parseArgv}, as a Solo5 tender hands MirageOS its command line.
 */
export function bootArguments(args: readonly string[]): string[] {
  return parseArgv(args.join(' '));
}
