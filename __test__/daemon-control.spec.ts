/**
 * The daemon's control socket under hostile or careless clients: garbage, wrong shapes, another
 * protocol version, an oversized line, idle connections and too many of them. Each is refused
 * with a typed error, counted, and the daemon keeps answering.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { until } from './helpers/wait.js';
import { MorganaError, PROTOCOL_VERSION, type Solo5Daemon, daemonRequest, startDaemon } from 'morgana';

const root = mkdtempSync(path.join(tmpdir(), 'morgana-daemon-control-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

/** Sends raw bytes on a fresh connection; resolves with every line received until the daemon closes. */
function raw(sock: string, bytes: Buffer | string | undefined): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    c.on('close', () => resolve(text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)));
    c.on('connect', () => {
      if (bytes !== undefined) c.write(bytes);
    });
  });
}

async function withDaemon(name: string, limits: Parameters<typeof startDaemon>[1], body: (d: Solo5Daemon) => Promise<void>): Promise<void> {
  const d = await startDaemon(path.join(root, name), limits);
  try {
    await body(d);
  } finally {
    await d.close();
  }
}

test('malformed requests are refused with typed errors, counted, and the daemon keeps serving', async (t) => {
  await withDaemon('malformed', {}, async (d) => {
    const cases: [string | Buffer, string, RegExp][] = [
      [Buffer.from([0x00, 0xff, 0xfe, 0x0a]), 'ERR_DAEMON_REQUEST', /not JSON/],
      ['[1,2]\n', 'ERR_DAEMON_REQUEST', /JSON object/],
      ['{"cmd":5}\n', 'ERR_DAEMON_REQUEST', /no string "cmd"/],
      ['{"cmd":"frob"}\n', 'ERR_DAEMON_REQUEST', /unknown command 'frob'/],
      ['{"cmd":"stop"}\n', 'ERR_DAEMON_REQUEST', /needs a "name"/],
      ['{"cmd":"console","name":"x","count":-1}\n', 'ERR_DAEMON_REQUEST', /whole number/],
      [`{"v":${PROTOCOL_VERSION + 1},"cmd":"ping"}\n`, 'ERR_DAEMON_PROTOCOL', /speaks version 1/],
    ];
    for (const [bytes, code, message] of cases) {
      const lines = await raw(d.socket, bytes);
      t.is(lines.length, 1, String(bytes));
      t.like(lines[0], { v: PROTOCOL_VERSION, ok: false, code });
      t.regex(String(lines[0]!.message), message);
    }
    t.is(d.counters.unix.malformed, cases.length);
    const pong = await daemonRequest(d.dir, { cmd: 'ping' });
    t.is(pong.protocol, PROTOCOL_VERSION);
    t.is(pong.v, PROTOCOL_VERSION);
  });
});

test('an oversized request line is refused without being buffered whole', async (t) => {
  await withDaemon('oversized', { limits: { maxLineBytes: 4096 } }, async (d) => {
    const lines = await raw(d.socket, Buffer.alloc(1 << 20, 0x61));
    t.like(lines[0], { ok: false, code: 'ERR_DAEMON_REQUEST_TOO_LARGE' });
    t.is(d.counters.unix.oversized, 1);
    // A long line that fits is fine.
    const fits = await raw(d.socket, `{"cmd":"ping","pad":"${'x'.repeat(3000)}"}\n`);
    t.like(fits[0], { ok: true });
    t.true((await daemonRequest(d.dir, { cmd: 'status' })).ok as boolean);
  });
});

test('idle connections time out, and a connection cap refuses the extra ones, with counters', async (t) => {
  await withDaemon('idle', { limits: { idleTimeoutMs: 400, maxConnections: 3 } }, async (d) => {
    // A silent connection, and one that sends half a request, are closed after the idle timeout.
    const [silent, half] = await Promise.all([raw(d.socket, undefined), raw(d.socket, '{"cmd":"pi')]);
    t.like(silent[0], { ok: false, code: 'ERR_DAEMON_IDLE' });
    t.like(half[0], { ok: false, code: 'ERR_DAEMON_IDLE' });
    t.is(d.counters.unix.idleTimeouts, 2);

    // Three idle connections fill the cap; the fourth is refused at once.
    const held = [raw(d.socket, undefined), raw(d.socket, undefined), raw(d.socket, undefined)];
    
    await until('three connections open', () => d.counters.unix.active === 3);
    const busy = await raw(d.socket, '{"cmd":"ping"}\n');
    t.like(busy[0], { ok: false, code: 'ERR_DAEMON_BUSY' });
    t.is(d.counters.unix.refusedBusy, 1);
    for (const h of await Promise.all(held)) t.like(h[0], { code: 'ERR_DAEMON_IDLE' });
    // Once they are gone, requests are served again.
    await until('connections closed', () => d.counters.unix.active === 0);
    const status = await daemonRequest(d.dir, { cmd: 'status' });
    const counters = (status.counters as { unix: Record<string, number> }).unix;
    t.is(counters.refusedBusy, 1);
    t.is(counters.idleTimeouts, 5);
    t.deepEqual(status.limits, { maxLineBytes: 65536, idleTimeoutMs: 400, maxConnections: 3 });
  });
});

test('a request that is still being handled is not cut by the idle timeout (console --follow)', async (t) => {
  await withDaemon('follow', { limits: { idleTimeoutMs: 200 } }, async (d) => {
    const events: unknown[] = [];
    const follow = daemonRequest(d.dir, { cmd: 'events', follow: true }, (m) => {
      if (m.event) events.push(m.event);
    });
    await new Promise((r) => setTimeout(r, 700));
    // The follower is still there: a policy change reaches it.
    await daemonRequest(d.dir, { cmd: 'policy-set', path: 'acme', policy: { maxUnikernels: 2 } });
    
    await until('event followed', () => events.some((e) => (e as { type: string }).type === 'policy-set'));
    t.is(d.counters.unix.idleTimeouts, 0);
    await d.close();
    await t.throwsAsync(follow, { instanceOf: MorganaError });
  });
});

test('the event log is bounded in memory and on disk, and survives a reopen', async (t) => {
  const { EventLog } = await import('../ts/daemon/events.js');
  const file = path.join(root, 'events.jsonl');
  const log = new EventLog(file, { capacity: 50, maxFileBytes: 8192 });
  for (let i = 0; i < 1000; i++) log.add('created', { name: `u${i}`, message: 'x'.repeat(20) });
  t.is(log.list().length, 50);
  t.is(log.list().at(-1)!.name, 'u999');
  const { statSync, appendFileSync } = await import('node:fs');
  t.true(statSync(file).size <= 8192);
  // A torn last line (a crash mid-write) is skipped; numbering continues.
  appendFileSync(file, '{"seq":100');
  const again = new EventLog(file, { capacity: 50, maxFileBytes: 8192 });
  t.is(again.list().at(-1)!.seq, 1000);
  t.is(again.add('destroyed', { name: 'u999' }).seq, 1001);
  t.deepEqual(again.list(2, 'u999').map((e) => e.type), ['created', 'destroyed']);
  // The event written after the torn line is intact on the next open.
  const third = new EventLog(file, { capacity: 50, maxFileBytes: 8192 });
  t.like(third.list().at(-1), { seq: 1001, type: 'destroyed', name: 'u999' });
});
