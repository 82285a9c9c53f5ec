/**
 * The package's entry points as a user meets them: the package is packed (`npm pack`, the files
 * npm would publish) and unpacked into a fresh project's node_modules, then each entry point is
 * imported by its name from that project, in Node and in the TypeScript compiler. Internal modules
 * stay unreachable, and names shared by two entry points are the same objects (one copy loaded).
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve('.');
let project = '';

test.before(() => {
  project = mkdtempSync(join(tmpdir(), 'morgana-entry-'));
  // --ignore-scripts: the package is built already (npm test builds it first); pack what is there.
  execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(project).find((f) => f.endsWith('.tgz'))!;
  const installed = join(project, 'node_modules', 'morgana');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(project, tarball), '-C', installed, '--strip-components=1']);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user', private: true, type: 'module' }));
});

test.after.always(() => {
  if (project !== '') rmSync(project, { recursive: true, force: true });
});

/** Runs an ES module in the user's project; resolves to what it printed as JSON. */
function runInProject(code: string): { status: number | null; json: unknown; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: project, encoding: 'utf8' });
  return { status: r.status, json: r.status === 0 ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
}

const ENTRY_POINTS: Record<string, string[]> = {
  morgana: ['createStack', 'openTap', 'VirtualSwitch', 'pcapRecorder', 'memKv', 'dirKv', 'Key', 'defaultRandom', 'seededRandom', 'Fortuna', 'Tcp', 'MorganaError', 'createResolver'],
  'morgana/wire': ['arp', 'udp', 'icmpv4', 'icmpv6', 'ipv4', 'ipv6', 'dhcp', 'dns', 'checksum', 'pseudoHeaderSum', 'DnsMalformedError'],
  'morgana/config': ['main', 'stack', 'defaultNet', 'tap', 'memKv'],
  'morgana/solo5': ['inspectSolo5Image', 'encodeManifest', 'deployUnikernel', 'libvirtXml'],
  'morgana/daemon': ['startDaemon', 'daemonRequest', 'Solo5Daemon', 'renderMetrics'],
  'morgana/monitor': ['startMonitor', 'takeSnapshot', 'captureOutput'],
  'morgana/iperf3': ['startIperf3Server', 'runIperf3Client', 'IPERF3_STATE'],
};

for (const [entry, names] of Object.entries(ENTRY_POINTS)) {
  test(`import '${entry}' from an installed package`, (t) => {
    const r = runInProject(`const m = await import(${JSON.stringify(entry)}); console.log(JSON.stringify(Object.keys(m)));`);
    t.is(r.status, 0, r.stderr);
    const keys = r.json as string[];
    for (const name of names) t.true(keys.includes(name), `${entry} exports ${name}`);
  });
}

test('morgana/wire codecs work from the installed package, and are the same objects the root exports', (t) => {
  const r = runInProject(`
    import { arp, icmpv4, ipv4 } from 'morgana/wire';
    import * as root from 'morgana';
    const b = Buffer.alloc(arp.ARP_PACKET_LENGTH);
    const mac = Buffer.from('020000000001', 'hex');
    arp.writeArp(b, { op: arp.ARP_OP.REQUEST, senderMac: mac, senderIp: 0x0a000001, targetMac: Buffer.alloc(6), targetIp: 0x0a000002 });
    const parsed = arp.parseArp(b);
    const echo = icmpv4.echoHeader(icmpv4.ICMPV4.ECHO_REQUEST, 0, 0, Buffer.alloc(0));
    console.log(JSON.stringify({
      arp: b.toString('hex'),
      target: parsed.targetIp,
      echo: echo.toString('hex'),
      sameIpv4: root.ipv4.parse === ipv4.parse,
    }));
  `);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.json, {
    // RFC 826 request: Ethernet (1), IPv4 (0800), lengths 6 and 4, op 1, sender, zero target MAC, target.
    arp: '0001080006040001' + '020000000001' + '0a000001' + '000000000000' + '0a000002',
    target: 0x0a000002,
    // Type 8, code 0, checksum ~0x0800 = 0xf7ff, identifier and sequence 0.
    echo: '0800f7ff00000000',
    sameIpv4: true,
  });
});

test('internal modules and test-only names are not part of the package surface', (t) => {
  const deep = runInProject(`await import('morgana/dist/apps/iperf3/udp.js');`);
  t.not(deep.status, 0);
  t.regex(deep.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
  const r = runInProject(`const m = await import('morgana'); console.log(JSON.stringify(Object.keys(m)));`);
  t.is(r.status, 0, r.stderr);
  for (const name of ['readIperf3UdpHeader', 'writeIperf3UdpHeader', 'Iperf3UdpReceiveStats']) t.false((r.json as string[]).includes(name), name);
});

test('the entry points type-check in a TypeScript project (NodeNext resolution, the shipped .d.ts)', (t) => {
  writeFileSync(
    join(project, 'user.ts'),
    [
      "import { createStack, type Stack, memKv } from 'morgana';",
      "import { arp, type ipv4 } from 'morgana/wire';",
      "import { main } from 'morgana/config';",
      "import { encodeManifest } from 'morgana/solo5';",
      "import { startIperf3Server, type Iperf3Result } from 'morgana/iperf3';",
      'export const uses: unknown[] = [createStack, memKv, arp.parseArp, main, encodeManifest, startIperf3Server];',
      'export type Uses = [Stack, Iperf3Result, ipv4.Ipv4Packet];',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2023', strict: true, noEmit: true, skipLibCheck: false, typeRoots: [join(ROOT, 'node_modules', '@types')], types: ['node'] },
      files: ['user.ts'],
    }),
  );
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { cwd: project, encoding: 'utf8' });
  t.is(r.status, 0, r.stdout + r.stderr);
});
