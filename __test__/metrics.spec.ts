import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { VirtualSwitch, createStack } from 'morgana';
import { collect, sha256 } from './helpers/streams.js';

/** Samples of a Prometheus text exposition: `name{labels}` → value, and the declared types. */
function parseExposition(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return { samples, types };
}

function promtool(text: string): Promise<{ code: number | null; output: string } | undefined> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], (error, stdout, stderr) => {
      if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') return resolve(undefined);
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, output: stdout + stderr });
    });
    child.stdin!.end(text);
  });
}

async function pairWithTraffic() {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', ipv6: 'auto' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const payload = randomBytes(256 * 1024);
  const received = new Promise<Buffer>((resolve) => b.tcp.listen(7000, (conn) => void collect(conn).then(resolve)));
  const conn = await a.tcp.connect('10.0.0.2', 7000);
  conn.end(payload);
  t0Check(sha256(await received) === sha256(payload));
  await a.icmp.ping('10.0.0.2', { timeoutMs: 15_000 });
  // A frame for nobody: an IPv4 packet with a bad header checksum, counted as a drop with a reason.
  return { sw, a, b, close: () => Promise.all([a.close(), b.close()]) };
}

function t0Check(ok: boolean): void {
  if (!ok) throw new Error('the transfer did not arrive intact');
}

test('stack.metrics(): promtool accepts it, and every value is the one stats() reports', async (t) => {
  const { a, b, close } = await pairWithTraffic();
  const text = b.metrics();
  const stats = b.stats();
  const { samples, types } = parseExposition(text);
  const label = '{stack="10.0.0.2"}';
  t.is(samples.get(`morgana_tcp_segments_received_total${label}`), stats.tcp.segmentsIn);
  t.is(samples.get(`morgana_tcp_bytes_received_total${label}`), stats.tcp.bytesIn);
  t.true(stats.tcp.bytesIn >= 256 * 1024);
  t.is(samples.get(`morgana_ipv4_received_total${label}`), stats.ipv4.received);
  t.is(samples.get(`morgana_ipv4_reassembly_pending_datagrams${label}`), stats.ipv4.reassembly.pendingDatagrams);
  t.is(samples.get(`morgana_icmp_echo_requests_received_total${label}`), 1);
  t.is(samples.get(`morgana_net_rx_frames_total{stack="10.0.0.2",interface="0"}`), stats.net[0]!.rxFrames);
  t.is(samples.get(`morgana_arp_entries{stack="10.0.0.2",interface="0"}`), b.arp.entries().length);
  t.is(types.get('morgana_tcp_segments_received_total'), 'counter');
  t.is(types.get('morgana_tcp_connections'), 'gauge');
  // Every numeric field of every layer is there: count them.
  const fields = (o: object): number =>
    Object.values(o).reduce<number>((n, v) => n + (typeof v === 'number' ? 1 : v && typeof v === 'object' ? fields(v) : 0), 0);
  const expected = fields(stats);
  const stackSamples = [...samples.keys()].filter((k) => !/^morgana_(arp_entries|net_mtu_bytes|nd_neighbours)\{/.test(k));
  t.is(stackSamples.length, expected, 'one sample per numeric field of stats()');
  // The IPv6 stack exports its layers too, under the same names.
  const v6 = parseExposition(a.metrics({ labels: { stack: 'a' } }));
  t.is(v6.samples.get('morgana_nd_neighbor_solicitations_sent_total{stack="a"}'), a.stats().nd!.neighborSolicitationsSent);
  const checked = await promtool(text);
  if (checked === undefined) t.log('promtool not installed (Debian package prometheus): skipped its check');
  else t.is(checked.code, 0, checked.output);
  const checkedV6 = await promtool(a.metrics());
  if (checkedV6) t.is(checkedV6.code, 0, checkedV6.output);
  await close();
});

test('drop reasons are labelled, and counters grow between two scrapes', async (t) => {
  const { a, b, close } = await pairWithTraffic();
  const before = parseExposition(b.metrics()).samples;
  // Malformed IPv4 (bad header checksum) reaches b: dropped with a reason.
  const frame = Buffer.alloc(14 + 20);
  Buffer.from(b.ethernet.net.mac.split(':').map((h) => parseInt(h, 16))).copy(frame, 0);
  Buffer.from(a.ethernet.net.mac.split(':').map((h) => parseInt(h, 16))).copy(frame, 6);
  frame.writeUInt16BE(0x0800, 12);
  frame.set([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0xde, 0xad, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  a.ethernet.net.write(frame.length, (buf) => (frame.copy(buf), frame.length));
  await a.icmp.ping('10.0.0.2', { timeoutMs: 15_000 });
  const after = parseExposition(b.metrics()).samples;
  const drops = [...after].filter(([k]) => k.startsWith('morgana_ipv4_dropped_total{'));
  t.true(drops.length > 0, 'a labelled drop series');
  for (const [k, v] of drops) t.regex(k, /reason="[^"]+"/, `${k} = ${v}`);
  const statsDropped = b.stats().ipv4.dropped;
  for (const [reason, n] of Object.entries(statsDropped)) t.is(after.get(`morgana_ipv4_dropped_total{stack="10.0.0.2",reason="${reason}"}`), n);
  const key = 'morgana_icmp_echo_requests_received_total{stack="10.0.0.2"}';
  t.is(after.get(key)!, before.get(key)! + 1);
  await close();
});

test('OpenMetrics form: counters declared without _total, samples with it, # EOF last', async (t) => {
  const { b, sw, close } = await pairWithTraffic();
  const text = b.metrics({ format: 'openmetrics' });
  t.true(text.endsWith('# EOF\n'));
  t.regex(text, /^# TYPE morgana_tcp_segments_received counter$/m);
  t.regex(text, /^morgana_tcp_segments_received_total\{stack="10.0.0.2"\} \d+$/m);
  const swText = sw.metrics();
  const sws = parseExposition(swText).samples;
  t.is(sws.get('morgana_switch_forwarded_total{switch="switch"}'), sw.stats().forwarded);
  const ports = sw.ports();
  t.is(ports.length, 2);
  for (const p of ports) t.is(sws.get(`morgana_switch_port_tx_frames_total{switch="switch",port="${p.id}",mac="${p.mac}"}`), p.stats.txFrames);
  const checked = await promtool(swText);
  if (checked) t.is(checked.code, 0, checked.output);
  await close();
});
