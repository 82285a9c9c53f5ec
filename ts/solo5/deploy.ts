/**
 * Deploying and supervising a Solo5 unikernel: pre-flight checks (ABI target and version, KVM,
 * manifest devices), TAP / bridge / block provisioning, the tender command line, console capture,
 * exit classification, restart on failure, statistics and clean-up.
 *
 * ```ts
 * const uk = await deployUnikernel({ image: 'web.hvt', nets: [{ name: 'service0', tap: 'tap0', bridge: 'br0' }] });
 * uk.on('console', (l) => console.log(l.line));
 * const exit = await uk.exited;  // or: await uk.stop()
 * ```
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants, createWriteStream, type WriteStream, openSync, closeSync, fstatSync, statSync } from 'node:fs';
import { access, chown, open } from 'node:fs/promises';
import { isIP, isIPv4 } from 'node:net';
import path from 'node:path';
import type { Forward } from '../config/targets.js';
import { MorganaError } from '../errors.js';
import { parseMac } from '../net/mac.js';
import { type Solo5LogLevel, guestArgv } from './args.js';
import { type ConsoleLine, ConsoleRing, LineSplitter } from './console.js';
import { type ExitInfo, type RestartPolicy, classifyExit, restartDelay, shouldRestart } from './exit.js';
import {
  type InterfaceCounters,
  type ProcessStats,
  ensureBlockImage,
  findExecutable,
  interfaceCounters,
  ip,
  linkExists,
  processStartTime,
  processStats,
  runCommand,
  tenderVersion,
  validInterfaceName,
} from './host.js';
import { type Solo5Abi, type Solo5ImageInfo, inspectSolo5Image } from './image.js';
import type { Solo5Manifest } from './manifest.js';
import type { UserGatewayStats } from './gateway.js';
import { type NamespaceMode, type RunHooks, type UserNetAttachment, UserNetwork, hasNetAdmin, mirageNetArgs, userNetCommand, userNetTap } from './user-net.js';

/** Targets Morgana can deploy. */
export type DeployTarget = 'hvt' | 'spt' | 'virtio';

/** A network device of the manifest, attached to a host TAP. */
export interface NetAttachment {
  /** Manifest device name (e.g. `service0`). */
  name: string;
  /** Host TAP interface; created (and removed on stop) when missing. */
  tap: string;
  /** Bridge to enslave the TAP to; created (and removed on stop) when missing. */
  bridge?: string;
  /** Guest MAC address (`--net-mac`); default: the tender picks a random one. */
  mac?: string;
}

/** A block device of the manifest, backed by a host file. */
export interface BlockAttachment {
  /** Manifest device name (e.g. `storage`). */
  name: string;
  /** Backing file (or block device). */
  file: string;
  /** Size in bytes: the file is created sparse with this size when missing, else must have it. */
  size?: number;
  /** Sector size (`--block-sector-size`, Solo5 ≥ 0.7.4): a power of two ≥ 512. */
  sectorSize?: number;
}

/** Options of {@link deployUnikernel}. */
export interface DeployOptions {
  /** Path of the unikernel image (`.hvt`, `.spt`, `.virtio`). */
  image: string;
  /** Target; default: the image's ABI target. Must match the image. */
  target?: DeployTarget;
  /** Name of the unikernel (default: the image's base name). Letters, digits, `.`, `_`, `-`. */
  name?: string;
  /** Guest memory in MB (`--mem`); default: the tender's (512 MB; 128 MB for virtio). */
  memoryMB?: number;
  /** Network devices: their names must equal the manifest's NET_BASIC devices. */
  nets?: NetAttachment[];
  /**
   * NET devices on Morgana's user-mode gateway (no TAP or bridge on the host; see
   * {@link UserNetAttachment}): the tender then runs in a network namespace of its own.
   */
  userNets?: UserNetAttachment[];
  /**
   * How the user-mode networks' namespace is made: `'user'` (a user namespace too: no root
   * needed), `'net'` (a network namespace only: needs CAP_NET_ADMIN), `'auto'` (default:
   * `'net'` when this process has CAP_NET_ADMIN, else `'user'`).
   */
  namespace?: NamespaceMode | 'auto';
  /** virtio under QEMU: `kvm`, `tcg` or `auto` (default: try KVM, fall back to TCG with a warning). */
  accel?: 'kvm' | 'tcg' | 'auto';
  /** Block devices: their names must equal the manifest's BLOCK_BASIC devices. */
  blocks?: BlockAttachment[];
  /** Guest arguments, escaped so each arrives intact (unless `rawArgs`). */
  args?: string[];
  /** Pass `args` verbatim (already escaped for parse-argv). */
  rawArgs?: boolean;
  /** Solo5 log level, passed first as `--solo5:<level>`. */
  logLevel?: Solo5LogLevel;
  /** Tender (or QEMU for virtio) path or name; default `solo5-<target>` (or `-debug`) on PATH. */
  tender?: string;
  /** Run TAP / bridge commands and the tender inside this named network namespace. */
  netns?: string;
  /** Console ring capacity in lines (default 1024; at most {@link MAX_CONSOLE_LINES}). */
  consoleLines?: number;
  /**
   * Longest console line in bytes before it is cut (default 4096; 80 to
   * {@link MAX_CONSOLE_LINE_LENGTH}). The ring holds at most `consoleLines × maxLineLength`
   * bytes, which may not pass {@link MAX_CONSOLE_BYTES}.
   */
  maxLineLength?: number;
  /** Append every console line to this file. */
  logFile?: string;
  /** Restart policy (default: no restart). */
  restart?: RestartPolicy;
  /** Run the tender as this user (name or uid) once its devices are set up. */
  user?: string | number;
  /** Wait for GDB (`--gdb`, needs `solo5-hvt-debug`). */
  gdb?: boolean;
  /** GDB port (`--gdb-port`). */
  gdbPort?: number;
  /** Write a core dump into this directory on guest abort (`--dumpcore`, `solo5-hvt-debug`). */
  dumpcore?: string;
  /** Environment of the tender (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Working directory of the tender (default: this process's). */
  cwd?: string;
  /** How long `stop()` waits after SIGTERM before SIGKILL, in ms (default 5000). */
  stopTimeoutMs?: number;
  /** KVM device checked for hvt (default `/dev/kvm`). */
  kvmDevice?: string;
  /**
   * Start the tender in its own session with its output appended to `logFile` (required), so it
   * survives the death of this process (used by `morgana daemon`). Not so with `userNets`: their
   * gateway lives in this process, and the tender gets SIGKILL when it dies.
   */
  detached?: boolean;
}

