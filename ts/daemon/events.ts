/**
 * The daemon's event log: lifecycle steps, refusals and security events with timestamps, kept in
 * memory (the last {@link EventLogOptions.capacity}) and appended to a JSON-lines file that is
 * compacted to the kept events once it grows past {@link EventLogOptions.maxFileBytes}, so it
 * survives daemon restarts and stays bounded.
 * @module
 */
import { EventEmitter } from 'node:events';
import { appendFileSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';

/** Kinds of events. */
export type DaemonEventType =
  | 'created'
  | 'started'
  | 'exited'
  | 'restarted'
  | 'destroyed'
  | 'adopted'
  | 'restored'
  | 'suspended'
  | 'updated'
  | 'rolled-back'
  | 'refused'
  | 'forbidden'
  | 'tls-refused'
  | 'block-created'
  | 'block-deleted'
  | 'block-restored'
  | 'policy-set'
  | 'policy-removed';

/** One event. */
export interface DaemonEvent {
  /** Sequence number, increasing across restarts. */
  seq: number;
  /** ISO 8601 time. */
  time: string;
  type: DaemonEventType;
  /** Unikernel, block device or policy path concerned, when there is one. */
  name?: string;
  /** Exit class for `exited` (an {@link ExitKind}), limit or right for refusals. */
  reason?: string;
  /** One line for humans. */
  message?: string;
  /** Who asked (TLS identity, or `local`). */
  by?: string;
}

/** Options of {@link EventLog}. */
export interface EventLogOptions {
  /** Events kept in memory and after compaction (default 1000). */
  capacity?: number;
  /** File size that triggers compaction (default 1 MiB). */
  maxFileBytes?: number;
}

/** A bounded, persisted event log. Emits `event` for followers. */
export class EventLog extends EventEmitter<{ event: [DaemonEvent] }> {
  readonly file: string;
  readonly capacity: number;
  readonly maxFileBytes: number;
  #events: DaemonEvent[] = [];
  #seq = 0;
  #fileBytes = 0;
  /** The file ends with a partial line (a crash mid-write): the next line starts on its own. */
  #torn = false;

  constructor(file: string, options: EventLogOptions = {}) {
    super();
    this.file = file;
    this.capacity = options.capacity ?? 1000;
    this.maxFileBytes = options.maxFileBytes ?? 1 << 20;
    this.setMaxListeners(0);
    try {
      const text = readFileSync(file, 'utf8');
      this.#fileBytes = Buffer.byteLength(text);
      this.#torn = text.length > 0 && !text.endsWith('\n');
      for (const line of text.split('\n')) {
        if (!line) continue;
        try {
          const e = JSON.parse(line) as DaemonEvent;
          if (typeof e.seq === 'number' && typeof e.type === 'string') this.#keep(e);
        } catch {
          // a torn last line after a crash: skipped
        }
      }
      this.#seq = this.#events.at(-1)?.seq ?? 0;
    } catch {
      // no log yet
    }
  }

  #keep(e: DaemonEvent): void {
    this.#events.push(e);
    if (this.#events.length > this.capacity) this.#events.splice(0, this.#events.length - this.capacity);
  }

  /** Records an event. */
  add(type: DaemonEventType, fields: Omit<DaemonEvent, 'seq' | 'time' | 'type'> = {}): DaemonEvent {
    const e: DaemonEvent = { seq: ++this.#seq, time: new Date().toISOString(), type, ...fields };
    this.#keep(e);
    const line = `${this.#torn ? '\n' : ''}${JSON.stringify(e)}\n`;
    this.#torn = false;
    try {
      if (this.#fileBytes + line.length > this.maxFileBytes) this.#compact();
      else {
        appendFileSync(this.file, line, { mode: 0o600 });
        this.#fileBytes += Buffer.byteLength(line);
      }
    } catch {
      // the log on disk is best effort; the in-memory one still has it
    }
    this.emit('event', e);
    return e;
  }

  #compact(): void {
    const text = this.#events.map((e) => `${JSON.stringify(e)}\n`).join('');
    writeFileSync(`${this.file}.tmp`, text, { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
    this.#fileBytes = statSync(this.file).size;
  }

  /** The last `count` events (all kept when omitted), oldest first; only those about `name` when given. */
  list(count?: number, name?: string): DaemonEvent[] {
    const all = name === undefined ? this.#events : this.#events.filter((e) => e.name === name);
    return count === undefined ? [...all] : all.slice(Math.max(0, all.length - count));
  }
}
