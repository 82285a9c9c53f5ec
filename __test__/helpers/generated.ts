/**
 * Deterministic test payloads for kernel interop: AES-128-CTR over zeros with a fixed key, which
 * Node generates as a stream and the kernel side reproduces with `openssl enc`, so a transfer's
 * SHA-256 is known on both sides without holding the data.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const KEY = '000102030405060708090a0b0c0d0e0f';
const IV = 'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff';
const CHUNK = 64 * 1024;

/** `size` deterministic bytes as a stream of 64 KiB chunks. */
export function generated(size: number): Readable {
  const cipher = createCipheriv('aes-128-ctr', Buffer.from(KEY, 'hex'), Buffer.from(IV, 'hex'));
  const zeros = Buffer.alloc(CHUNK);
  let left = size;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (left === 0) return void this.push(null);
      const n = Math.min(CHUNK, left);
      left -= n;
      this.push(cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n)));
    },
  });
}

/** The SHA-256 of {@link generated}(size), computed without holding the data. */
export async function expectedSha(size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of generated(size)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The same bytes on the kernel side, as a shell pipeline prefix. */
export function generatorShell(size: number): string {
  // openssl dies of SIGPIPE once head has enough.
  return `{ openssl enc -aes-128-ctr -nosalt -K ${KEY} -iv ${IV} -in /dev/zero 2>/dev/null || true; } | head -c ${size}`;
}
