/**
 * `morgana build`: compiles the unikernel's TypeScript into the build folder (type-checked, with
 * source maps), runs the devices' build steps (crunch), and links or checks its npm dependencies.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { join, relative } from 'node:path';
import type { Command } from './command.js';
import { detail, detailCommand, elapsed, isQuiet } from './progress.js';
import { MorganaError } from '../errors.js';
import { build as buildProject } from '../config/project.js';
import { projectFlags, selfCommand } from './self.js';
import { PROJECT_OPTIONS, guarded, parseCommandArgs, pathsFrom } from './project-args.js';

/** The build command. */
export const build: Command = {
  summary: 'Build a configured unikernel: compile its sources and gather its dependencies',
  usage: `morgana build [--install]

${PROJECT_OPTIONS}
  -q, --quiet           print nothing on success
  --no-typecheck        skip type-checking config.ts and the unikernel against Morgana's types
                        (strict, but untyped parameters are any; errors are printed as
                        file:line:col: error TSxxxx and fail the build, exit 1)
  --install             run npm install in the build folder for dependencies that are missing
                        (registry packages and git pins; local folder pins are linked without it)`,
  run: (args) =>
    guarded('build', async () => {
      const parsed = parseCommandArgs(args, { install: { value: false }, quiet: { short: 'q', value: false }, 'no-typecheck': { value: false } }, false);
      if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `unexpected argument ${JSON.stringify(parsed.positional[0])}`);
      const paths = pathsFrom(parsed);
      const typecheck = !parsed.flags.has('no-typecheck');
      detail(`build: ${paths.configFile} into ${join(paths.buildDir, 'app')}${typecheck ? ', type-checked' : ' (--no-typecheck)'}`);
      let began = performance.now();
      let { project, missing } = await buildProject(paths, { typecheck });
      detail(`build: compiled${typecheck && !missing.length ? ' and type-checked' : ''} in ${elapsed(began)}${missing.length ? `; missing ${missing.join(', ')}` : ''}`);
      if (missing.length && parsed.flags.has('install')) {
        const npmArgs = ['install', '--no-audit', '--no-fund', '--omit=dev'];
        detailCommand(`build: in ${paths.buildDir}`, ['npm', ...npmArgs]);
        began = performance.now();
        const npm = spawnSync('npm', npmArgs, { cwd: paths.buildDir, stdio: 'inherit' });
        detail(`build: npm install exited ${npm.status} after ${elapsed(began)}`);
        if (npm.status !== 0) throw new MorganaError('ERR_BUILD', `npm install failed in ${paths.buildDir}`);
        ({ project, missing } = await buildProject(paths, { typecheck }));
      }
      const where = relative(process.cwd(), paths.buildDir) || '.';
      detail(`build: entry point ${join(paths.buildDir, 'main.mjs')}`);
      if (missing.length) {
        process.stderr.write(`morgana build: missing dependencies ${missing.join(', ')}: run ${selfCommand()} build --install${projectFlags(parsed)} (or npm install in ${where})\n`);
        return 1;
      }
      if (!parsed.flags.has('quiet') && !isQuiet()) process.stdout.write(`built ${project.name} in ${where}/; run it with ${selfCommand()} run${projectFlags(parsed)} (or node ${where}/main.mjs)\n`);
      return 0;
    }),
};
