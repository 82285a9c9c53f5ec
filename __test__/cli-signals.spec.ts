/**
 * Issue 16 item 1: `morgana run` and `morgana start` forward the signals a unikernel handles,
 * take their child with them when they die (even by SIGKILL), and leave no temporary folder.
 * Each test spawns the real `morgana` command and signals it as a user (or a supervisor) would.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { CLI, canDropPrivileges, configureAndBuild, morganaAsNobody, nobodyDir, project, readableCopy } from './helpers/unikernel.js';

/** A vnet unikernel that prints its pid, serves TCP, and runs until stopped. */
function pidProject(): string {
  return project({
    'config.ts': `import { defaultNet, main, stack } from 'morgana/config';
export default main('./unikernel.ts', { stack: stack(defaultNet()) });
`,
    'unikernel.ts': `import type { Start } from 'morgana/config';
import type config from './config.js';
export const start: Start<typeof config> = async ({ stack }, { signal }) => {
  const server = await stack.tcp!.listen(7, (c) => c.pipe(c));
  console.log('unikernel pid ' + process.pid);
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  console.log('unikernel stopping cleanly');
  await server.close();
};
`,
  });
}

/** A spawned command with its output so far and a way to wait for a line. */
function spawnCli(args: string[], cwd?: string, env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  const append = (d: Buffer) => ((out += d), waiters.forEach((w) => w()));
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => (waiters.forEach((w) => w()), resolve({ code, signal }))),
  );
  const waitFor = (pattern: RegExp, timeoutMs = 120_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = out.match(pattern);
        if (m) (waiters.delete(check), clearTimeout(timer), resolve(m));
        else if (child.exitCode !== null || child.signalCode !== null) (waiters.delete(check), clearTimeout(timer), reject(new Error(`exited before ${pattern}:\n${out}`)));
      };
      const timer = setTimeout(() => (waiters.delete(check), reject(new Error(`timed out waiting for ${pattern}:\n${out}`))), timeoutMs);
      waiters.add(check);
      check();
    });
  return { child, exited, waitFor, output: () => out };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once `pid` is gone; rejects after a generous deadline (liveness only). */
