/**
 * Hostile peers on a VirtualSwitch (issue 20): a raw port injects forged segments (a RST that
 * kills a connection, a spoofed SYN that used to start an endless ACK storm, a spoofed in-window
 * ACK closing the window), a SYN flood and a fragment flood. Each time the legitimate traffic
 * still completes (SHA-256 equal) and the counters say what was dropped and why.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  type NetDevice,
  type Stack,
  type TcpConnection,
  VirtualSwitch,
  checksum,
  createStack,
  parseIpv4Address,
  pseudoHeaderSum,
} from 'morgana';
import { collect, sha256, writeAll } from './helpers/streams.js';

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The TCP segments a device receives, as the fields the tests need. */
interface Seen {
  src: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  payload: number;
}

/** Wraps `device` so that `onSegment` sees every IPv4 TCP segment it receives. */
function sniffing(device: NetDevice, onSegment: (s: Seen) => void): NetDevice {
  return {
    get mac() {
      return device.mac;
    },
    get mtu() {
      return device.mtu;
    },
    write: (size, fill) => device.write(size, fill),
    listen: (handler) =>
      device.listen((frame) => {
        if (frame.length >= 54 && frame.readUInt16BE(12) === 0x0800 && frame[23] === 6) {
          const ihl = (frame[14] & 0x0f) * 4;
          const tcp = 14 + ihl;
          const dataOffset = (frame[tcp + 12] >> 4) * 4;
          onSegment({
            src: `${frame[26]}.${frame[27]}.${frame[28]}.${frame[29]}`,
            srcPort: frame.readUInt16BE(tcp),
            dstPort: frame.readUInt16BE(tcp + 2),
            seq: frame.readUInt32BE(tcp + 4),
            ack: frame.readUInt32BE(tcp + 8),
            flags: frame[tcp + 13],
            window: frame.readUInt16BE(tcp + 14),
            payload: 14 + frame.readUInt16BE(16) - tcp - dataOffset,
          });
        }
        handler(frame);
      }),
    stats: () => device.stats(),
    close: () => device.close(),
  };
}

/** A TCP segment (no options) with a valid checksum for `src` → `dst`. */
function segment(
  src: number,
  dst: number,
  f: { srcPort: number; dstPort: number; seq: number; ack?: number; flags: number; window?: number; payload?: Buffer },
): Buffer {
  const payload = f.payload ?? Buffer.alloc(0);
  const seg = Buffer.alloc(20 + payload.length);
  seg.writeUInt16BE(f.srcPort, 0);
  seg.writeUInt16BE(f.dstPort, 2);
  seg.writeUInt32BE(f.seq >>> 0, 4);
  seg.writeUInt32BE((f.ack ?? 0) >>> 0, 8);
  seg[12] = 5 << 4;
  seg[13] = f.flags;
  seg.writeUInt16BE(f.window ?? 65_535, 14);
  payload.copy(seg, 20);
  seg.writeUInt16BE(checksum(seg, pseudoHeaderSum(src, dst, 6, seg.length)), 16);
  return seg;
}

/**
 * A (10.0.0.1, its received segments sniffed), B (10.0.0.2) and an attacker (10.0.0.66) that
 * writes forged IPv4 packets with any source address.
 */
async function hosts(t: ExecutionContext) {
  const sw = new VirtualSwitch();
  const seenByA: Seen[] = [];
  const a = await createStack({ net: sniffing(sw.connect(), (s) => seenByA.push(s)), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const attacker = await createStack({ net: sw.connect(), ipv4: '10.0.0.66/24' });
  // A VirtualSwitch does no I/O: keep the process alive while the test runs.
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close(), attacker.close()]);
  });
  await attacker.arp.query('10.0.0.1');
  await attacker.arp.query('10.0.0.2');
  const forge = (from: string, to: string, seg: Parameters<typeof segment>[2]) => {
    const src = parseIpv4Address(from);
    const dst = parseIpv4Address(to);
    attacker.ipv4.write(dst, 6, { payloads: [segment(src, dst, seg)], src });
  };
  return { sw, a, b, attacker, seenByA, forge };
}

/** Sends `size` random bytes from `from` to `to`:`port` over a new connection; true if intact. */
async function transfer(from: Stack, to: Stack, toAddress: string, port: number, size: number): Promise<boolean> {
  const data = randomBytes(size);
  const received = new Promise<Buffer>((resolve) => {
    const server = to.tcp.listen(port, (conn) => {
      server.close();
      resolve(collect(conn));
    });
  });
  const client = await from.tcp.connect(toAddress, port);
  await writeAll(client, data);
  return sha256(await received) === sha256(data);
}

