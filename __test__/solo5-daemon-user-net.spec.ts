/**
 * `morgana daemon deploy IMAGE --net service0=user -p …`: a unikernel on a user-mode network
 * under the daemon, whose gateway (host ports, outbound proxy) runs in the daemon process. The
 * tender is the gcc-built stub that execs a Morgana stack in Node as the guest on its TAP
 * (helpers/solo5-guest.mjs: HTTP on 80, UDP echo on 7); the peers are real (curl, Node sockets on
 * loopback, promtool for the metrics).
 *
 * Covered: deploy through the CLI, curl through the forwarded port (SHA-256 of the body), a UDP
 * forward, `ps` and `ps --json` showing the forwards and the gateway's addresses, `stats`, the
 * metrics of the user-mode link and its gateway, `restart` (same host port, new namespace, the old
 * one empty), the daemon stopping (the unikernel stopped with it, its port free) and starting
 * again (the unikernel started again on the same port), SIGKILL of the daemon (the tender dies
 * with it), `stop` (port bindable again, no process left in the namespace), a crash of the tender
 * (the same), a daemon running as uid 65534, and virtio (QEMU's tap netdev in the namespace).
 */
import test from 'ava';
import { type ChildProcessWithoutNullStreams, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DaemonUnikernelInfo, daemonRequest, daemonSnapshot, deployUnikernel, encodeManifest } from 'morgana';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';
import { alive, killAll } from './helpers/process.js';

const root = process.getuid?.() === 0;
const why = gccUnavailable() ?? (!root ? 'needs root (user namespaces and TAP devices for the namespaces the tests make)' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : undefined);
const skip = why ?? (spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true']).status === 0 ? undefined : 'user namespaces are not available');
const serial = skip ? test.serial.skip : test.serial;
const suffix = skip ? ` (skipped: ${skip})` : '';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-daemon-user-net-'));
const tunCopy = path.join(dir, 'tun');
const cli = path.resolve('dist/cli.js');
const guestScript = path.resolve('__test__/helpers/solo5-guest.mjs');
const daemons = new Set<ChildProcessWithoutNullStreams>();
const stray = new Set<number>();
let tender: string;
let image: string;
let virtio: string;
let fakeQemu: string;

/** Why uid 65534 cannot run a daemon here, if it cannot. */
function nobodyUnavailable(): string | undefined {
  if (skip) return skip;
  if (spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, '--version']).status !== 0) return 'uid 65534 cannot read this checkout (dist/cli.js)';
  execFileSync('mknod', [tunCopy, 'c', '10', '200']);
  chmodSync(tunCopy, 0o666);
  if (spawnSync('sh', ['-c', 'exec 3<>"$0"', tunCopy]).status !== 0) return `${tmpdir()} does not allow device nodes (nodev)`;
  return undefined;
}
const nobodyReason = nobodyUnavailable();
const asNobody = nobodyReason ? test.serial.skip : test.serial;

