/**
 * Solo5 image inspection on ELF images built in the test with gcc and a linker script that puts
 * hand-made ABI1 / MFT1 notes in PT_NOTE segments, and on truncated / corrupted variants: every
 * failure must be a MorganaError with a stable code, never anything else.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  MorganaError,
  type Solo5Device,
  encodeManifest,
  escapeGuestArg,
  formatManifestJson,
  guestArgv,
  inspectSolo5Image,
  libvirtXml,
  parseGuestCmdline,
  parseManifestJson,
  parseSolo5Image,
} from 'morgana';
import { NT_ABI, NT_MFT, abiDesc, buildImage, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';

const skip = gccUnavailable();
const withGcc = skip ? test.skip : test;
const suffix = skip ? ` (skipped: ${skip})` : '';

const dir = mkdtempSync(path.join(tmpdir(), 'morgana-solo5-image-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const cli = path.resolve('dist/cli.js');
const DEVICES: Solo5Device[] = [
  { name: 'service0', type: 'NET_BASIC' },
  { name: 'storage', type: 'BLOCK_BASIC' },
];

function image(name: string, target = 1, version = 2, devices: Solo5Device[] = DEVICES): string {
  return buildImage(dir, path.join(dir, name), { abi: elfNote('Solo5', NT_ABI, abiDesc(target, version)), manifest: elfNote('Solo5', NT_MFT, encodeManifest(devices)) });
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof MorganaError)) throw new Error(`threw a non-MorganaError: ${String(error)}`);
    return error.code;
  }
  return 'OK';
}

let good: Buffer;
let goodPath: string;
test.before(() => {
  if (skip) return;
  goodPath = image('good.hvt');
  good = readFileSync(goodPath);
});

withGcc(`reads the ABI and manifest notes of an image built with gcc${suffix}`, async (t) => {
  const info = await inspectSolo5Image(goodPath);
  t.deepEqual(info.abi, { target: 'hvt', targetId: 1, version: 2 });
  t.deepEqual(info.manifest, {
    version: 1,
    devices: [
      { name: 'service0', type: 'NET_BASIC', typeId: 2 },
      { name: 'storage', type: 'BLOCK_BASIC', typeId: 1 },
    ],
  });
  t.is(info.elf.machine, process.arch === 'x64' ? 'x86_64' : info.elf.machine);
  // readelf (an independent reader) sees two PT_NOTE segments and the ABI note (descsz 16).
  const readelf = spawnSync('readelf', ['-lnW', goodPath], { encoding: 'utf8' });
  if (readelf.status === 0) {
    t.is((readelf.stdout.match(/^\s+NOTE\s/gm) ?? []).length, 2);
    t.regex(readelf.stdout, /Solo5\s+0x00000010/);
  }
});

withGcc(`reads spt, virtio and ABI 1 images, and images without devices${suffix}`, (t) => {
  const spt = parseSolo5Image(readFileSync(image('a.spt', 2, 1, [])));
  t.deepEqual(spt.abi, { target: 'spt', targetId: 2, version: 1 });
  t.deepEqual(spt.manifest.devices, []);
  const virtio = parseSolo5Image(readFileSync(image('a.virtio', 3, 1, [{ name: 'service0', type: 'NET_BASIC' }])));
  t.is(virtio.abi.target, 'virtio');
  const odd = parseSolo5Image(readFileSync(image('odd', 99, 7, [])));
  t.deepEqual(odd.abi, { target: 'unknown', targetId: 99, version: 7 });
});

withGcc(`non-ELF files, non-Solo5 ELFs and missing notes get typed errors${suffix}`, async (t) => {
  t.is(code(() => parseSolo5Image(Buffer.from('#!/bin/sh\necho hi\n'))), 'ERR_SOLO5_NOT_ELF');
  t.is(code(() => parseSolo5Image(Buffer.alloc(0))), 'ERR_SOLO5_NOT_ELF');
  const err = await t.throwsAsync(inspectSolo5Image(path.join(dir, 'missing')), { instanceOf: MorganaError });
  t.is(err.code, 'ERR_SOLO5_IMAGE_UNREADABLE');
  // An ordinary program: it has notes (GNU build-id, ABI tag) but no Solo5 ones.
  const src = path.join(dir, 'hello.c');
  writeFileSync(src, 'int main(void) { return 0; }\n');
  execFileSync('gcc', ['-o', path.join(dir, 'hello'), src]);
  t.is(code(() => parseSolo5Image(readFileSync(path.join(dir, 'hello')))), 'ERR_SOLO5_NOT_SOLO5');
  const noMft = buildImage(dir, path.join(dir, 'nomft'), { abi: elfNote('Solo5', NT_ABI, abiDesc(1, 2)) });
  t.is(code(() => parseSolo5Image(readFileSync(noMft))), 'ERR_SOLO5_NO_MANIFEST');
  const noAbi = buildImage(dir, path.join(dir, 'noabi'), { manifest: elfNote('Solo5', NT_MFT, encodeManifest([])) });
  t.is(code(() => parseSolo5Image(readFileSync(noAbi))), 'ERR_SOLO5_NO_ABI');
  // A note of the right type from another owner does not count.
  const other = buildImage(dir, path.join(dir, 'other'), { abi: elfNote('Solo6', NT_ABI, abiDesc(1, 2)), manifest: elfNote('Solo5', NT_MFT, encodeManifest([])) });
  t.is(code(() => parseSolo5Image(readFileSync(other))), 'ERR_SOLO5_NO_ABI');
  // 32-bit and big-endian ELF identification.
  const c32 = Buffer.from(good);
  c32[4] = 1;
  t.is(code(() => parseSolo5Image(c32)), 'ERR_SOLO5_UNSUPPORTED_ELF');
  const be = Buffer.from(good);
  be[5] = 2;
  t.is(code(() => parseSolo5Image(be)), 'ERR_SOLO5_UNSUPPORTED_ELF');
});

/** File offset of the first note whose header is namesz 6 + descsz + type. */
function noteOffset(bytes: Buffer, type: number): number {
  for (let i = 0; i + 20 <= bytes.length; i += 4) {
    if (bytes.readUInt32LE(i) === 6 && bytes.readUInt32LE(i + 8) === type && bytes.toString('latin1', i + 12, i + 17) === 'Solo5') return i;
  }
  throw new Error('note not found');
}

