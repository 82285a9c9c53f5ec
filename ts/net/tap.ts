/**
 * A NET device backed by a Linux TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`).
 *
 * The descriptor is opened from Rust, optionally inside a named network namespace. A Rust reader
 * thread drains every frame that is ready on a wake-up into one buffer plus a lengths array and
 * hands the batch to JavaScript with a single threadsafe-function call; the listener receives
 * views of that (fresh) buffer. Writes go synchronously from the JS thread straight to the
 * descriptor. Like a socket, an open device keeps the event loop alive; `close()` releases it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, MorganaError, OutOfRangeError, assertInteger } from '../errors.js';
import { native } from '../native.js';
import { type FrameFill, type FrameHandler, type NetDevice, type NetStats, ETHERNET_HEADER_LENGTH } from './device.js';
import { formatMac, parseMac, randomLocalMac } from './mac.js';

/** Options of {@link openTap}. */
export interface TapOptions {
  /**
   * Interface name, 1 to 15 bytes (`%d` lets the kernel number it, e.g. `'mtap%d'`; the chosen
   * name is {@link TapDevice.name}). An existing persistent TAP of that name is attached to.
   */
  name: string;
  /**
   * Network namespace to create the interface in: a name as `ip netns add` creates it (under
   * `/var/run/netns/`) or an absolute path such as `/proc/<pid>/ns/net`. Default: the process's.
   */
  netns?: string;
  /**
   * The MAC address Morgana's stack uses on this interface (not the kernel side's own MAC).
   * Default: a random locally administered unicast address.
   */
  mac?: string;
  /** IP MTU, 68 to 65,521 (default 1500); also set on the kernel side of the interface. */
  mtu?: number;
}

/** A TAP-backed NET device. */
export interface TapDevice extends NetDevice {
  /** The kernel interface name (with any `%d` expanded). */
  readonly name: string;
}

type Handle = ReturnType<typeof native.TapHandle.open>;

/** Largest MTU the kernel's TUN/TAP driver accepts (65,535 minus the Ethernet header). */
const MAX_TAP_MTU = 65_521;
/** `write` asks for at most this many bytes. */
const MAX_WRITE_SIZE = 1 << 20;

/**
 * Opens a TAP interface as a NET device. Needs `CAP_NET_ADMIN` (in the target namespace) and
 * access to `/dev/net/tun`. The kernel side starts down: bring it up (and attach it to a bridge,
 * give it an address…) with `ip`.
 *
 * Errors (all {@link MorganaError}): `ERR_TAP_PERMISSION` (not allowed), `ERR_TAP_UNAVAILABLE`
 * (no `/dev/net/tun`), `ERR_TAP_NETNS` (namespace missing), `ERR_TAP_OPEN` (anything else, with
 * the OS error text); invalid options throw `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE` /
 * `ERR_INVALID_MAC`.
 */
export async function openTap(options: TapOptions): Promise<TapDevice> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
  const { name, netns } = options;
  if (typeof name !== 'string') throw new InvalidArgumentError('options.name must be a string');
  if (netns !== undefined && typeof netns !== 'string') throw new InvalidArgumentError('options.netns must be a string');
  const mtu = options.mtu ?? 1500;
  assertInteger(mtu, 'options.mtu', 68, MAX_TAP_MTU);
  const mac = formatMac(parseMac(options.mac ?? randomLocalMac((n) => randomBytes(n))));
  return new Tap(name, netns, mac, mtu);
}

class Tap implements TapDevice {
  readonly mac: string;
  readonly mtu: number;
  readonly name: string;
  #handle: Handle;
  #closed = false;
  #handler: FrameHandler | undefined;
  /** Lent to `fill`; off-heap (allocUnsafeSlow) so Rust borrows it without a copy. */
  #buffer: Buffer;
  #txFrames = 0;
  #txBytes = 0;
  #txDropped = 0;
  #rxFrames = 0;
  #rxBytes = 0;
  #rxUnheard = 0;

  constructor(name: string, netns: string | undefined, mac: string, mtu: number) {
    this.mac = mac;
    this.mtu = mtu;
    this.#buffer = Buffer.allocUnsafeSlow(mtu + ETHERNET_HEADER_LENGTH);
    try {
      this.#handle = native.TapHandle.open(name, netns, mtu, (frames, lengths) => this.#receive(frames, lengths));
    } catch (error) {
      throw tapError(error);
    }
    this.name = this.#handle.name;
  }

  #receive(frames: Buffer, lengths: Uint32Array): void {
    if (this.#closed) return;
    let offset = 0;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i]!;
      const frame = frames.subarray(offset, offset + length);
      offset += length;
      const handler = this.#handler;
      if (handler === undefined || this.#closed) {
        this.#rxUnheard++;
        continue;
      }
      this.#rxFrames++;
      this.#rxBytes += length;
      handler(frame);
    }
  }

  write(size: number, fill: FrameFill): void {
    if (this.#closed) throw new MorganaError('ERR_NET_CLOSED', `write on closed TAP device ${this.name}`);
    assertInteger(size, 'size', 0, MAX_WRITE_SIZE);
    if (this.#buffer.length < size) this.#buffer = Buffer.allocUnsafeSlow(size);
    const length = fill(this.#buffer);
    if (!Number.isInteger(length) || length < 0 || length > size) {
      throw new OutOfRangeError(`fill must return a length from 0 to ${size}, got ${length}`);
    }
    if (length > this.mtu + ETHERNET_HEADER_LENGTH || length < ETHERNET_HEADER_LENGTH || this.#closed) {
      this.#txDropped++;
      return;
    }
    const written = this.#handle.write(this.#buffer, length);
    if (written === length) {
      this.#txFrames++;
      this.#txBytes += length;
    } else {
      this.#txDropped++; // EAGAIN (device queue full) or the interface went away
    }
  }

  listen(handler: FrameHandler): void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('handler must be a function');
    this.#handler = handler;
  }

  stats(): NetStats {
    const n = this.#handle.stats();
    return {
      rxFrames: this.#rxFrames,
      rxBytes: this.#rxBytes,
      txFrames: this.#txFrames,
      txBytes: this.#txBytes,
      rxDropped: this.#rxUnheard + n.rxQueueDropped + n.rxOversized,
      txDropped: this.#txDropped,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = undefined;
    this.#handle.close();
  }
}

const HINTS: Record<string, string> = {
  ERR_TAP_PERMISSION: 'opening a TAP device needs CAP_NET_ADMIN and access to /dev/net/tun',
  ERR_TAP_UNAVAILABLE: 'the kernel offers no TUN/TAP driver; try `modprobe tun`',
  ERR_TAP_NETNS: 'create it with `ip netns add <name>`',
};

const TAP_CODE = /^(ERR_TAP_[A-Z_]+): ([\s\S]*)$/;

/** Turns the native open failure (`'ERR_TAP_…: text'`) into a MorganaError with that code. */
function tapError(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  const match = TAP_CODE.exec(message);
  if (match) {
    const hint = HINTS[match[1]!];
    return new MorganaError(match[1]!, hint ? `${match[2]} (${hint})` : match[2]!, { cause: error });
  }
  return new MorganaError('ERR_TAP_OPEN', message, { cause: error });
}
