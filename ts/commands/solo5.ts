/**
 * `morgana solo5`: Solo5 image inspection and generated artefacts.
 *
 * - `morgana solo5 inspect <image> [--json]`: the ABI and manifest notes (like `solo5-elftool`).
 * - `morgana solo5 query abi <image>`: the ABI as `solo5-elftool query-abi` prints it.
 * - `morgana solo5 query manifest [<image>] [--net NAME]… [--block NAME]… [--file manifest.json]`:
 *   an image's manifest, or a manifest generated from a device list (validated with Solo5's rules).
 * - `morgana solo5 query libvirt --name N --kernel K.virtio [--mem MB] [--net NAME=BRIDGE]…
 *   [--block NAME=FILE]… [-- guest args]`: libvirt domain XML for a virtio unikernel.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from './command.js';
import { MorganaError } from '../errors.js';
import { guestArgv } from '../solo5/args.js';
import { checkDevices } from '../solo5/deploy.js';
import { formatAbiJson, inspectSolo5Image } from '../solo5/image.js';
import { libvirtXml } from '../solo5/libvirt.js';
import { type Solo5Device, formatManifestJson, parseManifestJson, validateDevices } from '../solo5/manifest.js';

const USAGE = `morgana solo5 inspect <image> [--json]
       morgana solo5 query abi <image>
       morgana solo5 query manifest [<image>] [--net NAME]... [--block NAME]... [--file manifest.json]
       morgana solo5 query libvirt --name NAME --kernel FILE.virtio [--mem MB] [--net NAME=BRIDGE]... [--block NAME=FILE]... [-- guest args]`;

class UsageError extends Error {}

function fail(error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`morgana solo5: ${error.message}\nusage: ${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (error instanceof MorganaError) {
    process.stderr.write(`morgana solo5: ${error.code}: ${error.message}\n`);
    // Invalid user-supplied device lists and options are usage errors; bad images are failures.
    return error.code === 'ERR_SOLO5_BAD_MANIFEST_JSON' || error.code === 'ERR_SOLO5_BAD_OPTION' || error.code === 'ERR_SOLO5_BAD_GUEST_ARG' ? EXIT_USAGE : 1;
  }
  if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`morgana solo5: ${error.message}\nusage: ${USAGE}\n`);
    return EXIT_USAGE;
  }
  throw error;
}

function pair(text: string, what: string): [string, string] {
  const i = text.indexOf('=');
  if (i <= 0 || i === text.length - 1) throw new UsageError(`${what} must be NAME=VALUE, got '${text}'`);
  return [text.slice(0, i), text.slice(i + 1)];
}

async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { json: { type: 'boolean' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('inspect takes exactly one image');
  const file = positionals[0]!;
  const info = await inspectSolo5Image(file);
  if (values.json) {
    const out = {
      image: file,
      abi: { type: 'solo5.abi', target: info.abi.target, version: info.abi.version },
      manifest: { type: 'solo5.manifest', version: info.manifest.version, devices: info.manifest.devices.map((d) => ({ name: d.name, type: d.type })) },
      elf: info.elf,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  const width = Math.max(8, ...info.manifest.devices.map((d) => d.name.length));
  const lines = [
    `image     ${file}`,
    `target    ${info.abi.target}${info.abi.target === 'unknown' ? ` (${info.abi.targetId})` : ''}`,
    `abi       version ${info.abi.version}`,
    `machine   ${info.elf.machine}`,
    `devices   ${info.manifest.devices.length}`,
    ...info.manifest.devices.map((d) => `  ${d.name.padEnd(width)}  ${d.type}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function query(args: string[]): Promise<number> {
  const dash = args.indexOf('--');
  const guest = dash === -1 ? [] : args.slice(dash + 1);
  const [what, ...rest] = dash === -1 ? args : args.slice(0, dash);
  if (what === 'abi') {
    if (rest.length !== 1) throw new UsageError('query abi takes exactly one image');
    process.stdout.write(formatAbiJson((await inspectSolo5Image(rest[0]!)).abi));
    return 0;
  }
  if (what === 'manifest') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { net: { type: 'string', multiple: true }, block: { type: 'string', multiple: true }, file: { type: 'string' } },
      allowPositionals: true,
    });
    if (positionals.length > 1) throw new UsageError('query manifest takes at most one image');
    if (positionals.length === 1) {
      if (values.net || values.block || values.file) throw new UsageError('give an image or a device list, not both');
      process.stdout.write(formatManifestJson((await inspectSolo5Image(positionals[0]!)).manifest.devices, false));
      return 0;
    }
    let devices: Solo5Device[] = [];
    if (values.file) devices = parseManifestJson(await readFile(values.file, 'utf8'));
    devices = validateDevices([
      ...devices,
      ...(values.net ?? []).map((name) => ({ name, type: 'NET_BASIC' })),
      ...(values.block ?? []).map((name) => ({ name, type: 'BLOCK_BASIC' })),
    ]);
    process.stdout.write(formatManifestJson(devices));
    return 0;
  }
  if (what === 'libvirt') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: {
        name: { type: 'string' },
        kernel: { type: 'string' },
        mem: { type: 'string' },
        net: { type: 'string', multiple: true },
        block: { type: 'string', multiple: true },
      },
      allowPositionals: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (guest arguments go after --)`);
    if (!values.name || !values.kernel) throw new UsageError('query libvirt needs --name and --kernel');
    const nets = (values.net ?? []).map((n) => {
      const [name, bridge] = pair(n, '--net');
      return { name, bridge };
    });
    const blocks = (values.block ?? []).map((b) => {
      const [name, file] = pair(b, '--block');
      return { name, file };
    });
    validateDevices([...nets.map((n) => ({ name: n.name, type: 'NET_BASIC' })), ...blocks.map((b) => ({ name: b.name, type: 'BLOCK_BASIC' }))]);
    // When the kernel is at hand, its manifest must match the devices given.
    let info;
    try {
      info = await inspectSolo5Image(values.kernel);
    } catch (error) {
      if (!(error instanceof MorganaError && error.code === 'ERR_SOLO5_IMAGE_UNREADABLE')) throw error;
    }
    if (info) {
      if (info.abi.target !== 'virtio') process.stderr.write(`morgana solo5: warning: ${values.kernel} is built for ${info.abi.target}, not virtio\n`);
      checkDevices(info.manifest, nets, blocks);
    }
    const mem = values.mem === undefined ? undefined : Number(values.mem);
    const cmdline = guest.length > 0 ? guestArgv(guest).join(' ') : undefined;
    process.stdout.write(libvirtXml({ name: values.name, kernel: values.kernel, nets, blocks, ...(mem !== undefined ? { memoryMB: mem } : {}), ...(cmdline ? { cmdline } : {}) }));
    return 0;
  }
  throw new UsageError(`unknown query '${what ?? ''}' (abi, manifest or libvirt)`);
}

/** The `solo5` command. */
export const solo5: Command = {
  summary: 'Inspect Solo5 unikernel images; generate manifests and libvirt XML',
  usage: USAGE,
  async run(args) {
    const [sub, ...rest] = args;
    try {
      if (sub === 'inspect') return await inspect(rest);
      if (sub === 'query') return await query(rest);
      throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`);
    } catch (error) {
      return fail(error);
    }
  },
};
