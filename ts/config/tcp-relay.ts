/**
 * The byte relay between a host socket and a connection of the vnet gateway's stack, behind
 * every TCP `--forward` of the `vnet` target.
 *
 * Each chunk the host socket reads goes straight into the Morgana connection (whose `write`
 * copies it once, into the TCP engine's send buffer), and each chunk the connection receives
 * straight to the host socket (handed to the kernel without a copy). A side whose writes are not
 * taken pauses the other side's reads until it drains, so what the relay holds stays bounded
 * whatever the two peers do: see {@link TcpRelay.buffered}.
 * @module
 */
import type { Duplex } from 'node:stream';

/** A running relay; it ends by itself when both sides have finished or one fails. */
export interface TcpRelay {
  /**
   * Bytes the relay's two streams hold, both directions together: what each has read and not
   * yet handed on, and what each has been given and not yet passed to its transport. Pausing
   * the reading side when the other is full bounds it by about two chunks (64 KiB each) plus
   * the two streams' high-water marks per direction; the TCP engine's send buffer and the
   * kernel's socket buffers come on top of it, bounded by their own sizes.
   */
  buffered(): number;
  /** Bytes relayed from the host socket to the inner connection. */
  readonly inward: number;
  /** Bytes relayed from the inner connection to the host socket. */
  readonly outward: number;
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
  const relay = {
    inward: 0,
    outward: 0,
    buffered: () => host.readableLength + host.writableLength + inner.readableLength + inner.writableLength,
  };
  forward(host, inner, (n) => (relay.inward += n));
  forward(inner, host, (n) => (relay.outward += n));
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
