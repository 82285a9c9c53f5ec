/**
 * Connections (issue 9): connections per second (connect, then a graceful close from both sides)
 * between two Morgana stacks on a VirtualSwitch next to Node's `net` over loopback; and memory
 * per idle established connection, with 10,000 idle connections open between two stacks (9,000
 * with Node's `net`, which needs two file descriptors per connection in this process).
 *
 * The harness reports rates, so the memory figure is not dressed up as one: the idle-connection
 * cases measure 64-byte echo round trips on one connection while the idle ones stay open (does
 * holding them slow the stack down?), and print the memory figures (process RSS and V8 heap +
 * external deltas per connection, both endpoints in this process) on stderr after setup.
 * Node's figure leaves out the kernel's socket memory, which is not in the process's RSS.
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { type Stack, VirtualSwitch, createStack } from '../../ts/index.js';
import type { BenchCase } from '../harness.js';

const PORT = 7000;

// --- Connection rate ------------------------------------------------------------------------

/** The server side: read until the peer's FIN, then the stream ends its side too (allowHalfOpen off). */
function serve(conn: Duplex): void {
  conn.on('error', () => {});
  conn.resume();
}

/** One connection: open, close gracefully, wait until the client side is fully closed. */
async function cycle(open: () => Promise<Duplex>): Promise<void> {
  const c = await open();
  c.on('error', () => {});
  const closed = once(c, 'close');
  c.resume();
  c.end();
  await closed;
}

let nodeServer: net.Server | undefined;
let nodePort = 0;

async function nodeListen(onConn: (s: net.Socket) => void = serve): Promise<void> {
  nodeServer = net.createServer(onConn);
  await new Promise<void>((r) => nodeServer!.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
  nodePort = (nodeServer.address() as net.AddressInfo).port;
}

async function nodeConnect(): Promise<net.Socket> {
  const s = net.connect(nodePort, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

async function nodeClose(): Promise<void> {
  const server = nodeServer;
  nodeServer = undefined;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
}

let pair: { a: Stack; b: Stack; alive: NodeJS.Timeout } | undefined;

async function stacksUp(onConn: (c: Duplex) => void = serve): Promise<void> {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  b.tcp.listen(PORT, onConn, { backlog: 4096 });
  await a.arp.query('10.0.0.2');
  // The system clock's timers are unref'd and the switch does no I/O.
  pair = { a, b, alive: setInterval(() => {}, 1_000) };
}

async function stacksDown(): Promise<void> {
  if (!pair) return;
  const { a, b, alive } = pair;
  pair = undefined;
  clearInterval(alive);
  await Promise.all([a.close(), b.close()]);
}

const morganaConnect = () => pair!.a.tcp.connect('10.0.0.2', PORT);

// --- Idle connections ------------------------------------------------------------------------

const IDLE_MORGANA = 10_000;
/** Node holds both ends in this process: 2 descriptors each, under a 20,000 descriptor limit. */
const IDLE_NODE = 9_000;
const ECHO = Buffer.alloc(64, 0x5a);

interface Idle {
  ends: Duplex[];
  echo: Duplex;
}
let idle: Idle | undefined;

function memory(): { rss: number; js: number } {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, js: m.heapUsed + m.external };
}

/** Opens `count` idle connections (64 handshakes in flight) plus one echo connection, and reports memory. */
async function openIdle(label: string, count: number, open: () => Promise<Duplex>, accepted: Duplex[], extra?: () => string): Promise<void> {
  const before = memory();
  const started = process.hrtime.bigint();
  const ends: Duplex[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < count) {
        next++;
        const c = await open();
        c.on('error', () => {});
        ends.push(c);
      }
    }),
  );
  while (accepted.length < count) await new Promise((r) => setTimeout(r, 5));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = memory();
  const per = (bytes: number) => `${Math.round(bytes / count).toLocaleString('en')} B`;
  process.stderr.write(
    `  idle connections · ${label}: ${count.toLocaleString('en')} opened in ${seconds.toFixed(2)} s; per connection (both ends): ` +
      `RSS ${per(after.rss - before.rss)}, V8 heap+external ${per(after.js - before.js)}${extra ? `; ${extra()}` : ''}\n`,
  );
  const echo = await open();
  echo.on('error', () => {});
  idle = { ends: [...ends, ...accepted], echo };
}

