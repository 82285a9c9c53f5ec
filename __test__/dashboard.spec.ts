/**
 * The monitor (issue 19): its JSON API and metrics against two stacks in this process, and the
 * dashboard page in a real browser (Debian's chromium, driven by playwright-core) on a running
 * static-website unikernel started by `morgana start --dashboard`.
 */
import test from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { VirtualSwitch, createStack, openTap, tapNetDevice } from 'morgana';
import { startMonitor } from 'morgana/monitor';
import { kernelTest, withNetns } from './helpers/netns.js';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const artefacts = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

function tool(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; out: string } | undefined> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') return resolve(undefined);
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: stdout + stderr });
    });
    if (input) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

async function twoStacks() {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const monitor = await startMonitor(
    {
      title: 'test network',
      stacks: () => [
        { name: 'a', stack: a },
        { name: 'b', stack: b },
      ],
      switches: () => [{ name: 'sw0', sw }],
      forwards: () => [],
      log: () => ['line one', 'line two'],
    },
    { intervalMs: 200 },
  );
  return { sw, a, b, monitor, close: async () => (await monitor.close(), await Promise.all([a.close(), b.close()])) };
}

test('the JSON API shows the topology, a connection with its RTT and cwnd, and counters equal to stats()', async (t) => {
  const { a, b, monitor, close } = await twoStacks();
  t.teardown(close);
  const get = async (path: string) => (await fetch(new URL(path, monitor.url))).json() as Promise<any>;
  const before = await get('/api/connections');
  t.deepEqual(before, []);
  let held: any;
  // Every byte has crossed the switch once the receiver has it (a fixed wait did not suffice on a
  // loaded machine: the interface counter then lagged the 64 KiB written).
  let received = 0;
  const allReceived = new Promise<void>((resolve) => {
    b.tcp.listen(9000, (conn) => {
      held = conn;
      conn.on('data', (d: Buffer) => {
        received += d.length;
        if (received >= 64 * 1024) resolve();
      });
    });
  });
  const conn = await a.tcp.connect('10.0.0.2', 9000);
  conn.write(Buffer.alloc(64 * 1024, 1));
  await allReceived;
  const connections = await get('/api/connections');
  const row = connections.find((c: any) => c.stack === 'a' && c.remote === '10.0.0.2:9000');
  t.truthy(row, JSON.stringify(connections));
  t.is(row.state, 'ESTABLISHED');
  t.is(typeof row.cwnd, 'number');
  t.is(row.bytesWritten, 64 * 1024);
  const topology = await get('/api/topology');
  t.deepEqual(topology.nodes.map((n: any) => n.id).sort(), ['stack:a', 'stack:b', 'switch:sw0']);
  t.is(topology.links.length, 2);
  const interfaces = await get('/api/interfaces');
  const ia = interfaces.find((i: any) => i.id === 'a/0');
  t.is(ia.medium, 'sw0');
  t.true(ia.txBytes >= 64 * 1024);
  const neighbours = await get('/api/neighbours');
  t.true(neighbours.arp.some((e: any) => e.stack === 'a' && e.address === '10.0.0.2'));
  t.deepEqual(await get('/api/log'), ['line one', 'line two']);
  // One metrics endpoint for every stack and switch.
  const metrics = await (await fetch(new URL('/metrics', monitor.url))).text();
  t.regex(metrics, /^morgana_tcp_bytes_sent_total\{stack="a"\} \d+$/m);
  t.regex(metrics, /^morgana_switch_forwarded_total\{switch="sw0"\} \d+$/m);
  const checked = await tool('promtool', ['check', 'metrics'], Buffer.from(metrics));
  if (checked) t.is(checked.code, 0, checked.out);
  const om = await fetch(new URL('/metrics', monitor.url), { headers: { accept: 'application/openmetrics-text' } });
  t.regex(om.headers.get('content-type')!, /openmetrics/);
  t.true((await om.text()).endsWith('# EOF\n'));
  held?.destroy();
  conn.destroy();
});

