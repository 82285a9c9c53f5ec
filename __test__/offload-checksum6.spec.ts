/**
 * Partial and device-verified TCP checksums over IPv6 (issue 14): a stack whose switch port
 * completes checksums sends its IPv6 data segments with only the pseudo-header sum written
 * (`NEEDS_CSUM`), and a receiving stack takes the device's word for a checksum (`DATA_VALID`,
 * or a partial one where the TCP header is) without summing the segment again. Observers and
 * receivers that do not complete checksums still get whole ones.
 */
import test from 'ava';
import { DATA_VALID, GSO_NONE, NEEDS_CSUM, type NetDevice, VirtualSwitch } from 'morgana';
import { commandUnavailable } from './helpers/netns.js';
import { FAMILY, OFFLOADS, exchange, intercept, offloadStacks, pcapRecordsCompleteChecksums, plainPortGetsCompleteChecksums } from './helpers/offload.js';

const MIB = 1 << 20;
const B6 = FAMILY[6].b;

/**
 * `port` with the TCP checksum field of up to `limit` of the IPv6 super-frames it receives
 * turned wrong; with `clearValid`, those also lose the switch's `DATA_VALID` word.
 */
function corrupting(port: NetDevice, limit: number, clearValid: boolean): { net: NetDevice; corrupted: () => number } {
  let corrupted = 0;
  const net = intercept(port, (frame, offload, deliver) => {
    if (corrupted < limit && offload && offload.gsoType !== GSO_NONE && frame.readUInt16BE(12) === 0x86dd && frame[20] === 6) {
      frame.writeUInt16BE(frame.readUInt16BE(54 + 16) ^ 0x5a5a, 54 + 16);
      corrupted++;
      if (clearValid) offload = { ...offload, flags: offload.flags & ~DATA_VALID };
    }
    deliver(frame, offload);
  });
  return { net, corrupted: () => corrupted };
}

const noTshark = commandUnavailable('tshark');
(noTshark ? test.skip : test)(
  `IPv6: a pcap recorder on a checksum-offloading port: tshark finds every TCP checksum good; 16 MiB each way SHA-256 equal${noTshark ? ` (skipped: ${noTshark})` : ''}`,
  (t) => pcapRecordsCompleteChecksums(t, 6),
);

test('IPv6: a port without checksum offload receives only fully-checksummed TCP frames, as does the switch mirror', (t) => plainPortGetsCompleteChecksums(t, 6));

// The receiver's engine does not sum a super-frame the device vouched for: a wrong checksum in
// one it marked DATA_VALID goes unnoticed, while the same frames without that word are rejected.
// (A sends complete checksums: its port takes super-frames but does not complete checksums.)
for (const clearValid of [false, true]) {
  test(`IPv6: super-frames with a wrong TCP checksum ${clearValid ? 'and no DATA_VALID are rejected by the receiver' : 'but DATA_VALID are taken on the device\'s word'}`, async (t) => {
    t.timeout(120_000);
    const sw = new VirtualSwitch();
    const limit = 20;
    const port = corrupting(sw.connect({ offloads: { tso6: true } }), limit, clearValid);
    const { a, b } = await offloadStacks(t, sw, sw.connect({ offloads: { tso6: true } }), port.net, 6);
    await exchange(t, a, b, 4 * MIB, B6);
    t.is(port.corrupted(), limit, 'super-frames with a wrong checksum reached B');
    if (clearValid) t.true(b.tcp.stats().badChecksum >= limit, `B counted ${b.tcp.stats().badChecksum} bad checksums`);
    else t.is(b.tcp.stats().badChecksum, 0, 'B summed a super-frame its device vouched for');
  });
}

/**
 * `port` with a Destination Options header (8 bytes of padding) put between the IPv6 and TCP
 * headers of up to `limit` of the partial-checksum frames it receives; their `csumStart` is
 * moved along with the TCP header, or, with `stale`, left where the TCP header was.
 */
function withDestinationOptions(port: NetDevice, limit: number, stale: boolean): { net: NetDevice; changed: () => number } {
  let changed = 0;
  const net = intercept(port, (frame, offload, deliver) => {
    if (changed < limit && offload && (offload.flags & NEEDS_CSUM) !== 0 && offload.csumStart === 54 && frame.readUInt16BE(12) === 0x86dd && frame[20] === 6) {
      // Next header TCP, length 0 (8 bytes), a PadN option of 4 zero bytes.
      const options = Buffer.from([6, 0, 1, 4, 0, 0, 0, 0]);
      const grown = Buffer.concat([frame.subarray(0, 54), options, frame.subarray(54)]);
      grown[20] = 60;
      grown.writeUInt16BE(frame.readUInt16BE(18) + 8, 18);
      const shift = stale ? 0 : 8;
      changed++;
      return deliver(grown, { ...offload, csumStart: offload.csumStart + shift, hdrLen: offload.hdrLen + 8 });
    }
    deliver(frame, offload);
  });
  return { net, changed: () => changed };
}

// A partial checksum counts only where csumStart says it is: behind extension headers, at the
// TCP header (taken on the device's word), or elsewhere (summed, and so found wrong).
for (const stale of [false, true]) {
  test(`IPv6: a partial checksum behind a Destination Options header ${stale ? 'with csumStart at the options is summed and rejected' : 'with csumStart at the TCP header is taken'}`, async (t) => {
    t.timeout(120_000);
    const sw = new VirtualSwitch();
    const limit = 20;
    const port = withDestinationOptions(sw.connect({ offloads: OFFLOADS }), limit, stale);
    const { a, b, partial } = await offloadStacks(t, sw, sw.connect({ offloads: OFFLOADS }), port.net, 6);
    await exchange(t, a, b, 4 * MIB, B6);
    t.true(partial.frames + partial.superFrames > 0);
    t.is(port.changed(), limit, 'frames with a Destination Options header reached B');
    if (stale) t.true(b.tcp.stats().badChecksum >= limit, `B counted ${b.tcp.stats().badChecksum} bad checksums`);
    else t.is(b.tcp.stats().badChecksum, 0);
  });
}