test.before(() => {
  if (skip) return;
  chmodSync(dir, 0o755);
  mkdirSync(path.join(dir, 'spt'));
  tender = buildStubTender(path.join(dir, 'spt'), 'solo5-spt', 2);
  image = buildImage(dir, path.join(dir, 'web.spt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
  virtio = buildImage(dir, path.join(dir, 'web.virtio'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(3, 1)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
  // A stand-in for QEMU: it reads the command line as QEMU does (the TAP of `-netdev tap,ifname=`,
  // `-kernel`, `-append`) and runs the stub tender on that TAP, which attaches to it by name as
  // QEMU's tap netdev does (TUNSETIFF on the existing device, inside the unikernel's namespace).
  fakeQemu = path.join(dir, 'qemu-fake');
  writeFileSync(
    fakeQemu,
    `#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -netdev) ifname=$(echo "$2" | sed -n 's/^tap,.*ifname=\\([^,]*\\).*$/\\1/p'); shift 2 ;;
    -kernel) kernel=$2; shift 2 ;;
    -append) append=$2; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$ifname" ] || { echo "qemu-fake: no -netdev tap,ifname=" >&2; exit 1; }
exec "$STUB_TENDER" --net:service0="$ifname" -- "$kernel" $append
`,
    { mode: 0o755 },
  );
});

test.after.always(() => {
  for (const d of daemons) d.kill('SIGKILL');
  killAll(stray);
  rmSync(dir, { recursive: true, force: true });
});

const guestEnv = { STUB_GUEST: guestScript, STUB_NODE: process.execPath };

interface Daemon {
  child: ChildProcessWithoutNullStreams;
  err: () => string;
  metrics: string;
}

/**
 * `morgana daemon --dir d --metrics 127.0.0.1:0`, resolved once it listens; `unprivileged`: as
 * uid 65534, in a private mount namespace whose /dev/net/tun is a 0666 copy of the device node
 * (this machine's is 0600; most distributions' is 0666), so the host is left as it is.
 */
async function startDaemon(d: string, unprivileged = false): Promise<Daemon> {
  const command = [process.execPath, cli, 'daemon', '--dir', d, '--metrics', '127.0.0.1:0'];
  const env = { ...process.env, ...guestEnv, STUB_TENDER: tender };
  const child = unprivileged
    ? spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /dev/net/tun && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"', tunCopy, ...command], { env, stdio: 'pipe' })
    : spawn(command[0]!, command.slice(1), { env, stdio: 'pipe' });
  daemons.add(child);
  child.once('exit', () => daemons.delete(child));
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const end = Date.now() + 60_000;
  while (!/metrics on (http:\S+)/.test(err)) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`daemon did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, err: () => err, metrics: /metrics on (http:\S+)/.exec(err)![1]! };
}

async function stopDaemon(daemon: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (daemon.child.exitCode !== null) return;
  const done = new Promise((r) => daemon.child.once('exit', r));
  daemon.child.kill(signal);
  await done;
}

function morgana(args: string[], env?: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000, ...(env ? { env } : {}) }, (error, stdout, stderr) => resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

async function ps(d: string): Promise<DaemonUnikernelInfo[]> {
  return (await daemonRequest(d, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[];
}

async function until(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the `n`-th "guest ready" line is in the unikernel's console log (which keeps every run's lines). */
async function guestReady(d: string, name: string, n: number): Promise<void> {
  const log = path.join(d, 'console', `${name}.log`);
  const count = (): number => (existsSync(log) ? (readFileSync(log, 'utf8').match(/guest ready on 10\.0\.2\.15/g) ?? []).length : 0);
  await until(`guest ready #${n} of ${name}`, () => count() >= n);
}

function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) i += createHash('sha256').update(`morgana ${block}`).digest().copy(out, i);
  return out;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function curl(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--fail', '-m', '60', url], { encoding: 'buffer', maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`curl ${url}: ${error.message} ${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

function udpAsk(port: number, text: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const send = () => s.send(text, port, '127.0.0.1');
    const retry = setInterval(send, 500);
    const timer = setTimeout(() => {
      clearInterval(retry);
      s.close();
      reject(new Error(`no UDP answer on ${port}`));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      clearInterval(retry);
      s.close();
      resolve(m.toString());
    });
    send();
  });
}

async function freePort(udp = false): Promise<number> {
  if (udp) {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const port = s.address().port;
    s.close();
    return port;
  }
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Whether the TCP port on loopback can be bound (nobody holds it). */
async function bindable(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function ticksNow(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * CLK_TCK);
}

/** Processes in the network namespace `inode` that started before `before` (its inode number is reused once freed). */
function processesIn(inode: string, before: number): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) !== inode) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) < before) found.push(`${entry}: ${readFileSync(`/proc/${entry}/cmdline`, 'latin1')}`);
    } catch {
      // gone
    }
  }
  return found;
}

