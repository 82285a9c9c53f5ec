/**
 * The daemon's control protocol (version {@link PROTOCOL_VERSION}), shared by the local Unix
 * socket and the TLS listener. Described for humans in docs/daemon-protocol.md.
 *
 * Framing: newline-delimited JSON (UTF-8), one object per line. A connection carries one request
 * line (a `block-restore` request is followed by `{ data }` lines and an `{ end: true }` line) and
 * is answered by one response line, or by a stream of lines ended by a final response
 * (`console`/`logs`/`events` with `follow`, `block-dump`). Every response carries `v`.
 *
 * Limits (each refusal is counted, the connection closed, and the daemon keeps serving): a line
 * longer than {@link ControlLimits.maxLineBytes}, a connection idle for
 * {@link ControlLimits.idleTimeoutMs} before its request is complete, more than
 * {@link ControlLimits.maxConnections} connections at once.
 * @module
 */
import { MorganaError } from '../errors.js';

/** Version of the control protocol. A request may carry `v`; a different version is refused. */
export const PROTOCOL_VERSION = 1;

/** Bounds of the control listeners. */
export interface ControlLimits {
  /** Longest request line in bytes (default 65536). */
  maxLineBytes: number;
  /** Milliseconds a connection may stay silent before its request is complete (default 10000). */
  idleTimeoutMs: number;
  /** Most connections open at once, per listener (default 64). */
  maxConnections: number;
}

/** The default {@link ControlLimits}. */
export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = Object.freeze({ maxLineBytes: 65536, idleTimeoutMs: 10_000, maxConnections: 64 });

/** Counters of one control listener. */
export interface ControlCounters {
  /** Connections accepted. */
  accepted: number;
  /** Connections open now. */
  active: number;
  /** Connections refused because {@link ControlLimits.maxConnections} were open. */
  refusedBusy: number;
  /** Connections closed because they stayed idle too long. */
  idleTimeouts: number;
  /** Requests that were not valid JSON objects of the protocol. */
  malformed: number;
  /** Lines longer than {@link ControlLimits.maxLineBytes}. */
  oversized: number;
  /** Requests refused because the caller lacked the rights (TLS). */
  forbidden: number;
  /** Requests handled (successfully or not). */
  requests: number;
}

/** Fresh zeroed counters. */
export function newCounters(): ControlCounters {
  return { accepted: 0, active: 0, refusedBusy: 0, idleTimeouts: 0, malformed: 0, oversized: 0, forbidden: 0, requests: 0 };
}

/** Commands that only read (allowed to read-only TLS clients). */
export const READ_COMMANDS: ReadonlySet<string> = new Set(['ping', 'status', 'ps', 'console', 'stats', 'events', 'policy-list', 'block-list', 'block-info', 'block-dump']);

/** Commands that change something (admin only). */
export const ADMIN_COMMANDS: ReadonlySet<string> = new Set([
  'deploy',
  'run',
  'stop',
  'restart',
  'update',
  'policy-set',
  'policy-remove',
  'block-create',
  'block-delete',
  'block-restore',
]);

/**
 * Splits a byte stream into lines of at most `maxBytes` bytes. `onLine` gets each complete line
 * (without its newline); `onOversize` is called once when a line grows past the limit, after which
 * the reader ignores everything.
 */
export class BoundedLineReader {
  #parts: Buffer[] = [];
  #length = 0;
  #dead = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOversize: () => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (!this.#dead && start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.#length + (end - start) > this.maxBytes) {
        this.#dead = true;
        this.#parts = [];
        this.onOversize();
        return;
      }
      this.#parts.push(chunk.subarray(start, end));
      this.#length += end - start;
      if (nl === -1) return;
      const line = Buffer.concat(this.#parts).toString('utf8');
      this.#parts = [];
      this.#length = 0;
      start = nl + 1;
      this.onLine(line);
    }
  }

  /** Stops delivering lines. */
  stop(): void {
    this.#dead = true;
    this.#parts = [];
  }
}

function bad(message: string): never {
  throw new MorganaError('ERR_DAEMON_REQUEST', message);
}

const KNOWN = new Set([...READ_COMMANDS, ...ADMIN_COMMANDS]);

/**
 * Parses and checks the shape of one request line: a JSON object with a known string `cmd`, an
 * optional `v` equal to {@link PROTOCOL_VERSION}, and a string `name` where the command needs one.
 * Throws `ERR_DAEMON_REQUEST` or `ERR_DAEMON_PROTOCOL`. Deeper checks (option values) are the
 * command's.
 */
export function parseRequest(line: string): Record<string, unknown> & { cmd: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    bad('request is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('request must be a JSON object');
  const req = value as Record<string, unknown>;
  if (req.v !== undefined && req.v !== PROTOCOL_VERSION) {
    throw new MorganaError('ERR_DAEMON_PROTOCOL', `protocol version ${JSON.stringify(req.v)} is not supported; this daemon speaks version ${PROTOCOL_VERSION}`);
  }
  if (typeof req.cmd !== 'string') bad('request has no string "cmd"');
  if (!KNOWN.has(req.cmd)) bad(`unknown command '${req.cmd.slice(0, 64)}'`);
  const needsName = !['ping', 'status', 'ps', 'events', 'deploy', 'run', 'policy-list', 'policy-set', 'policy-remove', 'block-list'].includes(req.cmd);
  if (needsName && (typeof req.name !== 'string' || req.name === '' || req.name.length > 256)) bad(`'${req.cmd}' needs a "name" string`);
  for (const k of ['count', 'limit']) if (req[k] !== undefined && !(Number.isInteger(req[k]) && (req[k] as number) >= 0)) bad(`"${k}" must be a whole number`);
  if (req.follow !== undefined && typeof req.follow !== 'boolean') bad('"follow" must be a boolean');
  return req as Record<string, unknown> & { cmd: string };
}
