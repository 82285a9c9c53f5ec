/**
 * Forwarded-port throughput into a deployed Solo5 guest on Morgana's user-mode gateway (issue
 * 17), next to slirp4netns forwarding into a network namespace, measured in the same run.
 *
 * Both sides serve the same one-byte protocol: after the client's first byte, the server writes
 * 64 KiB blocks with backpressure until the connection closes; `run(n)` waits until `n` more MiB
 * arrived at a client connected to the forwarded host port on 127.0.0.1.
 * - slirp4netns (the baseline): a Node server on the kernel stack of a namespace (`unshare
 *   --net`), slirp4netns 1500-byte MTU (its default) with a `add_hostfwd` port forward.
 * - Morgana: `deployUnikernel` with `--net service0=user` and a forward; the tender is the stub
 *   tender of the tests, whose guest is a Morgana stack in Node (helpers/solo5-guest.mjs) on the
 *   TAP it attached, bridged in the tender's namespace to the gateway's TAP (1500-byte MTU).
 * Needs root (namespaces, the stub's TAP), gcc and slirp4netns; skipped with the reason otherwise.
 *
 * What limits the Morgana side: a CPU profile of the deploying process at ~90 MiB/s showed it
 * half idle; the sender is the stand-in guest, a Morgana stack in a Node process, where the
 * baseline's sender is the kernel's TCP. A real unikernel (MirageOS on hvt/spt) replaces it.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Unikernel, deployUnikernel, encodeManifest } from '../../dist/index.js';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from '../../__test__/helpers/solo5-fixtures.js';
import type { BenchCase } from '../harness.js';
import { Counter, firstLine } from '../tap-stack.js';

const MIB = 1 << 20;
const GROUP = 'forwarded port → guest, receive';

const SOURCE = `
const net = require('net');
const block = Buffer.alloc(65536, 0x5a);
net.createServer((c) => {
  c.on('error', () => {});
  c.once('data', () => {
    const pump = () => { while (!c.destroyed && c.write(block)); };
    c.on('drain', pump);
    c.resume();
    pump();
  });
}).listen(9, '0.0.0.0', () => console.log('ready'));
`;

function unavailable(needSlirp: boolean): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, TAP devices)';
  const gcc = gccUnavailable();
  if (gcc) return gcc;
  if (needSlirp && spawnSync('slirp4netns', ['--version']).status !== 0) return 'needs slirp4netns';
  return undefined;
}

interface Rig {
  counter: Counter;
  close(): Promise<void>;
}
let rig: Rig | undefined;

async function client(port: number): Promise<{ conn: net.Socket; counter: Counter }> {
  const conn = net.connect(port, '127.0.0.1');
  await once(conn, 'connect');
  const counter = new Counter();
  conn.on('error', () => {});
  conn.on('data', (d: Buffer) => counter.add(d.length));
  conn.write('G');
  await counter.more(1, 30_000);
  return { conn, counter };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = once(child, 'exit');
  child.kill('SIGKILL');
  await done;
}

/** A free loopback TCP port. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function slirpRig(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-bench-slirp-'));
  const server = spawn('unshare', ['--net', process.execPath, '-e', SOURCE], { stdio: ['ignore', 'pipe', 'inherit'] });
  const api = path.join(dir, 'api.sock');
  let slirp: ChildProcess | undefined;
  try {
    await firstLine(server);
    slirp = spawn('slirp4netns', ['--configure', '--api-socket', api, String(server.pid), 'tap0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    for (let i = 0; i < 200; i++) {
      if (spawnSync('test', ['-S', api]).status === 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const port = await freePort();
    const sock = net.connect(api);
    await once(sock, 'connect');
    sock.end(JSON.stringify({ execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: port, guest_port: 9 } }));
    const [reply] = (await once(sock, 'data')) as [Buffer];
    if (!reply.toString().includes('return')) throw new Error(`slirp4netns add_hostfwd: ${reply.toString()}`);
    const { conn, counter } = await client(port);
    const s = slirp;
    rig = {
      counter,
      close: async () => {
        conn.destroy();
        await stop(s);
        await stop(server);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (slirp) await stop(slirp);
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function morganaRig(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-bench-user-net-'));
  mkdirSync(path.join(dir, 'spt'));
  const tender = buildStubTender(path.join(dir, 'spt'), 'solo5-spt', 2);
  const image = buildImage(dir, path.join(dir, 'web.spt'), {
    abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)),
    manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
  });
  let uk: Unikernel | undefined;
  try {
    uk = await deployUnikernel({
      image,
      tender,
      userNets: [{ name: 'service0', forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 9 }] }],
      env: { ...process.env, STUB_GUEST: path.resolve('__test__/helpers/solo5-guest.mjs'), STUB_NODE: process.execPath },
    });
    const end = Date.now() + 60_000;
    while (!uk.console().some((l) => /guest ready/.test(l.line))) {
      if (Date.now() > end || !uk.running) throw new Error(`guest not ready: ${uk.console().map((l) => l.line).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { conn, counter } = await client(uk.gateways[0]!.forwards[0]!.hostPort);
    const u = uk;
    rig = {
      counter,
      close: async () => {
        conn.destroy();
        await u.stop({ timeoutMs: 2000 });
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await uk?.stop({ timeoutMs: 2000 });
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function teardown(): Promise<void> {
  const r = rig;
  rig = undefined;
  await r?.close();
}

export const cases: BenchCase[] = [
  {
    name: 'forwarded port → namespace · slirp4netns (kernel TCP in the namespace)',
    group: GROUP,
    baseline: true,
    bytesPerOp: MIB,
    unit: 'MiB',
    samples: 5,
    sampleMs: 500,
    skip: () => unavailable(true),
    setup: slirpRig,
    run: (n) => rig!.counter.more(n * MIB),
    teardown,
  },
  {
    name: 'forwarded port → Solo5 guest · Morgana user-mode gateway (deploy --net service0=user)',
    group: GROUP,
    bytesPerOp: MIB,
    unit: 'MiB',
    samples: 5,
    sampleMs: 500,
    goal: { minRatio: 1, source: 'issue 17' },
    skip: () => unavailable(false),
    setup: morganaRig,
    run: (n) => rig!.counter.more(n * MIB),
    teardown,
  },
];
