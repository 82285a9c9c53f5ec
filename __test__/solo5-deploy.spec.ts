/**
 * Deploying Solo5 unikernels with a stub tender built here with gcc (it checks its argv like
 * solo5-hvt, opens the TAPs and block files it gets, prints console lines, exits as told): the
 * pre-flight checks, command lines, console capture, exit classification and restart policy; and,
 * as root inside a network namespace created for the test, TAP / bridge / block provisioning
 * and clean-up, TAP counters, and the `morgana deploy` CLI. A real solo5-hvt run is skipped
 * unless one is on PATH with a working /dev/kvm.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type DeployOptions, type ExitInfo, MorganaError, type Solo5Device, type Unikernel, deployUnikernel, encodeManifest, parseGuestCmdline, planDeployment } from 'morgana';
import { kernelTest } from './helpers/netns.js';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';

const skip = gccUnavailable();
const withGcc = skip ? test.serial.skip : test.serial;
const suffix = skip ? ` (skipped: ${skip})` : '';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-solo5-deploy-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const cli = path.resolve('dist/cli.js');

const NET_BLOCK: Solo5Device[] = [
  { name: 'service0', type: 'NET_BASIC' },
  { name: 'storage', type: 'BLOCK_BASIC' },
];

let hvtStub: string;
let sptStub: string;
let abi1Stub: string;
let plain: string; // hvt, no devices
let withDevices: string; // hvt, service0 + storage
let sptImage: string;

function image(name: string, target: number, version: number, devices: Solo5Device[]): string {
  return buildImage(dir, path.join(dir, name), { abi: elfNote('Solo5', NT_ABI, abiDesc(target, version)), manifest: elfNote('Solo5', NT_MFT, encodeManifest(devices)) });
}

test.before(() => {
  if (skip) return;
  for (const d of ['hvt', 'spt', 'abi1']) spawnSync('mkdir', ['-p', path.join(dir, d)]);
  hvtStub = buildStubTender(path.join(dir, 'hvt'), 'solo5-hvt', 2);
  sptStub = buildStubTender(path.join(dir, 'spt'), 'solo5-spt', 2);
  abi1Stub = buildStubTender(path.join(dir, 'abi1'), 'solo5-hvt', 1);
  plain = image('plain.hvt', 1, 2, []);
  withDevices = image('dev.hvt', 1, 2, NET_BLOCK);
  sptImage = image('plain.spt', 2, 2, []);
});

/** Options for the stub: /dev/null stands in for /dev/kvm (the KVM check has its own test). */
function stub(options: Omit<Partial<DeployOptions>, 'env'> & { env?: Record<string, string> }): DeployOptions {
  return { image: plain, tender: hvtStub, kvmDevice: '/dev/null', ...options, env: { ...process.env, ...options.env } };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    if (!(error instanceof MorganaError)) throw error;
    return error.code;
  }
  return 'OK';
}