test('server-sent events carry snapshots; a capture of the switch is a pcap that tshark reads', async (t) => {
  const { a, monitor, close } = await twoStacks();
  t.teardown(close);
  const events: any[] = [];
  const stream = await new Promise<http.IncomingMessage>((resolve) => http.get(new URL('/events', monitor.url), resolve));
  t.teardown(() => stream.destroy());
  t.regex(stream.headers['content-type']!, /text\/event-stream/);
  stream.setEncoding('utf8');
  let buffered = '';
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    for (let i = buffered.indexOf('\n\n'); i >= 0; i = buffered.indexOf('\n\n')) {
      const block = buffered.slice(0, i);
      buffered = buffered.slice(i + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data) events.push(JSON.parse(data));
    }
  });
  const started: any = await (await fetch(new URL('/api/captures', monitor.url), { method: 'POST', body: JSON.stringify({ switch: 'sw0' }) })).json();
  for (let i = 0; i < 3; i++) await a.icmp.ping('10.0.0.2', { timeoutMs: 15_000 });
  const stopped: any = await (await fetch(new URL(`/api/captures/${started.id}/stop`, monitor.url), { method: 'POST' })).json();
  t.false(stopped.running);
  t.true(stopped.frames >= 6, `frames ${stopped.frames}`);
  const pcap = Buffer.from(await (await fetch(new URL(`/api/captures/${started.id}.pcap`, monitor.url))).arrayBuffer());
  t.is(pcap.readUInt32LE(0), 0xa1b2c3d4);
  const file = join(tmpdir(), `morgana-capture-${process.pid}.pcap`);
  writeFileSync(file, pcap);
  const read = await tool('tshark', ['-r', file, '-Y', 'icmp.type == 0', '-T', 'fields', '-e', 'ip.src']);
  if (read === undefined) t.log('tshark not installed: the pcap was checked by its header only');
  else {
    t.is(read.code, 0, read.out);
    t.is(read.out.trim().split('\n').filter((l) => l === '10.0.0.2').length, 3, read.out);
  }
  // Snapshots come every 200 ms; on a loaded machine they may come late, so wait for them.
  const txFrames = (e: any): number => e.interfaces.find((i: any) => i.id === 'a/0').txFrames;
  for (let i = 0; i < 200 && !(events.length >= 2 && txFrames(events.at(-1)) > txFrames(events[0])); i++) await new Promise((r) => setTimeout(r, 50));
  stream.destroy();
  t.true(events.length >= 2, `${events.length} snapshots`);
  t.true(txFrames(events.at(-1)) > txFrames(events[0]));
});

async function startCapture(url: string, body: unknown): Promise<any> {
  const res = await fetch(new URL('/api/captures', url), { method: 'POST', body: JSON.stringify(body) });
  return { status: res.status, ...((await res.json()) as object) };
}

test('an interface capture names its target; unknown interfaces and switches are refused with 400', async (t) => {
  const { a, monitor, close } = await twoStacks();
  t.teardown(close);
  const started = await startCapture(monitor.url, { interface: 'a/0' });
  t.is(started.status, 201);
  t.is(started.target, 'a/0');
  await a.icmp.ping('10.0.0.2', { timeoutMs: 15_000 });
  const stopped: any = await (await fetch(new URL(`/api/captures/${started.id}/stop`, monitor.url), { method: 'POST' })).json();
  // The request out and the reply in, both seen at a's Ethernet layer (ARP too).
  t.true(stopped.frames >= 2, `frames ${stopped.frames}`);
  for (const bad of [{ interface: 'nope/0' }, { interface: 'a/7' }, { interface: 3 }, { switch: 'nope' }]) {
    const r = await startCapture(monitor.url, bad);
    t.is(r.status, 400, JSON.stringify(r));
    t.truthy(r.error);
  }
});

