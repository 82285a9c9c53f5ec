/**
 * `morgana deploy --net NAME=user`: a Solo5 tender on Morgana's user-mode gateway. The tender is
 * the gcc-built stub (it parses its argv like solo5-spt and attaches its TAP by name, as the
 * real tenders do), which execs a Morgana stack in Node as the "unikernel" on that TAP with the
 * boot arguments it was given (helpers/solo5-guest.mjs: HTTP on 80, UDP echo on 7, optional
 * outbound connections). Host-side peers are real: curl, Node sockets on loopback.
 *
 * Unprivileged runs use `setpriv --reuid=65534` inside a private mount namespace whose
 * /dev/net/tun is a 0666 copy of the device node (this machine's is 0600; most distributions'
 * is 0666), so the host is left as it is. No traffic leaves loopback and the namespaces the
 * deployments make.
 */
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DeployOptions, MorganaError, type Unikernel, deployUnikernel, encodeManifest, planDeployment } from 'morgana';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';

const root = process.getuid?.() === 0;
const why = gccUnavailable() ?? (!root ? 'needs root (to make the unprivileged user and the namespaces the tests use)' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : undefined);
const userns = why ? '' : spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true']).status === 0 ? '' : 'user namespaces are not available';
const skip = why ?? (userns || undefined);
const serial = skip ? test.serial.skip : test.serial;
const suffix = skip ? ` (skipped: ${skip})` : '';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-user-net-'));
// A 0666 copy of the TUN device node, bind-mounted over /dev/net/tun in a private mount namespace.
const tunCopy = path.join(dir, 'tun');

/** Why uid 65534 cannot run the unprivileged test here, if it cannot. */
function nobodyUnavailable(): string | undefined {
  if (skip) return skip;
  if (spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.resolve('dist/cli.js'), '--version']).status !== 0) {
    return 'uid 65534 cannot read this checkout (dist/cli.js)';
  }
  execFileSync('mknod', [tunCopy, 'c', '10', '200']);
  chmodSync(tunCopy, 0o666);
  if (spawnSync('sh', ['-c', 'exec 3<>"$0"', tunCopy]).status !== 0) return `${tmpdir()} does not allow device nodes (nodev)`;
  return undefined;
}
const nobodyReason = nobodyUnavailable();
const asNobody = nobodyReason ? test.serial.skip : test.serial;

test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const cli = path.resolve('dist/cli.js');
const guestScript = path.resolve('__test__/helpers/solo5-guest.mjs');
let tender: string;
let image: string;
let virtio: string;

test.before(() => {
  if (skip) return;
  chmodSync(dir, 0o755);
  mkdirSync(path.join(dir, 'spt'));
  tender = buildStubTender(path.join(dir, 'spt'), 'solo5-spt', 2);
  const note = (target: number, version: number, net = true) => ({
    abi: elfNote('Solo5', NT_ABI, abiDesc(target, version)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest(net ? [{ name: 'service0', type: 'NET_BASIC' }] : [])),
  });
  image = buildImage(dir, path.join(dir, 'web.spt'), note(2, 2));
  virtio = buildImage(dir, path.join(dir, 'plain.virtio'), note(3, 1, false));
});

/** The deterministic bytes the guest serves at /bytes/N. */
function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) i += createHash('sha256').update(`morgana ${block}`).digest().copy(out, i);
  return out;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function guestEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { STUB_GUEST: guestScript, STUB_NODE: process.execPath, ...extra };
}