function waitFor(uk: Unikernel, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const seen = uk.console().find((l) => re.test(l.line));
  if (seen) return Promise.resolve(seen.line);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; console: ${uk.console().map((l) => l.line).join(' | ')}`)), timeoutMs);
    const on = (l: { line: string }): void => {
      if (!re.test(l.line)) return;
      clearTimeout(timer);
      uk.off('console', on);
      resolve(l.line);
    };
    uk.on('console', on);
  });
}

withGcc(`console lines, log file, guest arguments and the tender command line${suffix}`, async (t) => {
  const argvFile = path.join(dir, 'argv1');
  const log = path.join(dir, 'console1.log');
  const args = ['--hello=Hello, world!', 'quote"d', 'back\\slash', 'tab\tand\nnewline', '--help'];
  const uk = await deployUnikernel(stub({ memoryMB: 16, args, logLevel: 'info', logFile: log, consoleLines: 3, env: { STUB_ARGV: argvFile, STUB_LINES: '5' } }));
  const lines: string[] = [];
  uk.on('console', (l) => lines.push(l.line));
  const exit = await uk.exited;
  t.is(exit.kind, 'clean');
  t.false(exit.failed);
  const argv = readFileSync(argvFile, 'latin1').split('\0').slice(0, -1);
  t.deepEqual(argv.slice(1, 4), ['--mem=16', '--', plain]);
  t.is(argv[4], '--solo5:info');
  // What the tender joined is what parse-argv splits back into the original arguments.
  const cmdline = /Command line is: '(.*)'$/s.exec(readFileSync(log, 'utf8').split('\nconsole line 0')[0]!)?.[1];
  t.truthy(cmdline);
  t.deepEqual(parseGuestCmdline(cmdline!), args);
  // The ring keeps the last 3 lines; the log file has them all.
  t.deepEqual(
    uk.console().map((l) => l.line),
    ['console line 3', 'console line 4', 'Solo5: solo5_exit(0) called'],
  );
  t.true(readFileSync(log, 'utf8').includes('console line 0\nconsole line 1\n'));
  t.true(lines.length > 0);
});

withGcc(`exits are classified: abort, tender error, signal, MirageOS codes, stop${suffix}`, async (t) => {
  const run = async (env: Record<string, string>, opts: Omit<Partial<DeployOptions>, 'env'> = {}): Promise<ExitInfo> => (await deployUnikernel(stub({ env, ...opts }))).exited;
  t.like(await run({ STUB_EXIT: '255' }), { kind: 'guest-abort', code: 255, failed: true });
  t.like(await run({ STUB_EXIT: '2' }), { kind: 'ocaml-exception', code: 2 });
  t.like(await run({ STUB_EXIT: '63' }), { kind: 'mirage-help', code: 63 });
  t.like(await run({ STUB_EXIT: '64' }), { kind: 'mirage-argument-error', code: 64 });
  t.like(await run({ STUB_EXIT: '7' }), { kind: 'guest-exit', code: 7 });
  t.like(await run({ STUB_SIGNAL: '11' }, { image: sptImage, tender: sptStub }), { kind: 'signal', signal: 'SIGSEGV', code: null });
  // hvt exits 1 on SIGTERM: a requested stop is 'stopped', not a tender error.
  const hvt = await deployUnikernel(stub({ env: { STUB_SLEEP_MS: '-1' } }));
  await waitFor(hvt, /Command line is/);
  t.true(hvt.running);
  const stopped = await hvt.stop();
  t.like(stopped, { kind: 'stopped', code: 1, failed: false });
  t.true(hvt.console().some((l) => l.stream === 'stderr' && /Exiting on signal 15/.test(l.line)));
  // spt has no handler: killed by SIGTERM.
  const spt = await deployUnikernel(stub({ image: sptImage, tender: sptStub, env: { STUB_SLEEP_MS: '-1' } }));
  await waitFor(spt, /Command line is/);
  t.like(await spt.stop(), { kind: 'stopped', signal: 'SIGTERM', failed: false });
});

withGcc(`a tender error is classified with the tender's message${suffix}`, async (t) => {
  // An undeclared block device slips past nothing in Morgana (the image declares none), so make
  // the stub believe the image declares one that is not attached.
  const uk = await deployUnikernel(stub({ env: { STUB_MANIFEST: 'net:service0' } }));
  const exit = await uk.exited;
  t.is(exit.kind, 'tender-error');
  t.is(exit.code, 1);
  t.regex(exit.description, /All declared devices must be attached/);
});

