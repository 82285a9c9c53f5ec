/**
 * TypeScript unikernels under the daemon: a built `_build/main.mjs` run with this Node.js,
 * supervised exactly as a Solo5 tender is (console capture, restarts, stop, stats, metrics), so
 * `morgana run -d`, `ps`, `logs` and `stop` manage them like containers.
 * @module
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { MorganaError } from '../errors.js';
import type { DeployOptions, DeployPlan, DeployTarget } from '../solo5/deploy.js';
import type { RestartPolicy } from '../solo5/exit.js';

/** What `run` asks the daemon to start. */
export interface NodeRunOptions {
  /** Absolute path of the built entry (`<build>/main.mjs`). */
  entry: string;
  /** Unikernel name (default: the project folder's name). */
  name?: string;
  /** Boot arguments, as after `morgana run --`. */
  args?: string[];
  /** Working directory (default: the entry's folder). */
  cwd?: string;
  /** V8 heap limit in MB (`--max-old-space-size`), also what policies count. */
  memoryMB?: number;
  /** Restart policy. */
  restart?: RestartPolicy;
  /** Variables added to the daemon's environment (e.g. `morgana run -d --metrics`'s monitor request). */
  env?: Record<string, string>;
}

/** Checks the options a client sent. Throws `ERR_DAEMON_BAD_RUN`. */
export function validateNodeRun(o: NodeRunOptions): NodeRunOptions {
  const bad = (m: string): never => {
    throw new MorganaError('ERR_DAEMON_BAD_RUN', m);
  };
  if (typeof o !== 'object' || o === null) bad('run needs options');
  if (typeof o.entry !== 'string' || !path.isAbsolute(o.entry) || !/\.m?js$/.test(o.entry)) bad('entry must be an absolute path to the built main.mjs');
  if (!existsSync(o.entry)) bad(`${o.entry} does not exist: run morgana build`);
  if (o.args !== undefined && (!Array.isArray(o.args) || !o.args.every((a) => typeof a === 'string'))) bad('args must be a list of strings');
  if (o.cwd !== undefined && (typeof o.cwd !== 'string' || !path.isAbsolute(o.cwd))) bad('cwd must be an absolute path');
  if (o.env !== undefined && (typeof o.env !== 'object' || o.env === null || !Object.entries(o.env).every(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && typeof v === 'string'))) {
    bad('env must map variable names to strings');
  }
  if (o.memoryMB !== undefined && (!Number.isInteger(o.memoryMB) || o.memoryMB < 16 || o.memoryMB > 65536)) bad('memory must be 16 to 65536 MB');
  return o;
}

/** The default name of a TypeScript unikernel: its project folder (the build folder's parent). */
export function defaultNodeName(entry: string): string {
  const project = path.basename(path.dirname(path.dirname(entry)));
  return project.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64) || 'unikernel';
}

/**
 * The deploy options and plan the supervisor ({@link Unikernel}) runs: `node [--max-old-space-size]
 * ENTRY ARGS…` detached, output to `logFile`.
 */
export function nodePlan(o: NodeRunOptions, name: string, logFile: string): { options: DeployOptions; plan: DeployPlan } {
  const flags = o.memoryMB !== undefined ? [`--max-old-space-size=${o.memoryMB}`] : [];
  const args = [...flags, o.entry, ...(o.args ?? [])];
  const options: DeployOptions = {
    image: o.entry,
    name,
    detached: true,
    logFile,
    cwd: o.cwd ?? path.dirname(o.entry),
    ...(o.env ? { env: { ...process.env, ...o.env } } : {}),
    ...(o.restart ? { restart: o.restart } : {}),
  };
  const plan: DeployPlan = {
    name,
    image: o.entry,
    target: 'node' as DeployTarget,
    abi: { target: 'unknown', targetId: 0, version: 0 },
    manifest: { version: 1, devices: [] },
    tender: process.execPath,
    tenderVersion: undefined,
    args,
    command: [process.execPath, ...args],
  };
  return { options, plan };
}