/** B's SND.NXT on connection `port` → A, from the last segment A received from it. */
function sndNxt(seen: Seen[], port: number): number {
  const last = seen.filter((s) => s.src === '10.0.0.2' && s.srcPort === port).at(-1)!;
  return (last.seq + last.payload + (last.flags & (SYN | FIN) ? 1 : 0)) >>> 0;
}

test('a spoofed SYN for a connection the listener lost does not start an ACK storm', async (t) => {
  const { a, b, seenByA, forge } = await hosts(t);
  let serverSide!: TcpConnection;
  const accepted = new Promise<void>((resolve) =>
    a.tcp.listen(7000, (conn) => {
      serverSide = conn;
      resolve();
    }),
  );
  const client = await b.tcp.connect('10.0.0.1', 7000);
  client.on('error', () => {});
  client.write('hello');
  await accepted;
  const serverError = once(serverSide, 'error');
  await once(serverSide, 'data');
  await delay(100); // A's delayed ACK, so B is idle
  const port = client.localPort;
  const next = sndNxt(seenByA, port);
  // A loses the connection: a RST at B's SND.NXT (RFC 5961 lets only an exact match reset).
  forge('10.0.0.2', '10.0.0.1', { srcPort: port, dstPort: 7000, seq: next, flags: RST });
  const [err] = (await serverError) as [NodeJS.ErrnoException];
  t.is(err.code, 'ECONNRESET');
  t.is(client.state, 'ESTABLISHED', 'B still holds the connection');
  // A SYN with B's 4-tuple and a sequence number past B's SND.NXT: A answers SYN-ACK, B a
  // challenge ACK, and each finds the other's ACKs out of its window.
  const before = a.tcp.stats().segmentsOut + b.tcp.stats().segmentsOut;
  forge('10.0.0.2', '10.0.0.1', { srcPort: port, dstPort: 7000, seq: next + 1000, flags: SYN });
  await delay(3_000);
  const sent = a.tcp.stats().segmentsOut + b.tcp.stats().segmentsOut - before;
  // SYN-ACK (+ its retransmissions at 1 and 3 s), B's challenge ACKs and the ACKs answering
  // unacceptable ACKs, one per 500 ms per connection at most: a handful, not ~70,000/s.
  t.true(sent < 40, `${sent} segments in 3 s`);
  const sa = a.tcp.stats();
  const sb = b.tcp.stats();
  t.true(sa.unacceptableAcks >= 1, 'A answered an unacceptable ACK');
  t.true(sb.challengeAcks >= 1, 'B challenged the SYN-ACK');
  t.true(sa.unacceptableAcksSuppressed + sb.unacceptableAcksSuppressed + sb.challengeAcksSuppressed >= 1, 'and the rest was suppressed');
  // Legitimate traffic between the two hosts is unaffected.
  t.true(await transfer(b, a, '10.0.0.1', 7001, 1 << 20));
  client.destroy();
});

test('a spoofed in-window ACK with window 0 does not pin the send window', async (t) => {
  const { a, b, seenByA, forge } = await hosts(t);
  const received = new Promise<Buffer>((resolve) => a.tcp.listen(7002, (conn) => resolve(collect(conn))));
  const client = await b.tcp.connect('10.0.0.1', 7002);
  await delay(100); // B is idle: its last segment carries its SND.NXT and RCV.NXT
  const port = client.localPort;
  const last = seenByA.filter((s) => s.src === '10.0.0.2' && s.srcPort === port).at(-1)!;
  // From A's address: a sequence number 1000 ahead of what B expects (in its window), B's
  // SND.NXT as ACK (acceptable), window 0.
  forge('10.0.0.1', '10.0.0.2', { srcPort: 7002, dstPort: port, seq: last.ack + 1000, ack: sndNxt(seenByA, port), flags: ACK, window: 0 });
  await delay(50);
  t.is(client.info()?.sendWindow, 0, 'the forged window was taken');
  const data = randomBytes(1 << 20);
  void writeAll(client, data);
  // A liveness deadline only: before the fix nothing moved in 10 s.
  const got = await Promise.race([received, delay(30_000).then(() => undefined)]);
  t.truthy(got, '1 MiB arrived');
  t.is(sha256(got ?? Buffer.alloc(0)), sha256(data));
});
