/**
 * What daemon clients may ask of the host (issue 18/17): the host addresses and ports of
 * user-mode forwards are limited by policy (default: loopback, ports from 1024; a child may not
 * widen its parent's), and the host files they name (pcap, block backing files) must lie in the
 * daemon's files directories. Refusals are typed, name the limit, and are logged as `refused`
 * events.
 *
 * The first tests need no root: an in-process daemon refuses before it starts anything. The last
 * one runs the daemon inside a network namespace of its own (so its 0.0.0.0:80 binding is never on
 * the host's network) with the stub tender of solo5-daemon-user-net.spec.ts (a Morgana stack in
 * Node as the guest: HTTP on 80): curl through a forward on 0.0.0.0:80 that a policy allows,
 * tshark reading the pcap written in a --files-dir directory.
 */
import test from 'ava';
import { type ChildProcess, execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DaemonEvent, type DaemonUnikernelInfo, daemonRequest, encodeManifest, startDaemon } from 'morgana';
import { type Netns, commandUnavailable, createNetns, kernelTestsUnavailable } from './helpers/netns.js';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';
import { alive, killAll } from './helpers/process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-daemon-host-access-'));
const cli = path.resolve('dist/cli.js');
const stray = new Set<number>();

test.after.always(() => {
  killAll(stray);
  rmSync(dir, { recursive: true, force: true });
});

async function codeAndMessage(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    const e = error as { code?: string; message: string };
    return `${e.code}: ${e.message}`;
  }
  return 'resolved';
}

const fwd = (hostAddress: string, hostPort: number, guestPort = 80) => ({ protocol: 'tcp' as const, hostAddress, hostPort, guestAddress: '10.0.2.15', guestPort });

