/**
 * Partial TCP checksums (issue 14): a stack whose switch port completes checksums
 * (`offloads.checksum`) sends its IPv4 data segments with only the pseudo-header sum written
 * (`NEEDS_CSUM`), super-frames and ordinary frames alike. What any observer or receiver that
 * does not complete checksums gets must still be whole: a pcap recorder on the port, the
 * switch's mirror, and a port without offloads.
 */
import test, { type ExecutionContext } from 'ava';
import { DATA_VALID, NEEDS_CSUM, type NetOffloads, VirtualSwitch, createStack } from 'morgana';
import { commandUnavailable } from './helpers/netns.js';
import { OFFLOADS, exchange, injectWrongChecksumSyn, ordinaryFrames, pcapRecordsCompleteChecksums, plainPortGetsCompleteChecksums } from './helpers/offload.js';

const MIB = 1 << 20;

const noTshark = commandUnavailable('tshark');
(noTshark ? test.skip : test)(
  `a pcap recorder on a checksum-offloading port: tshark finds every TCP checksum good; 16 MiB each way SHA-256 equal${noTshark ? ` (skipped: ${noTshark})` : ''}`,
  (t) => pcapRecordsCompleteChecksums(t, 4),
);

test('a port without checksum offload receives only fully-checksummed TCP frames, as does the switch mirror', (t) => plainPortGetsCompleteChecksums(t, 4));

/**
 * A (10.1.0.2) on a switch port that takes TSO and partial checksums, a router whose port on
 * that switch takes `routerOffloads`, and B (10.2.0.2) on a plain link behind it.
 */
async function routed(t: ExecutionContext, routerOffloads: NetOffloads) {
  const left = new VirtualSwitch();
  const right = new VirtualSwitch();
  const a = await createStack({ net: left.connect({ offloads: OFFLOADS }), ipv4: '10.1.0.2/24', gateway: '10.1.0.1' });
  const router = await createStack({
    interfaces: [
      { net: left.connect({ offloads: routerOffloads }), ipv4: '10.1.0.1/24' },
      { net: right.connect(), ipv4: '10.2.0.1/24' },
    ],
    forwarding: true,
  });
  const b = await createStack({ net: right.connect(), ipv4: '10.2.0.2/24', gateway: '10.2.0.1' });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close(), router.close()]);
  });
  return { a, router, b };
}

test('a Morgana router forwards TCP a local sender left with partial checksums onto a plain link with complete ones', async (t) => {
  t.timeout(120_000);
  // Checksum offload without TSO: A's super-frames are cut by the switch, its ordinary frames
  // reach the router whole, with partial checksums.
  const { a, router, b } = await routed(t, { checksum: true, tso4: false, tso6: false });
  let partial = 0;
  a.interfaces[0]!.eth.mirror((_frame, direction, offload) => {
    if (direction === 'out' && offload && offload.gsoType === 0 && (offload.flags & NEEDS_CSUM) !== 0) partial++;
  });
  await exchange(t, a, b, 4 * MIB, '10.2.0.2');
  await ordinaryFrames(a, b, '10.2.0.2');
  t.true(partial > 0, 'A sent ordinary frames with partial checksums');
  t.true(router.ipv4.stats().forwarded > 0);
  t.is(b.tcp.stats().badChecksum, 0, 'segments with a partial checksum reached B');
});

test('a Morgana router cuts the TCP super-frames it receives for a link that takes only real frames (no ICMP error for the whole)', async (t) => {
  t.timeout(120_000);
  // A's super-frames reach the router whole (its left port takes TSO); B's link takes 1500 bytes.
  const { a, router, b } = await routed(t, OFFLOADS);
  let superFrames = 0;
  let largest = 0;
  router.interfaces[0]!.eth.mirror((_frame, direction, offload) => {
    if (direction === 'in' && offload && offload.gsoType !== 0) superFrames++;
  });
  router.interfaces[1]!.eth.mirror((frame, direction) => {
    if (direction === 'out') largest = Math.max(largest, frame.length);
  });
  await exchange(t, a, b, 8 * MIB, '10.2.0.2');
  t.true(superFrames > 0, 'the router received super-frames from A');
  t.true(largest > 0 && largest <= 1514, `the router sent a ${largest}-byte frame to B`);
  t.is(router.ipv4.stats().dropped['fragmentation-needed'] ?? 0, 0);
  t.is(b.tcp.stats().badChecksum, 0);
});

// A device's word covers the frame it came with: a TCP segment reassembled from fragments, the
// last of which came marked DATA_VALID, is still summed (and its wrong checksum found); so is a
// partial checksum whose csumStart is not at the TCP header.
for (const kind of ['fragments', 'stale csumStart'] as const) {
  test(`IPv4: a wrong TCP checksum is found in ${kind === 'fragments' ? 'a segment reassembled from fragments marked DATA_VALID' : 'a frame marked NEEDS_CSUM with csumStart off the TCP header'}`, async (t) => {
    const sw = new VirtualSwitch();
    const b = await createStack({ net: sw.connect({ offloads: OFFLOADS }), ipv4: '10.0.0.2/24' });
    t.teardown(() => b.close());
    const listener = b.tcp.listen(7000, () => {});
    t.teardown(() => listener.close());
    // A SYN with 20 bytes of data and a wrong checksum; the device's word on the last frame.
    injectWrongChecksumSyn(sw.connect({ offloads: OFFLOADS }), b.interfaces[0]!.eth.mac, '10.0.0.2', kind === 'fragments', (last) =>
      !last
        ? undefined
        : kind === 'fragments'
          ? { flags: DATA_VALID, gsoType: 0, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0 }
          : { flags: NEEDS_CSUM, gsoType: 0, gsoSize: 0, hdrLen: 14 + 20 + 20, csumStart: 14 + 16, csumOffset: 16 },
    );
    for (let i = 0; i < 100 && b.tcp.stats().badChecksum === 0; i++) await new Promise((r) => setTimeout(r, 10));
    if (kind === 'fragments') t.is(b.ipv4.stats().reassembly.reassembled, 1, 'the fragments were reassembled');
    t.is(b.tcp.stats().badChecksum, 1, 'the segment was taken on a word that did not cover it');
  });
}
