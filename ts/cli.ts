#!/usr/bin/env node
/**
 * The `morgana` command line. Each command lives in `ts/commands/<name>.ts` and registers here.
 * Exit codes follow MirageOS: 0 success, 1 failure, 64 bad usage.
 * @module
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { crunch } from './commands/crunch.js';
import { demo } from './commands/demo.js';
import { iperf3 } from './commands/iperf3.js';
import { daemon } from './commands/daemon.js';
import { deploy } from './commands/deploy.js';
import { events, logs, ps, stats, stop } from './commands/manage.js';
import { solo5 } from './commands/solo5.js';
import { start } from './commands/start.js';
import { build, clean, configure, describe, query, run } from './commands/unikernel.js';

/** A CLI command: a one-line summary and a function from its arguments to an exit code. */
export interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

/** Exit code for bad usage (sysexits EX_USAGE, as MirageOS uses). */
export const EXIT_USAGE = 64;

const commands: Record<string, Command> = { start, demo, solo5, deploy, daemon, crunch, configure, build, run, clean, describe, query, iperf3, ps, logs, stop, stats, events };

function help(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: morgana <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'morgana <command> --help' for a command's options.\n`;
}

/** Runs the CLI with `argv` (without the node and script paths); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`morgana: unknown command '${name}'\n\n${help()}`);
    return EXIT_USAGE;
  }
  // Only options before `--` are the CLI's: what follows belongs to the unikernel (`run -- --help`).
  if (rest.slice(0, rest.includes('--') ? rest.indexOf('--') : undefined).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(`usage: ${command.usage}\n\n${command.summary}\n`);
    return 0;
  }
  return command.run(rest);
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