withGcc(`restart on failure with backoff and a limit${suffix}`, async (t) => {
  const counter = path.join(dir, 'counter-a');
  const uk = await deployUnikernel(stub({ restart: { mode: 'on-failure', backoffMs: 20 }, env: { STUB_EXITS: '2,255,0', STUB_COUNTER: counter } }));
  const delays: number[] = [];
  uk.on('restart', (_n, d) => delays.push(d));
  const exit = await uk.exited;
  t.is(exit.kind, 'clean');
  t.is(uk.restarts, 2);
  t.deepEqual(delays, [20, 40]);
  const limited = await deployUnikernel(stub({ restart: { mode: 'on-failure', backoffMs: 10, maxRestarts: 2 }, env: { STUB_EXIT: '3' } }));
  t.like(await limited.exited, { kind: 'guest-exit', code: 3 });
  t.is(limited.restarts, 2);
  // Argument errors and tender errors are not restarted; nor is an exit outside exitCodes.
  const cases: [string, { exitCodes?: number[] }][] = [
    ['64', {}],
    ['1', {}],
    ['3', { exitCodes: [2] }],
  ];
  for (const [code, opts] of cases) {
    const once = await deployUnikernel(stub({ restart: { mode: 'on-failure', backoffMs: 10, ...opts }, env: { STUB_EXIT: code } }));
    await once.exited;
    t.is(once.restarts, 0, `exit ${code}`);
  }
  // stop() during the backoff cancels the restart.
  const pending = await deployUnikernel(stub({ restart: { mode: 'on-failure', backoffMs: 60_000 }, env: { STUB_EXIT: '2' } }));
  await new Promise((resolve) => pending.once('restart', resolve));
  const final = await pending.stop();
  t.is(final.code, 2);
  t.is(pending.restarts, 1);
});

withGcc(`pre-flight checks: devices, target, ABI version, KVM, tender, arguments${suffix}`, async (t) => {
  const mismatch = await t.throwsAsync(planDeployment(stub({ image: withDevices, nets: [{ name: 'service1', tap: 'tap0' }] })), { instanceOf: MorganaError });
  t.is(mismatch.code, 'ERR_SOLO5_DEVICE_MISMATCH');
  t.regex(mismatch.message, /BLOCK_BASIC device 'storage' is declared in the manifest but not attached/);
  t.regex(mismatch.message, /NET_BASIC device 'service1' is not declared/);
  t.regex(mismatch.message, /Devices in the manifest: service0 \(NET_BASIC\), storage \(BLOCK_BASIC\)/);
  t.is(await codeOf(planDeployment(stub({ image: withDevices, blocks: [{ name: 'service0', file: '/x' }, { name: 'storage', file: '/y' }] }))), 'ERR_SOLO5_DEVICE_MISMATCH');
  t.is(await codeOf(planDeployment(stub({ image: plain, nets: [{ name: 'service0', tap: 'tap0' }] }))), 'ERR_SOLO5_DEVICE_MISMATCH');
  t.is(await codeOf(planDeployment(stub({ image: sptImage, target: 'hvt' }))), 'ERR_SOLO5_TARGET_MISMATCH');
  t.is(await codeOf(planDeployment(stub({ tender: sptStub }))), 'ERR_SOLO5_TARGET_MISMATCH'); // hvt image, spt tender
  t.is(await codeOf(planDeployment(stub({ tender: abi1Stub }))), 'ERR_SOLO5_ABI_MISMATCH');
  t.is(await codeOf(planDeployment(stub({ kvmDevice: path.join(dir, 'no-kvm') }))), 'ERR_SOLO5_NO_KVM');
  t.is(await codeOf(planDeployment(stub({ image: sptImage, tender: sptStub, kvmDevice: path.join(dir, 'no-kvm') }))), 'OK'); // spt needs no KVM
  t.is(await codeOf(planDeployment(stub({ tender: path.join(dir, 'solo5-nope') }))), 'ERR_SOLO5_TENDER_NOT_FOUND');
  t.is(await codeOf(planDeployment(stub({ tender: '/bin/true' }))), 'ERR_SOLO5_TENDER_VERSION');
  t.is(await codeOf(planDeployment(stub({ args: ['x'.repeat(9000)] }))), 'ERR_SOLO5_CMDLINE_TOO_LONG');
  t.is(await codeOf(planDeployment(stub({ args: [''] }))), 'ERR_SOLO5_BAD_GUEST_ARG');
  t.is(await codeOf(planDeployment(stub({ memoryMB: 0 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ name: '../x' }))), 'ERR_SOLO5_BAD_OPTION');
  // The console ring is bounded: a guest's output cannot make the deploying process (a daemon) grow without limit.
  t.is(await codeOf(planDeployment(stub({ consoleLines: 1e9 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ consoleLines: 0 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ maxLineLength: 1 << 30 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ maxLineLength: 2.5 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ consoleLines: 100_000, maxLineLength: 65_536 }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ consoleLines: 10_000, maxLineLength: 4096 }))), 'OK');
  t.is(await codeOf(planDeployment(stub({ image: withDevices, nets: [{ name: 'service0', tap: 'a-very-long-tap-name' }], blocks: [{ name: 'storage', file: '/x' }] }))), 'ERR_SOLO5_BAD_OPTION');
  t.is(await codeOf(planDeployment(stub({ image: withDevices, nets: [{ name: 'service0', tap: 'tap0', mac: 'nope' }], blocks: [{ name: 'storage', file: '/x' }] }))), 'ERR_INVALID_MAC');
  t.is(await codeOf(planDeployment(stub({ image: path.join(dir, 'plain.hvt.c') }))), 'ERR_SOLO5_NOT_ELF');
  t.is(await codeOf(planDeployment(stub({ gdb: true, image: sptImage, tender: sptStub }))), 'ERR_SOLO5_BAD_OPTION');
  const plan = await planDeployment(stub({ image: withDevices, memoryMB: 64, nets: [{ name: 'service0', tap: 'tap0', mac: '02:AA:00:00:00:01' }], blocks: [{ name: 'storage', file: 'disk.img', sectorSize: 4096 }], args: ['a b'], logLevel: 'quiet' }));
  t.deepEqual(plan.args, ['--mem=64', '--net:service0=tap0', '--net-mac:service0=02:aa:00:00:00:01', `--block:storage=${path.resolve('disk.img')}`, '--block-sector-size:storage=4096', '--', withDevices, '--solo5:quiet', 'a\\ b']);
  t.is(plan.name, 'dev');
  const debug = await planDeployment(stub({ gdb: true, gdbPort: 1234, dumpcore: dir }));
  t.deepEqual(debug.args, ['--gdb', '--gdb-port=1234', `--dumpcore=${dir}`, '--', plain]);
  const noDebugTender = await t.throwsAsync(planDeployment({ image: plain, gdb: true, kvmDevice: '/dev/null' }), { instanceOf: MorganaError });
  t.regex(noDebugTender.message, /solo5-hvt-debug/); // the debug tender is looked up on PATH
});

