/**
 * Receive steering (issue 14, one crossing per batch): a device that receives in batches (a TAP)
 * shows each batch to the stack first (`NetDevice.steerReceive`), and the TCP segments for this
 * host go into the engine in one call; everything else goes through the layers frame by frame.
 * `BatchingDevice` here receives like a TAP (frames back to back, with a `virtio_net_hdr` in
 * front when `framing` is 12) from a switch port, so the stack's side can be checked against
 * what it must keep: data intact, the layers' counters, the offload metadata judged as the IP
 * layer judges it, captures seeing every frame. The TAP specs run the same path against the
 * kernel.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import {
  DATA_VALID,
  type FrameFill,
  type FrameHandler,
  type FrameOffload,
  NEEDS_CSUM,
  type NetDevice,
  type NetOffloads,
  type NetStats,
  type ReceiveBatch,
  type ReceiveSteer,
  type Stack,
  VirtualSwitch,
  createStack,
  writeVirtioNetHdr,
} from 'morgana';
import { FAMILY, OFFLOADS, exchange, injectWrongChecksumSyn } from './helpers/offload.js';
import { collect, writeAll } from './helpers/streams.js';

const MIB = 1 << 20;

/** A switch port that delivers what it receives in batches, as a TAP does, and shows each batch to a steer first. */
class BatchingDevice implements NetDevice {
  readonly mac: string;
  readonly mtu: number;
  readonly offloads: NetOffloads | undefined;
  /** Frames the steer took, frames delivered one by one, batches. */
  steered = 0;
  delivered = 0;
  batches = 0;
  readonly #inner: NetDevice;
  readonly #framing: 0 | 12;
  #handler: FrameHandler | undefined;
  #steer: ReceiveSteer | undefined;
  #queue: Array<{ frame: Buffer; offload?: FrameOffload }> = [];

