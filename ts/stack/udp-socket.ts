/**
 * A UDP socket shaped like Node's `dgram.Socket`, over a stack's {@link Udp} layer: made by
 * `stack.udp.createSocket('udp4' | 'udp6')`, then `bind(port, address, cb)`,
 * `send(msg, port, address, cb)` in dgram's argument order, `'message'` `(msg, rinfo)`,
 * `'listening'`, `'close'` and `'error'` events, `address()`, `close(cb)`, `ref()`/`unref()`.
 * The older `udp.bind(port, handler)` / `udp.send(address, port, data)` API stays beside it.
 *
 * Differences from dgram, by design: no DNS (addresses are literal IPv4/IPv6 text); no
 * `connect()`, multicast or buffer-size options; ICMP errors about datagrams sent from the socket
 * come as `'icmpError'` events (dgram drops them for unconnected sockets).
 * @module
 */
import { EventEmitter } from 'node:events';
import { MorganaError } from '../errors.js';
import { type InetAddress, parseInetAddress } from './inet.js';
import { KeepAlive } from './keep-alive.js';

/** What a socket needs of the UDP layer (structural, so that udp.ts can import this module). */
interface UdpLayer {
  bind(port: number, handler: (data: Buffer, from: { address: string; port: number; family?: 'IPv4' | 'IPv6' }, info: { to: string }) => void): UdpBinding;
  _isLocal(address: InetAddress): boolean;
}

interface UdpBinding {
  readonly port: number;
  send(dst: string, dstPort: number, data: Uint8Array): void;
  onError(listener: (error: MorganaError) => void): void;
  close(): void;
}

/** The family of a {@link UdpDgramSocket}, as dgram's `type`. */
export type UdpSocketType = 'udp4' | 'udp6';

/** Where a datagram came from, as dgram's `rinfo`. */
export interface UdpRemoteInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
  /** The payload's length in bytes. */
  size: number;
}

/** Options of {@link UdpDgramSocket.bind} in its object form (dgram's `BindOptions`). */
export interface UdpBindOptions {
  /** 0 or omitted: a free ephemeral port. */
  port?: number;
  /** A local address of the stack, or the wildcard (`'0.0.0.0'` / `'::'`, the default). */
  address?: string;
}

/** What {@link UdpDgramSocket.send} accepts, as dgram. */
export type UdpMessage = string | Uint8Array | ReadonlyArray<string | Uint8Array>;

type SendCallback = (error: Error | null, bytes: number) => void;

const BIND_UNBOUND = 0;
const BIND_BINDING = 1;
const BIND_BOUND = 2;

/**
 * A `dgram.Socket`-shaped UDP socket of a stack.
 *
 * - `bind()` is asynchronous like dgram's: `'listening'` (and the callback) come on a later tick;
 *   a taken port emits `'error'` with code `EADDRINUSE` (as the old `udp.bind` throws it), an
 *   address that is not the stack's emits `EADDRNOTAVAIL`; binding twice throws
 *   `ERR_SOCKET_ALREADY_BOUND`.
 * - `send()` binds to a free port first when the socket is not bound (as dgram); errors go to
 *   its callback, or `'error'` without one.
 * - A `'udp4'` socket receives IPv4 datagrams only; a `'udp6'` one both families, IPv4 peers
 *   appearing as `::ffff:a.b.c.d` with family `'IPv6'` (a dual-stack dgram socket's view).
 * - Keep-alive: a bound socket keeps the process alive until closed, unless `unref()`'d.
 */
export class UdpDgramSocket extends EventEmitter {
  /** `'udp4'` or `'udp6'`. */
  readonly type: UdpSocketType;
  readonly #udp: UdpLayer;
  #state = BIND_UNBOUND;
  #binding: UdpBinding | undefined;
  #localAddress = '';
  #closed = false;
  #ref = true;
  /** While bound: keeps the process alive unless unref'd (keep-alive.ts). */
  #keepAlive: KeepAlive | undefined;