/** curl, asynchronously: the gateway of a library deployment runs on this event loop. */
function curl(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--fail', '-m', '60', url], { encoding: 'buffer', maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`curl ${url}: ${error.message} ${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

function udpAsk(port: number, text: string, timeoutMs = 10_000): Promise<string> {
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

/** A free loopback TCP port (bound and released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Host services the guest connects out to: TCP answers "pong <sha256 of what it got>", UDP "pong:<datagram>". */
async function loopbackServices(t: ExecutionContext): Promise<{ tcp: number; udp: number }> {
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    const chunks: Buffer[] = [];
    c.on('data', (d) => chunks.push(d));
    c.on('end', () => c.end(`pong ${sha(Buffer.concat(chunks))}\n`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(Buffer.concat([Buffer.from('pong:'), m]), r.port, r.address));
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    server.close();
    udp.close();
  });
  return { tcp: (server.address() as net.AddressInfo).port, udp: udp.address().port };
}

interface Cli {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

/** Runs `morgana deploy …`, as nobody (in a mount namespace with a usable /dev/net/tun) when `unprivileged`. */
function deployCli(args: string[], env: Record<string, string>, unprivileged: boolean): Cli {
  const command = [process.execPath, cli, 'deploy', ...args];
  const child = unprivileged
    ? spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /dev/net/tun && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"', tunCopy, ...command], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(command[0]!, command.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    async waitFor(re, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      while (!re.test(out + err)) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`waiting for ${re}:\nstdout: ${out}\nstderr: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** The process ids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // task gone
    }
  }
  return out;
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** Now, in clock ticks since boot (the unit of a process's start time in /proc/PID/stat). */
function ticksNow(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * CLK_TCK);
}

/**
 * The processes in the network namespace `inode` (`net:[…]`) that started before `before`
 * (ticks since boot): a namespace's inode number is reused once it is freed, so a process
 * started later with the same number is in another namespace (another test's, or the next run's).
 */
function processesIn(inode: string, before: number): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) !== inode) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const started = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      if (started < before) found.push(`${entry}: ${readFileSync(`/proc/${entry}/cmdline`, 'latin1')}`);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

async function gone(pid: number, timeoutMs = 20_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!existsSync(`/proc/${pid}`)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Whether a TCP port on loopback can be bound again (the deployment released it). */
async function bindable(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

asNobody(`as an unprivileged user: a forwarded TCP port (curl), a UDP forward and outbound TCP and UDP to loopback services${nobodyReason ? ` (skipped: ${nobodyReason})` : ''}`, async (t) => {
  const services = await loopbackServices(t);
  const [httpPort, udpPort] = [await freePort(), await freePort()];
  const run = deployCli(
    [image, '--tender', tender, '--net', 'service0=user', '-p', `${httpPort}:80`, '--forward', `udp:127.0.0.1:${udpPort}:7`],
    guestEnv({ GUEST_TCP_TO: `10.0.2.2:${services.tcp}`, GUEST_UDP_TO: `10.0.2.2:${services.udp}` }),
    true,
  );
  t.teardown(() => void run.child.kill('SIGKILL'));
  await run.waitFor(/guest ready on 10\.0\.2\.15/);
  t.regex(run.err(), /service0: user-mode network: guest 10\.0\.2\.15\/24, gateway 10\.0\.2\.2, DNS 10\.0\.2\.3/);
  t.regex(run.err(), new RegExp(`forwarding tcp 127\\.0\\.0\\.1:${httpPort} -> 10\\.0\\.2\\.15:80`));
  // The boot arguments MirageOS takes, from the gateway's addresses.
  t.regex(run.out(), /Command line is: '--ipv4=10\.0\.2\.15\/24 --ipv4-gateway=10\.0\.2\.2'/);
  // The deploying process and the tender run as nobody; the tender in namespaces of its own.
  const tenderPid = childrenOf(run.child.pid!).flatMap((p) => [p, ...childrenOf(p)]).find((p) => readFileSync(`/proc/${p}/cmdline`, 'latin1').includes('solo5-guest.mjs'));
  t.truthy(tenderPid);
  t.regex(readFileSync(`/proc/${tenderPid}/status`, 'utf8'), /^Uid:\s+65534\s/m);
  t.not(readlinkSync(`/proc/${tenderPid}/ns/user`), readlinkSync('/proc/self/ns/user'));
  t.not(readlinkSync(`/proc/${tenderPid}/ns/net`), readlinkSync('/proc/self/ns/net'));

  t.is((await curl(`http://127.0.0.1:${httpPort}/`)).toString(), 'hello from the guest\n');
  const body = await curl(`http://127.0.0.1:${httpPort}/bytes/3000000`);
  t.is(body.length, 3_000_000);
  t.is(sha(body), sha(pattern(3_000_000)));
  t.is(await udpAsk(udpPort, 'hello udp'), 'echo:hello udp');

  await run.waitFor(/outbound udp: /);
  await run.waitFor(/outbound tcp: /);
  t.regex(run.out(), new RegExp(`outbound tcp: pong ${sha(Buffer.from('ping from the guest\n'))}`));
  t.regex(run.out(), /outbound udp: pong:ping/);

  run.child.kill('SIGTERM');
  t.is(await run.exited, 0, run.err());
  t.true(await gone(tenderPid!));
  t.true(await bindable(httpPort));
});

async function deployed(t: ExecutionContext, options: Partial<DeployOptions> & { env?: Record<string, string> }): Promise<Unikernel> {
  const uk = await deployUnikernel({ image, tender, ...options, env: { ...process.env, ...guestEnv(options.env) } } as DeployOptions);
  t.teardown(() => void uk.stop({ timeoutMs: 1000 }));
  const end = Date.now() + 60_000;
  while (!uk.console().some((l) => /guest ready/.test(l.line))) {
    if (Date.now() > end || !uk.running) throw new Error(`guest not ready: ${uk.console().map((l) => l.line).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return uk;
}

for (const namespace of ['net', 'user'] as const) {
  serial(`as root, namespace '${namespace}': forwarded TCP, the gateway's counters, and nothing left after stop${suffix}`, async (t) => {
    const uk = await deployed(t, { namespace, userNets: [{ name: 'service0', forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 80 }] }], env: { GUEST_PING: '1' } });
    const gw = uk.gateways[0]!;
    const port = gw.forwards[0]!.hostPort;
    const body = await curl(`http://127.0.0.1:${port}/bytes/200000`);
    t.is(sha(body), sha(pattern(200_000)));
    t.is(gw.stats().accepted.forwardedTcp, 1);
    t.true(gw.stats().link.rxFrames > 100);
    // The gateway answers the guest's ARP and ping.
    for (let i = 0; i < 200 && !uk.console().some((l) => l.line.startsWith('ping ')); i++) await new Promise((r) => setTimeout(r, 50));
    t.true(uk.console().some((l) => l.line === 'ping 10.0.2.2: reply from 10.0.2.2'), uk.console().map((l) => l.line).join(' | '));
    t.true(gw.stack.stats().icmp.echoRepliesSent >= 1, JSON.stringify(gw.stack.stats().icmp));
    if (namespace === 'net') {
      // A restart makes a new namespace; the gateway (and its host port) carries on with the new link.
      const [firstPid, firstNs, restartedAt] = [uk.pid!, readlinkSync(`/proc/${uk.pid}/ns/net`), ticksNow()];
      await uk.restart({ timeoutMs: 2000 });
      const end = Date.now() + 60_000;
      while (uk.console().filter((l) => /guest ready/.test(l.line)).length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      t.not(uk.pid, firstPid);
      t.true(await gone(firstPid));
      t.deepEqual(processesIn(firstNs, restartedAt), []);
      t.is((await curl(`http://127.0.0.1:${port}/`)).toString(), 'hello from the guest\n');
    }
    const pid = uk.pid!;
    const ns = readlinkSync(`/proc/${pid}/ns/net`);
    t.not(ns, readlinkSync('/proc/self/ns/net'));
    if (namespace === 'user') t.not(readlinkSync(`/proc/${pid}/ns/user`), readlinkSync('/proc/self/ns/user'));
    else t.is(readlinkSync(`/proc/${pid}/ns/user`), readlinkSync('/proc/self/ns/user'));
    // The tender's TAP and the bridge are in its namespace, not on the host.
    const links = execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-br', 'link'], { encoding: 'utf8' });
    t.regex(links, /^tap0\s/m);
    t.regex(links, /^mbr0\s/m);
    t.false(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }).includes('mbr0'));
    const stoppedAt = ticksNow();
    t.like(await uk.stop(), { kind: 'stopped' });
    t.true(await gone(pid));
    t.deepEqual(processesIn(ns, stoppedAt), []);
    t.true(await bindable(port));
  });
}