kernelTest(
  test,
  'a capture of a stack interface on an offloading TAP: the kernel\'s ping and a TCP transfer, as real frames tshark finds valid',
  async (t) => {
    await withNetns(async (ns) => {
      const tap = await openTap({ name: 'mtapc0', netns: ns.name, vnetHdr: true });
      await ns.ip('addr', 'add', '10.91.0.1/24', 'dev', 'mtapc0');
      await ns.ip('link', 'set', 'mtapc0', 'up');
      const stack = await createStack({ net: tapNetDevice(tap), ipv4: '10.91.0.2/24' });
      const monitor = await startMonitor({ title: 'tap', stacks: () => [{ name: 'm', stack }], switches: () => [], forwards: () => [], log: () => [] }, { intervalMs: 200 });
      try {
        const interfaces = (await (await fetch(new URL('/api/interfaces', monitor.url))).json()) as any[];
        t.is(interfaces[0].id, 'm/0');
        const started = await startCapture(monitor.url, { interface: 'm/0' });
        t.is(started.status, 201, JSON.stringify(started));
        await ns.exec('ping', ['-c', '3', '-i', '0.2', '-W', '5', '10.91.0.2']);
        // 2 MiB from Morgana to the kernel: super-frames out when the TAP takes TSO.
        const payload = Buffer.alloc(2 << 20, 0x5a);
        const server = stack.tcp.listen(9000, (conn) => conn.end(payload));
        const got = await ns.exec('sh', ['-c', 'socat -u TCP:10.91.0.2:9000 - | wc -c'], { timeoutMs: 30_000 });
        server.close();
        t.is(got.stdout.trim(), String(payload.length));
        const stopped: any = await (await fetch(new URL(`/api/captures/${started.id}/stop`, monitor.url), { method: 'POST' })).json();
        t.false(stopped.running);
        const pcap = Buffer.from(await (await fetch(new URL(`/api/captures/${started.id}.pcap`, monitor.url))).arrayBuffer());
        const file = join(tmpdir(), `morgana-tap-capture-${process.pid}.pcap`);
        writeFileSync(file, pcap);
        const fields = await tool('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-T', 'fields', '-e', 'frame.len', '-e', 'ip.src', '-e', 'icmp.type', '-e', 'tcp.len', '-e', 'ip.checksum.status', '-e', 'tcp.checksum.status']);
        t.truthy(fields, 'tshark runs');
        t.is(fields!.code, 0, fields!.out);
        // (tool() appends stderr: keep only tshark's field rows.)
        const rows = fields!.out.trim().split('\n').map((l) => l.split('\t')).filter((r) => /^\d+$/.test(r[0]!));
        t.is(rows.filter((r) => r[1] === '10.91.0.1' && r[2] === '8').length, 3, 'the kernel\'s echo requests');
        t.is(rows.filter((r) => r[1] === '10.91.0.2' && r[2] === '0').length, 3, 'our echo replies');
        const sent = rows.filter((r) => r[1] === '10.91.0.2' && r[3] !== undefined && r[3] !== '').reduce((n, r) => n + Number(r[3]), 0);
        t.true(sent >= payload.length, `every byte of the transfer is in the capture (${sent} of ${payload.length}, retransmissions included)`);
        t.true(rows.every((r) => Number(r[0]) <= 1514), `largest frame ${Math.max(...rows.map((r) => Number(r[0])))}`);
        // 2 = bad (tshark's checksum status); our frames and the kernel's as captured.
        t.deepEqual(rows.filter((r) => r[1] === '10.91.0.2' && (r[4] === '2' || r[5] === '2')), []);
      } finally {
        await monitor.close();
        await stack.close();
      }
    });
  },
  ['tshark', 'socat', 'ping'],
);

