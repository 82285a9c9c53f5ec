/**
 * `morgana daemon`: a supervisor process with an owner-only control socket, driven through the
 * CLI and `daemonRequest`, with stub tenders built here with gcc. Covers ps / console (with
 * follow) / stats / restart / stop, state on disk (a restarted daemon adopts the unikernels that
 * still run, and notices those that exited meanwhile), and, as root inside a namespace created
 * for the test, TAP clean-up by a restarted daemon.
 */
import test from 'ava';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DaemonUnikernelInfo, MorganaError, daemonRequest, encodeManifest } from 'morgana';
import { kernelTest } from './helpers/netns.js';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';
import { alive } from './helpers/process.js';

const skip = gccUnavailable();
const withGcc = skip ? test.serial.skip : test.serial;
const suffix = skip ? ` (skipped: ${skip})` : '';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-solo5-daemon-'));
const cli = path.resolve('dist/cli.js');
let sptStub: string;
let hvtStub: string;
let sptImage: string;
let netImage: string;
const daemons = new Set<ChildProcessWithoutNullStreams>();
const stray = new Set<number>();

test.before(() => {
  if (skip) return;
  spawnSync('mkdir', ['-p', path.join(dir, 'spt'), path.join(dir, 'hvt')]);
  sptStub = buildStubTender(path.join(dir, 'spt'), 'solo5-spt', 2);
  hvtStub = buildStubTender(path.join(dir, 'hvt'), 'solo5-hvt', 2);
  sptImage = buildImage(dir, path.join(dir, 'svc.spt'), { abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)), manifest: elfNote('Solo5', NT_MFT, encodeManifest([])) });
  netImage = buildImage(dir, path.join(dir, 'net.hvt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(1, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
});

