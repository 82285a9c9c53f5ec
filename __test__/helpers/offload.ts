/**
 * Helpers of the offload specs: bulk transfers both ways over one TCP connection between two
 * stacks (uneven writes, SHA-256 compared), TCP checksum checks of captured frames, and the
 * checks both IP versions share (a pcap recorder, a port without offloads).
 */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type FrameOffload, GSO_NONE, NEEDS_CSUM, type NetDevice, type NetOffloads, type Stack, type TcpConnection, VirtualSwitch, createStack, openTap, pcapRecorder } from 'morgana';
import { ipv4 } from 'morgana/wire';
import { type Netns, waitForwarding } from './netns.js';
import { digest } from './streams.js';

const MIB = 1 << 20;

/**
 * Opens a vnet-header TAP `mtap<id>` in `ns` and bridges it (`mbr<id>`) to a veth pair whose
 * bridge port `vb<id>` takes neither TSO nor checksum offload: the kernel must cut Morgana's
 * super-frames and complete the checksums Morgana leaves partial. The kernel's end `vk<id>` (TSO
 * off) keeps checksum offload, so its frames reach the TAP with partial checksums (NEEDS_CSUM).
 * Every link is up and the bridge forwards; the caller gives `vk<id>` the kernel's address.
 */
export async function tapBridgedToPlainVeth(ns: Netns, id: string) {
  const [tapName, bridge, kernelSide, bridgePort] = [`mtap${id}`, `mbr${id}`, `vk${id}`, `vb${id}`];
  const tap = await openTap({ name: tapName, netns: ns.name, vnetHdr: true });
  await ns.ip('link', 'add', bridge, 'type', 'bridge');
  await ns.ip('link', 'add', kernelSide, 'type', 'veth', 'peer', 'name', bridgePort);
  await ns.exec('ethtool', ['-K', bridgePort, 'tso', 'off', 'tx', 'off']);
  await ns.exec('ethtool', ['-K', kernelSide, 'tso', 'off']);
  await ns.ip('link', 'set', bridgePort, 'master', bridge);
  await ns.ip('link', 'set', tapName, 'master', bridge);
  for (const dev of [bridge, bridgePort, kernelSide, tapName]) await ns.ip('link', 'set', dev, 'up');
  await waitForwarding(ns, [bridgePort, tapName]);
  return { tap, kernelSide, bridgePort };
}

/** Writes `size` random bytes to `conn` in uneven pieces, then ends it; returns their SHA-256. */
export async function sendStream(conn: TcpConnection, size: number): Promise<string> {
  const hash = createHash('sha256');
  const block = randomBytes(65_536);
  for (let sent = 0, n = 0; sent < size; sent += block.length, n++) {
    block.writeUInt32BE(n, 0);
    // Uneven writes, so that segments shorter than the MSS (ordinary frames) go out too.
    const piece = Buffer.from(block.subarray(0, Math.min(block.length - (n % 7) * 1000, size - sent)));
    sent -= block.length - piece.length;
    hash.update(piece);
    if (!conn.write(piece)) await once(conn, 'drain');
  }
  conn.end();
  return hash.digest('hex');
}

/** `size` bytes each way over one connection from `a` to `b` at `host`; checks SHA-256 equality. */
export async function exchange(t: ExecutionContext, a: Stack, b: Stack, size: number, host = '10.0.0.2'): Promise<void> {
  let server!: { sent: Promise<string>; got: Promise<{ sha: string; length: number }> };
  const accepted = new Promise<void>((resolve) => {
    const listener = b.tcp.listen(7000, (conn) => {
      listener.close();
      server = { got: digest(conn), sent: sendStream(conn, size) };
      resolve();
    }, { allowHalfOpen: true });
  });
  const client = await a.tcp.connect(host, 7000, { allowHalfOpen: true });
  const clientGot = digest(client);
  const clientSent = sendStream(client, size);
  await accepted;
  const [up, upGot, down, downGot] = await Promise.all([clientSent, server.got, server.sent, clientGot]);
  t.is(upGot.length, size);
  t.is(downGot.length, size);
  t.is(upGot.sha, up);
  t.is(downGot.sha, down);
}

/**
 * A writes `count` messages of 1,000 bytes to B, each once B has the one before (no delay): each
 * leaves as one ordinary frame (no super-frame), big enough to be sent with a partial checksum
 * to a port that completes checksums (the engine sums segments of at most 512 bytes itself).
 * The bulk of an exchange has such frames only by chance, at the end of a burst.
 */