test('with a token, requests without it are refused', async (t) => {
  const sw = new VirtualSwitch();
  const monitor = await startMonitor({ title: 't', stacks: () => [], switches: () => [{ name: 'sw', sw }], forwards: () => [], log: () => [] }, { token: 'sesame' });
  t.teardown(() => monitor.close());
  t.true(monitor.url.endsWith('?token=sesame'));
  const base = monitor.url.replace(/\?.*$/, '');
  t.is((await fetch(new URL('/api/snapshot', base))).status, 401);
  t.is((await fetch(new URL('/metrics', base))).status, 401);
  t.is((await fetch(new URL('/api/snapshot?token=wrong', base))).status, 401);
  t.is((await fetch(new URL('/api/snapshot', base), { headers: { authorization: 'Bearer sesame' } })).status, 200);
  t.is((await fetch(monitor.url)).status, 200);
});

/** `morgana start --port 0 --dashboard`: resolves the site's and the dashboard's URLs. */
async function startUnikernel(): Promise<{ child: ChildProcess; site: string; dashboard: string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [cli, 'start', '--port', '0', '--dashboard'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let site: string | undefined;
  const dashboard = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no dashboard URL within 90 s; stderr:\n${stderr}`)), 90_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      site ??= /^Serving (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)?.[1];
      const m = /^Dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`exited with ${code}; stderr:\n${stderr}`)));
  });
  return { child, site: site!, dashboard, exited };
}

(CHROMIUM ? test : test.skip)('a browser sees the topology, the connection, growing charts, and downloads a capture (morgana start --dashboard)', async (t) => {
  t.timeout(180_000);
  const { chromium } = await import('playwright-core');
  const { child, site, dashboard, exited } = await startUnikernel();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 }, acceptDownloads: true });
    await page.goto(dashboard);
    await page.waitForSelector('body[data-connected="true"]');
    // The topology: the unikernel's stack, the gateway, the switch and the forwarded host port.
    await page.waitForSelector('[data-node-id="switch:vnet"]');
    await page.waitForSelector('[data-node-id="stack:vnet gateway"]');
    await page.waitForSelector('[data-kind="stack"]');
    await page.waitForSelector('[data-kind="host"]');
    // A connection through the forwarded port appears in the table while it is open.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const fetchOnce = () =>
      new Promise<number>((resolve, reject) => {
        http.get(site, { agent }, (res) => {
          let n = 0;
          res.on('data', (d: Buffer) => (n += d.length));
          res.on('end', () => resolve(n));
        }).on('error', reject);
      });
    t.true((await fetchOnce()) > 0);
    // The first snapshot with the connection may show it still opening (SYN-SENT): wait for the state.
    await page
      .waitForFunction(
        // Runs in the page (a string: this file is compiled without the DOM's types).
        `[...document.querySelectorAll('#connections tbody tr')].some((tr) => tr.textContent.includes('ESTABLISHED') && tr.textContent.includes(':80'))`,
        undefined,
        { timeout: 15_000 },
      )
      .catch(() => {});
    const rows = await page.$$eval('#connections tbody tr', (trs) => trs.map((tr) => tr.textContent));
    t.true(rows.some((r) => r!.includes('ESTABLISHED') && r!.includes(':80')), rows.join('\n'));
    // A transfer: the unikernel interface's chart records more bytes, and a non-zero rate.
    const chart = '#charts .chart[data-id^="stack"]';
    await page.waitForSelector(chart);
    const total = () => page.$eval(chart, (el: any) => Number(el.dataset.totalBytes));
    const before = await total();
    let rate = 0;
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline) {
      for (let i = 0; i < 20; i++) await fetchOnce();
      rate = Math.max(rate, await page.$eval(chart, (el: any) => Number(el.dataset.lastMbps)));
    }
    await page.waitForFunction((sel) => Number((globalThis as any).document.querySelector(sel).dataset.totalBytes) > 0, chart);
    t.true((await total()) > before, 'the chart grew');
    t.true(rate > 0, 'the chart showed a rate during the transfer');
    // Capture: start, fetch, stop, download; tshark reads the file.
    await page.click('#capture-start');
    await page.waitForSelector('#captures tr[data-running="true"]');
    await fetchOnce();
    await page.click('#capture-stop');
    const link = await page.waitForSelector('#captures a.download');
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = join(tmpdir(), `morgana-dashboard-${process.pid}.pcap`);
    await download.saveAs(file);
    const read = await tool('tshark', ['-r', file, '-Y', 'http.request', '-T', 'fields', '-e', 'http.request.method']);
    if (read) {
      t.is(read.code, 0, read.out);
      t.true(read.out.includes('GET'), read.out);
    }
    mkdirSync(artefacts, { recursive: true });
    await page.screenshot({ path: join(artefacts, 'dashboard.png'), fullPage: true });
    agent.destroy();
  } finally {
    await browser.close();
    child.kill('SIGINT');
  }
  t.is(await exited, 0);
});

(CHROMIUM ? test : test.skip)('the page reconnects when its server restarts (a restarted unikernel) and shows the new one', async (t) => {
  t.timeout(120_000);
  const { chromium } = await import('playwright-core');
  const sw = new VirtualSwitch();
  const source = (title: string) => ({ title, stacks: () => [], switches: () => [{ name: 'sw', sw }], forwards: () => [], log: () => [] });
  let monitor = await startMonitor(source('first run'), { intervalMs: 200 });
  const port = monitor.port;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(monitor.url);
    await page.waitForFunction(() => (globalThis as any).document.getElementById('title').textContent === 'first run');
    await monitor.close();
    await page.waitForSelector('body[data-connected="false"]');
    monitor = await startMonitor(source('second run'), { port, intervalMs: 200 });
    await page.waitForFunction(() => (globalThis as any).document.getElementById('title').textContent === 'second run', undefined, { timeout: 30_000 });
    t.is(await page.getAttribute('body', 'data-connected'), 'true');
  } finally {
    await browser.close();
    await monitor.close();
  }
});

test('DHCP leases (server and client side) and IP reassembly counters are in the snapshot', async (t) => {
  const { startDhcpServer } = await import('morgana');
  const sw = new VirtualSwitch();
  const server = await createStack({ net: sw.connect(), ipv4: '10.9.0.1/24' });
  const dhcpServer = startDhcpServer(server, { range: ['10.9.0.50', '10.9.0.60'], router: '10.9.0.1' });
  const client = await createStack({ net: sw.connect(), dhcp: true });
  const monitor = await startMonitor(
    {
      title: 'dhcp',
      stacks: () => [
        { name: 'server', stack: server },
        { name: 'client', stack: client },
      ],
      switches: () => [{ name: 'sw', sw }],
      forwards: () => [],
      dhcpServers: () => [{ name: 'server', leases: () => dhcpServer.leases(), now: () => server.clock.now() }],
      log: () => [],
    },
    { intervalMs: 200 },
  );
  t.teardown(async () => {
    await monitor.close();
    dhcpServer.close();
    await Promise.all([server.close(), client.close()]);
  });
  // A fragmented datagram (8 KiB over MTU 1500) to count reassembly.
  const got = new Promise<Buffer>((resolve) => server.udp.bind(9, (data) => resolve(data)));
  client.udp.bind(0, () => {}).send('10.9.0.1', 9, Buffer.alloc(8192, 7));
  t.is((await got).length, 8192);
  const dhcp = (await (await fetch(new URL('/api/dhcp', monitor.url))).json()) as any[];
  const served = dhcp.find((d) => d.role === 'server');
  const held = dhcp.find((d) => d.role === 'client');
  t.like(served, { via: 'server', address: client.address, mac: client.ethernet.net.mac, state: 'bound' });
  t.true(served.expiresInMs > 0);
  t.like(held, { via: 'client', address: `${client.address}/24`, state: 'from 10.9.0.1' });
  const reassembly = (await (await fetch(new URL('/api/reassembly', monitor.url))).json()) as any[];
  t.like(reassembly.find((r) => r.stack === 'server' && r.family === 'IPv4'), { reassembled: server.stats().ipv4.reassembly.reassembled });
  t.true(server.stats().ipv4.reassembly.reassembled >= 1);
});
