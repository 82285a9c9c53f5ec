/**
 * Stream helpers shared by the TCP specs: whole-stream reads and writes over a connection (or
 * any Node stream), and SHA-256 digests to compare what was sent with what arrived.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/** The hex SHA-256 of `data`. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Collects everything `stream` emits until 'end'. */
export function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return once(stream, 'end').then(() => Buffer.concat(chunks));
}

/** Writes `data` in 64 KiB pieces honouring backpressure, then ends. */
export async function writeAll(stream: Writable, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 65_536) {
    if (!stream.write(data.subarray(at, at + 65_536))) await once(stream, 'drain');
  }
  stream.end();
}

/**
 * Hashes everything `stream` emits until 'end' without holding the data; returns the SHA-256
 * and the byte count. Listens at once, so call it before the data can start to flow.
 */
export function digest(stream: Readable): Promise<{ sha: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  stream.on('data', (c: Buffer) => {
    hash.update(c);
    length += c.length;
  });
  return once(stream, 'end').then(() => ({ sha: hash.digest('hex'), length }));
}
