/**
 * `NetDevice.writeFrom` on a TAP (issue 14): a stack sends its TCP frames straight from its
 * output buffer (one `writev` with the virtio header in front), without the copy into the
 * transmit ring that `write(size, fill)` makes. Checked against a kernel socket in a namespace:
 * the bytes arrive intact (SHA-256), super-frames go that way, and the caller's buffer is left
 * exactly as it was (the partial checksum the kernel needs is put there only during the call).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type FrameOffload, createStack, openTap, tapNetDevice } from 'morgana';
import { native } from '../ts/native.js';
import { kernelTest, withNetns } from './helpers/netns.js';

/** The native handles of the TAP devices opened from now on (each lends its slab once, at open). */
const handles: Array<{ stats(): { txFrames: number; txInline: number; txQueued: number } }> = [];
const proto = (native as unknown as { TapHandle: { prototype: { txSlab(this: unknown): unknown } } }).TapHandle.prototype;
const txSlab = proto.txSlab;
proto.txSlab = function (this: unknown) {
  handles.push(this as (typeof handles)[number]);
  return txSlab.call(this);
};

const KERNEL = '10.89.7.1';
const MORGANA = '10.89.7.2';
const PORT = 5007;

kernelTest(
  test,
  'writeFrom: a stack on an offload TAP sends TCP super-frames from its own buffer, unchanged, and 16 MiB reach a kernel socket intact',
  async (t) => {
    await withNetns(async (ns) => {
      const net = tapNetDevice(await openTap({ name: 'mtapw0', netns: ns.name, vnetHdr: true }));
      await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtapw0');
      await ns.ip('link', 'set', 'mtapw0', 'up');
      const sendFrom = net.writeFrom?.bind(net);
      t.truthy(sendFrom, 'the TAP device sends from the caller’s buffer');
      let calls = 0;
      let superFrames = 0;
      let changed = 0;
      net.writeFrom = (source: Buffer, at: number, length: number, offload?: FrameOffload) => {
        const before = Buffer.from(source.subarray(at, at + length));
        calls++;
        if (offload && offload.gsoType !== 0) superFrames++;
        sendFrom!(source, at, length, offload);
        if (!before.equals(source.subarray(at, at + length))) changed++;
      };
      const server = ns.spawn('python3', [
        '-c',
        `import hashlib, socket\nl=socket.socket()\nl.bind(('${KERNEL}', ${PORT}))\nl.listen(1)\nprint('ready', flush=True)\nc,_=l.accept()\nh=hashlib.sha256()\nn=0\nwhile True:\n  b=c.recv(1<<20)\n  if not b: break\n  h.update(b)\n  n+=len(b)\nprint(n, h.hexdigest(), flush=True)`,
      ]);
      let out = '';
      server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const stack = await createStack({ net, ipv4: `${MORGANA}/24` });
      try {
        while (!out.includes('ready')) await once(server.stdout!, 'data');
        const data = randomBytes(16 << 20);
        const conn = await stack.tcp.connect(KERNEL, PORT);
        conn.end(data);
        const deadline = Date.now() + 60_000;
        while (!/\d+ [0-9a-f]{64}/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const [length, sha] = out.trim().split('\n').at(-1)!.split(' ');
        t.is(Number(length), data.length);
        t.is(sha, createHash('sha256').update(data).digest('hex'));
        t.log(`${calls} frames through writeFrom, ${superFrames} super-frames; TAP stats ${JSON.stringify(net.stats())}`);
        t.true(superFrames > 0, 'TCP super-frames went through writeFrom');
        t.is(changed, 0, "the caller's bytes are as they were after every call");
        t.is(net.stats().txDropped, 0);
      } finally {
        await stack.close();
        server.kill();
      }
    });
  },
  ['python3'],
);

kernelTest(test, 'writeFrom: a turn writes its first 4 MiB on the JS thread (no thread hop, no copy), the rest through the ring, all in order', async (t) => {
  await withNetns(async (ns) => {
    const tap = await openTap({ name: 'mtapw1', netns: ns.name, mtu: 9000 });
    const handle = handles.at(-1)!;
    await ns.ip('link', 'set', 'mtapw1', 'up');
    try {
      const FRAME = 9014;
      const N = 600;
      const frames = Buffer.alloc(FRAME * N);
      for (let i = 0; i < N; i++) {
        frames.fill(0xff, i * FRAME, i * FRAME + 6); // broadcast
        frames.writeUInt16BE(0x88b5, i * FRAME + 12); // local experimental EtherType: the kernel drops it quietly
        frames.writeUInt32BE(i, i * FRAME + 14);
      }
      const before = handle.stats();
      for (let i = 0; i < N; i++) tap.writeFrom!(frames, i * FRAME, FRAME);
      const inline = handle.stats().txInline - before.txInline;
      // The byte budget is checked before each frame: the frame that crosses 4 MiB still goes inline.
      t.is(inline, Math.ceil((4 << 20) / FRAME), 'inline until 4 MiB were written in this turn, then queued');
      const deadline = Date.now() + 20_000;
      // Counted as a write starts; the ring is empty once the last one returned.
      while ((handle.stats().txFrames - before.txFrames < N || handle.stats().txQueued > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      t.is(handle.stats().txFrames - before.txFrames, N, 'the queued rest is written by the thread');
      t.is(tap.stats().txDropped, 0);
      // A new turn: inline again.
      await new Promise((r) => setImmediate(r));
      const next = handle.stats();
      tap.writeFrom!(frames, 0, FRAME);
      t.is(handle.stats().txInline - next.txInline, 1);
      const rx = Number((await ns.exec('cat', ['/sys/class/net/mtapw1/statistics/rx_packets'])).stdout);
      t.is(rx, N + 1, 'the kernel received every frame');
    } finally {
      await tap.close();
    }
  });
});