test.after.always(() => {
  for (const d of daemons) d.kill('SIGKILL');
  for (const pid of stray) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `morgana daemon --dir <d>` (optionally via a prefix such as `ip netns exec NS`); resolves once it listens. */
async function startDaemon(d: string, env: Record<string, string>, prefix: string[] = [], extra: string[] = []): Promise<ChildProcessWithoutNullStreams> {
  const cmd = [...prefix, process.execPath, cli, 'daemon', '--dir', d, ...extra];
  const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, ...env }, stdio: 'pipe' });
  daemons.add(child);
  child.once('exit', () => daemons.delete(child));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start: ${err}`)), 15_000);
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`daemon exited ${code}: ${err}`)));
  });
  return child;
}

async function stopDaemon(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return done;
}

function morgana(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}


async function ps(d: string): Promise<DaemonUnikernelInfo[]> {
  return (await daemonRequest(d, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[];
}

async function until(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

withGcc(`daemon: owner-only socket, deploy, ps, console, follow, stats, restart, stop${suffix}`, async (t) => {
  const d = path.join(dir, 'd1');
  const daemon = await startDaemon(d, { STUB_SLEEP_MS: '-1', STUB_LINES: '3' });
  t.is(statSync(d).mode & 0o777, 0o700);
  t.is(statSync(path.join(d, 'control.sock')).mode & 0o777, 0o600);
  const second = spawnSync(process.execPath, [cli, 'daemon', '--dir', d], { encoding: 'utf8', timeout: 10_000 });
  t.is(second.status, 1);
  t.regex(second.stderr, /ERR_DAEMON_RUNNING/);

  const dep = morgana(['daemon', 'deploy', sptImage, '--dir', d, '--tender', sptStub, '--name', 'alpha', '--', 'hello world']);
  t.is(dep.status, 0, dep.stderr);
  t.regex(dep.stdout, /alpha started \(pid \d+\)/);
  t.is(morgana(['daemon', 'deploy', sptImage, '--dir', d, '--tender', sptStub, '--name', 'beta']).status, 0);
  const dup = morgana(['daemon', 'deploy', sptImage, '--dir', d, '--tender', sptStub, '--name', 'beta']);
  t.is(dup.status, 1);
  t.regex(dup.stderr, /ERR_DAEMON_EXISTS/);
  const bad = morgana(['daemon', 'deploy', sptImage, '--dir', d, '--tender', sptStub, '--net', 'service0=tap0']);
  t.regex(bad.stderr, /ERR_SOLO5_DEVICE_MISMATCH/);

  let list = await ps(d);
  t.deepEqual(list.map((u) => [u.name, u.state, u.target]), [
    ['alpha', 'running', 'spt'],
    ['beta', 'running', 'spt'],
  ]);
  const alphaPid = list[0]!.pid!;
  for (const u of list) stray.add(u.pid!);
  const table = morgana(['daemon', 'ps', '--dir', d]);
  t.regex(table.stdout, /^NAME\s+STATE\s+PID/);
  t.regex(table.stdout, new RegExp(`alpha\\s+running\\s+${alphaPid}\\s+spt`));

  await until('console lines', async () => {
    const r = morgana(['daemon', 'console', 'alpha', '--dir', d]);
    return r.stdout.includes('console line 2');
  });
  const con = morgana(['daemon', 'console', 'alpha', '--count', '2', '--dir', d]);
  t.is(con.stdout, 'console line 1\nconsole line 2\n');
  t.regex(morgana(['daemon', 'console', 'alpha', '--dir', d]).stdout, /Command line is: 'hello\\ world'/);

  const stats = JSON.parse(morgana(['daemon', 'stats', 'alpha', '--json', '--dir', d]).stdout) as { process: { pid: number; rssKiB: number } };
  t.is(stats.process.pid, alphaPid);
  t.true(stats.process.rssKiB > 0);

  // console --follow streams until the unikernel is stopped.
  const follow = spawn(process.execPath, [cli, 'daemon', 'console', 'beta', '--follow', '--count', '1', '--dir', d], { stdio: 'pipe' });
  let followed = '';
  let followErr = '';
  follow.stdout.on('data', (c: Buffer) => (followed += c.toString()));
  follow.stderr.on('data', (c: Buffer) => (followErr += c.toString()));
  const followExit = new Promise<number | null>((resolve) => follow.once('exit', (code) => resolve(code)));
  await until('follow output', () => followed.includes('console line'));
  const restarted = morgana(['daemon', 'restart', 'beta', '--dir', d]);
  t.is(restarted.status, 0, restarted.stderr);
  const betaPid = Number(/pid (\d+)/.exec(restarted.stdout)![1]);
  stray.add(betaPid);
  await until('follow sees the restarted run', () => (followed.match(/Command line is/g) ?? []).length >= 1 && (followed.match(/console line 2/g) ?? []).length >= 1);
  t.is(morgana(['daemon', 'stop', 'beta', '--dir', d]).status, 0);
  t.is(await followExit, 0);
  t.regex(followErr, /beta: stopped/);
  t.false(alive(betaPid));

  const unknown = morgana(['daemon', 'stop', 'nope', '--dir', d]);
  t.is(unknown.status, 1);
  t.regex(unknown.stderr, /ERR_DAEMON_UNKNOWN/);
  t.is(morgana(['daemon', 'frob', '--dir', d]).status, 64);
  t.is(morgana(['daemon', 'stop', '--dir', d]).status, 64);

  // The daemon stops; alpha keeps running; a new daemon adopts it from the state file.
  t.is(await stopDaemon(daemon), 0);
  t.true(alive(alphaPid));
  const unreachable = await t.throwsAsync(daemonRequest(d, { cmd: 'ps' }), { instanceOf: MorganaError });
  t.is(unreachable.code, 'ERR_DAEMON_UNREACHABLE');
  const again = await startDaemon(d, { STUB_SLEEP_MS: '-1' });
  list = await ps(d);
  t.deepEqual(list.map((u) => [u.name, u.state, u.pid, u.adopted]), [['alpha', 'running', alphaPid, true]]);
  t.regex(morgana(['daemon', 'console', 'alpha', '--dir', d]).stdout, /console line 2/);
  const stop = morgana(['daemon', 'stop', 'alpha', '--dir', d]);
  t.is(stop.status, 0, stop.stderr);
  t.false(alive(alphaPid));
  t.deepEqual(await ps(d), []);
  await stopDaemon(again);
});

withGcc(`daemon: a unikernel that exits while the daemon is down is reported, not adopted${suffix}`, async (t) => {
  const d = path.join(dir, 'd2');
  const daemon = await startDaemon(d, { STUB_SLEEP_MS: '-1' });
  await daemonRequest(d, { cmd: 'deploy', options: { image: sptImage, tender: sptStub, name: 'gamma' } });
  const [gamma] = await ps(d);
  stray.add(gamma!.pid!);
  await stopDaemon(daemon);
  process.kill(gamma!.pid!, 'SIGKILL');
  await until('gamma gone', () => !alive(gamma!.pid!));
  const again = await startDaemon(d, {});
  const [after] = await ps(d);
  t.is(after!.state, 'exited');
  t.regex(after!.lastExit!.description, /while the daemon was not running/);
  // A crash observed by the daemon: exit status known, restart policy applied.
  await daemonRequest(d, { cmd: 'stop', name: 'gamma' });
  await stopDaemon(again);
  const third = await startDaemon(d, { STUB_EXIT: '255' });
  await daemonRequest(d, { cmd: 'deploy', options: { image: sptImage, tender: sptStub, name: 'delta', restart: { mode: 'on-failure', backoffMs: 10, maxRestarts: 2 } } });
  await until('delta exited', async () => (await ps(d))[0]!.state === 'exited');
  const [delta] = await ps(d);
  t.is(delta!.restarts, 2);
  t.is(delta!.lastExit!.kind, 'guest-abort');
  await stopDaemon(third);
});

kernelTest(test, 'daemon in a namespace: TAPs it created are removed on stop, also by a restarted daemon', async (t) => {
  const { withNetns } = await import('./helpers/netns.js');
  await withNetns(async (ns) => {
    const d = path.join(dir, 'd3');
    const prefix = ['ip', 'netns', 'exec', ns.name];
    const env = { STUB_SLEEP_MS: '-1', STUB_MANIFEST: 'net:service0' };
    const daemon = await startDaemon(d, env, prefix);
    // The client runs outside the namespace: the socket is a file.
    await daemonRequest(d, { cmd: 'deploy', options: { image: netImage, tender: hvtStub, kvmDevice: '/dev/null', name: 'web', nets: [{ name: 'service0', tap: 'tapd0', bridge: 'brd0' }] } });
    const [web] = await ps(d);
    stray.add(web!.pid!);
    await until('tap attached', () => morgana(['daemon', 'console', 'web', '--dir', d]).stdout.includes('attached to tapd0'));
    t.true((await ns.ip('link', 'show')).stdout.includes('tapd0'));
    await stopDaemon(daemon);
    const again = await startDaemon(d, env, prefix);
    t.is((await ps(d))[0]!.pid, web!.pid);
    const stats = (await daemonRequest(d, { cmd: 'stats', name: 'web' })).stats as { nets: Record<string, { tap: string } | undefined> };
    t.is(stats.nets.service0?.tap, 'tapd0');
    await daemonRequest(d, { cmd: 'stop', name: 'web' });
    t.false(alive(web!.pid!));
    const links = (await ns.ip('link', 'show')).stdout;
    t.false(links.includes('tapd0'));
    t.false(links.includes('brd0'));
    await stopDaemon(again);
  });
});

withGcc(`daemon: block devices attached by name (busy while used), CLI dump/restore, memory and bridge policies for Solo5 images${suffix}`, async (t) => {
  const d = path.join(dir, 'd4');
  const blockImage = buildImage(dir, path.join(dir, 'blk.spt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'storage', type: 'BLOCK_BASIC' }])),
  });
  const daemon = await startDaemon(d, { STUB_SLEEP_MS: '-1', STUB_MANIFEST: 'block:storage' });
  t.is(morgana(['daemon', 'block', 'create', 'acme:vol', '1M', '--dir', d]).stdout, 'acme:vol: 1048576 bytes\n');
  const payload = randomBytes(300_000);
  writeFileSync(path.join(dir, 'payload.bin'), payload);
  const restore = morgana(['daemon', 'block', 'restore', 'acme:vol', path.join(dir, 'payload.bin'), '--dir', d]);
  t.is(restore.stdout, 'acme:vol: 300000 bytes restored\n', restore.stderr);

  t.is(morgana(['daemon', 'policy', 'set', 'acme', '--mem', '100', '--bridges', 'br0', '--block-quota', '1M', '--dir', d]).status, 0);
  const quota = morgana(['daemon', 'block', 'create', 'acme:vol2', '512', '--dir', d]);
  t.is(quota.status, 1);
  t.regex(quota.stderr, /ERR_DAEMON_POLICY: block 'acme:vol2' refused by the policy of 'acme': block storage would be 2 MB, limit 1 MB/);
  const tooBig = morgana(['daemon', 'deploy', blockImage, '--dir', d, '--tender', sptStub, '--name', 'acme:big', '--block', 'storage=@acme:vol']);
  t.regex(tooBig.stderr, /ERR_DAEMON_POLICY: 'acme:big' refused by the policy of 'acme': memory would be 512 MB, limit 100 MB/);
  const dep = morgana(['daemon', 'deploy', blockImage, '--dir', d, '--tender', sptStub, '--name', 'acme:db', '--mem', '64', '--block', 'storage=@acme:vol']);
  t.is(dep.status, 0, dep.stderr);
  const [db] = await ps(d);
  stray.add(db!.pid!);
  t.true(readFileSync(`/proc/${db!.pid}/cmdline`, 'utf8').split('\0').includes('--mem=64'));
  await until('block attached', () => morgana(['daemon', 'console', 'acme:db', '--dir', d]).stdout.includes(`[storage] block ${path.join(d, 'blocks', 'acme:vol.img')}, 1048576 bytes`));
  for (const args of [
    ['block', 'delete', 'acme:vol'],
    ['block', 'restore', 'acme:vol', path.join(dir, 'payload.bin')],
  ]) {
    const busy = morgana(['daemon', ...args, '--dir', d]);
    t.is(busy.status, 1);
    t.regex(busy.stderr, /ERR_DAEMON_BLOCK_BUSY: block device 'acme:vol' is attached to 'acme:db'/);
  }
  const twice = morgana(['daemon', 'deploy', blockImage, '--dir', d, '--tender', sptStub, '--name', 'acme:db2', '--mem', '16', '--block', 'storage=@acme:vol']);
  t.regex(twice.stderr, /ERR_DAEMON_BLOCK_BUSY/);
  const bridge = morgana(['daemon', 'deploy', netImage, '--dir', d, '--tender', hvtStub, '--name', 'acme:web', '--mem', '16', '--net', 'service0=tapx0@brx']);
  t.regex(bridge.stderr, /ERR_DAEMON_POLICY: 'acme:web' refused by the policy of 'acme': bridge brx not allowed \(allowed bridges br0\)/);
  t.is(morgana(['daemon', 'stop', 'acme:db', '--dir', d]).status, 0);

  const out = path.join(dir, 'dump.bin');
  const dump = morgana(['daemon', 'block', 'dump', 'acme:vol', out, '--dir', d]);
  t.is(dump.status, 0, dump.stderr);
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  t.is(sha(readFileSync(out)), sha(Buffer.concat([payload, Buffer.alloc((1 << 20) - payload.length)])));
  t.regex(morgana(['daemon', 'block', 'list', '--dir', d]).stdout, /^NAME\s+SIZE\s+ALLOCATED\nacme:vol\s+1048576\s+\d+\n$/);
  t.is(morgana(['daemon', 'block', 'delete', 'acme:vol', '--dir', d]).status, 0);
  const events = morgana(['daemon', 'events', '--dir', d]).stdout;
  for (const step of ['block-created', 'block-restored', 'policy-set', 'refused', 'created', 'destroyed', 'block-deleted']) t.regex(events, new RegExp(`Z  ${step}\\s`));
  await stopDaemon(daemon);
});

kernelTest(test, 'daemon metrics in a namespace: TAP counters per NET device grow between two scrapes, promtool accepts them', async (t) => {
  const { withNetns } = await import('./helpers/netns.js');
  await withNetns(async (ns) => {
    const d = path.join(dir, 'd5');
    await ns.ip('link', 'set', 'lo', 'up');
    const env = { STUB_SLEEP_MS: '-1', STUB_MANIFEST: 'net:service0', STUB_SEND: '40' };
    const daemon = await startDaemon(d, env, ['ip', 'netns', 'exec', ns.name], ['--metrics', '127.0.0.1:9464']);
    await daemonRequest(d, { cmd: 'deploy', options: { image: netImage, tender: hvtStub, kvmDevice: '/dev/null', name: 'web', nets: [{ name: 'service0', tap: 'tapm0' }] } });
    const [web] = await ps(d);
    stray.add(web!.pid!);
    const scrape = async (): Promise<string> => (await ns.exec('curl', ['-sf', 'http://127.0.0.1:9464/metrics'])).stdout;
    const sent = (body: string): number => Number(/^morgana_unikernel_network_transmit_packets_total\{name="web",device="service0",tap="tapm0"\} (\d+)$/m.exec(body)?.[1] ?? -1);
    await until('first frames counted', async () => sent(await scrape()) >= 2);
    const first = await scrape();
    await until('more frames counted', async () => sent(await scrape()) > sent(first));
    const second = await scrape();
    t.true(sent(second) > sent(first));
    t.regex(second, /^morgana_unikernel_network_transmit_bytes_total\{name="web",device="service0",tap="tapm0"\} [1-9]\d*$/m);
    t.regex(second, /^morgana_unikernel_network_receive_drops_total\{name="web",device="service0",tap="tapm0"\} \d+$/m);
    for (const body of [first, second]) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
      t.is(check.status, 0, `${check.stdout}${check.stderr}`);
    }
    const stats = JSON.parse(morgana(['daemon', 'stats', 'web', '--json', '--dir', d]).stdout) as { nets: Record<string, { rxPackets: number }> };
    t.true(stats.nets.service0!.rxPackets >= sent(first));
    await daemonRequest(d, { cmd: 'stop', name: 'web' });
    await stopDaemon(daemon);
  });
}, ['curl', 'promtool']);

withGcc(`daemon update of a Solo5 image: refused before touching the running one when the new image cannot run, swapped otherwise${suffix}`, async (t) => {
  const d = path.join(dir, 'd6');
  const daemon = await startDaemon(d, { STUB_SLEEP_MS: '-1' });
  t.is(morgana(['daemon', 'deploy', sptImage, '--dir', d, '--tender', sptStub, '--name', 'svc', '--start-order', '1', '--', 'v1']).status, 0);
  const [before] = await ps(d);
  stray.add(before!.pid!);
  // An hvt image under the spt tender fails its pre-flight: the running unikernel is left alone.
  const wrong = morgana(['daemon', 'update', 'svc', netImage, '--dir', d]);
  t.is(wrong.status, 1);
  t.regex(wrong.stderr, /ERR_SOLO5_/);
  const [same] = await ps(d);
  t.is(same!.pid, before!.pid);
  t.true(alive(before!.pid!));
  // A good new image replaces it, with the same configuration (arguments, start order).
  const v2 = path.join(dir, 'svc-v2.spt');
  writeFileSync(v2, readFileSync(sptImage));
  const ok = morgana(['daemon', 'update', 'svc', v2, '--boot-ms', '300', '--dir', d]);
  t.is(ok.status, 0, ok.stderr);
  const [after] = await ps(d);
  stray.add(after!.pid!);
  t.is(after!.image, v2);
  t.is(after!.startOrder, 1);
  t.not(after!.pid, before!.pid);
  t.false(alive(before!.pid!));
  await until('v2 console', () => morgana(['daemon', 'console', 'svc', '--count', '100', '--dir', d]).stdout.includes("Command line is: 'v1'"));
  t.regex(morgana(['daemon', 'events', 'svc', '--dir', d]).stdout, /updated\s+svc\s+now .*svc-v2\.spt/);
  t.is(morgana(['daemon', 'stop', 'svc', '--dir', d]).status, 0);
  await stopDaemon(daemon);
});
