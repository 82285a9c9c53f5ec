/**
 * A supervisor for several Solo5 unikernels behind a local control socket (`morgana daemon`).
 *
 * - Control: a Unix socket `<dir>/control.sock`, mode 0600 inside a 0700 directory, so only its
 *   owner (and root) can connect. Newline-delimited JSON: one request object per connection,
 *   answered by one response object (`{ ok: true, … }` or `{ ok: false, code, message }`), or by a
 *   stream of `{ console: line }` objects for `console --follow`, ended by `{ end: true }`.
 * - Tenders are started detached (own session) with their output appended to
 *   `<dir>/console/<name>.log`, which the daemon tails into a ring buffer per unikernel, so they
 *   keep running when the daemon stops.
 * - State: `<dir>/state.json` (previous copy `state.json.bak`) lists every unikernel with its
 *   options, plan, provisioned devices, pid and process start time. A restarted daemon adopts the
 *   unikernels whose pid still runs with the same start time; an adopted tender is no longer its
 *   child, so its eventual exit status is unknown (reported as such, never restarted).
 * @module
 */
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { MorganaError } from '../errors.js';
import type { ConsoleLine } from './console.js';
import { type DeployOptions, type DeployPlan, type Provisioned, Unikernel, deployUnikernel, releaseDevices } from './deploy.js';
import type { ExitInfo } from './exit.js';
import { processStartTime } from './host.js';

/** A request to the daemon. */
export type DaemonRequest =
  | { cmd: 'ps' }
  | { cmd: 'deploy'; options: DeployOptions }
  | { cmd: 'console'; name: string; count?: number; follow?: boolean }
  | { cmd: 'stop'; name: string }
  | { cmd: 'restart'; name: string }
  | { cmd: 'stats'; name: string }
  | { cmd: 'ping' };

/** One row of `ps`. */
export interface DaemonUnikernelInfo {
  name: string;
  state: 'running' | 'restarting' | 'exited';
  pid: number | undefined;
  target: string;
  image: string;
  restarts: number;
  adopted: boolean;
  lastExit: ExitInfo | undefined;
}

interface StateRecord {
  name: string;
  options: DeployOptions;
  plan: DeployPlan;
  provisioned: Provisioned;
  pid: number | undefined;
  startTime: number | undefined;
  lastExit?: ExitInfo;
  restarts: number;
}

interface Entry {
  uk: Unikernel;
  record: StateRecord;
  adopted: boolean;
  exited: boolean;
}

/** Default daemon directory: `$MORGANA_DAEMON_DIR`, `/run/morgana` for root, else `$XDG_RUNTIME_DIR/morgana` or `/tmp/morgana-<uid>`. */
export function defaultDaemonDir(): string {
  if (process.env.MORGANA_DAEMON_DIR) return process.env.MORGANA_DAEMON_DIR;
  if (process.getuid?.() === 0) return '/run/morgana';
  return process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, 'morgana') : `/tmp/morgana-${process.getuid?.() ?? 'user'}`;
}

function socketPath(dir: string): string {
  return path.join(dir, 'control.sock');
}

/** The supervisor. Create with {@link startDaemon}. */
export class Solo5Daemon {
  readonly dir: string;
  #server: net.Server | undefined;
  #entries = new Map<string, Entry>();
  #saving: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  /** Path of the control socket. */
  get socket(): string {
    return socketPath(this.dir);
  }

  /** @internal */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const s = await stat(this.dir);
    if (process.getuid && s.uid !== process.getuid()) throw new MorganaError('ERR_DAEMON_DIR', `${this.dir} is owned by uid ${s.uid}, not by this user`);
    await chmod(this.dir, 0o700);
    await mkdir(path.join(this.dir, 'console'), { recursive: true, mode: 0o700 });
    if (existsSync(this.socket)) {
      const live = await new Promise<boolean>((resolve) => {
        const c = net.connect(this.socket);
        c.once('connect', () => {
          c.destroy();
          resolve(true);
        });
        c.once('error', () => resolve(false));
      });
      if (live) throw new MorganaError('ERR_DAEMON_RUNNING', `a daemon is already listening on ${this.socket}`);
      await unlink(this.socket);
    }
    await this.#restore();
    const server = net.createServer((conn) => this.#connection(conn));
    const oldMask = process.umask(0o177);
    try {
      server.listen(this.socket);
      await once(server, 'listening');
    } finally {
      process.umask(oldMask);
    }
    await chmod(this.socket, 0o600);
    this.#server = server;
  }