withGcc(`corrupted notes and manifests are rejected with stable codes${suffix}`, (t) => {
  const abiAt = noteOffset(good, NT_ABI);
  const mftAt = noteOffset(good, NT_MFT);
  const mutate = (f: (b: Buffer) => void): string => {
    const b = Buffer.from(good);
    f(b);
    return code(() => parseSolo5Image(b));
  };
  t.is(mutate(() => {}), 'OK');
  t.is(mutate((b) => b.writeUInt32LE(0x7fffffff, abiAt + 4)), 'ERR_SOLO5_BAD_NOTE'); // descsz beyond the segment
  t.is(mutate((b) => b.writeUInt32LE(0xffffffff, mftAt)), 'ERR_SOLO5_BAD_NOTE'); // namesz beyond the segment
  t.is(mutate((b) => b.writeUInt32LE(8, abiAt + 4)), 'ERR_SOLO5_BAD_NOTE'); // ABI descriptor of the wrong size
  t.is(mutate((b) => b.writeUInt32LE(2, mftAt + 24)), 'ERR_SOLO5_BAD_MANIFEST'); // version 2
  t.is(mutate((b) => b.writeUInt32LE(65, mftAt + 28)), 'ERR_SOLO5_BAD_MANIFEST'); // entries > 64
  t.is(mutate((b) => b.writeUInt32LE(2, mftAt + 28)), 'ERR_SOLO5_BAD_MANIFEST'); // entries vs size
  t.is(mutate((b) => b.writeUInt32LE(0, mftAt + 28)), 'ERR_SOLO5_BAD_MANIFEST'); // no entries
  t.is(mutate((b) => b.writeUInt32LE(2, mftAt + 32 + 68)), 'ERR_SOLO5_BAD_MANIFEST'); // entry 0 not RESERVED_FIRST
  t.is(mutate((b) => b.fill(0x41, mftAt + 32 + 104, mftAt + 32 + 104 + 68)), 'ERR_SOLO5_BAD_MANIFEST'); // name not NUL-terminated
  t.is(mutate((b) => (b[mftAt + 32 + 104 + 96] = 1)), 'ERR_SOLO5_BAD_MANIFEST'); // attached set
  t.is(mutate((b) => b.writeUInt32LE(7, mftAt + 32 + 104 + 68)), 'OK'); // unknown type: reported, not rejected
  t.is(parseSolo5Image((() => { const b = Buffer.from(good); b.writeUInt32LE(7, mftAt + 32 + 104 + 68); return b; })()).manifest.devices[0]!.type, '<undefined type>');
  // Program header table and PT_NOTE segment out of bounds.
  t.is(mutate((b) => b.writeBigUInt64LE(BigInt(b.length), 32)), 'ERR_SOLO5_BAD_ELF');
  t.is(mutate((b) => b.writeBigUInt64LE(0xffffffffffffff00n, 32)), 'ERR_SOLO5_BAD_ELF');
  t.is(mutate((b) => b.writeUInt16LE(32, 54)), 'ERR_SOLO5_BAD_ELF');
  const phoff = Number(good.readBigUInt64LE(32));
  const phnum = good.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    if (good.readUInt32LE(phoff + i * 56) !== 4) continue;
    t.is(mutate((b) => b.writeBigUInt64LE(0xfffffffffffffff0n, phoff + i * 56 + 32)), 'ERR_SOLO5_BAD_NOTE');
    t.is(mutate((b) => b.writeBigUInt64LE(BigInt(good.length - 4), phoff + i * 56 + 8)), 'ERR_SOLO5_BAD_NOTE');
  }
});