  /** @internal Made by `Udp.createSocket`. */
  constructor(udp: UdpLayer, type: UdpSocketType) {
    super();
    if (type !== 'udp4' && type !== 'udp6') {
      throw new MorganaError('ERR_SOCKET_BAD_TYPE', `bad socket type ${String(type)}: 'udp4' or 'udp6'`);
    }
    this.#udp = udp;
    this.type = type;
  }

  /**
   * Binds like `dgram.Socket.bind`: `bind(port?, address?, callback?)` or
   * `bind({ port, address }, callback?)`. The callback is a `'listening'` listener.
   */
  bind(port?: number | UdpBindOptions | (() => void), address?: string | (() => void), callback?: () => void): this {
    if (typeof port === 'function') {
      callback = port;
      port = undefined;
    } else if (typeof port === 'object' && port !== null) {
      if (typeof address === 'function') callback = address;
      address = port.address;
      port = port.port;
    }
    if (typeof address === 'function') {
      callback = address;
      address = undefined;
    }
    this.#healthCheck();
    if (this.#state !== BIND_UNBOUND) throw new MorganaError('ERR_SOCKET_ALREADY_BOUND', 'Socket is already bound');
    if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65_535)) {
      throw new MorganaError('ERR_SOCKET_BAD_PORT', `port should be >= 0 and < 65536, got ${String(port)}`);
    }
    if (callback) this.once('listening', callback);
    this.#state = BIND_BINDING;
    const wildcard = this.type === 'udp4' ? '0.0.0.0' : '::';
    let local: InetAddress | undefined;
    let failure: MorganaError | undefined;
    try {
      if (address !== undefined && address !== '' && address !== wildcard) {
        local = parseInetAddress(address, 'address');
        if (this.type === 'udp4' && local.family !== 4) throw new MorganaError('EINVAL', `bind ${address}: not an IPv4 address`);
        if (!this.#udp._isLocal(local)) throw new MorganaError('EADDRNOTAVAIL', `bind EADDRNOTAVAIL ${address}: not an address of this stack`);
      }
      this.#binding = this.#udp.bind(port ?? 0, (data, from, info) => this.#receive(data, from, info.to, local));
    } catch (error) {
      failure = error instanceof MorganaError ? error : new MorganaError('EINVAL', String(error));
    }
    if (failure) {
      this.#state = BIND_UNBOUND;
      const error = failure;
      process.nextTick(() => this.emit('error', error));
      return this;
    }
    this.#localAddress = address === undefined || address === '' ? wildcard : address;
    this.#binding!.onError((error) => this.emit('icmpError', error));
    this.#state = BIND_BOUND;
    this.#updateHold();
    process.nextTick(() => {
      if (!this.#closed) this.emit('listening');
    });
    return this;
  }

  #receive(data: Buffer, from: { address: string; port: number; family?: 'IPv4' | 'IPv6' }, to: string, local: InetAddress | undefined): void {
    const v4 = from.family !== 'IPv6';
    if (this.type === 'udp4' && !v4) return;
    if (local && !sameAddress(local, to)) return;
    const rinfo: UdpRemoteInfo = {
      address: this.type === 'udp6' && v4 ? `::ffff:${from.address}` : from.address,
      family: this.type === 'udp6' ? 'IPv6' : 'IPv4',
      port: from.port,
      size: data.length,
    };
    this.emit('message', data, rinfo);
  }

