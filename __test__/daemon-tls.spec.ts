/**
 * Remote management over mutually authenticated TLS, with certificates made by openssl in the
 * test: an admin may deploy, a read-only client may look but not deploy, a client confined to an
 * owner path sees only it; a certificate from another CA, an expired one and a revoked one are
 * refused at the handshake and logged; garbage and oversized input on the TLS port are refused
 * while the daemon keeps serving. Everything binds to 127.0.0.1.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { type DaemonEvent, type DaemonTarget, type DaemonUnikernelInfo, MorganaError, type Solo5Daemon, daemonRequest, startDaemon } from 'morgana';
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