/** Statistics of a running unikernel. */
export interface UnikernelStats {
  name: string;
  /** Process statistics of the tender, or undefined when it is not running. */
  process: ProcessStats | undefined;
  /**
   * Counters of each TAP, by manifest device name (undefined when the TAP is gone), seen from
   * the host as a TAP's are (`rx`: what the guest sent). A user-mode device has `tap: 'user'`,
   * its private link's counters in the same orientation, and its gateway's counters.
   */
  nets: Record<string, (InterfaceCounters & { tap: string; gateway?: UserGatewayStats }) | undefined>;
  restarts: number;
  consoleLines: number;
  consoleDropped: number;
  uptimeMs: number | undefined;
}

/** Events of a {@link Unikernel}. */
export interface UnikernelEvents {
  /** The tender started (again). */
  start: [pid: number];
  /** A console line (stdout: guest console; stderr: tender diagnostics). */
  console: [line: ConsoleLine];
  /** A run ended; `final` when no restart follows. */
  exit: [exit: ExitInfo, final: boolean];
  /** A restart is scheduled after `delayMs`. */
  restart: [attempt: number, delayMs: number];
  /** Clean-up of provisioned devices failed (the unikernel itself has ended). */
  cleanupError: [error: Error];
}

/** What was provisioned for a deployment, so it can be removed (also persisted by the daemon). */
export interface Provisioned {
  createdTaps: string[];
  createdBridges: string[];
  /** Pre-existing TAPs we enslaved to a bridge. */
  enslavedTaps: string[];
  createdBlocks: string[];
}

