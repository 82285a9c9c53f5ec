/**
 * The daemon at albatross's level, driven through its protocol with small Node.js "unikernels"
 * (plain scripts run as TypeScript unikernels are): metrics scraped and checked by promtool,
 * console followers, the event log, hierarchical policies, CPU pinning, block devices, restoring
 * state after a restart, and update with roll-back.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { type DaemonEvent, type DaemonUnikernelInfo, MorganaError, type Solo5Daemon, daemonRequest, startDaemon } from 'morgana';
import { until } from './helpers/wait.js';
import { alive, killAll } from './helpers/process.js';

const root = mkdtempSync(path.join(tmpdir(), 'morgana-daemon-features-'));
const pids = new Set<number>();
test.after.always(() => {
  killAll(pids);
  rmSync(root, { recursive: true, force: true });
});

/** A script that prints numbered lines, burns a little CPU and writes a file, until SIGTERM. */
const busy = path.join(root, 'busy.mjs');
writeFileSync(
  busy,
  `import { writeFileSync, fsyncSync, openSync, closeSync } from 'node:fs';
let n = 0;
console.log('boot ' + process.argv.slice(2).join(' '));
const t = setInterval(() => {
  const end = Date.now() + 20;
  while (Date.now() < end);
  console.log('line ' + n++);
  const fd = openSync(process.cwd() + '/scratch-' + process.pid, 'w');
  writeFileSync(fd, Buffer.alloc(65536, n));
  fsyncSync(fd);
  closeSync(fd);
}, 50);
process.on('SIGTERM', () => { clearInterval(t); console.log('bye'); process.exit(0); });
`,
);
/** A script that fails while booting. */
const failing = path.join(root, 'failing.mjs');
writeFileSync(failing, `console.log('booting a broken version'); setTimeout(() => process.exit(3), 100);\n`);


async function run(d: Solo5Daemon, name: string, extra: Record<string, unknown> = {}, entry = busy): Promise<DaemonUnikernelInfo> {
  const r = await daemonRequest(d.dir, { cmd: 'run', options: { entry, name, cwd: root, args: [name] }, ...extra } as never);
  const uk = r.unikernel as DaemonUnikernelInfo;
  if (uk.pid) pids.add(uk.pid);
  return uk;
}

