/**
 * Keeps the last lines a process wrote to stdout and stderr (the log of a `morgana run`), for
 * the dashboard, while still writing them where they went.
 * @module
 */

/** The captured output. */
export interface OutputRing {
  /** The last lines, oldest first. */
  lines(): string[];
  /** Puts `process.stdout.write` and `process.stderr.write` back. */
  restore(): void;
}

/** Starts keeping the last `limit` lines written to stdout and stderr. */
export function captureOutput(limit = 500): OutputRing {
  const ring: string[] = [];
  let partial = '';
  const keep = (chunk: unknown) => {
    const text = partial + (typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : '');
    const parts = text.split('\n');
    partial = parts.pop()!.slice(-4096);
    for (const line of parts) {
      ring.push(line);
      if (ring.length > limit) ring.shift();
    }
  };
  const originals = [process.stdout.write, process.stderr.write] as const;
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      keep(chunk);
      return write(chunk, ...rest);
    }) as typeof stream.write;
  }
  return {
    lines: () => (partial ? [...ring, partial] : [...ring]),
    restore() {
      process.stdout.write = originals[0];
      process.stderr.write = originals[1];
    },
  };
}
