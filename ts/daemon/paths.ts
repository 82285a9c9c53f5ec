/**
 * Host file paths that daemon clients name (a user-mode network's `pcap`, a block device's backing
 * `file`) are confined to the daemon's files directories: `<daemon dir>/files` and those given
 * with `morgana daemon --files-dir DIR`. Not the daemon directory itself: it holds the state,
 * the policies and the block store, which a pcap or a guest-written block file must not overwrite.
 *
 * A path must be absolute and free of `..`; its directory is resolved with realpath (so a symbolic
 * link among its directories cannot lead out), and the file itself may not be a symbolic link.
 * The resolved path is what the daemon then uses, so a directory swapped for a link afterwards
 * does not move it.
 * @module
 */
import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { MorganaError } from '../errors.js';

function refuse(message: string): never {
  throw new MorganaError('ERR_DAEMON_PATH', message);
}

/**
 * Resolves `file` (for `what`, e.g. `pcap of 'service0'`) and checks that it lies inside one of
 * `roots` (already resolved with realpath). Returns the resolved path. Throws `ERR_DAEMON_PATH`
 * saying why and which directories are allowed.
 */
export async function confinedPath(file: unknown, roots: readonly string[], what: string): Promise<string> {
  const allowed = `allowed: files inside ${roots.join(', ')} (morgana daemon --files-dir adds a directory)`;
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
  if (!roots.some((root) => final.startsWith(`${root}${path.sep}`))) {
    refuse(`${what} '${file}' refused: it resolves to ${final}, outside the daemon's files directories; ${allowed}`);
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
