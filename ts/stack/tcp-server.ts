/**
 * What `tcp.listen()` returns: a `net.Server`-shaped listening port. Events `'listening'`
 * (next tick), `'connection'` (each accepted connection, besides the `onConnection` callback),
 * `'close'` (once closed and every connection it accepted has closed) and `'error'`;
 * `address()`, `listening`, `close(callback)` and `closed()` (the promise form), `ref()`/`unref()`.
 * @module
 */
import { EventEmitter } from 'node:events';
import { MorganaError } from '../errors.js';
import { KeepAlive } from './keep-alive.js';

/** What the server needs of a connection (a `TcpConnection`), kept structural to keep tcp.ts ↔ tcp-server.ts acyclic. */
interface Accepted {
  once(event: 'close', listener: () => void): unknown;
}

/** A listening TCP port of a Morgana stack, shaped like `net.Server`. */
export class TcpServer extends EventEmitter {
  /** The port it listens on. */
  readonly port: number;
  /** The families it accepts: `'IPv4'`, `'IPv6'` or `'dual'`. */
  readonly family: 'IPv4' | 'IPv6' | 'dual';
  #listening = true;
  #stop: () => void;
  readonly #connections = new Set<Accepted>();
  #closeEmitted = false;
  readonly #keepAlive = new KeepAlive();
  #closed: Promise<void>;
  #resolveClosed!: () => void;

  /** @internal Made by `Tcp.listen`. */
  constructor(port: number, family: 'IPv4' | 'IPv6' | 'dual', stop: () => void) {
    super();
    this.port = port;
    this.family = family;
    this.#stop = stop;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    process.nextTick(() => {
      if (this.#listening) this.emit('listening');
    });
  }

  /** True until `close()` (like `net.Server.listening`). */
  get listening(): boolean {
    return this.#listening;
  }

  /** Like `net.Server.address()`: the wildcard address of its family and the port. */
  address(): { address: string; family: 'IPv4' | 'IPv6'; port: number } {
    return { address: this.family === 'IPv4' ? '0.0.0.0' : '::', family: this.family === 'IPv4' ? 'IPv4' : 'IPv6', port: this.port };
  }

  /**
   * Stops accepting; established connections stay, and `'close'` follows once they have all
   * closed. `callback` gets an `ERR_SERVER_NOT_RUNNING` error when it was not listening, as
   * Node's does. Returns the server.
   */
  close(callback?: (error?: Error) => void): this {
    if (!this.#listening) {
      // As net.Server: the callback hears ERR_SERVER_NOT_RUNNING through one more 'close'.
      if (callback) this.once('close', () => callback(new MorganaError('ERR_SERVER_NOT_RUNNING', 'Server is not running.')));
      if (this.#connections.size === 0) process.nextTick(() => this.emit('close'));
      return this;
    }
    this.#listening = false;
    this.#stop();
    this.#keepAlive.release();
    if (callback) this.once('close', () => callback());
    this.#maybeClosed();
    return this;
  }

  /** Resolves once the server has emitted `'close'` (the promise form of `close(callback)`). */
  closed(): Promise<void> {
    return this.#closed;
  }

  /** Keeps the process alive while listening (the default). */
  ref(): this {
    this.#keepAlive.ref();
    return this;
  }

  /** Lets the process exit while it still listens. */
  unref(): this {
    this.#keepAlive.unref();
    return this;
  }

  /** @internal A connection it accepted, before the `onConnection` callback sees it. */
  _accepted(conn: Accepted): void {
    this.#connections.add(conn);
    conn.once('close', () => {
      this.#connections.delete(conn);
      this.#maybeClosed();
    });
    this.emit('connection', conn);
  }

  /** @internal The stack closed: stop listening without touching the (gone) engine. */
  _stackClosed(): void {
    if (!this.#listening) return;
    this.#stop = () => {};
    this.close();
  }

  #maybeClosed(): void {
    if (this.#listening || this.#connections.size > 0 || this.#closeEmitted) return;
    this.#closeEmitted = true;
    process.nextTick(() => {
      this.emit('close');
      this.#resolveClosed();
    });
  }
}
