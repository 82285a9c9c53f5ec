/**
 * Network-namespace infrastructure for tests that touch the kernel (ARCHITECTURE.md, "Safety
 * rules for tests that touch the kernel"): every TAP device, bridge, address and kernel-side
 * peer lives in a namespace the test creates and deletes, so no traffic leaves loopback or that
 * namespace. Use 10.x or 192.0.2.x addresses only.
 *
 * - {@link kernelTestsUnavailable}: why kernel tests cannot run here (not root, no
 *   /dev/net/tun, no `ip`, namespaces refused), or undefined.
 * - {@link kernelTest}: registers a serial test, or a skipped one whose title gives the reason.
 *   Under CI (`CI=true`), which runs as root, an unavailable kernel fails instead of skipping.
 * - {@link withNetns} / {@link createNetns}: a uniquely named namespace (`morgana-<pid>-<n>`)
 *   with lo up, `exec`/`spawn` inside it, deleted afterwards even on failure (and at exit).
 */
import type { ExecutionContext, TestFn } from 'ava';
import { type ChildProcess, type SpawnOptions, execFile, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

/** The result of a command run to completion. */
export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A network namespace created for a test. */
export interface Netns {
  /** Its name (`morgana-<pid>-<n>`), as `ip netns` and `openTap({ netns })` take it. */
  readonly name: string;
  /**
   * Runs `cmd args…` inside the namespace (`ip netns exec`) to completion. Rejects when it
   * exits non-zero, unless `allowFailure` is set.
   */
  exec(cmd: string, args?: readonly string[], options?: { allowFailure?: boolean; timeoutMs?: number }): Promise<ExecResult>;
  /** `ip …` inside the namespace (`ip -n <name> …`); rejects on failure. */
  ip(...args: string[]): Promise<ExecResult>;
  /** Starts `cmd args…` inside the namespace; it is killed when the namespace is destroyed. */
  spawn(cmd: string, args?: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Kills what `spawn` started and deletes the namespace. Idempotent. */
  destroy(): Promise<void>;
}

let probed: string | undefined | null = null;

/** Why kernel tests cannot run on this machine, or undefined when they can. Probed once. */
export function kernelTestsUnavailable(): string | undefined {
  if (probed !== null) return probed;
  probed = probe();
  return probed;
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return 'kernel tests need Linux';
  if (process.getuid?.() !== 0) return 'kernel tests need root (network namespaces and TAP devices)';
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return 'kernel tests need /dev/net/tun';
  }
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return 'kernel tests need the `ip` command (iproute2)';
  const name = `morgana-${process.pid}-probe`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.status !== 0) return `kernel tests cannot create a network namespace: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', name]);
  return undefined;
}

/** Why `command` is not usable (for tests that need tshark, ping, …), or undefined. */
export function commandUnavailable(command: string): string | undefined {
  if (!commands.has(command)) {
    const r = spawnSync(command, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    commands.set(command, r.error ? `needs \`${command}\`` : undefined);
  }
  return commands.get(command);
}
const commands = new Map<string, string | undefined>();

type Body = (t: ExecutionContext) => Promise<void> | void;

/**
 * Registers a serial kernel test: run when {@link kernelTestsUnavailable} says nothing (and no
 * command in `needs` is missing), else skipped with the reason in its title. Under CI a missing
 * prerequisite is a failure, not a skip: CI runs as root and must run these tests.
 */
export function kernelTest(test: TestFn, title: string, body: Body, needs: readonly string[] = []): void {
  const reason = kernelTestsUnavailable() ?? needs.map((c) => commandUnavailable(c)).find(Boolean);
  if (reason === undefined) {
    test.serial(title, body);
  } else if (process.env.CI === 'true') {
    test.serial(title, (t) => t.fail(`cannot run under CI: ${reason}`));
  } else {
    test.skip(`${title} (skipped: ${reason})`, () => {});
  }
}

