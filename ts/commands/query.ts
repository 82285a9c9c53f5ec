/**
 * `morgana query packages|devices|keys|manifest|libvirt`: what configure knows about a unikernel.
 * @module
 */
import type { Command } from './command.js';
import { MorganaError } from '../errors.js';
import { dependenciesOf, loadProject } from '../config/project.js';
import { PROJECT_OPTIONS, guarded, parseCommandArgs, pathsFrom } from './project-args.js';

const TOPICS = ['packages', 'devices', 'keys', 'manifest', 'libvirt'];

/** The query command. */
export const query: Command = {
  summary: 'Print what a unikernel needs: npm packages, devices, keys (manifest and libvirt for Solo5 targets)',
  usage: `morgana query packages|devices|keys|manifest|libvirt [--json]

${PROJECT_OPTIONS}
  --json                machine-readable output
  packages              the dependencies of the generated package.json, with their ranges or pins
  devices               every device in start order, with what it provides and depends on
  keys                  every key: type, stage (configure, runtime, both), default, doc
  manifest, libvirt     Solo5 targets only (hvt, spt, virtio): see morgana solo5 query`,
  run: (args) =>
    guarded('query', async () => {
      const parsed = parseCommandArgs(args, { json: { value: false } }, false);
      const [topic, ...more] = parsed.positional;
      if (topic === undefined || more.length || !TOPICS.includes(topic)) {
        throw new MorganaError('ERR_USAGE', `query what? one of ${TOPICS.join(', ')}${topic && !TOPICS.includes(topic) ? ` (not ${JSON.stringify(topic)})` : ''}`);
      }
      if (topic === 'manifest' || topic === 'libvirt') {
        throw new MorganaError(
          'ERR_USAGE',
          `query ${topic} is for Solo5 targets (hvt, spt, virtio), which TypeScript unikernels cannot be configured for; for a Solo5 image or device list use: morgana solo5 query ${topic} --help`,
        );
      }
      const json = parsed.flags.has('json');
      const project = await loadProject(pathsFrom(parsed));
      let data: unknown;
      let text: string;
      if (topic === 'packages') {
        const deps = await dependenciesOf(project);
        data = deps;
        text = Object.entries(deps).map(([n, v]) => `${n} ${v}`).join('\n');
      } else if (topic === 'devices') {
        const rows = project.graph.nodes.map((n) => ({ id: n.id, impl: n.device.impl, provides: n.device.provides, deps: n.deps, roles: n.roles }));
        data = rows;
        text = rows.map((r) => `${r.id} ${r.impl} [${r.provides}]${Object.keys(r.deps).length ? ` <- ${Object.entries(r.deps).map(([k, v]) => `${k}=${v}`).join(', ')}` : ''}${r.roles.length ? ` -> ${r.roles.join(', ')}` : ''}`).join('\n');
      } else {
        const rows = [...project.graph.keys.values()].map((k) => ({ name: k.name, type: k.type, stage: k.stage, default: k.default === undefined ? null : k.format(k.default), doc: k.doc }));
        data = rows;
        text = rows.map((r) => `--${r.name} ${r.type} ${r.stage} default=${r.default ?? '(none)'}  ${r.doc}`).join('\n');
      }
      process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : text ? `${text}\n` : '');
      return 0;
    }),
};
