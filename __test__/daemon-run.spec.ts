/**
 * TypeScript unikernels managed like containers: `morgana run -d` hands a built unikernel to the
 * daemon (starting one when none runs), then `morgana ps`, `logs`, `logs -f`, `stats --json`,
 * `events` and `stop`, as a user types them.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, morgana, project, tempDir } from './helpers/unikernel.js';
import { until } from './helpers/wait.js';

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const pids = new Set<number>();
test.after.always(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

test('run -d starts a daemon and the unikernel under it; ps, logs, logs -f, stats, events, stop', async (t) => {
  const dir = project({
    'config.ts': `import { main } from 'morgana/config';\nexport default main('./unikernel.ts', {});\n`,
    'unikernel.ts': `export async function start(_d, { argv, signal }) {
  console.log('hello ' + argv.join(' '));
  let n = 0;
  const timer = setInterval(() => console.log('tick ' + n++), 100);
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  clearInterval(timer);
  console.log('bye');
}
`,
  });
  const env = { ...process.env, MORGANA_DAEMON_DIR: join(tempDir('morgana-daemon-run-'), 'd') };
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  t.is((await morgana(['build'], { cwd: dir })).code, 0);

  // No daemon yet: ps says how to get one.
  const none = await morgana(['ps'], { cwd: dir, env });
  t.is(none.code, 1);
  t.regex(none.stderr, /ERR_DAEMON_UNREACHABLE[\s\S]*morgana run -d/);

  const started = await morgana(['run', '-d', '--name', 'web', '--', 'from', 'the\\ daemon'], { cwd: dir, env });
  t.is(started.code, 0, started.stderr);
  t.is(started.stdout, 'web\n');
  const daemonPid = Number(/started a daemon \(pid (\d+)\)/.exec(started.stderr)?.[1]);
  t.true(daemonPid > 0, started.stderr);
  pids.add(daemonPid);
  const ukPid = Number(/runs detached \(pid (\d+)\)/.exec(started.stderr)?.[1]);
  pids.add(ukPid);
  t.true(alive(ukPid));

  const ps = await morgana(['ps'], { cwd: dir, env });
  t.is(ps.code, 0, ps.stderr);
  t.regex(ps.stdout, new RegExp(`^NAME\\s+STATE\\s+PID\\s+TARGET[\\s\\S]*\\nweb\\s+running\\s+${ukPid}\\s+node\\s+0\\s+-\\n$`));
  const json = JSON.parse((await morgana(['ps', '--json'], { cwd: dir, env })).stdout) as { name: string; target: string }[];
  t.like(json[0], { name: 'web', target: 'node' });

  // A second one from the same build, then a duplicate name is refused.
  t.is((await morgana(['run', '-d', '--name', 'web2'], { cwd: dir, env })).code, 0);
  // Detached unikernels outlive the daemon by design: remember every pid, so a failing test
  // leaves none behind.
  for (const u of JSON.parse((await morgana(['ps', '--json'], { cwd: dir, env })).stdout) as { pid?: number }[]) if (u.pid) pids.add(u.pid);
  const dup = await morgana(['run', '-d', '--name', 'web'], { cwd: dir, env });
  t.is(dup.code, 1);
  t.regex(dup.stderr, /unikernel 'web' is running; stop it first/);

  await until('console lines', async () => (await morgana(['logs', 'web'], { cwd: dir, env })).stdout.includes('tick 2'), 60_000);
  const logs = await morgana(['logs', 'web', '--count', '1000'], { cwd: dir, env });
  t.regex(logs.stdout, /\nhello from the daemon\ntick 0\ntick 1\n/);

  // logs -f streams until the unikernel stops; its last line arrives.
  const follower = spawn(process.execPath, [CLI, 'logs', '-f', 'web', '--count', '1'], { cwd: dir, env, stdio: 'pipe' });
  let followed = '';
  let followErr = '';
  follower.stdout.on('data', (c: Buffer) => (followed += c.toString()));
  follower.stderr.on('data', (c: Buffer) => (followErr += c.toString()));
  const followExit = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
  await until('live ticks followed', () => (followed.match(/tick \d+/g) ?? []).length >= 3, 60_000);

  const stats = JSON.parse((await morgana(['stats', 'web', '--json'], { cwd: dir, env })).stdout) as { process: { pid: number; rssKiB: number }; target: string; state: string };
  t.is(stats.process.pid, ukPid);
  t.true(stats.process.rssKiB > 1000);
  t.is(stats.state, 'running');

  const stop = await morgana(['stop', 'web'], { cwd: dir, env });
  t.is(stop.code, 0, stop.stderr);
  t.regex(stop.stdout, /^web: clean exit/); // SIGTERM aborts the start signal: the unikernel ends cleanly
  t.is(await followExit, 0);
  t.regex(followed, /\nbye\n/);
  t.regex(followErr, /web: clean exit/);
  t.false(alive(ukPid));

  const events = (await morgana(['events', '--json'], { cwd: dir, env })).stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; name: string; reason?: string });
  const web = events.filter((e) => e.name === 'web').map((e) => e.type + (e.reason ? `:${e.reason}` : ''));
  t.deepEqual(web, ['started', 'created', 'exited:clean', 'destroyed']);

  t.is((await morgana(['stop', 'web2'], { cwd: dir, env })).code, 0);
  const empty = await morgana(['ps'], { cwd: dir, env });
  t.is(empty.stdout, 'NAME  STATE  PID  TARGET  RESTARTS  LAST EXIT\n');
  const unknown = await morgana(['stop', 'web'], { cwd: dir, env });
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /ERR_DAEMON_UNKNOWN: no unikernel named 'web'/);
  t.is((await morgana(['logs'], { cwd: dir, env })).code, 64);
  t.is((await morgana(['run', '--name', 'x'], { cwd: dir, env })).code, 64);
  process.kill(daemonPid, 'SIGTERM');
  await until('daemon gone', () => !alive(daemonPid));
});
