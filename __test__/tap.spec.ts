import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NetDevice, type TapDevice, checksum, ipv4, openTap, parseMac, pcapRecorder } from 'morgana';
import { frame, netConformance } from './helpers/net-conformance.js';
import { type Netns, kernelSuite, kernelTest, withNetns } from './helpers/netns.js';
import { tapPair } from './helpers/tap-pair.js';

const CHILD = fileURLToPath(new URL('./helpers/tap-child.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * A copy of what the child needs (package.json, dist/, native/, the child script) in a fresh
 * world-readable directory, so an unprivileged user can run it wherever the checkout lives (a
 * clone inside a 0700 directory is not readable by `nobody`).
 */
function readableChildCopy(): { child: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'morgana-tap-child-'));
  for (const part of ['package.json', 'dist', 'native', '__test__/helpers/tap-child.mjs']) {
    cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  }
  chmodSync(dir, 0o755);
  return { child: join(dir, '__test__/helpers/tap-child.mjs'), dir };
}

kernelSuite(test, 'TAP conformance', () =>
  netConformance(test, 'TAP', async () => {
    const { a, b, cleanup } = await tapPair();
    return { a, b, cleanup };
  }),
);

// --- option and error checks that need no kernel privileges -------------------------------

test('invalid options are refused before anything is opened', async (t) => {
  await t.throwsAsync(openTap({ name: 'mtap0', mtu: 20 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.throwsAsync(openTap({ name: 'mtap0', mtu: 70_000 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.throwsAsync(openTap({ name: 'mtap0', mac: 'nonsense' }), { code: 'ERR_INVALID_MAC' });
  await t.throwsAsync(openTap({ name: 42 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' });
  // Names are checked in Rust before any system call.
  for (const name of ['', 'a-name-longer-than-15', 'a/b', 'a b']) {
    await t.throwsAsync(openTap({ name }), { code: 'ERR_TAP_OPEN' }, JSON.stringify(name));
  }
});

test('a missing network namespace gives ERR_TAP_NETNS', async (t) => {
  const error = await t.throwsAsync(openTap({ name: 'mtap0', netns: `morgana-missing-${process.pid}` }), {
    code: 'ERR_TAP_NETNS',
  });
  t.regex(error!.message, /morgana-missing-\d+.*No such file or directory/);
  t.regex(error!.message, /ip netns add/);
});

// --- kernel interop without the stack: a hand-built peer --------------------------------------

const KERNEL_IP = Buffer.from([10, 77, 0, 1]);
const OUR_IP = Buffer.from([10, 77, 0, 2]);

function arpReply(ourMac: Buffer, request: Buffer): Buffer {
  const out = Buffer.alloc(60); // padded to the Ethernet minimum, as a NIC would
  request.copy(out, 0, 6, 12); // to the asker
  ourMac.copy(out, 6);
  out.writeUInt16BE(0x0806, 12);
  out.writeUInt16BE(1, 14); // Ethernet
  out.writeUInt16BE(0x0800, 16); // IPv4
  out[18] = 6;
  out[19] = 4;
  out.writeUInt16BE(2, 20); // reply
  ourMac.copy(out, 22);
  request.copy(out, 28, 38, 42); // sender IP = the address asked for
  request.copy(out, 32, 22, 28); // target = the asker's MAC and IP
  request.copy(out, 38, 28, 32);
  return out;
}

function echoReply(ourMac: Buffer, request: Buffer): Buffer | undefined {
  const packet = ipv4.parse(request.subarray(14));
  if (packet.protocol !== ipv4.PROTOCOL.ICMP || packet.payload[0] !== 8 || packet.dst !== '10.77.0.2') return undefined;
  const icmp = Buffer.from(packet.payload);
  icmp[0] = 0; // echo reply
  icmp.writeUInt16BE(0, 2);
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = ipv4.emit({ src: '10.77.0.2', dst: packet.src, protocol: ipv4.PROTOCOL.ICMP }, icmp);
  const out = Buffer.alloc(Math.max(60, 14 + ip.length));
  request.copy(out, 0, 6, 12);
  ourMac.copy(out, 6);
  out.writeUInt16BE(0x0800, 12);
  ip.copy(out, 14);
  return out;
}

function send(device: NetDevice, bytes: Buffer): void {
  device.write(bytes.length, (buffer) => bytes.copy(buffer));
}

async function tshark(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('tshark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

kernelTest(
  test,
  'the kernel ARPs for and pings a hand-built peer on a TAP; tshark decodes the capture cleanly',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'morgana-tap-'));
    const file = join(dir, 'ping.pcap');
    try {
      await withNetns(async (ns) => {
        const tap = await openTap({ name: 'mtap0', netns: ns.name });
        const device = pcapRecorder(tap, file);
        const ourMac = parseMac(device.mac);
        const arpRequests: Buffer[] = [];
        let echoes = 0;
        try {
          device.listen((f) => {
            const type = f.readUInt16BE(12);
            if (type === 0x0806 && f.readUInt16BE(20) === 1 && f.subarray(38, 42).equals(OUR_IP)) {
              arpRequests.push(Buffer.from(f));
              send(device, arpReply(ourMac, f));
            } else if (type === 0x0800) {
              const reply = echoReply(ourMac, f);
              if (reply) {
                echoes++;
                send(device, reply);
              }
            }
          });
          await ns.ip('addr', 'add', '10.77.0.1/24', 'dev', 'mtap0');
          await ns.ip('link', 'set', 'mtap0', 'up');
          const kernelMac = JSON.parse((await ns.ip('-j', 'link', 'show', 'mtap0')).stdout)[0].address as string;
          const ping = await ns.exec('ping', ['-c', '1', '-W', '2', '10.77.0.2'], { allowFailure: true });

          t.true(arpRequests.length >= 1, 'the kernel asked who has 10.77.0.2');
          const request = arpRequests[0]!;
          t.deepEqual(request.subarray(0, 6), Buffer.alloc(6, 0xff), 'broadcast');
          t.deepEqual(request.subarray(6, 12), parseMac(kernelMac));
          t.is(request.readUInt16BE(12), 0x0806);
          t.deepEqual(request.subarray(28, 32), KERNEL_IP, 'sender IP');
          t.deepEqual(request.subarray(38, 42), OUR_IP, 'target IP');
          t.is(ping.code, 0, `ping accepted our hand-built replies:\n${ping.stdout}${ping.stderr}`);
          t.regex(ping.stdout, /1 received/);
          t.is(echoes, 1);
          const neigh = await ns.ip('neigh', 'show', '10.77.0.2', 'dev', 'mtap0');
          t.true(neigh.stdout.includes(device.mac), `kernel neighbour entry: ${neigh.stdout}`);
        } finally {
          await device.close();
        }
      });

      // The capture: both directions, decodable, nothing malformed, checksums checked.
      const checks = ['-o', 'ip.check_checksum:TRUE']; // ICMP checksums are always checked
      const bad = await tshark(['-r', file, ...checks, '-Y', '_ws.malformed || _ws.expert.severity >= warning']);
      t.is(bad.code, 0, bad.stderr);
      t.is(bad.stdout, '', 'no malformed packets, no warnings');
      const fields = await tshark(['-r', file, '-T', 'fields', '-e', 'arp.opcode', '-e', 'icmp.type', '-e', 'ip.src']);
      t.is(fields.code, 0, fields.stderr);
      const rows = fields.stdout.trim().split('\n');
      t.true(rows.includes('1\t\t'), `ARP request in ${JSON.stringify(rows)}`);
      t.true(rows.includes('2\t\t'), 'ARP reply');
      t.true(rows.includes('\t8\t10.77.0.1'), 'ICMP echo request from the kernel');
      t.true(rows.includes('\t0\t10.77.0.2'), 'ICMP echo reply from us');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  ['ping', 'tshark'],
);

// --- clear errors -------------------------------------------------------------------------

kernelTest(
  test,
  'opening without permission gives ERR_TAP_PERMISSION (child as nobody)',
  async (t) => {
    const copy = readableChildCopy();
    t.teardown(() => rmSync(copy.dir, { recursive: true, force: true }));
    await withNetns(async (ns) => {
      // Inside the test namespace, so even a wrongly successful open could not touch the host.
      const r = await ns.exec(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, copy.child, 'open'],
        { allowFailure: true },
      );
      t.is(r.code, 0, r.stderr);
      const result = JSON.parse(r.stdout.trim()) as { code?: string; message?: string };
      t.is(result.code, 'ERR_TAP_PERMISSION', r.stdout);
      t.regex(result.message!, /\/dev\/net\/tun.*(Permission denied|Operation not permitted)/);
      t.regex(result.message!, /CAP_NET_ADMIN/);
    });
  },
  ['setpriv'],
);

// --- life cycle ---------------------------------------------------------------------------

kernelTest(test, 'close while frames are flowing: clean, and nothing is delivered afterwards', async (t) => {
  const { a, b, cleanup } = await tapPair();
  try {
    let received = 0;
    b.listen(() => received++);
    let n = 0;
    let pumping = true;
    const pump = () => {
      if (!pumping) return;
      for (let i = 0; i < 64; i++) {
        const bytes = frame(b.mac, a.mac, Buffer.alloc(46, n++ & 0xff));
        send(a, bytes);
      }
      setImmediate(pump);
    };
    pump();
    const deadline = Date.now() + 10_000;
    while (received < 2000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    t.true(received >= 2000, `frames flowing before close (${received})`);
    await b.close();
    const atClose = received;
    const statsAtClose = b.stats();
    await new Promise((r) => setTimeout(r, 100)); // a keeps writing towards the closed device
    pumping = false;
    t.is(received, atClose, 'no frame delivered after close');
    t.deepEqual(b.stats(), statsAtClose);
    t.throws(() => send(b, frame(a.mac, b.mac, Buffer.alloc(46))), { code: 'ERR_NET_CLOSED' });
    t.true(a.stats().txFrames > 2000);
    await b.close(); // idempotent
  } finally {
    await cleanup();
  }
});

kernelTest(test, 'the mtu option sets the kernel side and jumbo frames pass; longer ones are dropped', async (t) => {
  const { a, b, ns, cleanup } = await tapPair({ mtu: 9000 });
  try {
    t.is(a.mtu, 9000);
    const link = JSON.parse((await ns.ip('-j', 'link', 'show', a.name)).stdout)[0] as { mtu: number };
    t.is(link.mtu, 9000);
    const got = new Promise<Buffer>((resolve) => b.listen((f) => f.readUInt16BE(12) === 0x88b5 && resolve(f)));
    const jumbo = frame(b.mac, a.mac, Buffer.alloc(9000, 0xab));
    send(a, jumbo);
    t.deepEqual(await got, jumbo);
    send(a, frame(b.mac, a.mac, Buffer.alloc(9001)));
    t.is(a.stats().txDropped, 1);
    t.is(a.stats().txFrames, 1);
  } finally {
    await cleanup();
  }
});

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(ns: Netns, mode: string, timeoutMs = 20_000): { child: ChildProcess; done: Promise<ChildResult> } {
  const child = spawn(process.execPath, [CHILD, mode, ns.name], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<ChildResult>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { child, done };
}

kernelTest(test, 'a process exiting with TAPs open and frames flowing exits 0, no crash', async (t) => {
  await withNetns(async (ns) => {
    const r = await runChild(ns, 'exit-flowing').done;
    t.is(r.signal, null, r.stderr);
    t.is(r.code, 0, r.stdout + r.stderr);
    t.regex(r.stdout, /exiting with 2 TAPs open after 2000 frames/);
    t.is(r.stderr, '');
  });
});

kernelTest(test, 'an open TAP keeps the event loop alive; close releases it', async (t) => {
  await withNetns(async (ns) => {
    const closed = await runChild(ns, 'close', 10_000).done;
    t.is(closed.code, 0, closed.stderr);
    t.is(closed.stdout.trim(), 'closed');

    const open = runChild(ns, 'keep-open');
    // From the moment it says it opened the device (a loaded machine may take seconds to get there).
    const opened = new Promise<'open'>((resolve) => open.child.stdout!.on('data', (d: Buffer) => d.includes('open') && resolve('open')));
    t.is(await Promise.race([open.done, opened]), 'open', 'the child opened the device');
    const early = await Promise.race([open.done, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 1500))]);
    t.is(early, 'alive', 'still running 1.5 s after opening');
    open.child.kill('SIGTERM');
    const killed = await open.done;
    t.is(killed.signal, 'SIGTERM');
    t.is(killed.stdout.trim(), 'open');
  });
});

// --- transmission through the writer thread ----------------------------------------------

/**
 * A kernel-side listener: an AF_PACKET socket on the interface (64 MiB receive buffer, so it
 * drops nothing) that checks each 0x88b5 frame against the burst's pattern, and on stdin EOF
 * prints the sequence numbers it saw, the malformed count and the socket's own drop count.
 */
const PACKET_LISTENER = `
import json, os, select, socket, struct, sys
ETH_P = 0x88b5
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P))
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], ETH_P))
s.setblocking(False)
seqs, bad = [], 0
def drain():
    global bad
    while True:
        try:
            f = s.recv(70000)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == 100:  # ENETDOWN, reported once when the TAP closes; frames stay queued
                continue
            raise
        seq = struct.unpack_from('!I', f, 14)[0]
        n = 60 + seq % 1455
        if len(f) != n or f[18:] != bytes([seq & 0xff]) * (n - 18):
            bad += 1
        seqs.append(seq)
print('ready', flush=True)
while True:
    r, _, _ = select.select([s, 0], [], [])
    if s in r:
        drain()
    if 0 in r and os.read(0, 64) == b'':
        drain()
        packets, drops = struct.unpack('II', s.getsockopt(263, 6, 8))  # SOL_PACKET, PACKET_STATISTICS
        print(json.dumps({'seqs': seqs, 'bad': bad, 'drops': drops}), flush=True)
        break
`;

kernelTest(
  test,
  'a burst of 10,000 frames reaches a kernel listener in order; what the ring dropped is counted exactly',
  async (t) => {
    await withNetns(async (ns) => {
      const tap = await openTap({ name: 'mtap0', netns: ns.name });
      const listener = ns.spawn('python3', ['-c', PACKET_LISTENER, 'mtap0']);
      let out = '';
      listener.stdout!.on('data', (d) => (out += d));
      listener.stderr!.on('data', (d) => (out += d));
      const exited = once(listener, 'exit');
      try {
        await ns.ip('link', 'set', 'mtap0', 'up');
        while (!out.includes('ready\n')) {
          if (listener.exitCode !== null) throw new Error(`listener failed: ${out}`);
          await new Promise((r) => setTimeout(r, 10));
        }
        const N = 10_000;
        const src = parseMac(tap.mac);
        const lengthOf = (seq: number) => 60 + (seq % 1455);
        // One synchronous burst, far faster than the kernel takes frames: the ring fills.
        for (let seq = 0; seq < N; seq++) {
          const length = lengthOf(seq);
          tap.write(length, (buffer) => {
            buffer.fill(0xff, 0, 6);
            src.copy(buffer, 6);
            buffer.writeUInt16BE(0x88b5, 12);
            buffer.writeUInt32BE(seq, 14);
            buffer.fill(seq & 0xff, 18, length);
            return length;
          });
        }
        // Every frame is written or dropped once the writer has drained the ring.
        const deadline = Date.now() + 10_000;
        while (tap.stats().txFrames + tap.stats().txDropped < N && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
        }
        const stats = tap.stats();
        t.is(stats.txFrames + stats.txDropped, N, 'each frame written or counted as dropped');
        t.true(stats.txFrames >= 1024, `at least the ring's worth is written (${stats.txFrames})`);
        t.log(`written ${stats.txFrames}, dropped on a full ring ${stats.txDropped}`);
        // The kernel's own count of frames received on the interface agrees.
        let kernelRx = -1;
        while (Date.now() < deadline) {
          const link = JSON.parse((await ns.ip('-s', '-j', 'link', 'show', 'mtap0')).stdout)[0];
          kernelRx = link.stats64.rx.packets as number;
          if (kernelRx >= stats.txFrames) break;
          await new Promise((r) => setTimeout(r, 5));
        }
        t.is(kernelRx, stats.txFrames, 'the kernel received exactly the frames counted as written');

        await tap.close();
        t.deepEqual(tap.stats(), stats, 'close had nothing left to flush; counters frozen');
        listener.stdin!.end();
        await exited;
        t.is(out.split('\n').length, 3, out);
        const result = JSON.parse(out.slice(out.indexOf('\n') + 1)) as { seqs: number[]; bad: number; drops: number };
        t.is(result.drops, 0, 'the listener itself dropped nothing');
        t.is(result.bad, 0, 'every frame arrived intact');
        t.is(result.seqs.length, stats.txFrames, 'what arrived is what was counted as written');
        t.true(
          result.seqs.every((seq, i) => i === 0 || seq > result.seqs[i - 1]!),
          'in order, no duplicates',
        );
        t.is(result.seqs[0], 0, 'the first frame found an empty ring');
        t.is(
          result.seqs.reduce((sum, seq) => sum + lengthOf(seq), 0),
          stats.txBytes,
          'txBytes counts the frames that arrived',
        );
      } finally {
        await tap.close();
        listener.kill();
      }
    });
  },
  ['python3'],
);

kernelTest(test, 'close flushes the ring: frames queued before close are written, none after', async (t) => {
  await withNetns(async (ns) => {
    const tap = await openTap({ name: 'mtap0', netns: ns.name });
    try {
      await ns.ip('link', 'set', 'mtap0', 'up');
      const src = parseMac(tap.mac);
      const N = 3000;
      for (let seq = 0; seq < N; seq++) {
        tap.write(64, (buffer) => {
          buffer.fill(0xff, 0, 6);
          src.copy(buffer, 6);
          buffer.writeUInt16BE(0x88b5, 12);
          buffer.writeUInt32BE(seq, 14);
          return 64;
        });
      }
      // Close at once, with frames still queued: close writes them before it returns.
      await tap.close();
      const stats = tap.stats();
      t.is(stats.txFrames + stats.txDropped, N, 'nothing is left in between after close');
      t.is(stats.txBytes, stats.txFrames * 64);
      t.throws(() => tap.write(64, () => 64), { code: 'ERR_NET_CLOSED' });
      await new Promise((r) => setTimeout(r, 50));
      t.deepEqual(tap.stats(), stats, 'nothing is written after close');
    } finally {
      await tap.close();
    }
  });
});

// --- the receive buffer: reused only when the listener kept nothing ---------------------------

/** Frame `i` of the receive-buffer tests: its own length (60 to 1514 B) and content. */
function numberedFrame(dst: string, src: string, i: number): Buffer {
  const length = 60 + ((i * 7919) % 1455);
  const out = Buffer.alloc(length);
  parseMac(dst).copy(out, 0);
  parseMac(src).copy(out, 6);
  out.writeUInt16BE(0x88b5, 12);
  out.writeUInt32BE(i, 14);
  for (let at = 18; at < length; at++) out[at] = (i * 31 + at) & 0xff;
  return out;
}

/**
 * Sends frames 0…n-1 from `a` across the bridge to `b` in rounds small enough for the kernel's
 * queues (the test waits for each round, so nothing is lost to a full queue); `onRound` waits.
 */
async function sendNumbered(a: TapDevice, b: TapDevice, n: number, arrived: () => number): Promise<void> {
  const ROUND = 200;
  for (let start = 0; start < n; start += ROUND) {
    const end = Math.min(n, start + ROUND);
    for (let i = start; i < end; i++) {
      const bytes = numberedFrame(b.mac, a.mac, i);
      a.write(bytes.length, (buffer) => bytes.copy(buffer));
    }
    const deadline = Date.now() + 10_000;
    while (arrived() < end) {
      if (Date.now() > deadline) throw new Error(`only ${arrived()} of ${end} frames arrived`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
}

kernelTest(test, 'receive buffer: frames a listener keeps stay intact while later batches arrive; a reusing listener that keeps nothing sees one buffer', async (t) => {
  const { a, b, cleanup } = await tapPair();
  try {
    const N = 3000;
    // A plain listener owns every frame: none may be overwritten by a later batch.
    const kept: Buffer[] = [];
    b.listen((f) => {
      if (f.readUInt16BE(12) === 0x88b5) kept.push(f);
    });
    await sendNumbered(a, b, N, () => kept.length);
    const batches = new Set(kept.map((f) => f.buffer));
    t.true(batches.size > 1, 'kept frames fill more than one receive slab');
    const bad = kept.filter((f) => !f.equals(numberedFrame(b.mac, a.mac, f.readUInt32BE(14))));
    t.is(bad.length, 0, 'kept frames are intact');
    t.deepEqual(kept.map((f) => f.readUInt32BE(14)), [...Array(N).keys()]);

    // A reusing listener that copies what it needs: every frame intact when it is called, and
    // all batches read into the same memory.
    const buffers = new Set<ArrayBufferLike>();
    let seen = 0;
    let intact = 0;
    b.listenReusing!((f) => {
      if (f.readUInt16BE(12) !== 0x88b5) return true;
      buffers.add(f.buffer);
      seen++;
      if (f.equals(numberedFrame(b.mac, a.mac, f.readUInt32BE(14)))) intact++;
      return true;
    });
    await sendNumbered(a, b, N, () => seen);
    t.is(intact, N);
    t.is(buffers.size, 1, 'one receive buffer for every batch');

    // A reusing listener that keeps every 10th frame (returns false for it): those stay intact.
    const some: Buffer[] = [];
    seen = 0;
    b.listenReusing!((f) => {
      if (f.readUInt16BE(12) !== 0x88b5) return true;
      seen++;
      if (f.readUInt32BE(14) % 10 !== 0) return true;
      some.push(f);
      return false;
    });
    await sendNumbered(a, b, N, () => seen);
    t.is(some.length, N / 10);
    t.is(some.filter((f) => !f.equals(numberedFrame(b.mac, a.mac, f.readUInt32BE(14)))).length, 0, 'frames kept by a reusing listener are intact');
  } finally {
    await cleanup();
  }
});

kernelTest(test, 'receive: a listener that closes its device mid-batch gets no further frame, and the process stays sound', async (t) => {
  const { a, b, cleanup } = await tapPair();
  try {
    let seen = 0;
    b.listen((f) => {
      if (f.readUInt16BE(12) !== 0x88b5) return;
      seen++;
      if (seen === 5) void b.close();
    });
    // 200 frames queue up together, so the close happens inside a batch with more behind it.
    const bytes = numberedFrame(b.mac, a.mac, 1);
    for (let i = 0; i < 200; i++) a.write(bytes.length, (buffer) => bytes.copy(buffer));
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (let i = 0; i < 50; i++) a.write(bytes.length, (buffer) => bytes.copy(buffer));
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.is(seen, 5);
    t.is(b.stats().rxFrames, 5);
  } finally {
    await cleanup();
  }
});
