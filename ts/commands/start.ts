/**
 * `morgana start` (what `npm start` runs): the README's main job. It configures and builds the
 * `static-website` example for the `vnet` target with a host port forwarded, boots it, fetches
 * its front page once through the forwarded port as a self-check, prints the URL and a
 * one-screen summary of the unikernel's stack, and keeps serving until Ctrl-C. No root needed.
 *
 * With `--tap` (root) it does the same on the `unix --net direct` target: the unikernel's stack
 * runs on a TAP device inside a network namespace this command creates (kernel side 10.0.0.1,
 * unikernel 10.0.0.2 and its IPv6 link-local address), the self-check is curl from the kernel
 * side over IPv4 and IPv6, and the namespace is deleted when it stops.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from './command.js';
import { detailCommand, progress } from './progress.js';
import { build } from './build.js';
import { superviseChild } from './child.js';
import { MONITOR_OPTIONS, monitorEnv, takeMonitorArgs } from './monitor-args.js';
import { configure } from './configure.js';
import { START_NETNS_PREFIX, guardNetns, sweepStaleNetns } from './netns-guard.js';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Calls `onLine` with each line of `stream`, echoing every line to stderr but the JSON summary. */
function watchLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  createInterface({ input: stream }).on('line', (line) => {
    if (!line.startsWith('{"morganaSummary":')) process.stderr.write(`  ${line}\n`);
    onLine(line);
  });
}

/**
 * What `--json` prints on stdout: the human text goes to stderr instead, and the unikernel's
 * SIGUSR2 summary (asked for as JSON) is caught from its stderr into `summary`.
 */
class JsonReport {
  readonly data: Record<string, unknown> = {};
  private gotSummary: (() => void) | undefined;
  constructor(readonly enabled: boolean) {}
  /** Human text: stdout, or stderr under --json. */
  say(text: string): void {
    (this.enabled ? process.stderr : process.stdout).write(text);
  }
  /** Stacks whose human summary has been printed (each ends with its `UDP · ICMP` line). */
  private stacksPrinted = 0;
  /** Reads one line of the unikernel's stderr. */
  read(line: string): void {
    if (/^\s*UDP · ICMP /.test(line) && ++this.stacksPrinted >= this.stacksWanted) this.gotSummary?.();
    if (!line.startsWith('{"morganaSummary":')) return;
    try {
      this.data.summary = (JSON.parse(line) as { morganaSummary: unknown }).morganaSummary;
      this.gotSummary?.();
    } catch {
      // Not the summary after all: it stays in the human output.
    }
  }
  private stacksWanted = Infinity;
  /**
   * Asks `child` for its summary and waits until it is printed (the human one: all of its
   * `stacks`), or 10 s at most: the summary is a courtesy, never a reason to hang.
   */
  async summary(child: { kill(signal: NodeJS.Signals): boolean }, stacks: number): Promise<void> {
    this.stacksPrinted = 0;
    this.stacksWanted = stacks;
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<void>((resolve) => {
      this.gotSummary = resolve;
      timer = setTimeout(resolve, 10_000);
    });
    child.kill('SIGUSR2');
    await arrived;
    clearTimeout(timer);
    this.gotSummary = undefined;
  }
  /** Prints the JSON object on stdout (under --json). */
  print(): void {
    if (this.enabled) process.stdout.write(`${JSON.stringify(this.data)}\n`);
  }
}

/** The unikernel's addresses, as its boot log tells them (the stack device logs its IPv6 addresses). */
class AddressLog {
  ipv4: string | undefined;
  ipv6: string[] = [];
  /** Whether the unikernel said a forwarded host port was taken. */
  portTaken = false;
  /** Reads one line of the unikernel's stderr. */
  read(line: string): void {
    if (/EADDRINUSE/.test(line)) this.portTaken = true;
    const v4 = /^\[morgana\] vnet: gateway \S+, unikernel (\d+\.\d+\.\d+\.\d+)$/.exec(line);
    if (v4) this.ipv4 = v4[1];
    const v6 = /^\[morgana\] stack0: IPv6 (.+)$/.exec(line);
    if (v6) this.ipv6 = v6[1]!.split(', ');
  }
  /** The addresses as data, for --json. */
  toJSON(): { ipv4: string | null; ipv6: string[] } {
    return { ipv4: this.ipv4 ?? null, ipv6: this.ipv6 };
  }
  /** One line for the user, e.g. `10.0.0.2 · fe80::1 (link-local) · fd00::2`. */
  toString(): string {
    const v6 = this.ipv6.map((a) => (a.startsWith('fe80:') ? `${a} (link-local)` : a));
    return [...(this.ipv4 ? [this.ipv4] : []), ...v6].join(' · ') || 'unknown';
  }
}

