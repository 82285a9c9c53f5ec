/**
 * Issue 16 item 7 (left over): `morgana iperf3 --vnet` both ways without root. The server side
 * (`-s --vnet`) is reached through a port its vnet gateway forwards from 127.0.0.1; the client
 * side (`-c HOST --vnet`) connects to its gateway, which relays TCP and UDP to HOST:PORT on the
 * host. Measured here as nobody: Morgana's client against Morgana's server (vnet to vnet through
 * the host's loopback), and Morgana's client against Debian's `iperf3 -s` on 127.0.0.1.
 */
import test from 'ava';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { AS_NOBODY, canDropPrivileges, freePort, morgana, morganaAsNobody, nobodyDir, readableCopy } from './helpers/unikernel.js';

const hasIperf3 = spawnSync('iperf3', ['--version']).status === 0;
const asNobody = canDropPrivileges ? test.serial : test.skip;

interface Report {
  error?: string;
  start: { test_start: { protocol: string; reverse: number } };
  end: { sum_sent: { bytes: number }; sum_received: { bytes: number; packets?: number } };
}

/** Runs `morgana iperf3 -c 127.0.0.1 --vnet -p PORT -J …` as nobody and returns its JSON report. */
async function client(copy: { cli: string }, port: number, extra: string[]): Promise<Report> {
  const r = await morganaAsNobody(copy, ['iperf3', '-c', '127.0.0.1', '--vnet', '-p', String(port), '-J', ...extra], { cwd: nobodyDir(), timeoutMs: 90_000 });
  if (r.code !== 0) throw new Error(`morgana iperf3 -c … ${extra.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

/** Waits for `pattern` on a child's stderr. */
function stderrMatch(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${text}`)), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      text += d;
      const m = pattern.exec(text);
      if (m) clearTimeout(timer), resolve(m);
    });
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`exited ${code} before ${pattern}: ${text}`))));
  });
}

asNobody("iperf3 -c --vnet against Morgana's own iperf3 -s --vnet: TCP both ways and UDP, all without root", async (t) => {
  const copy = readableCopy();
  const server = spawn('setpriv', [...AS_NOBODY, process.execPath, copy.cli, 'iperf3', '-s', '--vnet', '-p', '0'], { cwd: nobodyDir(), stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => server.on('exit', resolve));
  try {
    const port = Number((await stderrMatch(server, /Server listening on 127\.0\.0\.1 port (\d+)/))[1]);
    const forward = await client(copy, port, ['-t', '2']);
    t.is(forward.error, undefined);
    t.is(forward.start.test_start.protocol, 'TCP');
    t.true(forward.end.sum_received.bytes > 0, JSON.stringify(forward.end.sum_received));
    const reverse = await client(copy, port, ['-t', '2', '-R']);
    t.is(reverse.start.test_start.reverse, 1);
    t.true(reverse.end.sum_received.bytes > 0, JSON.stringify(reverse.end.sum_received));
    // UDP: datagrams small enough for the virtual links (no fragmentation there).
    const udp = await client(copy, port, ['-t', '2', '-u', '-b', '10M', '-l', '1400']);
    t.is(udp.start.test_start.protocol, 'UDP');
    t.true((udp.end.sum_received.packets ?? 0) > 0, JSON.stringify(udp.end.sum_received));
    server.kill('SIGINT');
    t.is(await exited, 0);
  } finally {
    server.kill('SIGKILL');
  }
});

(canDropPrivileges && hasIperf3 ? test.serial : test.skip)("iperf3 -c --vnet measures Debian's iperf3 -s on 127.0.0.1 through the gateway: TCP and UDP, forward and -R", async (t) => {
  const copy = readableCopy();
  for (const extra of [['-t', '2'], ['-t', '2', '-R'], ['-t', '2', '-u', '-b', '20M', '-l', '1400'], ['-t', '2', '-u', '-b', '20M', '-l', '1400', '-R']]) {
    const port = await freePort();
    // Bounded by `timeout`: a worker that dies (an ava timeout) leaves no server behind for long.
    const kernel = spawn('timeout', ['120', 'iperf3', '-s', '-1', '--forceflush', '-B', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => kernel.on('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        let text = '';
        kernel.stdout!.on('data', (d: Buffer) => ((text += d), /Server listening/.test(text) && resolve()));
        void exited.then((code) => reject(new Error(`iperf3 -s exited ${code}: ${text}`)));
      });
      const report = await client(copy, port, extra);
      t.is(report.error, undefined);
      t.true(report.end.sum_received.bytes > 0, `${extra.join(' ')}: ${JSON.stringify(report.end.sum_received)}`);
      t.is(report.start.test_start.reverse, extra.includes('-R') ? 1 : 0);
      // The kernel's server ran the one test and exits cleanly.
      t.is(await exited, 0);
    } finally {
      kernel.kill('SIGTERM'); // timeout passes it on to iperf3 (a SIGKILL would orphan it)
    }
  }
});

test('iperf3 --vnet: a refused connection exits 1 saying so; --vnet takes no TAP options', async (t) => {
  const port = await freePort();
  const refused = await morgana(['iperf3', '-c', '127.0.0.1', '--vnet', '-p', String(port), '-t', '1']);
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, new RegExp(`vnet gateway: tcp 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
  const tap = await morgana(['iperf3', '-c', '127.0.0.1', '--vnet', '--tap', 'tap0']);
  t.is(tap.code, 64);
  t.regex(tap.stderr, /--vnet takes no --tap/);
  const zero = await morgana(['iperf3', '-c', '127.0.0.1', '--vnet', '-p', '0']);
  t.is(zero.code, 64);
  t.regex(zero.stderr, /bad port 0/);
});