async function gone(pid: number, timeoutMs = 30_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** The guest's pid and network namespace, from `ps`. */
async function tenderOf(d: string, name: string): Promise<{ pid: number; ns: string }> {
  const u = (await ps(d)).find((x) => x.name === name);
  if (!u?.pid) throw new Error(`${name} has no pid: ${JSON.stringify(u)}`);
  stray.add(u.pid);
  return { pid: u.pid, ns: readlinkSync(`/proc/${u.pid}/ns/net`) };
}

async function scrape(url: string): Promise<string> {
  const r = await fetch(url);
  return r.text();
}

function sample(body: string, metric: string, labels: string): number {
  const line = body.split('\n').find((l) => l.startsWith(`${metric}{${labels}} `));
  return line === undefined ? -1 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

serial(`daemon deploy --net service0=user -p: curl and UDP through the forwards, ps shows them, metrics count the link, restart, daemon restart, stop frees everything${suffix}`, async (t) => {
  const d = path.join(dir, 'd1');
  let daemon = await startDaemon(d);
  const [httpPort, udpPort] = [await freePort(), await freePort(true)];

  const dep = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-p', `${httpPort}:80`, '--forward', `udp:127.0.0.1:${udpPort}:7`]);
  t.is(dep.status, 0, dep.stderr);
  t.regex(dep.stdout, /^web started \(pid \d+\)$/m);
  t.regex(dep.stdout, /^web: service0: user-mode network: guest 10\.0\.2\.15\/24, gateway 10\.0\.2\.2, DNS 10\.0\.2\.3$/m);
  t.regex(dep.stdout, new RegExp(`^web: service0: forwarding tcp 127\\.0\\.0\\.1:${httpPort} -> 10\\.0\\.2\\.15:80$`, 'm'));
  t.regex(dep.stdout, new RegExp(`^web: service0: forwarding udp 127\\.0\\.0\\.1:${udpPort} -> 10\\.0\\.2\\.15:7$`, 'm'));
  await guestReady(d, 'web', 1);
  const first = await tenderOf(d, 'web');
  t.not(first.ns, readlinkSync('/proc/self/ns/net'));

  // Through the daemon's gateway: 2 MB over HTTP, SHA-256 equal, and a UDP echo.
  const body = await curl(`http://127.0.0.1:${httpPort}/bytes/2000000`);
  t.is(body.length, 2_000_000);
  t.is(sha(body), sha(pattern(2_000_000)));
  t.is(await udpAsk(udpPort, 'hello udp'), 'echo:hello udp');

  // ps: the forwards and the gateway's addresses, as JSON and in the table.
  const row = (await ps(d)).find((u) => u.name === 'web')!;
  t.deepEqual(row.networks, [
    {
      device: 'service0',
      mode: 'user',
      guest: '10.0.2.15/24',
      gateway: '10.0.2.2',
      dns: '10.0.2.3',
      forwards: [
        { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: httpPort, guestAddress: '10.0.2.15', guestPort: 80 },
        { protocol: 'udp', hostAddress: '127.0.0.1', hostPort: udpPort, guestAddress: '10.0.2.15', guestPort: 7 },
      ],
    },
  ]);
  const json = JSON.parse((await morgana(['daemon', 'ps', '--json', '--dir', d])).stdout) as DaemonUnikernelInfo[];
  t.deepEqual(json[0]!.networks, row.networks);
  const table = (await morgana(['daemon', 'ps', '--dir', d])).stdout;
  t.is((await morgana(['ps', '--dir', d])).stdout, table);
  t.regex(table, /^NAME\s+STATE\s+PID\s+TARGET\s+RESTARTS\s+PORTS\s+LAST EXIT$/m);
  t.regex(table, new RegExp(`^web\\s+running\\s+${first.pid}\\s+spt\\s+0\\s+127\\.0\\.0\\.1:${httpPort}->80/tcp,127\\.0\\.0\\.1:${udpPort}->7/udp\\s`, 'm'));

  // stats and metrics: the user-mode link's counters (the guest sent the 2 MB body) and the gateway's.
  const stats = JSON.parse((await morgana(['daemon', 'stats', 'web', '--json', '--dir', d])).stdout) as { nets: Record<string, { tap: string; rxBytes: number; gateway: { accepted: { forwardedTcp: number; forwardedUdp: number } } }> };
  t.is(stats.nets.service0!.tap, 'user');
  t.true(stats.nets.service0!.rxBytes > 2_000_000, String(stats.nets.service0!.rxBytes));
  t.is(stats.nets.service0!.gateway.accepted.forwardedTcp, 1);
  t.is(stats.nets.service0!.gateway.accepted.forwardedUdp, 1);
  t.regex((await morgana(['daemon', 'stats', 'web', '--dir', d])).stdout, /^ {2}service0 \(user\): guest rx [1-9]\d* B, tx [1-9]\d* B; gateway: \d+ TCP connections, \d+ UDP flows open, refused tcp 0, udp 0$/m);
  const scrape1 = await scrape(daemon.metrics);
  const at = 'name="web",device="service0",tap="user"';
  const sent1 = sample(scrape1, 'morgana_unikernel_network_transmit_bytes_total', at);
  t.true(sent1 > 2_000_000, scrape1);
  t.true(sample(scrape1, 'morgana_unikernel_network_receive_packets_total', at) > 0);
  t.is(sample(scrape1, 'morgana_unikernel_gateway_accepted_total', 'name="web",device="service0",protocol="tcp",direction="forwarded"'), 1);
  t.is(sample(scrape1, 'morgana_unikernel_gateway_accepted_total', 'name="web",device="service0",protocol="udp",direction="forwarded"'), 1);
  await curl(`http://127.0.0.1:${httpPort}/bytes/100000`);
  const scrape2 = await scrape(daemon.metrics);
  t.true(sample(scrape2, 'morgana_unikernel_network_transmit_bytes_total', at) > sent1 + 100_000);
  t.is(sample(scrape2, 'morgana_unikernel_gateway_accepted_total', 'name="web",device="service0",protocol="tcp",direction="forwarded"'), 2);
  // The web view's snapshot: the link's counters (its throughput series) and the forwards.
  const snap = (await daemonSnapshot(d)).unikernels.find((u) => u.name === 'web')!;
  t.is(snap.nets[0]!.tap, 'user');
  t.true(snap.nets[0]!.rxBytes > 2_000_000);
  t.deepEqual(snap.ports, [`127.0.0.1:${httpPort}->80/tcp`, `127.0.0.1:${udpPort}->7/udp`]);
  const prom = path.join(dir, 'metrics.txt');
  writeFileSync(prom, scrape2);
  const check = spawnSync('sh', ['-c', 'promtool check metrics < "$0"', prom], { encoding: 'utf8' });
  if (check.error === undefined && check.status !== 127) t.is(check.status, 0, check.stdout + check.stderr);

  // restart: a new namespace, the same host port (the gateway stays), the old namespace empty.
  const restartedAt = ticksNow();
  t.is((await morgana(['daemon', 'restart', 'web', '--dir', d])).status, 0);
  await guestReady(d, 'web', 2);
  const second = await tenderOf(d, 'web');
  t.not(second.pid, first.pid);
  t.true(await gone(first.pid));
  t.deepEqual(processesIn(first.ns, restartedAt), []);
  t.is((await curl(`http://127.0.0.1:${httpPort}/`)).toString(), 'hello from the guest\n');

  // The daemon stops: the unikernel (whose link lived in it) is stopped too and its port freed ...
  const stoppedAt = ticksNow();
  await stopDaemon(daemon);
  t.true(await gone(second.pid));
  t.deepEqual(processesIn(second.ns, stoppedAt), []);
  t.true(await bindable(httpPort));
  // ... and started again, on the same port, by the next daemon.
  daemon = await startDaemon(d);
  await guestReady(d, 'web', 3);
  const third = await tenderOf(d, 'web');
  const again = (await ps(d)).find((u) => u.name === 'web')!;
  t.is(again.state, 'running');
  t.false(again.adopted);
  t.deepEqual(again.networks, row.networks);
  t.is(sha(await curl(`http://127.0.0.1:${httpPort}/bytes/300000`)), sha(pattern(300_000)));
  const events = (await morgana(['daemon', 'events', 'web', '--json', '--dir', d])).stdout;
  t.regex(events, /"type":"suspended"/);
  t.regex(events, /"type":"restored","name":"web","message":"started again \(its user-mode network lives in the daemon\)/);

  // SIGKILL of the daemon: the tender dies with it (nothing unreachable left running), the port is free.
  const killedAt = ticksNow();
  await stopDaemon(daemon, 'SIGKILL');
  t.true(await gone(third.pid));
  t.deepEqual(processesIn(third.ns, killedAt), []);
  t.true(await bindable(httpPort));
  daemon = await startDaemon(d);
  await guestReady(d, 'web', 4);
  const fourth = await tenderOf(d, 'web');
  t.is((await curl(`http://127.0.0.1:${httpPort}/`)).toString(), 'hello from the guest\n');

  // stop: the port is bindable again and no process is left in the namespace.
  const destroyedAt = ticksNow();
  const stop = await morgana(['daemon', 'stop', 'web', '--dir', d]);
  t.is(stop.status, 0, stop.stderr);
  t.true(await gone(fourth.pid));
  t.deepEqual(processesIn(fourth.ns, destroyedAt), []);
  t.true(await bindable(httpPort));
  t.deepEqual(await ps(d), []);
  t.false(/\bmbr0\b|\bmgw0\b/.test(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' })));
  await stopDaemon(daemon);
});

serial(`daemon deploy --net NAME=user: a taken port, bad forwards and a policy without "user" in its bridges are refused, nothing is left running${suffix}`, async (t) => {
  const d = path.join(dir, 'd2');
  const daemon = await startDaemon(d);
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const taken = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-p', `${port}:80`]);
  t.is(taken.status, 1);
  t.regex(taken.stderr, new RegExp(`ERR_FORWARD: .*${port}`));
  t.deepEqual(await ps(d), []);
  // Over the socket, forwards are checked as the command line checks them.
  const bad = daemonRequest(d, { cmd: 'deploy', options: { image, tender, userNets: [{ name: 'service0', forwards: [{ protocol: 'sctp', hostAddress: '127.0.0.1', hostPort: 1, guestPort: 80 }] }] } as never });
  await t.throwsAsync(bad, { code: 'ERR_SOLO5_BAD_OPTION', message: /protocol must be tcp or udp/ });
  const badPort = daemonRequest(d, { cmd: 'deploy', options: { image, tender, userNets: [{ name: 'service0', forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 70000, guestPort: 80 }] }] } as never });
  await t.throwsAsync(badPort, { code: 'ERR_SOLO5_BAD_OPTION', message: /hostPort must be 0 to 65535/ });
  const relative = daemonRequest(d, { cmd: 'deploy', options: { image, tender, userNets: [{ name: 'service0', pcap: 'link.pcap' }] } });
  await t.throwsAsync(relative, { code: 'ERR_SOLO5_BAD_OPTION', message: /pcap 'link\.pcap' must be an absolute path/ });
  t.deepEqual(await ps(d), []);
  // Under a policy restricting bridges, a user-mode network (a way to the host) needs `user` listed.
  t.is((await morgana(['daemon', 'policy', 'set', 'tenant', '--bridges', 'br0', '--dir', d])).status, 0);
  const refused = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'tenant:web', '--net', 'service0=user']);
  t.is(refused.status, 1);
  t.regex(refused.stderr, /ERR_DAEMON_POLICY: 'tenant:web' refused by the policy of 'tenant': bridge user not allowed \(allowed bridges br0\)/);
  t.is((await morgana(['daemon', 'policy', 'set', 'tenant', '--bridges', 'br0,user', '--dir', d])).status, 0);
  const allowed = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'tenant:web', '--net', 'service0=user']);
  t.is(allowed.status, 0, allowed.stderr);
  const { pid } = await tenderOf(d, 'tenant:web');
  t.is((await morgana(['daemon', 'stop', 'tenant:web', '--dir', d])).status, 0);
  t.true(await gone(pid));
  await stopDaemon(daemon);
});

