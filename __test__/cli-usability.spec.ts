/**
 * Issue 16 items 6 and 7: what a new user meets first. The default target runs without root,
 * root-needing failures say where to go instead, the help groups its commands, and the CLI
 * suggests what was probably meant. Every test spawns the real `morgana` command; where
 * privileges matter it runs as nobody from a world-readable copy of the package.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AS_NOBODY, EXAMPLES, ROOT, canDropPrivileges, exampleArgs, morgana, morganaAsNobody, nobodyDir, readableCopy, run } from './helpers/unikernel.js';
import { kernelTestsUnavailable, withNetns } from './helpers/netns.js';

const asNobody = canDropPrivileges ? test : test.skip;

/** A copy of an example in a folder nobody owns (so configure and build can write _build/). */
function nobodyExample(name: string): string {
  const dir = join(nobodyDir(), name);
  // Only the sources: a build folder left in the checkout (by a root run) is not nobody's.
  cpSync(join(EXAMPLES, name), dir, { recursive: true, filter: (src) => !/[/\\](_build|node_modules)$/.test(src) });
  return dir;
}

asNobody('the default target runs for an unprivileged user: configure, build and run the ping example (vnet, no root)', async (t) => {
  const copy = readableCopy();
  const dir = nobodyExample('ping');
  const { chownSync } = await import('node:fs');
  chownSync(dir, 65534, 65534);
  const configured = await morganaAsNobody(copy, ['configure'], { cwd: dir });
  t.is(configured.code, 0, configured.stderr);
  t.regex(configured.stdout, /for vnet/);
  const built = await morganaAsNobody(copy, ['build'], { cwd: dir });
  t.is(built.code, 0, built.stderr);
  const ran = await morganaAsNobody(copy, ['run', '--', '10.0.0.1', '--count=1', '--interval=10ms'], { cwd: dir });
  t.is(ran.code, 0, ran.stderr);
  t.regex(ran.stdout, /64 bytes from 10\.0\.0\.1: icmp_seq=1/);
  // The TAP-only --interface key is neither listed nor accepted on vnet.
  const help = await morganaAsNobody(copy, ['run', '--', '--help'], { cwd: dir });
  t.is(help.code, 63);
  t.regex(help.stdout, /--count/);
  t.notRegex(help.stdout, /--interface/);
  const refused = await morganaAsNobody(copy, ['run', '--', '--interface=tap1', '10.0.0.1'], { cwd: dir });
  t.is(refused.code, 64, refused.stderr);
});

(canDropPrivileges && !kernelTestsUnavailable() ? test : test.skip)('unix --net direct without root: the error points to -t vnet and --net socket', async (t) => {
  const copy = readableCopy();
  const dir = nobodyExample('echo');
  const { chownSync } = await import('node:fs');
  chownSync(dir, 65534, 65534);
  const configured = await morganaAsNobody(copy, ['configure', '-t', 'unix'], { cwd: dir });
  t.is(configured.code, 0, configured.stderr);
  const built = await morganaAsNobody(copy, ['build'], { cwd: dir });
  t.is(built.code, 0, built.stderr);
  // Inside a namespace of the test's own, so even a wrongly successful open could not touch the host.
  const r = await withNetns((ns) =>
    ns.exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, copy.cli, 'run', '-f', join(dir, 'config.ts')], { allowFailure: true }),
  );
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /CAP_NET_ADMIN/);
  t.regex(r.stderr, /without root, configure -t vnet .* or -t unix --net socket/);
  // On unix --net direct, --interface is a runtime key.
  const help = await morganaAsNobody(copy, ['run', '-f', join(dir, 'config.ts'), '--', '--help']);
  t.regex(help.stdout, /--interface/);
});