async function ps(d: Solo5Daemon): Promise<DaemonUnikernelInfo[]> {
  return (await daemonRequest(d.dir, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[];
}

async function events(d: Solo5Daemon, name?: string): Promise<DaemonEvent[]> {
  const out: DaemonEvent[] = [];
  await daemonRequest(d.dir, { cmd: 'events', count: 1000, ...(name ? { name } : {}) }, (m) => {
    if (m.event) out.push(m.event as DaemonEvent);
  });
  return out;
}

async function refusal(p: Promise<unknown>, code: string): Promise<string> {
  try {
    await p;
  } catch (error) {
    if (error instanceof MorganaError && error.code === code) return error.message;
    throw error;
  }
  throw new Error(`expected ${code}`);
}

const promtool = spawnSync('promtool', ['--version']).status === 0;

test.serial('metrics: scraped twice, counters increase, promtool accepts both formats; stats --json', async (t) => {
  const d = await startDaemon(path.join(root, 'metrics'), { metrics: '127.0.0.1:0' });
  try {
    await run(d, 'acme:web');
    const url = `http://127.0.0.1:${d.metricsAddress!.port}/metrics`;
    const value = (body: string, series: string): number => {
      const m = new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(body);
      if (!m) throw new Error(`no ${series} in\n${body}`);
      return Number(m[1]);
    };
    await until('some CPU time', async () => value(await (await fetch(url)).text(), 'morgana_unikernel_cpu_seconds_total{name="acme:web",mode="user"}') > 0);
    const first = await (await fetch(url)).text();
    await until('CPU time and writes grow', async () => {
      const body = await (await fetch(url)).text();
      return (
        value(body, 'morgana_unikernel_cpu_seconds_total{name="acme:web",mode="user"}') + value(body, 'morgana_unikernel_cpu_seconds_total{name="acme:web",mode="system"}') >
          value(first, 'morgana_unikernel_cpu_seconds_total{name="acme:web",mode="user"}') + value(first, 'morgana_unikernel_cpu_seconds_total{name="acme:web",mode="system"}') &&
        value(body, 'morgana_unikernel_block_write_bytes_total{name="acme:web"}') > value(first, 'morgana_unikernel_block_write_bytes_total{name="acme:web"}')
      );
    });
    const second = await (await fetch(url)).text();
    t.true(value(second, 'morgana_unikernel_uptime_seconds{name="acme:web"}') > value(first, 'morgana_unikernel_uptime_seconds{name="acme:web"}'));
    t.is(value(second, 'morgana_unikernel_up{name="acme:web",target="node"}'), 1);
    t.true(value(second, 'morgana_unikernel_resident_memory_bytes{name="acme:web"}') > 1 << 20);
    t.true(value(second, 'morgana_daemon_control_connections_total{listener="unix"}') >= 1);
    const open = await fetch(url, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
    t.regex(open.headers.get('content-type')!, /application\/openmetrics-text/);
    const openBody = await open.text();
    t.regex(openBody, /# TYPE morgana_unikernel_cpu_seconds counter\n/);
    t.regex(openBody, /# EOF\n$/);
    t.is((await fetch(url.replace('/metrics', '/other'))).status, 404);
    if (promtool) {
      for (const body of [first, second]) {
        const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
        t.is(check.status, 0, `${check.stdout}${check.stderr}`);
      }
    } else t.log('promtool not installed: format not cross-checked');

    const stats = (await daemonRequest(d.dir, { cmd: 'stats', name: 'acme:web' })).stats as { process: { rssKiB: number }; io: { writeBytes: number }; target: string };
    t.is(stats.target, 'node');
    t.true(stats.io.writeBytes > 0);
    await daemonRequest(d.dir, { cmd: 'stop', name: 'acme:web' });
  } finally {
    await d.close();
  }
});

test.serial('console: two followers see the same lines, with history on attach; events for each lifecycle step', async (t) => {
  const d = await startDaemon(path.join(root, 'console'));
  try {
    await run(d, 'chatty');
    await until('history', async () => {
      let n = 0;
      await daemonRequest(d.dir, { cmd: 'console', name: 'chatty', count: 100 }, (m) => void (m.console && n++));
      return n >= 5;
    });
    const seen: string[][] = [[], []];
    const followers = seen.map((lines) =>
      daemonRequest(d.dir, { cmd: 'console', name: 'chatty', count: 1000, follow: true }, (m) => {
        if (m.console) lines.push((m.console as { line: string }).line);
      }),
    );
    await until('both follow live lines', () => seen.every((s) => s.filter((l) => l.startsWith('line')).length >= 15));
    await daemonRequest(d.dir, { cmd: 'stop', name: 'chatty' });
    await Promise.all(followers);
    t.is(seen[0]![0], 'boot chatty');
    t.deepEqual(seen[0], seen[1]);
    t.is(seen[0]!.at(-1), 'bye');

    // A unikernel that fails and is restarted once by its policy.
    await run(d, 'flaky', {}, failing);
    await daemonRequest(d.dir, { cmd: 'stop', name: 'flaky' });
    await daemonRequest(d.dir, {
      cmd: 'run',
      options: { entry: failing, name: 'flaky', cwd: root, restart: { mode: 'on-failure', maxRestarts: 1, backoffMs: 10, exitCodes: [3] } },
    } as never);
    await until('flaky gave up', async () => (await ps(d)).find((u) => u.name === 'flaky')?.state === 'exited');
    await daemonRequest(d.dir, { cmd: 'stop', name: 'flaky' });
    const steps = (name: string, list: DaemonEvent[]): string[] => list.filter((e) => e.name === name).map((e) => e.type + (e.type === 'exited' ? `:${e.reason}` : ''));
    // A TypeScript unikernel's exit 1 (an uncaught exception) is its own failure, not a tender error.
    const crash = path.join(root, 'crash.mjs');
    writeFileSync(crash, `setTimeout(() => { throw new Error('boom'); }, 50);\n`);
    await run(d, 'crashy', {}, crash);
    await until('crashy exited', async () => (await ps(d)).find((u) => u.name === 'crashy')?.state === 'exited');
    const crashy = (await ps(d)).find((u) => u.name === 'crashy')!;
    t.like(crashy.lastExit, { kind: 'guest-exit', code: 1 });
    t.regex(crashy.lastExit!.description, /exited with status 1 \(failure/);
    await daemonRequest(d.dir, { cmd: 'stop', name: 'crashy' });
    // ... and its restart policy applies to it.
    await daemonRequest(d.dir, { cmd: 'run', options: { entry: crash, name: 'crashy', cwd: root, restart: { mode: 'on-failure', maxRestarts: 2, backoffMs: 10 } } } as never);
    await until('crashy gave up', async () => {
      const u = (await ps(d)).find((x) => x.name === 'crashy')!;
      return u.state === 'exited' && u.restarts === 2;
    });
    t.deepEqual(steps('crashy', await events(d)).slice(4), ['started', 'created', 'exited:guest-exit', 'restarted', 'started', 'exited:guest-exit', 'restarted', 'started', 'exited:guest-exit']);
    await daemonRequest(d.dir, { cmd: 'stop', name: 'crashy' });
    const all = await events(d);
    t.deepEqual(steps('chatty', all), ['started', 'created', 'exited:clean', 'destroyed']);
    t.deepEqual(steps('flaky', all).slice(4), ['started', 'created', 'exited:guest-exit', 'restarted', 'started', 'exited:guest-exit', 'destroyed']);
    for (const e of all) t.regex(e.time, /^\d{4}-\d\d-\d\dT/);
    t.true(all.every((e, i) => i === 0 || e.seq === all[i - 1]!.seq + 1));
    // Persisted: a new daemon on the same directory lists them.
    await d.close();
    const again = await startDaemon(path.join(root, 'console'));
    t.deepEqual((await events(again)).slice(0, all.length), all);
    await again.close();
  } finally {
    await d.close();
  }
});

test.serial('policies: hierarchical limits checked when set and at every create, with clear refusals', async (t) => {
  const d = await startDaemon(path.join(root, 'policies'));
  try {
    const set = (p: string, policy: object) => daemonRequest(d.dir, { cmd: 'policy-set', path: p, policy } as never);
    await set('acme', { maxUnikernels: 2, memoryMB: 256, cpus: [0], blockMB: 2 });
    t.regex(await refusal(set('acme:team', { maxUnikernels: 3, memoryMB: 100, cpus: [0], blockMB: 1 }), 'ERR_DAEMON_POLICY'), /maxUnikernels 3 exceeds the parent's 2 \('acme'\)/);
    t.regex(await refusal(set('acme:team', { maxUnikernels: 1, memoryMB: 100, blockMB: 1 }), 'ERR_DAEMON_POLICY'), /cpus is unrestricted but the parent allows only 0/);
    t.regex(await refusal(set('acme:team', { maxUnikernels: 1, memoryMB: 100, cpus: [0, 1], blockMB: 1 }), 'ERR_DAEMON_POLICY'), /cpus 1 not allowed by the parent/);
    await set('acme:team', { maxUnikernels: 1, memoryMB: 128, cpus: [0], blockMB: 1 });
    // A parent may not shrink below an existing child.
    t.regex(await refusal(set('acme', { maxUnikernels: 2, memoryMB: 64, cpus: [0], blockMB: 2 }), 'ERR_DAEMON_POLICY'), /existing policy of 'acme:team' would exceed it \(memoryMB 128 exceeds the parent's 64\)/);
    t.regex(await refusal(set('acme', { frob: 1 }), 'ERR_DAEMON_BAD_POLICY'), /unknown policy field 'frob'/);

    const a = await run(d, 'acme:team:a', {}, busy);
    t.deepEqual(a.cpus, [0]); // pinned to the policy's CPUs
    t.regex(await refusal(run(d, 'acme:team:b'), 'ERR_DAEMON_POLICY'), /'acme:team:b' refused by the policy of 'acme:team': unikernels would be 2, limit 1 \(in use 1\)/);
    t.regex(
      await refusal(daemonRequest(d.dir, { cmd: 'run', options: { entry: busy, name: 'acme:big', cwd: root, memoryMB: 300 } } as never), 'ERR_DAEMON_POLICY'),
      /'acme:big' refused by the policy of 'acme': memory would be 300 MB, limit 256 MB \(in use 0 MB\)/,
    );
    t.regex(await refusal(run(d, 'acme:pinned', { cpus: [1] }), 'ERR_DAEMON_POLICY'), /CPU 1 not allowed \(allowed cpus 0\)/);
    await run(d, 'acme:b');
    t.regex(await refusal(run(d, 'acme:c'), 'ERR_DAEMON_POLICY'), /policy of 'acme': unikernels would be 3, limit 2 \(in use 2\)/);
    // Usage counts when a policy is set.
    t.regex(await refusal(set('acme', { maxUnikernels: 1 }), 'ERR_DAEMON_POLICY'), /2 unikernels already run under it/);
    // Outside any policy: no limit.
    await run(d, 'other:x');
    // Block quota.
    await daemonRequest(d.dir, { cmd: 'block-create', name: 'acme:team:disk', size: 1 << 20 });
    t.regex(await refusal(daemonRequest(d.dir, { cmd: 'block-create', name: 'acme:team:disk2', size: 512 }), 'ERR_DAEMON_POLICY'), /policy of 'acme:team': block storage would be 2 MB, limit 1 MB/);
    const refused = (await events(d)).filter((e) => e.type === 'refused');
    t.true(refused.length >= 8);
    t.true(refused.some((e) => e.name === 'acme:team:b' && /limit 1/.test(e.message!)));
    const policies = (await daemonRequest(d.dir, { cmd: 'policy-list' })).policies as Record<string, unknown>;
    t.deepEqual(Object.keys(policies), ['acme', 'acme:team']);
    for (const u of await ps(d)) await daemonRequest(d.dir, { cmd: 'stop', name: u.name });
  } finally {
    await d.close();
  }
});

test.serial('CPU pinning: the tender runs with the requested affinity (/proc/PID/status)', async (t) => {
  const d = await startDaemon(path.join(root, 'pinning'));
  try {
    const cpus = availableParallelism() > 1 ? [1] : [0];
    const uk = await run(d, 'pinned', { cpus });
    const allowed = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${uk.pid}/status`, 'utf8'))?.[1];
    t.is(allowed, String(cpus[0]));
    // The pid is the unikernel's own (taskset execs it): its console is there.
    await until('console', async () => {
      let text = '';
      await daemonRequest(d.dir, { cmd: 'console', name: 'pinned' }, (m) => void (m.console && (text += (m.console as { line: string }).line)));
      return text.includes('boot pinned');
    });
    const unpinned = await run(d, 'free');
    t.not(/^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${unpinned.pid}/status`, 'utf8'))?.[1], undefined);
    t.is((await refusal(run(d, 'bad', { cpus: [] }), 'ERR_DAEMON_REQUEST')).includes('cpus'), true);
    // Variables a client adds (run -d --metrics passes the monitor request this way) reach the unikernel.
    const envy = path.join(root, 'envy.mjs');
    writeFileSync(envy, `console.log('MONITOR=' + process.env.MORGANA_TEST_VAR); setInterval(() => {}, 1000);\n`);
    const e = (await daemonRequest(d.dir, { cmd: 'run', options: { entry: envy, name: 'envy', env: { MORGANA_TEST_VAR: 'from the client' } } } as never)).unikernel as DaemonUnikernelInfo;
    pids.add(e.pid!);
    await until('env printed', async () => {
      let text = '';
      await daemonRequest(d.dir, { cmd: 'console', name: 'envy' }, (m) => void (m.console && (text += (m.console as { line: string }).line)));
      return text.includes('MONITOR=from the client');
    });
    await refusal(daemonRequest(d.dir, { cmd: 'run', options: { entry: envy, name: 'envy2', env: { 'A=B': 'x' } } } as never), 'ERR_DAEMON_BAD_RUN');
    await daemonRequest(d.dir, { cmd: 'stop', name: 'envy' });
    await daemonRequest(d.dir, { cmd: 'stop', name: 'pinned' });
    await daemonRequest(d.dir, { cmd: 'stop', name: 'free' });
    t.false(alive(uk.pid!));
  } finally {
    await d.close();
  }
});

test.serial('block devices: create, list, dump/restore round trip (SHA-256), size limit, delete', async (t) => {
  const d = await startDaemon(path.join(root, 'blocks'));
  try {
    const size = 1 << 20;
    const created = (await daemonRequest(d.dir, { cmd: 'block-create', name: 'acme:data', size })).block as { size: number; allocated: number };
    t.is(created.size, size);
    t.is(await refusal(daemonRequest(d.dir, { cmd: 'block-create', name: 'acme:data', size }), 'ERR_DAEMON_BLOCK_EXISTS'), "block device 'acme:data' exists");
    await refusal(daemonRequest(d.dir, { cmd: 'block-create', name: 'odd', size: 1000 }), 'ERR_DAEMON_BAD_BLOCK');
    const payload = randomBytes(700_000);
    async function* chunks(buf: Buffer): AsyncGenerator<Buffer> {
      for (let i = 0; i < buf.length; i += 50_000) yield buf.subarray(i, i + 50_000);
    }
    const restored = await daemonRequest(d.dir, { cmd: 'block-restore', name: 'acme:data' }, undefined, chunks(payload));
    t.is(restored.written, payload.length);
    const dump = async (): Promise<Buffer> => {
      const parts: Buffer[] = [];
      await daemonRequest(d.dir, { cmd: 'block-dump', name: 'acme:data' }, (m) => {
        if (typeof m.data === 'string') parts.push(Buffer.from(m.data, 'base64'));
      });
      return Buffer.concat(parts);
    };
    const expected = Buffer.concat([payload, Buffer.alloc(size - payload.length)]);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const first = await dump();
    t.is(first.length, size);
    t.is(sha(first), sha(expected));
    // Too much data: refused, the device unchanged.
    t.regex(await refusal(daemonRequest(d.dir, { cmd: 'block-restore', name: 'acme:data' }, undefined, chunks(randomBytes(size + 512))), 'ERR_DAEMON_BLOCK_TOO_LARGE'), /larger than block device/);
    t.is(sha(await dump()), sha(expected));
    const list = (await daemonRequest(d.dir, { cmd: 'block-list' })).blocks as { name: string; size: number }[];
    t.deepEqual(list.map((b) => [b.name, b.size]), [['acme:data', size]]);
    await daemonRequest(d.dir, { cmd: 'block-delete', name: 'acme:data' });
    await refusal(daemonRequest(d.dir, { cmd: 'block-info', name: 'acme:data' }), 'ERR_DAEMON_BLOCK_UNKNOWN');
  } finally {
    await d.close();
  }
});

test.serial('lifecycle: a restarted daemon adopts what runs and starts again, in order, what a reboot killed', async (t) => {
  const dir = path.join(root, 'lifecycle');
  let d = await startDaemon(dir);
  const second = await run(d, 'second', { startOrder: 2 });
  const first = await run(d, 'first', { startOrder: 1 });
  const kept = await run(d, 'kept', { startOrder: 3 });
  const once = await run(d, 'once');
  await d.close();
  // A "reboot": all but one die while no daemon runs.
  for (const u of [second, first, once]) process.kill(u.pid!, 'SIGKILL');
  await until('killed', () => ![second, first, once].some((u) => alive(u.pid!)));
  d = await startDaemon(dir);
  try {
    const list = await ps(d);
    const by = new Map(list.map((u) => [u.name, u]));
    t.is(by.get('kept')!.pid, kept.pid);
    t.true(by.get('kept')!.adopted);
    for (const name of ['first', 'second']) {
      t.is(by.get(name)!.state, 'running');
      t.not(by.get(name)!.pid, name === 'first' ? first.pid : second.pid);
      pids.add(by.get(name)!.pid!);
    }
    t.is(by.get('once')!.state, 'exited');
    t.regex(by.get('once')!.lastExit!.description, /while the daemon was not running/);
    const restored = (await events(d)).filter((e) => e.type === 'restored').map((e) => e.name);
    t.deepEqual(restored, ['first', 'second']);
    for (const u of list) await daemonRequest(d.dir, { cmd: 'stop', name: u.name });
  } finally {
    await d.close();
  }
});

test.serial('update: a new image that fails during boot is rolled back; a good one replaces the old', async (t) => {
  const d = await startDaemon(path.join(root, 'update'));
  try {
    const before = await run(d, 'svc', { startOrder: 1 });
    const message = await refusal(daemonRequest(d.dir, { cmd: 'update', name: 'svc', image: failing, bootMs: 5000 }), 'ERR_DAEMON_UPDATE_FAILED');
    t.regex(message, /failed during boot \(guest exited with status 3\); rolled back to .*busy\.mjs/);
    const [after] = await ps(d);
    t.is(after!.state, 'running');
    t.is(after!.image, busy);
    t.is(after!.startOrder, 1);
    t.not(after!.pid, before.pid);
    pids.add(after!.pid!);
    const updated = path.join(root, 'busy2.mjs');
    writeFileSync(updated, readFileSync(busy, 'utf8').replace("'boot '", "'boot v2 '"));
    const r = await daemonRequest(d.dir, { cmd: 'update', name: 'svc', image: updated, bootMs: 500 });
    const now = r.unikernel as DaemonUnikernelInfo;
    pids.add(now.pid!);
    t.is(now.image, updated);
    await until('v2 console', async () => {
      let text = '';
      await daemonRequest(d.dir, { cmd: 'console', name: 'svc', count: 1000 }, (m) => void (m.console && (text += `${(m.console as { line: string }).line}\n`)));
      return text.includes('boot v2 svc');
    });
    const kinds = (await events(d, 'svc')).map((e) => e.type);
    t.true(kinds.includes('rolled-back'));
    t.is(kinds.at(-1) === 'updated' || kinds.includes('updated'), true);
    await refusal(daemonRequest(d.dir, { cmd: 'update', name: 'svc', image: 'relative.mjs' }), 'ERR_DAEMON_REQUEST');
    await daemonRequest(d.dir, { cmd: 'stop', name: 'svc' });
  } finally {
    await d.close();
  }
});
