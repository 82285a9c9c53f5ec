/**
 * A Morgana router between two kernel hosts, each in a namespace of its own behind a plain TAP
 * (no `virtio_net_hdr`, so the TAPs coalesce received TCP segments into super-frames, as they do
 * by default). The router must forward what the kernel sent as the segments it was: cut again
 * for the outgoing link, with no ICMP "fragmentation needed" for a super-frame the sender never
 * sent, and the bytes intact end to end.
 */
import test from 'ava';
import { VirtualSwitch, createStack, openTap, tapNetDevice } from 'morgana';
import { expectedSha, generatorShell } from './helpers/generated.js';
import { MIB } from './helpers/kernel-tcp.js';
import { createNetns, kernelTest } from './helpers/netns.js';

kernelTest(test, 'kernel → Morgana router (plain TAPs, receive coalescing on) → kernel: 32 MiB SHA-256 equal, no frame over the MTU, no ICMP error', async (t) => {
  t.timeout(180_000);
  const size = 32 * MIB;
  const expected = await expectedSha(size);
  const left = await createNetns();
  const right = await createNetns();
  t.teardown(() => Promise.all([left.destroy(), right.destroy()]));
  const tapLeft = await openTap({ name: 'mrl0', netns: left.name });
  const tapRight = await openTap({ name: 'mrr0', netns: right.name });
  for (const [ns, dev, own, peer, far] of [
    [left, 'mrl0', '10.81.0.1', '10.81.0.2', '10.82.0.0/24'],
    [right, 'mrr0', '10.82.0.1', '10.82.0.2', '10.81.0.0/24'],
  ] as const) {
    await ns.ip('addr', 'add', `${own}/24`, 'dev', dev);
    await ns.ip('link', 'set', dev, 'up');
    await ns.ip('route', 'add', far, 'via', peer);
  }
  const router = await createStack({
    interfaces: [
      { net: tapLeft, ipv4: '10.81.0.2/24' },
      { net: tapRight, ipv4: '10.82.0.2/24' },
    ],
    forwarding: true,
  });
  t.teardown(() => router.close());
  let largestOut = 0;
  router.interfaces[1]!.eth.mirror((frame, direction) => {
    if (direction === 'out') largestOut = Math.max(largestOut, frame.length);
  });
  const receiver = right.exec('bash', ['-c', 'socat -u TCP-LISTEN:9000,reuseaddr - | sha256sum'], { timeoutMs: 120_000 });
  // socat listens before the sender connects.
  for (let i = 0; i < 100; i++) {
    const r = await right.exec('ss', ['-Htln', 'sport = :9000'], { allowFailure: true });
    if (r.stdout.trim() !== '') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await left.exec('bash', ['-c', `${generatorShell(size)} > /dev/tcp/10.82.0.1/9000`], { timeoutMs: 120_000 });
  const { stdout } = await receiver;
  t.is(stdout.split(' ')[0], expected, 'bytes intact');
  t.true(tapLeft.coalesceStats().superFrames > 0, 'the router received coalesced super-frames');
  t.true(largestOut > 0 && largestOut <= 1514, `the router sent a ${largestOut}-byte frame`);
  const ipv4 = router.ipv4.stats();
  t.is(ipv4.dropped['fragmentation-needed'] ?? 0, 0, 'super-frames dropped as too big');
  t.true(ipv4.forwarded > 0);
}, ['openssl', 'socat']);

kernelTest(test, 'kernel UDP with partial checksums (vnet-header TAP) → Morgana router → switch: forwarded with checksums completed once', async (t) => {
  t.timeout(120_000);
  const ns = await createNetns();
  t.teardown(() => ns.destroy());
  const tap = await openTap({ name: 'mrv0', netns: ns.name, vnetHdr: true });
  await ns.ip('addr', 'add', '10.83.0.1/24', 'dev', 'mrv0');
  await ns.ip('link', 'set', 'mrv0', 'up');
  await ns.ip('route', 'add', '10.84.0.0/24', 'via', '10.83.0.2');
  const net = tapNetDevice(tap);
  const sw = new VirtualSwitch();
  const router = await createStack({
    interfaces: [
      { net, ipv4: '10.83.0.2/24' },
      { net: sw.connect(), ipv4: '10.84.0.2/24' },
    ],
    forwarding: true,
  });
  const b = await createStack({ net: sw.connect(), ipv4: '10.84.0.1/24', gateway: '10.84.0.2' });
  t.teardown(() => Promise.all([router.close(), b.close()]));
  const count = 20;
  const got = new Set<string>();
  const all = new Promise<void>((resolve) => {
    b.udp.bind(9000, (data) => {
      got.add(data.toString().trim());
      if (got.size === count) resolve();
    });
  });
  for (let i = 0; i < count; i++) await ns.exec('bash', ['-c', `echo datagram-${i} | socat -u - UDP4-SENDTO:10.84.0.1:9000`]);
  // Liveness only: datagrams with a wrong checksum never arrive.
  await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  t.true(net.offloadStats().partialChecksum >= count, `the kernel sent ${net.offloadStats().partialChecksum} frames with partial checksums`);
  t.true(router.ipv4.stats().forwarded >= count);
  t.is(b.udp.stats().badChecksum, 0, 'datagrams reached B with a wrong UDP checksum');
  t.is(got.size, count);
}, ['socat']);