test('the top-level help groups Solo5 commands apart from the unikernel commands, and lists every command', async (t) => {
  const r = await morgana(['--help']);
  t.is(r.code, 0);
  const groups = Object.fromEntries(
    r.stdout
      .split('\n\n')
      .filter((block) => /^[^ ].*:\n  /.test(block))
      .map((block) => {
        const [title, ...lines] = block.split('\n');
        return [title!.replace(/:$/, ''), lines.map((l) => l.trim().split(/\s+/)[0])];
      }),
  );
  t.deepEqual(groups['Solo5 unikernel images'], ['solo5', 'deploy', 'daemon']);
  t.deepEqual(groups['TypeScript unikernels (config.ts)'], ['configure', 'build', 'run', 'describe', 'query', 'clean']);
  const listed = Object.values(groups).flat().sort();
  t.deepEqual(groups['managing unikernels the daemon supervises (run -d, daemon deploy)'], ['ps', 'logs', 'stop', 'stats', 'events']);
  t.deepEqual(listed, ['build', 'clean', 'configure', 'crunch', 'daemon', 'demo', 'deploy', 'describe', 'events', 'iperf3', 'logs', 'ps', 'query', 'run', 'solo5', 'start', 'stats', 'stop']);
});

test('--version prints the package version; help COMMAND prints that command\'s usage', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = await morgana(['--version']);
  t.is(v.code, 0);
  t.regex(v.stdout, new RegExp(`^morgana ${pkg.version.replaceAll('.', '\\.')} `));
  const h = await morgana(['help', 'run']);
  t.is(h.code, 0);
  t.regex(h.stdout, /^usage: morgana run \[-d \[--name NAME\]\] \[-p /);
  t.is((await morgana(['help', 'nonsense'])).code, 64);
});

test('did you mean: mistyped commands and options get the closest name; run --port points at --', async (t) => {
  const cmd = await morgana(['confgure']);
  t.is(cmd.code, 64);
  t.regex(cmd.stderr, /unknown command 'confgure'; did you mean 'morgana configure'\?/);
  const option = await morgana(['build', '--instal']);
  t.is(option.code, 64);
  t.regex(option.stderr, /unknown option --instal; did you mean --install\?/);
  const port = await morgana(['run', '--port=9']);
  t.is(port.code, 64);
  t.regex(port.stderr, /unknown option --port=9; the unikernel's own options \(boot arguments\) go after --: morgana run -- --port=9/);
});

test('papercuts: demo --size abc, --forward sctp:…, daemon ps without a daemon', async (t) => {
  const demo = await morgana(['demo', '--size', 'abc']);
  t.is(demo.code, 64);
  t.regex(demo.stderr, /--size must be a whole number from 0 to 65515, got "abc"/);
  t.notRegex(demo.stderr, /NaN/);
  t.is((await morgana(['demo', '--mtu', '20'])).code, 64);
  t.is((await morgana(['demo', '--bogus'])).code, 64);

  const { args } = (await import('./helpers/unikernel.js')).exampleArgs('echo');
  const sctp = await morgana(['configure', ...args, '--forward', 'sctp:8080:80']);
  t.is(sctp.code, 64);
  t.regex(sctp.stderr, /unknown protocol "sctp" in --forward "sctp:8080:80": tcp or udp/);

  const dir = nobodyDir();
  const ps = await morgana(['daemon', 'ps', '--dir', dir]);
  t.is(ps.code, 1);
  t.regex(ps.stderr, new RegExp(`no daemon is running; start one with: .*daemon serve --dir ${dir}`));
});

(kernelTestsUnavailable() ? test.skip : test)('iperf3 with a bad --ipv4 exits 64 instead of hanging with the TAP device open', async (t) => {
  const r = await withNetns((ns) =>
    ns.exec(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'iperf3', '-s', '--tap', 'mtap0', '--ipv4', '10.89.0.2'], { allowFailure: true, timeoutMs: 60_000 }),
  );
  t.is(r.code, 64, r.stderr);
  t.regex(r.stderr, /expected ADDRESS\/PREFIX such as 10\.0\.0\.2\/24, got "10\.89\.0\.2"/);
});

