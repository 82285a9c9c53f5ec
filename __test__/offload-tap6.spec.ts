/**
 * Partial TCP checksums over IPv6 through a vnet-header TAP (issue 14), against the Linux kernel
 * in a namespace. The kernel's side sits behind a bridge and a veth pair whose bridge port takes
 * no checksum offload, so the kernel must complete the checksums Morgana leaves partial
 * (`NEEDS_CSUM`) itself; its own side keeps checksum offload, so its frames reach the TAP with
 * partial checksums, which Morgana takes on the kernel's word. curl -6 moves 32 MiB each way
 * (SHA-256), and tshark on the veth finds no bad checksum in what Morgana sent.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NEEDS_CSUM, createStack, tapNetDevice } from 'morgana';
import { expectedSha } from './helpers/generated.js';
import { MIB, curlDownload, curlUpload, serveHttp, startCapture, stopCapture, tsharkCount, tsharkProblems } from './helpers/kernel-tcp.js';
import { kernelTest, withNetns } from './helpers/netns.js';
import { tapBridgedToPlainVeth, tcpChecksum } from './helpers/offload.js';

const KERNEL = '2001:db8:89::1';
const MORGANA = '2001:db8:89::2';
const HTTP = { url: `http://[${MORGANA}]`, flags: '-6 -g' };

kernelTest(test, 'IPv6 over an offloading TAP: curl -6 moves 32 MiB each way, the kernel completes our partial checksums and we take its', async (t) => {
  t.timeout(300_000);
  const size = 32 * MIB;
  const expected = await expectedSha(size);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-offload-tap6-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await withNetns(async (ns) => {
    await ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=0']);
    // The kernel cuts Morgana's super-frames and completes their checksums; its own side keeps
    // checksum offload.
    const { tap, kernelSide, bridgePort } = await tapBridgedToPlainVeth(ns, '60');
    await ns.ip('-6', 'addr', 'add', `${KERNEL}/64`, 'dev', kernelSide, 'nodad');
    const net = tapNetDevice(tap);
    const stack = await createStack({ net, ipv6: { address: `${MORGANA}/64`, dadTransmits: 0 } });
    // IPv6 TCP frames Morgana writes with a partial checksum, and those it receives still
    // partial (the TAP did not complete them: the stack took the kernel's word).
    const counts = { sentPartial: 0, receivedPartial: 0 };
    stack.interfaces[0]!.eth.mirror((frame, direction, offload) => {
      if (!offload || (offload.flags & NEEDS_CSUM) === 0 || frame.readUInt16BE(12) !== 0x86dd) return;
      if (direction === 'out') counts.sentPartial++;
      else if (tcpChecksum(frame) === 'bad') counts.receivedPartial++;
    });
    const server = serveHttp(stack, 80);
    try {
      t.true(net.offloads?.checksum === true && net.offloads.tso6 === true, 'the kernel granted checksum offload and TSO6 on the TAP');
      const session = path.join(dir, 'session.pcap');
      const capture = await startCapture(ns, bridgePort, session);
      const down = await curlDownload(ns, HTTP, size, 200_000);
      await stopCapture(capture);
      t.is(down.sha, expected, 'download intact');
      t.true(counts.sentPartial > 0, `Morgana wrote ${counts.sentPartial} IPv6 TCP frames with partial checksums`);
      const partialBefore = net.offloadStats().partialChecksum;
      const up = await curlUpload(ns, HTTP, size, 200_000);
      t.is(up.answer, `${expected} ${size}`, 'upload intact');
      t.true(net.offloadStats().partialChecksum - partialBefore > size / 65_536, "the kernel's data came with partial checksums (NEEDS_CSUM)");
      t.true(counts.receivedPartial > size / 65_536, `${counts.receivedPartial} frames reached the stack with their checksum still partial`);
      t.is(stack.tcp.stats().badChecksum, 0);
      // What Morgana sent, as the kernel put it on the veth (cut and completed): all good.
      t.is(tsharkProblems(session, ['tcp'], { from: MORGANA }), '', 'tshark finds no bad checksum or malformed frame from Morgana');
      // (A capture may drop frames under load: this counts that it saw Morgana's, not all of them.)
      t.true(tsharkCount(session, `ipv6.src == ${MORGANA} && tcp.len > 0`) > 1000, 'the capture holds Morgana segments');
      t.is(tsharkCount(session, 'frame.len > 1514'), 0, 'no frame over 1514 bytes on the veth');
      t.log(`32 MiB over IPv6: download ${down.mbps.toFixed(1)} MB/s, upload ${up.mbps.toFixed(1)} MB/s; ${counts.sentPartial} partial frames out, ${counts.receivedPartial} in`);
    } finally {
      server.close();
      await stack.close();
    }
  });
}, ['curl', 'tshark', 'ethtool']);
