/**
 * The byte relay between a host socket and a connection of the vnet gateway's stack, behind
 * every TCP `--forward` of the `vnet` target.
 *
 * Each chunk the host socket reads goes straight into the Morgana connection (whose `write`
 * copies it once, into the TCP engine's send buffer), and each chunk the connection receives
 * straight to the host socket (handed to the kernel without a copy). A side whose writes are not
 * taken pauses the other side's reads until it drains, so what the relay holds stays bounded
 * whatever the two peers do: see {@link TcpRelay.buffered}.
 *
 * Host sockets the relay creates or adopts ({@link relayAccepted}, {@link relayConnected}) read
 * into one reused buffer (net's `onread`) instead of a fresh 64 KiB ArrayBuffer per read: since
 * the engine copies what it is given, the buffer is free again as soon as the connection has
 * taken the chunk, and only a chunk the connection still holds (its send buffer full) costs a
 * new one. Fresh ArrayBuffers at a few GB/s were what made V8 run a full collection every
 * ~100 ms during a bulk transfer. The other way, a Morgana connection reads into a reused buffer
 * of the relay too (`TcpConnection.setOnRead`), whose chunks net copies into the kernel.
 *
 * Read buffers start at 64 KiB and double while reads fill them, up to {@link HOST_READ_MAX}
 * (2 MiB), so a bulk transfer costs a system call and a pass through the streams per 2 MiB rather
 * than per 64 KiB, and a connection that only trickles keeps a small buffer (a grown one gives
 * way to a 64 KiB one after {@link HOST_READ_SHRINK_AFTER} small reads). Per connection and
 * direction the relay's read buffers hold at most three of the largest size: the current one,
 * one its target still holds, and one kept for reuse.
 * @module
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';

/** A running relay; it ends by itself when both sides have finished or one fails. */
export interface TcpRelay {
  /**
   * Bytes the relay's two streams hold, both directions together: what each has read and not
   * yet handed on, and what each has been given and not yet passed to its transport. Pausing
   * the reading side when the other is full bounds it by about two chunks (up to
   * {@link HOST_READ_MAX} each) plus
   * the two streams' high-water marks per direction; the TCP engine's send buffer and the
   * kernel's socket buffers come on top of it, bounded by their own sizes.
   */
  buffered(): number;
  /** Bytes relayed from the host socket to the inner connection. */
  readonly inward: number;
  /** Bytes relayed from the inner connection to the host socket. */
  readonly outward: number;
  /**
   * Read buffers allocated for the host socket (see {@link relayAccepted}): 1 while the inner
   * connection takes every chunk whole and reads do not fill it, one more per doubling (at most
   * log2({@link HOST_READ_MAX} / {@link HOST_READ_BUFFER}) in a row) and a few more when the
   * connection holds some chunks; 0 when the host socket
   * reads into buffers of its own ({@link relayTcp}).
   */
  readonly hostReadBuffers: number;
  /**
   * Of {@link outward}, the bytes the inner connection read into the relay's reused buffer
   * (a Morgana connection relayed by {@link relayAccepted} or {@link relayConnected}); the rest
   * came through its stream, as Buffers of their own, while the host socket was full.
   */
  readonly outwardViaBuffer: number;
}

/**
 * The size of a relay's first read buffer in each direction (net's own reads are 64 KiB too);
 * a read that fills it makes the next buffer twice as large, up to {@link HOST_READ_MAX}.
 */
export const HOST_READ_BUFFER = 64 * 1024;

/**
 * The largest read buffer a relay grows to in each direction. A bulk transfer moves the data in
 * chunks of this size: each read from the host socket is one system call, one window update
 * from the kernel (whose sender then runs on this thread too, on loopback) and one pass through
 * the streams, and at 64 KiB those costs were half of what forwarding a byte cost.
 */
export const HOST_READ_MAX = 2 * 1024 * 1024;

/** Reads smaller than {@link HOST_READ_BUFFER} in a row after which a grown buffer gives way to a first-size one. */
export const HOST_READ_SHRINK_AFTER = 16;

