/**
 * The unikernel commands, gathered for cli.ts: configure, build, run, clean, describe, query.
 * @module
 */
export { build } from './build.js';
export { clean } from './clean.js';
export { configure } from './configure.js';
export { describe } from './describe.js';
export { query } from './query.js';
export { run } from './run.js';