serial(`a host that refuses the guest's outbound connection: the guest gets a RST, and the gateway says why on the unikernel's console${suffix}`, async (t) => {
  // A loopback port nothing listens on (the gateway address stands for the host's 127.0.0.1).
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const uk = await deployed(t, { userNets: [{ name: 'service0' }], env: { GUEST_TCP_TO: `10.0.2.2:${closed}` } });
  const end = Date.now() + 30_000;
  const said = (re: RegExp) => uk.console().some((l) => re.test(l.line));
  while (!(said(/outbound tcp failed/) && said(/^morgana: service0: gateway:/)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  const lines = uk.console().map((l) => `${l.stream} ${l.line}`);
  t.true(said(/outbound tcp failed/), lines.join(' | '));
  t.true(
    lines.includes(`stderr morgana: service0: gateway: 10.0.2.2:${closed} → 127.0.0.1:${closed}: connect ECONNREFUSED 127.0.0.1:${closed}`),
    lines.join(' | '),
  );
  t.is(uk.gateways[0]!.stats().refused.hostRefusedTcp, 1);
});

serial(`the gateway's limits: connections, UDP flows, outbound policy; each refusal counted${suffix}`, async (t) => {
  const fwd = (protocol: 'tcp' | 'udp', guestPort: number) => ({ protocol, hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort });
  // The guest tries 192.0.2.1 (TEST-NET-1); with outbound off, nothing is sent off the host.
  const uk = await deployed(t, {
    userNets: [{ name: 'service0', maxConnections: 1, maxUdpFlows: 1, outbound: false, forwards: [fwd('tcp', 80), fwd('udp', 7)] }],
    env: { GUEST_TCP_TO: '192.0.2.1:80' },
  });
  const gw = uk.gateways[0]!;
  const [tcpPort, udpPort] = [gw.forwards[0]!.hostPort, gw.forwards[1]!.hostPort];
  // The guest's outbound attempt is refused by policy: a RST, so its connect fails at once.
  const end = Date.now() + 30_000;
  while (!uk.console().some((l) => /outbound tcp failed/.test(l.line)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.true(uk.console().some((l) => /outbound tcp failed/.test(l.line)), uk.console().map((l) => l.line).join(' | '));
  t.is(gw.stats().refused.tcp, 1);
  // One forwarded connection held open (no request yet) fills the limit: the next is closed.
  const held = net.connect(tcpPort, '127.0.0.1');
  await new Promise((r) => held.once('connect', r));
  while (gw.stats().tcpConnections < 1) await new Promise((r) => setTimeout(r, 20));
  const second = net.connect(tcpPort, '127.0.0.1');
  const secondData: Buffer[] = [];
  second.on('data', (d) => secondData.push(d));
  second.on('error', () => {});
  second.write('GET / HTTP/1.0\r\n\r\n');
  await new Promise((r) => second.once('close', r));
  t.is(Buffer.concat(secondData).length, 0);
  t.is(gw.stats().refused.tcp, 2);
  // The held one still works, and once it is done a new one is accepted.
  held.end('GET / HTTP/1.0\r\n\r\n');
  const reply: Buffer[] = [];
  held.on('data', (d) => reply.push(d));
  await new Promise((r) => held.once('close', r));
  t.regex(Buffer.concat(reply).toString(), /hello from the guest/);
  while (gw.stats().tcpConnections > 0) await new Promise((r) => setTimeout(r, 20));
  t.is((await curl(`http://127.0.0.1:${tcpPort}/`)).toString(), 'hello from the guest\n');
  // UDP: one client flow fits, a second client is refused.
  t.is(await udpAsk(udpPort, 'one'), 'echo:one');
  await t.throwsAsync(udpAsk(udpPort, 'two', 1500), { message: /no UDP answer/ });
  t.true(gw.stats().refused.udp >= 1);
  t.is(gw.stats().accepted.forwardedUdp, 1);
});

serial(`kill -9 of the deploying process, and a crash of the tender, leave nothing behind${suffix}`, async (t) => {
  for (const how of ['kill -9 deploy', 'tender crash'] as const) {
    const port = await freePort();
    // Its own TMPDIR: whatever the deployment leaves there is ours to see.
    const tmp = mkdtempSync(path.join(dir, 'tmp-'));
    const run = deployCli([image, '--tender', tender, '--net', 'service0=user', '-p', `${port}:80`], guestEnv({ TMPDIR: tmp }), false);
    t.teardown(() => void run.child.kill('SIGKILL'));
    await run.waitFor(/guest ready/);
    const tenderPid = childrenOf(run.child.pid!).find((p) => readFileSync(`/proc/${p}/cmdline`, 'latin1').includes('solo5-guest.mjs'));
    t.truthy(tenderPid, how);
    const ns = readlinkSync(`/proc/${tenderPid}/ns/net`);
    const killedAt = ticksNow();
    if (how === 'kill -9 deploy') {
      run.child.kill('SIGKILL');
    } else {
      process.kill(tenderPid!, 'SIGSEGV');
      t.is(await run.exited, 128 + 11, run.err());
      t.regex(run.err(), /killed by SIGSEGV/);
    }
    t.true(await gone(tenderPid!), how);
    await run.exited;
    t.deepEqual(processesIn(ns, killedAt), [], how);
    t.true(await bindable(port), how);
    t.deepEqual(readdirSync(tmp), [], how);
    t.false(/\bmbr0\b|\bmgw0\b/.test(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' })), how);
  }
});

serial(`deploy --net NAME=user: usage errors and pre-flight checks${suffix}`, async (t) => {
  const run = (args: string[]) => spawnSync(process.execPath, [cli, 'deploy', ...args], { encoding: 'utf8', timeout: 30_000 });
  t.is(run([image, '--tender', tender, '-p', '8080:80']).status, 64); // forward without a user-mode network
  t.is(run([image, '--tender', tender, '--net', 'service0=user,bogus']).status, 64);
  t.is(run([image, '--tender', tender, '--net', 'service0=user', '-p', 'nonsense']).status, 64);
  t.is(run([image, '--tender', tender, '--net', 'service0=user', '--accel', 'fast']).status, 64);
  const code = async (o: Partial<DeployOptions>) => {
    try {
      await deployUnikernel({ image, tender, ...o } as DeployOptions);
    } catch (error) {
      return (error as MorganaError).code;
    }
    return 'OK';
  };
  t.is(await code({ userNets: [{ name: 'service0', guest: '10.0.2.2/24' }] }), 'ERR_GATEWAY_OPTION'); // the gateway's own address
  t.is(await code({ userNets: [{ name: 'service0' }], netns: 'x' }), 'ERR_SOLO5_BAD_OPTION');
  t.is(await code({ userNets: [{ name: 'other' }] }), 'ERR_SOLO5_DEVICE_MISMATCH');
  // The user's own --ipv4 wins over the gateway's boot arguments.
  const own = await planDeployment({ image, tender, userNets: [{ name: 'service0' }], args: ['--ipv4=10.0.2.15/24'] });
  t.deepEqual(own.args.slice(own.args.indexOf('--') + 2), ['--ipv4=10.0.2.15/24']);
  const given = await planDeployment({ image, tender, userNets: [{ name: 'service0', guest: '192.168.7.9/24' }], args: ['x'] });
  t.deepEqual(given.args.slice(given.args.indexOf('--') + 2), ['--ipv4=192.168.7.9/24', '--ipv4-gateway=192.168.7.2', 'x']);
  t.true(given.args.includes('--net:service0=tap0'));
  // A port that is taken: a clear error, and nothing started.
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as net.AddressInfo).port;
  t.is(await code({ userNets: [{ name: 'service0', forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: port, guestAddress: undefined, guestPort: 80 }] }] }), 'ERR_FORWARD');
  busy.close();
  // hvt without access to /dev/kvm (nobody, here) says what it needs before anything starts.
  mkdirSync(path.join(dir, 'hvt'), { recursive: true });
  const hvtTender = buildStubTender(path.join(dir, 'hvt'), 'solo5-hvt', 2);
  const hvtImage = buildImage(dir, path.join(dir, 'web.hvt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(1, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
  if (nobodyReason) return;
  const nobodyHasKvm = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', 'test -r /dev/kvm && test -w /dev/kvm']).status === 0;
  if (!nobodyHasKvm) {
    const hvt = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, 'deploy', hvtImage, '--tender', hvtTender, '--net', 'service0=user'], { encoding: 'utf8' });
    t.is(hvt.status, 1);
    t.regex(hvt.stderr, /ERR_SOLO5_NO_KVM: \/dev\/kvm is missing or not readable and writable by uid 65534 .*hvt needs read\/write access to KVM \(try the spt target/);
  }
  // Without CAP_NET_ADMIN, the user namespace is used.
  const dry = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, 'deploy', image, '--tender', tender, '--net', 'service0=user', '--dry-run'], { encoding: 'utf8' });
  // /dev/net/tun is 0600 here: the unprivileged pre-flight check names it; with a 0666 node it plans `unshare --user`.
  if (dry.status === 0) t.true((JSON.parse(dry.stdout) as { command: string[] }).command.includes('--map-root-user'));
  else t.regex(dry.stderr, /ERR_SOLO5_USER_NET: \/dev\/net\/tun is not readable and writable by uid 65534/);
});

serial(`virtio --accel auto: QEMU failing to start with KVM falls back to TCG; --accel kvm reports QEMU's error${suffix}`, async (t) => {
  // A fake QEMU: with `-accel kvm` it fails as QEMU does on hosts rejecting `-cpu host`.
  const fake = path.join(dir, 'qemu-fake');
  writeFileSync(
    fake,
    `#!/bin/sh
case " $* " in
  *" -accel kvm "*) echo "qemu-system-x86_64: error: failed to set MSR 0x48b to 0x1ff00000000" >&2; kill -ABRT $$ ;;
esac
echo "guest console via TCG: $*"
exit 0
`,
    { mode: 0o755 },
  );
  const auto = await deployUnikernel({ image: virtio, tender: fake, kvmDevice: '/dev/null' });
  const exit = await auto.exited;
  t.is(exit.kind, 'clean', exit.description);
  const lines = auto.console().map((l) => l.line);
  t.true(lines.some((l) => /QEMU failed to start with KVM \(qemu-system-x86_64: error: failed to set MSR 0x48b to 0x1ff00000000\); falling back to TCG/.test(l)), lines.join(' | '));
  t.true(lines.some((l) => /guest console via TCG: .*-accel tcg/.test(l)));
  t.is(auto.plan.accel, 'kvm');
  const kvmOnly = await deployUnikernel({ image: virtio, tender: fake, kvmDevice: '/dev/null', accel: 'kvm' });
  const failed = await kvmOnly.exited;
  t.is(failed.kind, 'tender-error');
  t.is(failed.signal, 'SIGABRT');
  t.is(failed.description, 'QEMU failed to start (kvm): qemu-system-x86_64: error: failed to set MSR 0x48b to 0x1ff00000000 (killed by SIGABRT)');
  // Without a usable KVM, auto says so and runs TCG; kvm refuses before starting.
  const noKvm = await deployUnikernel({ image: virtio, tender: fake, kvmDevice: path.join(dir, 'no-kvm') });
  await noKvm.exited;
  t.true(noKvm.console().some((l) => /no-kvm is missing or not readable and writable: QEMU runs with TCG/.test(l.line)));
  await t.throwsAsync(deployUnikernel({ image: virtio, tender: fake, kvmDevice: path.join(dir, 'no-kvm'), accel: 'kvm' }), { message: /--accel kvm/ });
});

serial(`--pcap records the private link; tshark finds every TCP and UDP checksum of the translated flows correct${suffix}`, async (t) => {
  const services = await loopbackServices(t);
  const pcap = path.join(dir, 'link.pcap');
  const uk = await deployed(t, {
    userNets: [{ name: 'service0', pcap, forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 80 }] }],
    env: { GUEST_TCP_TO: `10.0.2.2:${services.tcp}`, GUEST_UDP_TO: `10.0.2.2:${services.udp}` },
  });
  const end = Date.now() + 30_000;
  while (!uk.console().some((l) => /outbound tcp: pong/.test(l.line)) || !uk.console().some((l) => /outbound udp: pong/.test(l.line))) {
    if (Date.now() > end) throw new Error(uk.console().map((l) => l.line).join(' | '));
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is((await curl(`http://127.0.0.1:${uk.gateways[0]!.forwards[0]!.hostPort}/bytes/100000`)).length, 100_000);
  await uk.stop();
  const fields = (filter: string, ...f: string[]) =>
    execFileSync('tshark', ['-r', pcap, '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-Y', filter, '-T', 'fields', ...f.flatMap((x) => ['-e', x])], { encoding: 'utf8' }).trim();
  // The guest saw its outbound connection come back from the address it dialled (10.0.2.2), not the proxy port.
  t.regex(fields(`tcp.srcport == ${services.tcp} && tcp.flags.syn == 1 && tcp.flags.ack == 1`, 'ip.src', 'ip.dst'), /^10\.0\.2\.2\t10\.0\.2\.15$/m);
  t.regex(fields(`udp.srcport == ${services.udp}`, 'ip.src', 'udp.payload'), /^10\.0\.2\.2\t/m);
  t.is(fields('tcp.checksum.status == 0 || udp.checksum.status == 0 || ip.checksum.status == 0', 'frame.number'), '', 'no bad checksums');
  t.true(Number(execFileSync('tshark', ['-r', pcap, '-Y', 'tcp.checksum.status == 1', '-T', 'fields', '-e', 'frame.number', '-o', 'tcp.check_checksum:TRUE'], { encoding: 'utf8' }).trim().split('\n').length) > 50);
});

serial(`the DNS address relays to the host's resolver (here a loopback UDP service)${suffix}`, async (t) => {
  const services = await loopbackServices(t);
  const uk = await deployed(t, { userNets: [{ name: 'service0', hostResolver: '127.0.0.1' }], env: { GUEST_UDP_TO: `10.0.2.3:${services.udp}` } });
  const end = Date.now() + 30_000;
  while (!uk.console().some((l) => /outbound udp: /.test(l.line)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.true(uk.console().some((l) => l.line === 'outbound udp: pong:ping'), uk.console().map((l) => l.line).join(' | '));
  t.is(uk.gateways[0]!.stats().accepted.outboundUdp, 1);
});
