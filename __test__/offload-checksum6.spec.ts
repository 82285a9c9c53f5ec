/**
 * Partial and device-verified TCP checksums over IPv6 (issue 14): a stack whose switch port
 * completes checksums sends its IPv6 data segments with only the pseudo-header sum written
 * (`NEEDS_CSUM`), and a receiving stack takes the device's word for a checksum (`DATA_VALID`,
 * or a partial one where the TCP header is) without summing the segment again. Observers and
 * receivers that do not complete checksums still get whole ones.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DATA_VALID, GSO_NONE, NEEDS_CSUM, type NetDevice, type NetOffloads, VirtualSwitch, createStack, pcapRecorder } from 'morgana';
import { commandUnavailable } from './helpers/netns.js';
import { exchange, tcpChecksum } from './helpers/offload.js';

const MIB = 1 << 20;
const OFFLOADS: NetOffloads = { tso4: true, tso6: true, checksum: true };
const A6 = 'fd00::1';
const B6 = 'fd00::2';

async function stacks(t: ExecutionContext, sw: VirtualSwitch, netA: NetDevice, netB: NetDevice) {
  const a = await createStack({ net: netA, ipv6: { address: [`${A6}/64`], dadTransmits: 0 } });
  const b = await createStack({ net: netB, ipv6: { address: [`${B6}/64`], dadTransmits: 0 } });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
    await sw.close();
  });
  // Count the IPv6 TCP frames A sends with a partial checksum: the path under test is taken.
  const partial = { superFrames: 0, frames: 0 };
  a.interfaces[0]!.eth.mirror((frame, direction, offload) => {
    if (direction !== 'out' || !offload || (offload.flags & NEEDS_CSUM) === 0 || frame.readUInt16BE(12) !== 0x86dd) return;
    if (offload.gsoType === GSO_NONE) partial.frames++;
    else partial.superFrames++;
  });
  return { a, b, partial };
}

/**
 * `port` with the TCP checksum field of up to `limit` of the IPv6 super-frames it receives
 * turned wrong; with `clearValid`, those also lose the switch's `DATA_VALID` word.
 */
function corrupting(port: NetDevice, limit: number, clearValid: boolean): { net: NetDevice; corrupted: () => number } {
  let corrupted = 0;
  const net: NetDevice = {
    mac: port.mac,
    mtu: port.mtu,
    offloads: port.offloads,
    write: (size, fill, offload) => port.write(size, fill, offload),
    listen: (handler) =>
      port.listen((frame, offload) => {
        if (corrupted < limit && offload && offload.gsoType !== GSO_NONE && frame.readUInt16BE(12) === 0x86dd && frame[20] === 6) {
          frame.writeUInt16BE(frame.readUInt16BE(54 + 16) ^ 0x5a5a, 54 + 16);
          corrupted++;
          if (clearValid) offload = { ...offload, flags: offload.flags & ~DATA_VALID };
        }
        handler(frame, offload);
      }),
    stats: () => port.stats(),
    close: () => port.close(),
  };
  return { net, corrupted: () => corrupted };
}

