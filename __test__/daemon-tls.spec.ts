/**
 * Remote management over mutually authenticated TLS, with certificates made by openssl in the
 * test: an admin may deploy, a read-only client may look but not deploy, a client confined to an
 * owner path sees only it; a certificate from another CA, an expired one and a revoked one are
 * refused at the handshake and logged; garbage and oversized input on the TLS port are refused
 * while the daemon keeps serving. A confined admin deploys Solo5 images from the daemon's files
 * directories with the daemon's own tender, and may not choose anything else that runs on the host
 * (tender, user, namespace, working directory, core dumps, TypeScript unikernels). The host files a
 * confined tenant names (image, block file, pcap) are its own: under its owner path's directory of
 * the files directories, which a parent shares with its children but not a child with its parent
 * or a tenant with another. Everything binds to 127.0.0.1.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { type DaemonEvent, type DaemonTarget, type DaemonUnikernelInfo, MorganaError, type Solo5Daemon, daemonRequest, encodeManifest, startDaemon } from 'morgana';
import { alive } from './helpers/process.js';
import { NT_ABI, NT_MFT, abiDesc, buildImage, buildStubTender, elfNote, gccUnavailable } from './helpers/solo5-fixtures.js';
import { morgana } from './helpers/unikernel.js';
import { until } from './helpers/wait.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const root = mkdtempSync(path.join(tmpdir(), 'morgana-daemon-tls-'));
const pki = path.join(root, 'pki');
const pids = new Set<number>();

function openssl(...args: string[]): void {

  execFileSync('openssl', args, { cwd: pki, stdio: 'pipe' });
}

/** A CA (key, self-signed certificate) and an `openssl ca` database for odd dates and revocation. */
function makeCa(name: string): void {
  mkdirSync(path.join(pki, `${name}-db`), { recursive: true });
  writeFileSync(path.join(pki, `${name}-db`, 'index.txt'), '');
  writeFileSync(path.join(pki, `${name}-db`, 'serial'), '1000\n');
  writeFileSync(path.join(pki, `${name}-db`, 'crlnumber'), '1000\n');
  writeFileSync(
    path.join(pki, `${name}.cnf`),
    `[ ca ]
default_ca = ca_default
[ ca_default ]
dir = ${path.join(pki, `${name}-db`)}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir
certificate = ${path.join(pki, `${name}.pem`)}
private_key = ${path.join(pki, `${name}.key`)}
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = copy
[ any ]
commonName = supplied
organizationalUnitName = optional
organizationName = optional
`,
  );
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '30', '-subj', `/CN=${name}`);
}

