/**
 * `morgana crunch <dir> -o <module.ts>`: embeds a directory into a TypeScript module that exposes
 * it as a read-only key-value store (see `ts/kv/crunch.ts`). The output is deterministic and
 * honours `SOURCE_DATE_EPOCH`.
 * @module
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from './command.js';
import { crunchDirectory } from '../kv/crunch.js';

/** The crunch command. */
export const crunch: Command = {
  summary: 'Embed a directory into a TypeScript module exposing it as a read-only key-value store',
  usage: 'morgana crunch <dir> -o <module.ts> [--import-from SPECIFIER]',
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: { output: { type: 'string', short: 'o' }, 'import-from': { type: 'string' } },
      });
    } catch (error) {
      process.stderr.write(`morgana crunch: ${(error as Error).message}\nusage: ${crunch.usage}\n`);
      return EXIT_USAGE;
    }
    const { values, positionals } = parsed;
    if (positionals.length !== 1 || values.output === undefined || values.output === '') {
      process.stderr.write(`usage: ${crunch.usage}\n`);
      return EXIT_USAGE;
    }
    const output = resolve(values.output);
    const result = await crunchDirectory(positionals[0]!, {
      ...(values['import-from'] === undefined ? {} : { importFrom: values['import-from'] }),
    });
    await mkdir(dirname(output), { recursive: true });
    const tmp = `${output}.${process.pid}.tmp`;
    await writeFile(tmp, result.source);
    await rename(tmp, output);
    process.stdout.write(`crunched ${result.files} files (${result.bytes} bytes, ${result.blobs} distinct) into ${values.output}\n`);
    return 0;
  },
};
