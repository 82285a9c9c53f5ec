/**
 * Helpers of the offload specs: bulk transfers both ways over one TCP connection between two
 * stacks (uneven writes, SHA-256 compared), and TCP checksum checks of captured frames.
 */
import type { ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Stack, TcpConnection } from 'morgana';
import { digest } from './streams.js';

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
