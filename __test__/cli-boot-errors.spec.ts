/**
 * Issue 16 item 5: bad values are found before boot, and failures at boot say what to do
 * (busy ports, ports that need root, a start that returned). Each test spawns the real command.
 */
import test from 'ava';
import { chownSync, cpSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { EXAMPLES, canDropPrivileges, configureAndBuild, exampleArgs, morgana, morganaAsNobody, nobodyDir, project, readableCopy } from './helpers/unikernel.js';

/** Holds a TCP port on 127.0.0.1 for the test's duration. */
async function holdPort(t: { teardown(f: () => void): void }): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

test('key ranges are checked before boot: --port=99999 is a usage error at configure and at run, without a stack trace', async (t) => {
  const { args } = exampleArgs('static-website');
  const configured = await morgana(['configure', ...args, '--port=99999']);
  t.is(configured.code, 64);
  t.regex(configured.stderr, /invalid value "99999" for --port \(int\): expected a value from 0 to 65535/);
  await configureAndBuild(args, ['-t', 'vnet']);
  const r = await morgana(['run', ...args, '--', '--port=99999']);
  t.is(r.code, 64, r.stderr);
  t.regex(r.stderr, /invalid value "99999" for --port \(int\): expected a value from 0 to 65535/);
  t.notRegex(r.stderr, /OutOfRange|\n\s+at /);
});

test('a busy forwarded host port says which and how to pick another', async (t) => {
  const port = await holdPort(t);
  const { args } = exampleArgs('echo');
  await configureAndBuild(args, ['-t', 'vnet', '--forward', `${port}:7`]);
  const r = await morgana(['run', ...args]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`host port ${port} is taken by another program: forward another, e\\.g\\. --forward ${port + 1}:7, or 0 for a free one`));
});

test('start with its port taken suggests --port 0, and leaves no hint about the folder it deletes', async (t) => {
  const port = await holdPort(t);
  const r = await morgana(['start', '--port', String(port)], { timeoutMs: 180_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`port ${port} is taken by another program: morgana start --port 0 picks a free one`));
  t.notRegex(r.stdout + r.stderr, /next: |run it with /);
});

test('a start that returns says the unikernel stops', async (t) => {
  const dir = project({
    'config.ts': `import { defaultNet, main, stack } from 'morgana/config';\nexport default main('./unikernel.ts', { stack: stack(defaultNet()) });\n`,
    'unikernel.ts': `export async function start({ stack }: any) { await stack.tcp.listen(80, () => {}); console.log('listening'); }\n`,
  });
  await configureAndBuild(['-f', join(dir, 'config.ts')], ['-t', 'vnet']);
  const r = await morgana(['run', '-f', join(dir, 'config.ts')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /listening/);
  t.regex(r.stderr, /start returned: stopping \(a unikernel that serves keeps start pending until its signal aborts\)/);
});

(canDropPrivileges ? test : test.skip)('unix --net socket as an unprivileged user: a UDP bind below 1024 fails the unikernel with a hint, not a warning', async (t) => {
  const copy = readableCopy();
  const dir = join(nobodyDir(), 'udp');
  cpSync(join(EXAMPLES, 'echo'), dir, { recursive: true, filter: (src) => !/[/\\](_build|node_modules)$/.test(src) });
  chownSync(dir, 65534, 65534);
  // UDP only, so the failure is the UDP bind's and not the TCP listen's.
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    join(dir, 'unikernel.ts'),
    `export async function start({ stack }: any, { keys, signal }: any) {
  stack.udp.bind(keys.port, () => {});
  console.log('serving UDP on port ' + keys.port);
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
}\n`,
  );
  t.is((await morganaAsNobody(copy, ['configure', '-t', 'unix', '--net', 'socket', '--bind', '127.0.0.1'], { cwd: dir })).code, 0);
  t.is((await morganaAsNobody(copy, ['build'], { cwd: dir })).code, 0);
  const r = await morganaAsNobody(copy, ['run'], { cwd: dir, timeoutMs: 60_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /UDP port 7: bind EACCES/);
  t.regex(r.stderr, /ports below 1024 need root/);
  t.notRegex(r.stderr, /Warning/);
});