/** Read buffers a relay keeps for reuse while its target still holds an earlier one. */
export const HOST_READ_BUFFERS_KEPT = 1;

/**
 * What all relays' read buffers together may take beyond their first size, so that many busy
 * connections do not each grow theirs to {@link HOST_READ_MAX}: a buffer grows only while this
 * budget lasts, and gives its share back when it shrinks or its relay ends.
 */
export const HOST_READ_GROWTH_BUDGET = 64 * 1024 * 1024;

/** Bytes of {@link HOST_READ_GROWTH_BUDGET} in use. */
let grownBytes = 0;

/**
 * The size of one direction's read buffer: twice as large after a read that filled it (while
 * {@link HOST_READ_GROWTH_BUDGET} lasts), the first size again after
 * {@link HOST_READ_SHRINK_AFTER} small reads in a row, else the same.
 */
class ReadSize {
  size = HOST_READ_BUFFER;
  #small = 0;
  #ended = false;

  /** The size for the next read, after one of `n` bytes into a buffer of the current size. */
  next(n: number): number {
    if (this.#ended) return this.size;
    if (n >= this.size) {
      this.#small = 0;
      const grown = Math.min(this.size * 2, HOST_READ_MAX);
      if (grownBytes + grown - this.size <= HOST_READ_GROWTH_BUDGET) {
        grownBytes += grown - this.size;
        this.size = grown;
      }
    } else if (n >= HOST_READ_BUFFER) this.#small = 0;
    else if (this.size > HOST_READ_BUFFER && ++this.#small >= HOST_READ_SHRINK_AFTER) this.release();
    return this.size;
  }

  /** Back to the first size, giving the growth back to the budget. */
  release(): void {
    grownBytes -= this.size - HOST_READ_BUFFER;
    this.size = HOST_READ_BUFFER;
    this.#small = 0;
  }

  /** The relay ended: the growth goes back to the budget, and the size stays as it is. */
  end(): void {
    if (this.#ended) return;
    this.release();
    this.#ended = true;
  }
}

/** @internal Bytes of {@link HOST_READ_GROWTH_BUDGET} the relays' read buffers use now. */
export function hostReadGrowth(): number {
  return grownBytes;
}

/**
 * A host socket's reads for the relay: `onread` (net's option) makes the socket read into the
 * current buffer, which stays current while the connection it is relayed to takes each chunk
 * whole, and grows while reads fill it (see {@link ReadSize}). A chunk the connection
 * keeps (its send buffer was full) takes its buffer with it until that write's callback, when
 * the buffer is kept for the next switch if it is still of the current size.
 */
class HostReads {
  #buffer: Buffer = Buffer.allocUnsafe(HOST_READ_BUFFER);
  readonly #free: Buffer[] = [];
  readonly size = new ReadSize();
  /**
   * Where each chunk goes; false stops the reads (the socket is paused). Attached right after
   * the socket is made, before any read can complete (reads complete on later turns).
   */
  #sink: (chunk: Buffer) => boolean = () => true;
  /** Buffers allocated for reads, the first one included. */
  allocated = 1;

  // net calls `buffer` again after each callback, for the buffer of the next read.
  readonly onread: net.OnReadOpts = {
    buffer: () => this.#buffer,
    callback: (n: number) => {
      const buffer = this.#buffer;
      const more = this.#sink(buffer.subarray(0, n));
      const size = this.size.next(n);
      if (size !== this.#buffer.length) {
        this.#free.length = 0;
        this.#buffer = this.#allocate(size);
      }
      return more;
    },
  };

  #allocate(size: number): Buffer {
    this.allocated++;
    return Buffer.allocUnsafe(size);
  }

  /** Sends every chunk to `sink`. */
  attach(sink: (chunk: Buffer) => boolean): void {
    this.#sink = sink;
  }

  /**
   * The current buffer's last chunk is still held by its target: later reads go to another
   * buffer. Returns the function to call once the target lets go of it.
   */
  lend(): () => void {
    const lent = this.#buffer;
    this.#buffer = this.#free.pop() ?? this.#allocate(lent.length);
    return () => {
      if (this.#free.length < HOST_READ_BUFFERS_KEPT && lent.length === this.#buffer.length) this.#free.push(lent);
    };
  }
}

/**
 * The host → inner direction for a socket reading through `reads`: each chunk is written to
 * `to`; one `to` still holds after the write (it did not take it whole) keeps its buffer, and
 * `from` is paused while `to` is full.
 */
function forwardReads(from: net.Socket, reads: HostReads, to: Duplex, count: (n: number) => void): void {
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  reads.attach((chunk) => {
    count(chunk.length);
    // A chunk `to` did not take whole keeps its buffer until this write's callback.
    let release: (() => void) | undefined;
    const more = to.write(chunk, () => release?.());
    if (to.writableLength > 0) release = reads.lend();
    if (!more && !waiting) {
      waiting = true;
      from.pause();
      to.once('drain', resume);
    }
    return !waiting;
  });
  from.once('end', () => {
    // Nothing more to read this way: its buffer's growth goes back to the budget.
    reads.size.end();
    to.end();
  });
}

/** A Morgana connection that can read into a buffer of ours ({@link TcpConnection.setOnRead}). */
interface ReadsInto extends Duplex {
  setOnRead(onread: { buffer: Buffer; callback: (nread: number) => unknown } | undefined): unknown;
}

function readsInto(stream: Duplex): stream is ReadsInto {
  return typeof (stream as Partial<ReadsInto>).setOnRead === 'function';
}

/**
 * The inner → host direction for a Morgana connection: it reads into one reused buffer
 * (`setOnRead`) whose chunks go to `to` (net copies a chunk into the kernel when the socket
 * takes it at once). When `to` keeps a chunk (the kernel's buffer is full, or the socket is
 * still connecting) the connection goes back to its paused stream, which leaves the rest in the
 * engine (its window closes), until that chunk's write is done: then what the stream took
 * meanwhile goes first, and the reused buffer takes over again. So `to` holds at most one chunk
 * from here, and never one the buffer's next read could overwrite.
 */
function forwardInto(from: ReadsInto, to: net.Socket, size: ReadSize, count: (n: number) => void, counted: { viaBuffer: number }): void {
  /** Writes `chunk`; false when `to` keeps it: `from` then waits for that write's callback. */
  const write = (chunk: Buffer): boolean => {
    count(chunk.length);
    let kept = false;
    to.write(chunk, () => {
      if (kept) resume();
    });
    if (to.writableLength === 0) return true;
    kept = true;
    return false;
  };
  const onread = {
    buffer: Buffer.allocUnsafe(HOST_READ_BUFFER),
    callback: (n: number) => {
      counted.viaBuffer += n;
      const buffer = onread.buffer;
      const kept = !write(buffer.subarray(0, n));
      // A new buffer for the next chunks (setOnRead reads `buffer` for each one); a chunk `to`
      // keeps keeps the old one.
      if (size.next(n) !== buffer.length) onread.buffer = Buffer.allocUnsafe(size.size);
      if (kept) pause();
    },
  };
  const pause = () => {
    from.setOnRead(undefined);
    from.pause();
  };
  const resume = () => {
    if (to.destroyed) return;
    // What the stream took meanwhile (fresh Buffers of its own) goes first, in order.
    for (let chunk = from.read() as Buffer | null; chunk !== null; chunk = from.read() as Buffer | null) {
      if (!write(chunk)) return pause();
    }
    from.setOnRead(onread);
  };
  from.once('end', () => {
    size.end();
    to.end();
  });
  resume();
}

/** One direction: `from`'s chunks written to `to`, `from` paused while `to` is full. */
function forward(from: Duplex, to: Duplex, count: (n: number) => void): void {
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!to.write(chunk) && !waiting) {
      waiting = true;
      from.pause();
      to.once('drain', resume);
    }
  });
  // Half-close: the end of one side is passed on as a FIN, and the other direction still flows.
  from.once('end', () => to.end());
}

