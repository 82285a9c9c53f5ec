/**
 * TCP bulk throughput: one connection between two Morgana stacks on a VirtualSwitch (MTU 1500,
 * MTU 1500 with ports that take TCP super-frames, and 65535), next to Node's own `net` over
 * loopback measured in the same run. One operation moves
 * 1 MiB from client to server through the stream API (backpressure included).
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { type Stack, VirtualSwitch, createStack } from '../../ts/index.js';
import type { BenchCase } from '../harness.js';

const MIB = 1 << 20;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
const GROUP = 'TCP bulk 1 MiB';

/** A sender and a receiver with a byte counter. */
interface Pipe {
  sender: Duplex;
  received: () => number;
  waitFor: (total: number) => Promise<void>;
  close: () => Promise<void>;
}

function counting(receiver: Duplex): Pick<Pipe, 'received' | 'waitFor'> {
  let got = 0;
  let target = Infinity;
  let wake: (() => void) | undefined;
  receiver.on('data', (c: Buffer) => {
    got += c.length;
    if (got >= target && wake) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  return {
    received: () => got,
    waitFor: (total) =>
      got >= total
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            target = total;
            wake = resolve;
          }),
  };
}

async function send(pipe: Pipe, bytes: number): Promise<void> {
  const goal = pipe.received() + bytes;
  for (let sent = 0; sent < bytes; sent += CHUNK.length) {
    if (!pipe.sender.write(CHUNK)) await once(pipe.sender, 'drain');
  }
  await pipe.waitFor(goal);
}

async function nodePipe(): Promise<Pipe> {
  let accepted!: (s: net.Socket) => void;
  const got = new Promise<net.Socket>((r) => (accepted = r));
  const server = net.createServer((s) => accepted(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const receiver = await got;
  return {
    sender: client,
    ...counting(receiver),
    close: async () => {
      client.destroy();
      receiver.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function morganaPipe(mtu: number, offloads = false): Promise<Pipe> {
  const sw = new VirtualSwitch({ mtu });
  // With offloads the ports take TCP super-frames (TSO): the engine sends up to 64 KiB at once.
  const port = () => sw.connect(offloads ? { offloads: { tso4: true, tso6: true, checksum: true } } : {});
  const a: Stack = await createStack({ net: port(), ipv4: '10.0.0.1/24' });
  const b: Stack = await createStack({ net: port(), ipv4: '10.0.0.2/24' });
  let accepted!: (s: Duplex) => void;
  const got = new Promise<Duplex>((r) => (accepted = r));
  b.tcp.listen(5001, (conn) => accepted(conn));
  const client = await a.tcp.connect('10.0.0.2', 5001);
  const receiver = await got;
  // The system clock's timers are unref'd and the switch does no I/O.
  const alive = setInterval(() => {}, 1_000);
  return {
    sender: client,
    ...counting(receiver),
    close: async () => {
      clearInterval(alive);
      client.destroy();
      receiver.destroy();
      await Promise.all([a.close(), b.close()]);
    },
  };
}

function bulkCase(name: string, make: () => Promise<Pipe>, extra: Partial<BenchCase>): BenchCase {
  let pipe: Pipe | undefined;
  return {
    name,
    group: GROUP,
    bytesPerOp: MIB,
    unit: 'MiB',
    description: 'one connection, 64 KiB writes with backpressure, until the receiver has the bytes',
    async setup() {
      pipe = await make();
    },
    async run(iterations) {
      await send(pipe!, iterations * MIB);
    },
    async teardown() {
      await pipe?.close();
      pipe = undefined;
    },
    ...extra,
  };
}

export const cases: BenchCase[] = [
  bulkCase('TCP bulk 1 MiB · Node net loopback', nodePipe, { baseline: true }),
  bulkCase('TCP bulk 1 MiB · Morgana vswitch MTU 1500', () => morganaPipe(1500), {
    goal: { minBytesPerSec: 2e9 / 8, source: 'issue 5: ≥ 2 Gbit/s between two in-process stacks at MTU 1500' },
  }),
  bulkCase('TCP bulk 1 MiB · Morgana vswitch MTU 1500 with TSO', () => morganaPipe(1500, true), {
    goal: { minRatio: 0.8, source: "issue 14: two stacks at the default MTU ≥ 0.8× Node's loopback" },
  }),
  bulkCase('TCP bulk 1 MiB · Morgana vswitch MTU 65535', () => morganaPipe(65_535), {
    goal: { minRatio: 0.5, source: "issue 5: ≥ 50 % of Node's loopback throughput at MTU 65535" },
  }),
];
