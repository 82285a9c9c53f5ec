/**
 * The IP send path's state for packets built in Rust (`crates/morgana-net/src/ip_out.rs`), one
 * per stack, owned by the IPv4 layer and shared with IPv6: the IPv4 identification counter every
 * packet of the stack takes, and the neighbour entries of established flows. An IP layer
 * installs an entry for a destination once its route and next hop's MAC are known; the entry
 * lives {@link NEIGHBOUR_REFRESH_MS} at most (then the next packet takes the general path, which
 * re-checks the route, ARP or neighbour discovery and the path MTU, and installs it again), and
 * every entry is withdrawn when an address changes. The TCP engine builds whole frames for
 * destinations with an entry and hands them to {@link IpOutput.sendFrame}.
 * @module
 */
import { native } from '../native.js';
import type { Ethernet } from './ethernet.js';

/** How long an installed neighbour entry is used before the general path re-checks it (ms). */
export const NEIGHBOUR_REFRESH_MS = 1_000;

/**
 * The largest IP packet of a TCP super-frame `eth`'s device takes for `family` (TSO), or 0.
 * Super-frames leave with complete checksums unless the device also completes partial ones.
 */
export function tsoMax(eth: Ethernet, family: 4 | 6): number {
  const o = eth.net.offloads;
  if (!o || !(family === 4 ? o.tso4 : o.tso6)) return 0;
  return Math.min((o.maxFrame ?? 14 + 65_535) - 14, 65_535 + (family === 6 ? 40 : 0));
}

/**
 * Whether `eth`'s device completes TCP checksums left partial (`NEEDS_CSUM`): a switch port
 * or a `virtio_net_hdr` TAP with checksum offload. The TCP engine then writes only the
 * pseudo-header sum instead of summing every segment, over IPv4 and IPv6 alike: a local
 * receiver takes the device's word for such a checksum (`checksumVerified` on its datagrams).
 */
export function partialChecksum(eth: Ethernet): boolean {
  return eth.net.offloads?.checksum === true;
}

/** IPv4 identifications taken from the native counter at a time. */
const ID_BLOCK = 64;

/** The native send path. */
export type NativeIpOutput = InstanceType<typeof native.NativeIpOutput>;

/** The IP send path's Rust state of one stack, and the interfaces its frames leave through. */
export class IpOutput {
  /** @internal The native object the TCP engine writes frames through. */
  readonly native: NativeIpOutput;
  readonly #devices: Ethernet[] = [];
  readonly #macs = Buffer.alloc(12);

  constructor(randomUint32: () => number, ttl: number, hopLimit: number) {
    this.native = new native.NativeIpOutput(randomUint32() & 0xffff, ttl, hopLimit);
  }

  /** Identifications reserved from the native counter and not yet handed out. */
  #idNext = 0;
  #idLeft = 0;

  /**
   * The next IPv4 identification. Taken from the one counter of the stack (in Rust) in blocks
   * of {@link ID_BLOCK}, so a datagram built in TypeScript costs no native call.
   */
  nextIdentification(): number {
    if (this.#idLeft === 0) {
      this.#idNext = this.native.reserveIdentifications(ID_BLOCK);
      this.#idLeft = ID_BLOCK;
    }
    this.#idLeft--;
    const id = this.#idNext;
    this.#idNext = (id + 1) & 0xffff;
    return id;
  }

  /** The Ethernet layer of interface number `index` (as installed). */
  device(index: number): Ethernet | undefined {
    return this.#devices[index];
  }

  #index(eth: Ethernet): number {
    let i = this.#devices.indexOf(eth);
    if (i < 0) i = this.#devices.push(eth) - 1;
    return i;
  }

  /**
   * Installs the entry for IPv4 `dst`: frames leave `eth` for `mac`, up to `mtu` bytes of IP, or
   * as TCP super-frames when the device accepts them ({@link tsoMax}), with partial checksums
   * when it completes them ({@link partialChecksum}).
   */
  install4(dst: number, eth: Ethernet, mac: Buffer, mtu: number, expiresAt: number): void {
    this.#fill(eth, mac);
    this.native.setNeighbour4(dst, this.#index(eth), this.#macs, mtu, expiresAt, tsoMax(eth, 4), partialChecksum(eth));
  }

  /** Installs the entry for IPv6 `dst` (16 bytes), as {@link install4}. */
  install6(dst: Uint8Array, eth: Ethernet, mac: Buffer, mtu: number, expiresAt: number): void {
    this.#fill(eth, mac);
    this.native.setNeighbour6(dst, this.#index(eth), this.#macs, mtu, expiresAt, tsoMax(eth, 6), partialChecksum(eth));
  }

  #fill(eth: Ethernet, mac: Buffer): void {
    mac.copy(this.#macs, 0, 0, 6);
    eth.mac.copy(this.#macs, 6, 0, 6);
  }

  /** Withdraws every entry (an address, route or neighbour changed). */
  clear(): void {
    this.native.clear();
  }

  /** IPv4 and IPv6 packets whose headers were written in Rust. */
  sent(): { v4: number; v6: number } {
    const [v4 = 0, v6 = 0] = this.native.sent();
    return { v4, v6 };
  }
}
