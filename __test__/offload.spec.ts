/**
 * Segmentation offload on the VirtualSwitch (issue 14): stacks whose ports accept TCP
 * super-frames exchange them whole; a port without offloads gets real frames cut in Rust; with
 * faults set every super-frame is cut first so loss, duplication and reordering hit wire
 * segments; a pcap capture of an offloading port shows only real frames with good checksums.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type NetDevice, type Stack, type SwitchFaults, type TcpConnection, VirtualSwitch, createStack, pcapRecorder } from 'morgana';
import { digest } from './helpers/streams.js';

const MIB = 1 << 20;
const OFFLOADS = { tso4: true, tso6: true, checksum: true };

async function stacks(t: ExecutionContext, offloadA: boolean, offloadB: boolean, faults?: SwitchFaults, wrapA?: (net: NetDevice) => NetDevice) {
  const sw = new VirtualSwitch({ faults });
  const portA = sw.connect(offloadA ? { offloads: OFFLOADS } : {});
  const a = await createStack({ net: wrapA ? wrapA(portA) : portA, ipv4: '10.0.0.1/24', ipv6: { address: 'fd00::1/64', dadTransmits: 0 } });
  const b = await createStack({ net: sw.connect(offloadB ? { offloads: OFFLOADS } : {}), ipv4: '10.0.0.2/24', ipv6: { address: 'fd00::2/64', dadTransmits: 0 } });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
  });
  return { sw, a, b };
}

async function sendStream(conn: TcpConnection, size: number): Promise<string> {
  const hash = createHash('sha256');
  const block = randomBytes(65_536);
  for (let sent = 0, n = 0; sent < size; sent += block.length, n++) {
    block.writeUInt32BE(n, 0);
    const piece = Buffer.from(block.subarray(0, Math.min(block.length, size - sent)));
    hash.update(piece);
    if (!conn.write(piece)) await once(conn, 'drain');
  }
  conn.end();
  return hash.digest('hex');
}

/** `size` bytes each way over one connection from `a` to `host`; SHA-256 of what each side sent and got. */
async function exchange(a: Stack, b: Stack, host: string, size: number, port = 7000) {
  let server!: { sent: Promise<string>; got: Promise<{ sha: string; length: number }> };
  const accepted = new Promise<void>((resolve) => {
    const server_ = b.tcp.listen(port, (conn) => {
      server_.close();
      server = { got: digest(conn), sent: sendStream(conn, size) };
      resolve();
    }, { allowHalfOpen: true });
  });
  const client = await a.tcp.connect(host, port, { allowHalfOpen: true });
  const clientGot = digest(client);
  const clientSent = sendStream(client, size);
  await accepted;
  const [up, upGot, down, downGot] = await Promise.all([clientSent, server.got, server.sent, clientGot]);
  return { up, upGot, down, downGot };
}

function sameBothWays(t: ExecutionContext, r: Awaited<ReturnType<typeof exchange>>, size: number): void {
  t.is(r.upGot.length, size);
  t.is(r.downGot.length, size);
  t.is(r.upGot.sha, r.up);
  t.is(r.downGot.sha, r.down);
}

test('two stacks with offloads exchange super-frames whole over IPv4 and IPv6', async (t) => {
  const { sw, a, b } = await stacks(t, true, true);
  for (const host of ['10.0.0.2', 'fd00::2']) {
    const before = sw.stats().forwarded;
    sameBothWays(t, await exchange(a, b, host, 8 * MIB), 8 * MIB);
    const frames = sw.stats().forwarded - before;
    // 16 MiB in 1,448-byte segments would be over 11,000 frames (plus ACKs); super-frames carry
    // up to 44 segments each.
    t.true(frames < (16 * MIB) / 1448 / 2, `${frames} frames forwarded for 16 MiB over ${host}`);
  }
  t.is(sw.stats().segmented, 0, 'nothing needed cutting');
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
  // Super-segments are read in place (feed) after the segments batched before them: a clean
  // link delivers everything in order.
  t.is(a.tcp.stats().outOfOrder + b.tcp.stats().outOfOrder, 0, 'nothing arrived out of order');
});

test('a stack with offloads and one without on the same switch: the switch cuts super-frames for the plain port', async (t) => {
  const { sw, a, b } = await stacks(t, true, false);
  sameBothWays(t, await exchange(a, b, '10.0.0.2', 8 * MIB), 8 * MIB);
  t.true(sw.stats().segmented > 0, 'super-frames were cut for the port without TSO');
  t.is(sw.stats().segmentDrops, 0);
  t.is(b.stats().net[0]!.rxDropped, 0);
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
});

