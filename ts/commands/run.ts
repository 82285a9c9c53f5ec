/**
 * `morgana run [-- BOOT ARGUMENTS]`: runs a built unikernel (`node main.mjs`) with its boot
 * arguments, and exits with its exit code.
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from './command.js';
import { MorganaError } from '../errors.js';
import { readConfigured } from '../config/project.js';
import { formatForward, parseForward } from '../config/targets.js';
import { superviseChild } from './child.js';
import { MONITOR_OPTIONS, monitorEnv, takeMonitorArgs } from './monitor-args.js';
import { projectFlags, selfCommand } from './self.js';
import { PROJECT_OPTIONS, guarded, optionValue, parseCommandArgs, pathsFrom } from './project-args.js';
import { runDetached } from './run-detached.js';
import { detailCommand } from './progress.js';

/** The run command. */
export const run: Command = {
  summary: 'Run a built unikernel with boot arguments (after --); --help after -- lists its runtime keys',
  usage: `morgana run [-d [--name NAME]] [-p [tcp:|udp:][HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT …] [-- BOOT ARGUMENTS …]

${PROJECT_OPTIONS}
${MONITOR_OPTIONS}
  -d, --detach          run under the daemon (started if needed); then morgana ps, logs -f, stop
      --name NAME       name of the detached unikernel (default: the project folder's)
  -p, --forward SPEC    (vnet) also forward this host port into the unikernel for this run,
                        on top of configure's --forward (repeatable; 0 picks a free port)

Boot arguments are joined with single spaces and split again with MirageOS's parse-argv rules,
so escape spaces for the unikernel as well as for the shell: morgana run -- '--hello=foo\\ bar'.
Signals: SIGINT, SIGTERM and SIGHUP stop it; SIGUSR2 prints a summary of its stacks on stderr,
as one line of JSON ({"morganaSummary":{"name":…,"stacks":{…}}}) when MORGANA_SUMMARY_JSON=1.
Exit codes: the unikernel's (0 done, 1 failure, 63 after --help, 64 bad boot arguments).`,
  run: (args) =>
    guarded('run', async () => {
      const monitor = takeMonitorArgs(args);
      const parsed = parseCommandArgs(
        monitor.args,
        { detach: { short: 'd', value: false }, name: { value: true }, forward: { short: 'p', value: true } },
        false,
        "the unikernel's own options (boot arguments) go after --: morgana run -- ARG",
      );
      if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `boot arguments go after --: morgana run -- ${parsed.positional.join(' ')}`);
      const paths = pathsFrom(parsed);
      const { manifest } = await readConfigured(paths);
      // -p/--forward: more host ports into the vnet, for this run only (checked here, applied at boot).
      const forwards = (parsed.values.get('forward') ?? []).map(parseForward);
      if (forwards.length && manifest.target.name !== 'vnet') {
        throw new MorganaError('ERR_USAGE', `-p/--forward applies to the vnet target only; this build is for ${manifest.target.name} (configure -t vnet)`);
      }
      const entry = join(paths.buildDir, 'main.mjs');
      if (!existsSync(join(paths.buildDir, 'app'))) throw new MorganaError('ERR_NOT_CONFIGURED', `the unikernel is not built: run ${selfCommand()} build${projectFlags(parsed)}`);
      const forwardEnv = (base: NodeJS.ProcessEnv): NodeJS.ProcessEnv => (forwards.length ? { ...base, MORGANA_FORWARD: forwards.map(formatForward).join('\n') } : base);
      if (parsed.flags.has('detach')) {
        const env = monitor.request || forwards.length ? forwardEnv(monitorEnv(monitor.request, {})) : undefined;
        return runDetached(entry, parsed.rest, { name: optionValue(parsed, 'name'), cwd: process.cwd(), ...(env ? { env: env as Record<string, string> } : {}) });
      }
      if (optionValue(parsed, 'name') !== undefined) throw new MorganaError('ERR_USAGE', '--name goes with -d');
      // Signals the unikernel handles (SIGUSR2's summary, SIGHUP, …) are forwarded, and it stops
      // if this process dies (see child.ts).
      const env = monitorEnv(monitor.request, forwardEnv(process.env));
      detailCommand('run', [process.execPath, entry, ...parsed.rest], Object.fromEntries(Object.entries(env).filter(([k, v]) => /^MORGANA_/.test(k) && process.env[k] !== v)));
      const { exited } = superviseChild(process.execPath, [entry, ...parsed.rest], { env });
      const code = await exited;
      return code;
    }),
};