asNobody(`as uid 65534: the daemon runs the gateway, the tender gets user and network namespaces; curl through the forward, stop frees the port${nobodyReason ? ` (skipped: ${nobodyReason})` : ''}`, async (t) => {
  const d = path.join(dir, 'd3');
  mkdirSync(d, { mode: 0o700 });
  chownSync(d, 65534, 65534);
  const daemon = await startDaemon(d, true);
  t.teardown(() => void daemon.child.kill('SIGKILL'));
  const port = await freePort();
  // The client is root here; the daemon's socket (mode 0600, uid 65534) lets root in.
  const dep = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-p', `${port}:80`]);
  t.is(dep.status, 0, dep.stderr + daemon.err());
  await guestReady(d, 'web', 1);
  const { pid, ns } = await tenderOf(d, 'web');
  t.regex(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+65534\s/m);
  t.not(readlinkSync(`/proc/${pid}/ns/user`), readlinkSync('/proc/self/ns/user'));
  t.not(ns, readlinkSync('/proc/self/ns/net'));
  t.regex(readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8'), /^Uid:\s+65534\s/m);
  t.is(sha(await curl(`http://127.0.0.1:${port}/bytes/1000000`)), sha(pattern(1_000_000)));
  t.regex((await morgana(['daemon', 'ps', '--dir', d])).stdout, new RegExp(`^web\\s+running\\s+${pid}\\s+spt\\s+0\\s+127\\.0\\.0\\.1:${port}->80/tcp\\s`, 'm'));
  const stoppedAt = ticksNow();
  t.is((await morgana(['daemon', 'stop', 'web', '--dir', d])).status, 0);
  t.true(await gone(pid));
  t.deepEqual(processesIn(ns, stoppedAt), []);
  t.true(await bindable(port));
  await stopDaemon(daemon);
});

serial(`virtio with --net service0=user under the daemon: QEMU's tap netdev attaches inside the namespace (a stand-in QEMU running the stub guest), curl through a port the system picked, kept when the daemon starts again${suffix}`, async (t) => {
  const d = path.join(dir, 'd4');
  let daemon = await startDaemon(d);
  t.teardown(() => void daemon.child.kill('SIGKILL'));
  const dep = await morgana(['daemon', 'deploy', virtio, '--dir', d, '--tender', fakeQemu, '--accel', 'tcg', '--name', 'vweb', '--net', 'service0=user', '-p', '0:80']);
  t.is(dep.status, 0, dep.stderr);
  const port = Number(/forwarding tcp 127\.0\.0\.1:(\d+) -> 10\.0\.2\.15:80/.exec(dep.stdout)?.[1]);
  t.true(port > 0, dep.stdout);
  await guestReady(d, 'vweb', 1);
  const log = readFileSync(path.join(d, 'console', 'vweb.log'), 'utf8');
  t.regex(log, /\[service0\] attached to tap0/);
  t.regex(log, /Command line is: '--ipv4=10\.0\.2\.15\/24 --ipv4-gateway=10\.0\.2\.2'/);
  const first = await tenderOf(d, 'vweb');
  t.not(first.ns, readlinkSync('/proc/self/ns/net'));
  t.is(sha(await curl(`http://127.0.0.1:${port}/bytes/500000`)), sha(pattern(500_000)));
  const row = (await ps(d)).find((u) => u.name === 'vweb')!;
  t.is(row.target, 'virtio');
  t.is(row.networks?.[0]?.forwards[0]?.hostPort, port);
  // The next daemon starts it again on the port the system picked the first time.
  await stopDaemon(daemon);
  t.true(await gone(first.pid));
  daemon = await startDaemon(d);
  await guestReady(d, 'vweb', 2);
  const { pid, ns } = await tenderOf(d, 'vweb');
  t.is((await ps(d))[0]!.networks?.[0]?.forwards[0]?.hostPort, port);
  t.is((await curl(`http://127.0.0.1:${port}/`)).toString(), 'hello from the guest\n');
  const stoppedAt = ticksNow();
  t.is((await morgana(['daemon', 'stop', 'vweb', '--dir', d])).status, 0);
  t.true(await gone(pid));
  t.deepEqual(processesIn(ns, stoppedAt), []);
  t.true(await bindable(port));
  await stopDaemon(daemon);
});

const qemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).stdout.trim();
(qemu && !skip ? test.serial : test.serial.skip)(`virtio with --net service0=user: the real QEMU opens its tap netdev in the namespace, both modes (it then stops at the test image, which is no bootable kernel)${qemu ? suffix : ' (skipped: no qemu-system-x86_64)'}`, async (t) => {
  for (const namespace of ['net', 'user'] as const) {
    const uk = await deployUnikernel({ image: virtio, tender: qemu, accel: 'tcg', namespace, userNets: [{ name: 'service0' }] });
    t.teardown(() => void uk.stop({ timeoutMs: 1000 }));
    t.true(uk.plan.command.includes('tap,id=n0,ifname=tap0,script=no,downscript=no'));
    const exit = await uk.exited;
    const lines = uk.console().map((l) => l.line).join(' | ');
    // QEMU sets up its netdevs before it loads the kernel: an error about the kernel means the TAP
    // attached (a failing one says "could not configure /dev/net/tun (tap0)").
    t.regex(exit.description, /QEMU failed to start \(tcg\): .*kernel/i, lines);
    t.notRegex(lines, /tun|tap0/, namespace);
  }
});

