/**
 * Who is calling the daemon and what they may do. Local callers (the owner-only Unix socket) may
 * do everything. Remote callers connect over mutually authenticated TLS; their client
 * certificate, signed by the CA given with `--client-ca`, carries their rights in its subject:
 *
 * - `CN`: who they are (logged with every event they cause);
 * - `OU`: `admin` (every command) or `read-only` (ps, console, stats, events, policy and block
 *   listing and dumps);
 * - `O` (optional): the owner path they are confined to (`a:b`: only names under `a:b:`); absent
 *   means the whole tree.
 *
 * A confined caller names host files (images, pcaps, block files) only inside its own directory of
 * the daemon's files directories (`<files dir>/a/b/` for `a:b`); how its Solo5 images run on the
 * host (tender, user, namespace, …: {@link HOST_DEPLOY_OPTIONS}) is the daemon's choice, and it
 * may not run TypeScript unikernels, which are host code ({@link authorizeHostOptions}).
 * @module
 */
import type { PeerCertificate } from 'node:tls';
import { MorganaError } from '../errors.js';
import { isOwnerPath, isUnder } from './policy.js';
import { ADMIN_COMMANDS, READ_COMMANDS } from './protocol.js';

/** The rights of a caller. */
export interface Caller {
  /** `local` for the Unix socket, else the certificate's CN. */
  identity: string;
  role: 'admin' | 'read-only';
  /** Owner path the caller is confined to (`''`: everything). */
  owner: string;
  transport: 'unix' | 'tls';
}

/** The local owner of the Unix socket. */
export const LOCAL_CALLER: Caller = Object.freeze({ identity: 'local', role: 'admin', owner: '', transport: 'unix' });

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Rights from a verified client certificate. Throws `ERR_DAEMON_FORBIDDEN` when it names none. */
export function callerFromCertificate(cert: PeerCertificate): Caller {
  const subject = cert.subject ?? {};
  const cn = first(subject.CN);
  const ou = first(subject.OU);
  const o = first(subject.O) ?? '';
  if (!cn) throw new MorganaError('ERR_DAEMON_FORBIDDEN', 'client certificate has no CN');
  if (ou !== 'admin' && ou !== 'read-only') throw new MorganaError('ERR_DAEMON_FORBIDDEN', `client certificate of '${cn}' names no role (OU=admin or OU=read-only)`);
  // The parts name directories (a tenant's files are under `<files dir>/a/b/`): an empty part,
  // `.` or `..` would name another tenant's or the whole files directory.
  if (o !== '' && (o.length > 127 || !isOwnerPath(o))) {
    throw new MorganaError('ERR_DAEMON_FORBIDDEN', `client certificate of '${cn}' has an invalid owner path '${o}': parts of letters, digits, '.', '_', '-', each beginning with a letter or digit, joined by ':'`);
  }
  return { identity: cn, role: ou, owner: o, transport: 'tls' };
}

/**
 * Checks that `caller` may run `cmd` on `names` (the unikernels, block devices or policy paths
 * it touches). Throws `ERR_DAEMON_FORBIDDEN` saying which right is missing.
 */
export function authorize(caller: Caller, cmd: string, names: readonly string[]): void {
  if (caller.role !== 'admin' && !READ_COMMANDS.has(cmd)) {
    throw new MorganaError('ERR_DAEMON_FORBIDDEN', `'${caller.identity}' is read-only and may not run '${cmd}'`);
  }
  if (!READ_COMMANDS.has(cmd) && !ADMIN_COMMANDS.has(cmd)) throw new MorganaError('ERR_DAEMON_FORBIDDEN', `unknown command '${cmd}'`);
  for (const n of names) {
    if (!isUnder(n, caller.owner) || (caller.owner !== '' && n === caller.owner && cmd.startsWith('policy-'))) {
      throw new MorganaError('ERR_DAEMON_FORBIDDEN', `'${caller.identity}' is confined to '${caller.owner}:' and may not ${cmd} '${n}'`);
    }
  }
}

/**
 * Deploy options that reach the host beyond the guest and its devices, with why a confined caller
 * may not set them: a confined tenant deploys unikernels, the daemon chooses how they run (as
 * albatross does). Unconfined admins keep them: they are trusted with the host.
 */
export const HOST_DEPLOY_OPTIONS: Readonly<Record<string, string>> = Object.freeze({
  tender: "may not choose the tender; the daemon's own is used",
  dumpcore: 'may not choose a host directory for core dumps (dumpcore)',
  user: 'may not choose the host user the tender runs as (user)',
  netns: 'may not choose the network namespace the tender runs in (netns)',
  cwd: "may not choose the tender's working directory (cwd)",
  kvmDevice: 'may not name a host device for KVM (kvmDevice)',
  gdb: 'may not open a debugger port on the host (gdb)',
  gdbPort: 'may not open a debugger port on the host (gdbPort)',
});

/**
 * Checks the options of a `deploy` (or the kind of a `run`/`update`) against what a confined
 * caller may ask of the host. Throws `ERR_DAEMON_FORBIDDEN` naming the option and why.
 */
export function authorizeHostOptions(caller: Caller, cmd: 'deploy' | 'run' | 'update', name: string, kind: 'solo5' | 'node', options: object): void {
  if (caller.owner === '') return;
  const who = `${cmd} '${name}' refused: '${caller.identity}' is confined to '${caller.owner}:'`;
  if (kind === 'node') {
    throw new MorganaError('ERR_DAEMON_FORBIDDEN', `${who} and may not run or update TypeScript unikernels: a Node unikernel is host code running as the daemon's user, not a sandboxed guest (deploy a Solo5 image instead)`);
  }
  for (const [option, why] of Object.entries(HOST_DEPLOY_OPTIONS)) {
    const value = (options as Record<string, unknown>)[option];
    // `gdb: false` asks for nothing.
    if (value !== undefined && !(option === 'gdb' && value === false)) throw new MorganaError('ERR_DAEMON_FORBIDDEN', `${who} and ${why}`);
  }
  // A block file created with a size would be disk the policy's blockMB does not count (a sparse
  // file of any size, filled by the guest). The daemon's block store counts it: `block-create`,
  // then `file: "@name"` (whose size was taken off by now).
  const blocks = (options as { blocks?: unknown }).blocks;
  for (const b of Array.isArray(blocks) ? (blocks as { name?: unknown; size?: unknown }[]) : []) {
    if (b?.size !== undefined) {
      throw new MorganaError('ERR_DAEMON_FORBIDDEN', `${who} and may not create block files (size of block '${String(b.name)}'): storage it makes counts against the policies' blockMB only in the daemon's block store (block-create, then attach it as @NAME); a file in its files directory is used as it is`);
    }
  }
}