  /** Stops listening; the unikernels keep running (a restarted daemon adopts them). */
  async close(): Promise<void> {
    await this.#saving;
    if (!this.#server) return;
    const server = this.#server;
    this.#server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const e of this.#entries.values()) e.uk.removeAllListeners();
  }

  async #restore(): Promise<void> {
    let records: StateRecord[] = [];
    try {
      records = JSON.parse(await readFile(path.join(this.dir, 'state.json'), 'utf8')) as StateRecord[];
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        try {
          records = JSON.parse(await readFile(path.join(this.dir, 'state.json.bak'), 'utf8')) as StateRecord[];
        } catch {
          records = [];
        }
      }
    }
    for (const record of records) {
      const uk = new Unikernel(record.options, record.plan, record.provisioned);
      uk.restarts = record.restarts;
      const entry: Entry = { uk, record, adopted: true, exited: true };
      this.#entries.set(record.name, entry);
      if (record.pid !== undefined && record.startTime !== undefined && (await processStartTime(record.pid)) === record.startTime) {
        entry.exited = false;
        this.#watch(entry);
        uk.adopt(record.pid, record.startTime);
      } else {
        if (record.pid !== undefined) {
          record.lastExit = { kind: 'guest-exit', code: null, signal: null, description: 'exited while the daemon was not running (status unknown)', failed: true };
          record.pid = undefined;
          await releaseDevices(record.provisioned, record.options.netns).catch(() => {});
        }
        uk.lastExit = record.lastExit;
      }
    }
    await this.#save();
  }

  #watch(entry: Entry): void {
    const { uk, record } = entry;
    uk.on('start', (pid) => {
      entry.exited = false;
      record.pid = pid;
      record.restarts = uk.restarts;
      void processStartTime(pid).then((t) => {
        record.startTime = t;
        void this.#save();
      });
    });
    uk.on('exit', (exit, final) => {
      record.lastExit = exit;
      record.pid = undefined;
      record.startTime = undefined;
      record.restarts = uk.restarts;
      if (final) entry.exited = true;
      void this.#save();
    });
    uk.on('cleanupError', () => {});
  }

  #save(): Promise<void> {
    const records = [...this.#entries.values()].map((e) => e.record);
    const file = path.join(this.dir, 'state.json');
    this.#saving = this.#saving.catch(() => {}).then(async () => {
      const tmp = `${file}.tmp`;
      await writeFile(tmp, JSON.stringify(records, null, 2), { mode: 0o600 });
      if (existsSync(file)) await rename(file, `${file}.bak`).catch(() => {});
      await rename(tmp, file);
    });
    return this.#saving;
  }

  #info(e: Entry): DaemonUnikernelInfo {
    return {
      name: e.record.name,
      state: e.exited ? 'exited' : e.uk.running ? 'running' : 'restarting',
      pid: e.uk.pid,
      target: e.record.plan.target,
      image: e.record.plan.image,
      restarts: e.uk.restarts,
      adopted: e.adopted,
      lastExit: e.uk.lastExit ?? e.record.lastExit,
    };
  }

  #get(name: unknown): Entry {
    const e = typeof name === 'string' ? this.#entries.get(name) : undefined;
    if (!e) throw new MorganaError('ERR_DAEMON_UNKNOWN', `no unikernel named '${String(name)}'`);
    return e;
  }

  async #handle(req: DaemonRequest, send: (msg: object) => void, conn: net.Socket): Promise<object | undefined> {
    switch (req.cmd) {
      case 'ping':
        return { pid: process.pid };
      case 'ps':
        return { unikernels: [...this.#entries.values()].map((e) => this.#info(e)) };
      case 'deploy': {
        const o = req.options;
        if (typeof o !== 'object' || o === null) throw new MorganaError('ERR_SOLO5_BAD_OPTION', 'deploy needs options');
        const name = o.name ?? path.basename(String(o.image)).replace(/\.[^.]*$/, '');
        const existing = this.#entries.get(name);
        if (existing && !existing.exited) throw new MorganaError('ERR_DAEMON_EXISTS', `unikernel '${name}' is running; stop it first`);
        const options: DeployOptions = { ...o, name, detached: true, logFile: path.join(this.dir, 'console', `${name}.log`) };
        delete options.env;
        const uk = await deployUnikernel(options);
        const record: StateRecord = { name, options, plan: uk.plan, provisioned: uk.provisioned, pid: uk.pid, startTime: uk.pid ? await processStartTime(uk.pid) : undefined, restarts: 0 };
        const entry: Entry = { uk, record, adopted: false, exited: false };
        this.#entries.set(name, entry);
        this.#watch(entry);
        await this.#save();
        return { unikernel: this.#info(entry) };
      }
      case 'stop': {
        const e = this.#get(req.name);
        const exit = e.exited ? e.uk.lastExit : await e.uk.stop();
        if (e.exited) await releaseDevices(e.record.provisioned, e.record.options.netns).catch(() => {});
        this.#entries.delete(e.record.name);
        await this.#save();
        return { exit };
      }
      case 'restart': {
        const e = this.#get(req.name);
        if (e.exited) throw new MorganaError('ERR_SOLO5_NOT_RUNNING', `unikernel '${e.record.name}' has exited; deploy it again`);
        await e.uk.restart();
        return { unikernel: this.#info(e) };
      }
      case 'stats': {
        const e = this.#get(req.name);
        return { stats: await e.uk.stats() };
      }
      case 'console': {
        const e = this.#get(req.name);
        const count = typeof req.count === 'number' ? req.count : 20;
        for (const line of e.uk.console(count)) send({ console: line });
        if (!req.follow || e.exited) return { end: true };
        await new Promise<void>((resolve) => {
          const onLine = (line: ConsoleLine): void => send({ console: line });
          const onExit = (exit: ExitInfo, final: boolean): void => {
            send({ exit, final });
            if (final) done();
          };
          const done = (): void => {
            e.uk.off('console', onLine);
            e.uk.off('exit', onExit);
            resolve();
          };
          e.uk.on('console', onLine);
          e.uk.on('exit', onExit);
          conn.once('close', done);
        });
        return { end: true };
      }
      default:
        throw new MorganaError('ERR_DAEMON_REQUEST', `unknown command '${(req as { cmd?: unknown }).cmd}'`);
    }
  }

  #connection(conn: net.Socket): void {
    let buffer = '';
    const send = (msg: object): void => {
      if (!conn.destroyed) conn.write(`${JSON.stringify(msg)}\n`);
    };
    conn.on('error', () => {});
    conn.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      if (buffer.length > 1 << 20) return conn.destroy();
      const nl = buffer.indexOf('\n');
      if (nl === -1) return;
      const text = buffer.slice(0, nl);
      buffer = '';
      conn.removeAllListeners('data');
      let req: DaemonRequest;
      try {
        req = JSON.parse(text) as DaemonRequest;
      } catch {
        send({ ok: false, code: 'ERR_DAEMON_REQUEST', message: 'request is not JSON' });
        conn.end();
        return;
      }
      this.#handle(req, send, conn).then(
        (result) => {
          if (result) send({ ok: true, ...result });
          conn.end();
        },
        (error: unknown) => {
          const e = error as { code?: unknown; message?: string };
          send({ ok: false, code: typeof e.code === 'string' ? e.code : 'ERR_INTERNAL', message: e.message ?? String(error) });
          conn.end();
        },
      );
    });
  }
}

