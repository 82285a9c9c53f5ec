/**
 * `morgana describe [--dot]`: the device graph of config.ts, as text or Graphviz DOT.
 * @module
 */
import type { Command } from './command.js';
import { MorganaError } from '../errors.js';
import { describeDot, describeText } from '../config/dsl.js';
import { loadProject } from '../config/project.js';
import { PROJECT_OPTIONS, guarded, parseCommandArgs, pathsFrom } from './project-args.js';

/** The describe command. */
export const describe: Command = {
  summary: 'Show the device graph of config.ts (start order, dependencies, keys); --dot for Graphviz',
  usage: `morgana describe [--dot]

${PROJECT_OPTIONS}
  --dot                 print the graph in Graphviz DOT (render: morgana describe --dot | dot -Tsvg)`,
  run: (args) =>
    guarded('describe', async () => {
      const parsed = parseCommandArgs(args, { dot: { value: false } }, false);
      if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `unexpected argument ${JSON.stringify(parsed.positional[0])}`);
      const project = await loadProject(pathsFrom(parsed));
      process.stdout.write(parsed.flags.has('dot') ? describeDot(project.config, project.graph) : describeText(project.config, project.graph));
      return 0;
    }),
};
