/**
 * `morgana clean`: removes the build folder that `configure` and `build` wrote.
 * @module
 */
import { relative } from 'node:path';
import type { Command } from './command.js';
import { detail, progress } from './progress.js';
import { MorganaError } from '../errors.js';
import { clean as cleanProject } from '../config/project.js';
import { PROJECT_OPTIONS, guarded, parseCommandArgs, pathsFrom } from './project-args.js';

/** The clean command. */
export const clean: Command = {
  summary: 'Remove the build folder of a unikernel',
  usage: `morgana clean\n\n${PROJECT_OPTIONS}`,
  run: (args) =>
    guarded('clean', async () => {
      const parsed = parseCommandArgs(args, {}, false);
      if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `unexpected argument ${JSON.stringify(parsed.positional[0])}`);
      const paths = pathsFrom(parsed);
      detail(`clean: ${paths.buildDir}`);
      const removed = await cleanProject(paths);
      const where = relative(process.cwd(), paths.buildDir) || paths.buildDir;
      progress(removed ? `removed ${where}/\n` : `nothing to clean (${where}/ does not exist)\n`, process.stdout);
      return 0;
    }),
};
