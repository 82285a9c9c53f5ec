/**
 * tshark as the independent judge of our bytes: a session between two stacks on a VirtualSwitch
 * is recorded with pcapRecorder, and tshark (with checksum validation on) must decode every
 * frame with no malformed packet and no bad checksum.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { VirtualSwitch, createStack, pcapRecorder } from 'morgana';

let tshark = true;
try {
  execFileSync('tshark', ['--version'], { stdio: 'ignore' });
} catch {
  tshark = false;
}

const run = tshark ? test : test.skip;
const title = tshark ? '' : ' (skipped: tshark is not installed)';

function tsharkFields(file: string, filter: string, fields: string[]): string[][] {
  const args = ['-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-Y', filter, '-T', 'fields'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.split('\n').filter(Boolean).map((line) => line.split('\t'));
}

run(`tshark decodes a captured session with no malformed packets or bad checksums${title}`, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-capture-'));
  const file = path.join(dir, 'session.pcap');
  try {
    const sw = new VirtualSwitch();
    const a = await createStack({ net: pcapRecorder(sw.connect(), file), ipv4: '10.0.0.1/24', reassembly: { maxFragments: 64 } });
    const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', reassembly: { maxFragments: 64 } });
    const echo = b.udp.bind(7, (data, from) => echo.send(from.address, from.port, data));
    await a.icmp.ping('10.0.0.2');
    await a.icmp.ping('10.0.0.2', { size: 4000 }); // fragmented both ways
    const back = new Promise<Buffer>((resolve) => {
      const s = a.udp.bind(40000, (data) => {
        s.close();
        resolve(data);
      });
    });
    a.udp.send('10.0.0.2', 7, Buffer.alloc(9000, 0x42), { srcPort: 40000 });
    t.is((await back).length, 9000);
    const unreachable = new Promise((resolve) => {
      const s = a.udp.bind(40001, () => {});
      s.onError(resolve);
      s.send('10.0.0.2', 9, Buffer.from('closed port'));
    });
    await unreachable;
    await a.close();
    await b.close();

    const all = tsharkFields(file, 'frame', ['frame.number', 'frame.protocols']);
    t.true(all.length >= 20, `${all.length} frames captured`);
    const bad = tsharkFields(
      file,
      '_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == "Bad" || udp.checksum.status == "Bad" || icmp.checksum.status == "Bad"',
      ['frame.number', '_ws.expert.message'],
    );
    t.deepEqual(bad, [], 'no malformed frames and no bad checksums');
    t.true(tsharkFields(file, 'arp.opcode == 1', ['arp.dst.proto_ipv4']).some(([ip]) => ip === '10.0.0.2'));
    t.true(tsharkFields(file, 'arp.opcode == 2', ['arp.src.proto_ipv4']).some(([ip]) => ip === '10.0.0.2'));
    // tshark reassembles the fragmented echo and pairs every reply with its request.
    const replies = tsharkFields(file, 'icmp.type == 0', ['icmp.seq', 'icmp.resp_to']);
    t.is(replies.length, 2);
    t.true(replies.every(([, request]) => Number(request) > 0), 'each reply matches a request');
    const udp = tsharkFields(file, 'udp.length == 9008', ['ip.src', 'udp.checksum.status']);
    t.is(udp.length, 2, 'the 9000-byte datagram, reassembled by tshark, in each direction');
    t.true(tsharkFields(file, 'icmp.type == 3 && icmp.code == 3', ['ip.src']).length >= 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
