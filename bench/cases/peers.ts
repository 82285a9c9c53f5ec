/**
 * Peer baselines for issue 14: what other software reaches on the same machine, in the same run,
 * next to Morgana. Every case drives Debian's `iperf3 -c -t 3600` (128 KiB writes) against an
 * `iperf3` server and counts the bytes the client has written to its socket (`wchar` of
 * `/proc/<pid>/io`, its payload exactly; socket buffers make it lead the receiver by a few MiB,
 * which a steady-state rate does not see). Everything runs in network namespaces the cases create
 * and delete; forwarded host ports listen on a namespace's loopback, and no traffic leaves them.
 *
 * - `kernel iperf3 across a veth pair`: two namespaces joined by a veth pair; the kernel's own
 *   figure for a link, the baseline of the `iperf3 TCP, 1 stream` group (Morgana over TAP is
 *   measured against it there).
 * - `TCP forwarded into a namespace`: a host port (in a "host" namespace) forwarded into a
 *   "guest" namespace where `iperf3 -s` runs, by slirp4netns (its API socket's `add_hostfwd`,
 *   guest MTU 1500 and 65520), by pasta (`-t`, splicing kernel sockets; it needs an interface
 *   with a default route in the host namespace to start, so the case gives it a veth whose
 *   route leads nowhere, and `--runas 0` so it may enter the guest namespace), and by Morgana's
 *   `vnet` target (`--forward`, MTU 1500 and 65520): a unikernel running Morgana's iperf3 server
 *   behind the vnet gateway, started in the host namespace; and by `morgana deploy --net
 *   service0=user -p` (issue 17): a Solo5 image under the tests' stub tender whose guest runs
 *   Morgana's iperf3 server, behind the deploying process's user-mode gateway.
 *
 * Needs root, `iperf3`, and per case `slirp4netns` or `pasta`; skipped with the reason otherwise.
 * @module
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { commandUnavailable, kernelTestsUnavailable, type Netns, createNetns } from '../../__test__/helpers/netns.js';
import { type Running, morgana, project, start } from '../../__test__/helpers/unikernel.js';
import type { BenchCase } from '../harness.js';

const MIB = 1 << 20;
const FORWARD_GROUP = 'TCP forwarded into a namespace (kernel iperf3 -c → iperf3 server)';
const IPERF3_GROUP = 'iperf3 TCP, 1 stream';
const PORT = 5201;

/** Bytes process `pid` has written (`wchar`: its socket writes, for iperf3 -c). */
function written(pid: number): number {
  const m = /^wchar:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  if (!m) throw new Error(`no wchar in /proc/${pid}/io`);
  return Number(m[1]);
}