/**
 * Relays `host` (a socket the forward accepted) and `inner` (the gateway's connection to the
 * unikernel) both ways until both have ended; an error or a close of either destroys both.
 * Both should allow half-open connections (`allowHalfOpen`), so that either side's FIN is passed
 * on while the other direction keeps flowing.
 */
export function relayTcp(host: Duplex, inner: Duplex): TcpRelay {
  return startRelay(host, inner, undefined);
}

/** A relay and the host socket it reads. */
export interface HostRelay {
  relay: TcpRelay;
  /** The host socket (for an accepted one, the socket that took over its descriptor). */
  host: net.Socket;
}

/**
 * Relays a socket accepted by a server made with `pauseOnConnect: true` (nothing read from it
 * yet) and `inner`, as {@link relayTcp} does, reading the host side into a reused buffer: the
 * accepted socket's descriptor is taken over by a new `net.Socket` made with `onread` (net's
 * servers cannot give their sockets that option), and the accepted one is dropped without
 * closing it. A socket that already read something (or has no descriptor) is relayed as it is.
 * The host socket returned is the one to watch and destroy; note that the server no longer
 * counts it (`server.close()` does not wait for it).
 */
export function relayAccepted(accepted: net.Socket, inner: Duplex): HostRelay {
  const slot = accepted as unknown as { _handle?: object | null };
  const handle = slot._handle;
  if (!handle || accepted.destroyed || accepted.readableLength > 0 || accepted.bytesRead > 0) return { relay: relayTcp(accepted, inner), host: accepted };
  const reads = new HostReads();
  slot._handle = null;
  accepted.destroy();
  const host = new net.Socket({ handle, allowHalfOpen: true, onread: reads.onread } as net.SocketConstructorOpts);
  return { relay: startRelay(host, inner, reads), host };
}

