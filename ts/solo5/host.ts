/**
 * Host-side plumbing for Solo5 deployments: running `ip` (optionally in a named network
 * namespace), TAP and bridge provisioning, sparse block images, tender discovery and version
 * probing, and process / interface statistics from `/proc` and `/sys`.
 * @module
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { MorganaError } from '../errors.js';

/** Result of a finished command. */
interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (never rejects; a spawn failure gives code -1). */
export function runCommand(cmd: string, args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 4 << 20 }, (error, stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
      const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (e && typeof e.code !== 'number' ? e.message : '') });
    });
  });
}

/** Runs `ip [-n netns] args…`; throws `ERR_SOLO5_NET_SETUP` when it fails. */
export async function ip(netns: string | undefined, ...args: string[]): Promise<string> {
  const full = netns ? ['-n', netns, ...args] : args;
  const r = await runCommand('ip', full);
  if (r.code !== 0) throw new MorganaError('ERR_SOLO5_NET_SETUP', `\`ip ${full.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Whether a network interface exists (in `netns`, or the current namespace). */
export async function linkExists(netns: string | undefined, name: string): Promise<boolean> {
  const full = netns ? ['-n', netns, 'link', 'show', 'dev', name] : ['link', 'show', 'dev', name];
  return (await runCommand('ip', full)).code === 0;
}

/** Linux interface names: 1 to 15 bytes, no slash, colon or whitespace, not `.`/`..`. */
export function validInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.@-]{1,15}$/.test(name) && name !== '.' && name !== '..' && !name.includes('@');
}

/** Interface counters from `/sys/class/net/<name>/statistics` (read in the caller's namespace). */
export interface InterfaceCounters {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
  rxErrors: number;
  txErrors: number;
}

/**
 * Interface counters. In `netns` they come from `ip -s -j link show` (sysfs shows the namespace
 * that mounted it); otherwise from sysfs. Undefined when the interface is gone.
 */
export async function interfaceCounters(netns: string | undefined, name: string): Promise<InterfaceCounters | undefined> {
  if (netns) {
    const r = await runCommand('ip', ['-n', netns, '-s', '-j', 'link', 'show', 'dev', name]);
    if (r.code !== 0) return undefined;
    try {
      const s = (JSON.parse(r.stdout) as { stats64?: { rx: Record<string, number>; tx: Record<string, number> } }[])[0]?.stats64;
      if (!s) return undefined;
      return {
        rxBytes: s.rx.bytes ?? 0,
        rxPackets: s.rx.packets ?? 0,
        txBytes: s.tx.bytes ?? 0,
        txPackets: s.tx.packets ?? 0,
        rxDropped: s.rx.dropped ?? 0,
        txDropped: s.tx.dropped ?? 0,
        rxErrors: s.rx.errors ?? 0,
        txErrors: s.tx.errors ?? 0,
      };
    } catch {
      return undefined;
    }
  }
  const dir = `/sys/class/net/${name}/statistics`;
  const read = async (f: string): Promise<number> => Number((await readFile(path.join(dir, f), 'utf8')).trim());
  try {
    const [rxBytes, rxPackets, txBytes, txPackets, rxDropped, txDropped, rxErrors, txErrors] = await Promise.all(
      ['rx_bytes', 'rx_packets', 'tx_bytes', 'tx_packets', 'rx_dropped', 'tx_dropped', 'rx_errors', 'tx_errors'].map(read),
    );
    return { rxBytes: rxBytes!, rxPackets: rxPackets!, txBytes: txBytes!, txPackets: txPackets!, rxDropped: rxDropped!, txDropped: txDropped!, rxErrors: rxErrors!, txErrors: txErrors! };
  } catch {
    return undefined;
  }
}

/** CPU and memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`. */
export interface ProcessStats {
  pid: number;
  /** User CPU time in milliseconds. */
  utimeMs: number;
  /** System CPU time in milliseconds. */
  stimeMs: number;
  /** Resident set size in KiB. */
  rssKiB: number;
  /** Peak resident set size in KiB. */
  maxRssKiB: number;
  /** Virtual size in KiB. */
  vsizeKiB: number;
  /** Minor and major page faults. */
  minflt: number;
  majflt: number;
  /** Voluntary and involuntary context switches. */
  voluntaryCtxSwitches: number;
  nonvoluntaryCtxSwitches: number;
  threads: number;
}

const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux (USER_HZ)

/** Fields of `/proc/<pid>/stat` after the command name (index 0 = field 3, `state`). */
async function statFields(pid: number): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
  } catch {
    return undefined;
  }
}

