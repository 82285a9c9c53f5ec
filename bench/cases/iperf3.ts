/**
 * iperf3 in the suite (issue 9): TCP throughput driven by iperf3, in a network namespace the
 * benchmark creates (and deletes). The TCP baseline is Debian's `iperf3` across a veth pair between
 * two namespaces (`peers.ts`, issue 14), the UDP one over a namespace's loopback, measured in the
 * same run; next to it the kernel over loopback (TCP), Morgana's iperf3 client (on a
 * stack on a TAP device in the namespace, with the kernel's offloads and `morgana iperf3`'s
 * 4 MiB TCP buffers, as the command runs) against the kernel's `iperf3 -s`, and the kernel's
 * `iperf3 -c` against Morgana's iperf3 server.
 *
 * iperf3 runs whole tests and Morgana's iperf3 only bounds them by time, so each case starts one
 * long test in `setup` (`-t 3600`, stopped at teardown) and `run(n)` waits until `n` more MiB of
 * payload have been transferred: for Morgana, its TCP engine's payload counters (received bytes;
 * sent bytes minus retransmitted ones); for the loopback baseline, the namespace's `lo` receive
 * counter (headers included, about 0.1 % at lo's 64 KiB MTU), polled every millisecond. Needs root
 * and `iperf3`; skipped with the reason otherwise.
 *
 * UDP (`-u -b 1G -l 1460`, one stream): the same three pairings at a target of 1 Gbit/s; a MiB is
 * counted when that many 1460-byte datagrams arrived (the kernel's `Udp: InDatagrams` in the
 * namespace, or Morgana's UDP receive counter), so the rate is what the receiver got of the
 * target. The Morgana cases also report the datagram loss over the samples as a metric: the
 * share of the datagrams the sender handed to its stack (the kernel's `OutDatagrams`, or
 * Morgana's UDP send counter) that did not arrive.
 * @module
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Iperf3Server, runIperf3Client, startIperf3Server } from '../../ts/index.js';
import { IPERF3_DEFAULT_WINDOW } from '../../ts/apps/iperf3.js';
import { commandUnavailable, kernelTestsUnavailable, type Netns, createNetns } from '../../__test__/helpers/netns.js';
import type { BenchCase, BenchMetric } from '../harness.js';
import { type TapStack, tapStack } from '../tap-stack.js';

const MIB = 1 << 20;
const GROUP = 'iperf3 TCP, 1 stream';
const skip = () => kernelTestsUnavailable() ?? commandUnavailable('iperf3');
/** The TCP buffers `morgana iperf3` gives its stack (its `-w` default), so the cases measure what it does. */
const IPERF3_TCP = { sendBuffer: IPERF3_DEFAULT_WINDOW, recvBuffer: IPERF3_DEFAULT_WINDOW };

