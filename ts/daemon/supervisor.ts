/**
 * A supervisor for several unikernels (Solo5 images and TypeScript unikernels) behind a local
 * control socket and, optionally, a mutually authenticated TLS listener (`morgana daemon`).
 *
 * - Control: a Unix socket `<dir>/control.sock`, mode 0600 inside a 0700 directory, so only its
 *   owner (and root) can connect; the protocol (versioned, bounded) is in ts/daemon/protocol.ts
 *   and docs/daemon-protocol.md. Remote callers: TLS with client certificates carrying their
 *   rights (ts/daemon/auth.ts).
 * - Tenders (and `node main.mjs` for TypeScript unikernels) are started detached (own session)
 *   with their output appended to `<dir>/console/<name>.log`, which the daemon tails into a ring
 *   buffer per unikernel (several followers at once), so they keep running when the daemon stops.
 * - User-mode networks (`--net NAME=user`): the gateway (host ports, outbound proxy) runs in the
 *   daemon, so those unikernels do not outlive it: the daemon stops them when it stops (their
 *   tenders get SIGKILL if it dies), and the next daemon starts them again, on the same host
 *   ports, instead of adopting them.
 * - State: `<dir>/state.json` (previous copy `state.json.bak`) lists every unikernel with its
 *   options, plan, provisioned devices, pid and process start time. A restarted daemon adopts the
 *   unikernels whose pid still runs with the same start time, and starts again, in ascending
 *   start order, those given a start order that are gone (a host reboot); others are reported as
 *   exited. An adopted tender is no longer its child, so its exit status is unknown.
 * - Policies per owner path (`<dir>/policies.json`), block devices (`<dir>/blocks/`), an event
 *   log (`<dir>/events.jsonl`), metrics over HTTP (`--metrics HOST:PORT`).
 * @module
 */
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { MorganaError } from '../errors.js';
import { type Caller, LOCAL_CALLER, authorize, authorizeHostOptions, callerFromCertificate } from './auth.js';
import { BlockStore } from './blocks.js';
import { type DaemonEvent, EventLog } from './events.js';
import { type MetricFamily, parseHostPort, processIo, serveMetrics } from './metrics.js';
import { type NodeRunOptions, defaultNodeName, nodePlan, validateNodeRun } from './node-unikernel.js';
import { confinedPath, ownerFilesDirs } from './paths.js';
import { type ForwardRequest, PolicyStore, type ResourcePolicy, type ResourceUsage, type UserNetAccessRequest, isUnder, ownerPaths } from './policy.js';
import {
  BoundedLineReader,
  type ControlCounters,
  type ControlLimits,
  DEFAULT_CONTROL_LIMITS,
  PROTOCOL_VERSION,
  newCounters,
  parseRequest,
} from './protocol.js';
import type { ConsoleLine } from '../solo5/console.js';
import { type DeployOptions, type DeployPlan, type Provisioned, Unikernel, planDeployment, provisionDevices, releaseDevices } from '../solo5/deploy.js';
import { type ExitInfo, restartDelay } from '../solo5/exit.js';
import { linkExists, processStartTime, validInterfaceName } from '../solo5/host.js';
import type { BoundForward } from '../solo5/gateway.js';
import { UserNetwork } from '../solo5/user-net.js';

export { PROTOCOL_VERSION, type ControlCounters, type ControlLimits } from './protocol.js';

/** A request to the daemon (see docs/daemon-protocol.md for every command and its fields). */
export type DaemonRequest =
  | { cmd: 'ping' | 'status' | 'ps' | 'policy-list' | 'block-list' }
  | { cmd: 'deploy'; options: DeployOptions; cpus?: number[]; startOrder?: number }
  | { cmd: 'run'; options: NodeRunOptions; cpus?: number[]; startOrder?: number }
  | { cmd: 'console'; name: string; count?: number; follow?: boolean }
  | { cmd: 'events'; name?: string; count?: number; follow?: boolean }
  | { cmd: 'stop' | 'restart' | 'stats' | 'block-info' | 'block-delete' | 'block-dump' | 'block-restore'; name: string }
  | { cmd: 'update'; name: string; image: string; bootMs?: number }
  | { cmd: 'policy-set'; path: string; policy: ResourcePolicy }
  | { cmd: 'policy-remove'; path: string }
  | { cmd: 'block-create'; name: string; size: number };

/** One row of `ps`. */
export interface DaemonUnikernelInfo {
  name: string;
  state: 'running' | 'restarting' | 'exited';
  pid: number | undefined;
  /** `hvt`, `spt`, `virtio`, or `node` for a TypeScript unikernel. */
  target: string;
  image: string;
  restarts: number;
  adopted: boolean;
  lastExit: ExitInfo | undefined;
  /** CPU ids the unikernel is pinned to. */
  cpus?: number[];
  startOrder?: number;
  /** User-mode networks (`--net NAME=user`) while their gateway runs: addresses and forwarded host ports. */
  networks?: DaemonUserNetworkInfo[];
}

/** A user-mode NET device of a unikernel, as `ps` shows it. */
export interface DaemonUserNetworkInfo {
  /** Manifest device name. */
  device: string;
  mode: 'user';
  /** Guest address and prefix (`10.0.2.15/24`). */
  guest: string;
  gateway: string;
  dns: string;
  /** Forwarded host ports as bound. */
  forwards: BoundForward[];
}

interface StateRecord {
  name: string;
  kind: 'solo5' | 'node';
  /** What the supervisor runs with (for `node`, derived from `node`). */
  options: DeployOptions;
  /** The request's options of a TypeScript unikernel. */
  node?: NodeRunOptions;
  plan: DeployPlan;
  provisioned: Provisioned;
  pid: number | undefined;
  startTime: number | undefined;
  lastExit?: ExitInfo;
  restarts: number;
  /** Exits by class, for metrics. */
  exits?: Record<string, number>;
  cpus?: number[];
  startOrder?: number;
  /** Block devices of the store attached by name. */
  volumes?: string[];
  /**
   * Stopped by the daemon's own shutdown (its user-mode network lived in the daemon): started
   * again when a daemon starts on this directory.
   */
  resume?: boolean;
}

/** Whether a record's unikernel has a user-mode network, whose gateway lives in the daemon process. */
function hasUserNet(r: Pick<StateRecord, 'kind' | 'options'>): boolean {
  return r.kind === 'solo5' && (r.options.userNets?.length ?? 0) > 0;
}

interface Entry {
  uk: Unikernel;
  record: StateRecord;
  adopted: boolean;
  exited: boolean;
}

