/**
 * TCP kernel interop over TAP (issue 5): a Morgana stack on a TAP device inside a network
 * namespace the test creates, with Linux's TCP as the peer (curl, python3's http.server), a
 * tshark judgement of a captured session, and a lossy run where loss and reordering are injected
 * by a wrapper NET device in Morgana (`tc netem` is not available on this kernel).
 *
 * Payloads come from AES-128-CTR over zeros with a fixed key: Node generates them as a stream,
 * and the kernel side generates the same bytes with `openssl enc`, so nothing is held twice.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { NetDevice, Stack, TcpConnection } from 'morgana';
import { expectedSha, generated, generatorShell } from './helpers/generated.js';
import {
  MIB,
  type TapStackSetup,
  connectWhenListening,
  curlDownload,
  curlUpload,
  httpGetOver,
  serveHttp,
  synOptions,
  tsharkProblems,
  withTapStack as withTap,
} from './helpers/kernel-tcp.js';
import { type Netns, kernelTest } from './helpers/netns.js';
import { digest } from './helpers/streams.js';

const KERNEL = '10.88.0.1';
const MORGANA = '10.88.0.2';
const HTTP = { url: `http://${MORGANA}`, flags: '' };

/** Mulberry32: a small seeded generator for the lossy device. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface LossyStats {
  droppedRx: number;
  droppedTx: number;
  reorderedRx: number;
  reorderedTx: number;
}

/**
 * Wraps a NET device: drops `loss` of the frames in each direction and holds back `reorder` of
 * them until the next frame in that direction has passed (a swap of neighbours), or for at most
 * 2 ms when no frame follows (a held ACK must not wait for traffic it is holding up).
 */
function lossy(inner: NetDevice, loss: number, reorder: number, seed: number): NetDevice & { lossStats(): LossyStats } {
  const random = seeded(seed);
  const counts: LossyStats = { droppedRx: 0, droppedTx: 0, reorderedRx: 0, reorderedTx: 0 };
  let heldRx: Buffer | undefined;
  let heldTx: Buffer | undefined;
  let rxTimer: NodeJS.Timeout | undefined;
  let txTimer: NodeJS.Timeout | undefined;
  let handler: ((frame: Buffer) => void) | undefined;
  let closed = false;
  const releaseTx = () => {
    clearTimeout(txTimer);
    const frame = heldTx;
    heldTx = undefined;
    if (frame && !closed) inner.write(frame.length, (b) => frame.copy(b));
  };
  const releaseRx = () => {
    clearTimeout(rxTimer);
    const frame = heldRx;
    heldRx = undefined;
    if (frame && !closed) handler?.(frame);
  };
  return {
    get mac() {
      return inner.mac;
    },
    get mtu() {
      return inner.mtu;
    },
    write(size, fill) {
      const r = random();
      if (r < loss) {
        counts.droppedTx++;
        fill(Buffer.allocUnsafe(size));
        return;
      }
      if (r < loss + reorder && !heldTx) {
        counts.reorderedTx++;
        const b = Buffer.allocUnsafe(size);
        heldTx = b.subarray(0, fill(b));
        txTimer = setTimeout(releaseTx, 2);
        return;
      }
      inner.write(size, fill);
      releaseTx();
    },
    listen(h) {
      handler = h;
      inner.listen((frame) => {
        const r = random();
        if (r < loss) {
          counts.droppedRx++;
          return;
        }
        if (r < loss + reorder && !heldRx) {
          counts.reorderedRx++;
          heldRx = frame;
          rxTimer = setTimeout(releaseRx, 2);
          return;
        }
        h(frame);
        releaseRx();
      });
    },
    stats: () => inner.stats(),
    close: () => {
      closed = true;
      clearTimeout(rxTimer);
      clearTimeout(txTimer);
      return inner.close();
    },
    lossStats: () => ({ ...counts }),
  };
}

/** Runs `body` with a stack on a TAP whose kernel side is KERNEL/24, in a fresh namespace. */
function withTapStack(setup: Pick<TapStackSetup, 'pcap' | 'wrap'>, body: (stack: Stack, ns: Netns) => Promise<void>): Promise<void> {
  const kernel = (ns: Netns) => ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtap1');
  return withTap({ ...setup, name: 'mtap1', kernel, stack: { ipv4: `${MORGANA}/24`, gateway: KERNEL } }, body);
}

