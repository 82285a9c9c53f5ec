/**
 * Console capture: a line splitter with a per-line length bound and a bounded ring of recent
 * lines (as albatross keeps 1024 lines of at most 512 bytes per unikernel).
 * @module
 */

/** One captured console line. */
export interface ConsoleLine {
  /** Milliseconds since the epoch when the line was complete. */
  time: number;
  /** `stdout` (the guest console) or `stderr` (the tender's own diagnostics). */
  stream: 'stdout' | 'stderr';
  /** The line, without its newline. */
  line: string;
  /** Set when the line was cut at the length limit. */
  truncated?: boolean;
}

/** A fixed-capacity ring of console lines; the oldest are dropped and counted. */
export class ConsoleRing {
  readonly capacity: number;
  #lines: ConsoleLine[] = [];
  #start = 0;
  /** Lines dropped because the ring was full. */
  dropped = 0;

  constructor(capacity = 1024) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  push(line: ConsoleLine): void {
    if (this.#lines.length < this.capacity) {
      this.#lines.push(line);
      return;
    }
    this.#lines[this.#start] = line;
    this.#start = (this.#start + 1) % this.capacity;
    this.dropped++;
  }

  /** The last `count` lines (all when omitted), oldest first. */
  lines(count?: number): ConsoleLine[] {
    const all = [...this.#lines.slice(this.#start), ...this.#lines.slice(0, this.#start)];
    return count === undefined ? all : all.slice(Math.max(0, all.length - count));
  }

  get size(): number {
    return this.#lines.length;
  }
}

/**
 * Splits a byte stream into lines (`\n`, with a trailing `\r` removed). A line longer than
 * `maxLength` bytes is emitted cut, marked truncated, and the rest of it is dropped.
 */
export class LineSplitter {
  #pending: Buffer[] = [];
  #pendingLength = 0;
  #discarding = false;

  constructor(
    private readonly emit: (line: string, truncated: boolean) => void,
    private readonly maxLength = 4096,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.#discarding) {
        const room = this.maxLength - this.#pendingLength;
        const piece = chunk.subarray(start, Math.min(end, start + room));
        this.#pending.push(piece);
        this.#pendingLength += piece.length;
        if (end - start > room) {
          this.#flush(true);
          this.#discarding = true;
        }
      }
      if (nl === -1) break;
      if (this.#discarding) this.#discarding = false;
      else this.#flush(false);
      start = nl + 1;
    }
  }

  /** Emits what is pending as a last line. */
  end(): void {
    if (this.#pendingLength > 0 && !this.#discarding) this.#flush(false);
    this.#pending = [];
    this.#pendingLength = 0;
    this.#discarding = false;
  }

  #flush(truncated: boolean): void {
    let line = Buffer.concat(this.#pending).toString('utf8');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    this.#pending = [];
    this.#pendingLength = 0;
    this.emit(line, truncated);
  }
}