serial(`update keeps the host port; a crash of the tender under the daemon: the gateway closes, the host port is free, the namespace empty, ps shows no forwards${suffix}`, async (t) => {
  const d = path.join(dir, 'd5');
  const daemon = await startDaemon(d);
  t.teardown(() => void daemon.child.kill('SIGKILL'));
  const port = await freePort();
  const pcap = path.join(dir, 'd5-link.pcap');
  const dep = await morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-p', `${port}:80`, '--pcap', pcap]);
  t.is(dep.status, 0, dep.stderr);
  await guestReady(d, 'web', 1);
  const before = await tenderOf(d, 'web');
  // update swaps the image: the old run's gateway lets go of the port, the new one binds it again.
  const copy = path.join(dir, 'web-v2.spt');
  copyFileSync(image, copy);
  const updatedAt = ticksNow();
  const up = await morgana(['daemon', 'update', 'web', copy, '--dir', d, '--boot-ms', '500']);
  t.is(up.status, 0, up.stderr);
  await guestReady(d, 'web', 2);
  const { pid, ns } = await tenderOf(d, 'web');
  t.not(pid, before.pid);
  t.deepEqual(processesIn(before.ns, updatedAt), []);
  t.is((await ps(d))[0]!.image, copy);
  t.is((await curl(`http://127.0.0.1:${port}/`)).toString(), 'hello from the guest\n');
  const crashedAt = ticksNow();
  process.kill(pid, 'SIGSEGV');
  await until('the exit', async () => (await ps(d))[0]!.state === 'exited');
  const row = (await ps(d))[0]!;
  t.regex(row.lastExit!.description, /SIGSEGV/);
  t.is(row.networks, undefined);
  t.true(await gone(pid));
  t.deepEqual(processesIn(ns, crashedAt), []);
  t.true(await bindable(port));
  t.notRegex((await morgana(['daemon', 'ps', '--dir', d])).stdout, /PORTS/);
  // --pcap (a path the client made absolute) recorded the link of the run after the update: its one
  // connection, answered by the guest.
  const answers = execFileSync('tshark', ['-r', pcap, '-Y', 'tcp.srcport == 80 && tcp.flags.syn == 1 && tcp.flags.ack == 1', '-T', 'fields', '-e', 'ip.src'], { encoding: 'utf8' }).trim().split('\n');
  t.deepEqual(answers, ['10.0.2.15']);
  // An exited unikernel is not started again by the next daemon.
  await stopDaemon(daemon);
  const next = await startDaemon(d);
  t.teardown(() => void next.child.kill('SIGKILL'));
  t.like((await ps(d))[0], { name: 'web', state: 'exited' });
  t.is((await morgana(['daemon', 'stop', 'web', '--dir', d])).status, 0);
  t.deepEqual(await ps(d), []);
  await stopDaemon(next);
});