const noTshark = commandUnavailable('tshark');
(noTshark ? test.skip : test)(
  `IPv6: a pcap recorder on a checksum-offloading port: tshark finds every TCP checksum good; 16 MiB each way SHA-256 equal${noTshark ? ` (skipped: ${noTshark})` : ''}`,
  async (t) => {
    t.timeout(180_000);
    const dir = mkdtempSync(path.join(tmpdir(), 'morgana-csum6-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'a.pcap');
    const sw = new VirtualSwitch();
    const recorder = pcapRecorder(sw.connect({ offloads: OFFLOADS }), file);
    const { a, b, partial } = await stacks(t, sw, recorder, sw.connect({ offloads: OFFLOADS }));
    await exchange(t, a, b, 16 * MIB, B6);
    recorder.flush();
    t.true(partial.superFrames > 0 && partial.frames > 0, `A sent ${partial.superFrames} super-frames and ${partial.frames} frames with partial checksums`);
    t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
    const tshark = (filter: string) =>
      spawnSync('tshark', ['-r', file, '-o', 'tcp.check_checksum:TRUE', '-T', 'fields', '-e', 'frame.number', '-Y', filter], {
        encoding: 'utf8',
        maxBuffer: 256 * MIB,
      });
    const all = tshark('ipv6 && tcp');
    t.is(all.status, 0, all.stderr);
    const tcpFrames = all.stdout.trim().split('\n').length;
    t.true(tcpFrames > (32 * MIB) / 1440, `${tcpFrames} IPv6 TCP frames captured`);
    const bad = tshark('tcp.checksum.status == "Bad"');
    t.is(bad.status, 0, bad.stderr);
    t.is(bad.stdout.trim(), '', 'frames with a bad checksum');
  },
);

test('IPv6: a port without checksum offload receives only fully-checksummed TCP frames, as does the switch mirror', async (t) => {
  t.timeout(120_000);
  const sw = new VirtualSwitch();
  const plain = sw.connect();
  // What the plain port hands its stack, checked before the stack sees it.
  const received = { good: 0, bad: 0 };
  const checking: NetDevice = {
    mac: plain.mac,
    mtu: plain.mtu,
    write: (size, fill, offload) => plain.write(size, fill, offload),
    listen: (handler) =>
      plain.listen((frame, offload) => {
        const c = tcpChecksum(frame);
        if (c !== 'not tcp') received[c]++;
        handler(frame, offload);
      }),
    stats: () => plain.stats(),
    close: () => plain.close(),
  };
  const mirrored = { good: 0, bad: 0 };
  sw.mirror((frame) => {
    const c = tcpChecksum(frame);
    if (c !== 'not tcp') mirrored[c]++;
  });
  const { a, b, partial } = await stacks(t, sw, sw.connect({ offloads: OFFLOADS }), checking);
  await exchange(t, a, b, 8 * MIB, B6);
  t.true(partial.superFrames > 0 && partial.frames > 0, 'A sent partial checksums');
  t.true(received.good > (8 * MIB) / 1440, `${received.good} TCP frames received by the plain port`);
  t.is(received.bad, 0, 'frames with a partial or wrong checksum reached the plain port');
  t.true(mirrored.good > 0);
  t.is(mirrored.bad, 0, 'frames with a partial or wrong checksum in the mirror');
  t.is(b.tcp.stats().badChecksum, 0);
});

// The receiver's engine does not sum a super-frame the device vouched for: a wrong checksum in
// one it marked DATA_VALID goes unnoticed, while the same frames without that word are rejected.
// (A sends complete checksums: its port takes super-frames but does not complete checksums.)
for (const clearValid of [false, true]) {
  test(`IPv6: super-frames with a wrong TCP checksum ${clearValid ? 'and no DATA_VALID are rejected by the receiver' : 'but DATA_VALID are taken on the device\'s word'}`, async (t) => {
    t.timeout(120_000);
    const sw = new VirtualSwitch();
    const limit = 20;
    const port = corrupting(sw.connect({ offloads: { tso6: true } }), limit, clearValid);
    const { a, b } = await stacks(t, sw, sw.connect({ offloads: { tso6: true } }), port.net);
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
  const net: NetDevice = {
    mac: port.mac,
    mtu: port.mtu,
    offloads: port.offloads,
    write: (size, fill, offload) => port.write(size, fill, offload),
    listen: (handler) =>
      port.listen((frame, offload) => {
        if (changed < limit && offload && (offload.flags & NEEDS_CSUM) !== 0 && offload.csumStart === 54 && frame.readUInt16BE(12) === 0x86dd && frame[20] === 6) {
          // Next header TCP, length 0 (8 bytes), a PadN option of 4 zero bytes.
          const options = Buffer.from([6, 0, 1, 4, 0, 0, 0, 0]);
          const grown = Buffer.concat([frame.subarray(0, 54), options, frame.subarray(54)]);
          grown[20] = 60;
          grown.writeUInt16BE(frame.readUInt16BE(18) + 8, 18);
          const shift = stale ? 0 : 8;
          changed++;
          return handler(grown, { ...offload, csumStart: offload.csumStart + shift, hdrLen: offload.hdrLen + 8 });
        }
        handler(frame, offload);
      }),
    stats: () => port.stats(),
    close: () => port.close(),
  };
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
    const { a, b, partial } = await stacks(t, sw, sw.connect({ offloads: OFFLOADS }), port.net);
    await exchange(t, a, b, 4 * MIB, B6);
    t.true(partial.frames + partial.superFrames > 0);
    t.is(port.changed(), limit, 'frames with a Destination Options header reached B');
    if (stale) t.true(b.tcp.stats().badChecksum >= limit, `B counted ${b.tcp.stats().badChecksum} bad checksums`);
    else t.is(b.tcp.stats().badChecksum, 0);
  });
}
