/**
 * TCP bulk against the kernel over TAP, in each direction (issue 9): a Morgana stack on a TAP
 * device in a network namespace the benchmark creates (and deletes), talking to a kernel TCP peer
 * (a small Node process in the namespace); next to Node's `net` in this process talking to the
 * same peer program over loopback, measured in the same run. Only the path differs: kernel
 * loopback versus kernel TCP → TAP → Morgana TCP.
 *
 * The peer speaks a one-byte protocol: `S` makes it a sink that answers one byte per MiB
 * received; `G` makes it a source that writes 64 KiB blocks with backpressure until the
 * connection closes. Send: `run(n)` writes `n` MiB and waits for the peer's `n` acknowledgements.
 * Receive: the source streams from `setup` on and `run(n)` waits until `n` more MiB arrived. Needs
 * root; skipped with the reason otherwise.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { kernelTestsUnavailable } from '../../__test__/helpers/netns.js';
import type { BenchCase } from '../harness.js';
import { Counter, type TapStack, firstLine, tapStack } from '../tap-stack.js';

const MIB = 1 << 20;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
const PEER_PORT = 7001;

/** The kernel-side peer (argv: host, port); prints `ready` once listening. */
const PEER = `
const net = require('net');
const MIB = 1 << 20, block = Buffer.alloc(65536, 0x5a), ack = Buffer.from([1]);
net.createServer((c) => {
  c.on('error', () => {});
  c.setNoDelay(true); // the one-byte acknowledgements must not wait for a delayed ACK
  c.once('data', (first) => {
    if (first[0] === 0x53) {
      let got = 0;
      const count = (d) => { got += d.length; while (got >= MIB) { got -= MIB; c.write(ack); } };
      count(first.subarray(1));
      c.on('data', count);
    } else {
      const pump = () => { while (!c.destroyed && c.write(block)); };
      c.on('drain', pump);
      c.resume();
      pump();
    }
  });
}).listen(+process.argv[2], process.argv[1], () => console.log('ready'));
`;

interface Rig {
  conn: Duplex;
  /** Acks (send) or received bytes (receive). */
  counter: Counter;
  close(): Promise<void>;
}
let rig: Rig | undefined;

/** Opens a connection to the peer in mode `mode` and counts what comes back. */
async function attach(conn: Duplex, mode: 'S' | 'G'): Promise<Counter> {
  const counter = new Counter();
  (conn as net.Socket).setNoDelay(true);
  conn.on('error', () => {});
  conn.on('data', (d: Buffer) => counter.add(d.length));
  conn.write(mode);
  return counter;
}

async function loopbackRig(mode: 'S' | 'G'): Promise<void> {
  const peer = spawn(process.execPath, ['-e', PEER, '127.0.0.1', String(PEER_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await firstLine(peer);
    const conn = net.connect(PEER_PORT, '127.0.0.1');
    await once(conn, 'connect');
    const counter = await attach(conn, mode);
    rig = { conn, counter, close: async () => (conn.destroy(), await kill(peer)) };
  } catch (error) {
    await kill(peer);
    throw error;
  }
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

async function tapRig(mode: 'S' | 'G', subnet: number): Promise<void> {
  const t: TapStack = await tapStack(subnet);
  try {
    const peer = t.ns.spawn(process.execPath, ['-e', PEER, t.kernelAddress, String(PEER_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await firstLine(peer);
    const conn = await t.stack.tcp.connect(t.kernelAddress, PEER_PORT);
    const counter = await attach(conn, mode);
    rig = { conn, counter, close: async () => (conn.destroy(), await t.close()) };
  } catch (error) {
    await t.close();
    throw error;
  }
}

async function sendMiB(n: number): Promise<void> {
  const { conn, counter } = rig!;
  const acked = counter.more(n);
  for (let sent = 0; sent < n * MIB; sent += CHUNK.length) {
    if (!conn.write(CHUNK)) await once(conn, 'drain');
  }
  await acked;
}

async function down(): Promise<void> {
  const r = rig;
  rig = undefined;
  await r?.close();
}

const common = { unit: 'MiB', bytesPerOp: MIB, teardown: down } as const;
const SEND = 'TCP bulk send to a kernel peer';
const RECV = 'TCP bulk receive from a kernel peer';

export const cases: BenchCase[] = [
  {
    ...common,
    name: 'TCP send 1 MiB · Node net loopback → peer process',
    group: SEND,
    baseline: true,
    description: 'Node net in this process → kernel loopback → a Node sink process acknowledging each MiB; 64 KiB writes with backpressure',
    setup: () => loopbackRig('S'),
    run: sendMiB,
  },
  {
    ...common,
    name: 'TCP send 1 MiB · Morgana on TAP → kernel',
    group: SEND,
    description: 'Morgana TCP on a TAP device (MTU 1500, TSO super-frames the kernel cuts) → kernel TCP in a namespace → the same sink process; 64 KiB writes with backpressure',
    skip: () => kernelTestsUnavailable(),
    setup: () => tapRig('S', 24),
    run: sendMiB,
  },
  {
    ...common,
    name: 'TCP receive 1 MiB · Node net loopback ← peer process',
    group: RECV,
    baseline: true,
    description: 'a Node source process streaming 64 KiB writes over kernel loopback to Node net in this process; steady state',
    setup: () => loopbackRig('G'),
    run: (n) => rig!.counter.more(n * MIB),
  },
  {
    ...common,
    name: 'TCP receive 1 MiB · Morgana on TAP ← kernel',
    group: RECV,
    description: "the same source process in a namespace → kernel TCP → TAP (MTU 1500, the kernel's coalesced frames) → Morgana TCP; steady state",
    skip: () => kernelTestsUnavailable(),
    setup: () => tapRig('G', 25),
    run: (n) => rig!.counter.more(n * MIB),
  },
];