test.serial('forward policies: defaults refuse 0.0.0.0 and low ports, a policy widens them for its path, a child may not widen its parent, port 0 and maxForwards', async (t) => {
  const d = await startDaemon(path.join(dir, 'policy'));
  t.teardown(() => d.close());
  const deploy = (name: string, forwards: object[]) => daemonRequest(d.dir, { cmd: 'deploy', options: { image: '/nonexistent/web.spt', name, userNets: [{ name: 'service0', forwards: forwards as never }] } });
  const set = (p: string, policy: object) => daemonRequest(d.dir, { cmd: 'policy-set', path: p, policy } as never);

  // Under the default: loopback only, ports from 1024, for names with or without an owner path.
  t.regex(await codeAndMessage(deploy('web', [fwd('0.0.0.0', 8080)])), /^ERR_DAEMON_POLICY: 'web' refused by the daemon's default: forward tcp 0\.0\.0\.0:8080: host address 0\.0\.0\.0 not allowed \(allowed forwardAddresses 127\.0\.0\.1,::1\)$/);
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('127.0.0.1', 80)])), /^ERR_DAEMON_POLICY: 'acme:web' refused by the daemon's default: forward tcp 127\.0\.0\.1:80: host port 80 not allowed \(allowed forwardPorts 1024-65535\)$/);
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('::', 8080)])), /host address :: not allowed/);
  // Loopback in another spelling is loopback; a high port and port 0 pass the policy (the
  // deploy then fails later, on the missing image, which shows the policy let it through).
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('::0001', 8080), fwd('127.0.0.1', 0)])), /^ERR_SOLO5_/);

  // A child of a path without forward fields may not widen the daemon's default.
  t.regex(await codeAndMessage(set('acme:team', { forwardAddresses: ['0.0.0.0'] })), /^ERR_DAEMON_POLICY: policy for 'acme:team' refused: forwardAddresses 0\.0\.0\.0 not allowed by the daemon's default \(127\.0\.0\.1,::1\)$/);
  t.regex(await codeAndMessage(set('acme:team', { forwardPorts: [[80, 80]] })), /forwardPorts 80 not allowed by the daemon's default \(1024-65535\)/);
  // A top-level policy may (only an unconfined admin sets those).
  const acme = (await set('acme', { forwardAddresses: ['127.0.0.1', '0.0.0.0'], forwardPorts: [[1024, 65535], [80, 80], [8080, 8090]], maxForwards: 2 })).policy;
  t.deepEqual(acme, { forwardAddresses: ['0.0.0.0', '127.0.0.1'], forwardPorts: [[80, 80], [1024, 65535]], maxForwards: 2 });
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('0.0.0.0', 80)])), /^ERR_SOLO5_/);
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('::1', 8080)])), /^ERR_DAEMON_POLICY: 'acme:web' refused by the policy of 'acme': forward tcp \[::1\]:8080: host address ::1 not allowed \(allowed forwardAddresses 0\.0\.0\.0,127\.0\.0\.1\)$/);
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('127.0.0.1', 443)])), /^ERR_DAEMON_POLICY: 'acme:web' refused by the policy of 'acme': forward tcp 127\.0\.0\.1:443: host port 443 not allowed \(allowed forwardPorts 80,1024-65535\)$/);
  t.regex(await codeAndMessage(deploy('acme:web', [fwd('127.0.0.1', 8080), fwd('127.0.0.1', 8081), fwd('127.0.0.1', 8082)])), /^ERR_DAEMON_POLICY: 'acme:web' refused by the policy of 'acme': 3 forwards, limit 2 \(maxForwards\)$/);
  // Children: within the parent's, or refused naming what widens.
  t.regex(await codeAndMessage(set('acme:team', { forwardAddresses: ['0.0.0.0', '10.1.2.3'], maxForwards: 2 })), /forwardAddresses 10\.1\.2\.3 not allowed by the policy of 'acme' \(0\.0\.0\.0,127\.0\.0\.1\)/);
  t.regex(await codeAndMessage(set('acme:team', { forwardPorts: [[79, 80]], maxForwards: 2 })), /forwardPorts 79-80 not allowed by the policy of 'acme' \(80,1024-65535\)/);
  t.regex(await codeAndMessage(set('acme:team', { maxForwards: 3 })), /maxForwards 3 exceeds the parent's 2/);
  t.regex(await codeAndMessage(set('acme:team', { forwardAddresses: [] })), /maxForwards is unlimited but the parent allows 2/);
  t.deepEqual((await set('acme:team', { forwardPorts: [[80, 80]], maxForwards: 1 })).policy, { forwardPorts: [[80, 80]], maxForwards: 1 });
  // Port 0: the system picks from its ephemeral range, which [80, 80] does not cover.
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
  t.regex(await codeAndMessage(deploy('acme:team:web', [fwd('0.0.0.0', 0)])), new RegExp(`^ERR_DAEMON_POLICY: 'acme:team:web' refused by the policy of 'acme:team': forward tcp 0\\.0\\.0\\.0:0: port 0 \\(the system picks from ${lo}-${hi}\\) needs forwardPorts covering ${lo}-${hi} \\(allowed forwardPorts 80\\)$`));
  t.regex(await codeAndMessage(deploy('acme:team:web', [fwd('0.0.0.0', 80)])), /^ERR_SOLO5_/); // addresses inherited from 'acme'
  // A parent may not be narrowed below an existing child's.
  t.regex(await codeAndMessage(set('acme', { forwardAddresses: ['0.0.0.0'], forwardPorts: [[1024, 65535]], maxForwards: 2 })), /the existing policy of 'acme:team' would exceed it \(forwardPorts 80 not allowed by the policy of 'acme' \(1024-65535\)\)/);
  t.deepEqual((await daemonRequest(d.dir, { cmd: 'policy-list' })).policies, { acme, 'acme:team': { forwardPorts: [[80, 80]], maxForwards: 1 } });
  // Nor removed while a child relies on it for what it widens (it would fall back to the default).
  t.regex(await codeAndMessage(daemonRequest(d.dir, { cmd: 'policy-remove', path: 'acme' })), /^ERR_DAEMON_POLICY: removing the policy of 'acme' refused: the policy of 'acme:team' would then be wider than what applies above it \(forwardPorts 80 not allowed by the daemon's default \(1024-65535\)\); remove or narrow it first$/);
  t.deepEqual(Object.keys((await daemonRequest(d.dir, { cmd: 'policy-list' })).policies as object), ['acme', 'acme:team']);
  // Malformed fields are refused as such.
  t.regex(await codeAndMessage(set('acme:x', { forwardAddresses: ['localhost'] })), /^ERR_DAEMON_BAD_POLICY: forwardAddresses must be a list of IP addresses$/);
  t.regex(await codeAndMessage(set('acme:x', { forwardPorts: [[0, 80]] })), /^ERR_DAEMON_BAD_POLICY: forwardPorts must be a list of \[from, to\] port ranges/);
  // ... and by the CLI before it asks the daemon.
  const badRange = await morgana(['daemon', 'policy', 'set', 'acme:x', '--forward-ports', '80,90-85', '--dir', d.dir]);
  t.is(badRange.status, 64);
  t.regex(badRange.stderr, /--forward-ports must be ports or ranges from 1 to 65535 such as 80,1024-65535, got '90-85'/);

  // Every refusal is in the event log.
  const events = d.events.list().filter((e: DaemonEvent) => e.type === 'refused' && e.reason === 'policy');
  t.true(events.some((e) => e.name === 'web' && /0\.0\.0\.0:8080/.test(e.message ?? '')));
  t.true(events.some((e) => e.name === 'acme:web' && /host port 80 not allowed/.test(e.message ?? '')));
  t.true(events.some((e) => e.name === 'acme:team' && /not allowed by the daemon's default/.test(e.message ?? '')));
  t.true(events.some((e) => e.name === 'acme:web' && /3 forwards, limit 2/.test(e.message ?? '')));
  t.deepEqual(
    (await daemonRequest(d.dir, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[],
    [],
  );
});

test.serial('user-mode access policies: no host loopback by default, filled in when left out, refused when asked for; a top-level policy allows it, a child may not allow what its parent does not', async (t) => {
  const d = await startDaemon(path.join(dir, 'access'));
  t.teardown(() => d.close());
  const deploy = (name: string, net: object) => daemonRequest(d.dir, { cmd: 'deploy', options: { image: '/nonexistent/web.spt', name, userNets: [{ name: 'service0', ...net }] } });
  const set = (p: string, policy: object) => daemonRequest(d.dir, { cmd: 'policy-set', path: p, policy } as never);

  // Asking for host loopback under the default is refused, naming the network and the field.
  t.regex(await codeAndMessage(deploy('acme:web', { hostLoopback: true })), /^ERR_DAEMON_POLICY: 'acme:web' refused by the daemon's default: user-mode network 'service0' asks for hostLoopback, which is not allowed$/);
  // Leaving it out (or saying false) passes the policy: the deploy fails later, on the missing image.
  t.regex(await codeAndMessage(deploy('acme:web', {})), /^ERR_SOLO5_/);
  t.regex(await codeAndMessage(deploy('acme:web', { hostLoopback: false, outbound: true })), /^ERR_SOLO5_/);
  // Not a boolean: a typed error, not "truthy".
  t.regex(await codeAndMessage(deploy('acme:web', { hostLoopback: 'yes' })), /^ERR_SOLO5_BAD_OPTION: user-mode network 'service0': hostLoopback must be true or false, got "yes"$/);
  t.regex(await codeAndMessage(set('acme', { hostLoopback: 'yes' })), /^ERR_DAEMON_BAD_POLICY: hostLoopback must be true or false/);

  // A child may not allow what applies above it; the top-level policy may.
  t.regex(await codeAndMessage(set('acme:team', { hostLoopback: true })), /^ERR_DAEMON_POLICY: policy for 'acme:team' refused: hostLoopback not allowed by the daemon's default$/);
  t.is((await codeAndMessage(set('acme', { hostLoopback: true, outbound: false }))), 'resolved');
  t.regex(await codeAndMessage(deploy('acme:web', { hostLoopback: true })), /^ERR_SOLO5_/);
  t.regex(await codeAndMessage(deploy('acme:web', { outbound: true })), /^ERR_DAEMON_POLICY: 'acme:web' refused by the policy of 'acme': user-mode network 'service0' asks for outbound, which is not allowed$/);
  t.regex(await codeAndMessage(set('acme:team', { outbound: true })), /outbound not allowed by the policy of 'acme'/);
  t.is(await codeAndMessage(set('acme:team', { hostLoopback: true })), 'resolved');
  // Removing 'acme' would leave its child wider than the default: refused until the child goes.
  t.regex(await codeAndMessage(daemonRequest(d.dir, { cmd: 'policy-remove', path: 'acme' } as never)), /hostLoopback not allowed by the daemon's default/);
});

test.serial('client paths: pcap and block files outside the files directories, with .. or through symbolic links are refused; nothing is written', async (t) => {
  const extra = path.join(dir, 'extra');
  mkdirSync(extra);
  const d = await startDaemon(path.join(dir, 'paths'), { filesDirs: [extra] });
  t.teardown(() => d.close());
  const files = path.join(d.dir, 'files');
  t.is(statSync(files).mode & 0o777, 0o700);
  t.deepEqual(d.filesDirs, [files, extra]);
  t.deepEqual((await daemonRequest(d.dir, { cmd: 'status' })).filesDirs, [files, extra]);
  const outside = path.join(dir, 'outside');
  mkdirSync(outside);
  const pcap = (file: string) => daemonRequest(d.dir, { cmd: 'deploy', options: { image: '/nonexistent/web.spt', name: 'web', userNets: [{ name: 'service0', pcap: file }] } });
  const block = (file: string) => daemonRequest(d.dir, { cmd: 'deploy', options: { image: '/nonexistent/db.spt', name: 'db', blocks: [{ name: 'storage', file, size: 1 << 20 }] } });

  t.regex(await codeAndMessage(pcap(path.join(outside, 'x.pcap'))), new RegExp(`^ERR_DAEMON_PATH: pcap of 'service0' '${outside}/x\\.pcap' refused: it resolves to ${outside}/x\\.pcap, outside the daemon's files directories; allowed: files inside ${files}, ${extra} \\(morgana daemon --files-dir adds a directory\\)$`));
  // The daemon's own files: its state and policies are not the client's to overwrite.
  t.regex(await codeAndMessage(pcap(path.join(d.dir, 'policies.json'))), /^ERR_DAEMON_PATH: .*outside the daemon's files directories/);
  t.regex(await codeAndMessage(pcap(`${files}/../state.json`)), /^ERR_DAEMON_PATH: pcap of 'service0' '.*\/files\/\.\.\/state\.json' refused: '\.\.' is not allowed in paths given to the daemon/);
  // A directory link leading out, and a file link pointing out.
  symlinkSync(outside, path.join(files, 'escape'));
  t.regex(await codeAndMessage(pcap(path.join(files, 'escape', 'x.pcap'))), new RegExp(`refused: it resolves to ${outside}/x\\.pcap, outside`));
  symlinkSync(path.join(outside, 'target.pcap'), path.join(extra, 'leaf.pcap'));
  t.regex(await codeAndMessage(pcap(path.join(extra, 'leaf.pcap'))), /^ERR_DAEMON_PATH: pcap of 'service0' '.*\/leaf\.pcap' refused: it is a symbolic link/);
  t.regex(await codeAndMessage(pcap(path.join(files, 'nodir', 'x.pcap'))), /its directory cannot be resolved \(ENOENT\)/);
  // Block backing files: the same rule (the store's devices, attached by name, are the way).
  t.regex(await codeAndMessage(block(path.join(outside, 'disk.img'))), /^ERR_DAEMON_PATH: block 'storage' file '.*\/outside\/disk\.img' refused: it resolves to .*outside the daemon's files directories/);
  t.regex(await codeAndMessage(block(path.join(d.dir, 'blocks', 'other:vol.img'))), /^ERR_DAEMON_PATH: .*outside the daemon's files directories/);
  t.regex(await codeAndMessage(block('disk.img')), /must be an absolute path/);
  // Inside: past the path check (the deploy then fails on the missing image).
  t.regex(await codeAndMessage(pcap(path.join(extra, 'ok.pcap'))), /^ERR_SOLO5_/);
  t.regex(await codeAndMessage(block(path.join(files, 'disk.img'))), /^ERR_SOLO5_/);

  t.false(existsSync(path.join(outside, 'x.pcap')));
  t.false(existsSync(path.join(outside, 'target.pcap')));
  t.false(existsSync(path.join(outside, 'disk.img')));
  const refused = d.events.list().filter((e: DaemonEvent) => e.type === 'refused' && e.reason === 'path');
  t.is(refused.length, 9, JSON.stringify(refused));
  // A files directory that does not exist is refused when the daemon starts.
  await t.throwsAsync(startDaemon(path.join(dir, 'paths2'), { filesDirs: [path.join(dir, 'missing')] }), { code: 'ERR_DAEMON_BAD_OPTION', message: /files directory .*missing/ });
});

// --- With the stub tender, inside a network namespace ----------------------------------------

const kernelWhy = kernelTestsUnavailable() ?? gccUnavailable() ?? commandUnavailable('tshark') ?? commandUnavailable('curl') ?? (spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true']).status === 0 ? undefined : 'user namespaces are not available');
const kernel = kernelWhy ? test.serial.skip : test.serial;

function morgana(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

async function until(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) i += createHash('sha256').update(`morgana ${block}`).digest().copy(out, i);
  return out;
}
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

kernel(`a policy allowing 0.0.0.0:80: the forward works (curl to another address of the daemon's namespace), the pcap in a --files-dir is read by tshark; update is checked against the policy of now; refusals logged${kernelWhy ? ` (skipped: ${kernelWhy})` : ''}`, async (t) => {
  const work = path.join(dir, 'kernel');
  mkdirSync(path.join(work, 'spt'), { recursive: true });
  const tender = buildStubTender(path.join(work, 'spt'), 'solo5-spt', 2);
  const image = buildImage(work, path.join(work, 'web.spt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
  const extra = path.join(work, 'captures');
  mkdirSync(extra);
  const d = path.join(work, 'd');
  const ns: Netns = await createNetns();
  t.teardown(() => ns.destroy());
  // An address of the namespace other than loopback, reached only through a 0.0.0.0 binding.
  await ns.ip('addr', 'add', '10.231.0.1/32', 'dev', 'lo');
  // A service on the namespace's loopback, which guests reach through 10.0.2.2 only where a policy allows it.
  const loopbackPort = 47_123;
  const service = ns.spawn(process.execPath, ['-e', `require('node:net').createServer((s) => s.end('pong\\n')).listen(${loopbackPort}, '127.0.0.1', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => void service.kill());
  await new Promise((r) => service.stdout!.once('data', r));
  const env = { ...process.env, STUB_GUEST: path.resolve('__test__/helpers/solo5-guest.mjs'), STUB_NODE: process.execPath, STUB_TENDER: tender, GUEST_TCP_TO: `10.0.2.2:${loopbackPort}` };
  const daemon: ChildProcess = ns.spawn(process.execPath, [cli, 'daemon', '--dir', d, '--files-dir', extra], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  await until('the daemon listens', () => /listening on/.test(err) || daemon.exitCode !== null);
  t.regex(err, new RegExp(`client files \\(pcap, block files\\) inside ${d}/files, ${extra}`));
  const deploy = (name: string, ...more: string[]) => morgana(['daemon', 'deploy', image, '--dir', d, '--tender', tender, '--name', name, '--net', 'service0=user', ...more]);

  // The default refuses 0.0.0.0 and port 80.
  const any = await deploy('tenant:web', '-p', '0.0.0.0:8080:80');
  t.is(any.status, 1);
  t.regex(any.stderr, /ERR_DAEMON_POLICY: 'tenant:web' refused by the daemon's default: forward tcp 0\.0\.0\.0:8080: host address 0\.0\.0\.0 not allowed \(allowed forwardAddresses 127\.0\.0\.1,::1\)/);
  const low = await deploy('tenant:web', '-p', '127.0.0.1:80:80');
  t.regex(low.stderr, /ERR_DAEMON_POLICY: .*host port 80 not allowed \(allowed forwardPorts 1024-65535\)/);
  // A child may not widen its parent (here: the default); the top-level policy may.
  const child = await morgana(['daemon', 'policy', 'set', 'tenant:team', '--forward-addresses', '0.0.0.0', '--dir', d]);
  t.is(child.status, 1);
  t.regex(child.stderr, /ERR_DAEMON_POLICY: policy for 'tenant:team' refused: forwardAddresses 0\.0\.0\.0 not allowed by the daemon's default/);
  const set = await morgana(['daemon', 'policy', 'set', 'tenant', '--forward-addresses', '0.0.0.0,127.0.0.1', '--forward-ports', '80,1024-65535', '--max-forwards', '1', '--dir', d]);
  t.is(set.status, 0, set.stderr);
  t.is(set.stdout, 'tenant: {"maxForwards":1,"forwardAddresses":["0.0.0.0","127.0.0.1"],"forwardPorts":[[80,80],[1024,65535]]}\n');
  const wider = await morgana(['daemon', 'policy', 'set', 'tenant:team', '--forward-ports', '22,80', '--dir', d]);
  t.regex(wider.stderr, /ERR_DAEMON_POLICY: policy for 'tenant:team' refused: maxForwards is unlimited but the parent allows 1/);
  const wider2 = await morgana(['daemon', 'policy', 'set', 'tenant:team', '--forward-ports', '22,80', '--max-forwards', '1', '--dir', d]);
  t.regex(wider2.stderr, /forwardPorts 22 not allowed by the policy of 'tenant' \(80,1024-65535\)/);

  // The pcap outside the files directories is refused, inside one it is written.
  const out = await deploy('tenant:web', '-p', '0.0.0.0:80:80', '--pcap', path.join(work, 'link.pcap'));
  t.regex(out.stderr, /ERR_DAEMON_PATH: pcap of 'service0' '.*\/kernel\/link\.pcap' refused: it resolves to .*, outside the daemon's files directories/);
  t.false(existsSync(path.join(work, 'link.pcap')));
  const pcap = path.join(extra, 'link.pcap');
  const dep = await deploy('tenant:web', '-p', '0.0.0.0:80:80', '--pcap', pcap);
  t.is(dep.status, 0, dep.stderr + err);
  t.regex(dep.stdout, /forwarding tcp 0\.0\.0\.0:80 -> 10\.0\.2\.15:80/);
  const row = ((await daemonRequest(d, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[])[0]!;
  if (row.pid) stray.add(row.pid);
  const consoleOf = (name: string) => (existsSync(path.join(d, 'console', `${name}.log`)) ? readFileSync(path.join(d, 'console', `${name}.log`), 'utf8') : '');
  await until('the guest is ready', () => /guest ready on 10\.0\.2\.15/.test(consoleOf('tenant:web')));
  // No policy allows host loopback here: the guest's connection to 10.0.2.2 is refused.
  await until('the outbound attempt ends', () => /outbound tcp/.test(consoleOf('tenant:web')));
  t.regex(consoleOf('tenant:web'), /outbound tcp failed/);
  // curl in the namespace, to its non-loopback address: only the 0.0.0.0 binding answers there.
  const body = path.join(work, 'body');
  await ns.exec('curl', ['-sS', '--fail', '-m', '60', '-o', body, 'http://10.231.0.1:80/bytes/300000'], { timeoutMs: 90_000 });
  t.is(sha(readFileSync(body)), sha(pattern(300_000)));
  t.is((await ns.exec('curl', ['-sS', '--fail', '-m', '60', 'http://10.231.0.1:80/'])).stdout, 'hello from the guest\n');
  t.regex((await morgana(['daemon', 'ps', '--dir', d])).stdout, /^tenant:web\s+running\s+\d+\s+spt\s+0\s+0\.0\.0\.0:80->80\/tcp\s/m);
  // maxForwards 1: a second unikernel with two forwards is refused.
  const two = await deploy('tenant:web2', '-p', '8081:80', '-p', '8082:81');
  t.regex(two.stderr, /ERR_DAEMON_POLICY: 'tenant:web2' refused by the policy of 'tenant': 2 forwards, limit 1 \(maxForwards\)/);

  // The policy narrows (running unikernels keep what they have) ... and update is checked against it.
  t.is((await morgana(['daemon', 'policy', 'set', 'tenant', '--forward-addresses', '127.0.0.1', '--dir', d])).status, 0);
  const copy = path.join(work, 'web-v2.spt');
  copyFileSync(image, copy);
  const up = await morgana(['daemon', 'update', 'tenant:web', copy, '--dir', d]);
  t.is(up.status, 1);
  t.regex(up.stderr, /ERR_DAEMON_POLICY: 'tenant:web' refused by the policy of 'tenant': forward tcp 0\.0\.0\.0:80: host address 0\.0\.0\.0 not allowed \(allowed forwardAddresses 127\.0\.0\.1\)/);
  t.is((await ns.exec('curl', ['-sS', '--fail', '-m', '60', 'http://10.231.0.1:80/'])).stdout, 'hello from the guest\n');
  t.is(((await daemonRequest(d, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[])[0]!.image, image);

  const pid = row.pid!;
  t.is((await morgana(['daemon', 'stop', 'tenant:web', '--dir', d])).status, 0);
  await until('the tender is gone', () => !alive(pid));
  // The pcap: the guest's answers to the curls' SYNs.
  const answers = execFileSync('tshark', ['-r', pcap, '-Y', 'tcp.srcport == 80 && tcp.flags.syn == 1 && tcp.flags.ack == 1', '-T', 'fields', '-e', 'ip.src'], { encoding: 'utf8' }).trim().split('\n');
  t.deepEqual(answers, ['10.0.2.15', '10.0.2.15', '10.0.2.15']);

  // Each refusal is an event.
  const events = (await morgana(['daemon', 'events', '--json', '--dir', d])).stdout.trim().split('\n').map((l) => JSON.parse(l) as DaemonEvent);
  const refused = events.filter((e) => e.type === 'refused').map((e) => `${e.reason} ${e.name}: ${e.message}`);
  t.true(refused.some((r) => /^policy tenant:web: .*host address 0\.0\.0\.0 not allowed \(allowed forwardAddresses 127\.0\.0\.1,::1\)/.test(r)), refused.join('\n'));
  t.true(refused.some((r) => /^policy tenant:web: .*host port 80 not allowed/.test(r)));
  t.true(refused.some((r) => /^policy tenant:team: .*not allowed by the daemon's default/.test(r)));
  t.true(refused.some((r) => /^path tenant:web: pcap of 'service0'/.test(r)));
  t.true(refused.some((r) => /^policy tenant:web2: .*2 forwards, limit 1/.test(r)));
  t.true(refused.some((r) => /^policy tenant:web: .*allowed forwardAddresses 127\.0\.0\.1\)$/.test(r)));

  // Where the top-level policy allows it, the guest reaches the namespace's loopback service.
  t.is((await morgana(['daemon', 'policy', 'set', 'tenant', '--forward-addresses', '127.0.0.1', '--host-loopback', 'yes', '--dir', d])).status, 0);
  const lo = await deploy('tenant:lo');
  t.is(lo.status, 0, lo.stderr);
  const loRow = ((await daemonRequest(d, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).find((u) => u.name === 'tenant:lo')!;
  if (loRow.pid) stray.add(loRow.pid);
  await until('the outbound attempt ends', () => /outbound tcp/.test(consoleOf('tenant:lo')));
  t.regex(consoleOf('tenant:lo'), /outbound tcp: pong/);

  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
});
