/**
 * A NET device wrapper that records every frame, both directions, to a libpcap file
 * (`LINKTYPE_ETHERNET`, microsecond timestamps) that tcpdump, tshark and Wireshark read.
 * Records are buffered in memory and written in chunks; `close()` flushes and closes the file.
 * @module
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { InvalidArgumentError, MorganaError, OutOfRangeError } from '../errors.js';
import {
  type FrameFill,
  type FrameHandler,
  type FrameOffload,
  type NetDevice,
  type NetOffloads,
  type NetStats,
  ETHERNET_HEADER_LENGTH,
  acceptsOffload,
} from './device.js';
import { differsFromWire, wireFrames } from './gso.js';

/** Options of {@link pcapRecorder}. */
export interface PcapOptions {
  /** Bytes of each frame stored (longer frames are truncated in the file); default 262,144. */
  snaplen?: number;
  /** Buffered bytes that trigger a write to the file (default 64 KiB). */
  flushBytes?: number;
  /** Wall-clock time in microseconds since the epoch (default: from `performance`). */
  nowMicros?: () => number;
}

/** A recording NET device: the wrapped device's behaviour plus the file it writes. */
export interface PcapRecorder extends NetDevice {
  /** The file being written. */
  readonly file: string;
  /** Frames recorded so far (both directions). */
  readonly recorded: number;
  /** Writes what is buffered to the file now (also done on `close()`). */
  flush(): void;
}

const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;

/** Wall-clock time in microseconds since the epoch. */
export const pcapNowMicros = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000);
const defaultNow = pcapNowMicros;

/** A libpcap file's global header: microsecond timestamps, little-endian, Ethernet frames. */
export function pcapGlobalHeader(snaplen: number): Buffer {
  const header = Buffer.alloc(GLOBAL_HEADER_LENGTH);
  header.writeUInt32LE(0xa1b2c3d4, 0); // microsecond timestamps, written little-endian
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeInt32LE(0, 8); // thiszone: timestamps are UTC
  header.writeUInt32LE(0, 12); // sigfigs
  header.writeUInt32LE(snaplen, 16);
  header.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return header;
}

/** One libpcap record: the first `length` bytes of `frame`, cut at `snaplen`, stamped `micros`. */
export function pcapRecord(frame: Uint8Array, length: number, snaplen: number, micros: number): Buffer {
  const captured = Math.min(length, snaplen);
  const record = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + captured);
  record.writeUInt32LE(Math.floor(micros / 1e6) >>> 0, 0);
  record.writeUInt32LE(micros % 1e6, 4);
  record.writeUInt32LE(captured, 8);
  record.writeUInt32LE(length, 12);
  record.set(frame.subarray(0, captured), RECORD_HEADER_LENGTH);
  return record;
}

/**
 * Wraps `device` so that every frame written through the wrapper and every frame it receives is
 * recorded to `file` (created or truncated now). Closing the wrapper flushes the file and
 * closes the wrapped device.
 */
export function pcapRecorder(device: NetDevice, file: string, options: PcapOptions = {}): PcapRecorder {
  if (typeof file !== 'string' || file === '') throw new InvalidArgumentError('file must be a non-empty string');
  return new Recorder(device, file, options);
}

class Recorder implements PcapRecorder {
  readonly file: string;
  #device: NetDevice;
  #fd: number | undefined;
  #snaplen: number;
  #flushBytes: number;
  #now: () => number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #recorded = 0;
  #handler: FrameHandler | undefined;
  #listening = false;
  #closed = false;

  constructor(device: NetDevice, file: string, options: PcapOptions) {
    this.#device = device;
    this.file = file;
    this.#snaplen = options.snaplen ?? 262_144;
    this.#flushBytes = options.flushBytes ?? 65_536;
    this.#now = options.nowMicros ?? defaultNow;
    if (!Number.isInteger(this.#snaplen) || this.#snaplen < 1) throw new OutOfRangeError('snaplen must be a positive integer');
    if (!Number.isInteger(this.#flushBytes) || this.#flushBytes < 0) {
      throw new OutOfRangeError('flushBytes must be a non-negative integer');
    }
    this.#fd = openSync(file, 'w');
    writeSync(this.#fd, pcapGlobalHeader(this.#snaplen)); // at once: even a run that dies early leaves a valid capture
  }

  get mac(): string {
    return this.#device.mac;
  }

  get mtu(): number {
    return this.#device.mtu;
  }

  /** The wrapped device's offloads: super-frames pass through, the capture gets real frames. */
  get offloads(): NetOffloads | undefined {
    return this.#device.offloads;
  }

  get recorded(): number {
    return this.#recorded;
  }

  write(size: number, fill: FrameFill, offload?: FrameOffload): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', 'write on a closed pcap recorder');
    this.#device.write(
      size,
      (buffer) => {
        const length = fill(buffer);
        if (!Number.isInteger(length) || length < ETHERNET_HEADER_LENGTH || length > size) return length;
        // Record only what the device will send: it refuses bad lengths and drops oversized
        // frames; a super-frame it accepts is recorded as the real frames it stands for.
        if (differsFromWire(offload) && acceptsOffload(this.#device, offload, length)) {
          this.#recordReal(buffer.subarray(0, length), offload);
        } else if (length <= this.mtu + ETHERNET_HEADER_LENGTH) {
          this.#record(buffer, length);
        }
        return length;
      },
      offload,
    );
  }

  /**
   * Records the real frames a frame with offload metadata stands for: pieces cut in Rust, or
   * a copy with its partial checksum completed (the frame itself goes on unchanged).
   */
  #recordReal(frame: Buffer, offload: FrameOffload): void {
    for (const piece of wireFrames(frame, offload)) this.#record(piece, piece.length);
  }

  listen(handler: FrameHandler): void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('handler must be a function');
    this.#handler = handler;
    if (this.#listening) return;
    this.#listening = true;
    this.#device.listen((frame, offload) => {
      if (this.#closed) return;
      if (differsFromWire(offload)) this.#recordReal(frame, offload);
      else this.#record(frame, frame.length);
      this.#handler?.(frame, offload);
    });
  }

  stats(): NetStats {
    return this.#device.stats();
  }

  flush(): void {
    if (this.#fd === undefined || this.#buffered === 0) return;
    const data = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [];
    this.#buffered = 0;
    let offset = 0;
    while (offset < data.length) offset += writeSync(this.#fd, data, offset, data.length - offset);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = undefined;
    try {
      await this.#device.close();
    } finally {
      this.flush();
      if (this.#fd !== undefined) closeSync(this.#fd);
      this.#fd = undefined;
    }
  }

  #record(frame: Uint8Array, length: number): void {
    this.#recorded++;
    this.#push(pcapRecord(frame, length, this.#snaplen, this.#now()));
  }

  #push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered >= this.#flushBytes) this.flush();
  }
}