/** Waits until `read()` has grown by `bytes`, polling every millisecond. */
async function transferred(read: () => number, bytes: number, timeoutMs = 60_000): Promise<void> {
  const target = read() + bytes;
  const deadline = Date.now() + timeoutMs;
  while (read() < target) {
    if (Date.now() > deadline) throw new Error(`iperf3 moved ${read() - target + bytes} of ${bytes} bytes within ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** Starts `iperf3 -s` in the namespace and waits until it listens. */
async function kernelServer(ns: Netns): Promise<ChildProcess> {
  const server = ns.spawn('iperf3', ['-s', '-p', '5201'], { stdio: ['ignore', 'ignore', 'ignore'] });
  for (let i = 0; i < 200; i++) {
    const { stdout } = await ns.exec('ss', ['-Htln', 'sport = :5201']);
    if (stdout.trim() !== '') return server;
    await sleep(10);
  }
  throw new Error('iperf3 -s did not start listening');
}

/** The kernel's UDP counters (`/proc/net/snmp`) in the network namespace of process `pid`. */
function udpCounters(pid: number): { inDatagrams: number; outDatagrams: number } {
  const lines = readFileSync(`/proc/${pid}/net/snmp`, 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const get = (name: string) => Number(values[names.indexOf(name)]);
  return { inDatagrams: get('InDatagrams'), outDatagrams: get('OutDatagrams') };
}

/** Bytes received on `dev`, from the network namespace of process `pid`. */
function rxBytes(pid: number, dev: string): number {
  const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
    .split('\n')
    .find((l) => l.trimStart().startsWith(`${dev}:`));
  if (!line) throw new Error(`no ${dev} in /proc/${pid}/net/dev`);
  return Number(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)[0]);
}

// --- Kernel iperf3 over the namespace's loopback (the baseline) ----------------------------------

let loop: { ns: Netns; server: ChildProcess } | undefined;

// --- Morgana on TAP --------------------------------------------------------------------------

let tap: { rig: TapStack; test: Promise<unknown>; server?: Iperf3Server } | undefined;

async function tapDown(): Promise<void> {
  if (!tap) return;
  const { rig, test, server } = tap;
  tap = undefined;
  server?.close();
  await rig.close();
  await test.catch(() => {});
}

/**
 * The transfer is under way: a first 32 MiB has gone through, past slow start, so the harness's
 * calibration (which sizes the samples from the time of its first 1 MiB) sees the steady rate.
 * With only 1 MiB of warm-up, a first MiB slowed by slow start sized the samples at ~20 ms, and
 * such short samples of a bursty 4 MiB window swung 10×.
 */
async function started(read: () => number): Promise<void> {
  await transferred(read, 32 * MIB, 30_000);
}

/**
 * The baseline: Debian's `iperf3 -c 127.0.0.1 <args>` against `iperf3 -s` in a namespace;
 * `progress(pid)` reads the bytes moved so far through the server's process.
 */
function loopbackCase(c: Pick<BenchCase, 'name' | 'group' | 'description' | 'baseline'>, args: string[], progress: (pid: number) => number): BenchCase {
  return {
    baseline: true,
    ...c,
    unit: 'MiB',
    bytesPerOp: MIB,
    skip,
    sampleMs: 500,
    async setup() {
      const ns = await createNetns();
      try {
        const server = await kernelServer(ns);
        ns.spawn('iperf3', ['-c', '127.0.0.1', '-p', '5201', ...args], { stdio: 'ignore' });
        loop = { ns, server };
        await started(() => progress(server.pid!));
      } catch (error) {
        loop = undefined;
        await ns.destroy();
        throw error;
      }
    },
    async run(n) {
      const pid = loop!.server.pid!;
      await transferred(() => progress(pid), n * MIB);
    },
    async teardown() {
      const ns = loop?.ns;
      loop = undefined;
      await ns?.destroy();
    },
  };
}

/**
 * Debian's `iperf3 -c <args>` in the namespace against Morgana's iperf3 server on TAP stack
 * `index` (with `morgana iperf3`'s buffers); `progress(rig)` reads the bytes Morgana received.
 * `onStarted` runs once they flow.
 */
function kernelClientCase(
  c: Pick<BenchCase, 'name' | 'group' | 'description' | 'metrics' | 'teardown'>,
  index: number,
  args: string[],
  progress: (rig: TapStack) => number,
  onStarted?: (rig: TapStack, client: ChildProcess) => void,
): BenchCase {
  return {
    unit: 'MiB',
    bytesPerOp: MIB,
    skip,
    sampleMs: 500,
    teardown: tapDown,
    ...c,
    async setup() {
      const rig = await tapStack(index, IPERF3_TCP);
      try {
        const server = startIperf3Server(rig.stack, { onError: () => {} });
        const client = rig.ns.spawn('iperf3', ['-c', rig.stackAddress, '-p', '5201', ...args], { stdio: 'ignore' });
        const test = new Promise((resolve) => client.once('exit', resolve));
        tap = { rig, test, server };
        await started(() => progress(rig));
        onStarted?.(rig, client);
      } catch (error) {
        await (tap ? tapDown() : rig.close());
        throw error;
      }
    },
    async run(n) {
      const rig = tap!.rig;
      await transferred(() => progress(rig), n * MIB);
    },
  };
}

export const cases: BenchCase[] = [
  loopbackCase(
    {
      name: 'iperf3 · kernel client → kernel server, namespace loopback',
      group: GROUP,
      description: 'Debian iperf3 -c 127.0.0.1 -t 3600 against iperf3 -s in a namespace; bytes counted on its lo',
      // The group's baseline is the kernel across a veth pair (bench/cases/peers.ts), a link
      // like the TAP the Morgana cases use.
      baseline: false,
    },
    ['-t', '3600'],
    (pid) => rxBytes(pid, 'lo'),
  ),
  {
    name: 'iperf3 · Morgana client → kernel iperf3 -s over TAP',
    group: GROUP,
    unit: 'MiB',
    bytesPerOp: MIB,
    description: "Morgana's runIperf3Client on a TAP stack in the namespace against Debian's iperf3 -s there; sent payload minus retransmissions",
    skip,
    sampleMs: 500,
    async setup() {
      const rig = await tapStack(22, IPERF3_TCP);
      try {
        await kernelServer(rig.ns);
        const test = runIperf3Client(rig.stack, rig.kernelAddress, { duration: 3600 });
        tap = { rig, test };
        test.catch(() => {});
        await started(() => sent(rig));
      } catch (error) {
        await (tap ? tapDown() : rig.close());
        throw error;
      }
    },
    async run(n) {
      const rig = tap!.rig;
      await transferred(() => sent(rig), n * MIB);
    },
    teardown: tapDown,
  },
  kernelClientCase(
    {
      name: "iperf3 · kernel iperf3 -c → Morgana's iperf3 server over TAP",
      group: GROUP,
      description: "Debian's iperf3 -c -t 3600 in the namespace against startIperf3Server on a TAP stack; payload received by Morgana's TCP",
    },
    23,
    ['-t', '3600'],
    received,
  ),
];

// --- UDP -------------------------------------------------------------------------------------

const UDP_GROUP = 'iperf3 UDP -b 1G, 1 stream';
const UDP_BLOCK = 1460;
const UDP_ARGS = ['-u', '-b', '1G', '-l', String(UDP_BLOCK), '-t', '3600'];

/** Loss between two datagram counters over the samples: set at the end of setup, read in `metrics`. */
let udpLoss: { sent: () => number; received: () => number; sent0: number; received0: number } | undefined;

/** Starts counting loss between the two counters from their current values. */
function measureLoss(sent: () => number, received: () => number): void {
  udpLoss = { sent, received, sent0: sent(), received0: received() };
}

async function udpTapDown(): Promise<void> {
  udpLoss = undefined;
  await tapDown();
}

function lossMetric(what: string): BenchMetric[] {
  const l = udpLoss!;
  const sentDelta = l.sent() - l.sent0;
  const receivedDelta = l.received() - l.received0;
  return [
    {
      name: 'datagram loss',
      value: sentDelta > 0 ? (100 * Math.max(0, sentDelta - receivedDelta)) / sentDelta : 0,
      unit: '%',
      better: 'lower',
      description: `${what}, over the calibration and samples (${sentDelta.toLocaleString('en')} datagrams sent)`,
    },
  ];
}

function udpReceived(rig: TapStack): number {
  return rig.stack.stats().udp.received;
}

/** The kernel's `iperf3 -s` (spawned in the rig's namespace) as a process to read counters through. */
let udpKernelPid: number | undefined;

const udpCases: BenchCase[] = [
  loopbackCase(
    {
      name: 'iperf3 UDP · kernel client → kernel server, namespace loopback',
      group: UDP_GROUP,
      description: `Debian iperf3 -c 127.0.0.1 ${UDP_ARGS.join(' ')} against iperf3 -s in a namespace; MiB of ${UDP_BLOCK}-byte datagrams received (Udp InDatagrams)`,
    },
    UDP_ARGS,
    (pid) => udpCounters(pid).inDatagrams * UDP_BLOCK,
  ),
  kernelClientCase(
    {
      name: "iperf3 UDP · kernel iperf3 -c -u → Morgana's iperf3 server over TAP",
      group: UDP_GROUP,
      description: `Debian's iperf3 -c ${UDP_ARGS.join(' ')} in the namespace against startIperf3Server on a TAP stack; MiB of datagrams Morgana's UDP received`,
      metrics: () => lossMetric("share of the kernel client's UDP OutDatagrams that Morgana's UDP layer did not receive"),
      teardown: udpTapDown,
    },
    24,
    UDP_ARGS,
    (rig) => udpReceived(rig) * UDP_BLOCK,
    (rig, client) => {
      const pid = client.pid!;
      measureLoss(() => udpCounters(pid).outDatagrams, () => udpReceived(rig));
    },
  ),
  {
    name: 'iperf3 UDP · Morgana client -u → kernel iperf3 -s over TAP',
    group: UDP_GROUP,
    unit: 'MiB',
    bytesPerOp: MIB,
    description: `Morgana's runIperf3Client (UDP, 1 Gbit/s, ${UDP_BLOCK}-byte datagrams) on a TAP stack against Debian's iperf3 -s; MiB of datagrams the kernel received (Udp InDatagrams)`,
    skip,
    sampleMs: 500,
    async setup() {
      const rig = await tapStack(25);
      try {
        const server = await kernelServer(rig.ns);
        const pid = server.pid!;
        udpKernelPid = pid;
        const test = runIperf3Client(rig.stack, rig.kernelAddress, { protocol: 'UDP', bitrate: 1e9, blockSize: UDP_BLOCK, duration: 3600 });
        tap = { rig, test };
        test.catch(() => {});
        await started(() => udpCounters(pid).inDatagrams * UDP_BLOCK);
        measureLoss(() => rig.stack.stats().udp.sent, () => udpCounters(pid).inDatagrams);
      } catch (error) {
        await (tap ? tapDown() : rig.close());
        throw error;
      }
    },
    async run(n) {
      const pid = udpKernelPid!;
      await transferred(() => udpCounters(pid).inDatagrams * UDP_BLOCK, n * MIB);
    },
    metrics: () => lossMetric("share of the datagrams Morgana's UDP layer sent that were not delivered to iperf3's socket (the kernel's Udp InDatagrams; drops at a full socket buffer count as lost)"),
    async teardown() {
      udpKernelPid = undefined;
      await udpTapDown();
    },
  },
];
cases.push(...udpCases);

function sent(rig: TapStack): number {
  const s = rig.stack.stats().tcp;
  return s.bytesOut - s.retransmittedBytes;
}

function received(rig: TapStack): number {
  return rig.stack.stats().tcp.bytesIn;
}