/** The start time of a process in clock ticks since boot (to tell a pid from its reuse), or undefined. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  const f = await statFields(pid);
  if (!f || f[0] === 'Z' || f[0] === 'X') return undefined;
  return Number(f[19]);
}

/** Process statistics, or undefined when the process is gone. */
export async function processStats(pid: number): Promise<ProcessStats | undefined> {
  const f = await statFields(pid);
  if (!f) return undefined;
  let status = '';
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return {
    pid,
    utimeMs: (Number(f[11]) * 1000) / CLOCK_TICKS,
    stimeMs: (Number(f[12]) * 1000) / CLOCK_TICKS,
    rssKiB: field('VmRSS'),
    maxRssKiB: field('VmHWM'),
    vsizeKiB: field('VmSize'),
    minflt: Number(f[7]),
    majflt: Number(f[9]),
    voluntaryCtxSwitches: field('voluntary_ctxt_switches'),
    nonvoluntaryCtxSwitches: field('nonvoluntary_ctxt_switches'),
    threads: field('Threads'),
  };
}

/** Finds an executable: a path containing `/` as is, else on `PATH`. */
export async function findExecutable(name: string, envPath = process.env.PATH ?? ''): Promise<string | undefined> {
  const candidates = name.includes('/') ? [name] : envPath.split(':').filter(Boolean).map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      if ((await stat(c)).isFile()) return path.resolve(c);
    } catch {
      // next
    }
  }
  return undefined;
}

/** What `<tender> --version` reports. */
export interface TenderVersion {
  /** The version string (`v0.12.1-…`), or undefined when not printed. */
  version: string | undefined;
  /** The ABI version from the `ABI version N` line. */
  abi: number;
  /** The raw output. */
  output: string;
}

/**
 * Runs `<tender> --version` (stderr merged, as albatross does) and reads the `ABI version N` line.
 * Throws `ERR_SOLO5_TENDER_VERSION` when the tender does not run or prints no ABI version.
 */
export async function tenderVersion(tender: string): Promise<TenderVersion> {
  const r = await runCommand(tender, ['--version'], 10_000);
  const output = `${r.stdout}${r.stderr}`;
  const abi = /^ABI version (\d+)\s*$/m.exec(output);
  if (r.code !== 0 || !abi) {
    throw new MorganaError('ERR_SOLO5_TENDER_VERSION', `\`${tender} --version\` did not report an ABI version (exit ${r.code}): ${output.trim().slice(0, 300)}`);
  }
  return { version: /version (v\S+)/.exec(output)?.[1], abi: Number(abi[1]), output };
}

/**
 * Creates a sparse file of `size` bytes if `file` does not exist; checks an existing file's size
 * when `size` is given. Returns whether it created the file. Errors: `ERR_SOLO5_BLOCK`.
 */
export async function ensureBlockImage(file: string, size: number | undefined, sectorSize = 512): Promise<boolean> {
  let current: number | undefined;
  try {
    const s = await stat(file);
    if (!s.isFile() && !s.isBlockDevice()) throw new MorganaError('ERR_SOLO5_BLOCK', `block image ${file} is not a regular file or block device`);
    current = s.isFile() ? s.size : undefined;
  } catch (error) {
    if (error instanceof MorganaError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new MorganaError('ERR_SOLO5_BLOCK', `cannot stat block image ${file}: ${(error as Error).message}`);
  }
  if (size !== undefined && (size <= 0 || size % sectorSize !== 0)) {
    throw new MorganaError('ERR_SOLO5_BLOCK', `block size ${size} must be a positive multiple of the sector size ${sectorSize}`);
  }
  if (current !== undefined) {
    if (size !== undefined && current !== size) throw new MorganaError('ERR_SOLO5_BLOCK', `block image ${file} exists with ${current} bytes, not the requested ${size}`);
    if (current === 0 || current % sectorSize !== 0) throw new MorganaError('ERR_SOLO5_BLOCK', `block image ${file} is ${current} bytes, not a positive multiple of ${sectorSize}`);
    return false;
  }
  if (current === undefined && size === undefined) {
    try {
      await stat(file);
      return false; // a block device
    } catch {
      throw new MorganaError('ERR_SOLO5_BLOCK', `block image ${file} does not exist; give a size to create it`);
    }
  }
  try {
    const fh = await open(file, 'wx', 0o600);
    try {
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
  } catch (error) {
    throw new MorganaError('ERR_SOLO5_BLOCK', `cannot create block image ${file}: ${(error as Error).message}`);
  }
  return true;
}

/** Parses a size such as `64M`, `1G`, `4096`, `512K` (binary units) into bytes; NaN if malformed. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) return NaN;
  const units: Record<string, number> = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 };
  return Number(m[1]) * units[m[2]!.toUpperCase()]!;
}