async function echoRoundTrips(n: number): Promise<void> {
  const { echo } = idle!;
  for (let i = 0; i < n; i++) {
    let got = 0;
    await new Promise<void>((resolve) => {
      const onData = (c: Buffer) => {
        got += c.length;
        if (got >= ECHO.length) {
          echo.off('data', onData);
          resolve();
        }
      };
      echo.on('data', onData);
      echo.write(ECHO);
    });
  }
}

/** Server side of the idle cases: the first `count` connections stay idle, the next one echoes. */
function idleServer(count: number, accepted: Duplex[]): (c: Duplex) => void {
  return (c) => {
    c.on('error', () => {});
    if (accepted.length < count) accepted.push(c);
    else {
      if ('setNoDelay' in c && typeof c.setNoDelay === 'function') c.setNoDelay(true);
      c.pipe(c);
    }
  };
}

function closeIdle(): void {
  if (!idle) return;
  for (const c of idle.ends) c.destroy();
  idle.echo.destroy();
  idle = undefined;
}

export const cases: BenchCase[] = [
  {
    name: 'TCP connect + close · Node net loopback',
    group: 'TCP connections',
    baseline: true,
    unit: 'connections',
    description: 'one at a time: connect, end, the server ends on FIN, until the client socket closes (kernel TCP over 127.0.0.1)',
    setup: () => nodeListen(),
    async run(n) {
      for (let i = 0; i < n; i++) await cycle(nodeConnect);
    },
    teardown: nodeClose,
  },
  {
    name: 'TCP connect + close · Morgana stacks',
    group: 'TCP connections',
    unit: 'connections',
    description: 'one at a time between two stacks on a VirtualSwitch: handshake, FIN both ways, client in TIME_WAIT (60 s, as Linux)',
    setup: () => stacksUp(),
    async run(n) {
      for (let i = 0; i < n; i++) await cycle(morganaConnect);
    },
    teardown: stacksDown,
  },
  {
    name: `TCP echo 64 B with ${IDLE_NODE.toLocaleString('en')} idle · Node net loopback`,
    group: 'TCP echo with idle connections open',
    baseline: true,
    unit: 'round trips',
    description: `one 64-byte echo at a time while ${IDLE_NODE.toLocaleString('en')} idle connections stay open; memory per idle connection printed on stderr (process only, not kernel socket memory)`,
    async setup() {
      const accepted: Duplex[] = [];
      await nodeListen(idleServer(IDLE_NODE, accepted));
      const open = async () => {
        const s = await nodeConnect();
        s.setNoDelay(true);
        return s;
      };
      await openIdle('Node net loopback', IDLE_NODE, open, accepted);
    },
    run: echoRoundTrips,
    async teardown() {
      closeIdle();
      await nodeClose();
    },
    sampleMs: 300,
  },
  {
    name: `TCP echo 64 B with ${IDLE_MORGANA.toLocaleString('en')} idle · Morgana stacks`,
    group: 'TCP echo with idle connections open',
    unit: 'round trips',
    description: `one 64-byte echo at a time while ${IDLE_MORGANA.toLocaleString('en')} idle connections between the two stacks stay open; memory per idle connection (RSS includes Rust's) printed on stderr`,
    async setup() {
      const accepted: Duplex[] = [];
      await stacksUp(idleServer(IDLE_MORGANA, accepted));
      const open = async () => {
        const c = await morganaConnect();
        c.setNoDelay(true);
        return c;
      };
      await openIdle('Morgana stacks', IDLE_MORGANA, open, accepted, () => {
        const { a, b } = pair!;
        return `engine: ${a.tcp.stats().connections} + ${b.tcp.stats().connections} connections tracked`;
      });
    },
    run: echoRoundTrips,
    async teardown() {
      closeIdle();
      await stacksDown();
    },
    sampleMs: 300,
  },
];