/** The resolved plan of a deployment. */
export interface DeployPlan {
  name: string;
  image: string;
  target: DeployTarget;
  abi: Solo5Abi;
  manifest: Solo5Manifest;
  /** The tender (or QEMU) path. */
  tender: string;
  /** The tender's version and ABI, as `--version` printed them (undefined for virtio). */
  tenderVersion: { version: string | undefined; abi: number } | undefined;
  /** Tender arguments (without the tender itself). */
  args: string[];
  /** The full command that is spawned (with `ip netns exec` / `setpriv` when applicable). */
  command: string[];
  /** virtio with `accel: 'auto'` on KVM: the TCG command run if QEMU fails to start with KVM. */
  fallbackCommand?: string[];
  /** virtio: the accelerator of `command`. */
  accel?: 'kvm' | 'tcg';
  /** Said once when the unikernel starts (e.g. why KVM is not used). */
  warnings?: string[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function badOption(message: string): never {
  throw new MorganaError('ERR_SOLO5_BAD_OPTION', message);
}

/**
 * Checks that the attachments name exactly the manifest's devices, with the right types.
 * Throws `ERR_SOLO5_DEVICE_MISMATCH` listing what is missing, extra or of the wrong kind.
 */
export function checkDevices(manifest: Solo5Manifest, nets: readonly { name: string }[], blocks: readonly { name: string }[]): void {
  const problems: string[] = [];
  const declared = new Map(manifest.devices.map((d) => [d.name, d.type]));
  const given = new Map<string, string>();
  for (const n of nets) {
    if (given.has(n.name)) problems.push(`device '${n.name}' given twice`);
    given.set(n.name, 'NET_BASIC');
  }
  for (const b of blocks) {
    if (given.has(b.name)) problems.push(`device '${b.name}' given twice`);
    given.set(b.name, 'BLOCK_BASIC');
  }
  for (const [name, type] of declared) {
    const g = given.get(name);
    if (g === undefined) problems.push(`${type} device '${name}' is declared in the manifest but not attached`);
    else if (g !== type) problems.push(`device '${name}' is ${type} in the manifest but was attached as ${g}`);
  }
  for (const [name, type] of given) if (!declared.has(name)) problems.push(`${type} device '${name}' is not declared in the manifest`);
  if (problems.length > 0) {
    const list = manifest.devices.map((d) => `${d.name} (${d.type})`).join(', ') || 'none';
    throw new MorganaError('ERR_SOLO5_DEVICE_MISMATCH', `devices do not match the manifest: ${problems.join('; ')}. Devices in the manifest: ${list}`);
  }
}

/** A forward as it arrives (from the command line, or as JSON over the daemon's socket). */
function checkForward(device: string, f: unknown): void {
  const o = f as Partial<Forward> | null;
  const where = `user-mode network '${device}': forward ${JSON.stringify(f)}`;
  if (typeof o !== 'object' || o === null) badOption(`${where} is not an object`);
  if (o.protocol !== 'tcp' && o.protocol !== 'udp') badOption(`${where}: protocol must be tcp or udp`);
  if (typeof o.hostAddress !== 'string' || !isIP(o.hostAddress)) badOption(`${where}: hostAddress must be an IP address`);
  if (!Number.isInteger(o.hostPort) || o.hostPort! < 0 || o.hostPort! > 65535) badOption(`${where}: hostPort must be 0 to 65535`);
  if (!Number.isInteger(o.guestPort) || o.guestPort! < 1 || o.guestPort! > 65535) badOption(`${where}: guestPort must be 1 to 65535`);
  if (o.guestAddress !== undefined && o.guestAddress !== null && (typeof o.guestAddress !== 'string' || !isIPv4(o.guestAddress))) badOption(`${where}: guestAddress must be an IPv4 address`);
}

/** Most lines a unikernel's console ring may keep. */
export const MAX_CONSOLE_LINES = 100_000;
/** Longest console line a unikernel may ask for. */
export const MAX_CONSOLE_LINE_LENGTH = 65_536;
/**
 * Most console bytes a unikernel may make this process keep (`consoleLines × maxLineLength`): a
 * guest writes what it likes to its console, and the daemon keeps every unikernel's ring.
 */
export const MAX_CONSOLE_BYTES = 64 << 20;

function validate(options: DeployOptions): void {
  if (typeof options !== 'object' || options === null) badOption('options must be an object');
  if (typeof options.image !== 'string' || options.image === '') badOption('image must be a path');
  if (options.target !== undefined && !['hvt', 'spt', 'virtio'].includes(options.target)) badOption(`unsupported target '${options.target}' (hvt, spt or virtio)`);
  if (options.name !== undefined && !NAME_RE.test(options.name)) badOption(`invalid name '${options.name}': 1 to 128 letters, digits, '.', '_', '-' or ':' (owner path separator)`);
  if (options.memoryMB !== undefined && (!Number.isInteger(options.memoryMB) || options.memoryMB < 1 || options.memoryMB > 65536)) {
    badOption(`memory must be a whole number of MB from 1 to 65536, got ${options.memoryMB}`);
  }
  for (const n of options.nets ?? []) {
    if (!/^[A-Za-z0-9]{1,67}$/.test(n.name)) badOption(`invalid net device name '${n.name}'`);
    if (!validInterfaceName(n.tap)) badOption(`invalid TAP name '${n.tap}' (1 to 15 characters)`);
    if (n.bridge !== undefined && !validInterfaceName(n.bridge)) badOption(`invalid bridge name '${n.bridge}'`);
    if (n.mac !== undefined) parseMac(n.mac);
  }
  if (options.userNets !== undefined && !Array.isArray(options.userNets)) badOption('userNets must be a list');
  for (const n of options.userNets ?? []) {
    if (typeof n !== 'object' || n === null || typeof n.name !== 'string' || !/^[A-Za-z0-9]{1,67}$/.test(n.name)) badOption(`invalid net device name '${String(n?.name)}'`);
    if (n.mac !== undefined) parseMac(n.mac);
    if (n.forwards !== undefined && !Array.isArray(n.forwards)) badOption(`user-mode network '${n.name}': forwards must be a list`);
    for (const f of n.forwards ?? []) checkForward(n.name, f);
    if (n.pcap !== undefined && (typeof n.pcap !== 'string' || n.pcap === '')) badOption(`user-mode network '${n.name}': pcap must be a file path`);
  }
  if (options.userNets?.length) {
    if (options.netns) badOption('--netns and user-mode networks (--net NAME=user) do not go together: the tender gets a namespace of its own');
    if (options.user !== undefined) badOption('--user and user-mode networks do not go together (the tender runs in its own user namespace)');
  }
  if (options.namespace !== undefined && !['auto', 'user', 'net'].includes(options.namespace)) badOption(`namespace must be auto, user or net, got '${options.namespace}'`);
  if (options.accel !== undefined && !['kvm', 'tcg', 'auto'].includes(options.accel)) badOption(`accel must be kvm, tcg or auto, got '${options.accel}'`);
  const taps = (options.nets ?? []).map((n) => n.tap);
  if (new Set(taps).size !== taps.length) badOption('two network devices use the same TAP');
  for (const b of options.blocks ?? []) {
    if (!/^[A-Za-z0-9]{1,67}$/.test(b.name)) badOption(`invalid block device name '${b.name}'`);
    if (typeof b.file !== 'string' || b.file === '' || /\s/.test(b.file)) badOption(`block '${b.name}': file must be a path without whitespace`);
    if (b.sectorSize !== undefined && (b.sectorSize < 512 || (b.sectorSize & (b.sectorSize - 1)) !== 0)) badOption(`block '${b.name}': sector size must be a power of two ≥ 512`);
  }
  if (options.consoleLines !== undefined && (!Number.isInteger(options.consoleLines) || options.consoleLines < 1 || options.consoleLines > MAX_CONSOLE_LINES)) {
    badOption(`consoleLines must be a whole number from 1 to ${MAX_CONSOLE_LINES}, got ${options.consoleLines}`);
  }
  if (options.maxLineLength !== undefined && (!Number.isInteger(options.maxLineLength) || options.maxLineLength < 80 || options.maxLineLength > MAX_CONSOLE_LINE_LENGTH)) {
    badOption(`maxLineLength must be a whole number of bytes from 80 to ${MAX_CONSOLE_LINE_LENGTH}, got ${options.maxLineLength}`);
  }
  if ((options.consoleLines ?? 1024) * (options.maxLineLength ?? 4096) > MAX_CONSOLE_BYTES) {
    badOption(`the console ring (consoleLines × maxLineLength) may hold at most ${MAX_CONSOLE_BYTES} bytes`);
  }
  if (options.gdbPort !== undefined && (!Number.isInteger(options.gdbPort) || options.gdbPort < 0 || options.gdbPort > 65535)) badOption('gdb port must be 0..65535');
  if (options.detached && !options.logFile) badOption('a detached deployment needs a logFile');
  if (options.restart && !['no', 'on-failure'].includes(options.restart.mode)) badOption(`unknown restart mode '${options.restart.mode}'`);
}

async function resolveUser(user: string | number): Promise<{ uid: number; gid: number }> {
  const spec = String(user);
  const [u, g] = await Promise.all([runCommand('id', ['-u', spec]), runCommand('id', ['-g', spec])]);
  if (u.code !== 0 || g.code !== 0) badOption(`unknown user '${spec}'`);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/**
 * Resolves and checks everything short of touching the host: image notes, target, devices,
 * options, tender and its ABI version, KVM. Throws {@link MorganaError} (`ERR_SOLO5_*`).
 */
export async function planDeployment(options: DeployOptions): Promise<DeployPlan & { info: Solo5ImageInfo; user?: { uid: number; gid: number } }> {
  validate(options);
  const image = path.resolve(options.image);
  const info = await inspectSolo5Image(image);
  const imageTarget = info.abi.target;
  if (imageTarget !== 'hvt' && imageTarget !== 'spt' && imageTarget !== 'virtio') {
    throw new MorganaError('ERR_SOLO5_TARGET_MISMATCH', `image is built for the ${imageTarget} target, which Morgana cannot deploy (hvt, spt, virtio)`);
  }
  const target = options.target ?? imageTarget;
  if (target !== imageTarget) throw new MorganaError('ERR_SOLO5_TARGET_MISMATCH', `image is built for ${imageTarget}, not ${target}`);
  const bad = info.manifest.devices.find((d) => d.type === '<undefined type>');
  if (bad) throw new MorganaError('ERR_SOLO5_BAD_MANIFEST', `manifest device '${bad.name}' has an unknown type ${bad.typeId}`);
  const userNets = options.userNets ?? [];
  const nets: NetAttachment[] = [...(options.nets ?? []), ...userNets.map((u, i) => ({ name: u.name, tap: userNetTap(i), ...(u.mac ? { mac: u.mac } : {}) }))];
  const blocks = options.blocks ?? [];
  checkDevices(info.manifest, nets, blocks);
  if ((options.gdb || options.gdbPort !== undefined || options.dumpcore) && target !== 'hvt') badOption('--gdb and --dumpcore need the hvt target (solo5-hvt-debug)');
  const name = options.name ?? (path.basename(image).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64) || 'unikernel');
  const netArgs = userNets[0] ? mirageNetArgs(userNets[0], options.args ?? []) : [];
  const guest = guestArgv([...netArgs, ...(options.args ?? [])], { logLevel: options.logLevel, raw: options.rawArgs });

  const debug = Boolean(options.gdb || options.gdbPort !== undefined || options.dumpcore);
  const wanted = options.tender ?? (target === 'virtio' ? 'qemu-system-x86_64' : `solo5-${target}${debug ? '-debug' : ''}`);
  const tender = await findExecutable(wanted);
  if (!tender) {
    throw new MorganaError('ERR_SOLO5_TENDER_NOT_FOUND', `tender '${wanted}' not found${wanted.includes('/') ? '' : ' on PATH'}; install Solo5 or pass --tender`);
  }

  let version: DeployPlan['tenderVersion'];
  let accel: DeployPlan['accel'];
  let tcgArgs: string[] | undefined;
  const warnings: string[] = [];
  const kvm = options.kvmDevice ?? '/dev/kvm';
  let kvmUsable = false;
  try {
    await access(kvm, constants.R_OK | constants.W_OK);
    kvmUsable = true;
  } catch {
    kvmUsable = false;
  }
  let args: string[];
  if (target === 'virtio') {
    args = ['-m', String(options.memoryMB ?? 128), '-nodefaults', '-machine', 'acpi=off', '-display', 'none', '-serial', 'stdio', '-device', 'isa-debug-exit'];
    const wanted = options.accel ?? 'auto';
    if (wanted === 'kvm' && !kvmUsable) throw new MorganaError('ERR_SOLO5_NO_KVM', `--accel kvm: ${kvm} is missing or not readable and writable (use --accel tcg or auto)`);
    accel = wanted === 'tcg' || !kvmUsable ? 'tcg' : 'kvm';
    if (wanted === 'auto' && !kvmUsable) warnings.push(`${kvm} is missing or not readable and writable: QEMU runs with TCG (emulation, slower)`);
    nets.forEach((n, i) => {
      args.push('-device', `virtio-net,netdev=n${i},addr=${(2 + i).toString(16)},bus=pci.0${n.mac ? `,mac=${n.mac}` : ''}`);
      args.push('-netdev', `tap,id=n${i},ifname=${n.tap},script=no,downscript=no`);
    });
    blocks.forEach((b, i) => {
      args.push('-drive', `id=drive${i},file=${b.file.replace(/,/g, ',,')},if=none,format=raw`);
      args.push('-device', `virtio-blk,drive=drive${i},addr=${(2 + nets.length + i).toString(16)},bus=pci.0`);
    });
    args.push('-kernel', image);
    if (guest.length > 0) args.push('-append', guest.join(' ').replace(/,/g, ',,'));
    if (accel === 'kvm' && wanted === 'auto') tcgArgs = ['-accel', 'tcg', ...args];
    args.unshift(...(accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg']));
  } else {
    const v = await tenderVersion(tender);
    const kind = /^(solo5-[a-z]+)(?:-debug)? tender/m.exec(v.output)?.[1];
    if (kind !== undefined && kind !== `solo5-${target}`) {
      throw new MorganaError('ERR_SOLO5_TARGET_MISMATCH', `image is built for ${target} but ${tender} is a ${kind} tender`);
    }
    if (v.abi !== info.abi.version) {
      throw new MorganaError('ERR_SOLO5_ABI_MISMATCH', `image requests Solo5 ABI version ${info.abi.version} but ${tender} supports ABI version ${v.abi}`);
    }
    version = { version: v.version, abi: v.abi };
    if (target === 'hvt' && !kvmUsable) {
      const who = process.getuid?.() === 0 ? '' : ` by uid ${process.getuid?.()} (add the user to the group owning ${kvm}, e.g. kvm)`;
      throw new MorganaError('ERR_SOLO5_NO_KVM', `${kvm} is missing or not readable and writable${who}; hvt needs read/write access to KVM (try the spt target, which needs nothing more)`);
    }
    args = [];
    if (options.memoryMB !== undefined) args.push(`--mem=${options.memoryMB}`);
    for (const n of nets) {
      args.push(`--net:${n.name}=${n.tap}`);
      if (n.mac) args.push(`--net-mac:${n.name}=${n.mac.toLowerCase()}`);
    }
    for (const b of blocks) {
      args.push(`--block:${b.name}=${path.resolve(b.file)}`);
      if (b.sectorSize !== undefined) args.push(`--block-sector-size:${b.name}=${b.sectorSize}`);
    }
    if (options.gdb) args.push('--gdb');
    if (options.gdbPort !== undefined) args.push(`--gdb-port=${options.gdbPort}`);
    if (options.dumpcore) args.push(`--dumpcore=${path.resolve(options.dumpcore)}`);
    args.push('--', image, ...guest);
  }
  const user = options.user !== undefined ? await resolveUser(options.user) : undefined;
  const mode = options.namespace === undefined || options.namespace === 'auto' ? (hasNetAdmin() ? 'net' : 'user') : options.namespace;
  const wrap = async (tenderArgs: string[]): Promise<string[]> => {
    let command = [tender, ...tenderArgs];
    if (userNets.length > 0) command = await userNetCommand(userNets.length, mode, command);
    if (user && options.netns) command.unshift('setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--');
    if (options.netns) command.unshift('ip', 'netns', 'exec', options.netns);
    return command;
  };
  const command = await wrap(args);
  return {
    name,
    image,
    target,
    abi: info.abi,
    manifest: info.manifest,
    tender,
    tenderVersion: version,
    args,
    command,
    ...(tcgArgs ? { fallbackCommand: await wrap(tcgArgs) } : {}),
    ...(accel ? { accel } : {}),
    ...(warnings.length ? { warnings } : {}),
    info,
    ...(user ? { user } : {}),
  };
}

/** Provisions TAPs, bridges and block images; on failure undoes what it did and rethrows. */
export async function provisionDevices(
  options: Pick<DeployOptions, 'nets' | 'blocks' | 'netns'>,
  user?: { uid: number; gid: number },
): Promise<Provisioned> {
  const done: Provisioned = { createdTaps: [], createdBridges: [], enslavedTaps: [], createdBlocks: [] };
  const ns = options.netns;
  try {
    for (const n of options.nets ?? []) {
      if (n.bridge && !(await linkExists(ns, n.bridge))) {
        await ip(ns, 'link', 'add', 'name', n.bridge, 'type', 'bridge');
        done.createdBridges.push(n.bridge);
        await ip(ns, 'link', 'set', 'dev', n.bridge, 'up');
      }
      if (!(await linkExists(ns, n.tap))) {
        const owner = user ? ['user', String(user.uid), 'group', String(user.gid)] : [];
        await ip(ns, 'tuntap', 'add', 'dev', n.tap, 'mode', 'tap', ...owner);
        done.createdTaps.push(n.tap);
      } else if (!n.bridge) {
        // An existing interface is used as it is, but it must be a TAP.
        const detail = await ip(ns, '-d', 'link', 'show', 'dev', n.tap);
        if (!/\btun type tap\b/.test(detail)) throw new MorganaError('ERR_SOLO5_NET_SETUP', `interface ${n.tap} exists and is not a TAP device`);
      }
      if (n.bridge) {
        await ip(ns, 'link', 'set', 'dev', n.tap, 'master', n.bridge);
        if (!done.createdTaps.includes(n.tap)) done.enslavedTaps.push(n.tap);
      }
      await ip(ns, 'link', 'set', 'dev', n.tap, 'up');
    }
    for (const b of options.blocks ?? []) {
      if (await ensureBlockImage(path.resolve(b.file), b.size, b.sectorSize ?? 512)) {
        done.createdBlocks.push(path.resolve(b.file));
        if (user) await chown(path.resolve(b.file), user.uid, user.gid);
      }
    }
  } catch (error) {
    await releaseDevices(done, ns).catch(() => {});
    throw error;
  }
  return done;
}

/** Removes the TAPs and bridges a deployment created, and un-enslaves pre-existing TAPs. Block images are kept. */
export async function releaseDevices(p: Provisioned, netns?: string): Promise<void> {
  const errors: string[] = [];
  const attempt = async (...args: string[]): Promise<void> => {
    try {
      await ip(netns, ...args);
    } catch (error) {
      errors.push((error as Error).message);
    }
  };
  for (const tap of p.enslavedTaps) if (await linkExists(netns, tap)) await attempt('link', 'set', 'dev', tap, 'nomaster');
  for (const tap of p.createdTaps) if (await linkExists(netns, tap)) await attempt('link', 'del', 'dev', tap);
  for (const br of p.createdBridges) if (await linkExists(netns, br)) await attempt('link', 'del', 'dev', br);
  if (errors.length > 0) throw new MorganaError('ERR_SOLO5_NET_SETUP', `clean-up failed: ${errors.join('; ')}`);
}

/**
 * A supervised unikernel. Emits {@link UnikernelEvents}; `exited` resolves with the final exit
 * (after any restarts), once the devices it created are removed.
 */
export class Unikernel extends EventEmitter<UnikernelEvents> {
  /** Unikernel name. */
  readonly name: string;
  /** The resolved plan (tender, arguments, ABI, manifest). */
  readonly plan: DeployPlan;
  /** What was provisioned (removed when the unikernel finally stops). */
  readonly provisioned: Provisioned;
  /** Resolves with the final exit, after clean-up. */
  readonly exited: Promise<ExitInfo>;
  /** Number of restarts so far. */
  restarts = 0;
  /** Last exit, if any. */
  lastExit: ExitInfo | undefined;

  #options: DeployOptions;
  #ring: ConsoleRing;
  #log: WriteStream | undefined;
  #child: ChildProcess | undefined;
  #pid: number | undefined;
  #startedAt: number | undefined;
  #stopRequested = false;
  #restartRequested = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #stderrTail: string[] = [];
  #resolveExited!: (exit: ExitInfo) => void;
  #final = false;
  #user: { uid: number; gid: number } | undefined;
  #poll: NodeJS.Timeout | undefined;
  #hooks: RunHooks | undefined;
  /** QEMU failed to start with KVM and runs with TCG now. */
  #fellBack = false;
  /** The guest wrote to its console in this run (QEMU got past its start-up). */
  #sawStdout = false;
  #warned = false;

  /** The user-mode gateways (`userNets`), in the order of the attachments. */
  get gateways(): UserNetwork['gateways'] {
    return this.#hooks instanceof UserNetwork ? this.#hooks.gateways : [];
  }

  /** @internal Use {@link deployUnikernel}. */
  constructor(options: DeployOptions, plan: DeployPlan, provisioned: Provisioned, user?: { uid: number; gid: number }, hooks?: RunHooks) {
    super();
    this.#hooks = hooks;
    // The user-mode gateways' diagnostics go to this unikernel's console, as the deployer's own do.
    if (hooks instanceof UserNetwork) hooks.diagnostics = (message) => this.#line('stderr', `morgana: ${message}`, false, false);
    this.#options = options;
    this.plan = plan;
    this.name = plan.name;
    this.provisioned = provisioned;
    this.#user = user;
    this.#ring = new ConsoleRing(options.consoleLines ?? 1024);
    if (options.logFile && !options.detached) this.#log = createWriteStream(options.logFile, { flags: 'a', mode: 0o600 });
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
  }

  /** The tender's process id while it runs. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** Whether the tender is running. */
  get running(): boolean {
    return this.#pid !== undefined;
  }

  /** The last `count` console lines (all kept when omitted), oldest first. */
  console(count?: number): ConsoleLine[] {
    return this.#ring.lines(count);
  }

  /** CPU, memory and TAP counters. */
  async stats(): Promise<UnikernelStats> {
    const nets: UnikernelStats['nets'] = {};
    for (const n of this.#options.nets ?? []) {
      const c = await interfaceCounters(this.#options.netns, n.tap);
      nets[n.name] = c ? { tap: n.tap, ...c } : undefined;
    }
    this.#options.userNets?.forEach((n, i) => {
      const gateway = this.gateways[i];
      if (!gateway) return;
      const g = gateway.stats();
      // The gateway's end of the link reads what the guest sent: the tender TAP's receive side.
      nets[n.name] = {
        tap: 'user',
        rxBytes: g.link.rxBytes,
        rxPackets: g.link.rxFrames,
        rxDropped: g.link.rxDropped,
        rxErrors: 0,
        txBytes: g.link.txBytes,
        txPackets: g.link.txFrames,
        txDropped: g.link.txDropped + g.dropped.noLink + g.dropped.oversizedUdp + g.dropped.noGuestMac,
        txErrors: 0,
        gateway: g,
      };
    });
    return {
      name: this.name,
      process: this.#pid !== undefined ? await processStats(this.#pid) : undefined,
      nets,
      restarts: this.restarts,
      consoleLines: this.#ring.size,
      consoleDropped: this.#ring.dropped,
      uptimeMs: this.#startedAt !== undefined && this.#pid !== undefined ? Date.now() - this.#startedAt : undefined,
    };
  }

  /**
   * Stops the unikernel (SIGTERM, then SIGKILL after `timeoutMs`), cancels any pending restart,
   * removes created devices and resolves with the final exit.
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<ExitInfo> {
    this.#stopRequested = true;
    if (this.#restartTimer) {
      clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
      if (this.#pid === undefined) void this.#finish(this.lastExit ?? classifyExit(null, 'SIGTERM', true));
    }
    this.#terminate(options.timeoutMs ?? this.#options.stopTimeoutMs ?? 5000);
    return this.exited;
  }

  /** Restarts the tender now (a requested restart: not counted against the restart limit). */
  async restart(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#final) throw new MorganaError('ERR_SOLO5_NOT_RUNNING', `unikernel ${this.name} has stopped`);
    if (this.#pid === undefined) {
      if (this.#restartTimer) clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
      await this.start();
      return;
    }
    this.#restartRequested = true;
    const started = new Promise<void>((resolve) => this.once('start', () => resolve()));
    this.#terminate(options.timeoutMs ?? this.#options.stopTimeoutMs ?? 5000);
    await started;
  }

  #terminate(timeoutMs: number): void {
    const pid = this.#pid;
    if (pid === undefined) return;
    this.#signal('SIGTERM');
    const timer = setTimeout(() => {
      if (this.#pid === pid) this.#signal('SIGKILL');
    }, timeoutMs);
    timer.unref();
  }

  #signal(sig: NodeJS.Signals): void {
    try {
      if (this.#child) this.#child.kill(sig);
      else if (this.#pid !== undefined) process.kill(this.#pid, sig);
    } catch {
      // already gone
    }
  }

  /** A console line; `fromTender` false for the gateways' notes, which say nothing about why the tender exits. */
  #line(stream: 'stdout' | 'stderr', line: string, truncated: boolean, fromTender = true): void {
    if (stream === 'stdout') this.#sawStdout = true;
    const entry: ConsoleLine = { time: Date.now(), stream, line, ...(truncated ? { truncated: true } : {}) };
    this.#ring.push(entry);
    if (stream === 'stderr' && fromTender) {
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > 8) this.#stderrTail.shift();
    }
    this.#log?.write(`${line}${truncated ? ' [truncated]' : ''}\n`);
    this.emit('console', entry);
  }

  /** @internal Starts (or restarts) the tender; resolves once it is spawned. */
  async start(): Promise<void> {
    const [cmd, ...args] = (this.#fellBack && this.plan.fallbackCommand ? this.plan.fallbackCommand : this.plan.command) as [string, ...string[]];
    if (!this.#warned) {
      this.#warned = true;
      for (const w of this.plan.warnings ?? []) this.#line('stderr', `morgana: ${w}`, false);
    }
    this.#sawStdout = false;
    const detached = Boolean(this.#options.detached);
    let stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe'];
    let fd: number | undefined;
    if (detached) {
      fd = openSync(this.#options.logFile!, 'a', 0o600);
      this.#tailOffset = fstatSync(fd).size;
      stdio = ['ignore', fd, fd];
    }
    const extra = this.#hooks?.prepare() ?? [];
    const child = spawn(cmd, args, {
      stdio: [...stdio, ...extra] as ('ignore' | 'pipe')[],
      env: this.#options.env ?? process.env,
      ...(this.#options.cwd ? { cwd: this.#options.cwd } : {}),
      detached,
      ...(this.#user && !this.#options.netns ? { uid: this.#user.uid, gid: this.#user.gid } : {}),
    });
    if (fd !== undefined) closeSync(fd);
    for (const e of extra) closeSync(e);
    this.#stderrTail = [];
    await new Promise<void>((resolve) => {
      child.once('spawn', () => resolve());
      child.once('error', (error) => {
        this.#line('stderr', `morgana: cannot start ${cmd}: ${error.message}`, false);
        resolve();
      });
    });
    if (child.pid === undefined) {
      const exit: ExitInfo = { kind: 'spawn-error', code: null, signal: null, description: `cannot start ${cmd}`, failed: true };
      await this.#finish(exit);
      return;
    }
    this.#child = child;
    this.#pid = child.pid;
    this.#startedAt = Date.now();
    const max = this.#options.maxLineLength ?? 4096;
    const splitters: LineSplitter[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = child[stream];
      if (!s) continue;
      const splitter = new LineSplitter((line, truncated) => this.#line(stream, line, truncated), max);
      splitters.push(splitter);
      s.on('data', (chunk: Buffer) => splitter.push(chunk));
    }
    if (detached) {
      this.#tail(this.#options.logFile!);
      child.unref();
    }
    child.once('close', (code, signal) => {
      for (const s of splitters) s.end();
      const ended = this.#hooks?.ended() ?? Promise.resolve();
      void ended.then(() => {
        this.#child = undefined;
        this.#pid = undefined;
        const requested = this.#stopRequested || this.#restartRequested;
        let exit = classifyExit(code, signal, requested, this.#stderrTail.join('\n'));
        if (this.plan.target === 'virtio' && !requested && exit.failed && !this.#sawStdout) {
          // QEMU never got the guest going: say why, in QEMU's words, not "killed by SIGABRT".
          const tail = this.#stderrTail.filter((l) => !l.startsWith('morgana:'));
          const why = [...tail].reverse().find((l) => /error|fail|qemu/i.test(l)) ?? tail.at(-1) ?? exit.description;
          if (this.plan.fallbackCommand && !this.#fellBack) {
            this.#fellBack = true;
            this.#line('stderr', `morgana: QEMU failed to start with KVM (${why}); falling back to TCG (emulation, slower)`, false);
            void this.start();
            return;
          }
          exit = { ...exit, kind: 'tender-error', description: `QEMU failed to start${this.plan.accel ? ` (${this.#fellBack ? 'tcg' : this.plan.accel})` : ''}: ${why} (${exit.signal ? `killed by ${exit.signal}` : `exit ${exit.code}`})` };
        }
        this.#ended(exit);
      });
    });
    await this.#hooks?.spawned(child);
    this.emit('start', child.pid);
  }

  #tailOffset: number | undefined;
  #drain: Promise<void> | undefined;
  #tail(file: string): void {
    if (this.#poll) return;
    const splitter = new LineSplitter((line, truncated) => this.#line('stdout', line, truncated), this.#options.maxLineLength ?? 4096);
    let busy = false;
    // Reads are chained, never skipped: the final drain after the exit must run after a poll
    // that may be reading already, or the last lines (written just before the exit) are lost.
    let last: Promise<void> = Promise.resolve();
    const read = (): Promise<void> => (last = last.then(readOnce));
    const readOnce = async (): Promise<void> => {
      busy = true;
      try {
        const fh = await open(file, 'r');
        try {
          const size = (await fh.stat()).size;
          if (this.#tailOffset === undefined) this.#tailOffset = size;
          else if (this.#tailOffset > size) this.#tailOffset = 0; // truncated
          while (this.#tailOffset < size) {
            const buf = Buffer.alloc(Math.min(65536, size - this.#tailOffset));
            const { bytesRead } = await fh.read(buf, 0, buf.length, this.#tailOffset);
            if (bytesRead === 0) break;
            this.#tailOffset += bytesRead;
            splitter.push(buf.subarray(0, bytesRead));
          }
        } finally {
          await fh.close();
        }
      } catch {
        // file not there yet
      } finally {
        busy = false;
      }
    };
    // Start at the current end: only new output is captured.
    void read();
    this.#poll = setInterval(() => void (busy || read()), 200);
    this.#poll.unref();
    const onExit = (_e: ExitInfo, final: boolean): void => {
      if (!final) return;
      this.off('exit', onExit);
      if (this.#poll) clearInterval(this.#poll);
      this.#poll = undefined;
      this.#drain = read().then(() => splitter.end());
    };
    this.on('exit', onExit);
  }

  /** @internal Adopts an already running tender (after a supervisor restart); exit status is then unknown. */
  adopt(pid: number, startTime: number): void {
    this.#pid = pid;
    this.#startedAt = Date.now();
    if (this.#options.logFile) {
      try {
        this.#tailOffset = Math.max(0, statSync(this.#options.logFile).size - 65536);
      } catch {
        this.#tailOffset = 0;
      }
      this.#tail(this.#options.logFile);
    }
    const check = setInterval(async () => {
      if (this.#pid !== pid) return clearInterval(check);
      if ((await processStartTime(pid)) !== startTime) {
        clearInterval(check);
        this.#pid = undefined;
        const requested = this.#stopRequested || this.#restartRequested;
        this.#ended({
          kind: requested ? 'stopped' : 'guest-exit',
          code: null,
          signal: null,
          description: requested ? 'stopped' : 'exited while not a child of this supervisor (status unknown)',
          failed: !requested,
        });
      }
    }, 250);
  }

  #ended(exit: ExitInfo): void {
    this.lastExit = exit;
    if (this.#restartRequested && !this.#stopRequested) {
      this.#restartRequested = false;
      this.emit('exit', exit, false);
      void this.start();
      return;
    }
    if (!this.#stopRequested && shouldRestart(exit, this.#options.restart, this.restarts)) {
      const delay = restartDelay(this.#options.restart!, this.restarts);
      this.restarts++;
      this.emit('exit', exit, false);
      this.emit('restart', this.restarts, delay);
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        void this.start();
      }, delay);
      return;
    }
    void this.#finish(exit);
  }

  async #finish(exit: ExitInfo): Promise<void> {
    if (this.#final) return;
    this.#final = true;
    this.lastExit = exit;
    this.emit('exit', exit, true);
    try {
      await releaseDevices(this.provisioned, this.#options.netns);
    } catch (error) {
      if (this.listenerCount('cleanupError') > 0) this.emit('cleanupError', error as Error);
    }
    if (this.#hooks) await this.#hooks.close().catch((error: Error) => this.listenerCount('cleanupError') > 0 && this.emit('cleanupError', error));
    if (this.#drain) await this.#drain;
    if (this.#log) await new Promise<void>((resolve) => this.#log!.end(() => resolve()));
    this.#resolveExited(exit);
  }
}

/**
 * Checks, provisions and starts a unikernel ({@link planDeployment}, {@link provisionDevices}),
 * resolving once the tender is spawned. Throws {@link MorganaError} for every pre-flight failure,
 * after removing whatever it created.
 */
export async function deployUnikernel(options: DeployOptions): Promise<Unikernel> {
  if (options.detached && options.userNets?.length) {
    badOption('user-mode networks need the deploying process (their gateway runs in it, and the tender dies with it): not with detached deployments (morgana daemon runs the gateways itself)');
  }
  const plan = await planDeployment(options);
  const provisioned = await provisionDevices(options, plan.user);
  const { info: _info, user, ...rest } = plan;
  let network: UserNetwork | undefined;
  try {
    if (options.userNets?.length) network = await UserNetwork.start(options.userNets);
  } catch (error) {
    await releaseDevices(provisioned, options.netns).catch(() => {});
    throw error;
  }
  const uk = new Unikernel(options, rest, provisioned, user, network);
  await uk.start();
  return uk;
}