withGcc(`every truncation and random mutations only ever throw MorganaError${suffix}`, (t) => {
  const codes = new Set<string>();
  for (let len = 0; len < good.length; len += len < 200 ? 1 : 7) codes.add(code(() => parseSolo5Image(good.subarray(0, len))));
  t.true(codes.has('ERR_SOLO5_NOT_ELF'));
  t.true(codes.has('ERR_SOLO5_BAD_ELF'));
  t.true(codes.has('ERR_SOLO5_BAD_NOTE'));
  // Deterministic xorshift mutation loop, concentrated on headers and notes.
  let s = 0x2545f491;
  const rnd = (n: number): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const hot = noteOffset(good, NT_MFT) + 300;
  for (let round = 0; round < 3000; round++) {
    const b = Buffer.from(good.subarray(0, rnd(4) === 0 ? rnd(good.length) : good.length));
    const flips = 1 + rnd(8);
    for (let i = 0; i < flips && b.length > 0; i++) {
      const at = rnd(Math.min(b.length, rnd(2) ? hot : b.length));
      b[at] = rnd(3) === 0 ? 0xff : rnd(256);
    }
    codes.add(code(() => parseSolo5Image(b)));
  }
  t.log(`codes seen: ${[...codes].sort().join(', ')}`);
  for (const c of codes) t.true(c === 'OK' || c.startsWith('ERR_SOLO5_'), c);
});