export async function ordinaryFrames(a: Stack, b: Stack, host: string, count = 4): Promise<void> {
  let received = 0;
  let more: () => void = () => {};
  const listener = b.tcp.listen(7001, (conn) => {
    conn.on('data', (chunk: Buffer) => {
      received += chunk.length;
      more();
    });
  });
  try {
    const client = await a.tcp.connect(host, 7001);
    client.setNoDelay(true);
    for (let i = 1; i <= count; i++) {
      const reached = new Promise<void>((resolve) => (more = () => received >= i * 1000 && resolve()));
      client.write(Buffer.alloc(1000, i));
      await reached;
    }
    client.destroy();
  } finally {
    listener.close();
  }
}

/**
 * Writes to `injector` a SYN from 10.0.0.9:40000 to `dst`:7000 with 20 bytes of data and a
 * wrong TCP checksum, addressed to `mac`: whole, or as IPv4 fragments with `fragments`. Each
 * frame goes with `offload(last)` (`last`: it carries the last piece).
 */
export function injectWrongChecksumSyn(injector: NetDevice, mac: Buffer, dst: string, fragments: boolean, offload: (last: boolean) => FrameOffload | undefined): void {
  const tcp = Buffer.alloc(40);
  tcp.writeUInt16BE(40_000, 0);
  tcp.writeUInt16BE(7000, 2);
  tcp.writeUInt32BE(1, 4);
  tcp[12] = 5 << 4;
  tcp[13] = 0x02;
  tcp.writeUInt16BE(65_535, 14);
  tcp.writeUInt16BE(0x1234, 16);
  const packet = ipv4.emit({ src: '10.0.0.9', dst, protocol: 6, identification: 7 }, tcp);
  const pieces = fragments ? ipv4.fragment(packet, 20 + 24) : [packet];
  pieces.forEach((piece, i) => {
    injector.write(14 + piece.length, (frame) => {
      mac.copy(frame, 0);
      frame.fill(0x02, 6, 12);
      frame.writeUInt16BE(0x0800, 12);
      piece.copy(frame, 14);
      return 14 + piece.length;
    }, offload(i === pieces.length - 1));
  });
}

/** The Internet checksum of `bytes` with an initial sum (0xffff over data that carries a valid one). */
export function sum16(bytes: Buffer, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += bytes.readUInt16BE(i);
  if (bytes.length % 2) s += bytes[bytes.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/**
 * Whether an Ethernet frame is TCP over IPv4 or over IPv6 (no extension headers); then whether
 * its TCP checksum is complete and right.
 */
export function tcpChecksum(f: Buffer): 'not tcp' | 'good' | 'bad' {
  const type = f.readUInt16BE(12);
  if (type === 0x0800 && f[23] === 6) {
    const ip = f.subarray(14, 14 + f.readUInt16BE(16));
    const tcp = ip.subarray((ip[0]! & 0x0f) * 4);
    const pseudo = sum16(Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6, tcp.length >> 8, tcp.length & 0xff])]));
    return sum16(tcp, pseudo) === 0xffff ? 'good' : 'bad';
  }
  if (type === 0x86dd && f[20] === 6) {
    const tcp = f.subarray(54, 54 + f.readUInt16BE(18));
    const length = Buffer.alloc(8);
    length.writeUInt32BE(tcp.length, 0);
    length[7] = 6;
    const pseudo = sum16(Buffer.concat([f.subarray(22, 54), length]));
    return sum16(tcp, pseudo) === 0xffff ? 'good' : 'bad';
  }
  return 'not tcp';
}

/** What the offload specs' ports take: TSO for both families, and partial checksums. */
export const OFFLOADS: NetOffloads = { tso4: true, tso6: true, checksum: true };

/** The two stacks' addresses and their TCP MSS at MTU 1500, per IP version. */
export const FAMILY = {
  4: { a: '10.0.0.1', b: '10.0.0.2', mss: 1460 },
  6: { a: 'fd00::1', b: 'fd00::2', mss: 1440 },
} as const;

/**
 * Stack A on `netA` and B on `netB` (IPv4 or IPv6 addresses from {@link FAMILY}), closed with
 * `sw` at the end of the test; `partial` counts the frames of that family A sends with a partial
 * checksum, so a test can tell that the path under test was taken.
 */