test('describe --json prints the device graph and keys as JSON', async (t) => {
  // (-b: describe compiles config.ts into the build folder; not into the checkout's examples/.)
  const buildDir = join(nobodyDir(), 'build');
  const r = await morgana(['describe', '-f', join(EXAMPLES, 'echo', 'config.ts'), '-b', buildDir, '--json']);
  t.is(r.code, 0, r.stderr);
  const data = JSON.parse(r.stdout) as { unikernel: string; devices: Array<{ id: string; deps: Record<string, string>; roles: string[] }>; keys: Array<{ name: string; default: string | null }> };
  t.is(data.unikernel, './unikernel.ts');
  t.deepEqual(data.devices.map((d) => d.id), ['defaultNet0', 'stack0']);
  t.deepEqual(data.devices[1]!.deps, { net: 'defaultNet0' });
  t.deepEqual(data.devices[1]!.roles, ['stack']);
  t.is(data.keys.find((k) => k.name === 'port')?.default, '7');
  t.is((await morgana(['describe', '-f', join(EXAMPLES, 'echo', 'config.ts'), '-b', buildDir, '--json', '--dot'])).code, 64);
});

const hasIperf3 = spawnSync('iperf3', ['--version']).status === 0;

(canDropPrivileges && hasIperf3 ? test : test.skip)("iperf3 -s --vnet as an unprivileged user: Debian's iperf3 -c 127.0.0.1 measures it through the forwarded port", async (t) => {
  const copy = readableCopy();
  // -1: the server exits after one test and prints its report.
  const server = spawn('setpriv', [...AS_NOBODY, process.execPath, copy.cli, 'iperf3', '-s', '--vnet', '-p', '0', '-1'], { cwd: nobodyDir(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  server.stdout.on('data', (d: Buffer) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
  const killer = setTimeout(() => server.kill('SIGKILL'), 60_000);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.stderr.on('data', (d: Buffer) => {
        stderr += d;
        const m = /Server listening on 127\.0\.0\.1 port (\d+)/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      void exited.then(() => reject(new Error(`exited before listening: ${stderr}`)));
    });
    t.true(port > 0, stderr);
    const client = await run('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', '2', '-J'], { timeoutMs: 30_000 });
    const report = JSON.parse(client.stdout) as { error?: string; end: { sum_received: { bytes: number } } };
    t.is(report.error, undefined, client.stderr);
    t.true(report.end.sum_received.bytes > 0);
    t.is(await exited, 0, stderr);
    // The server's own report: the per-stream receiver line of iperf3's summary.
    t.regex(stdout, /\[\s*\d+\]\s+0\.00-\d+\.\d+\s+sec\s+[\d.]+ [KMG]?Bytes\s+[\d.]+ [KMG]?bits\/sec\s+receiver/);
  } finally {
    clearTimeout(killer);
    server.kill('SIGKILL');
  }
});

test('iperf3 -s --vnet takes no TAP options', async (t) => {
  const tap = await morgana(['iperf3', '-s', '--vnet', '--tap', 'tap0']);
  t.is(tap.code, 64);
  t.regex(tap.stderr, /--vnet takes no --tap/);
});

test('global -q/--quiet: configure, build and clean print no progress; errors still print', async (t) => {
  const { args, buildDir } = exampleArgs('echo');
  // Without -q, the progress lines this test expects to disappear.
  const loud = await morgana(['configure', ...args, '-t', 'vnet']);
  t.is(loud.code, 0, loud.stderr);
  t.regex(loud.stdout, /for vnet/);
  const configured = await morgana(['-q', 'configure', ...args, '-t', 'vnet']);
  t.is(configured.code, 0, configured.stderr);
  t.is(configured.stdout + configured.stderr, '');
  const built = await morgana(['--quiet', 'build', ...args]);
  t.is(built.code, 0, built.stderr);
  t.is(built.stdout + built.stderr, '');
  t.true(readFileSync(join(buildDir, 'main.mjs'), 'utf8').length > 0);
  const cleaned = await morgana(['-q', 'clean', ...args]);
  t.is(cleaned.code, 0, cleaned.stderr);
  t.is(cleaned.stdout + cleaned.stderr, '');
  // Errors are not progress: a missing config.ts is still reported, with its exit code.
  const failed = await morgana(['-q', 'build', '-f', join(buildDir, 'nowhere', 'config.ts')]);
  t.not(failed.code, 0);
  t.regex(failed.stderr, /config\.ts/);
  // The help says where -q goes.
  t.regex((await morgana(['--help'])).stdout, /usage: morgana \[-q\|--quiet \| -v\|--verbose\] <command>/);
});