test('64 MiB each way with 1 % loss, reordering and duplication on super-frame links: SHA-256 equal', async (t) => {
  t.timeout(240_000);
  const faults = { loss: 0.01, reorder: 0.01, duplicate: 0.01 };
  const { sw, a, b } = await stacks(t, true, true, faults);
  sameBothWays(t, await exchange(a, b, '10.0.0.2', 64 * MIB), 64 * MIB);
  const s = sw.stats();
  t.true(s.segmented > 0, 'super-frames were cut so that faults hit wire segments');
  t.true(s.lost > 0 && s.duplicated > 0 && s.reordered > 0);
  t.true(a.tcp.stats().retransmits > 0 && b.tcp.stats().retransmits > 0);
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
});

/** The records of a pcap file: [captured length, original length, frame bytes]. */
function pcapRecords(file: string): Buffer[] {
  const data = readFileSync(file);
  const frames: Buffer[] = [];
  for (let at = 24; at + 16 <= data.length; ) {
    const captured = data.readUInt32LE(at + 8);
    frames.push(data.subarray(at + 16, at + 16 + captured));
    at += 16 + captured;
  }
  return frames;
}

/** The Internet checksum of `bytes` with an initial sum. */
function sum16(bytes: Buffer, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += bytes.readUInt16BE(i);
  if (bytes.length % 2) s += bytes[bytes.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

test('a pcap of an offloading port shows only real frames (≤ 1514 bytes) with good IPv4 and TCP checksums', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-offload-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a.pcap');
  let recorder: ReturnType<typeof pcapRecorder> | undefined;
  const { sw, a, b } = await stacks(t, true, true, undefined, (net) => (recorder = pcapRecorder(net, file)));
  sameBothWays(t, await exchange(a, b, '10.0.0.2', 4 * MIB), 4 * MIB);
  recorder!.flush();
  t.true(sw.stats().forwarded < (8 * MIB) / 1448 / 2, 'super-frames crossed the switch');
  const frames = pcapRecords(file);
  let tcpPayload = 0;
  for (const f of frames) {
    t.true(f.length <= 1514, `a ${f.length}-byte frame in the capture`);
    if (f.readUInt16BE(12) !== 0x0800 || f[23] !== 6) continue;
    const ip = f.subarray(14, 14 + f.readUInt16BE(16));
    t.is(sum16(ip.subarray(0, 20)), 0xffff, 'IPv4 header checksum');
    const tcp = ip.subarray(20);
    const pseudo = sum16(Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6, tcp.length >> 8, tcp.length & 0xff])]));
    t.is(sum16(tcp, pseudo), 0xffff, 'TCP checksum');
    tcpPayload += tcp.length - (tcp[12]! >> 4) * 4;
  }
  // Both directions' data went through the capture (retransmissions may add more).
  t.true(tcpPayload >= 8 * MIB, `${tcpPayload} TCP payload bytes captured`);
});

test("an interface's Ethernet mirror sees the TCP frames given to a switch port without a copy", async (t) => {
  const { a, b } = await stacks(t, true, true);
  let out = 0;
  let superFrames = 0;
  const stop = a.interfaces[0]!.eth.mirror((frame, direction, offload) => {
    if (direction !== 'out' || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 6) return;
    out += frame.length;
    if (offload && offload.gsoType !== 0) superFrames++;
  });
  const r = await exchange(a, b, '10.0.0.2', 2 * MIB);
  stop();
  sameBothWays(t, r, 2 * MIB);
  t.true(out > 2 * MIB, `${out} bytes of TCP frames mirrored`);
  t.true(superFrames > 0);
});

test('TCP frames given to a switch port come back to the sender once the receiving stack has read them', async (t) => {
  let given = 0;
  let back = 0;
  const counting = (net: NetDevice): NetDevice => ({
    mac: net.mac,
    mtu: net.mtu,
    offloads: net.offloads,
    write: (size, fill, offload) => net.write(size, fill, offload),
    writeOwned(frame, offload, done) {
      given++;
      net.writeOwned!(frame, offload, () => {
        back++;
        done?.();
      });
    },
    listen: (handler) => net.listen(handler),
    listenReusing: (handler) => net.listenReusing!(handler),
    stats: () => net.stats(),
    close: () => net.close(),
  });
  const { a, b } = await stacks(t, true, true, undefined, counting);
  for (const [host, port] of [['10.0.0.2', 7000], ['fd00::2', 7001]] as const) {
    given = back = 0;
    sameBothWays(t, await exchange(a, b, host, 4 * MIB, port), 4 * MIB);
    await new Promise((resolve) => setImmediate(resolve));
    t.true(given > 0);
    // Every frame went to B's TCP, which copies or reads in place and keeps nothing.
    t.is(back, given, `${back} of ${given} frames over ${host} came back`);
  }
});

test('frames held back by delay and jitter are not reused while they wait: 16 MiB each way, SHA-256 equal', async (t) => {
  t.timeout(120_000);
  // Frames wait on timers (jitter also reorders them) while the sender keeps writing output
  // from recycled memory; the order of release itself is checked in vswitch.spec.ts.
  const { a, b } = await stacks(t, false, false, { delayMs: 1, jitterMs: 2 });
  sameBothWays(t, await exchange(a, b, '10.0.0.2', 16 * MIB), 16 * MIB);
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
});
