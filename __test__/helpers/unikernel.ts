/**
 * Helpers of the CLI tests: run `morgana` (dist/cli.js), make throw-away projects and build
 * folders, run a built unikernel in the background and wait for its output.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { chmodSync, cpSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist', 'cli.js');
export const EXAMPLES = join(ROOT, 'examples');

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js ...args` and collects its output. */
export function morgana(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return run(process.execPath, [CLI, ...args], options);
}

/** Runs a command and collects its output. */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    // A liveness deadline only (a build type-checks with tsc: minutes on a loaded 2-core machine).
    const limitMs = options.timeoutMs ?? 180_000;
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr: killed ? `${stderr}\n(killed by the test after ${limitMs / 1000} s)` : stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary folder, removed when the test process exits. */
export function tempDir(prefix = 'morgana-cli-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Writes a throw-away project: `{ 'config.ts': '…', 'unikernel.ts': '…' }`. */
export function project(files: Record<string, string>): string {
  const dir = tempDir('morgana-project-');
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

/** `-f <example>/config.ts -b <fresh build folder>`. */
export function exampleArgs(example: string): { args: string[]; buildDir: string } {
  const buildDir = join(tempDir(`morgana-${example}-`), 'build');
  return { args: ['-f', join(EXAMPLES, example, 'config.ts'), '-b', buildDir], buildDir };
}

/** Configures and builds; throws with the output when either fails. */
export async function configureAndBuild(args: string[], configureArgs: string[]): Promise<void> {
  for (const step of [['configure', ...args, ...configureArgs], ['build', ...args]]) {
    const r = await morgana(step);
    if (r.code !== 0) throw new Error(`morgana ${step.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
  }
}

/** A unikernel running in the background. */
export interface Running {
  child: ChildProcess;
  output(): { stdout: string; stderr: string };
  /** Resolves with the first match of `pattern` in stdout or stderr. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Starts `node <buildDir>/main.mjs ...args` (optionally through a wrapper such as `ip netns exec`). */
export function start(buildDir: string, args: string[], wrapper: string[] = []): Running {
  const argv = [...wrapper, process.execPath, join(buildDir, 'main.mjs'), ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const poke = () => waiters.forEach((w) => w());
  child.stdout!.on('data', (d: Buffer) => ((stdout += d), poke()));
  child.stderr!.on('data', (d: Buffer) => ((stderr += d), poke()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => (poke(), resolve(code))));
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = stdout.match(pattern) ?? stderr.match(pattern);
          if (m) {
            cleanup();
            resolve(m);
          } else if (done) {
            cleanup();
            reject(new Error(`exited before ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (!done) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}

/** A free TCP (and, by luck, UDP) port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (server.address() as net.AddressInfo).port;
        server.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** Sends one UDP datagram and resolves with the first reply. */
export function udpExchange(port: number, data: string, host = '127.0.0.1', timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => (s.close(), reject(new Error('no UDP reply'))), timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(data, port, host);
  });
}

/** Opens a TCP connection, writes `data`, half-closes, and resolves with everything read. */
export function tcpExchange(port: number, data: string, host = '127.0.0.1', timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    let got = '';
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`TCP exchange timed out; got ${JSON.stringify(got)}`))), timeoutMs);
    socket.on('connect', () => socket.end(data));
    socket.on('data', (d: Buffer) => (got += d));
    socket.on('error', (e) => (clearTimeout(timer), reject(e)));
    socket.on('close', () => (clearTimeout(timer), resolve(got)));
  });
}

/**
 * A copy of what the `morgana` command needs (package.json, dist/, native/, examples/, and the
 * typescript package configure and build load) in a fresh world-readable folder, so a test can
 * run it as an unprivileged user wherever the checkout lives (a clone inside a 0700 folder is not
 * readable by `nobody`). Removed when the test process exits.
 */
export function readableCopy(): { root: string; cli: string } {
  const root = mkdtempSync(join(tmpdir(), 'morgana-readable-'));
  made.push(root);
  for (const part of ['package.json', 'dist', 'native', 'examples', 'node_modules/typescript']) {
    cpSync(join(ROOT, part), join(root, part), { recursive: true });
  }
  chmodSync(root, 0o755);
  return { root, cli: join(root, 'dist', 'cli.js') };
}

/** `setpriv` arguments that run a command as nobody (uid/gid 65534, no groups). */
export const AS_NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

/** Whether tests can switch to an unprivileged user (root with setpriv). */
export const canDropPrivileges = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

/** Runs `morgana ARGS…` from `copy` as nobody, in `cwd`, with a private TMPDIR when given. */
export function morganaAsNobody(copy: { cli: string }, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return run('setpriv', [...AS_NOBODY, process.execPath, copy.cli, ...args], { cwd: options.cwd ?? tmpdir(), env: options.env, timeoutMs: options.timeoutMs });
}

/** A fresh folder nobody may write to (for projects and TMPDIR of unprivileged runs). */
export function nobodyDir(prefix = 'morgana-nobody-'): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o777);
  return dir;
}