async function gone(pid: number, deadlineMs = 30_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (alive(pid)) {
    if (Date.now() > until) throw new Error(`process ${pid} is still running`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function killQuietly(child: ChildProcess, pid?: number): void {
  if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

test('run: SIGUSR2 prints the summary and leaves both running; SIGHUP stops the unikernel cleanly', async (t) => {
  const dir = pidProject();
  await configureAndBuild(['-f', `${dir}/config.ts`], ['-t', 'vnet']);
  const run = spawnCli(['run'], dir);
  let pid: number | undefined;
  try {
    pid = Number((await run.waitFor(/unikernel pid (\d+)/))[1]);
    t.not(pid, run.child.pid, 'the unikernel is a child process');
    process.kill(run.child.pid!, 'SIGUSR2');
    await run.waitFor(/\[morgana\] stack0:\n\s+interface 0\s+10\.0\.0\.2\/24/);
    t.true(alive(run.child.pid!), 'the wrapper survived SIGUSR2');
    t.true(alive(pid), 'the unikernel survived SIGUSR2');
    process.kill(run.child.pid!, 'SIGHUP');
    const { code } = await run.exited;
    t.regex(run.output(), /SIGHUP: stopping/);
    t.regex(run.output(), /unikernel stopping cleanly/);
    t.is(code, 0, run.output());
    await gone(pid);
  } finally {
    killQuietly(run.child, pid);
  }
});

test('run: with MORGANA_SUMMARY_JSON=1, SIGUSR2 prints the summary as one line of JSON', async (t) => {
  const dir = pidProject();
  await configureAndBuild(['-f', `${dir}/config.ts`], ['-t', 'vnet']);
  const run = spawnCli(['run'], dir, { ...process.env, MORGANA_SUMMARY_JSON: '1' });
  let pid: number | undefined;
  try {
    pid = Number((await run.waitFor(/unikernel pid (\d+)/))[1]);
    process.kill(run.child.pid!, 'SIGUSR2');
    const line = (await run.waitFor(/^\{"morganaSummary":.*$/m))[0];
    const { morganaSummary } = JSON.parse(line) as {
      morganaSummary: { stacks: Record<string, { interfaces: Array<{ address: string; arp: unknown[] }>; stats: { tcp: { connections: number } } }> };
    };
    t.is(morganaSummary.stacks.stack0?.interfaces[0]?.address, '10.0.0.2/24');
    t.is(morganaSummary.stacks['vnet gateway']?.interfaces[0]?.address, '10.0.0.1/24');
    t.is(typeof morganaSummary.stacks.stack0?.stats.tcp.connections, 'number');
    // Not the human form as well.
    t.notRegex(run.output(), /\[morgana\] stack0:\n/);
    t.true(alive(pid), 'the unikernel survived SIGUSR2');
    process.kill(run.child.pid!, 'SIGTERM');
    await run.exited;
    await gone(pid);
  } finally {
    killQuietly(run.child, pid);
  }
});

test('run: a SIGKILLed wrapper takes its unikernel with it', async (t) => {
  const dir = pidProject();
  await configureAndBuild(['-f', `${dir}/config.ts`], ['-t', 'vnet']);
  const run = spawnCli(['run'], dir);
  let pid: number | undefined;
  try {
    pid = Number((await run.waitFor(/unikernel pid (\d+)/))[1]);
    process.kill(run.child.pid!, 'SIGKILL');
    await run.exited;
    await gone(pid);
    t.false(alive(pid));
  } finally {
    killQuietly(run.child, pid);
  }
});

test('start: SIGUSR2 prints the summary again; SIGKILL of start stops the unikernel and removes the build folder', async (t) => {
  const start = spawnCli(['start', '--port', '0']);
  let pid: number | undefined;
  try {
    const buildDir = (await start.waitFor(/for the vnet target in (\S+)\n/))[1]!;
    await start.waitFor(/Serving http:\/\/127\.0\.0\.1:\d+\//);
    const summaries = () => start.output().split('[morgana] stack0:\n').length - 1;
    // The summary (stderr) is printed before "Serving" (stdout), but two pipes are read apart.
    await start.waitFor(/\[morgana\] stack0:\n[^]*UDP · ICMP[^]*UDP · ICMP/);
    t.is(summaries(), 1);
    process.kill(start.child.pid!, 'SIGUSR2');
    await start.waitFor(/\[morgana\] stack0:\n[^]*\[morgana\] stack0:\n/);
    t.true(alive(start.child.pid!), 'start survived SIGUSR2');
    t.true(existsSync(buildDir));
    // The unikernel is the one child of start running main.mjs.
    const { execFileSync } = await import('node:child_process');
    pid = Number(execFileSync('pgrep', ['-P', String(start.child.pid), '-f', 'main.mjs'], { encoding: 'utf8' }).trim());
    t.true(Number.isInteger(pid) && pid > 0);
    process.kill(start.child.pid!, 'SIGKILL');
    await start.exited;
    await gone(pid);
    t.false(existsSync(buildDir), `${buildDir} was removed`);
  } finally {
    killQuietly(start.child, pid);
  }
});

(canDropPrivileges ? test : test.skip)('start --tap as an unprivileged user: says why and where to go, leaves no temporary folder', async (t) => {
  const copy = readableCopy();
  const tmp = nobodyDir();
  const r = await morganaAsNobody(copy, ['start', '--tap'], { env: { ...process.env, TMPDIR: tmp } });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /needs root/);
  t.regex(r.stderr, /morgana start \(the vnet target, no root\)/);
  t.deepEqual(readdirSync(tmp), []);
});

test('run -p/--forward adds host ports at run time (vnet): TCP and UDP reach the unikernel; not on unix', async (t) => {
  const { exampleArgs, tcpExchange, udpExchange, morgana } = await import('./helpers/unikernel.js');
  const { args } = exampleArgs('echo');
  await configureAndBuild(args, ['-t', 'vnet']);
  const run = spawnCli(['run', ...args, '-p', '0:7', '--forward', 'udp:0:7']);
  try {
    const tcpPort = Number((await run.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+) -> 10\.0\.0\.2:7/))[1]);
    const udpPort = Number((await run.waitFor(/forwarding udp 127\.0\.0\.1:(\d+) -> 10\.0\.0\.2:7/))[1]);
    await run.waitFor(/echo: TCP 10\.0\.0\.2 port 7/);
    t.is(await tcpExchange(tcpPort, 'over a run-time forward'), 'over a run-time forward');
    t.is(await udpExchange(udpPort, 'udp too'), 'udp too');
  } finally {
    run.child.kill('SIGTERM');
    t.is((await run.exited).code, 0, run.output());
  }
  const bad = await morgana(['run', ...args, '-p', 'sctp:1:2']);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /unknown protocol "sctp"/);
  const unix = exampleArgs('echo');
  await configureAndBuild(unix.args, ['-t', 'unix', '--net', 'socket', '--bind', '127.0.0.1']);
  const refused = await morgana(['run', ...unix.args, '-p', '8080:7']);
  t.is(refused.code, 64);
  t.regex(refused.stderr, /-p\/--forward applies to the vnet target only; this build is for unix/);
});
