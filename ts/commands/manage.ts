/**
 * Container-style management of the unikernels a daemon supervises (TypeScript unikernels started
 * with `morgana run -d`, Solo5 images with `morgana daemon deploy`): `morgana ps`, `logs [-f]`,
 * `stop`, `stats [--json]`, `events [-f]`. Each is the `morgana daemon` subcommand of that name.
 * @module
 */
import type { Command } from './command.js';
import { MorganaError } from '../errors.js';
import type { DaemonTarget } from '../daemon/supervisor.js';
import { asUsageError, consoleCommand, eventsCommand, psCommand, statsCommand, stopCommand, takeTarget } from './daemon.js';
import { UsageError, reportError } from './deploy.js';

const TARGET = '[--dir DIR | --remote HOST:PORT --cert FILE --key FILE --ca FILE]';

function managed(name: string, summary: string, usage: string, body: (target: DaemonTarget, rest: string[]) => Promise<number>): Command {
  return {
    summary,
    usage: `morgana ${name} ${usage} ${TARGET}`,
    async run(args) {
      let dir: string | undefined;
      try {
        const t = takeTarget(args);
        dir = t.dir;
        return await body(t.target, t.rest);
      } catch (caught) {
        const error = asUsageError(caught);
        if (error instanceof UsageError) process.stderr.write(`usage: morgana ${name} ${usage} ${TARGET}\n`);
        if (error instanceof MorganaError && error.code === 'ERR_DAEMON_UNREACHABLE') {
          process.stderr.write(`morgana ${name}: ${error.code}: ${error.message}\n  no daemon runs: start one with 'morgana daemon${dir ? ` --dir ${dir}` : ''} &', or run a unikernel with 'morgana run -d', which starts it\n`);
          return 1;
        }
        return reportError(`morgana ${name}`, error);
      }
    },
  };
}

/** `morgana ps`. */
export const ps = managed('ps', 'List the unikernels the daemon supervises (run -d, daemon deploy)', '[--json]', psCommand);
/** `morgana logs`. */
export const logs = managed('logs', "Print a supervised unikernel's console (-f follows)", '<name> [--count N] [-f|--follow]', consoleCommand);
/** `morgana stop`. */
export const stop = managed('stop', 'Stop a supervised unikernel and forget it', '<name>', stopCommand);
/** `morgana stats`. */
export const stats = managed('stats', 'CPU, memory, network and restart figures of a supervised unikernel', '<name> [--json]', statsCommand);
/** `morgana events`. */
export const events = managed('events', "The daemon's event log (-f follows)", '[<name>] [--count N] [-f|--follow] [--json]', eventsCommand);