withGcc(`stats come from /proc while the tender runs${suffix}`, async (t) => {
  const uk = await deployUnikernel(stub({ env: { STUB_SLEEP_MS: '-1' } }));
  await waitFor(uk, /Command line is/);
  const s = await uk.stats();
  t.is(s.process?.pid, uk.pid);
  t.true(s.process!.rssKiB > 0);
  t.true(s.process!.threads >= 1);
  t.true(s.uptimeMs! >= 0);
  await uk.stop();
  t.is((await uk.stats()).process, undefined);
});

function morgana(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

withGcc(`morgana deploy: exit statuses and usage errors${suffix}`, (t) => {
  // hvt images need /dev/kvm, so these use an spt image and the spt stub.
  const ok = morgana(['deploy', sptImage, '--tender', sptStub, '--', 'one', 'two words'], { STUB_LINES: '1' });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /Command line is: 'one two\\ words'/);
  t.regex(ok.stdout, /console line 0/);
  t.is(morgana(['deploy', sptImage, '--tender', sptStub], { STUB_EXIT: '3' }).status, 3);
  t.is(morgana(['deploy', sptImage, '--tender', sptStub], { STUB_SIGNAL: '11' }).status, 139);
  const restarted = morgana(['deploy', sptImage, '--tender', sptStub, '--restart', 'on-failure', '--max-restarts', '2', '--backoff', '10'], { STUB_EXIT: '2' });
  t.is(restarted.status, 2);
  t.is((restarted.stderr.match(/will restart/g) ?? []).length, 2);
  const mismatch = morgana(['deploy', sptImage, '--tender', sptStub, '--net', 'service0=tap0']);
  t.is(mismatch.status, 1);
  t.regex(mismatch.stderr, /ERR_SOLO5_DEVICE_MISMATCH/);
  t.is(morgana(['deploy']).status, 64);
  t.is(morgana(['deploy', sptImage, '--net', 'nonsense']).status, 64);
  t.is(morgana(['deploy', sptImage, '--target', 'xen']).status, 64);
  t.is(morgana(['deploy', sptImage, '--tender', sptStub, '--mem', '0']).status, 64);
  const dry = morgana(['deploy', sptImage, '--tender', sptStub, '--dry-run', '--mem', '32', '--', '--help']);
  t.is(dry.status, 0, dry.stderr);
  t.deepEqual((JSON.parse(dry.stdout) as { command: string[] }).command, [sptStub, '--mem=32', '--', sptImage, '--help']);
});