export async function offloadStacks(t: ExecutionContext, sw: VirtualSwitch, netA: NetDevice, netB: NetDevice, family: 4 | 6) {
  const address = (host: string) => (family === 4 ? { ipv4: `${host}/24` } : { ipv6: { address: [`${host}/64`], dadTransmits: 0 } });
  const a = await createStack({ net: netA, ...address(FAMILY[family].a) });
  const b = await createStack({ net: netB, ...address(FAMILY[family].b) });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
    await sw.close();
  });
  const ethertype = family === 4 ? 0x0800 : 0x86dd;
  const partial = { superFrames: 0, frames: 0 };
  a.interfaces[0]!.eth.mirror((frame, direction, offload) => {
    if (direction !== 'out' || !offload || (offload.flags & NEEDS_CSUM) === 0 || frame.readUInt16BE(12) !== ethertype) return;
    if (offload.gsoType === GSO_NONE) partial.frames++;
    else partial.superFrames++;
  });
  return { a, b, partial };
}

/**
 * `port` with `receive` between it and its listener: it sees each received frame and its
 * offload metadata first, and hands them (changed or not) on with `deliver`.
 */
export function intercept(port: NetDevice, receive: (frame: Buffer, offload: FrameOffload | undefined, deliver: (frame: Buffer, offload?: FrameOffload) => void) => void): NetDevice {
  return {
    mac: port.mac,
    mtu: port.mtu,
    offloads: port.offloads,
    write: (size, fill, offload) => port.write(size, fill, offload),
    listen: (handler) => port.listen((frame, offload) => receive(frame, offload, (f, o) => void handler(f, o))),
    stats: () => port.stats(),
    close: () => port.close(),
  };
}

/**
 * A pcap recorder on A's checksum-offloading port while 16 MiB go each way: tshark, checking
 * every TCP (and IPv4 header) checksum, finds none bad in the capture.
 */
export async function pcapRecordsCompleteChecksums(t: ExecutionContext, family: 4 | 6): Promise<void> {
  t.timeout(180_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-csum-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a.pcap');
  const sw = new VirtualSwitch();
  const recorder = pcapRecorder(sw.connect({ offloads: OFFLOADS }), file);
  const { a, b, partial } = await offloadStacks(t, sw, recorder, sw.connect({ offloads: OFFLOADS }), family);
  await exchange(t, a, b, 16 * MIB, FAMILY[family].b);
  await ordinaryFrames(a, b, FAMILY[family].b);
  recorder.flush();
  t.true(partial.superFrames > 0 && partial.frames > 0, `A sent ${partial.superFrames} super-frames and ${partial.frames} frames with partial checksums`);
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
  const tshark = (filter: string) =>
    spawnSync('tshark', ['-r', file, '-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-e', 'frame.number', '-Y', filter], {
      encoding: 'utf8',
      maxBuffer: 256 * MIB,
    });
  const all = tshark(family === 4 ? 'ip && tcp' : 'ipv6 && tcp');
  t.is(all.status, 0, all.stderr);
  const tcpFrames = all.stdout.trim().split('\n').length;
  t.true(tcpFrames > (32 * MIB) / FAMILY[family].mss, `${tcpFrames} TCP frames captured`);
  const bad = tshark('tcp.checksum.status == "Bad" || ip.checksum.status == "Bad"');
  t.is(bad.status, 0, bad.stderr);
  t.is(bad.stdout.trim(), '', 'frames with a bad checksum');
}

/**
 * A sends partial checksums through its port; a port without checksum offload (B's) receives
 * only complete, right checksums, as does the switch mirror.
 */
export async function plainPortGetsCompleteChecksums(t: ExecutionContext, family: 4 | 6): Promise<void> {
  t.timeout(120_000);
  const sw = new VirtualSwitch();
  // What the plain port hands its stack, checked before the stack sees it.
  const received = { good: 0, bad: 0 };
  const checking = intercept(sw.connect(), (frame, offload, deliver) => {
    const c = tcpChecksum(frame);
    if (c !== 'not tcp') received[c]++;
    deliver(frame, offload);
  });
  const mirrored = { good: 0, bad: 0 };
  sw.mirror((frame) => {
    const c = tcpChecksum(frame);
    if (c !== 'not tcp') mirrored[c]++;
  });
  const { a, b, partial } = await offloadStacks(t, sw, sw.connect({ offloads: OFFLOADS }), checking, family);
  await exchange(t, a, b, 8 * MIB, FAMILY[family].b);
  await ordinaryFrames(a, b, FAMILY[family].b);
  t.true(partial.superFrames > 0 && partial.frames > 0, 'A sent partial checksums');
  t.true(received.good > (8 * MIB) / FAMILY[family].mss, `${received.good} TCP frames received by the plain port`);
  t.is(received.bad, 0, 'frames with a partial or wrong checksum reached the plain port');
  t.true(mirrored.good > 0);
  t.is(mirrored.bad, 0, 'frames with a partial or wrong checksum in the mirror');
  t.is(b.tcp.stats().badChecksum, 0);
}
