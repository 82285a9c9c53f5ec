/**
 * iperf3 compatibility: Morgana's iperf3 server and client against each other on a
 * VirtualSwitch (no root), and against Debian's `iperf3` over a TAP device inside a network
 * namespace the test creates, in both directions.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { type Iperf3Result, type Stack, VirtualSwitch, createStack, openTap, runIperf3Client, startIperf3Server } from 'morgana';
import { type Netns, kernelTest, withNetns } from './helpers/netns.js';

const KERNEL = '10.89.0.1';
const MORGANA = '10.89.0.2';

/** Bytes and seconds agree with the rate, and the receiver got no more than was sent. */
function assertSane(t: ExecutionContext, sent: { bytes: number; seconds: number; bits_per_second: number }, received: { bytes: number; seconds: number; bits_per_second: number }, duration: number): void {
  t.true(sent.bytes > 0, 'bytes were sent');
  t.true(received.bytes > 0, 'bytes were received');
  t.true(received.bytes <= sent.bytes, `received ${received.bytes} ≤ sent ${sent.bytes}`);
  for (const s of [sent, received]) {
    t.true(Math.abs(s.seconds - duration) < 0.75, `seconds ${s.seconds} ≈ ${duration}`);
    t.true(Math.abs(s.bits_per_second - (s.bytes * 8) / s.seconds) <= 1e-6 * s.bits_per_second + 1, 'rate = bytes × 8 / seconds');
  }
}

function gbit(bps: number): string {
  return `${(bps / 1e9).toFixed(2)} Gbit/s`;
}

test('Morgana client and server on a VirtualSwitch: forward, reverse, parallel', async (t) => {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const alive = setInterval(() => {}, 1000);
  const server = startIperf3Server(b);
  try {
    for (const options of [{ reverse: false, parallel: 1 }, { reverse: true, parallel: 2 }]) {
      const serverSide = server.nextResult();
      const result = await runIperf3Client(a, '10.0.0.2', { duration: 1, ...options });
      const seen = await serverSide;
      t.is(result.end.streams.length, options.parallel);
      t.is(result.start.test_start.reverse, options.reverse ? 1 : 0);
      assertSane(t, result.end.sum_sent, result.end.sum_received, 1);
      // The server's view is the same test, seen from the other end.
      t.is(seen.end.sum_sent.bytes, result.end.sum_sent.bytes);
      t.is(seen.end.sum_received.bytes, result.end.sum_received.bytes);
      t.log(`${options.reverse ? 'reverse' : 'forward'} -P ${options.parallel}: ${gbit(result.end.sum_received.bits_per_second)}`);
    }
  } finally {
    server.close();
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
  }
});