serial(`morgana deploy -d --net service0=user -p: starts a daemon, which runs the unikernel and its gateway; morgana ps shows the forward, morgana stop frees the port${suffix}`, async (t) => {
  const d = path.join(dir, 'd6');
  const env = { ...process.env, ...guestEnv, MORGANA_DAEMON_DIR: d };
  const port = await freePort();
  const dep = await morgana(['deploy', image, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-p', `${port}:80`, '-d'], env);
  const daemonPid = Number(/started a daemon \(pid (\d+)\)/.exec(dep.stderr)?.[1]);
  if (daemonPid > 0) stray.add(daemonPid);
  t.is(dep.status, 0, dep.stderr);
  t.true(daemonPid > 0, dep.stderr);
  t.regex(dep.stdout, new RegExp(`^web: service0: forwarding tcp 127\\.0\\.0\\.1:${port} -> 10\\.0\\.2\\.15:80$`, 'm'));
  t.regex(dep.stderr, /web runs under the daemon; see morgana ps/);
  await guestReady(d, 'web', 1);
  const { pid, ns } = await tenderOf(d, 'web');
  t.is(sha(await curl(`http://127.0.0.1:${port}/bytes/700000`)), sha(pattern(700_000)));
  t.regex((await morgana(['ps'], env)).stdout, new RegExp(`^web\\s+running\\s+${pid}\\s+spt\\s+0\\s+127\\.0\\.0\\.1:${port}->80/tcp\\s`, 'm'));
  // A second deploy -d finds the daemon running; --log and --dry-run do not go with -d.
  t.is((await morgana(['deploy', image, '--tender', tender, '--name', 'web', '--net', 'service0=user', '-d'], env)).status, 1);
  t.is((await morgana(['deploy', image, '--tender', tender, '--net', 'service0=user', '-d', '--log', 'x.log'], env)).status, 64);
  const stoppedAt = ticksNow();
  t.is((await morgana(['stop', 'web'], env)).status, 0);
  t.true(await gone(pid));
  t.deepEqual(processesIn(ns, stoppedAt), []);
  t.true(await bindable(port));
  process.kill(daemonPid, 'SIGTERM');
  t.true(await gone(daemonPid));
});