/**
 * Connects a host socket to `options` (its `onread` and `allowHalfOpen` are the relay's) and
 * relays it with `inner`, as {@link relayTcp} does, reading into a reused buffer.
 */
export function relayConnected(options: net.TcpNetConnectOpts, inner: Duplex): HostRelay {
  const reads = new HostReads();
  const host = net.connect({ ...options, allowHalfOpen: true, onread: reads.onread });
  return { relay: startRelay(host, inner, reads), host };
}

function startRelay(host: Duplex, inner: Duplex, reads: HostReads | undefined): TcpRelay {
  const outwardCounts = { viaBuffer: 0 };
  const relay = {
    inward: 0,
    outward: 0,
    buffered: () => host.readableLength + host.writableLength + inner.readableLength + inner.writableLength,
    get hostReadBuffers() {
      return reads?.allocated ?? 0;
    },
    get outwardViaBuffer() {
      return outwardCounts.viaBuffer;
    },
  };
  if (reads) forwardReads(host as net.Socket, reads, inner, (n) => (relay.inward += n));
  else forward(host, inner, (n) => (relay.inward += n));
  const outwardSize = new ReadSize();
  if (reads && readsInto(inner)) forwardInto(inner, host as net.Socket, outwardSize, (n) => (relay.outward += n), outwardCounts);
  else forward(inner, host, (n) => (relay.outward += n));
  // The read buffers' growth goes back to the shared budget when their direction ends, or at the
  // latest once the host side is gone (an error or a reset ends no direction).
  host.once('close', () => {
    reads?.size.end();
    outwardSize.end();
  });
  const fail = () => {
    host.destroy();
    inner.destroy();
  };
  // Once one side is closed, what the other still reads has nowhere to go: the other is
  // destroyed, after delivering what it was already given when its end was passed on to it.
  const closed = (other: Duplex) => () => {
    if (other.writableEnded && !other.writableFinished) other.once('finish', () => other.destroy());
    else other.destroy();
  };
  host.on('error', fail).on('close', closed(inner));
  inner.on('error', fail).on('close', closed(host));
  host.resume();
  inner.resume();
  return relay;
}