/** A key and a certificate for `subject` signed by `ca`; `dates` backdates it. */
function issue(ca: string, file: string, subject: string, options: { san?: string; dates?: [string, string] } = {}): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${file}.key`, '-out', `${file}.csr`, '-subj', subject, ...(options.san ? ['-addext', `subjectAltName=${options.san}`] : []));
  openssl('ca', '-batch', '-notext', '-config', `${ca}.cnf`, '-in', `${file}.csr`, '-out', `${file}.pem`, ...(options.dates ? ['-startdate', options.dates[0], '-enddate', options.dates[1]] : []));
}

let daemon: Solo5Daemon;
let address: string;
const client = (name: string): DaemonTarget => ({ remote: address, cert: path.join(pki, `${name}.pem`), key: path.join(pki, `${name}.key`), ca: path.join(pki, 'ca.pem') });

test.before(async () => {
  if (!hasOpenssl) return;
  mkdirSync(pki, { recursive: true });
  makeCa('ca');
  makeCa('other-ca');
  issue('ca', 'server', '/CN=morgana-daemon', { san: 'IP:127.0.0.1' });
  issue('ca', 'alice', '/CN=alice/OU=admin');
  issue('ca', 'bob', '/CN=bob/OU=read-only');
  issue('ca', 'carol', '/O=acme/CN=carol/OU=admin');
  issue('ca', 'erin', '/O=acme:dev/CN=erin/OU=admin');
  issue('ca', 'dave', '/O=bravo/CN=dave/OU=admin');
  issue('ca', 'frank', '/O=charlie/CN=frank/OU=admin');
  // Owner paths whose parts would name other directories than the tenant's own.
  issue('ca', 'dotdot', '/O=acme:../CN=dotdot/OU=admin');
  issue('ca', 'dot', '/O=acme:./CN=dot/OU=admin');
  issue('ca', 'empty-part', '/O=acme::bravo/CN=empty-part/OU=admin');
  issue('ca', 'nobody', '/CN=nobody');
  issue('ca', 'old', '/CN=old/OU=admin', { dates: ['20200101000000Z', '20200102000000Z'] });
  issue('ca', 'revoked', '/CN=revoked/OU=admin');
  openssl('ca', '-config', 'ca.cnf', '-revoke', 'revoked.pem');
  openssl('ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl');
  issue('other-ca', 'mallory', '/CN=mallory/OU=admin');
  daemon = await startDaemon(path.join(root, 'd'), {
    tls: { listen: '127.0.0.1:0', cert: path.join(pki, 'server.pem'), key: path.join(pki, 'server.key'), clientCa: path.join(pki, 'ca.pem'), crl: path.join(pki, 'ca.crl') },
  });
  address = `127.0.0.1:${daemon.tlsAddress!.port}`;
});

test.after.always(async () => {
  await daemon?.close();
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

const entry = (): string => {
  const f = path.join(root, 'svc.mjs');
  writeFileSync(f, `console.log('up'); const t = setInterval(() => {}, 1000); process.on('SIGTERM', () => { clearInterval(t); });\n`);
  return f;
};

async function events(): Promise<DaemonEvent[]> {
  const out: DaemonEvent[] = [];
  await daemonRequest(daemon.dir, { cmd: 'events', count: 1000 }, (m) => void (m.event && out.push(m.event as DaemonEvent)));
  return out;
}

async function code(p: Promise<unknown>): Promise<MorganaError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  if (!(e instanceof MorganaError)) throw new Error(`expected a MorganaError, got ${String(e)}`);
  return e;
}

const serial = hasOpenssl ? test.serial : test.serial.skip;

serial('admin may deploy, read-only may look but not deploy, a confined admin sees only its owner path', async (t) => {
  const f = entry();
  const alice = client('alice');
  t.is((await daemonRequest(alice, { cmd: 'ping' })).ok, true);
  const web = (await daemonRequest(alice, { cmd: 'run', options: { entry: f, name: 'acme:web' } })).unikernel as DaemonUnikernelInfo;
  pids.add(web.pid!);
  const other = (await daemonRequest(alice, { cmd: 'run', options: { entry: f, name: 'zeta:db' } })).unikernel as DaemonUnikernelInfo;
  pids.add(other.pid!);

  const bob = client('bob');
  t.deepEqual(((await daemonRequest(bob, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).map((u) => u.name).sort(), ['acme:web', 'zeta:db']);
  const denied = await code(daemonRequest(bob, { cmd: 'run', options: { entry: f, name: 'acme:evil' } }));
  t.is(denied.code, 'ERR_DAEMON_FORBIDDEN');
  t.regex(denied.message, /'bob' is read-only and may not run 'run'/);
  t.is((await code(daemonRequest(bob, { cmd: 'stop', name: 'acme:web' }))).code, 'ERR_DAEMON_FORBIDDEN');

  const carol = client('carol');
  t.deepEqual(((await daemonRequest(carol, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).map((u) => u.name), ['acme:web']);
  const confined = await code(daemonRequest(carol, { cmd: 'stop', name: 'zeta:db' }));
  t.regex(confined.message, /'carol' is confined to 'acme:' and may not stop 'zeta:db'/);
  await daemonRequest(carol, { cmd: 'stop', name: 'acme:web' });
  // Remote admins and the host (issue 18): a forward on 0.0.0.0 or a low port, or a pcap outside
  // the daemon's files directories, is refused; a confined admin cannot widen the forward policy
  // for a path of its own.
  const userNet = (extra: object) => ({ image: '/nonexistent/web.spt', name: 'acme:web2', userNets: [{ name: 'service0', ...extra }] });
  const anyAddress = await code(daemonRequest(carol, { cmd: 'deploy', options: userNet({ forwards: [{ protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 8080, guestPort: 80 }] }) }));
  t.is(anyAddress.code, 'ERR_DAEMON_POLICY');
  t.regex(anyAddress.message, /host address 0\.0\.0\.0 not allowed \(allowed forwardAddresses 127\.0\.0\.1,::1\)/);
  const lowPort = await code(daemonRequest(alice, { cmd: 'deploy', options: userNet({ forwards: [{ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 53, guestPort: 53 }] }) }));
  t.regex(lowPort.message, /host port 53 not allowed \(allowed forwardPorts 1024-65535\)/);
  const widen = await code(daemonRequest(carol, { cmd: 'policy-set', path: 'acme:team', policy: { forwardAddresses: ['0.0.0.0'] } }));
  t.is(widen.code, 'ERR_DAEMON_POLICY');
  t.regex(widen.message, /forwardAddresses 0\.0\.0\.0 not allowed by the daemon's default/);
  const pcap = await code(daemonRequest(alice, { cmd: 'deploy', options: userNet({ pcap: '/etc/morgana-test.pcap' }) }));
  t.is(pcap.code, 'ERR_DAEMON_PATH');
  t.false(existsSync('/etc/morgana-test.pcap'));

  const ev = await events();
  t.true(ev.some((e) => e.type === 'refused' && e.reason === 'policy' && e.name === 'acme:web2' && e.by === 'carol'));
  t.true(ev.some((e) => e.type === 'refused' && e.reason === 'path' && e.name === 'acme:web2' && e.by === 'alice'));
  t.true(ev.some((e) => e.type === 'created' && e.name === 'acme:web' && e.by === 'alice'));
  t.true(ev.some((e) => e.type === 'forbidden' && e.by === 'bob' && e.reason === 'run'));
  t.true(ev.some((e) => e.type === 'destroyed' && e.name === 'acme:web' && e.by === 'carol'));
  t.true(ev.some((e) => e.type === 'forbidden' && e.by === 'carol' && e.name === 'zeta:db'));

  // The CLI reaches the remote daemon the same way (spawned asynchronously: the daemon runs in this process).
  const ps = await morgana(['ps', '--remote', address, '--cert', path.join(pki, 'bob.pem'), '--key', path.join(pki, 'bob.key'), '--ca', path.join(pki, 'ca.pem')]);
  t.is(ps.code, 0, ps.stderr);
  t.regex(ps.stdout, /zeta:db\s+running/);
  const img = path.join(root, 'x.hvt');
  writeFileSync(img, '');
  const deploy = await morgana(['daemon', 'deploy', img, '--remote', address, '--cert', path.join(pki, 'bob.pem'), '--key', path.join(pki, 'bob.key'), '--ca', path.join(pki, 'ca.pem')]);
  t.is(deploy.code, 1);
  t.regex(deploy.stderr, /ERR_DAEMON_FORBIDDEN: 'bob' is read-only and may not run 'deploy'/);
  await daemonRequest(alice, { cmd: 'stop', name: 'zeta:db' });
});

serial('certificates from another CA, expired, revoked or without a role are refused and logged', async (t) => {
  for (const [name, reason] of [
    ['mallory', /client certificate of 'mallory' refused: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/],
    ['old', /client certificate of 'old' refused: CERT_HAS_EXPIRED/],
    ['revoked', /client certificate of 'revoked' refused: CERT_REVOKED/],
  ] as const) {
    const e = await code(daemonRequest(client(name), { cmd: 'ps' }));
    t.is(e.code, 'ERR_DAEMON_UNAUTHENTICATED', name);
    t.regex(e.message, reason);
  }
  const reasons = (await events()).filter((e) => e.type === 'tls-refused').map((e) => e.reason);
  t.true(reasons.includes('CERT_HAS_EXPIRED'), reasons.join());
  t.true(reasons.includes('CERT_REVOKED'), reasons.join());
  t.true(reasons.some((r) => r === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || r === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'), reasons.join());
  // Without any client certificate.
  const anonymous = await new Promise<string>((resolve) => {
    const c = tls.connect({ host: '127.0.0.1', port: daemon.tlsAddress!.port, ca: readFileSync(path.join(pki, 'ca.pem')) }, () => c.write('{"cmd":"ps"}\n'));
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('error', () => resolve(text));
    c.on('close', () => resolve(text));
  });
  t.regex(anonymous, /"code":"ERR_DAEMON_UNAUTHENTICATED","message":"no client certificate"/);
  t.false(anonymous.includes('unikernels'));
  const roleless = await code(daemonRequest(client('nobody'), { cmd: 'ps' }));
  t.is(roleless.code, 'ERR_DAEMON_FORBIDDEN');
  t.regex(roleless.message, /names no role/);
  t.is((await daemonRequest(client('alice'), { cmd: 'ping' })).ok, true);
});

serial('garbage and oversized input on the TLS port and the Unix socket are refused; the daemon keeps serving', async (t) => {
  const before = daemon.counters.tls.malformed;
  // Plain bytes where a TLS handshake is expected.
  await new Promise<void>((resolve) => {
    const c = net.connect(daemon.tlsAddress!.port, '127.0.0.1', () => c.write(Buffer.from('GET / HTTP/1.0\r\n\r\n\x00\xff garbage')));
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  });
  await until('handshake refusal logged', async () => (await events()).some((e) => e.type === 'tls-refused' && /garbage|wrong version|http request|packet length|record/i.test(`${e.reason} ${e.message}`)));
  // Garbage and an oversized line inside an authenticated session.
  const session = (payload: Buffer | string): Promise<string> =>
    new Promise((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port: daemon.tlsAddress!.port, cert: readFileSync(path.join(pki, 'alice.pem')), key: readFileSync(path.join(pki, 'alice.key')), ca: readFileSync(path.join(pki, 'ca.pem')) });
      let text = '';
      c.on('secureConnect', () => c.write(payload));
      c.on('data', (d) => (text += d.toString()));
      c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve(text) : reject(e)));
      c.on('close', () => resolve(text));
    });
  t.regex(await session(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x0a])), /"code":"ERR_DAEMON_REQUEST","message":"request is not JSON"/);
  t.regex(await session(Buffer.alloc(200_000, 0x7b)), /"code":"ERR_DAEMON_REQUEST_TOO_LARGE"/);
  t.is(daemon.counters.tls.malformed, before + 1);
  t.true(daemon.counters.tls.oversized >= 1);
  // The same on the Unix socket.
  const unix = (payload: Buffer): Promise<string> =>
    new Promise((resolve) => {
      const c = net.connect(daemon.socket, () => c.write(payload));
      let text = '';
      c.on('data', (d) => (text += d.toString()));
      c.on('error', () => resolve(text));
      c.on('close', () => resolve(text));
    });
  t.regex(await unix(Buffer.from('\x00\x01\x02\n')), /ERR_DAEMON_REQUEST/);
  t.regex(await unix(Buffer.alloc(200_000, 0x41)), /ERR_DAEMON_REQUEST_TOO_LARGE/);
  t.is((await daemonRequest(client('alice'), { cmd: 'ping' })).ok, true);
  t.is((await daemonRequest(daemon.dir, { cmd: 'ping' })).ok, true);
});

/** Pids of processes whose command line mentions `text` (a tender started with an image). */
function processesWith(text: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

const withGcc = hasOpenssl && !gccUnavailable() ? test.serial : test.serial.skip;

/** The error of a request expected to fail; one that succeeded has its process killed afterwards, and reads as `resolved`. */
async function refusal(p: Promise<Record<string, unknown>>): Promise<{ code: string; message: string }> {
  try {
    const r = await p;
    const pid = (r.unikernel as DaemonUnikernelInfo | undefined)?.pid;
    if (pid !== undefined) pids.add(pid);
    return { code: 'resolved', message: JSON.stringify(r) };
  } catch (error) {
    return error as MorganaError;
  }
}

/**
 * Builds a stub `solo5-spt` in `root/<dir>` and puts it first on PATH as the daemon's own tender
 * (the daemon runs in this process) for the rest of test `t`; its unikernels run until killed.
 */
function daemonTender(t: ExecutionContext, dir: string): { stubDir: string; stub: string } {
  const stubDir = path.join(root, dir);
  mkdirSync(stubDir, { recursive: true });
  const stub = buildStubTender(stubDir, 'solo5-spt', 2);
  const oldPath = process.env.PATH;
  process.env.PATH = `${stubDir}:${oldPath}`;
  process.env.STUB_SLEEP_MS = '-1';
  t.teardown(() => {
    process.env.PATH = oldPath;
    delete process.env.STUB_SLEEP_MS;
  });
  return { stubDir, stub };
}

withGcc('a confined admin may not choose the tender, user, namespace, working directory, core dumps or existing interfaces, nor run host code; it deploys images from the files directories with the daemon\'s tender', async (t) => {
  const { stubDir, stub } = daemonTender(t, 'stub');
  const notes = { abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)), manifest: elfNote('Solo5', NT_MFT, encodeManifest([])) };
  const files = daemon.filesDirs[0]!;
  // carol's files: under her owner path's directory of the files directory.
  const acmeFiles = path.join(files, 'acme');
  mkdirSync(acmeFiles, { recursive: true, mode: 0o700 });
  const image = buildImage(stubDir, path.join(acmeFiles, 'tenant.spt'), notes);
  const image2 = buildImage(stubDir, path.join(acmeFiles, 'tenant2.spt'), notes);
  const outside = buildImage(stubDir, path.join(root, 'outside.spt'), notes);
  const carol = client('carol');
  const alice = client('alice');
  const before = (await events()).length;

  // Each option that reaches the host is refused by name, before anything starts.
  const refused: [object, RegExp][] = [
    [{ tender: stub }, /may not choose the tender; the daemon's own is used/],
    [{ tender: '/bin/sh' }, /may not choose the tender/],
    [{ dumpcore: root }, /may not choose a host directory for core dumps \(dumpcore\)/],
    [{ user: 'nobody' }, /may not choose the host user the tender runs as \(user\)/],
    [{ user: 0 }, /\(user\)/],
    [{ netns: 'other-tenant' }, /may not choose the network namespace the tender runs in \(netns\)/],
    [{ cwd: '/' }, /may not choose the tender's working directory \(cwd\)/],
    [{ kvmDevice: '/dev/null' }, /may not name a host device for KVM \(kvmDevice\)/],
    [{ gdb: true }, /may not open a debugger port on the host \(gdb\)/],
    [{ gdbPort: 1234 }, /may not open a debugger port on the host \(gdbPort\)/],
    // Disk outside the block store's quota: a sparse file of any size.
    [{ blocks: [{ name: 'storage', file: path.join(acmeFiles, 'huge.img'), size: 2 ** 40 }] }, /may not create block files \(size of block 'storage'\)/],
    // An interface that exists (here loopback; the host's eth0, another tenant's TAP) would be
    // enslaved to its bridge. The image has no NET device: without the check the plan fails before
    // any bridge is touched.
    [{ nets: [{ name: 'service0', tap: 'lo', bridge: 'acmebr0' }] }, /may not attach the existing host interface 'lo' \(tap of 'service0'\)/],
  ];
  const answers: string[] = [];
  for (const [i, [extra, why]] of refused.entries()) {
    const e = await refusal(daemonRequest(carol, { cmd: 'deploy', options: { image, name: `acme:evil${i}`, ...extra } as never }));
    const named = new RegExp(`^deploy 'acme:evil${i}' refused: 'carol' is confined to 'acme:' and `).test(e.message) && why.test(e.message);
    answers.push(`${JSON.stringify(extra)}: ${e.code}${named ? '' : ` (${e.message})`}`);
  }
  // All at once, so that a failure shows every option that got through.
  t.deepEqual(answers, refused.map(([extra]) => `${JSON.stringify(extra)}: ERR_DAEMON_FORBIDDEN`));
  // Images the daemon and the tender would read as root: only from its own files directories.
  for (const [i, [file, why]] of (
    [
      [outside, /image of 'acme:evil-path0' '.*outside\.spt' refused: it resolves to .*, outside acme's files directories/],
      ['/etc/shadow', /image of 'acme:evil-path1' '\/etc\/shadow' refused: it resolves to \/etc\/shadow, outside acme's files directories/],
      [`${files}/../state.json`, /image of 'acme:evil-path2' '.*' refused: '\.\.' is not allowed/],
    ] as [string, RegExp][]
  ).entries()) {
    const e = await refusal(daemonRequest(carol, { cmd: 'deploy', options: { image: file, name: `acme:evil-path${i}` } }));
    t.is(`${file}: ${e.code}`, `${file}: ERR_DAEMON_PATH`);
    t.regex(e.message, why);
  }
  // TypeScript unikernels are host code: refused, even with a name of its own path and no options.
  const f = entry();
  const run = await refusal(daemonRequest(carol, { cmd: 'run', options: { entry: f, name: 'acme:node', env: { NODE_OPTIONS: `--require ${f}` } } }));
  t.is(run.code, 'ERR_DAEMON_FORBIDDEN');
  t.regex(run.message, /^run 'acme:node' refused: 'carol' is confined to 'acme:' and may not run or update TypeScript unikernels: a Node unikernel is host code/);
  const runNoName = await refusal(daemonRequest(carol, { cmd: 'run', options: { entry: f } }));
  t.is(runNoName.code, 'ERR_DAEMON_FORBIDDEN');

  // Nothing started, nothing recorded; every refusal logged with who and what.
  t.deepEqual(processesWith(image), []);
  t.deepEqual(processesWith(outside), []);
  t.false(existsSync(path.join(acmeFiles, 'huge.img')), 'no block file was created');
  t.deepEqual(processesWith(f), []);
  t.deepEqual(((await daemonRequest(daemon.dir, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).map((u) => u.name), []);
  t.false(readFileSync(path.join(daemon.dir, 'state.json'), 'utf8').includes('acme:evil'));
  const logged = (await events()).slice(before);
  t.is(logged.filter((e) => e.type === 'forbidden' && e.name?.startsWith('acme:evil') && e.by === 'carol' && e.reason === 'deploy').length, refused.length);
  t.is(logged.filter((e) => e.type === 'refused' && e.name?.startsWith('acme:evil-path') && e.by === 'carol' && e.reason === 'path').length, 3);
  t.true(logged.some((e) => e.type === 'forbidden' && e.name === 'acme:node' && e.by === 'carol' && e.reason === 'run'));
  // The confined caller sees its own refusals.
  const mine: DaemonEvent[] = [];
  await daemonRequest(carol, { cmd: 'events', name: 'acme:evil0', count: 100 }, (m) => void (m.event && mine.push(m.event as DaemonEvent)));
  t.true(mine.some((e) => e.type === 'forbidden' && /may not choose the tender/.test(e.message ?? '')));

  // An image from the files directories runs, with the daemon's tender.
  const web = (await daemonRequest(carol, { cmd: 'deploy', options: { image, name: 'acme:web' } })).unikernel as DaemonUnikernelInfo;
  pids.add(web.pid!);
  t.is(web.state, 'running');
  t.true(alive(web.pid!));
  t.true(readFileSync(`/proc/${web.pid}/cmdline`, 'utf8').split('\0').includes(stub));
  // update: a new image from the files directories, never one outside them.
  const away = await refusal(daemonRequest(carol, { cmd: 'update', name: 'acme:web', image: outside, bootMs: 200 }));
  t.is(away.code, 'ERR_DAEMON_PATH');
  t.true(alive(web.pid!), 'the running unikernel is untouched');
  const updated = (await daemonRequest(carol, { cmd: 'update', name: 'acme:web', image: image2, bootMs: 200 })).unikernel as DaemonUnikernelInfo;
  pids.add(updated.pid!);
  t.is(updated.image, image2);
  // A TypeScript unikernel on its path (started by an unconfined admin) may not be updated by it.
  const svc = (await daemonRequest(alice, { cmd: 'run', options: { entry: f, name: 'acme:svc' } })).unikernel as DaemonUnikernelInfo;
  pids.add(svc.pid!);
  const evil = path.join(root, 'evil.mjs');
  const pwned = path.join(root, 'pwned');
  writeFileSync(evil, `import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(pwned)}, 'host code ran'); setInterval(() => {}, 1000);\n`);
  const nodeUpdate = await refusal(daemonRequest(carol, { cmd: 'update', name: 'acme:svc', image: evil, bootMs: 200 }));
  t.is(nodeUpdate.code, 'ERR_DAEMON_FORBIDDEN');
  t.regex(nodeUpdate.message, /^update 'acme:svc' refused: 'carol' is confined to 'acme:' and may not run or update TypeScript unikernels/);
  t.is(((await daemonRequest(alice, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).find((u) => u.name === 'acme:svc')!.pid, svc.pid);
  t.false(existsSync(pwned));
  t.true((await events()).some((e) => e.type === 'forbidden' && e.name === 'acme:svc' && e.by === 'carol' && e.reason === 'update'));

  // An unconfined admin keeps every option: its own tender, an image anywhere.
  const own = (await daemonRequest(alice, { cmd: 'deploy', options: { image: outside, tender: stub, name: 'zeta:own', cwd: root } })).unikernel as DaemonUnikernelInfo;
  pids.add(own.pid!);
  t.is(own.state, 'running');

  // The CLI sends only what it was given: a confined user's plain remote deploy works.
  const cli = await morgana(['daemon', 'deploy', image, '--name', 'acme:cli', '--remote', address, '--cert', path.join(pki, 'carol.pem'), '--key', path.join(pki, 'carol.key'), '--ca', path.join(pki, 'ca.pem')]);
  t.is(cli.code, 0, cli.stderr);
  t.regex(cli.stdout, /^acme:cli started \(pid \d+\)/);
  const cliUk = ((await daemonRequest(carol, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).find((u) => u.name === 'acme:cli')!;
  pids.add(cliUk.pid!);
  t.is(cliUk.state, 'running');
  const withTender = await morgana(['daemon', 'deploy', image, '--name', 'acme:cli2', '--tender', stub, '--remote', address, '--cert', path.join(pki, 'carol.pem'), '--key', path.join(pki, 'carol.key'), '--ca', path.join(pki, 'ca.pem')]);
  t.is(withTender.code, 1);
  t.regex(withTender.stderr, /ERR_DAEMON_FORBIDDEN: deploy 'acme:cli2' refused: 'carol' is confined to 'acme:' and may not choose the tender; the daemon's own is used/);

  for (const name of ['acme:web', 'acme:svc', 'zeta:own', 'acme:cli']) await daemonRequest(alice, { cmd: 'stop', name });
});

serial('a certificate whose owner path has an empty, `.` or `..` part is refused; a tenant without a directory of its own is told how to get one', async (t) => {
  const before = (await events()).length;
  for (const [name, owner] of [
    ['dotdot', 'acme:..'],
    ['dot', 'acme:.'],
    ['empty-part', 'acme::bravo'],
  ]) {
    const e = await code(daemonRequest(client(name), { cmd: 'status' }));
    t.is(`${name}: ${e.code}`, `${name}: ERR_DAEMON_FORBIDDEN`);
    t.true(e.message.startsWith(`client certificate of '${name}' has an invalid owner path '${owner}': parts of letters, digits`), e.message);
  }
  t.is((await events()).slice(before).filter((e) => e.type === 'forbidden' && e.reason === 'certificate' && /invalid owner path/.test(e.message ?? '')).length, 3);

  // frank (O=charlie) has no directory yet: refused, saying where his files go and how it is made.
  const files = daemon.filesDirs[0]!;
  const charlie = path.join(files, 'charlie');
  t.deepEqual((await daemonRequest(client('frank'), { cmd: 'status' })).filesDirs, [charlie]);
  const e = await code(daemonRequest(client('frank'), { cmd: 'deploy', options: { image: path.join(files, 'web.spt'), name: 'charlie:web' } }));
  t.is(e.code, 'ERR_DAEMON_PATH');
  t.is(e.message, `image of 'charlie:web' '${files}/web.spt' refused: it resolves to ${files}/web.spt, outside charlie's files directories; allowed: files inside ${charlie} (none exists: the daemon's operator makes one, e.g. install -d -m 0700 ${charlie})`);
  t.false(existsSync(charlie), 'the daemon makes no per-owner directory itself');
});

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

withGcc("tenants' host files are their own: another tenant's image, block file or pcap is refused, also through a link; a parent reaches its children's, a child not its parent's; an unconfined admin reaches all", async (t) => {
  const { stubDir, stub } = daemonTender(t, 'stub-owners');
  const files = daemon.filesDirs[0]!;
  // What the operator does for each tenant.
  const dirOf = (...parts: string[]): string => {
    const d = path.join(files, ...parts);
    mkdirSync(d, { recursive: true, mode: 0o700 });
    return d;
  };
  const acmeDir = dirOf('acme');
  const devDir = dirOf('acme', 'dev');
  const bravoDir = dirOf('bravo');
  const notes = { abi: elfNote('Solo5', NT_ABI, abiDesc(2, 2)), manifest: elfNote('Solo5', NT_MFT, encodeManifest([{ name: 'storage', type: 'BLOCK_BASIC' }])) };
  const acmeImage = buildImage(stubDir, path.join(acmeDir, 'a.spt'), notes);
  const devImage = buildImage(stubDir, path.join(devDir, 'd.spt'), notes);
  const bravoImage = buildImage(stubDir, path.join(bravoDir, 'b.spt'), notes);
  const disk = (dir: string, name: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, randomBytes(1 << 20));
    return f;
  };
  const acmeDisk = disk(acmeDir, 'disk.img');
  const devDisk = disk(devDir, 'disk.img');
  const devDisk2 = disk(devDir, 'disk2.img');
  const bravoDisk = disk(bravoDir, 'disk.img');
  const bravoPcap = disk(bravoDir, 'capture.pcap');
  const bravoFiles = [bravoImage, bravoDisk, bravoPcap];
  const bravoSums = bravoFiles.map(sha);
  // A link from acme's directory into bravo's (made by a careless operator, or a shared mount).
  symlinkSync(bravoDir, path.join(acmeDir, 'shared'));
  const [carol, erin, dave, alice] = ['carol', 'erin', 'dave', 'alice'].map(client) as [DaemonTarget, DaemonTarget, DaemonTarget, DaemonTarget];

  // status shows each caller where its files must lie.
  t.deepEqual((await daemonRequest(carol, { cmd: 'status' })).filesDirs, [acmeDir]);
  t.deepEqual((await daemonRequest(erin, { cmd: 'status' })).filesDirs, [devDir]);
  t.deepEqual((await daemonRequest(dave, { cmd: 'status' })).filesDirs, [bravoDir]);
  t.deepEqual((await daemonRequest(alice, { cmd: 'status' })).filesDirs, [files]);
  t.deepEqual((await daemonRequest(daemon.dir, { cmd: 'status' })).filesDirs, [files]);

  const block = (file: string) => ({ blocks: [{ name: 'storage', file }] });
  const pcap = (file: string) => ({ userNets: [{ name: 'service0', pcap: file }] });
  const deploy = (who: DaemonTarget, name: string, image: string, extra: object = {}) => refusal(daemonRequest(who, { cmd: 'deploy', options: { image, name, ...extra } as never }));
  const outside = (owner: string, dir: string, what: string, given: string, resolved = given) => `ERR_DAEMON_PATH: ${what} '${given}' refused: it resolves to ${resolved}, outside ${owner}'s files directories; allowed: files inside ${dir}`;
  const before = (await events()).length;
  // Each would run but for the path (the pcap one would then fail on the image, which has no NET
  // device: a user-mode network needs namespaces this test does not make).
  const refused: [string, Promise<{ code: string; message: string }>, string][] = [
    ["acme: bravo's image", deploy(carol, 'acme:x0', bravoImage, block(acmeDisk)), outside('acme', acmeDir, "image of 'acme:x0'", bravoImage)],
    ["acme: bravo's block file", deploy(carol, 'acme:x1', acmeImage, block(bravoDisk)), outside('acme', acmeDir, "block 'storage' file", bravoDisk)],
    ["acme: bravo's file as its pcap", deploy(carol, 'acme:x2', acmeImage, { ...block(acmeDisk), ...pcap(bravoPcap) }), outside('acme', acmeDir, "pcap of 'service0'", bravoPcap)],
    ['acme: a link into bravo', deploy(carol, 'acme:x3', acmeImage, block(path.join(acmeDir, 'shared', 'disk.img'))), outside('acme', acmeDir, "block 'storage' file", path.join(acmeDir, 'shared', 'disk.img'), bravoDisk)],
    ["acme:dev: its parent's image", deploy(erin, 'acme:dev:x4', acmeImage, block(devDisk)), outside('acme:dev', devDir, "image of 'acme:dev:x4'", acmeImage)],
    ["acme:dev: its parent's block file", deploy(erin, 'acme:dev:x5', devImage, block(acmeDisk)), outside('acme:dev', devDir, "block 'storage' file", acmeDisk)],
    ["bravo: acme's image", deploy(dave, 'bravo:x6', acmeImage, block(bravoDisk)), outside('bravo', bravoDir, "image of 'bravo:x6'", acmeImage)],
  ];
  const answers: string[] = [];
  for (const [what, p] of refused) {
    const e = await p;
    answers.push(`${what}: ${e.code}: ${e.message}`);
  }
  // All at once, so that a failure shows every file that got through.
  t.deepEqual(answers, refused.map(([what, , want]) => `${what}: ${want}`));
  // Nothing started, nothing recorded, bravo's files untouched; every refusal logged.
  for (const f of [bravoImage, acmeImage, devImage, bravoDisk, acmeDisk]) t.deepEqual(processesWith(f), [], f);
  t.deepEqual(((await daemonRequest(alice, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[]).map((u) => u.name).filter((n) => /:x\d$/.test(n)), []);
  t.deepEqual(bravoFiles.map(sha), bravoSums);
  const logged = (await events()).slice(before).filter((e) => e.type === 'refused' && e.reason === 'path');
  t.deepEqual(logged.map((e) => `${e.name} ${e.by}`).sort(), ['acme:dev:x4 erin', 'acme:dev:x5 erin', 'acme:x0 carol', 'acme:x1 carol', 'acme:x2 carol', 'acme:x3 carol', 'bravo:x6 dave']);

  const started = async (who: DaemonTarget, name: string, image: string, extra: object): Promise<DaemonUnikernelInfo> => {
    const uk = (await daemonRequest(who, { cmd: 'deploy', options: { image, name, ...extra } as never })).unikernel as DaemonUnikernelInfo;
    pids.add(uk.pid!);
    t.is(uk.state, 'running', name);
    const argv = readFileSync(`/proc/${uk.pid}/cmdline`, 'utf8').split('\0');
    t.true(argv.includes(image) && argv.includes(stub), argv.join(' '));
    return uk;
  };
  const argvOf = (uk: DaemonUnikernelInfo): string[] => readFileSync(`/proc/${uk.pid}/cmdline`, 'utf8').split('\0');
  // Its own files: acme's image and block file; a pcap in its directory passes the path check (the
  // deploy then fails on the image, which has no NET device 'service0').
  const own = await started(carol, 'acme:own', acmeImage, block(acmeDisk));
  t.true(argvOf(own).includes(`--block:storage=${acmeDisk}`));
  const ownPcap = await refusal(daemonRequest(carol, { cmd: 'deploy', options: { image: acmeImage, name: 'acme:cap', ...block(devDisk2), ...pcap(path.join(acmeDir, 'own.pcap')) } as never }));
  t.regex(ownPcap.code, /^ERR_SOLO5_/, ownPcap.message);
  // A parent reaches its child's files; the child its own.
  const fromParent = await started(carol, 'acme:dev:web', devImage, block(devDisk));
  t.true(argvOf(fromParent).includes(`--block:storage=${devDisk}`));
  const child = await started(erin, 'acme:dev:own', devImage, block(devDisk2));
  t.true(argvOf(child).includes(`--block:storage=${devDisk2}`));
  // An unconfined admin reaches every tenant's files.
  const admin = await started(alice, 'zeta:admin', bravoImage, block(bravoDisk));
  t.true(argvOf(admin).includes(`--block:storage=${bravoDisk}`));

  // update checks the new image by the same rule: bravo's is refused and the unikernel untouched;
  // the child may not put its parent's image under the unikernel its parent deployed for it.
  const away = await refusal(daemonRequest(carol, { cmd: 'update', name: 'acme:own', image: bravoImage, bootMs: 200 }));
  t.is(`${away.code}: ${away.message}`, outside('acme', acmeDir, "image of 'acme:own'", bravoImage));
  t.true(alive(own.pid!));
  const up = await refusal(daemonRequest(erin, { cmd: 'update', name: 'acme:dev:web', image: acmeImage, bootMs: 200 }));
  t.is(`${up.code}: ${up.message}`, outside('acme:dev', devDir, "image of 'acme:dev:web'", acmeImage));
  t.true(alive(fromParent.pid!));
  t.deepEqual(processesWith(bravoImage), [admin.pid]);

  for (const name of ['acme:own', 'acme:dev:web', 'acme:dev:own', 'zeta:admin']) await daemonRequest(alice, { cmd: 'stop', name });
  t.deepEqual(bravoFiles.map(sha), bravoSums);
});