kernelTest(test, 'deploy provisions TAP, bridge and a sparse block image in a namespace, and removes what it created', async (t) => {
  const { withNetns } = await import('./helpers/netns.js');
  await withNetns(async (ns) => {
    await ns.ip('tuntap', 'add', 'dev', 'tapkeep', 'mode', 'tap'); // pre-existing: must survive
    const disk = path.join(dir, 'disk-a.img');
    const uk = await deployUnikernel(
      stub({
        image: withDevices,
        netns: ns.name,
        nets: [{ name: 'service0', tap: 'tapuk0', bridge: 'bruk0', mac: '02:00:00:00:00:2a' }],
        blocks: [{ name: 'storage', file: disk, size: 64 << 20 }],
        env: { STUB_MANIFEST: 'net:service0,block:storage', STUB_SEND: '1', STUB_SLEEP_MS: '-1' },
      }),
    );
    await waitFor(uk, /\[service0\] attached to tapuk0/);
    await waitFor(uk, /Command line is/);
    t.truthy(uk.console().find((l) => l.line === '[service0] mac 02:00:00:00:00:2a'));
    t.truthy(uk.console().find((l) => l.line === `[storage] block ${disk}, ${64 << 20} bytes`));
    const st = statSync(disk);
    t.is(st.size, 64 << 20);
    t.true(st.blocks * 512 < 1 << 20, 'sparse');
    const link = JSON.parse((await ns.ip('-j', '-d', 'link', 'show', 'dev', 'tapuk0')).stdout) as { master?: string; flags: string[] }[];
    t.is(link[0]!.master, 'bruk0');
    t.true(link[0]!.flags.includes('UP'));
    // The stub wrote one frame into its TAP: the host side received it.
    let stats = await uk.stats();
    for (let i = 0; i < 20 && !(stats.nets.service0!.rxPackets >= 1); i++) {
      await new Promise((r) => setTimeout(r, 100));
      stats = await uk.stats();
    }
    t.is(stats.nets.service0!.tap, 'tapuk0');
    t.true(stats.nets.service0!.rxPackets >= 1, JSON.stringify(stats.nets));
    t.is(stats.process?.pid, uk.pid);
    t.like(await uk.stop(), { kind: 'stopped' });
    t.is((await ns.ip('link', 'show')).stdout.includes('tapuk0'), false);
    t.is((await ns.ip('link', 'show')).stdout.includes('bruk0'), false);
    t.true((await ns.ip('link', 'show')).stdout.includes('tapkeep'));
    t.true(existsSync(disk), 'block images are kept');
    // A second deployment with the existing TAP enslaved to a new bridge: the TAP stays, unenslaved.
    const again = await deployUnikernel(
      stub({ image: withDevices, netns: ns.name, nets: [{ name: 'service0', tap: 'tapkeep', bridge: 'bruk1' }], blocks: [{ name: 'storage', file: disk }], env: { STUB_SLEEP_MS: '-1' } }),
    );
    await waitFor(again, /Command line is/);
    await again.stop();
    const keep = JSON.parse((await ns.ip('-j', 'link', 'show', 'dev', 'tapkeep')).stdout) as { master?: string }[];
    t.is(keep[0]!.master, undefined);
    t.false((await ns.ip('link', 'show')).stdout.includes('bruk1'));
    // A failing provision (size mismatch of an existing image) leaves nothing behind.
    const failed = await codeOf(
      deployUnikernel(stub({ image: withDevices, netns: ns.name, nets: [{ name: 'service0', tap: 'tapuk2', bridge: 'bruk2' }], blocks: [{ name: 'storage', file: disk, size: 1 << 20 }] })),
    );
    t.is(failed, 'ERR_SOLO5_BLOCK');
    t.false((await ns.ip('link', 'show')).stdout.includes('tapuk2'));
    t.false((await ns.ip('link', 'show')).stdout.includes('bruk2'));
  });
});

