/**
 * `morgana run -d`: hands a built TypeScript unikernel to the daemon, which runs it detached and
 * supervises it (then `morgana ps`, `logs [-f]`, `stop`). Starts a daemon in the default
 * directory (`$MORGANA_DAEMON_DIR`, see `morgana daemon --help`) when none answers.
 * @module
 */
import { MorganaError } from '../errors.js';
import { type DaemonUnikernelInfo, daemonRequest, defaultDaemonDir } from '../daemon/supervisor.js';
import { spawnDaemon } from './daemon.js';
import { progress } from './progress.js';

/** Asks the daemon to run `entry` with boot arguments `args`; prints what it started. */
export async function runDetached(entry: string, args: string[], options: { name?: string; cwd: string; env?: Record<string, string> }): Promise<number> {
  const dir = defaultDaemonDir();
  const request = { cmd: 'run' as const, options: { entry, args, cwd: options.cwd, ...(options.name ? { name: options.name } : {}), ...(options.env ? { env: options.env } : {}) } };
  let r;
  try {
    r = await daemonRequest(dir, request);
  } catch (error) {
    if (!(error instanceof MorganaError) || error.code !== 'ERR_DAEMON_UNREACHABLE') throw error;
    const pid = await spawnDaemon(dir);
    progress(`morgana run: started a daemon (pid ${pid}) in ${dir}; stop it with kill ${pid}\n`);
    r = await daemonRequest(dir, request);
  }
  const uk = r.unikernel as DaemonUnikernelInfo;
  process.stdout.write(`${uk.name}\n`);
  progress(`morgana run: ${uk.name} runs detached (pid ${uk.pid}); see morgana ps, morgana logs -f ${uk.name}, morgana stop ${uk.name}\n`);
  return 0;
}
