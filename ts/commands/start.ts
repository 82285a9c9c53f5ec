/**
 * `morgana start` (what `npm start` runs): the README's main job. It configures and builds the
 * `static-website` example for the `vnet` target with a host port forwarded, boots it, fetches
 * its front page once through the forwarded port as a self-check, prints the URL and a
 * one-screen summary of the unikernel's stack, and keeps serving until Ctrl-C. No root needed.
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from '../cli.js';
import { build } from './build.js';
import { configure } from './configure.js';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Waits for a line of `stream` matching `pattern`, echoing every line to stderr. */
function watchLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  createInterface({ input: stream }).on('line', (line) => {
    process.stderr.write(`  ${line}\n`);
    onLine(line);
  });
}

/** The start command. */
export const start: Command = {
  summary: "Run the static-website example on the in-process virtual network, self-check it and keep serving (the README's main job)",
  usage: `morgana start [--port PORT] [--self-check-only]

  --port PORT          host port forwarded to the unikernel's port 80 (default 8080; 0 picks a free one)
  --self-check-only    stop after the self-check and the summary (exit 0 when the page was served)`,
  async run(args) {
    let values: { port?: string; 'self-check-only'?: boolean };
    try {
      ({ values } = parseArgs({ args, options: { port: { type: 'string', default: '8080' }, 'self-check-only': { type: 'boolean' } } }));
    } catch (error) {
      process.stderr.write(`morgana start: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      process.stderr.write(`morgana start: --port must be 0..65535, got ${values.port}\n`);
      return EXIT_USAGE;
    }
    const example = path.join(packageRoot, 'examples', 'static-website');
    const buildDir = mkdtempSync(path.join(tmpdir(), 'morgana-start-'));
    const project = ['-f', path.join(example, 'config.ts'), '-b', buildDir];
    try {
      process.stderr.write(`Building the static-website example for the vnet target in ${buildDir}\n`);
      const configured = await configure.run(['-t', 'vnet', '--forward', `127.0.0.1:${port}:80`, ...project]);
      if (configured !== 0) return configured;
      const built = await build.run(project);
      if (built !== 0) return built;

      const child = spawn(process.execPath, [path.join(buildDir, 'main.mjs')], { stdio: ['ignore', 'inherit', 'pipe'] });
      const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 2 : 1))));
      let summaryLines = 0;
      const forwarded = new Promise<number>((resolve, reject) => {
        watchLines(child.stderr!, (line) => {
          const m = /forwarding tcp 127\.0\.0\.1:(\d+) ->/.exec(line);
          if (m) resolve(Number(m[1]));
          if (/^\[morgana\] (net|stack|http|vnet gateway)\b.*:$/.test(line) || summaryLines > 0) summaryLines++;
        });
        void exited.then((code) => reject(new Error(`the unikernel exited with code ${code} before serving`)));
      });
      const stop = () => child.kill('SIGINT');
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
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
      process.stdout.write(`\nSelf-check: GET ${url} through the forwarded port -> ${check}\n`);
      // Ask the unikernel for its stack summary (it prints it on SIGUSR2) and give it a moment.
      child.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 300));
      if (!ok || values['self-check-only']) {
        child.kill('SIGINT');
        await exited;
        return ok ? 0 : 1;
      }
      process.stdout.write(`\nServing ${url} from a Morgana unikernel on an in-process virtual network. Ctrl-C stops it.\n`);
      const code = await exited;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      return code === 130 || code === 0 ? 0 : code;
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
    }
  },
};
