#!/usr/bin/env node
/**
 * The `morgana` command line. Each command lives in `ts/commands/<name>.ts` and registers here.
 * Exit codes follow MirageOS: 0 success, 1 failure, 64 bad usage.
 * @module
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { crunch } from './commands/crunch.js';
import { didYouMean } from './did-you-mean.js';
import { demo } from './commands/demo.js';
import { iperf3 } from './commands/iperf3.js';
import { daemon } from './commands/daemon.js';
import { deploy } from './commands/deploy.js';
import { events, logs, ps, stats, stop } from './commands/manage.js';
import { solo5 } from './commands/solo5.js';
import { start } from './commands/start.js';
import { build, clean, configure, describe, query, run } from './commands/unikernel.js';
import { type Command, EXIT_USAGE } from './commands/command.js';
import { detail, elapsed, setQuiet, setVerbose } from './commands/progress.js';

// Re-exported for code that imported them from here before they moved to commands/command.ts.
export { type Command, EXIT_USAGE } from './commands/command.js';

const commands: Record<string, Command> = { start, demo, solo5, deploy, daemon, crunch, configure, build, run, clean, describe, query, iperf3, ps, logs, stop, stats, events };

/** The commands as the top-level help groups them. */
const GROUPS: Array<[string, string[]]> = [
  ['getting started', ['start', 'demo']],
  ['TypeScript unikernels (config.ts)', ['configure', 'build', 'run', 'describe', 'query', 'clean']],
  ['Solo5 unikernel images', ['solo5', 'deploy', 'daemon']],
  ['managing unikernels the daemon supervises (run -d, daemon deploy)', ['ps', 'logs', 'stop', 'stats', 'events']],
  ['tools', ['iperf3', 'crunch']],
];

function help(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const groups = GROUPS.map(([title, names]) => `${title}:\n${names.map((name) => `  ${name.padEnd(width)}  ${commands[name]!.summary}`).join('\n')}`);
  return `usage: morgana [-q|--quiet | -v|--verbose] <command> [options]\n\n${groups.join('\n\n')}\n\nRun 'morgana help <command>' or 'morgana <command> --help' for a command's options; morgana --version prints the version.\nBefore the command:\n  -q, --quiet     silence its progress lines (errors and results still print)\n  -v, --verbose   more detail on stderr: the commands it runs (configure, build, the unikernel,\n                  ip), the files and folders it writes, and how long each step took\n`;
}

/** The version in Morgana's package.json. */
function version(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };
  return pkg.version;
}

function commandHelp(command: Command): string {
  return `usage: ${command.usage}\n\n${command.summary}\n`;
}

/** Runs the CLI with `argv` (without the node and script paths); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  // The global -q/--quiet and -v/--verbose come before the command name (after it, the
  // command's own options).
  let start = 0;
  let quiet = false;
  let verbose = false;
  for (; ; start++) {
    if (argv[start] === '-q' || argv[start] === '--quiet') quiet = true;
    else if (argv[start] === '-v' || argv[start] === '--verbose') verbose = true;
    else break;
  }
  if (quiet && verbose) {
    process.stderr.write("morgana: -q/--quiet and -v/--verbose exclude each other ('morgana --help' says what each does)\n");
    return EXIT_USAGE;
  }
  setQuiet(quiet);
  setVerbose(verbose);
  const [name, ...rest] = argv.slice(start);
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`morgana ${version()} (Node.js ${process.version})\n`);
    return 0;
  }
  if (name === 'help' && rest[0] !== undefined) {
    const command = commands[rest[0]];
    if (command) {
      process.stdout.write(commandHelp(command));
      return 0;
    }
    return unknownCommand(rest[0]);
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = commands[name];
  if (!command) return unknownCommand(name);
  // Only options before `--` are the CLI's: what follows belongs to the unikernel (`run -- --help`).
  if (rest.slice(0, rest.includes('--') ? rest.indexOf('--') : undefined).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  const began = performance.now();
  const code = await command.run(rest);
  detail(`${name} exited ${code} after ${elapsed(began)}`);
  return code;
}

function unknownCommand(name: string): number {
  const guess = didYouMean(name, Object.keys(commands));
  if (guess) process.stderr.write(`morgana: unknown command '${name}'; did you mean 'morgana ${guess}'? ('morgana --help' lists the commands)\n`);
  else process.stderr.write(`morgana: unknown command '${name}'\n\n${help()}`);
  return EXIT_USAGE;
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`morgana: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