test('a second client while a test runs gets ACCESS_DENIED', async (t) => {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const c = await createStack({ net: sw.connect(), ipv4: '10.0.0.3/24' });
  const alive = setInterval(() => {}, 1000);
  const server = startIperf3Server(b);
  try {
    const first = runIperf3Client(a, '10.0.0.2', { duration: 1 });
    await new Promise((r) => setTimeout(r, 300));
    await t.throwsAsync(runIperf3Client(c, '10.0.0.2', { duration: 1 }), { code: 'ERR_IPERF3_BUSY' });
    t.true((await first).end.sum_received.bytes > 0);
  } finally {
    server.close();
    clearInterval(alive);
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

/** A stack on a TAP in a fresh namespace whose kernel side is KERNEL/24. */
async function withTapStack(body: (stack: Stack, ns: Netns) => Promise<void>): Promise<void> {
  await withNetns(async (ns) => {
    const tap = await openTap({ name: 'mtap9', netns: ns.name });
    await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtap9');
    await ns.ip('link', 'set', 'mtap9', 'up');
    const stack = await createStack({ net: tap, ipv4: `${MORGANA}/24`, gateway: KERNEL });
    try {
      await body(stack, ns);
    } finally {
      await stack.close();
    }
  });
}

/** Waits until something listens on `address` (e.g. `10.89.0.1:5201`) inside `ns`. */
async function waitListening(ns: Netns, address: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ss = await ns.exec('ss', ['-ltnH'], { allowFailure: true });
    if (ss.stdout.includes(address)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${address}`);
}

interface KernelJson {
  end: { sum_sent: Iperf3Result['end']['sum_sent']; sum_received: Iperf3Result['end']['sum_received']; streams: unknown[] };
  error?: string;
}

kernelTest(test, "Debian's iperf3 client measures a Morgana server over TAP: -t 2, forward -P 2 and reverse", async (t) => {
  await withTapStack(async (stack, ns) => {
    const server = startIperf3Server(stack);
    try {
      for (const extra of [['-P', '2'], ['-R']]) {
        const run = await ns.exec('iperf3', ['-c', MORGANA, '-t', '2', '-J', ...extra], { timeoutMs: 30_000, allowFailure: true });
        const json = JSON.parse(run.stdout) as KernelJson;
        t.is(json.error, undefined, `iperf3 ${extra.join(' ')}: ${json.error ?? ''} ${run.stderr}`);
        t.is(run.code, 0);
        t.is(json.end.streams.length, extra[0] === '-P' ? 2 : 1);
        assertSane(t, json.end.sum_sent, json.end.sum_received, 2);
        t.log(`kernel iperf3 -c ${extra.join(' ')} → Morgana server: ${gbit(json.end.sum_received.bits_per_second)}`);
      }
    } finally {
      server.close();
    }
  });
}, ['iperf3']);

kernelTest(test, "Morgana's iperf3 client measures Debian's iperf3 -s over TAP: -t 2, forward -P 2 and reverse", async (t) => {
  await withTapStack(async (stack, ns) => {
    // A one-off kernel server per case: between tests iperf3 -s reopens its listening socket,
    // resetting connections that arrive meanwhile, so waiting for a fresh one is the robust way.
    for (const options of [{ parallel: 2, reverse: false }, { parallel: 1, reverse: true }]) {
      const kernel = ns.spawn('iperf3', ['-s', '-1', '-B', KERNEL, '-p', '5201']);
      try {
        await waitListening(ns, `${KERNEL}:5201`);
        const result = await runIperf3Client(stack, KERNEL, { duration: 2, ...options });
        t.is(result.end.streams.length, options.parallel);
        assertSane(t, result.end.sum_sent, result.end.sum_received, 2);
        t.true(result.end.cpu_utilization_percent.remote_total >= 0);
        t.log(`Morgana client ${options.reverse ? '-R' : `-P ${options.parallel}`} → kernel iperf3 -s: ${gbit(result.end.sum_received.bits_per_second)}`);
        if (kernel.exitCode === null) await once(kernel, 'exit');
        t.is(kernel.exitCode, 0, 'the kernel server finished its one test cleanly');
      } finally {
        kernel.kill();
      }
    }
  });
}, ['iperf3']);

const CLI = path.resolve('dist', 'cli.js');

/** Runs `morgana iperf3 …` to completion. */
async function morgana(args: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'iperf3', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

test('morgana iperf3: bad usage exits 64 with the usage text', async (t) => {
  const none = await morgana([]);
  t.is(none.code, 64);
  t.regex(none.stderr, /exactly one of -s or -c HOST/);
  const noTap = await morgana(['-c', '10.0.0.1']);
  t.is(noTap.code, 64);
  t.regex(noTap.stderr, /--tap NAME and --ipv4/);
});

kernelTest(test, 'the CLI both ways: `morgana iperf3 -s -1 -J` measured by iperf3 -c, `morgana iperf3 -c -R -J` measuring iperf3 -s', async (t) => {
  await withNetns(async (ns) => {
    // A persistent TAP both CLI runs attach to, the kernel side addressed and up.
    await ns.ip('tuntap', 'add', 'mode', 'tap', 'name', 'mtap9');
    await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtap9');
    await ns.ip('link', 'set', 'mtap9', 'up');
    const common = ['--tap', 'mtap9', '--netns', ns.name, '--ipv4', `${MORGANA}/24`, '-J'];

    const server = morgana(['-s', '-1', ...common]);
    let client: Awaited<ReturnType<Netns['exec']>> | undefined;
    for (let i = 0; i < 40; i++) {
      client = await ns.exec('iperf3', ['-c', MORGANA, '-t', '2', '-P', '2', '-J'], { allowFailure: true, timeoutMs: 30_000 });
      if (client.code === 0) break;
      await new Promise((r) => setTimeout(r, 250)); // the server may still be starting
    }
    const served = await server;
    t.is(served.code, 0, served.stderr);
    const kernelView = JSON.parse(client!.stdout) as KernelJson;
    const morganaView = JSON.parse(served.stdout) as Iperf3Result;
    assertSane(t, kernelView.end.sum_sent, kernelView.end.sum_received, 2);
    t.is(morganaView.end.sum_received.bytes, kernelView.end.sum_received.bytes, 'both sides agree on what arrived');

    const kernel = ns.spawn('iperf3', ['-s', '-1', '-B', KERNEL]);
    await waitListening(ns, `${KERNEL}:5201`);
    const measured = await morgana(['-c', KERNEL, '-t', '2', '-R', ...common]);
    t.is(measured.code, 0, measured.stderr);
    const result = JSON.parse(measured.stdout) as Iperf3Result;
    t.is(result.start.test_start.reverse, 1);
    assertSane(t, result.end.sum_sent, result.end.sum_received, 2);
    kernel.kill();
  });
}, ['iperf3']);
