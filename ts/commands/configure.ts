/**
 * `morgana configure -t TARGET [--key=value …]`: checks config.ts against the target and writes
 * the build folder (generated entry point, package.json, saved configuration).
 * @module
 */
import { join, relative } from 'node:path';
import type { Command } from './command.js';
import { detail, elapsed, isQuiet } from './progress.js';
import { configure as configureProject } from '../config/project.js';
import { TARGETS, describeTarget, targetConfig } from '../config/targets.js';
import { projectFlags, selfCommand } from './self.js';
import { PROJECT_OPTIONS, guarded, optionValue, parseCommandArgs, pathsFrom } from './project-args.js';

const targets = Object.entries(TARGETS)
  .map(([name, t]) => `  ${name.padEnd(6)} ${t.summary}\n         ${t.options}`)
  .join('\n');

/** The configure command. */
export const configure: Command = {
  summary: 'Configure a unikernel for a target: write the build folder with its entry point and package.json',
  usage: `morgana configure [-t TARGET] [TARGET OPTIONS] [--KEY=VALUE …]

  -t, --target TARGET   vnet (default, or $MORGANA_DEFAULT_TARGET; no root needed) or unix
${PROJECT_OPTIONS}
  -q, --quiet           print nothing on success
  --KEY=VALUE           a configure-time value of a key of config.ts (see morgana query keys);
                        for a key used at run time it becomes the default

targets:
${targets}`,
  run: (args) =>
    guarded('configure', async () => {
      const parsed = parseCommandArgs(args, { target: { short: 't', value: true }, net: { value: true }, bind: { value: true }, forward: { value: true }, mtu: { value: true }, quiet: { short: 'q', value: false } }, true);
      if (parsed.positional.length || parsed.rest.length) throw Object.assign(new Error(`unexpected argument ${JSON.stringify([...parsed.positional, ...parsed.rest][0])}`), { code: 'ERR_USAGE' });
      const target = targetConfig(optionValue(parsed, 'target') ?? process.env.MORGANA_DEFAULT_TARGET ?? 'vnet', {
        net: optionValue(parsed, 'net'),
        bind: optionValue(parsed, 'bind'),
        forward: parsed.values.get('forward'),
        mtu: optionValue(parsed, 'mtu'),
      });
      const paths = pathsFrom(parsed);
      detail(`configure: ${paths.configFile} for ${describeTarget(target)}${parsed.extra.length ? `, keys ${parsed.extra.join(' ')}` : ''}`);
      const began = performance.now();
      const result = await configureProject(paths, target, parsed.extra, ['configure', ...args]);
      detail(`configure: wrote ${result.files.map((f) => join(paths.buildDir, f)).join(', ')} in ${elapsed(began)}`);
      const where = relative(process.cwd(), paths.buildDir) || '.';
      if (!parsed.flags.has('quiet') && !isQuiet()) process.stdout.write(
        `configured ${result.project.name} for ${describeTarget(target)} in ${where}/ (${result.files.join(', ')}); next: ${selfCommand()} build${projectFlags(parsed)}\n`,
      );
      return 0;
    }),
};