  constructor(inner: NetDevice, framing: 0 | 12) {
    this.#inner = inner;
    this.#framing = framing;
    this.mac = inner.mac;
    this.mtu = inner.mtu;
    this.offloads = inner.offloads;
    inner.listen((frame, offload) => {
      if (this.#queue.length === 0) setImmediate(() => this.#deliver());
      this.#queue.push({ frame: Buffer.from(frame), offload });
    });
  }

  #deliver(): void {
    const queue = this.#queue;
    this.#queue = [];
    const framing = this.#framing;
    const frames = Buffer.alloc(queue.reduce((n, q) => n + framing + q.frame.length, 0));
    const lengths = new Uint32Array(queue.length);
    let at = 0;
    queue.forEach(({ frame, offload }, i) => {
      if (framing === 12) {
        const o = offload ?? { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
        writeVirtioNetHdr(frames, o, at);
      }
      frame.copy(frames, at + framing);
      lengths[i] = framing + frame.length;
      at += lengths[i]!;
    });
    const batch: ReceiveBatch = { frames, lengths, count: queue.length, framing, taken: new Uint8Array(queue.length), counts: new Uint32Array(3) };
    this.batches++;
    if (this.#steer && this.#handler) this.#steer(batch);
    queue.forEach(({ frame, offload }, i) => {
      if (batch.counts[0]! > 0 && batch.taken[i] === 1) this.steered++;
      else {
        this.delivered++;
        this.#handler?.(frame, offload);
      }
    });
  }

  write(size: number, fill: FrameFill, offload?: FrameOffload): void {
    this.#inner.write(size, fill, offload);
  }

  listen(handler: FrameHandler): void {
    this.#handler = handler;
  }

  steerReceive(steer: ReceiveSteer | undefined): void {
    this.#steer = steer;
  }

  stats(): NetStats {
    return this.#inner.stats();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

async function pair(t: ExecutionContext, framing: 0 | 12, family: 4 | 6 | 'both' = 4) {
  const sw = new VirtualSwitch();
  // Without a virtio header a batch carries no offload metadata: such a port sends only real
  // frames with complete checksums, as a TAP without the header receives them.
  const offloads = framing === 12 ? OFFLOADS : undefined;
  const address = (side: 'a' | 'b') => ({
    ...(family !== 6 && { ipv4: `${FAMILY[4][side]}/24` }),
    ...(family !== 4 && { ipv6: { address: [`${FAMILY[6][side]}/64`], dadTransmits: 0 } }),
  });
  const a = await createStack({ net: sw.connect({ offloads }), ...address('a') });
  const device = new BatchingDevice(sw.connect({ offloads }), framing);
  const b = await createStack({ net: device, ...address('b') });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  return { sw, a, b, device };
}

for (const family of [4, 6] as const) {
  for (const framing of [0, 12] as const) {
    test(`IPv${family}, ${framing ? 'with a virtio header (offloads on)' : 'plain frames'}: TCP segments go in whole batches, 8 MiB each way intact, every layer's counters add up`, async (t) => {
      t.timeout(120_000);
      const { a, b, device } = await pair(t, framing, family);
      await exchange(t, a, b, 8 * MIB, FAMILY[family].b);
      const eth = b.interfaces[0]!.eth.stats();
      const ip = family === 4 ? b.ipv4.stats() : b.ipv6!.stats();
      t.true(device.steered > 100, `the steer took ${device.steered} frames`);
      t.true(device.delivered > 0, 'ARP or neighbour discovery still went frame by frame');
      t.is(eth.rxFrames, device.steered + device.delivered, 'Ethernet counted every frame it was given, steered or not');
      t.true(ip.received >= device.steered && ip.delivered >= device.steered);
      t.is(b.tcp.stats().badChecksum, 0);
      t.log(`${device.steered} frames steered, ${device.delivered} frame by frame, ${device.batches} batches`);
    });
  }
}

test('a dual-stack interface: the IPv4 and IPv6 steers share each batch, and both transfers arrive intact', async (t) => {
  t.timeout(120_000);
  const { a, b, device } = await pair(t, 12, 'both');
  await Promise.all([exchange(t, a, b, 4 * MIB, FAMILY[4].b), exchange6(t, a, b)]);
  t.true(device.steered > 50);
  t.is(b.interfaces[0]!.eth.stats().rxFrames, device.steered + device.delivered);
  t.true(b.ipv4.stats().delivered > 0 && b.ipv6!.stats().delivered > 0);
  t.is(b.tcp.stats().badChecksum, 0);
});

/** 4 MiB over IPv6 on port 7002 while `exchange` runs over IPv4 on 7000. */
async function exchange6(t: ExecutionContext, a: Stack, b: Stack): Promise<void> {
  const data = randomBytes(4 * MIB);
  const got = new Promise<Buffer>((resolve) => {
    const listener = b.tcp.listen(7002, (conn) => {
      listener.close();
      resolve(collect(conn));
    });
  });
  const client = await a.tcp.connect(FAMILY[6].b, 7002);
  await writeAll(client, data);
  client.end();
  t.true((await got).equals(data), 'the IPv6 transfer arrived intact');
}

test('a capture on the interface sees every frame: while it watches, nothing is steered past it', async (t) => {
  t.timeout(120_000);
  const { a, b, device } = await pair(t, 12);
  let seen = 0;
  const stop = b.interfaces[0]!.eth.mirror((_frame, direction) => {
    if (direction === 'in') seen++;
  });
  await exchange(t, a, b, 1 * MIB, '10.0.0.2');
  t.is(device.steered, 0);
  t.is(seen, device.delivered, 'the capture saw every frame the device received');
  stop();
  await exchange(t, a, b, 1 * MIB, '10.0.0.2');
  t.true(device.steered > 0, 'steering resumes once the capture stops');
});

// The steer judges a device's offload word as the IP layer does: a partial checksum whose
// csumStart is not at the TCP header vouches for nothing (the engine sums the segment and finds
// the wrong checksum), a fragment is never taken, and DATA_VALID is trusted.
for (const kind of ['stale csumStart', 'fragments', 'DATA_VALID'] as const) {
  test(`a SYN with a wrong TCP checksum, ${kind}: judged as the per-frame path judges it`, async (t) => {
    const { sw, b, device } = await pair(t, 12);
    const listener = b.tcp.listen(7000, () => {});
    t.teardown(() => listener.close());
    const offload: FrameOffload =
      kind === 'stale csumStart'
        ? { flags: NEEDS_CSUM, gsoType: 0, gsoSize: 0, hdrLen: 14 + 20 + 20, csumStart: 14 + 16, csumOffset: 16 }
        : { flags: DATA_VALID, gsoType: 0, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0 };
    injectWrongChecksumSyn(sw.connect({ offloads: OFFLOADS }), b.interfaces[0]!.eth.mac, '10.0.0.2', kind === 'fragments', () => offload);
    const settled = () => b.tcp.stats().badChecksum > 0 || b.tcp.stats().segmentsIn > 0;
    for (let i = 0; i < 100 && !settled(); i++) await new Promise((r) => setTimeout(r, 10));
    const stats = b.tcp.stats();
    if (kind === 'fragments') {
      t.is(device.steered, 0, 'fragments go to the reassembler');
      t.is(b.ipv4.stats().reassembly.reassembled, 1);
      t.is(stats.badChecksum, 1, "the fragments' word does not cover the reassembled segment");
    } else if (kind === 'stale csumStart') {
      t.is(device.steered, 1);
      t.is(stats.badChecksum, 1, 'the segment was summed, its wrong checksum found');
    } else {
      t.is(device.steered, 1);
      t.is(stats.badChecksum, 0, "the device's word was taken");
      t.is(stats.segmentsIn, 1);
    }
  });
}