kernelTest(test, 'curl downloads and uploads 100 MiB from/to a Morgana http.Server, SHA-256 equal', async (t) => {
  t.timeout(240_000);
  const size = 100 * MIB;
  const expected = await expectedSha(size);
  await withTapStack({}, async (stack, ns) => {
    const server = serveHttp(stack, 80);
    try {
      const down = await curlDownload(ns, HTTP, size, 100_000);
      t.is(down.sha, expected, 'download intact');
      const up = await curlUpload(ns, HTTP, size, 100_000);
      t.is(up.answer, `${expected} ${size}`, 'upload intact');
      const stats = stack.tcp.stats();
      t.is(stats.badChecksum, 0);
      t.log(`100 MiB: download ${down.mbps.toFixed(1)} MB/s, upload ${up.mbps.toFixed(1)} MB/s; retransmits ${stats.retransmits}`);
    } finally {
      server.close();
    }
  });
}, ['curl', 'openssl']);

kernelTest(test, 'a Morgana client fetches 32 MiB from python3 -m http.server in the namespace', async (t) => {
  t.timeout(120_000);
  const size = 32 * MIB;
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-tcp-tap-'));
  try {
    await pipeline(generated(size), createWriteStream(path.join(dir, 'blob')));
    const expected = await expectedSha(size);
    await withTapStack({}, async (stack, ns) => {
      ns.spawn('python3', ['-m', 'http.server', '8000', '--bind', KERNEL, '--directory', dir], { stdio: 'ignore' });
      // Until python listens, the kernel answers RST: retry for a while.
      const conn = await connectWhenListening(stack, KERNEL, 8000);
      const started = Date.now();
      const got = await httpGetOver(conn, KERNEL, 8000, '/blob');
      const seconds = (Date.now() - started) / 1000;
      t.is(got.status, 200);
      t.is(got.length, size);
      t.is(got.sha, expected);
      t.log(`32 MiB kernel → Morgana client: ${(size / 1e6 / seconds).toFixed(1)} MB/s`);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, ['python3']);

kernelTest(test, 'tshark: a 2 MiB session each way has good checksums, no malformed segments, MSS and window scaling', async (t) => {
  t.timeout(60_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-tcp-tap-'));
  const pcap = path.join(dir, 'session.pcap');
  try {
    const size = 2 * MIB;
    const expected = await expectedSha(size);
    await withTapStack({ pcap }, async (stack, ns) => {
      const server = serveHttp(stack, 80);
      try {
        t.is((await curlDownload(ns, HTTP, size, 20_000)).sha, expected);
        t.is((await curlUpload(ns, HTTP, size, 20_000)).answer, `${expected} ${size}`);
      } finally {
        server.close();
      }
      // And an active open: a Morgana client reads 2 MiB from socat in the namespace.
      ns.spawn('socat', ['-U', `TCP-LISTEN:9000,bind=${KERNEL},reuseaddr`, `SYSTEM:${generatorShell(size)}`], { stdio: 'ignore' });
      const got = await digest(await connectWhenListening(stack, KERNEL, 9000));
      t.deepEqual(got, { sha: expected, length: size }, 'socat → Morgana intact');
    });
    t.is(tsharkProblems(pcap, ['ip', 'tcp']), '', 'tshark finds no malformed segments or bad checksums');
    const syns = synOptions(pcap, 'ip.src');
    // Three handshakes (a refused first attempt at socat may add a SYN of ours).
    t.true(syns.length >= 6, `three handshakes captured: ${JSON.stringify(syns)}`);
    for (const syn of syns) {
      // Both sides offer MSS = MTU − 40, window scaling, timestamps and SACK, and each SYN-ACK
      // answers them (RFC 7323 §2.2: a SYN-ACK carries window scaling only if the SYN did).
      t.like(syn, { mss: 1460, ts: true, sack: true }, JSON.stringify(syn));
      t.true(syn.wscale >= 0 && syn.wscale <= 14, `window scale in ${JSON.stringify(syn)}`);
    }
    t.is(syns.filter((s) => s.src === MORGANA && s.synAck).length, 2, 'Morgana answered the two curls');
    t.true(syns.some((s) => s.src === MORGANA && !s.synAck), 'and opened one');
    t.is(syns.filter((s) => s.src === KERNEL && s.synAck).length, 1, 'which socat accepted');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, ['curl', 'openssl', 'tshark']);

kernelTest(test, '20 MiB curl transfers each way with 1 % loss and 1 % reordering injected in Morgana', async (t) => {
  t.timeout(240_000);
  const size = 20 * MIB;
  const expected = await expectedSha(size);
  let device: ReturnType<typeof lossy> | undefined;
  await withTapStack({ wrap: (tap) => (device = lossy(tap, 0.01, 0.01, 0x5eed)) }, async (stack, ns) => {
    const server = serveHttp(stack, 80);
    try {
      const down = await curlDownload(ns, HTTP, size, 100_000);
      t.is(down.sha, expected, 'download intact');
      const up = await curlUpload(ns, HTTP, size, 100_000);
      t.is(up.answer, `${expected} ${size}`, 'upload intact');
      const loss = device!.lossStats();
      t.true(loss.droppedRx > 0 && loss.droppedTx > 0 && loss.reorderedRx > 0 && loss.reorderedTx > 0, JSON.stringify(loss));
      const stats = stack.tcp.stats();
      t.true(stats.retransmits > 0);
      t.is(stats.outOfOrderDropped, 0, 'out-of-order data is kept while the window allows');
      t.log(
        `lossy 20 MiB: download ${down.mbps.toFixed(1)} MB/s, upload ${up.mbps.toFixed(1)} MB/s; ${JSON.stringify(loss)};`,
        `retransmits ${stats.retransmits} (fast ${stats.fastRetransmits}, tail-loss probes ${stats.tailLossProbes}, timeouts ${stats.timeouts}); bytes in ${stats.bytesIn}`,
      );
    } finally {
      server.close();
    }
  });
}, ['curl', 'openssl']);

kernelTest(test, 'setOnRead: 64 MiB from the kernel read into one reused buffer, then through the stream again, SHA-256 equal', async (t) => {
  t.timeout(120_000);
  const size = 64 * MIB;
  const switchAt = 40 * MIB;
  const expected = await expectedSha(size);
  await withTapStack({}, async (stack, ns) => {
    const hash = createHash('sha256');
    let viaBuffer = 0;
    let viaStream = 0;
    const buffers = new Set<Buffer>();
    const received = new Promise<TcpConnection>((resolve, reject) => {
      const server = stack.tcp.listen(9000, (conn) => {
        server.close();
        // An odd length, so reads end mid-segment.
        const onread = {
          buffer: Buffer.alloc(10_007),
          callback: (n: number, buffer: Buffer) => {
            buffers.add(buffer);
            hash.update(buffer.subarray(0, n));
            viaBuffer += n;
            // Back to the stream part-way: the rest must follow in order, nothing lost or doubled.
            if (viaBuffer >= switchAt) conn.setOnRead(undefined).on('data', (chunk: Buffer) => {
              hash.update(chunk);
              viaStream += chunk.length;
            });
          },
        };
        conn.setOnRead(onread);
        conn.on('end', () => resolve(conn));
        conn.on('error', reject);
      });
    });
    const sender = ns.exec('bash', ['-c', `${generatorShell(size)} > /dev/tcp/${MORGANA}/9000`]);
    const conn = await received;
    await sender;
    t.is(hash.digest('hex'), expected, 'data intact');
    t.is(viaBuffer + viaStream, size);
    t.true(viaBuffer >= switchAt && viaStream > 0, `${viaBuffer} B through the buffer, ${viaStream} B through the stream`);
    t.is(buffers.size, 1, 'one buffer for every chunk');
    t.is(conn.bytesRead, size);
    t.throws(() => conn.setOnRead({ buffer: Buffer.alloc(0), callback: () => {} }), { code: 'ERR_INVALID_ARG_TYPE' });
  });
}, ['openssl']);
