/**
 * Loads the napi-rs addon built from `crates/morgana-napi` (by `npm install` / `npm run build`).
 * Everything else reaches Rust through this module.
 * @module
 */
import { createRequire } from 'node:module';

/** The generated binding's exports. */
export type Native = typeof import('../native/index.cjs');

const require = createRequire(import.meta.url);

/** The loaded addon. */
export const native: Native = require('../native/index.cjs');
