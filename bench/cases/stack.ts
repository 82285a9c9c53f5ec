/**
 * L2/L3 benchmarks: frames through the VirtualSwitch, UDP datagrams (64 B, and 64 KiB ones that
 * are fragmented and reassembled) and ping round trips between two Morgana stacks, each next to
 * Node's own `dgram` over loopback measured in the same run.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { type NetDevice, type Stack, VirtualSwitch, createStack, openTap } from '../../ts/index.js';
import { type Netns, createNetns, kernelTestsUnavailable } from '../../__test__/helpers/netns.js';
import type { BenchCase } from '../harness.js';
import { windowed } from '../windowed.js';

// --- Node dgram over loopback (the baseline) -------------------------------------------------

let dgramA: dgram.Socket | undefined;
let dgramB: dgram.Socket | undefined;
let onDgram: () => void = () => {};

async function dgramSetup(echo: boolean): Promise<void> {
  dgramA = dgram.createSocket('udp4');
  dgramB = dgram.createSocket('udp4');
  await Promise.all([new Promise<void>((r) => dgramA!.bind(0, '127.0.0.1', r)), new Promise<void>((r) => dgramB!.bind(0, '127.0.0.1', r))]);
  dgramB.on('message', (msg, rinfo) => {
    if (echo) dgramB!.send(msg, rinfo.port, rinfo.address);
    else onDgram();
  });
  dgramA.on('message', () => onDgram());
}

async function dgramTeardown(): Promise<void> {
  await Promise.all([dgramA, dgramB].map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
  dgramA = dgramB = undefined;
}

const payload64 = Buffer.alloc(64, 0x5a);

/** The largest UDP payload over IPv4, and how many such datagrams are in flight (a socket's default receive buffer holds about three). */
const BIG_UDP = 65_507;
const BIG_WINDOW = 2;
const payloadBig = Buffer.alloc(BIG_UDP, 0x5a);

