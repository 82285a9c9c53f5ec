/**
 * Block devices as objects of the daemon: sparse image files under `<dir>/blocks/`, created with
 * a size, listed, dumped and restored as streams (never past the device's size), deleted when no
 * unikernel uses them, and attached to a deploy by name (`--block storage=@name`).
 * @module
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MorganaError } from '../errors.js';

/** Largest block device (1 TiB). */
export const MAX_BLOCK_BYTES = 2 ** 40;

/** One block device. */
export interface BlockInfo {
  name: string;
  /** Size in bytes (a multiple of 512). */
  size: number;
  /** Bytes actually allocated on the host (sparse files). */
  allocated: number;
  /** ISO time of creation. */
  created: string;
  /** The image file. */
  file: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function fail(code: string, message: string): never {
  throw new MorganaError(code, message);
}

/** The block devices of one daemon. */
export class BlockStore {
  readonly dir: string;
  #meta = new Map<string, { size: number; created: string }>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** @internal Loads the index. */
  async load(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      const m = JSON.parse(await readFile(path.join(this.dir, 'index.json'), 'utf8')) as Record<string, { size: number; created: string }>;
      for (const [k, v] of Object.entries(m)) if (existsSync(this.file(k))) this.#meta.set(k, v);
    } catch {
      // none yet
    }
  }

  async #save(): Promise<void> {
    const f = path.join(this.dir, 'index.json');
    await writeFile(`${f}.tmp`, JSON.stringify(Object.fromEntries(this.#meta), null, 2), { mode: 0o600 });
    await rename(`${f}.tmp`, f);
  }

  /** The image file of `name` (the name's `:` kept: it is a valid file name character). */
  file(name: string): string {
    return path.join(this.dir, `${name}.img`);
  }

  has(name: string): boolean {
    return this.#meta.has(name);
  }

  /** The size of `name` in bytes. Throws `ERR_DAEMON_BLOCK_UNKNOWN`. */
  size(name: string): number {
    const m = this.#meta.get(name);
    if (!m) fail('ERR_DAEMON_BLOCK_UNKNOWN', `no block device named '${name}'`);
    return m.size;
  }

  /** Total size in bytes of the devices under owner path `owner`. */
  usedUnder(owner: string): number {
    let n = 0;
    for (const [k, v] of this.#meta) if (k.startsWith(`${owner}:`)) n += v.size;
    return n;
  }

  /** Creates a zero-filled sparse device. Throws `ERR_DAEMON_BLOCK_EXISTS` / `ERR_DAEMON_BAD_BLOCK`. */
  async create(name: string, size: number): Promise<BlockInfo> {
    if (typeof name !== 'string' || !NAME_RE.test(name)) fail('ERR_DAEMON_BAD_BLOCK', `invalid block device name '${String(name)}'`);
    if (!Number.isInteger(size) || size < 512 || size % 512 !== 0 || size > MAX_BLOCK_BYTES) fail('ERR_DAEMON_BAD_BLOCK', `size must be a multiple of 512 bytes from 512 to 1 TiB, got ${size}`);
    if (this.#meta.has(name)) fail('ERR_DAEMON_BLOCK_EXISTS', `block device '${name}' exists`);
    const fh = await open(this.file(name), 'wx', 0o600);
    await fh.truncate(size);
    await fh.close();
    this.#meta.set(name, { size, created: new Date().toISOString() });
    await this.#save();
    return this.info(name);
  }

  async info(name: string): Promise<BlockInfo> {
    const size = this.size(name);
    const s = await stat(this.file(name));
    return { name, size, allocated: s.blocks * 512, created: this.#meta.get(name)!.created, file: this.file(name) };
  }

  async list(): Promise<BlockInfo[]> {
    return Promise.all([...this.#meta.keys()].sort().map((n) => this.info(n)));
  }

  async delete(name: string): Promise<void> {
    this.size(name);
    await unlink(this.file(name)).catch(() => {});
    this.#meta.delete(name);
    await this.#save();
  }

  /** A stream of the device's bytes. */
  dump(name: string): Readable {
    this.size(name);
    return createReadStream(this.file(name), { highWaterMark: 32 * 1024 });
  }

  /**
   * Restores the device from chunks: written from offset 0 into a temporary file, refused with
   * `ERR_DAEMON_BLOCK_TOO_LARGE` (and the device left unchanged) past its size; what is not
   * written reads as zeros. Returns the bytes written.
   */
  async restore(name: string, chunks: AsyncIterable<Buffer>): Promise<number> {
    const size = this.size(name);
    const tmp = `${this.file(name)}.restore`;
    const fh = await open(tmp, 'w', 0o600);
    let written = 0;
    try {
      for await (const chunk of chunks) {
        if (written + chunk.length > size) fail('ERR_DAEMON_BLOCK_TOO_LARGE', `restore data is larger than block device '${name}' (${size} bytes)`);
        await fh.write(chunk, 0, chunk.length, written);
        written += chunk.length;
      }
      await fh.truncate(size);
      await fh.sync();
    } catch (error) {
      await fh.close();
      await unlink(tmp).catch(() => {});
      throw error;
    }
    await fh.close();
    await rename(tmp, this.file(name));
    return written;
  }
}
