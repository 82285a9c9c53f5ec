/**
 * `node --expose-gc --import tsx bench/idle-memory.ts node|morgana`: opens the idle connections
 * of one of `bench/cases/conn.ts`'s idle-connection cases in this fresh process, measures the
 * memory they cost (see that module's documentation), closes them, and prints the measurement
 * as JSON on stdout. The cases run it from their `setup`, so that memory freed by earlier cases
 * in the benchmark process cannot be reused and hide part of the cost.
 * @module
 */
import { measureIdleMemory } from './cases/conn.js';

const kind = process.argv[2];
if (kind !== 'node' && kind !== 'morgana') {
  process.stderr.write('usage: node --expose-gc --import tsx bench/idle-memory.ts node|morgana\n');
  process.exit(64);
}
const measured = await measureIdleMemory(kind);
process.stdout.write(`${JSON.stringify(measured)}\n`);
// Stacks leave unref'd timers only, but do not wait on anything else.
process.exit(0);
