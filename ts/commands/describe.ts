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
  usage: `morgana describe [--dot | --json]

${PROJECT_OPTIONS}
  --dot                 print the graph in Graphviz DOT (render: morgana describe --dot | dot -Tsvg)
  --json                print the graph as JSON: unikernel, devices in start order, keys`,
  run: (args) =>
    guarded('describe', async () => {
      const parsed = parseCommandArgs(args, { dot: { value: false }, json: { value: false } }, false);
      if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `unexpected argument ${JSON.stringify(parsed.positional[0])}`);
      if (parsed.flags.has('dot') && parsed.flags.has('json')) throw new MorganaError('ERR_USAGE', '--dot and --json exclude each other');
      const project = await loadProject(pathsFrom(parsed));
      if (parsed.flags.has('json')) {
        const { config, graph } = project;
        const data = {
          unikernel: config.unikernel,
          devices: graph.nodes.map((n) => ({ id: n.id, impl: n.device.impl, provides: n.device.provides, deps: n.deps, roles: n.roles })),
          keys: [...graph.keys.values()].map((k) => ({ name: k.name, type: k.type, stage: k.stage, default: k.default === undefined ? null : k.format(k.default), doc: k.doc })),
        };
        process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
        return 0;
      }
      process.stdout.write(parsed.flags.has('dot') ? describeDot(project.config, project.graph) : describeText(project.config, project.graph));
      return 0;
    }),
};