kernelTest(test, 'morgana deploy run inside a namespace stops on SIGTERM and cleans up', async (t) => {
  const { withNetns } = await import('./helpers/netns.js');
  await withNetns(async (ns) => {
    const disk = path.join(dir, 'disk-b.img');
    const child = spawn(
      'ip',
      ['netns', 'exec', ns.name, process.execPath, cli, 'deploy', withDevices, '--tender', hvtStub, '--net', 'service0=tapcli0@brcli0', '--block', `storage=${disk},size=4M`, '--log', path.join(dir, 'cli.log'), '--', 'hello'],
      { env: { ...process.env, STUB_SLEEP_MS: '-1', STUB_MANIFEST: 'net:service0,block:storage' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    for (let i = 0; i < 100 && !out.includes('Command line is'); i++) await new Promise((r) => setTimeout(r, 100));
    t.regex(out, /Command line is: 'hello'/, err);
    t.true((await ns.ip('link', 'show')).stdout.includes('tapcli0'));
    child.kill('SIGTERM');
    t.is(await exited, 0, err);
    t.regex(err, /stopped/);
    t.false((await ns.ip('link', 'show')).stdout.includes('tapcli0'));
    t.false((await ns.ip('link', 'show')).stdout.includes('brcli0'));
    t.regex(readFileSync(path.join(dir, 'cli.log'), 'utf8'), /Exiting on signal 15/);
  });
});

// A real Solo5 unikernel end to end needs solo5-hvt, a Solo5 test image and a working /dev/kvm.
const realTender = spawnSync('sh', ['-c', 'command -v solo5-hvt'], { encoding: 'utf8' }).stdout.trim();
const realImage = process.env.MORGANA_SOLO5_TEST_HELLO; // path of Solo5's tests/test_hello/test_hello.hvt
let kvmOk = false;
try {
  accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  kvmOk = true;
} catch {
  kvmOk = false;
}
const realReason = !realTender ? 'no solo5-hvt on PATH' : !realImage ? 'MORGANA_SOLO5_TEST_HELLO is not set to a test_hello.hvt image' : !kvmOk ? '/dev/kvm is not usable' : undefined;
(realReason ? test.skip : test.serial)(`a real Solo5 unikernel runs end to end under solo5-hvt${realReason ? ` (skipped: ${realReason})` : ''}`, async (t) => {
  const uk = await deployUnikernel({ image: realImage!, memoryMB: 8, args: ['Hello_Solo5'] });
  const exit = await uk.exited;
  t.is(exit.kind, 'clean');
  t.true(uk.console().some((l) => l.line.includes('SUCCESS')));
});

withGcc(`virtio: the QEMU command line carries devices, kernel and escaped arguments${suffix}`, async (t) => {
  const virtio = image('v.virtio', 3, 1, NET_BLOCK);
  const plan = await planDeployment({
    image: virtio,
    tender: '/bin/true', // stands in for qemu-system-x86_64: virtio has no tender version check
    kvmDevice: path.join(dir, 'no-kvm'),
    memoryMB: 64,
    nets: [{ name: 'service0', tap: 'tapv0', mac: '02:00:00:00:00:01' }],
    blocks: [{ name: 'storage', file: '/d/a,b.img' }],
    args: ['x,y', 'two words'],
  });
  t.is(plan.target, 'virtio');
  t.is(plan.tenderVersion, undefined);
  t.is(plan.accel, 'tcg'); // no usable KVM: TCG, with a warning when it starts
  t.deepEqual(plan.warnings, [`${path.join(dir, 'no-kvm')} is missing or not readable and writable: QEMU runs with TCG (emulation, slower)`]);
  t.deepEqual(plan.args, [
    '-accel', 'tcg', '-m', '64', '-nodefaults', '-machine', 'acpi=off', '-display', 'none', '-serial', 'stdio', '-device', 'isa-debug-exit',
    '-device', 'virtio-net,netdev=n0,addr=2,bus=pci.0,mac=02:00:00:00:00:01', '-netdev', 'tap,id=n0,ifname=tapv0,script=no,downscript=no',
    '-drive', 'id=drive0,file=/d/a,,b.img,if=none,format=raw', '-device', 'virtio-blk,drive=drive0,addr=3,bus=pci.0',
    '-kernel', virtio, '-append', 'x,,y two\\ words',
  ]);
});

kernelTest(test, 'deploy --user runs the tender unprivileged with its block image handed over', async (t) => {
  const nobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' });
  if (nobody.status !== 0) {
    t.pass('no user nobody here');
    return;
  }
  const { chmodSync } = await import('node:fs');
  chmodSync(dir, 0o755);
  chmodSync(path.join(dir, 'hvt'), 0o755);
  const blockImage = image('blk.hvt', 1, 2, [{ name: 'storage', type: 'BLOCK_BASIC' }]);
  const disk = path.join(dir, 'user-disk.img');
  const uk = await deployUnikernel(stub({ image: blockImage, user: 'nobody', blocks: [{ name: 'storage', file: disk, size: 1 << 20 }], env: { STUB_SLEEP_MS: '-1' } }));
  await waitFor(uk, /Command line is/);
  const status = readFileSync(`/proc/${uk.pid}/status`, 'utf8');
  t.regex(status, new RegExp(`^Uid:\\s+${nobody.stdout.trim()}\\s`, 'm'));
  t.is(statSync(disk).uid, Number(nobody.stdout.trim()));
  t.truthy(uk.console().find((l) => l.line.startsWith('[storage] block')));
  await uk.stop();
});

kernelTest(test, 'a Morgana appliance on the same bridge receives the unikernel\'s frames', async (t) => {
  const { withNetns } = await import('./helpers/netns.js');
  const { openTap } = await import('morgana');
  await withNetns(async (ns) => {
    await ns.ip('link', 'add', 'name', 'brapp', 'type', 'bridge');
    await ns.ip('link', 'set', 'dev', 'brapp', 'up');
    const appliance = await openTap({ name: 'tapapp', netns: ns.name });
    try {
      await ns.ip('link', 'set', 'dev', 'tapapp', 'master', 'brapp', 'up');
      const frames: Buffer[] = [];
      appliance.listen((f) => frames.push(f));
      const netImage = image('net1.hvt', 1, 2, [{ name: 'service0', type: 'NET_BASIC' }]);
      const uk = await deployUnikernel(stub({ image: netImage, netns: ns.name, nets: [{ name: 'service0', tap: 'tapuk9', bridge: 'brapp' }], env: { STUB_SEND: '20', STUB_SLEEP_MS: '-1' } }));
      for (let i = 0; i < 50 && !frames.some((f) => f.readUInt16BE(12) === 0x88b5); i++) await new Promise((r) => setTimeout(r, 100));
      const frame = frames.find((f) => f.readUInt16BE(12) === 0x88b5);
      t.truthy(frame, `frames seen: ${frames.length}`);
      t.is(frame?.subarray(6, 12).toString('hex'), '020000000001');
      await uk.stop();
      // The bridge existed before the deployment: it stays; the unikernel's TAP goes.
      const links = (await ns.ip('link', 'show')).stdout;
      t.true(links.includes('brapp'));
      t.false(links.includes('tapuk9'));
    } finally {
      await appliance.close();
    }
  });
});