/** Waits until `read()` has grown by `bytes`, polling every millisecond. */
async function transferred(read: () => number, bytes: number, timeoutMs = 60_000): Promise<void> {
  const target = read() + bytes;
  const deadline = Date.now() + timeoutMs;
  while (read() < target) {
    if (Date.now() > deadline) throw new Error(`moved ${read() - target + bytes} of ${bytes} bytes within ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** Waits until something in `ns` listens on TCP `port`. */
async function listening(ns: Netns, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { stdout } = await ns.exec('ss', ['-Htln', `sport = :${port}`]);
    if (stdout.trim() !== '') return;
    await sleep(10);
  }
  throw new Error(`nothing listens on port ${port} in ${ns.name} after ${timeoutMs} ms`);
}

/** Starts `iperf3 -s` in `ns` and waits until it listens. */
async function iperf3Server(ns: Netns): Promise<ChildProcess> {
  const server = ns.spawn('iperf3', ['-s', '-p', String(PORT)], { stdio: 'ignore' });
  await listening(ns, PORT);
  return server;
}

/** What a running case holds; `close` undoes it. */
interface Rig {
  client: ChildProcess;
  close(): Promise<void>;
}

let rig: Rig | undefined;

/**
 * A case whose `prepare` builds the path and returns where the client connects (in `ns`, the
 * namespace the client runs in) and how to tear it all down.
 */
function clientCase(
  c: Pick<BenchCase, 'name' | 'group' | 'description' | 'baseline' | 'goal'>,
  needs: readonly string[],
  prepare: () => Promise<{ ns: Netns; host: string; port: number; close(): Promise<void> }>,
): BenchCase {
  return {
    ...c,
    unit: 'MiB',
    bytesPerOp: MIB,
    sampleMs: 500,
    skip: () => kernelTestsUnavailable() ?? ['iperf3', ...needs].map(commandUnavailable).find((r) => r !== undefined),
    async setup() {
      const path = await prepare();
      try {
        const client = path.ns.spawn('iperf3', ['-c', path.host, '-p', String(path.port), '-t', '3600'], { stdio: 'ignore' });
        rig = { client, close: path.close };
        await transferred(() => written(client.pid!), MIB, 15_000);
      } catch (error) {
        rig = undefined;
        await path.close();
        throw error;
      }
    },
    async run(n) {
      const pid = rig!.client.pid!;
      await transferred(() => written(pid), n * MIB);
    },
    async teardown() {
      const r = rig;
      rig = undefined;
      r?.client.kill();
      await r?.close();
    },
  };
}

/** Two fresh namespaces, deleted together. */
async function twoNamespaces(): Promise<{ host: Netns; guest: Netns; destroy(): Promise<void> }> {
  const host = await createNetns();
  const guest = await createNetns().catch(async (error) => {
    await host.destroy();
    throw error;
  });
  return {
    host,
    guest,
    async destroy() {
      await Promise.all([host.destroy(), guest.destroy()]);
    },
  };
}

// --- kernel across a veth pair ---------------------------------------------------------------

const vethCase = clientCase(
  {
    name: 'iperf3 · kernel client → kernel server across a veth pair',
    group: IPERF3_GROUP,
    baseline: true,
    description: "Debian iperf3 -c in one namespace to iperf3 -s in another, over a veth pair (MTU 1500); the client's socket writes",
  },
  [],
  async () => {
    const { host, guest, destroy } = await twoNamespaces();
    try {
      await host.ip('link', 'add', 'mveth0', 'type', 'veth', 'peer', 'name', 'mveth1', 'netns', guest.name);
      await host.ip('addr', 'add', '10.88.14.1/24', 'dev', 'mveth0');
      await guest.ip('addr', 'add', '10.88.14.2/24', 'dev', 'mveth1');
      await host.ip('link', 'set', 'mveth0', 'up');
      await guest.ip('link', 'set', 'mveth1', 'up');
      await iperf3Server(guest);
      return { ns: host, host: '10.88.14.2', port: PORT, close: destroy };
    } catch (error) {
      await destroy();
      throw error;
    }
  },
);

// --- slirp4netns -------------------------------------------------------------------------------

/** Sends one request to slirp4netns's API socket and returns its parsed answer. */
async function slirpApi(socketPath: string, request: unknown): Promise<{ return?: unknown; error?: { desc?: string } }> {
  const socket = net.connect(socketPath);
  await once(socket, 'connect');
  socket.end(JSON.stringify(request));
  let text = '';
  for await (const chunk of socket) text += chunk;
  return JSON.parse(text) as { return?: unknown; error?: { desc?: string } };
}

function slirpCase(mtu: number, c: Pick<BenchCase, 'name' | 'baseline' | 'goal'>): BenchCase {
  return clientCase(
    {
      ...c,
      group: FORWARD_GROUP,
      description: `slirp4netns --mtu ${mtu} for the guest namespace, add_hostfwd 127.0.0.1 → its iperf3 -s; iperf3 -c in the host namespace`,
    },
    ['slirp4netns'],
    async () => {
      const { host, guest, destroy } = await twoNamespaces();
      let slirp: ChildProcess | undefined;
      const apiDir = mkdtempSync(join(tmpdir(), 'morgana-slirp-'));
      const close = async () => {
        slirp?.kill();
        if (slirp && slirp.exitCode === null && slirp.signalCode === null) await once(slirp, 'exit');
        rmSync(apiDir, { recursive: true, force: true });
        await destroy();
      };
      try {
        await iperf3Server(guest);
        const api = join(apiDir, 'api.sock');
        slirp = host.spawn(
          'slirp4netns',
          ['--configure', '--mtu', String(mtu), '--disable-host-loopback', '--netns-type=path', '--api-socket', api, `/var/run/netns/${guest.name}`, 'tap0'],
          { stdio: 'ignore' },
        );
        const deadline = Date.now() + 10_000;
        while (!existsSync(api)) {
          if (slirp.exitCode !== null || Date.now() > deadline) throw new Error(`slirp4netns did not start (exit ${slirp.exitCode})`);
          await sleep(10);
        }
        const answer = await slirpApi(api, {
          execute: 'add_hostfwd',
          arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: 15_201, guest_port: PORT },
        });
        if (answer.error) throw new Error(`slirp4netns add_hostfwd: ${answer.error.desc ?? JSON.stringify(answer.error)}`);
        return { ns: host, host: '127.0.0.1', port: 15_201, close };
      } catch (error) {
        await close();
        throw error;
      }
    },
  );
}

// --- pasta -------------------------------------------------------------------------------------

const pastaCase = clientCase(
  {
    name: 'forward · pasta -t (spliced)',
    group: FORWARD_GROUP,
    description: 'pasta -t 25201:5201 --netns <guest> run in the host namespace; iperf3 -c to 127.0.0.1:25201 there',
  },
  ['pasta'],
  async () => {
    const { host, guest, destroy } = await twoNamespaces();
    let pasta: ChildProcess | undefined;
    const close = async () => {
      pasta?.kill();
      await destroy();
    };
    try {
      await iperf3Server(guest);
      // pasta copies its addresses and routes from a "template" interface with a default route;
      // this veth's route leads to nothing (its peer is in the same namespace, no one answers).
      await host.ip('link', 'add', 'mpasta0', 'type', 'veth', 'peer', 'name', 'mpasta1');
      await host.ip('addr', 'add', '10.88.15.1/24', 'dev', 'mpasta0');
      await host.ip('link', 'set', 'mpasta0', 'up');
      await host.ip('link', 'set', 'mpasta1', 'up');
      await host.ip('route', 'add', 'default', 'via', '10.88.15.254', 'dev', 'mpasta0');
      pasta = host.spawn('pasta', ['-f', '-q', '--runas', '0', '-t', `25201:${PORT}`, '--netns', `/var/run/netns/${guest.name}`], { stdio: 'ignore' });
      await listening(host, 25_201);
      return { ns: host, host: '127.0.0.1', port: 25_201, close };
    } catch (error) {
      await close();
      throw error;
    }
  },
);

// --- Morgana's vnet --forward ------------------------------------------------------------------

const IPERF3_UNIKERNEL = {
  'config.ts': `import { defaultNet, main, stack } from 'morgana/config';
export default main('./unikernel.ts', { stack: stack(defaultNet()) });
`,
  'unikernel.ts': `import { startIperf3Server } from 'morgana';
import type { Start } from 'morgana/config';
import type config from './config.js';

/** Morgana's iperf3 server on the unikernel's stack, until stopped. */
export const start: Start<typeof config> = async ({ stack }, { signal }) => {
  const server = startIperf3Server(stack as Parameters<typeof startIperf3Server>[0], { onError: () => {} });
  console.log('iperf3: listening on port 5201');
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  server.close();
};
`,
};

function vnetCase(mtu: number, c: Pick<BenchCase, 'name' | 'baseline' | 'goal'>): BenchCase {
  return clientCase(
    {
      ...c,
      group: FORWARD_GROUP,
      description: `a unikernel running Morgana's iperf3 server on the vnet target (--mtu ${mtu} --forward 0:5201), started in the host namespace; iperf3 -c to the forwarded port`,
    },
    [],
    async () => {
      const dir = project(IPERF3_UNIKERNEL);
      const buildDir = join(dir, 'build');
      const args = ['-f', join(dir, 'config.ts'), '-b', buildDir];
      for (const step of [['configure', ...args, '-t', 'vnet', '--mtu', String(mtu), '--forward', `0:${PORT}`], ['build', ...args]]) {
        const r = await morgana(step);
        if (r.code !== 0) throw new Error(`morgana ${step.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
      }
      const host = await createNetns();
      let unikernel: Running | undefined;
      const close = async () => {
        await unikernel?.stop();
        await host.destroy();
      };
      try {
        unikernel = start(buildDir, ['--ipv4-only'], ['ip', 'netns', 'exec', host.name]);
        const port = Number((await unikernel.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+) ->/, 30_000))[1]);
        await unikernel.waitFor(/iperf3: listening/, 30_000);
        return { ns: host, host: '127.0.0.1', port, close };
      } catch (error) {
        await close();
        throw error;
      }
    },
  );
}

/**
 * Issue 17: `morgana deploy --net service0=user -p 0:5201`, started in the host namespace, of a
 * Solo5 image under the tests' stub tender, whose guest is a Morgana stack in Node running
 * Morgana's iperf3 server (helpers/solo5-guest.mjs) on the TAP the tender attached in its own
 * namespace; the gateway relays the forwarded port into it. The gateway's TAP carries 64 KiB
 * TCP super-frames (`virtio_net_hdr`), which the kernel cuts on the bridge to the tender's plain
 * TAP; the stand-in guest, a Morgana stack in Node reading 1,514-byte frames as a Solo5 tender
 * does, takes about as much CPU per byte as the deploying process (4.2 against 5.1 ms of CPU per
 * MB in one A/B), where slirp4netns has the kernel's TCP on the other end.
 */
const deployCase = clientCase(
  {
    name: 'forward · Morgana deploy --net service0=user (Solo5 stub tender), MTU 1500',
    group: FORWARD_GROUP,
    goal: { minRatio: 1, source: 'issue 17: at least slirp4netns (MTU 1500, the group baseline)' },
    description: 'morgana deploy --net service0=user -p 0:5201 in the host namespace; the stub tender execs a Morgana stack with the iperf3 server; iperf3 -c to the forwarded port',
  },
  ['gcc', 'unshare', 'setpriv'],
  async () => {
    const { buildImage, buildStubTender, elfNote, abiDesc, NT_ABI, NT_MFT } = await import('../../__test__/helpers/solo5-fixtures.js');
    const { encodeManifest } = await import('../../ts/solo5/manifest.js');
    const { mkdirSync } = await import('node:fs');
    const { spawn } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'morgana-bench-deploy-'));
    mkdirSync(join(dir, 'spt'));
    const tender = buildStubTender(join(dir, 'spt'), 'solo5-spt', 2);
    const image = buildImage(dir, join(dir, 'web.spt'), {
      abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)),
      manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'service0', type: 'NET_BASIC' }])),
    });
    const host = await createNetns();
    const cli = join(process.cwd(), 'dist/cli.js');
    const child = spawn('ip', ['netns', 'exec', host.name, process.execPath, cli, 'deploy', image, '--tender', tender, '--net', 'service0=user', '-p', `0:${PORT}`], {
      env: { ...process.env, STUB_GUEST: join(process.cwd(), '__test__/helpers/solo5-guest.mjs'), STUB_NODE: process.execPath, GUEST_IPERF3: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const close = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'close');
      }
      await host.destroy();
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      const deadline = Date.now() + 60_000;
      while (!/guest ready/.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`morgana deploy did not start:\n${output}`);
        await sleep(50);
      }
      const port = Number(/forwarding tcp 127\.0\.0\.1:(\d+) ->/.exec(output)![1]);
      return { ns: host, host: '127.0.0.1', port, close };
    } catch (error) {
      await close();
      throw error;
    }
  },
);

const VNET_65520 = 'forward · Morgana vnet --forward, MTU 65520';

export const cases: BenchCase[] = [
  vethCase,
  slirpCase(1500, { name: 'forward · slirp4netns, MTU 1500', baseline: true }),
  slirpCase(65_520, { name: 'forward · slirp4netns, MTU 65520', baseline: VNET_65520 }),
  pastaCase,
  vnetCase(1500, { name: 'forward · Morgana vnet --forward, MTU 1500', goal: { minRatio: 3, source: 'issue 14: ≥ 3× slirp4netns at MTU 1500' } }),
  vnetCase(65_520, { name: VNET_65520, goal: { minRatio: 1, source: 'issue 14: ≥ 1× slirp4netns at MTU 65520' } }),
  deployCase,
];
