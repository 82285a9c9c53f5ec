/**
 * HTTP requests per second with `wrk` (issue 9): one `node:http` handler served by a Morgana
 * stack on a TAP device in a network namespace the benchmark creates, `wrk` running in that
 * namespace against it (kernel TCP → TAP → Morgana TCP → Node's http parser), next to the same
 * handler on Node's own `node:http` server with `wrk` over loopback, measured in the same run.
 *
 * `wrk` is a whole process, so it is started once in `setup` and keeps its connections busy
 * until `teardown`; `run(n)` waits until the server has answered `n` more requests. The rate is
 * therefore the server's steady-state requests per second under `wrk`'s load, without the
 * process start-up; `wrk`'s own summary (its Requests/sec over its whole run) is printed on
 * stderr at teardown as a cross-check. Needs root and `wrk`; skipped with the reason otherwise.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { kernelTestsUnavailable } from '../../__test__/helpers/netns.js';
import type { BenchCase } from '../harness.js';
import { Counter, type TapStack, tapStack } from '../tap-stack.js';

const BODY = 'Hello, world!\n';
const CONNECTIONS = 16;
/** Long samples even with --quick: wrk keeps two cores busy, and short samples swing widely. */
const SAMPLE_MS = 500;
const GROUP = `HTTP GET, wrk 1 thread ${CONNECTIONS} connections`;

/** The handler both servers run: a fixed small text response, counted. */
function handler(served: Counter): http.RequestListener {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
    served.add();
  };
}

let wrkMissing: string | null = null;
function needWrk(): string | undefined {
  if (wrkMissing === null) {
    const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
    // wrk prints its version and usage and exits non-zero; only a failed spawn means it is missing.
    wrkMissing = r.error ? 'needs `wrk` (Debian package wrk)' : '';
  }
  return wrkMissing || undefined;
}

const wrkArgs = (url: string) => ['-t1', `-c${CONNECTIONS}`, '-d3600s', url];

/** Stops wrk with SIGINT (it then prints its summary) and reports its Requests/sec on stderr. */
async function stopWrk(wrk: ChildProcess, output: () => string, label: string): Promise<void> {
  if (wrk.exitCode === null && wrk.signalCode === null) {
    const exited = new Promise<void>((r) => wrk.once('exit', () => r()));
    wrk.kill('SIGINT');
    const timer = setTimeout(() => wrk.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  const rps = /Requests\/sec:\s*([\d.]+)/.exec(output())?.[1];
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: .*/.exec(output())?.[0];
  process.stderr.write(`  wrk's own figure · ${label}: ${rps ?? '?'} requests/s${errors ? ` (${errors})` : ''}\n`);
}

function collect(child: ChildProcess): () => string {
  let text = '';
  child.stdout?.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (text += c.toString()));
  return () => text;
}

// --- node:http over loopback (the baseline) -----------------------------------------------------

let nodeRig: { server: http.Server; wrk: ChildProcess; output: () => string; served: Counter } | undefined;

// --- The same handler on a Morgana stack on TAP ---------------------------------------------

let tapRig: { rig: TapStack; server: http.Server; wrk: ChildProcess; output: () => string; served: Counter } | undefined;

export const cases: BenchCase[] = [
  {
    name: 'HTTP GET · node:http loopback (wrk)',
    group: GROUP,
    baseline: true,
    unit: 'requests',
    description: `wrk -t1 -c${CONNECTIONS} (keep-alive) over 127.0.0.1 against node:http, ${BODY.length}-byte body; steady-state rate, wrk started in setup`,
    skip: needWrk,
    sampleMs: SAMPLE_MS,
    async setup() {
      const served = new Counter();
      const server = http.createServer(handler(served));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as AddressInfo;
      const wrk = spawn('wrk', wrkArgs(`http://127.0.0.1:${port}/`), { stdio: ['ignore', 'pipe', 'pipe'] });
      const output = collect(wrk);
      nodeRig = { server, wrk, output, served };
      await served.more(CONNECTIONS, 10_000);
    },
    async run(n) {
      await nodeRig!.served.more(n);
    },
    async teardown() {
      if (!nodeRig) return;
      const { server, wrk, output } = nodeRig;
      nodeRig = undefined;
      await stopWrk(wrk, output, 'node:http loopback');
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  },
  {
    name: 'HTTP GET · Morgana on TAP ← kernel wrk',
    group: GROUP,
    unit: 'requests',
    description: `wrk -t1 -c${CONNECTIONS} in a namespace → kernel TCP → TAP → Morgana TCP → node:http parser (server.emit('connection')), same handler`,
    goal: { minRatio: 1, source: 'issue 14: HTTP with wrk over TAP ≥ 1.0× node:http on loopback' },
    skip: () => kernelTestsUnavailable() ?? needWrk(),
    sampleMs: SAMPLE_MS,
    async setup() {
      const rig = await tapStack(21);
      try {
        const served = new Counter();
        const server = http.createServer(handler(served));
        rig.stack.tcp.listen(8080, (conn) => server.emit('connection', conn));
        const wrk = rig.ns.spawn('wrk', wrkArgs(`http://${rig.stackAddress}:8080/`), { stdio: ['ignore', 'pipe', 'pipe'] });
        const output = collect(wrk);
        tapRig = { rig, server, wrk, output, served };
        await served.more(CONNECTIONS, 10_000);
      } catch (error) {
        tapRig = undefined;
        await rig.close();
        throw error;
      }
    },
    async run(n) {
      await tapRig!.served.more(n);
    },
    async teardown() {
      if (!tapRig) return;
      const { rig, server, wrk, output } = tapRig;
      tapRig = undefined;
      await stopWrk(wrk, output, 'Morgana on TAP');
      server.closeAllConnections();
      server.close();
      await rig.close();
    },
  },
];