/** The start command. */
export const start: Command = {
  summary: "Run the static-website example on the in-process virtual network, self-check it and keep serving (the README's main job)",
  usage: `morgana start [--port PORT] [--tap] [--self-check-only] [--json]

  --port PORT          host port forwarded to the unikernel's port 80 (default 8080; 0 picks a free one)
  --tap                run on a TAP device in a network namespace instead (root; unix --net direct)
  --self-check-only    stop after the self-check and the summary (exit 0 when the page was served)
  --json               print the self-check, addresses, URL and the stacks' summary as one JSON
                       object on stdout once checked ({"ok","url","selfCheck","addresses",
                       "summary",…}); the human text goes to stderr
${MONITOR_OPTIONS}`,
  async run(args) {
    let values: { port?: string; tap?: boolean; 'self-check-only'?: boolean; json?: boolean };
    let monitor: ReturnType<typeof takeMonitorArgs> | undefined;
    try {
      ({ values } = parseArgs({
        args: (monitor = takeMonitorArgs(args)).args,
        options: { port: { type: 'string', default: '8080' }, tap: { type: 'boolean' }, 'self-check-only': { type: 'boolean' }, json: { type: 'boolean' } },
      }));
    } catch (error) {
      process.stderr.write(`morgana start: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      process.stderr.write(`morgana start: --port must be 0..65535, got ${values.port}\n`);
      return EXIT_USAGE;
    }
    if (values.tap && process.getuid?.() !== 0) {
      process.stderr.write('morgana start --tap needs root (a network namespace and /dev/net/tun): run it with sudo, or run morgana start (the vnet target, no root)\n');
      return 1;
    }
    const example = path.join(packageRoot, 'examples', 'static-website');
    const buildDir = mkdtempSync(path.join(tmpdir(), 'morgana-start-'));
    const project = ['-f', path.join(example, 'config.ts'), '-b', buildDir];
    const report = new JsonReport(values.json === true);
    if (values.tap) return runOnTap(buildDir, project, values['self-check-only'] === true, report);
    try {
      progress(`Building the static-website example for the vnet target in ${buildDir}\n`);
      const configured = await configure.run(['-q', '-t', 'vnet', '--forward', `127.0.0.1:${port}:80`, ...project]);
      if (configured !== 0) return configured;
      const built = await build.run(['-q', ...project]);
      if (built !== 0) return built;

      // Signals are forwarded to the unikernel, which stops (and removes the build folder) if we die.
      detailCommand('start: the unikernel', [process.execPath, path.join(buildDir, 'main.mjs')], { MORGANA_TEMPORARY_BUILD_DIR: buildDir });
      const { child, exited } = superviseChild(process.execPath, [path.join(buildDir, 'main.mjs')], {
        // Under --json, stdout is ours: the unikernel's own output goes to stderr.
        stdio: ['ignore', report.enabled ? 2 : 'inherit', 'pipe'],
        env: monitorEnv(monitor?.request, { ...process.env, MORGANA_TEMPORARY_BUILD_DIR: buildDir, ...(report.enabled && { MORGANA_SUMMARY_JSON: '1' }) }),
      });
      const addresses = new AddressLog();
      let dashboardUrl: string | undefined;
      const forwarded = new Promise<number>((resolve, reject) => {
        watchLines(child.stderr!, (line) => {
          addresses.read(line);
          report.read(line);
          dashboardUrl ??= /^\[morgana\] dashboard: (\S+)$/.exec(line)?.[1];
          const m = /forwarding tcp 127\.0\.0\.1:(\d+) ->/.exec(line);
          if (m) resolve(Number(m[1]));
        });
        void exited.then((code) => {
          const busy = addresses.portTaken ? `; port ${port} is taken by another program: morgana start --port 0 picks a free one (npm start -- --port 0)` : '';
          reject(new Error(`the unikernel exited with code ${code} before serving${busy}`));
        });
      });
      let hostPort: number;
      try {
        hostPort = await forwarded;
      } catch (error) {
        process.stderr.write(`morgana start: ${(error as Error).message}\n`);
        return 1;
      }
      const url = `http://127.0.0.1:${hostPort}/`;
      const response = await fetch(url, { signal: AbortSignal.timeout(10_000) }).catch((error: Error) => error);
      const ok = !(response instanceof Error) && response.status === 200;
      const body = ok ? await (response as Response).text() : '';
      const check = response instanceof Error
        ? `FAILED (${response.message})`
        : `${response.status} ${response.statusText}, ${body.length} bytes, ETag ${response.headers.get('etag')}, ${response.headers.get('content-type')}`;
      report.say(`\nSelf-check: GET ${url} through the forwarded port -> ${check}\n`);
      report.say(`Unikernel addresses: ${addresses}\n`);
      Object.assign(report.data, {
        ok,
        url,
        selfCheck: response instanceof Error
          ? { ok: false, url, error: response.message }
          : { ok, url, status: response.status, bytes: body.length, etag: response.headers.get('etag'), contentType: response.headers.get('content-type') },
        addresses: addresses.toJSON(),
        ...(dashboardUrl && { dashboard: dashboardUrl }),
        serving: ok && !values['self-check-only'],
      });
      // Ask the unikernel for its stack summary (it prints it on SIGUSR2) and wait for it.
      // Two stacks: the unikernel's and the vnet gateway's.
      await report.summary(child, 2);
      report.print();
      if (!ok || values['self-check-only']) {
        child.kill('SIGINT');
        await exited;
        return ok ? 0 : 1;
      }
      report.say(`\nServing ${url} from a Morgana unikernel on an in-process virtual network. Ctrl-C stops it.\n`);
      if (dashboardUrl) report.say(`Dashboard: ${dashboardUrl}\n`);
      const code = await exited;
      return code === 130 || code === 0 ? 0 : code;
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
    }
  },
};

const NETNS = `${START_NETNS_PREFIX}${process.pid}`;
const TAP = 'mtap0';

/** Runs `ip ARGS…`, throwing with its stderr when it fails. */
function ip(...args: string[]): void {
  detailCommand('start --tap', ['ip', ...args]);
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim() || result.error?.message}`);
}

/** `morgana start --tap`: the main job on a TAP device inside a network namespace. */
async function runOnTap(buildDir: string, project: string[], selfCheckOnly: boolean, report: JsonReport): Promise<number> {
  let guard: ReturnType<typeof guardNetns> | undefined;
  try {
    for (const name of sweepStaleNetns()) progress(`morgana start --tap: deleted ${name}, left behind by a start that is gone\n`);
    progress(`Building the static-website example for unix --net direct in ${buildDir}\n`);
    const configured = await configure.run(['-q', '-t', 'unix', '--net', 'direct', `--interface=${TAP}`, ...project]);
    if (configured !== 0) return configured;
    const built = await build.run(['-q', ...project]);
    if (built !== 0) return built;
    // Everything lives in a namespace of our own: the TAP, its kernel-side address, curl.
    ip('netns', 'add', NETNS);
    // Deleted when we die, even by SIGKILL (the finally below does not run then).
    guard = guardNetns(NETNS);
    ip('-n', NETNS, 'link', 'set', 'lo', 'up');
    ip('-n', NETNS, 'tuntap', 'add', 'mode', 'tap', 'name', TAP);
    ip('-n', NETNS, 'addr', 'add', '10.0.0.1/24', 'dev', TAP);
    // IPv6 on the TAP (a new namespace may start with it off), the kernel's link-local address
    // usable at once and never autoconfigured from the unikernel.
    spawnSync('ip', ['netns', 'exec', NETNS, 'sysctl', '-qw', `net.ipv6.conf.${TAP}.disable_ipv6=0`, `net.ipv6.conf.${TAP}.accept_dad=0`, `net.ipv6.conf.${TAP}.accept_ra=0`]);
    ip('-n', NETNS, 'link', 'set', TAP, 'up');
    detailCommand('start --tap: the unikernel', ['ip', 'netns', 'exec', NETNS, process.execPath, path.join(buildDir, 'main.mjs')]);
    const { child, exited } = superviseChild('ip', ['netns', 'exec', NETNS, process.execPath, path.join(buildDir, 'main.mjs')], {
      stdio: ['ignore', report.enabled ? 2 : 'inherit', 'pipe'],
      env: { ...process.env, MORGANA_TEMPORARY_BUILD_DIR: buildDir, ...(report.enabled && { MORGANA_SUMMARY_JSON: '1' }) },
    });
    const addresses = new AddressLog();
    addresses.ipv4 = '10.0.0.2';
    watchLines(child.stderr!, (line) => {
      addresses.read(line);
      report.read(line);
    });
    // Ready when the kernel side can fetch the page: poll with curl from inside the namespace.
    const curl = async (url: string, tries: number) => {
      let check = '';
      for (let i = 0; i < tries; i++) {
        const r = spawnSync('ip', ['netns', 'exec', NETNS, 'curl', '-g', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} bytes', '--max-time', '2', url], { encoding: 'utf8' });
        check = `${r.stdout}${r.stderr ? ` ${r.stderr.trim()}` : ''}` || String(r.error?.message);
        if (r.status === 0 && check.startsWith('200 ')) return { ok: true, check };
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return { ok: false, check };
    };
    const v4 = await curl('http://10.0.0.2/', 50);
    report.say(`\nSelf-check: curl http://10.0.0.2/ from the kernel side of ${TAP} in namespace ${NETNS} -> ${v4.ok ? v4.check : `FAILED (${v4.check})`}\n`);
    // And over IPv6, to the unikernel's link-local address, which the stack logged at boot (the
    // line may still be on its way: spawnSync above kept this loop from reading it).
    let linkLocal: string | undefined;
    for (let i = 0; i < 50 && !(linkLocal = addresses.ipv6.find((a) => a.startsWith('fe80:'))); i++) await new Promise((r) => setTimeout(r, 100));
    const v6url = `http://[${linkLocal}%25${TAP}]/`;
    const v6 = linkLocal ? await curl(v6url, 25) : { ok: false, check: 'the unikernel logged no link-local address' };
    report.say(`Self-check: curl ${v6url} over IPv6 -> ${v6.ok ? v6.check : `FAILED (${v6.check})`}\n`);
    report.say(`Unikernel addresses: ${addresses}\n`);
    const ok = v4.ok && v6.ok;
    Object.assign(report.data, {
      ok,
      url: 'http://10.0.0.2/',
      selfCheck: { ok: v4.ok, url: 'http://10.0.0.2/', curl: v4.check },
      selfCheckIpv6: { ok: v6.ok, url: v6url, curl: v6.check },
      addresses: addresses.toJSON(),
      netns: NETNS,
      serving: ok && !selfCheckOnly,
    });
    await report.summary(child, 1);
    report.print();
    const stop = () => child.kill('SIGINT');
    if (!ok || selfCheckOnly) {
      stop();
      await exited;
      return ok ? 0 : 1;
    }
    report.say(
      `\nServing http://10.0.0.2/ and ${v6url} on ${TAP} in network namespace ${NETNS} (try: ip netns exec ${NETNS} curl -g '${v6url}'). Ctrl-C stops it.\n`,
    );
    const code = await exited;
    return code === 130 || code === 0 ? 0 : code;
  } catch (error) {
    process.stderr.write(`morgana start --tap: ${(error as Error).message}\n`);
    return 1;
  } finally {
    spawnSync('ip', ['netns', 'del', NETNS]);
    guard?.disarm();
    rmSync(buildDir, { recursive: true, force: true });
  }
}
