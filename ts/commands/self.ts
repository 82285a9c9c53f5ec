/**
 * How the user can run this `morgana` again, for hints that stay true ("next: morgana build"):
 * `morgana` when that name on PATH is this CLI, `npx morgana` under npm exec, else
 * `node <path to cli.js>`.
 * @module
 */
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParsedArgs, optionValue } from './project-args.js';

const cliPath = fileURLToPath(new URL('../cli.js', import.meta.url));

/** Quotes `text` for a POSIX shell when it needs it. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/** Whether `morgana` on PATH is this very CLI. */
function onPath(): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'morgana');
    try {
      if (existsSync(candidate) && realpathSync(candidate) === realpathSync(cliPath)) return true;
    } catch {
      // unreadable: next
    }
  }
  return false;
}

let cached: string | undefined;

/** The command that runs this CLI from the user's shell, e.g. `morgana` or `node ../dist/cli.js`. */
export function selfCommand(): string {
  if (cached !== undefined) return cached;
  if (process.env.npm_command === 'exec') cached = 'npx morgana';
  else if (onPath()) cached = 'morgana';
  else {
    const rel = relative(process.cwd(), cliPath);
    cached = `node ${shellQuote(rel.length < cliPath.length ? rel : cliPath)}`;
  }
  return cached;
}

/** The `-f`/`-b` options as the user gave them, for a hint run from the same folder. */
export function projectFlags(parsed: ParsedArgs): string {
  const file = optionValue(parsed, 'file');
  const buildDir = optionValue(parsed, 'build-dir');
  return `${file ? ` -f ${shellQuote(file)}` : ''}${buildDir ? ` -b ${shellQuote(buildDir)}` : ''}`;
}