/** Starts a daemon in `dir` (default {@link defaultDaemonDir}); adopts still-running unikernels from its state. */
export async function startDaemon(dir = defaultDaemonDir()): Promise<Solo5Daemon> {
  const d = new Solo5Daemon(dir);
  await d.start();
  return d;
}

/**
 * Sends one request to the daemon in `dir`; `onMessage` sees every message (console streams);
 * resolves with the last one. Rejects with `ERR_DAEMON_UNREACHABLE` when no daemon listens, or
 * the daemon's own error code.
 */
export function daemonRequest(dir: string, request: DaemonRequest, onMessage?: (msg: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath(path.resolve(dir)));
    let buffer = '';
    let last: Record<string, unknown> | undefined;
    conn.once('connect', () => conn.write(`${JSON.stringify(request)}\n`));
    conn.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let nl;
      while ((nl = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          last = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        onMessage?.(last);
      }
    });
    conn.once('error', (error: NodeJS.ErrnoException) => {
      reject(new MorganaError('ERR_DAEMON_UNREACHABLE', `no daemon at ${socketPath(dir)}: ${error.code ?? error.message}`));
    });
    conn.once('close', () => {
      if (!last) return reject(new MorganaError('ERR_DAEMON_UNREACHABLE', 'the daemon closed the connection without answering'));
      if (last.ok === false) return reject(new MorganaError(String(last.code), String(last.message)));
      resolve(last);
    });
  });
}