/** Options of {@link startDaemon} beyond the directory. */
export interface DaemonOptions {
  /** Limits of the control listeners (defaults: {@link DEFAULT_CONTROL_LIMITS}). */
  limits?: Partial<ControlLimits>;
  /** Serve metrics on this `HOST:PORT`. */
  metrics?: string;
  /** Remote management over TLS; client certificates must be signed by `clientCa`. */
  tls?: { listen: string; cert: string; key: string; clientCa: string; crl?: string };
  /** Default boot window of `update` in ms (default 3000). */
  bootMs?: number;
  /**
   * Directories (besides `<dir>/files`) inside which clients may name host files: a user-mode
   * network's pcap, a block device's backing file, a confined caller's image; a confined caller's
   * only under its owner path's directories in them, e.g. `<files dir>/acme/` (see ts/daemon/paths.ts).
   */
  filesDirs?: string[];
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

const MIB = 1024 * 1024;

/** Guest memory a unikernel is counted for when it does not say (the tenders' defaults). */
function countedMemoryMB(r: Pick<StateRecord, 'kind' | 'options' | 'node' | 'plan'>): number {
  if (r.kind === 'node') return r.node?.memoryMB ?? 0;
  return r.options.memoryMB ?? (r.plan?.target === 'virtio' || r.options.target === 'virtio' ? 128 : 512);
}

/**
 * An exit in the terms of the unikernel's kind: Solo5's exit 1 is a tender error, but a
 * TypeScript unikernel's exit 1 is its own failure (an uncaught exception, `start` failing).
 */
function ownExit(record: Pick<StateRecord, 'kind'>, exit: ExitInfo): ExitInfo {
  if (record.kind !== 'node' || exit.kind !== 'tender-error') return exit;
  return { ...exit, kind: 'guest-exit', description: 'exited with status 1 (failure: an uncaught exception or start() failing)' };
}

/**
 * Waits (at most 2 s) until `pid` runs on exactly `cpus`: `taskset` sets the affinity just before
 * it execs the tender, so a caller told "started" sees the unikernel pinned.
 */
async function pinned(pid: number, cpus: number[]): Promise<void> {
  const want = new Set(cpus);
  const end = Date.now() + 2000;
  while (Date.now() < end) {
    let list: string | undefined;
    try {
      list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
    } catch {
      return; // already gone: its exit is reported as usual
    }
    const got = new Set<number>();
    for (const part of (list ?? '').split(',')) {
      const [lo, hi] = part.split('-').map(Number);
      for (let c = lo!; c <= (hi ?? lo!); c++) got.add(c);
    }
    if (got.size === want.size && [...want].every((c) => got.has(c))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Runs an authorization `check` for the unikernel `name`; a refusal carries the name, so its
 * `forbidden` event is logged under it (a deploy names its unikernel inside its options, or not at all).
 */
function forbiddenFor(name: string | undefined, check: () => void): void {
  try {
    check();
  } catch (error) {
    if (error instanceof MorganaError && name !== undefined) Object.assign(error, { unikernel: name });
    throw error;
  }
}

/** An async queue of lines (the data lines following a `block-restore` request). */
class LineQueue {
  #items: string[] = [];
  #waiting: ((v: IteratorResult<string>) => void) | undefined;
  #ended = false;
  push(line: string): void {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w({ value: line, done: false });
    } else this.#items.push(line);
  }
  end(): void {
    this.#ended = true;
    if (this.#waiting) this.#waiting({ value: undefined, done: true });
    this.#waiting = undefined;
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    for (;;) {
      if (this.#items.length) {
        yield this.#items.shift()!;
        continue;
      }
      if (this.#ended) return;
      const r = await new Promise<IteratorResult<string>>((resolve) => (this.#waiting = resolve));
      if (r.done) return;
      yield r.value;
    }
  }
}

/** The supervisor. Create with {@link startDaemon}. */
export class Solo5Daemon {
  readonly dir: string;
  /** Counters of the Unix socket and of the TLS listener. */
  readonly counters: { unix: ControlCounters; tls: ControlCounters } = { unix: newCounters(), tls: newCounters() };
  readonly limits: ControlLimits;
  #server: net.Server | undefined;
  #tlsServer: tls.Server | undefined;
  #metricsServer: http.Server | undefined;
  #entries = new Map<string, Entry>();
  #saving: Promise<void> = Promise.resolve();
  #events!: EventLog;
  #policies = new PolicyStore();
  #blocks: BlockStore;
  #options: DaemonOptions;
  #startedAt = Date.now();
  /** Open control connections, ended when the daemon closes (followers see the end). */
  #connections = new Set<net.Socket>();
  /** Where clients may name host files (realpath'd): `<dir>/files` and `filesDirs`. */
  #filesDirs: string[] = [];

  constructor(dir: string, options: DaemonOptions = {}) {
    this.dir = path.resolve(dir);
    this.#options = options;
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...options.limits };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isInteger(v) || v < 1) throw new MorganaError('ERR_DAEMON_BAD_OPTION', `${k} must be a whole number from 1, got ${v}`);
    }
    this.#blocks = new BlockStore(path.join(this.dir, 'blocks'));
  }

  /** Path of the control socket. */
  get socket(): string {
    return socketPath(this.dir);
  }

  /** The TLS listener's address, when there is one. */
  get tlsAddress(): net.AddressInfo | undefined {
    return this.#tlsServer?.address() as net.AddressInfo | undefined;
  }

  /** The metrics listener's address, when there is one. */
  get metricsAddress(): net.AddressInfo | undefined {
    return this.#metricsServer?.address() as net.AddressInfo | undefined;
  }

  /** Directories inside which clients may name host files (pcap, block backing files), resolved. */
  get filesDirs(): readonly string[] {
    return this.#filesDirs;
  }

  /** The event log. */
  get events(): EventLog {
    return this.#events;
  }

  /** @internal */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const s = await stat(this.dir);
    if (process.getuid && s.uid !== process.getuid()) throw new MorganaError('ERR_DAEMON_DIR', `${this.dir} is owned by uid ${s.uid}, not by this user`);
    await chmod(this.dir, 0o700);
    await mkdir(path.join(this.dir, 'console'), { recursive: true, mode: 0o700 });
    await mkdir(path.join(this.dir, 'files'), { recursive: true, mode: 0o700 });
    this.#filesDirs = [];
    for (const d of [path.join(this.dir, 'files'), ...(this.#options.filesDirs ?? [])]) {
      let real: string;
      try {
        real = await realpath(path.resolve(d));
        if (!(await stat(real)).isDirectory()) throw new Error('not a directory');
      } catch (error) {
        throw new MorganaError('ERR_DAEMON_BAD_OPTION', `files directory ${d}: ${(error as Error).message}`);
      }
      if (!this.#filesDirs.includes(real)) this.#filesDirs.push(real);
    }
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
    this.#events = new EventLog(path.join(this.dir, 'events.jsonl'));
    try {
      this.#policies = new PolicyStore(JSON.parse(await readFile(path.join(this.dir, 'policies.json'), 'utf8')) as Record<string, ResourcePolicy>);
    } catch {
      // none yet
    }
    await this.#blocks.load();
    await this.#restore();
    const server = net.createServer((conn) => this.#accept(conn, LOCAL_CALLER, this.counters.unix));
    const oldMask = process.umask(0o177);
    try {
      server.listen(this.socket);
      await once(server, 'listening');
    } finally {
      process.umask(oldMask);
    }
    await chmod(this.socket, 0o600);
    this.#server = server;
    try {
      if (this.#options.tls) await this.#listenTls(this.#options.tls);
      if (this.#options.metrics) this.#metricsServer = await serveMetrics(this.#options.metrics, () => this.#collectMetrics());
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  async #listenTls(o: NonNullable<DaemonOptions['tls']>): Promise<void> {
    const { host, port } = parseHostPort(o.listen);
    let cert, key, ca, crl;
    try {
      [cert, key, ca] = [readFileSync(o.cert), readFileSync(o.key), readFileSync(o.clientCa)];
      crl = o.crl ? readFileSync(o.crl) : undefined;
    } catch (error) {
      throw new MorganaError('ERR_DAEMON_TLS', `cannot read TLS files: ${(error as Error).message}`);
    }
    const counters = this.counters.tls;
    const server = tls.createServer({
      cert,
      key,
      ca,
      ...(crl ? { crl } : {}),
      requestCert: true,
      // Verified below, so that a refused certificate gets a clear answer and an event with its reason.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      handshakeTimeout: this.limits.idleTimeoutMs,
    });
    server.on('connection', (raw: net.Socket) => {
      counters.accepted++;
      this.#connections.add(raw);
      raw.once('close', () => this.#connections.delete(raw));
      if (counters.active >= this.limits.maxConnections) {
        counters.refusedBusy++;
        raw.destroy();
        return;
      }
      counters.active++;
      raw.once('close', () => counters.active--);
    });
    server.on('tlsClientError', (error: Error & { code?: string }, socket) => {
      this.#events.add('tls-refused', { reason: error.code ?? 'TLS', message: `TLS handshake from ${socket.remoteAddress ?? '?'} refused: ${error.message}` });
    });
    server.on('secureConnection', (conn: tls.TLSSocket) => {
      conn.on('error', () => {});
      if (!conn.authorized) {
        const reason = String(conn.authorizationError ?? 'NO_CERTIFICATE');
        const why = conn.getPeerCertificate()?.subject ? `client certificate of '${String(conn.getPeerCertificate().subject.CN ?? '?')}' refused: ${reason}` : 'no client certificate';
        this.#events.add('tls-refused', { reason, message: `${why} (from ${conn.remoteAddress ?? '?'})` });
        conn.end(`${JSON.stringify({ v: PROTOCOL_VERSION, ok: false, code: 'ERR_DAEMON_UNAUTHENTICATED', message: why })}\n`);
        setTimeout(() => conn.destroy(), 1000).unref();
        return;
      }
      let caller: Caller;
      try {
        caller = callerFromCertificate(conn.getPeerCertificate());
      } catch (error) {
        counters.forbidden++;
        this.#events.add('forbidden', { reason: 'certificate', message: (error as Error).message });
        conn.end(`${JSON.stringify({ v: PROTOCOL_VERSION, ok: false, code: 'ERR_DAEMON_FORBIDDEN', message: (error as Error).message })}\n`);
        return;
      }
      this.#serve(conn, caller, counters);
    });
    server.listen(port, host);
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([e]) => Promise.reject(new MorganaError('ERR_DAEMON_TLS', `cannot listen on ${o.listen}: ${(e as Error).message}`))),
    ]);
    this.#tlsServer = server;
  }

  /**
   * Stops listening; the unikernels keep running (a restarted daemon adopts them), except those
   * on a user-mode network: their gateway lives in this process, so they are stopped first (and
   * would get SIGKILL when it ends anyway), then started again by the next daemon on this
   * directory.
   */
  async close(): Promise<void> {
    const suspended = [...this.#entries.values()].filter((e) => !e.exited && hasUserNet(e.record));
    await Promise.all(
      suspended.map(async (e) => {
        await e.uk.stop();
        e.record.resume = true;
        e.record.lastExit = { kind: 'stopped', code: null, signal: null, description: 'stopped with the daemon, which ran its user-mode network; started again when the daemon starts', failed: false };
        this.#events.add('suspended', { name: e.record.name, message: 'stopped with the daemon (its user-mode network lives in the daemon process)' });
      }),
    );
    if (suspended.length) await this.#save();
    await this.#saving;
    const closing: Promise<void>[] = [];
    for (const s of [this.#server, this.#tlsServer, this.#metricsServer]) {
      if (!s) continue;
      closing.push(new Promise<void>((resolve) => s.close(() => resolve())));
      (s as { closeAllConnections?: () => void }).closeAllConnections?.();
    }
    for (const c of this.#connections) c.destroy();
    this.#server = this.#tlsServer = this.#metricsServer = undefined;
    await Promise.all(closing);
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
    const relaunch: StateRecord[] = [];
    for (const record of records) {
      record.kind ??= 'solo5';
      const uk = new Unikernel(record.options, record.plan, record.provisioned);
      uk.restarts = record.restarts;
      const entry: Entry = { uk, record, adopted: true, exited: true };
      this.#entries.set(record.name, entry);
      if (hasUserNet(record)) {
        // Not adoptable: its link and host ports were in the previous daemon process. The tender
        // died with it (SIGKILL on the parent's death); one still running cannot be reached.
        const live = record.pid !== undefined && record.startTime !== undefined && (await processStartTime(record.pid)) === record.startTime;
        if (live) {
          await killAndWait(record.pid!);
          this.#events.add('exited', { name: record.name, reason: 'stopped', message: `killed pid ${record.pid}: still running, but its user-mode network was in the previous daemon process` });
        }
        if (record.pid !== undefined || record.resume) {
          if (!record.resume) record.lastExit = { kind: 'guest-exit', code: null, signal: null, description: `ended with the daemon that ran its user-mode network${live ? ' (killed by the next one)' : ''}`, failed: true };
          record.pid = undefined;
          record.startTime = undefined;
          delete record.resume;
          await releaseDevices(record.provisioned, record.options.netns).catch(() => {});
          relaunch.push(record);
        }
        uk.lastExit = record.lastExit;
        continue;
      }
      if (record.pid !== undefined && record.startTime !== undefined && (await processStartTime(record.pid)) === record.startTime) {
        entry.exited = false;
        this.#watch(entry);
        uk.adopt(record.pid, record.startTime);
        this.#events.add('adopted', { name: record.name, message: `adopted pid ${record.pid}` });
      } else {
        const wasRunning = record.pid !== undefined;
        if (wasRunning) {
          record.lastExit = { kind: 'guest-exit', code: null, signal: null, description: 'exited while the daemon was not running (status unknown)', failed: true };
          record.pid = undefined;
          await releaseDevices(record.provisioned, record.options.netns).catch(() => {});
          if (record.startOrder !== undefined) relaunch.push(record);
        }
        uk.lastExit = record.lastExit;
      }
    }
    // Started again in their declared order (then by name; those without one last), one after the other.
    const order = (r: StateRecord): number => r.startOrder ?? Number.MAX_SAFE_INTEGER;
    relaunch.sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
    for (const record of relaunch) {
      try {
        this.#entries.delete(record.name);
        const entry = await this.#launch(record);
        const why = hasUserNet(record) ? 'its user-mode network lives in the daemon' : `start order ${record.startOrder}`;
        this.#events.add('restored', { name: record.name, message: `started again (${why}), pid ${entry.uk.pid}` });
      } catch (error) {
        const uk = new Unikernel(record.options, record.plan, record.provisioned);
        uk.lastExit = record.lastExit;
        this.#entries.set(record.name, { uk, record, adopted: false, exited: true });
        this.#events.add('refused', { name: record.name, reason: (error as MorganaError).code, message: `not started again: ${(error as Error).message}` });
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
      this.#events.add('started', { name: record.name, message: `pid ${pid}` });
      void processStartTime(pid).then((t) => {
        record.startTime = t;
        void this.#save();
      });
    });
    uk.on('exit', (solo5Exit, final) => {
      const exit = ownExit(record, solo5Exit);
      record.lastExit = exit;
      record.pid = undefined;
      record.startTime = undefined;
      record.restarts = uk.restarts;
      record.exits = { ...record.exits, [exit.kind]: (record.exits?.[exit.kind] ?? 0) + 1 };
      this.#events.add('exited', { name: record.name, reason: exit.kind, message: exit.description });
      if (final) entry.exited = true;
      if (final && solo5Exit.kind === 'tender-error' && record.kind === 'node') this.#restartNode(entry, exit);
      void this.#save();
    });
    uk.on('restart', (attempt, delayMs) => this.#events.add('restarted', { name: record.name, message: `restart ${attempt} in ${delayMs} ms` }));
    uk.on('cleanupError', () => {});
  }

  /**
   * The restart policy for a TypeScript unikernel's exit 1, which the supervisor (keeping Solo5's
   * rule that a tender error will not get better) does not restart itself.
   */
  #restartNode(entry: Entry, exit: ExitInfo): void {
    const { record } = entry;
    const policy = record.node?.restart;
    if (!policy || policy.mode !== 'on-failure' || record.restarts >= (policy.maxRestarts ?? 5)) return;
    if (policy.exitCodes !== undefined && !policy.exitCodes.includes(exit.code ?? -1)) return;
    const delay = restartDelay(policy, record.restarts);
    record.restarts++;
    entry.exited = false;
    this.#events.add('restarted', { name: record.name, message: `restart ${record.restarts} in ${delay} ms` });
    setTimeout(() => {
      if (this.#entries.get(record.name) !== entry) return; // stopped meanwhile
      this.#launch(record).catch((error: unknown) => {
        entry.exited = true;
        this.#events.add('refused', { name: record.name, reason: (error as MorganaError).code, message: `not restarted: ${(error as Error).message}` });
      });
    }, delay).unref();
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

  async #savePolicies(): Promise<void> {
    const file = path.join(this.dir, 'policies.json');
    await writeFile(`${file}.tmp`, JSON.stringify(this.#policies.toJSON(), null, 2), { mode: 0o600 });
    await rename(`${file}.tmp`, file);
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
      lastExit: e.uk.lastExit ? ownExit(e.record, e.uk.lastExit) : e.record.lastExit,
      ...(e.record.cpus ? { cpus: e.record.cpus } : {}),
      ...(e.record.startOrder !== undefined ? { startOrder: e.record.startOrder } : {}),
      ...(!e.exited && e.uk.gateways.length ? { networks: userNetworks(e) } : {}),
    };
  }

  #get(name: unknown): Entry {
    const e = typeof name === 'string' ? this.#entries.get(name) : undefined;
    if (!e) throw new MorganaError('ERR_DAEMON_UNKNOWN', `no unikernel named '${String(name)}'`);
    return e;
  }

  #usage(owner: string): ResourceUsage {
    let unikernels = 0;
    let memoryMB = 0;
    for (const e of this.#entries.values()) {
      if (!isUnder(e.record.name, owner) || e.record.name === owner) continue;
      unikernels++;
      memoryMB += countedMemoryMB(e.record);
    }
    return { unikernels, memoryMB, blockMB: Math.ceil(this.#blocks.usedUnder(owner) / MIB) };
  }

  /** Plans, provisions and starts `record` (its plan is made again), registers and watches it. */
  async #launch(record: StateRecord): Promise<Entry> {
    let options: DeployOptions;
    let plan: DeployPlan;
    let provisioned: Provisioned = { createdTaps: [], createdBridges: [], enslavedTaps: [], createdBlocks: [] };
    let user: { uid: number; gid: number } | undefined;
    const logFile = path.join(this.dir, 'console', `${record.name}.log`);
    if (record.kind === 'node') {
      ({ options, plan } = nodePlan(validateNodeRun(record.node!), record.name, logFile));
    } else {
      options = { ...record.options, name: record.name, detached: true, logFile };
      delete options.env;
      const planned = await planDeployment(options);
      const { info: _info, user: u, ...rest } = planned;
      plan = rest;
      user = u;
    }
    if (record.cpus?.length) plan = { ...plan, command: ['taskset', '--cpu-list', record.cpus.join(','), ...plan.command] };
    if (record.kind === 'solo5') provisioned = await provisionDevices(options, user);
    let network: UserNetwork | undefined;
    if (hasUserNet({ kind: record.kind, options })) {
      try {
        network = await UserNetwork.start(options.userNets!);
      } catch (error) {
        await releaseDevices(provisioned, options.netns).catch(() => {});
        throw error;
      }
      // A port picked by the system (0) is kept: the unikernel gets it again when it is started again.
      options.userNets!.forEach((n, i) => n.forwards?.forEach((f, j) => (f.hostPort = network!.gateways[i]!.forwards[j]!.hostPort)));
    }
    const uk = new Unikernel(options, plan, provisioned, user, network);
    uk.restarts = record.restarts;
    record.options = options;
    record.plan = plan;
    record.provisioned = provisioned;
    record.pid = undefined;
    record.startTime = undefined;
    const entry: Entry = { uk, record, adopted: false, exited: false };
    this.#entries.set(record.name, entry);
    this.#watch(entry);
    await uk.start();
    if (uk.pid === undefined) entry.exited = true;
    else if (record.cpus?.length) await pinned(uk.pid, record.cpus);
    record.pid = uk.pid;
    record.startTime = uk.pid ? await processStartTime(uk.pid) : undefined;
    await this.#save();
    return entry;
  }

  /**
   * What a Solo5 unikernel asks of the host beyond its resources: its user-mode forwards (host
   * addresses, ports, count) against the policies on its path, and the host files it names (pcap,
   * block backing files other than the store's, and the image when the caller is confined) confined
   * to the files directories (a confined caller's: its own directories there, {@link ownerFilesDirs}),
   * replaced by their resolved paths. Checked at create and at update; a
   * refusal is logged as a `refused` event.
   * Throws `ERR_DAEMON_POLICY` or `ERR_DAEMON_PATH`.
   */
  async #checkHostAccess(record: StateRecord, caller: Caller): Promise<void> {
    if (record.kind !== 'solo5') return;
    try {
      const userNets = Array.isArray(record.options.userNets) ? record.options.userNets : [];
      const forwards = userNets.flatMap((n) => (Array.isArray(n?.forwards) ? (n.forwards as unknown[]) : []));
      // Malformed forwards are counted here and refused with their reason when the plan is made.
      const wellFormed = forwards.filter((f): f is ForwardRequest => {
        const o = f as Partial<ForwardRequest> | null;
        return typeof o === 'object' && o !== null && (o.protocol === 'tcp' || o.protocol === 'udp') && typeof o.hostAddress === 'string' && net.isIP(o.hostAddress) !== 0 && Number.isInteger(o.hostPort) && o.hostPort! >= 0 && o.hostPort! <= 65535;
      });
      if (wellFormed.length === forwards.length) this.#policies.checkForwards(record.name, wellFormed);
      this.#policies.checkUserNetAccess(
        record.name,
        userNets.filter((n) => typeof n === 'object' && n !== null) as UserNetAccessRequest[],
      );
      for (const n of userNets) {
        if (n?.pcap !== undefined) n.pcap = await confinedPath(n.pcap, this.#filesDirs, `pcap of '${String(n.name)}'`, caller.owner);
      }
      const store = new Set((record.volumes ?? []).map((v) => this.#blocks.file(v)));
      for (const b of Array.isArray(record.options.blocks) ? record.options.blocks : []) {
        if (!store.has(b?.file)) b.file = await confinedPath(b?.file, this.#filesDirs, `block '${String(b?.name)}' file`, caller.owner);
      }
      // A confined tenant's image is read by the daemon and the tender (as root): from its files
      // directories only, so it cannot make them read any host file, nor another tenant's image.
      if (caller.owner !== '') record.options.image = await confinedPath(record.options.image, this.#filesDirs, `image of '${record.name}'`, caller.owner);
    } catch (error) {
      const code = (error as MorganaError).code;
      if (code === 'ERR_DAEMON_POLICY' || code === 'ERR_DAEMON_PATH') {
        this.#events.add('refused', { name: record.name, reason: code === 'ERR_DAEMON_PATH' ? 'path' : 'policy', message: (error as Error).message, by: caller.identity });
      }
      throw error;
    }
  }

  /**
   * A confined caller's TAPs are made by the daemon: an interface that already exists (the host's
   * `eth0`, another tenant's TAP) would be enslaved to the caller's bridge, and un-enslaved when
   * the unikernel goes. Checked at create only (at update, the unikernel's own TAPs exist).
   * Throws `ERR_DAEMON_FORBIDDEN`.
   */
  async #checkOwnTaps(record: StateRecord, caller: Caller): Promise<void> {
    if (caller.owner === '' || record.kind !== 'solo5') return;
    for (const n of Array.isArray(record.options.nets) ? record.options.nets : []) {
      // A malformed name is refused with its reason when the plan is made.
      if (typeof n?.tap !== 'string' || !validInterfaceName(n.tap) || !(await linkExists(undefined, n.tap))) continue;
      const message = `deploy '${record.name}' refused: '${caller.identity}' is confined to '${caller.owner}:' and may not attach the existing host interface '${n.tap}' (tap of '${String(n.name)}'); name a TAP that does not exist and the daemon creates it`;
      throw Object.assign(new MorganaError('ERR_DAEMON_FORBIDDEN', message), { unikernel: record.name });
    }
  }

  /** Checks policies and names, then launches a new unikernel. */
  async #create(kind: 'solo5' | 'node', req: Record<string, unknown>, caller: Caller): Promise<Entry> {
    const o = req.options as Record<string, unknown>;
    if (typeof o !== 'object' || o === null) throw new MorganaError('ERR_DAEMON_REQUEST', `${kind === 'node' ? 'run' : 'deploy'} needs options`);
    if (req.cpus !== undefined && !(Array.isArray(req.cpus) && req.cpus.length > 0 && req.cpus.every((c) => Number.isInteger(c) && c >= 0 && c < 4096))) {
      throw new MorganaError('ERR_DAEMON_REQUEST', 'cpus must be a non-empty list of CPU ids');
    }
    if (req.startOrder !== undefined && !Number.isInteger(req.startOrder)) throw new MorganaError('ERR_DAEMON_REQUEST', 'startOrder must be a whole number');
    if (kind === 'node') {
      // Refused to a confined caller before anything looks at the host (even whether the entry exists).
      forbiddenFor(typeof o.name === 'string' ? o.name : undefined, () => {
        authorize(caller, 'run', []);
        authorizeHostOptions(caller, 'run', String(o.name ?? '(unnamed)'), 'node', o);
      });
    }
    let name: string;
    let record: StateRecord;
    const base = { pid: undefined, startTime: undefined, restarts: 0, provisioned: { createdTaps: [], createdBridges: [], enslavedTaps: [], createdBlocks: [] } };
    if (kind === 'node') {
      const node = validateNodeRun(o as unknown as NodeRunOptions);
      name = node.name ?? defaultNodeName(node.entry);
      record = { ...base, name, kind, node: { ...node, name }, options: { image: node.entry }, plan: undefined as unknown as DeployPlan };
    } else {
      const options = { ...(o as unknown as DeployOptions) };
      if (typeof options.image !== 'string') throw new MorganaError('ERR_SOLO5_BAD_OPTION', 'deploy needs an image');
      for (const n of Array.isArray(options.userNets) ? options.userNets : []) {
        if (typeof n?.pcap === 'string' && !path.isAbsolute(n.pcap)) throw new MorganaError('ERR_SOLO5_BAD_OPTION', `pcap '${n.pcap}' must be an absolute path (the daemon's working directory is not the client's)`);
      }
      name = options.name ?? path.basename(options.image).replace(/\.[^.]*$/, '');
      options.name = name;
      record = { ...base, name, kind, options, plan: undefined as unknown as DeployPlan };
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(name) || name.split(':').some((p) => p === '')) {
      throw new MorganaError('ERR_SOLO5_BAD_OPTION', `invalid name '${name}': parts of letters, digits, '.', '_', '-' joined by ':'`);
    }
    // Block devices of the store, attached by name (`@name`).
    const volumes: string[] = [];
    for (const b of record.options.blocks ?? []) {
      if (typeof b?.file !== 'string' || !b.file.startsWith('@')) continue;
      const vol = b.file.slice(1);
      this.#blocks.size(vol);
      for (const e of this.#entries.values()) {
        if (!e.exited && e.record.name !== name && e.record.volumes?.includes(vol)) throw new MorganaError('ERR_DAEMON_BLOCK_BUSY', `block device '${vol}' is attached to '${e.record.name}'`);
      }
      b.file = this.#blocks.file(vol);
      delete b.size;
      volumes.push(vol);
    }
    if (volumes.length) record.volumes = volumes;
    forbiddenFor(name, () => {
      authorize(caller, kind === 'node' ? 'run' : 'deploy', [name, ...volumes]);
      authorizeHostOptions(caller, kind === 'node' ? 'run' : 'deploy', name, kind, record.options);
    });
    const existing = this.#entries.get(name);
    if (existing && !existing.exited) throw new MorganaError('ERR_DAEMON_EXISTS', `unikernel '${name}' is running; stop it first`);
    try {
      const pin = this.#policies.check(
        name,
        {
          unikernels: existing ? 0 : 1,
          memoryMB: countedMemoryMB({ ...record, plan: { target: record.options.target } as DeployPlan }) - (existing ? countedMemoryMB(existing.record) : 0),
          ...(req.cpus ? { cpus: req.cpus as number[] } : {}),
          // A user-mode network reaches the host (forwarded ports, outbound through the daemon's
          // sockets): under a policy with bridges, it is allowed only when they list `user`.
          bridges: [...(record.options.nets ?? []).map((n) => n.bridge ?? '(no bridge)'), ...(record.kind === 'solo5' && Array.isArray(record.options.userNets) ? record.options.userNets.map(() => 'user') : [])],
        },
        (p) => this.#usage(p),
      );
      if (pin) record.cpus = pin;
    } catch (error) {
      this.#events.add('refused', { name, reason: 'policy', message: (error as Error).message, by: caller.identity });
      throw error;
    }
    await this.#checkHostAccess(record, caller);
    await this.#checkOwnTaps(record, caller);
    if (req.startOrder !== undefined) record.startOrder = req.startOrder as number;
    if (existing) this.#entries.delete(name);
    try {
      const entry = await this.#launch(record);
      this.#events.add('created', { name, message: `${record.kind === 'node' ? 'node' : record.plan.target} ${record.plan.image}`, by: caller.identity });
      return entry;
    } catch (error) {
      if (existing) this.#entries.set(name, existing);
      throw error;
    }
  }

  /** `update`: swap the image (or entry), keep the configuration; roll back when the new one fails during boot. */
  async #update(req: Record<string, unknown>, caller: Caller): Promise<object> {
    const e = this.#get(req.name);
    forbiddenFor(e.record.name, () => authorizeHostOptions(caller, 'update', e.record.name, e.record.kind, {}));
    if (typeof req.image !== 'string' || !path.isAbsolute(req.image)) throw new MorganaError('ERR_DAEMON_REQUEST', 'update needs an absolute image path');
    const bootMs = req.bootMs === undefined ? (this.#options.bootMs ?? 3000) : Number(req.bootMs);
    if (!Number.isInteger(bootMs) || bootMs < 0 || bootMs > 600_000) throw new MorganaError('ERR_DAEMON_REQUEST', 'bootMs must be 0 to 600000');
    const old = structuredClone(e.record);
    const fresh: StateRecord = structuredClone(e.record);
    if (fresh.kind === 'node') fresh.node = { ...fresh.node!, entry: req.image };
    else fresh.options = { ...fresh.options, image: req.image };
    fresh.restarts = 0;
    // The policies and files directories of now (either may have changed since the create).
    await this.#checkHostAccess(fresh, caller);
    // Pre-flight the new image before touching the running one.
    if (fresh.kind === 'node') validateNodeRun(fresh.node!);
    else await planDeployment({ ...fresh.options, detached: true, logFile: path.join(this.dir, 'console', `${fresh.name}.log`) });
    if (!e.exited) await e.uk.stop();
    this.#entries.delete(e.record.name);
    let failure: string | undefined;
    try {
      const entry = await this.#launch(fresh);
      const exit = await Promise.race([
        new Promise<ExitInfo | undefined>((resolve) => setTimeout(() => resolve(undefined), bootMs).unref()),
        new Promise<ExitInfo>((resolve) => entry.uk.once('exit', (x) => resolve(x))),
        ...(entry.exited ? [Promise.resolve(entry.uk.lastExit)] : []),
      ]);
      if (exit === undefined && !entry.exited) {
        this.#events.add('updated', { name: fresh.name, message: `now ${req.image}`, by: caller.identity });
        return { unikernel: this.#info(entry) };
      }
      failure = exit?.description ?? 'did not start';
      await entry.uk.stop();
    } catch (error) {
      failure = (error as Error).message;
    }
    this.#entries.delete(fresh.name);
    await this.#launch(old);
    this.#events.add('rolled-back', { name: old.name, reason: 'boot-failure', message: `${req.image} failed during boot (${failure}); back on ${old.plan.image}`, by: caller.identity });
    throw new MorganaError('ERR_DAEMON_UPDATE_FAILED', `the new image failed during boot (${failure}); rolled back to ${old.plan.image}`);
  }

  /** The names a request touches, for authorization. */
  #namesOf(req: Record<string, unknown>): string[] {
    if (typeof req.name === 'string') return [req.name];
    if (typeof req.path === 'string') return [req.path];
    return [];
  }

  async #handle(req: Record<string, unknown> & { cmd: string }, send: (msg: object) => void, conn: net.Socket, caller: Caller, data: LineQueue | undefined): Promise<object | undefined> {
    if (req.cmd !== 'deploy' && req.cmd !== 'run') authorize(caller, req.cmd, this.#namesOf(req));
    const visible = (name: string): boolean => isUnder(name, caller.owner);
    switch (req.cmd) {
      case 'ping':
        return { pid: process.pid, protocol: PROTOCOL_VERSION };
      case 'status':
        return {
          pid: process.pid,
          protocol: PROTOCOL_VERSION,
          uptimeMs: Date.now() - this.#startedAt,
          limits: this.limits,
          counters: this.counters,
          unikernels: this.#entries.size,
          // A confined caller's own: where its host files must lie.
          filesDirs: ownerFilesDirs(this.#filesDirs, caller.owner),
          caller,
        };
      case 'ps':
        return { unikernels: [...this.#entries.values()].filter((e) => visible(e.record.name)).map((e) => this.#info(e)) };
      case 'deploy':
        return { unikernel: this.#info(await this.#create('solo5', req, caller)) };
      case 'run':
        return { unikernel: this.#info(await this.#create('node', req, caller)) };
      case 'update':
        return this.#update(req, caller);
      case 'stop': {
        const e = this.#get(req.name);
        const raw = e.exited ? e.uk.lastExit : await e.uk.stop();
        const exit = raw && ownExit(e.record, raw);
        if (e.exited) await releaseDevices(e.record.provisioned, e.record.options.netns).catch(() => {});
        this.#entries.delete(e.record.name);
        await this.#save();
        this.#events.add('destroyed', { name: e.record.name, by: caller.identity });
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
        const stats = await e.uk.stats();
        const io = stats.process ? await processIo(stats.process.pid) : undefined;
        return { stats: { ...stats, target: e.record.plan.target, state: this.#info(e).state, exits: e.record.exits ?? {}, ...(io ? { io } : {}), ...(e.record.cpus ? { cpus: e.record.cpus } : {}) } };
      }
      case 'console': {
        const e = this.#get(req.name);
        const count = typeof req.count === 'number' ? req.count : 20;
        for (const line of e.uk.console(count)) send({ console: line });
        if (!req.follow || e.exited) return { end: true };
        await new Promise<void>((resolve) => {
          const onLine = (line: ConsoleLine): void => send({ console: line });
          const onExit = (exit: ExitInfo, final: boolean): void => {
            if (!final) return send({ exit: ownExit(e.record, exit), final });
            // The last lines are still being read from the log: end after them.
            void e.uk.exited.then(() => {
              send({ exit: ownExit(e.record, exit), final });
              done();
            });
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
      case 'events': {
        const name = typeof req.name === 'string' ? req.name : undefined;
        const mine = (ev: DaemonEvent): boolean => (name === undefined || ev.name === name) && (caller.owner === '' || (ev.name !== undefined && visible(ev.name)));
        for (const ev of this.#events.list(undefined, name).filter(mine).slice(-(typeof req.count === 'number' ? req.count : 100))) send({ event: ev });
        if (!req.follow) return { end: true };
        await new Promise<void>((resolve) => {
          const onEvent = (ev: DaemonEvent): void => {
            if (mine(ev)) send({ event: ev });
          };
          this.#events.on('event', onEvent);
          conn.once('close', () => {
            this.#events.off('event', onEvent);
            resolve();
          });
        });
        return { end: true };
      }
      case 'policy-list':
        return { policies: Object.fromEntries(Object.entries(this.#policies.toJSON()).filter(([p]) => visible(p))) };
      case 'policy-set': {
        const p = String(req.path);
        try {
          const policy = this.#policies.set(p, req.policy as ResourcePolicy, this.#usage(p));
          await this.#savePolicies();
          this.#events.add('policy-set', { name: p, message: JSON.stringify(policy), by: caller.identity });
          return { policy };
        } catch (error) {
          this.#events.add('refused', { name: p, reason: 'policy', message: (error as Error).message, by: caller.identity });
          throw error;
        }
      }
      case 'policy-remove': {
        let removed: boolean;
        try {
          removed = this.#policies.remove(String(req.path));
        } catch (error) {
          this.#events.add('refused', { name: String(req.path), reason: 'policy', message: (error as Error).message, by: caller.identity });
          throw error;
        }
        if (!removed) throw new MorganaError('ERR_DAEMON_UNKNOWN', `no policy for '${String(req.path)}'`);
        await this.#savePolicies();
        this.#events.add('policy-removed', { name: String(req.path), by: caller.identity });
        return {};
      }
      case 'block-list':
        return { blocks: (await this.#blocks.list()).filter((b) => visible(b.name)) };
      case 'block-info':
        return { block: { ...(await this.#blocks.info(String(req.name))), attachedTo: this.#attachedTo(String(req.name)) } };
      case 'block-create': {
        const name = String(req.name);
        const size = Number(req.size);
        try {
          for (const owner of ownerPaths(name).reverse()) {
            const p = this.#policies.get(owner);
            const used = this.#blocks.usedUnder(owner);
            if (p?.blockMB !== undefined && used + size > p.blockMB * MIB) {
              throw new MorganaError('ERR_DAEMON_POLICY', `block '${name}' refused by the policy of '${owner}': block storage would be ${Math.ceil((used + size) / MIB)} MB, limit ${p.blockMB} MB (in use ${Math.ceil(used / MIB)} MB)`);
            }
          }
        } catch (error) {
          this.#events.add('refused', { name, reason: 'policy', message: (error as Error).message, by: caller.identity });
          throw error;
        }
        const block = await this.#blocks.create(name, size);
        this.#events.add('block-created', { name, message: `${size} bytes`, by: caller.identity });
        return { block };
      }
      case 'block-delete': {
        const name = String(req.name);
        const user = this.#attachedTo(name);
        if (user) throw new MorganaError('ERR_DAEMON_BLOCK_BUSY', `block device '${name}' is attached to '${user}'; stop it first`);
        await this.#blocks.delete(name);
        this.#events.add('block-deleted', { name, by: caller.identity });
        return {};
      }
      case 'block-dump': {
        const name = String(req.name);
        const size = this.#blocks.size(name);
        send({ size });
        for await (const chunk of this.#blocks.dump(name)) {
          if (conn.destroyed) throw new MorganaError('ERR_DAEMON_REQUEST', 'client went away');
          if (!conn.write(`${JSON.stringify({ data: (chunk as Buffer).toString('base64') })}\n`)) await once(conn, 'drain');
        }
        return { end: true, size };
      }
      case 'block-restore': {
        const name = String(req.name);
        this.#blocks.size(name);
        const user = this.#attachedTo(name);
        if (user) throw new MorganaError('ERR_DAEMON_BLOCK_BUSY', `block device '${name}' is attached to '${user}'; stop it first`);
        send({ ready: true });
        const queue = data!;
        async function* chunks(): AsyncGenerator<Buffer> {
          for await (const line of queue) {
            let m: { data?: unknown; end?: unknown };
            try {
              m = JSON.parse(line) as typeof m;
            } catch {
              throw new MorganaError('ERR_DAEMON_REQUEST', 'restore data line is not JSON');
            }
            if (m.end === true) return;
            if (typeof m.data !== 'string') throw new MorganaError('ERR_DAEMON_REQUEST', 'restore lines are { data: base64 } and { end: true }');
            yield Buffer.from(m.data, 'base64');
          }
          throw new MorganaError('ERR_DAEMON_REQUEST', 'restore data ended without { end: true }');
        }
        const written = await this.#blocks.restore(name, chunks());
        this.#events.add('block-restored', { name, message: `${written} bytes`, by: caller.identity });
        return { written };
      }
      default:
        throw new MorganaError('ERR_DAEMON_REQUEST', `unknown command '${req.cmd}'`);
    }
  }

  #attachedTo(block: string): string | undefined {
    for (const e of this.#entries.values()) if (!e.exited && e.record.volumes?.includes(block)) return e.record.name;
    return undefined;
  }

  /** A new connection on a listener: counted, capped. */
  #accept(conn: net.Socket, caller: Caller, counters: ControlCounters): void {
    counters.accepted++;
    conn.on('error', () => {});
    this.#connections.add(conn);
    conn.once('close', () => this.#connections.delete(conn));
    if (counters.active >= this.limits.maxConnections) {
      counters.refusedBusy++;
      conn.end(`${JSON.stringify({ v: PROTOCOL_VERSION, ok: false, code: 'ERR_DAEMON_BUSY', message: `too many connections (${this.limits.maxConnections})` })}\n`);
      setTimeout(() => conn.destroy(), 1000).unref();
      return;
    }
    counters.active++;
    conn.once('close', () => counters.active--);
    this.#serve(conn, caller, counters);
  }

  /** Reads one request (with its data lines), handles it, answers, closes. */
  #serve(conn: net.Socket, caller: Caller, counters: ControlCounters): void {
    conn.on('error', () => {});
    this.#connections.add(conn);
    conn.once('close', () => this.#connections.delete(conn));
    const send = (msg: object): void => {
      if (!conn.destroyed && conn.writable) conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, ...msg })}\n`);
    };
    const refuse = (code: string, message: string): void => {
      reader.stop();
      send({ ok: false, code, message });
      conn.end();
      setTimeout(() => conn.destroy(), 1000).unref();
    };
    let request: (Record<string, unknown> & { cmd: string }) | undefined;
    let data: LineQueue | undefined;
    conn.setTimeout(this.limits.idleTimeoutMs);
    conn.on('timeout', () => {
      if (request && !data) return;
      counters.idleTimeouts++;
      refuse('ERR_DAEMON_IDLE', `no complete request within ${this.limits.idleTimeoutMs} ms`);
    });
    const reader = new BoundedLineReader(
      this.limits.maxLineBytes,
      (line) => {
        if (request) {
          data?.push(line);
          return;
        }
        try {
          request = parseRequest(line);
        } catch (error) {
          counters.malformed++;
          const e = error as MorganaError;
          refuse(e.code, e.message);
          return;
        }
        counters.requests++;
        if (request.cmd === 'block-restore') data = new LineQueue();
        else {
          reader.stop();
          conn.setTimeout(0);
        }
        conn.once('end', () => data?.end());
        const req = request;
        this.#handle(req, send, conn, caller, data).then(
          (result) => {
            if (result) send({ ok: true, ...result });
            conn.end();
          },
          (error: unknown) => {
            const e = error as { code?: unknown; message?: string };
            if (e.code === 'ERR_DAEMON_FORBIDDEN') {
              counters.forbidden++;
              this.#events.add('forbidden', { name: (e as { unikernel?: string }).unikernel ?? this.#namesOf(req)[0], reason: req.cmd, message: e.message, by: caller.identity });
            }
            send({ ok: false, code: typeof e.code === 'string' ? e.code : 'ERR_INTERNAL', message: e.message ?? String(error) });
            reader.stop();
            conn.end();
          },
        );
      },
      () => {
        counters.oversized++;
        refuse('ERR_DAEMON_REQUEST_TOO_LARGE', `a request line is longer than ${this.limits.maxLineBytes} bytes`);
      },
    );
    conn.on('data', (chunk: Buffer) => reader.push(chunk));
  }

  async #collectMetrics(): Promise<MetricFamily[]> {
    const fam = (name: string, type: 'counter' | 'gauge', help: string): MetricFamily => ({ name, type, help, samples: [] });
    const up = fam('morgana_unikernel_up', 'gauge', 'Whether the unikernel runs (1) or not (0).');
    const cpu = fam('morgana_unikernel_cpu_seconds', 'counter', 'CPU time of the tender process (the node process for TypeScript unikernels).');
    const rss = fam('morgana_unikernel_resident_memory_bytes', 'gauge', 'Resident memory of the tender process.');
    const uptime = fam('morgana_unikernel_uptime_seconds', 'gauge', 'Seconds since the current run started.');
    const restarts = fam('morgana_unikernel_restarts', 'counter', 'Restarts after a failure.');
    const exits = fam('morgana_unikernel_exits', 'counter', 'Ended runs, by exit class.');
    const rxBytes = fam('morgana_unikernel_network_receive_bytes', 'counter', 'Bytes the guest received on a NET device (sent to the guest through its TAP).');
    const txBytes = fam('morgana_unikernel_network_transmit_bytes', 'counter', 'Bytes the guest sent on a NET device.');
    const rxPackets = fam('morgana_unikernel_network_receive_packets', 'counter', 'Frames the guest received on a NET device.');
    const txPackets = fam('morgana_unikernel_network_transmit_packets', 'counter', 'Frames the guest sent on a NET device.');
    const rxDrops = fam('morgana_unikernel_network_receive_drops', 'counter', 'Frames for the guest dropped on a NET device.');
    const txDrops = fam('morgana_unikernel_network_transmit_drops', 'counter', 'Frames from the guest dropped on a NET device.');
    const gwOpen = fam('morgana_unikernel_gateway_open', 'gauge', "User-mode network: TCP connections and UDP flows open now through the unikernel's gateway.");
    const gwAccepted = fam('morgana_unikernel_gateway_accepted', 'counter', 'User-mode network: connections (tcp) and flows (udp) accepted, forwarded from a host port or outbound from the guest.');
    const gwRefused = fam('morgana_unikernel_gateway_refused', 'counter', 'User-mode network: connections and flows refused by a limit or policy (reason limit_or_policy), or by the host (host_refused).');
    const gwDropped = fam('morgana_unikernel_gateway_dropped', 'counter', 'User-mode network: frames for the guest dropped by the gateway (oversized UDP datagrams, no link while the tender restarts).');
    const blockRead = fam('morgana_unikernel_block_read_bytes', 'counter', 'Bytes the tender read from storage (/proc/PID/io read_bytes).');
    const blockWrite = fam('morgana_unikernel_block_write_bytes', 'counter', 'Bytes the tender wrote to storage (/proc/PID/io write_bytes).');
    for (const e of this.#entries.values()) {
      const name = e.record.name;
      const target = e.record.plan.target;
      const stats = await e.uk.stats();
      up.samples.push({ labels: { name, target }, value: e.uk.running ? 1 : 0 });
      restarts.samples.push({ labels: { name }, value: e.uk.restarts });
      for (const [kind, n] of Object.entries(e.record.exits ?? {})) exits.samples.push({ labels: { name, class: kind }, value: n });
      if (stats.process) {
        cpu.samples.push({ labels: { name, mode: 'user' }, value: stats.process.utimeMs / 1000 }, { labels: { name, mode: 'system' }, value: stats.process.stimeMs / 1000 });
        rss.samples.push({ labels: { name }, value: stats.process.rssKiB * 1024 });
        const io = await processIo(stats.process.pid);
        if (io) {
          blockRead.samples.push({ labels: { name }, value: io.readBytes });
          blockWrite.samples.push({ labels: { name }, value: io.writeBytes });
        }
      }
      if (stats.uptimeMs !== undefined) uptime.samples.push({ labels: { name }, value: stats.uptimeMs / 1000 });
      for (const [device, c] of Object.entries(stats.nets)) {
        if (!c) continue;
        // The TAP's receive is the guest's transmit and the other way round.
        const labels = { name, device, tap: c.tap };
        rxBytes.samples.push({ labels, value: c.txBytes });
        txBytes.samples.push({ labels, value: c.rxBytes });
        rxPackets.samples.push({ labels, value: c.txPackets });
        txPackets.samples.push({ labels, value: c.rxPackets });
        rxDrops.samples.push({ labels, value: c.txDropped });
        txDrops.samples.push({ labels, value: c.rxDropped });
        const g = c.gateway;
        if (!g) continue;
        const at = { name, device };
        gwOpen.samples.push({ labels: { ...at, protocol: 'tcp' }, value: g.tcpConnections }, { labels: { ...at, protocol: 'udp' }, value: g.udpFlows });
        gwAccepted.samples.push(
          { labels: { ...at, protocol: 'tcp', direction: 'forwarded' }, value: g.accepted.forwardedTcp },
          { labels: { ...at, protocol: 'tcp', direction: 'outbound' }, value: g.accepted.outboundTcp },
          { labels: { ...at, protocol: 'udp', direction: 'forwarded' }, value: g.accepted.forwardedUdp },
          { labels: { ...at, protocol: 'udp', direction: 'outbound' }, value: g.accepted.outboundUdp },
        );
        gwRefused.samples.push(
          { labels: { ...at, protocol: 'tcp', reason: 'limit_or_policy' }, value: g.refused.tcp },
          { labels: { ...at, protocol: 'udp', reason: 'limit_or_policy' }, value: g.refused.udp },
          { labels: { ...at, protocol: 'tcp', reason: 'host_refused' }, value: g.refused.hostRefusedTcp },
        );
        gwDropped.samples.push({ labels: { ...at, reason: 'oversized_udp' }, value: g.dropped.oversizedUdp }, { labels: { ...at, reason: 'no_link' }, value: g.dropped.noLink }, { labels: { ...at, reason: 'no_guest_mac' }, value: g.dropped.noGuestMac });
      }
    }
    const conns = fam('morgana_daemon_control_connections', 'counter', 'Control connections accepted.');
    const active = fam('morgana_daemon_control_connections_active', 'gauge', 'Control connections open.');
    const refused = fam('morgana_daemon_control_refused', 'counter', 'Control connections or requests refused, by reason.');
    for (const [listener, c] of Object.entries(this.counters)) {
      conns.samples.push({ labels: { listener }, value: c.accepted });
      active.samples.push({ labels: { listener }, value: c.active });
      for (const reason of ['refusedBusy', 'idleTimeouts', 'malformed', 'oversized', 'forbidden'] as const) refused.samples.push({ labels: { listener, reason }, value: c[reason] });
    }
    return [up, cpu, rss, uptime, restarts, exits, rxBytes, txBytes, rxPackets, txPackets, rxDrops, txDrops, gwOpen, gwAccepted, gwRefused, gwDropped, blockRead, blockWrite, conns, active, refused];
  }
}

/** Forwarded ports as `docker ps` shows them: `127.0.0.1:8080->80/tcp` (IPv6 host addresses in brackets). */
export function formatForwards(networks: readonly DaemonUserNetworkInfo[] | undefined): string[] {
  return (networks ?? []).flatMap((n) => n.forwards.map((f) => `${f.hostAddress.includes(':') ? `[${f.hostAddress}]` : f.hostAddress}:${f.hostPort}->${f.guestPort}/${f.protocol}`));
}

/** The `ps` view of an entry's user-mode networks. */
function userNetworks(e: Entry): DaemonUserNetworkInfo[] {
  return e.uk.gateways.map((g, i) => ({ device: e.record.options.userNets![i]!.name, mode: 'user', guest: g.guest, gateway: g.gateway, dns: g.dns, forwards: g.forwards.map((f) => ({ ...f })) }));
}

/** SIGKILL to `pid`, then waits (at most 5 s) until it is gone. */
async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  const end = Date.now() + 5000;
  while (existsSync(`/proc/${pid}`) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

/** Starts a daemon in `dir` (default {@link defaultDaemonDir}); adopts still-running unikernels from its state. */
export async function startDaemon(dir = defaultDaemonDir(), options: DaemonOptions = {}): Promise<Solo5Daemon> {
  const d = new Solo5Daemon(dir, options);
  await d.start();
  return d;
}

/** Where a client finds the daemon: its directory (Unix socket), or a remote TLS address with the client's certificate. */
export type DaemonTarget = string | { remote: string; cert: string; key: string; ca: string };

/**
 * Sends one request to the daemon; `onMessage` sees every message (console streams, block
 * dumps); resolves with the last one. `input` (for `block-restore`) is sent as data lines once
 * the daemon is ready. Rejects with `ERR_DAEMON_UNREACHABLE` when no daemon listens, or the
 * daemon's own error code.
 */
export function daemonRequest(
  target: DaemonTarget,
  request: DaemonRequest,
  onMessage?: (msg: Record<string, unknown>) => void,
  input?: AsyncIterable<Buffer>,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let conn: net.Socket;
    let where: string;
    if (typeof target === 'string') {
      where = socketPath(path.resolve(target));
      conn = net.connect(where);
      conn.once('connect', () => conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, ...request })}\n`));
    } else {
      where = target.remote;
      let host: string;
      let port: number;
      let cert, key, ca;
      try {
        ({ host, port } = parseHostPort(target.remote));
        [cert, key, ca] = [readFileSync(target.cert), readFileSync(target.key), readFileSync(target.ca)];
      } catch (error) {
        reject(error instanceof MorganaError ? error : new MorganaError('ERR_DAEMON_TLS', `cannot read TLS files: ${(error as Error).message}`));
        return;
      }
      conn = tls.connect({ host, port, cert, key, ca, minVersion: 'TLSv1.2' });
      conn.once('secureConnect', () => conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, ...request })}\n`));
    }
    let buffer = '';
    let last: Record<string, unknown> | undefined;
    const sendInput = async (): Promise<void> => {
      for await (const chunk of input!) {
        for (let i = 0; i < chunk.length; i += 32 * 1024) {
          if (!conn.write(`${JSON.stringify({ data: chunk.subarray(i, i + 32 * 1024).toString('base64') })}\n`)) await once(conn, 'drain');
        }
      }
      conn.write(`${JSON.stringify({ end: true })}\n`);
    };
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
        if (last.ready === true && input) void sendInput().catch((error: unknown) => conn.destroy(error as Error));
        onMessage?.(last);
      }
    });
    conn.once('error', (error: NodeJS.ErrnoException) => {
      if (typeof target !== 'string' && !['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ETIMEDOUT'].includes(error.code ?? '')) {
        reject(new MorganaError('ERR_DAEMON_TLS', `TLS connection to ${where} failed: ${error.code ? `${error.code}: ` : ''}${error.message}`));
        return;
      }
      reject(new MorganaError('ERR_DAEMON_UNREACHABLE', `no daemon at ${where}: ${error.code ?? error.message}`));
    });
    conn.once('close', () => {
      if (!last || last.ok === undefined) return reject(new MorganaError('ERR_DAEMON_UNREACHABLE', `the daemon at ${where} closed the connection without answering`));
      if (last.ok === false) return reject(new MorganaError(String(last.code), String(last.message)));
      resolve(last);
    });
  });
}
