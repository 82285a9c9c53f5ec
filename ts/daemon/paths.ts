/**
 * Host file paths that daemon clients name (a user-mode network's `pcap`, a block device's backing
 * `file`) are confined to the daemon's files directories: `<daemon dir>/files` and those given
 * with `morgana daemon --files-dir DIR`. Not the daemon directory itself: it holds the state,
 * the policies and the block store, which a pcap or a guest-written block file must not overwrite.
 *
 * The files directories are shared by the tenants, so a caller confined to owner path `a:b` names
 * files only under `<files dir>/a/b/` ({@link ownerFilesDirs}): a parent reaches its children's
 * files (as it reaches their names), a child never its parent's or a sibling's. Unconfined callers
 * keep the whole files directories. The daemon does not make the per-owner directories: the
 * operator does (`install -d -m 0700 <dir>/files/acme`), as real directories, not links.
 *
 * A path must be absolute and free of `..`; its directory is resolved with realpath (so a symbolic
 * link among its directories cannot lead out, not even into another tenant's directory), and the
 * file itself may not be a symbolic link. The resolved path is what the daemon then uses, so a
 * directory swapped for a link afterwards does not move it.
 * @module
 */
import { existsSync } from 'node:fs';
import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { MorganaError } from '../errors.js';
import { isOwnerPath } from './policy.js';

function refuse(message: string): never {
  throw new MorganaError('ERR_DAEMON_PATH', message);
}

/**
 * The directories where a caller confined to `owner` may name host files: `<root>/a/b` for owner
 * path `a:b` in each of the files directories `roots` (already resolved with realpath); `roots`
 * themselves for an unconfined caller (`owner` `''`). The owner directories are not resolved: a
 * file's resolved directory must lie under them as spelled, so one that is a symbolic link (into
 * another tenant's directory or out) admits nothing. Throws `ERR_DAEMON_PATH` for a malformed
 * owner path (whose parts could be `..`).
 */
export function ownerFilesDirs(roots: readonly string[], owner: string): string[] {
  if (owner === '') return [...roots];
  if (!isOwnerPath(owner)) refuse(`invalid owner path '${owner}'`);
  return roots.map((root) => path.join(root, ...owner.split(':')));
}

/**
 * Resolves `file` (for `what`, e.g. `pcap of 'service0'`) and checks that it lies inside one of
 * the files directories `roots` (already resolved with realpath), or, for a caller confined to
 * `owner`, inside its directories there ({@link ownerFilesDirs}). Returns the resolved path.
 * Throws `ERR_DAEMON_PATH` saying why and which directories are allowed.
 */
export async function confinedPath(file: unknown, roots: readonly string[], what: string, owner = ''): Promise<string> {
  const dirs = ownerFilesDirs(roots, owner);
  const whose = owner === '' ? "the daemon's files directories" : `${owner}'s files directories`;
  const missing = owner !== '' && !dirs.some((d) => existsSync(d));
  const allowed =
    owner === ''
      ? `allowed: files inside ${dirs.join(', ')} (morgana daemon --files-dir adds a directory)`
      : `allowed: files inside ${dirs.join(', ')}${missing ? ` (none exists: the daemon's operator makes one, e.g. install -d -m 0700 ${dirs[0]})` : ''}`;
  if (typeof file !== 'string' || file === '') refuse(`${what} must be a file path`);
  if (!path.isAbsolute(file)) refuse(`${what} '${file}' must be an absolute path (the daemon's working directory is not the client's)`);
  if (file.split('/').includes('..')) refuse(`${what} '${file}' refused: '..' is not allowed in paths given to the daemon; ${allowed}`);
  const resolved = path.resolve(file);
  let parent: string;
  try {
    parent = await realpath(path.dirname(resolved));
  } catch (error) {
    refuse(`${what} '${file}' refused: its directory cannot be resolved (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); ${allowed}`);
  }
  const final = path.join(parent, path.basename(resolved));
  if (!dirs.some((dir) => final.startsWith(`${dir}${path.sep}`))) {
    refuse(`${what} '${file}' refused: it resolves to ${final}, outside ${whose}; ${allowed}`);
  }
  try {
    const st = await lstat(final);
    if (st.isSymbolicLink()) refuse(`${what} '${file}' refused: it is a symbolic link; ${allowed}`);
    if (!st.isFile() && !st.isBlockDevice()) refuse(`${what} '${file}' refused: it is not a regular file`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return final;
}
