import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NetDevice, VirtualSwitch, ipv4, pcapRecorder } from 'morgana';
import { frame, netConformance } from './helpers/net-conformance.js';
import { commandUnavailable } from './helpers/netns.js';

const dir = mkdtempSync(join(tmpdir(), 'morgana-pcap-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const nextFile = () => join(dir, `capture-${files++}.pcap`);

netConformance(test, 'pcapRecorder(VirtualSwitch)', async () => {
  const sw = new VirtualSwitch();
  return { a: pcapRecorder(sw.connect(), nextFile()), b: pcapRecorder(sw.connect(), nextFile()) };
});

interface PcapRecord {
  seconds: number;
  micros: number;
  captured: number;
  original: number;
  data: Buffer;
}

/** An independent reader of the classic libpcap format (little-endian, microseconds). */
function readPcap(file: string): { header: Buffer; records: PcapRecord[] } {
  const bytes = readFileSync(file);
  const header = bytes.subarray(0, 24);
  const records: PcapRecord[] = [];
  for (let at = 24; at < bytes.length; ) {
    const captured = bytes.readUInt32LE(at + 8);
    records.push({
      seconds: bytes.readUInt32LE(at),
      micros: bytes.readUInt32LE(at + 4),
      captured,
      original: bytes.readUInt32LE(at + 12),
      data: bytes.subarray(at + 16, at + 16 + captured),
    });
    at += 16 + captured;
  }
  return { header, records };
}

const tick = () => new Promise((r) => setImmediate(r));

function send(device: NetDevice, bytes: Buffer): void {
  device.write(bytes.length, (buffer) => bytes.copy(buffer));
}

test('records both directions with the libpcap header, timestamps and lengths', async (t) => {
  const sw = new VirtualSwitch();
  const file = nextFile();
  let now = 1_700_000_000_123_456;
  const a = pcapRecorder(sw.connect(), file, { nowMicros: () => now++ });
  const b = sw.connect();
  const got: Buffer[] = [];
  a.listen((f) => got.push(f));
  const out = frame(b.mac, a.mac, Buffer.from('outgoing'));
  const back = frame(a.mac, b.mac, Buffer.from('incoming, a little longer'));
  send(a, out);
  await tick();
  send(b, back);
  await tick();
  t.is(got.length, 1, 'the listener still gets its frames');
  // Refused or dropped writes are not recorded.
  t.throws(() => a.write(10, () => 11), { code: 'ERR_OUT_OF_RANGE' });
  a.write(a.mtu + 100, (buffer) => {
    frame(b.mac, a.mac, Buffer.alloc(a.mtu + 50)).copy(buffer);
    return a.mtu + 64;
  });
  t.is(a.recorded, 2);
  t.is(statSync(file).size, 24, 'buffered until flushed');
  await a.close();
  const { header, records } = readPcap(file);
  t.is(header.readUInt32LE(0), 0xa1b2c3d4, 'magic: microsecond timestamps');
  t.is(header.readUInt16LE(4), 2);
  t.is(header.readUInt16LE(6), 4);
  t.is(header.readUInt32LE(20), 1, 'LINKTYPE_ETHERNET');
  t.is(records.length, 2);
  t.deepEqual(records[0]!.data, out);
  t.deepEqual(records[1]!.data, back);
  t.is(records[0]!.original, out.length);
  t.deepEqual([records[0]!.seconds, records[0]!.micros], [1_700_000_000, 123_456]);
  t.deepEqual([records[1]!.seconds, records[1]!.micros], [1_700_000_000, 123_457]);
  t.throws(() => send(a, out), { code: 'ERR_NET_CLOSED' });
  await a.close();
});

test('flushes in chunks once the buffer passes flushBytes, and truncates to snaplen', async (t) => {
  const sw = new VirtualSwitch();
  const file = nextFile();
  const a = pcapRecorder(sw.connect(), file, { flushBytes: 1000, snaplen: 100 });
  const b = sw.connect();
  for (let i = 0; i < 10; i++) send(a, frame(b.mac, a.mac, Buffer.alloc(200, i)));
  t.true(statSync(file).size >= 1000, 'written before close');
  await a.close();
  const { records } = readPcap(file);
  t.is(records.length, 10);
  t.true(records.every((r) => r.captured === 100 && r.original === 214));
  t.is(records[9]!.data[14], 9);
});

const noTshark = commandUnavailable('tshark');
(noTshark ? test.skip : test)(
  `tshark reads a recording, and flags a bad checksum in it${noTshark ? ` (skipped: ${noTshark})` : ''}`,
  async (t) => {
    const sw = new VirtualSwitch();
    const file = nextFile();
    const a = pcapRecorder(sw.connect(), file);
    const b = sw.connect();
    b.listen(() => {});
    const udp = Buffer.from('0007000700100000' + '6d6f7267616e6121', 'hex'); // echo port, no checksum
    const good = ipv4.emit({ src: '192.0.2.1', dst: '192.0.2.2', protocol: ipv4.PROTOCOL.UDP }, udp);
    const bad = Buffer.from(good);
    bad.writeUInt16BE(bad.readUInt16BE(10) ^ 0x0101, 10);
    for (let i = 0; i < 5; i++) send(a, frame(b.mac, a.mac, good, 0x0800));
    send(a, frame(b.mac, a.mac, bad, 0x0800));
    await a.close();
    const tshark = (args: string[]) => spawnSync('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', ...args], { encoding: 'utf8' });
    const all = tshark(['-T', 'fields', '-e', 'frame.number', '-e', 'udp.dstport']);
    t.is(all.status, 0, all.stderr);
    t.is(all.stdout.trim().split('\n').length, 6);
    const flagged = tshark(['-T', 'fields', '-e', 'frame.number', '-Y', '_ws.malformed || _ws.expert.severity >= warning']);
    t.is(flagged.status, 0, flagged.stderr);
    t.is(flagged.stdout.trim(), '6', 'the filter the TAP test relies on does catch a bad header checksum');
  },
);