test('manifest JSON follows solo5-elftool rules', (t) => {
  const text = formatManifestJson(DEVICES);
  t.is(
    text,
    '{\n  "type": "solo5.manifest",\n  "version": 1,\n  "devices": [\n    { "name": "service0", "type": "NET_BASIC" },\n    { "name": "storage", "type": "BLOCK_BASIC" }\n  ]\n}\n',
  );
  t.deepEqual(parseManifestJson(text), DEVICES);
  t.is(formatManifestJson([]), '{\n  "type": "solo5.manifest",\n  "version": 1,\n  "devices": [\n  ]\n}\n');
  const bad = (v: unknown): string => code(() => parseManifestJson(v));
  t.is(bad('{'), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [], extra: 1 }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 2, devices: [] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'other', version: 1, devices: [] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: 'a-b', type: 'NET_BASIC' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: 'a'.repeat(68), type: 'NET_BASIC' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: '', type: 'NET_BASIC' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: 'a', type: 'NET' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: 'a', type: 'NET_BASIC', mac: 1 }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [{ name: 'a', type: 'NET_BASIC' }, { name: 'a', type: 'BLOCK_BASIC' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
  const max = Array.from({ length: 63 }, (_, i) => ({ name: `storage${i}`, type: 'BLOCK_BASIC' as const }));
  t.is(parseManifestJson({ type: 'solo5.manifest', version: 1, devices: max }).length, 63);
  t.is(bad({ type: 'solo5.manifest', version: 1, devices: [...max, { name: 'x', type: 'NET_BASIC' }] }), 'ERR_SOLO5_BAD_MANIFEST_JSON');
});

test('guest arguments are escaped for parse-argv and arrive intact', (t) => {
  const args = ['--hello=Hello, world!', 'a"b', 'back\\slash', 'tab\there', 'new\nline', '  lead', 'ünï', '--ipv4=10.0.0.2/24'];
  const argv = guestArgv(args, { logLevel: 'quiet' });
  t.is(argv[0], '--solo5:quiet');
  t.deepEqual(parseGuestCmdline(argv.slice(1).join(' ')), args);
  t.deepEqual(parseGuestCmdline('foo "bar baz"'), ['foo', 'bar baz']);
  t.deepEqual(parseGuestCmdline('f\\ oo b\\"r baz'), ['f oo', 'b"r', 'baz']);
  t.deepEqual(parseGuestCmdline('foo bar"bie"boo baz'), ['foo', 'barbieboo', 'baz']);
  t.deepEqual(parseGuestCmdline('  '), []);
  t.is(code(() => parseGuestCmdline('  \\')), 'ERR_SOLO5_BAD_GUEST_ARG');
  t.is(code(() => escapeGuestArg('')), 'ERR_SOLO5_BAD_GUEST_ARG');
  t.is(code(() => escapeGuestArg('a\0b')), 'ERR_SOLO5_BAD_GUEST_ARG');
  t.is(code(() => guestArgv(['x'.repeat(8191)])), 'OK');
  t.is(code(() => guestArgv(['x'.repeat(8192)])), 'ERR_SOLO5_CMDLINE_TOO_LONG');
  t.is(code(() => guestArgv(['x'.repeat(4095), 'y'.repeat(4095)])), 'OK'); // 8191 with the space
  t.is(code(() => guestArgv([' '.repeat(4096)])), 'ERR_SOLO5_CMDLINE_TOO_LONG'); // escaping doubles it
});

test('libvirt XML for virtio lists the devices and escapes values', (t) => {
  const xml = libvirtXml({ name: 'web<1>', kernel: '/k/web.virtio', memoryMB: 64, cmdline: '--ipv4=10.0.0.2/24', nets: [{ name: 'service0', bridge: 'br0' }], blocks: [{ name: 'storage', file: "/d/it's.img" }] });
  t.regex(xml, /<name>web&lt;1&gt;<\/name>/);
  t.regex(xml, /<memory unit='KiB'>65536<\/memory>/);
  t.regex(xml, /<source bridge='br0'\/>/);
  t.regex(xml, /<source file='\/d\/it&apos;s.img'\/>/);
  t.regex(xml, /<target dev='vda' bus='virtio'\/>/);
  t.regex(xml, /<cmdline>--ipv4=10.0.0.2\/24<\/cmdline>/);
  t.is(code(() => libvirtXml({ name: 'x', kernel: 'k', memoryMB: 2048 })), 'ERR_SOLO5_BAD_OPTION');
});

function morgana(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

withGcc(`morgana solo5 inspect prints the notes, --json, and fails cleanly${suffix}`, (t) => {
  const text = morgana('solo5', 'inspect', goodPath);
  t.is(text.status, 0, text.stderr);
  t.regex(text.stdout, /target\s+hvt/);
  t.regex(text.stdout, /service0\s+NET_BASIC/);
  const json = morgana('solo5', 'inspect', goodPath, '--json');
  t.is(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { abi: { target: string; version: number }; manifest: { devices: unknown[] } };
  t.deepEqual(parsed.abi, { type: 'solo5.abi', target: 'hvt', version: 2 });
  t.deepEqual(parsed.manifest.devices, [
    { name: 'service0', type: 'NET_BASIC' },
    { name: 'storage', type: 'BLOCK_BASIC' },
  ]);
  const notElf = morgana('solo5', 'inspect', cli);
  t.is(notElf.status, 1);
  t.regex(notElf.stderr, /ERR_SOLO5_NOT_ELF/);
  t.is(morgana('solo5', 'inspect').status, 64);
  t.is(morgana('solo5', 'frobnicate').status, 64);
  const abi = morgana('solo5', 'query', 'abi', goodPath);
  t.is(abi.stdout, '{\n  "type": "solo5.abi",\n  "target": "hvt",\n  "version": 2\n}\n');
  const manifest = morgana('solo5', 'query', 'manifest', goodPath);
  t.deepEqual(parseManifestJson(manifest.stdout), DEVICES);
});

test('morgana solo5 query manifest / libvirt generate from a device list', (t) => {
  const m = morgana('solo5', 'query', 'manifest', '--net', 'service0', '--block', 'storage');
  t.is(m.status, 0, m.stderr);
  t.deepEqual(parseManifestJson(m.stdout), DEVICES);
  const bad = morgana('solo5', 'query', 'manifest', '--net', 'bad-name');
  t.is(bad.status, 64);
  t.regex(bad.stderr, /ERR_SOLO5_BAD_MANIFEST_JSON/);
  const x = morgana('solo5', 'query', 'libvirt', '--name', 'web', '--kernel', '/k/web.virtio', '--net', 'service0=br0', '--block', 'storage=/d/s.img', '--', 'a b');
  t.is(x.status, 0, x.stderr);
  t.regex(x.stdout, /<kernel>\/k\/web.virtio<\/kernel>/);
  t.regex(x.stdout, /<cmdline>a\\ b<\/cmdline>/);
});
