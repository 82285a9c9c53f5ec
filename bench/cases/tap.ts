/**
 * Frames through the Linux TAP device (issue 4): two Morgana TAP devices on a kernel bridge
 * inside a network namespace the benchmark creates (and deletes), frames written by one and
 * received by the other; next to Node's `dgram` over loopback measured in the same run. Needs
 * root (network namespace, /dev/net/tun); skipped with the reason otherwise.
 * @module
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { type TapDevice, openTap } from '../../ts/index.js';
import { type Netns, createNetns, kernelTestsUnavailable, waitForwarding } from '../../__test__/helpers/netns.js';
import type { BenchCase } from '../harness.js';
import { WINDOW, windowed } from '../windowed.js';

// --- Node dgram over loopback (the baseline) -----------------------------------------------

let sockets: { a: dgram.Socket; b: dgram.Socket; port: number } | undefined;
let onDatagram: () => void = () => {};

async function dgramSetup(): Promise<void> {
  const a = dgram.createSocket('udp4');
  const b = dgram.createSocket('udp4');
  await Promise.all([new Promise<void>((r) => a.bind(0, '127.0.0.1', r)), new Promise<void>((r) => b.bind(0, '127.0.0.1', r))]);
  b.on('message', () => onDatagram());
  sockets = { a, b, port: (b.address() as AddressInfo).port };
}

async function dgramTeardown(): Promise<void> {
  if (!sockets) return;
  const { a, b } = sockets;
  sockets = undefined;
  await Promise.all([a, b].map((s) => new Promise<void>((r) => s.close(() => r()))));
}

// --- Two TAP devices on a bridge in a namespace ---------------------------------------------

let pair: { ns: Netns; a: TapDevice; b: TapDevice; frame: Buffer } | undefined;
let onFrame: () => void = () => {};

async function tapSetup(frameLength: number): Promise<void> {
  const ns = await createNetns();
  const devices: TapDevice[] = [];
  try {
    await ns.ip('link', 'add', 'mbr0', 'type', 'bridge');
    for (const name of ['mtap0', 'mtap1']) {
      devices.push(await openTap({ name, netns: ns.name }));
      await ns.ip('link', 'set', name, 'master', 'mbr0');
      await ns.ip('link', 'set', name, 'up');
    }
    await ns.ip('link', 'set', 'mbr0', 'up');
    await waitForwarding(ns, ['mtap0', 'mtap1']);
  } catch (error) {
    for (const d of devices) await d.close();
    await ns.destroy();
    throw error;
  }
  const [a, b] = devices as [TapDevice, TapDevice];
  const frame = Buffer.alloc(frameLength, 0x5a);
  Buffer.from(b.mac.replaceAll(':', ''), 'hex').copy(frame, 0);
  Buffer.from(a.mac.replaceAll(':', ''), 'hex').copy(frame, 6);
  frame.writeUInt16BE(0x88b5, 12);
  b.listen((f) => {
    if (f.readUInt16BE(12) === 0x88b5) onFrame();
  });
  a.listen(() => {});
  pair = { ns, a, b, frame };
}

async function tapTeardown(): Promise<void> {
  if (!pair) return;
  const { ns, a, b } = pair;
  pair = undefined;
  await a.close();
  await b.close();
  await ns.destroy();
}

const skipWithoutKernel = () => kernelTestsUnavailable();

function tapCase(frameLength: number): BenchCase {
  return {
    name: `frames ${frameLength} B one-way · TAP pair on a bridge`,
    group: `TAP frames ${frameLength} B`,
    unit: 'frames',
    bytesPerOp: frameLength,
    description: `Morgana TAP → kernel bridge → Morgana TAP in a namespace, ${WINDOW} in flight (write syscall per frame, batched reads)`,
    skip: skipWithoutKernel,
    setup: () => tapSetup(frameLength),
    async run(n) {
      const { a, frame } = pair!;
      const w = windowed(n, () => a.write(frame.length, (buf) => frame.copy(buf)));
      onFrame = w.arrived;
      await w.done;
    },
    teardown: tapTeardown,
  };
}

const payload = (length: number) => Buffer.alloc(length - 42, 0x5a); // same frame size on the wire

function dgramCase(frameLength: number): BenchCase {
  const data = payload(frameLength);
  return {
    name: `datagrams ${frameLength - 42} B one-way · node:dgram loopback (TAP comparison)`,
    group: `TAP frames ${frameLength} B`,
    baseline: true,
    unit: 'datagrams',
    bytesPerOp: frameLength,
    description: `kernel UDP sockets over 127.0.0.1 carrying the same ${frameLength}-byte frames' worth, ${WINDOW} in flight`,
    setup: dgramSetup,
    async run(n) {
      const w = windowed(n, () => sockets!.a.send(data, sockets!.port, '127.0.0.1'));
      onDatagram = w.arrived;
      await w.done;
    },
    teardown: dgramTeardown,
  };
}

export const cases: BenchCase[] = [
  dgramCase(64),
  tapCase(64),
  dgramCase(1514),
  tapCase(1514),
  {
    name: 'frames 64 B written · TAP',
    group: 'TAP frames 64 B',
    unit: 'frames',
    bytesPerOp: 64,
    description: 'write(size, fill) into a TAP whose peer drains them: the JS → Rust → write(2) path alone',
    skip: skipWithoutKernel,
    setup: () => tapSetup(64),
    run(n) {
      const { a, frame } = pair!;
      for (let i = 0; i < n; i++) a.write(64, (buf) => frame.copy(buf));
    },
    teardown: tapTeardown,
  },
];