/** Sends `n` datagrams with at most {@link BIG_WINDOW} in flight; `listen` installs the arrival callback. */
function bigWindow(n: number, send: () => void, listen: (arrived: () => void) => void): Promise<void> {
  let sent = 0;
  let received = 0;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${received} of ${n} arrived`)), 30_000);
    listen(() => {
      if (++received === n) {
        clearTimeout(timer);
        resolve();
      } else if (sent < n) {
        sent++;
        send();
      }
    });
    for (; sent < Math.min(n, BIG_WINDOW); sent++) send();
  });
}

// --- Two Morgana stacks on a VirtualSwitch ------------------------------------------------------

let stacks: { a: Stack; b: Stack } | undefined;
let onUdp: () => void = () => {};

async function stackSetup(echo: boolean): Promise<void> {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const server = b.udp.bind(7, (data, from) => (echo ? server.send(from.address, from.port, data) : onUdp()));
  a.udp.bind(9000, () => onUdp());
  await a.arp.query('10.0.0.2');
  stacks = { a, b };
}

async function stackTeardown(): Promise<void> {
  await Promise.all([stacks?.a.close(), stacks?.b.close()]);
  stacks = undefined;
}

// --- Raw frames through the switch --------------------------------------------------------------

let ports: { a: NetDevice; b: NetDevice; frame: Buffer } | undefined;
let onFrame: () => void = () => {};

// --- A stack on TAP against the kernel's UDP in a namespace -------------------------------------

let tapRig: { ns: Netns; stack: Stack; echo: ChildProcess } | undefined;
let onTapEcho: () => void = () => {};

/** A UDP echo server on Node's dgram, run inside the namespace so it binds the kernel side. */
const KERNEL_ECHO = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7,'10.89.0.1',()=>console.log('ready'));`;

async function tapSetup(): Promise<void> {
  const ns = await createNetns();
  try {
    const tap = await openTap({ name: 'mtap9', netns: ns.name });
    await ns.ip('addr', 'add', '10.89.0.1/24', 'dev', 'mtap9');
    await ns.ip('link', 'set', 'mtap9', 'up');
    const stack = await createStack({ net: tap, ipv4: '10.89.0.2/24' });
    const echo = ns.spawn(process.execPath, ['-e', KERNEL_ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => echo.stdout!.once('data', () => resolve()));
    stack.udp.bind(9000, () => onTapEcho());
    await stack.arp.query('10.89.0.1');
    tapRig = { ns, stack, echo };
  } catch (error) {
    await ns.destroy();
    throw error;
  }
}

async function tapTeardown(): Promise<void> {
  if (!tapRig) return;
  const { ns, stack } = tapRig;
  tapRig = undefined;
  await stack.close();
  await ns.destroy();
}

export const cases: BenchCase[] = [
  {
    name: 'UDP echo 64 B windowed · node:dgram loopback',
    group: 'UDP echo 64 B, 64 in flight',
    baseline: true,
    unit: 'round trips',
    bytesPerOp: 64,
    description: 'two kernel UDP sockets over 127.0.0.1, one echoing, 64 datagrams in flight',
    setup: () => dgramSetup(true),
    async run(n) {
      const w = windowed(n, () => dgramA!.send(payload64, (dgramB!.address() as AddressInfo).port, '127.0.0.1'));
      onDgram = w.arrived;
      await w.done;
    },
    teardown: dgramTeardown,
  },
  {
    name: 'UDP echo 64 B windowed · Morgana on TAP ↔ kernel',
    group: 'UDP echo 64 B, 64 in flight',
    unit: 'round trips',
    bytesPerOp: 64,
    description: 'a Morgana stack on a TAP device in a namespace, echoed by a kernel UDP socket there',
    skip: () => kernelTestsUnavailable(),
    setup: tapSetup,
    async run(n) {
      const w = windowed(n, () => tapRig!.stack.udp.send('10.89.0.1', 7, payload64, { srcPort: 9000 }));
      onTapEcho = w.arrived;
      await w.done;
    },
    teardown: tapTeardown,
  },
  {
    name: 'UDP 64 B one-way · node:dgram loopback',
    group: 'UDP datagrams 64 B',
    baseline: true,
    unit: 'datagrams',
    bytesPerOp: 64,
    description: 'kernel UDP sockets over 127.0.0.1, 64 in flight',
    setup: () => dgramSetup(false),
    async run(n) {
      const w = windowed(n, () => dgramA!.send(payload64, (dgramB!.address() as AddressInfo).port, '127.0.0.1'));
      onDgram = w.arrived;
      await w.done;
    },
    teardown: dgramTeardown,
  },
  {
    name: 'UDP 64 B one-way · Morgana stacks',
    group: 'UDP datagrams 64 B',
    unit: 'datagrams',
    bytesPerOp: 64,
    description: 'two stacks on a VirtualSwitch, 64 in flight, checksums computed and verified',
    setup: () => stackSetup(false),
    async run(n) {
      const w = windowed(n, () => stacks!.a.udp.send('10.0.0.2', 7, payload64, { srcPort: 9000 }));
      onUdp = w.arrived;
      await w.done;
    },
    teardown: stackTeardown,
  },
  {
    name: 'UDP echo round trip · node:dgram loopback',
    group: 'UDP round trip',
    baseline: true,
    unit: 'round trips',
    description: 'one 64-byte datagram out and back at a time',
    setup: () => dgramSetup(true),
    async run(n) {
      for (let i = 0; i < n; i++) {
        await new Promise<void>((resolve) => {
          onDgram = resolve;
          dgramA!.send(payload64, (dgramB!.address() as AddressInfo).port, '127.0.0.1');
        });
      }
    },
    teardown: dgramTeardown,
  },
  {
    name: 'ping round trip · Morgana stacks',
    group: 'UDP round trip',
    unit: 'round trips',
    description: 'ICMP echo of 56 bytes between two stacks, one at a time',
    setup: () => stackSetup(true),
    async run(n) {
      for (let i = 0; i < n; i++) await stacks!.a.icmp.ping('10.0.0.2');
    },
    teardown: stackTeardown,
  },
  {
    name: 'UDP 64 KiB one-way · node:dgram loopback',
    group: 'UDP datagrams 64 KiB',
    baseline: true,
    unit: 'datagrams',
    bytesPerOp: BIG_UDP,
    description: `kernel UDP sockets over 127.0.0.1 (MTU 65536: not fragmented), ${BIG_WINDOW} in flight`,
    setup: () => dgramSetup(false),
    async run(n) {
      await bigWindow(n, () => dgramA!.send(payloadBig, (dgramB!.address() as AddressInfo).port, '127.0.0.1'), (arrived) => (onDgram = arrived));
    },
    teardown: dgramTeardown,
  },
  {
    name: 'UDP 64 KiB one-way · Morgana stacks',
    group: 'UDP datagrams 64 KiB',
    unit: 'datagrams',
    bytesPerOp: BIG_UDP,
    description: `two stacks on a VirtualSwitch at MTU 1500: each datagram is 45 fragments, reassembled in batches; ${BIG_WINDOW} in flight`,
    setup: () => stackSetup(false),
    async run(n) {
      await bigWindow(n, () => stacks!.a.udp.send('10.0.0.2', 7, payloadBig, { srcPort: 9000 }), (arrived) => (onUdp = arrived));
    },
    teardown: stackTeardown,
  },
  {
    name: 'frames 64 B · VirtualSwitch',
    group: 'UDP datagrams 64 B',
    unit: 'frames',
    bytesPerOp: 64,
    description: 'raw Ethernet frames between two switch ports (learned unicast), 64 in flight',
    setup() {
      const sw = new VirtualSwitch();
      const a = sw.connect();
      const b = sw.connect();
      const frame = Buffer.alloc(64);
      Buffer.from(b.mac.replaceAll(':', ''), 'hex').copy(frame, 0);
      Buffer.from(a.mac.replaceAll(':', ''), 'hex').copy(frame, 6);
      frame.writeUInt16BE(0x88b5, 12);
      b.listen(() => onFrame());
      a.listen(() => {});
      ports = { a, b, frame };
    },
    async run(n) {
      const { a, frame } = ports!;
      const w = windowed(n, () => a.write(64, (buf) => frame.copy(buf)));
      onFrame = w.arrived;
      await w.done;
    },
    async teardown() {
      await ports?.a.close();
      await ports?.b.close();
    },
  },
];