/**
 * Registers a group of kernel tests (`register` calls `test.serial` itself, as the conformance
 * suite does), or one skipped test naming the group and the reason.
 */
export function kernelSuite(test: TestFn, title: string, register: () => void, needs: readonly string[] = []): void {
  const reason = kernelTestsUnavailable() ?? needs.map((c) => commandUnavailable(c)).find(Boolean);
  if (reason === undefined) register();
  else if (process.env.CI === 'true') test.serial(title, (t) => t.fail(`cannot run under CI: ${reason}`));
  else test.skip(`${title} (skipped: ${reason})`, () => {});
}

/**
 * Waits until every port of the bridge in `ns` forwards (with STP off this is immediate once the
 * port is up, but it is checked rather than assumed).
 */
export async function waitForwarding(ns: Netns, ports: readonly string[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await ns.exec('bridge', ['-j', 'link', 'show']);
    const states = new Map((JSON.parse(stdout || '[]') as { ifname: string; state: string }[]).map((p) => [p.ifname, p.state]));
    if (ports.every((p) => states.get(p) === 'forwarding')) return;
    if (Date.now() > deadline) throw new Error(`bridge ports not forwarding: ${JSON.stringify([...states])}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let counter = 0;
const live = new Set<string>();

function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals }) | null;
      const code = e ? (typeof e.code === 'number' ? e.code : null) : 0;
      resolve({ code, signal: e?.signal ?? null, stdout, stderr: stderr || (e && typeof e.code === 'string' ? e.message : '') });
    });
  });
}

function describe(cmd: string, args: readonly string[], r: ExecResult): string {
  return `\`${[cmd, ...args].join(' ')}\` failed (code ${r.code}, signal ${r.signal}): ${r.stderr.trim() || r.stdout.trim()}`;
}

/** Creates a uniquely named namespace with lo up. Call `destroy()` when done (or use {@link withNetns}). */
export async function createNetns(): Promise<Netns> {
  const name = `morgana-${process.pid}-${counter++}`;
  const add = await run('ip', ['netns', 'add', name]);
  if (add.code !== 0) throw new Error(describe('ip', ['netns', 'add', name], add));
  live.add(name);
  const children = new Set<ChildProcess>();
  let destroyed = false;
  const ns: Netns = {
    name,
    async exec(cmd, args = [], options = {}) {
      const full = ['netns', 'exec', name, cmd, ...args];
      const r = await run('ip', full, options.timeoutMs);
      if (r.code !== 0 && !options.allowFailure) throw new Error(describe(cmd, args, r));
      return r;
    },
    async ip(...args) {
      const full = ['-n', name, ...args];
      const r = await run('ip', full);
      if (r.code !== 0) throw new Error(describe('ip', full, r));
      return r;
    },
    spawn(cmd, args = [], options = {}) {
      const child = spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: 'pipe', ...options });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await Promise.all(
        [...children].map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.kill('SIGKILL');
            }),
        ),
      );
      const del = await run('ip', ['netns', 'del', name]);
      live.delete(name);
      if (del.code !== 0) throw new Error(describe('ip', ['netns', 'del', name], del));
    },
  };
  try {
    await ns.ip('link', 'set', 'lo', 'up');
    // No IPv6 autoconfiguration chatter (router/neighbour solicitations, MLD) on test links.
    await ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  } catch (error) {
    await ns.destroy();
    throw error;
  }
  return ns;
}

/** Runs `body` with a fresh namespace and deletes the namespace afterwards, even on failure. */
export async function withNetns<T>(body: (ns: Netns) => Promise<T>): Promise<T> {
  const ns = await createNetns();
  try {
    return await body(ns);
  } finally {
    await ns.destroy();
  }
}

// Last resort: a test process that dies between create and destroy still removes its namespaces.
process.once('exit', () => {
  for (const name of live) spawnSync('ip', ['netns', 'del', name]);
});
