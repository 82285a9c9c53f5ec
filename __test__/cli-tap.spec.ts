/**
 * The examples on `unix --net direct`: Morgana's stack on a TAP device inside a network namespace
 * this test creates (and deletes), with the kernel as the peer (ping, socat, curl).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { configureAndBuild, exampleArgs, morgana, run, start } from './helpers/unikernel.js';

const has = (cmd: string, arg = '-V') => spawnSync(cmd, [arg]).status === 0;
const missing = [
  process.getuid?.() !== 0 ? 'root (to create a network namespace and a TAP device)' : undefined,
  existsSync('/dev/net/tun') ? undefined : '/dev/net/tun',
  has('ip') ? undefined : 'ip (iproute2)',
  has('socat') ? undefined : 'socat',
  has('curl', '--version') ? undefined : 'curl',
].filter(Boolean);

const NS = `mgcfg${process.pid}`;
const TAP = 'mtap0';
const inNs = ['ip', 'netns', 'exec', NS];

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

if (missing.length) {
  test.skip(`unix --net direct over TAP (skipped: needs ${missing.join(', ')})`, () => {});
} else {
  test.before(() => {
    spawnSync('ip', ['netns', 'del', NS]);
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    // A persistent TAP the unikernel attaches to, with the kernel side addressed and up.
    ip('-n', NS, 'tuntap', 'add', 'mode', 'tap', 'name', TAP);
    ip('-n', NS, 'addr', 'add', '10.0.0.1/24', 'dev', TAP);
    ip('-n', NS, 'link', 'set', TAP, 'up');
  });
  test.after.always(() => {
    spawnSync('ip', ['netns', 'del', NS]);
  });

  test.serial('echo on unix --net direct: the kernel pings it and echoes through it over UDP and TCP', async (t) => {
    const { args, buildDir } = exampleArgs('echo');
    await configureAndBuild(args, ['-t', 'unix', '--net', 'direct', `--interface=${TAP}`]);
    const u = start(buildDir, ['--ipv4=10.0.0.2/24'], inNs);
    try {
      await u.waitFor(/echo: TCP 10\.0\.0\.2 port 7/);
      const ping = await run(inNs[0]!, [...inNs.slice(1), 'ping', '-c', '2', '-W', '2', '10.0.0.2']);
      t.is(ping.code, 0, ping.stdout + ping.stderr);
      const udp = await run(inNs[0]!, [...inNs.slice(1), 'socat', '-t', '2', '-', 'UDP:10.0.0.2:7'], { input: 'kernel udp\n' });
      t.is(udp.stdout, 'kernel udp\n');
      const tcp = await run(inNs[0]!, [...inNs.slice(1), 'socat', '-t', '5', '-', 'TCP:10.0.0.2:7'], { input: 'kernel tcp\n'.repeat(1000) });
      t.is(tcp.stdout.length, 11_000);
    } finally {
      t.is(await u.stop(), 0, JSON.stringify(u.output()));
    }
  });

  test.serial('ping on unix --net direct: the unikernel pings the kernel', async (t) => {
    const { args, buildDir } = exampleArgs('ping');
    await configureAndBuild(args, ['-t', 'unix', `--interface=${TAP}`]);
    const r = await run(inNs[0]!, [...inNs.slice(1), process.execPath, `${buildDir}/main.mjs`, '10.0.0.1', '--count=2', '--interval=10ms']);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /64 bytes from 10\.0\.0\.1: icmp_seq=2 ttl=64 time=[\d.]+ ms/);
  });

  test.serial('static-website on unix --net direct: curl from the kernel side', async (t) => {
    const { args, buildDir } = exampleArgs('static-website');
    await configureAndBuild(args, ['-t', 'unix', `--interface=${TAP}`, '--port=8080']);
    const u = start(buildDir, [], inNs);
    try {
      await u.waitFor(/serving on port 8080/);
      const page = await run(inNs[0]!, [...inNs.slice(1), 'curl', '-sf', '--max-time', '10', 'http://10.0.0.2:8080/']);
      t.is(page.code, 0, page.stderr);
      t.regex(page.stdout, /Hello from a Morgana unikernel/);
      const range = await run(inNs[0]!, [...inNs.slice(1), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-r', '0-9', '--max-time', '10', 'http://10.0.0.2:8080/robots.txt']);
      t.is(range.stdout, '206');
    } finally {
      t.is(await u.stop(), 0);
    }
  });

  test.serial('a device that cannot connect (a TAP name the kernel refuses) stops the boot: exit 1 with the reason', async (t) => {
    const { args } = exampleArgs('ping');
    await configureAndBuild(args, ['-t', 'unix']);
    // Interface names are at most 15 bytes.
    const r = await morgana(['run', ...args, '--', '--interface=an-interface-name-too-long', '10.0.0.1']);
    t.is(r.code, 1);
    t.regex(r.stderr, /boot failed/);
  });
}