  /**
   * Sends like `dgram.Socket.send`: `send(msg, port, address, callback?)` or
   * `send(msg, offset, length, port, address, callback?)`; `msg` is a string, bytes or an array
   * of them (sent as one datagram). `callback(error, bytes)`; without it errors are `'error'`.
   */
  send(msg: UdpMessage, ...args: unknown[]): void {
    let data: Buffer;
    if (typeof args[0] === 'number' && typeof args[1] === 'number' && typeof args[2] === 'number') {
      const [offset, length] = args as [number, number];
      data = toBuffer(msg).subarray(offset, offset + length);
      args = args.slice(2);
    } else {
      data = toBuffer(msg);
    }
    const [port, address, callback] = args as [number, string | SendCallback | undefined, SendCallback | undefined];
    const cb = typeof address === 'function' ? address : callback;
    const host = typeof address === 'string' ? address : this.type === 'udp4' ? '127.0.0.1' : '::1';
    this.#healthCheck();
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new MorganaError('ERR_SOCKET_BAD_PORT', `port should be > 0 and < 65536, got ${String(port)}`);
    }
    if (this.#state === BIND_UNBOUND) this.bind();
    const finish = (error: Error | null) => {
      if (cb) cb(error, error ? 0 : data.length);
      else if (error) this.emit('error', error);
    };
    // On a later tick, as dgram (and after a bind started above has bound).
    process.nextTick(() => {
      if (this.#closed || !this.#binding) {
        finish(new MorganaError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running'));
        return;
      }
      try {
        const dst = parseInetAddress(host, 'address');
        if (this.type === 'udp4' && dst.family !== 4) throw new MorganaError('EINVAL', `send to ${host}: not an IPv4 address`);
        this.#binding.send(host, port, data);
        finish(null);
      } catch (error) {
        finish(error instanceof Error ? error : new MorganaError('EINVAL', String(error)));
      }
    });
  }

  /** The bound address, as `dgram.Socket.address()`; throws `EBADF` when not bound (`ERR_SOCKET_DGRAM_NOT_RUNNING` once closed). */
  address(): { address: string; family: 'IPv4' | 'IPv6'; port: number } {
    this.#healthCheck();
    if (this.#state !== BIND_BOUND || !this.#binding) throw new MorganaError('EBADF', 'getsockname EBADF');
    return { address: this.#localAddress, family: this.type === 'udp4' ? 'IPv4' : 'IPv6', port: this.#binding.port };
  }

  /** Frees the port; `'close'` (and `callback`) on a later tick. Throws when already closed. */
  close(callback?: () => void): this {
    this.#healthCheck();
    if (callback) this.once('close', callback);
    this.#closed = true;
    this.#binding?.close();
    this.#binding = undefined;
    this.#state = BIND_UNBOUND;
    this.#updateHold();
    process.nextTick(() => this.emit('close'));
    return this;
  }

  /** Keeps the process alive while bound (the default). */
  ref(): this {
    this.#ref = true;
    this.#updateHold();
    return this;
  }

  /** Lets the process exit while the socket is bound. */
  unref(): this {
    this.#ref = false;
    this.#updateHold();
    return this;
  }

  /** `close()` for `await using` (as dgram's `Symbol.asyncDispose`): resolves on `'close'`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    await new Promise<void>((resolve) => this.close(resolve));
  }

  #updateHold(): void {
    if (this.#state === BIND_BOUND && !this.#closed) {
      this.#keepAlive ??= new KeepAlive();
      if (this.#ref) this.#keepAlive.ref();
      else this.#keepAlive.unref();
    } else {
      this.#keepAlive?.release();
      this.#keepAlive = undefined;
    }
  }

  #healthCheck(): void {
    if (this.#closed) throw new MorganaError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running');
  }
}

function toBuffer(msg: UdpMessage): Buffer {
  if (typeof msg === 'string') return Buffer.from(msg);
  if (msg instanceof Uint8Array) return Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (Array.isArray(msg)) return Buffer.concat(msg.map((m: string | Uint8Array) => (typeof m === 'string' ? Buffer.from(m) : m)));
  throw new MorganaError('ERR_INVALID_ARG_TYPE', 'msg must be a string, a Buffer, a Uint8Array or an array of them');
}

function sameAddress(local: InetAddress, to: string): boolean {
  try {
    const other = parseInetAddress(to);
    return local.family === 4 ? other.family === 4 && other.v4 === local.v4 : other.family === 6 && other.v6.equals(local.v6);
  } catch {
    return false;
  }
}
