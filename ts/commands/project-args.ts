/**
 * Shared argument handling of the unikernel commands (`configure`, `build`, `run`, `clean`,
 * `describe`, `query`): project options, and errors mapped to exit codes.
 * @module
 */
import { didYouMean } from '../did-you-mean.js';
import { MorganaError } from '../errors.js';
import { type ProjectPaths, projectPaths } from '../config/project.js';

/** Exit code for bad usage (as `EXIT_USAGE` in cli.ts; not imported, to keep cli.ts free of cycles). */
const EXIT_USAGE = 64;

/** Error codes a user fixes by changing the command line or config.ts: exit 64. */
const USAGE_CODES = new Set([
  'ERR_USAGE',
  'ERR_UNKNOWN_TARGET',
  'ERR_DEVICE_UNSUPPORTED',
  'ERR_CONFIG_MISSING',
  'ERR_CONFIG_INVALID',
  'ERR_CONFIG_INVALID_KEY',
  'ERR_CONFIG_INVALID_DEVICE',
  'ERR_CONFIG_INVALID_PACKAGE',
  'ERR_CONFIG_PACKAGE_CONFLICT',
  'ERR_CONFIG_DUPLICATE_KEY',
  'ERR_CONFIG_COMPILE',
  'ERR_CONFIG_LOAD',
  'ERR_INVALID_KEY_VALUE',
  'ERR_UNKNOWN_KEY',
  'ERR_MISSING_KEY_VALUE',
  'ERR_NOT_CONFIGURED',
  'ERR_BAD_ARGV',
]);

/** Options common to the unikernel commands. */
export const PROJECT_OPTIONS = `  -f, --file FILE       config file (default ./config.ts)
  -b, --build-dir DIR   build folder (default _build next to config.ts)`;

/** Parsed command line: known options, other `--options`, positional arguments, and what follows `--`. */
export interface ParsedArgs {
  values: Map<string, string[]>;
  flags: Set<string>;
  extra: string[];
  positional: string[];
  rest: string[];
}

/** Option table: long name → short alias and whether it takes a value. */
export type OptionTable = Record<string, { short?: string; value: boolean }>;

const COMMON: OptionTable = { file: { short: 'f', value: true }, 'build-dir': { short: 'b', value: true } };

function usage(message: string): MorganaError {
  return new MorganaError('ERR_USAGE', message);
}

/**
 * `unknown option X`, with the closest known option when X looks like a typo of one, or else
 * `bootHint` (e.g. that a unikernel's own keys go after `--`).
 */
export function unknownOption(arg: string, known: readonly string[], bootHint?: string): MorganaError {
  const name = arg.split('=')[0]!;
  const guess = name.startsWith('--') ? didYouMean(name, known) : undefined;
  if (guess) return usage(`unknown option ${arg}; did you mean ${guess}?`);
  return usage(`unknown option ${arg}${bootHint ? `; ${bootHint.replaceAll('ARG', arg)}` : ''}`);
}

/**
 * Parses `args` against `table` (plus `-f` and `-b`); unknown `--options` go to `extra` when
 * allowed. `bootHint` completes the message for other unknown options (`ARG` stands for the option).
 */
export function parseCommandArgs(args: readonly string[], table: OptionTable, allowExtra: boolean, bootHint?: string): ParsedArgs {
  const all = { ...COMMON, ...table };
  const out: ParsedArgs = { values: new Map(), flags: new Set(), extra: [], positional: [], rest: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.rest = args.slice(i + 1);
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = arg.slice(2, eq < 0 ? undefined : eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      if (!(name in all)) {
        if (!allowExtra) throw unknownOption(arg, Object.keys(all).map((n) => `--${n}`), bootHint);
        // A key's value may be the next argument: keep the pair together.
        out.extra.push(arg);
        if (eq < 0 && i + 1 < args.length && !args[i + 1]!.startsWith('-')) out.extra.push(args[++i]!);
        continue;
      }
    } else if (/^-[a-zA-Z]/.test(arg)) {
      const found = Object.entries(all).find(([, o]) => o.short === arg[1]);
      if (!found) throw unknownOption(arg, Object.keys(all).map((n) => `--${n}`), bootHint);
      name = found[0];
      if (arg.length > 2) inline = arg.slice(2);
    } else {
      out.positional.push(arg);
      continue;
    }
    const option = all[name]!;
    if (!option.value) {
      if (inline !== undefined) throw usage(`--${name} takes no value`);
      out.flags.add(name);
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw usage(`--${name} needs a value`);
    out.values.set(name, [...(out.values.get(name) ?? []), value]);
  }
  return out;
}

/** The last value of an option. */
export function optionValue(parsed: ParsedArgs, name: string): string | undefined {
  return parsed.values.get(name)?.at(-1);
}

/** The project's paths from `-f` / `-b`. */
export function pathsFrom(parsed: ParsedArgs): ProjectPaths {
  return projectPaths({ file: optionValue(parsed, 'file'), buildDir: optionValue(parsed, 'build-dir') });
}

/** Runs a command body, printing errors as `morgana NAME: message` with the right exit code. */
export async function guarded(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`morgana ${name}: ${message}\n`);
    return typeof code === 'string' && USAGE_CODES.has(code) ? EXIT_USAGE : 1;
  }
}
