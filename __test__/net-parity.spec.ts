/**
 * Issue 16 item 9 (first part): what `tcp.listen()` returns behaves as a `net.Server`, and
 * `TcpConnection`'s 'close' and ref()/unref() as a `net.Socket`'s. Each behaviour is checked
 * against a real `net.Server`/`net.Socket` doing the same.
 */
import test from 'ava';
import { once } from 'node:events';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { type Stack, VirtualSwitch, createStack } from 'morgana';
import { ROOT, run, tempDir } from './helpers/unikernel.js';

async function pair(): Promise<{ a: Stack; b: Stack; close(): Promise<void> }> {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.3/24' });
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
}

/** The sequence of server events and properties for one connect/close cycle. */
async function serverStory(kind: 'node' | 'morgana'): Promise<string[]> {
  const story: string[] = [];
  let connect: () => Promise<net.Socket | import('morgana').TcpConnection>;
  let server: net.Server | import('morgana').TcpServer;
  let stacks: Awaited<ReturnType<typeof pair>> | undefined;
  if (kind === 'node') {
    const s = net.createServer((c) => c.end());
    server = s;
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    story.push(`listening=${s.listening}`);
    const port = (s.address() as net.AddressInfo).port;
    connect = async () => {
      const c = net.connect(port, '127.0.0.1');
      await once(c, 'connect');
      return c;
    };
  } else {
    stacks = await pair();
    const s = stacks.a.tcp.listen(8080, (c) => c.end(), { host: '0.0.0.0' });
    server = s;
    await once(s, 'listening');
    story.push(`listening=${s.listening}`);
    connect = () => stacks!.b.tcp.connect('10.0.0.2', 8080);
  }
  story.push('listening event');
  server.on('connection', () => story.push('connection event'));
  server.on('close', () => story.push('close event'));
  const family = (server.address() as { family: string }).family;
  story.push(`address family ${family}`);
  const client = await connect();
  client.resume();
  const [hadError] = (await once(client, 'close')) as [boolean];
  story.push(`client close hadError=${hadError}`);
  server.close();
  story.push(`after close listening=${server.listening}`);
  await once(server, 'close');
  const error = await new Promise<Error | undefined>((resolve) => server.close((e?: Error) => resolve(e)));
  story.push(`second close: ${(error as NodeJS.ErrnoException | undefined)?.code}`);
  await stacks?.close();
  return story;
}

test('listen() returns a net.Server-like object: the same events, properties and close errors as net.Server', async (t) => {
  const node = await serverStory('node');
  const morgana = await serverStory('morgana');
  t.deepEqual(morgana, node);
  t.deepEqual(node, [
    'listening=true',
    'listening event',
    'address family IPv4',
    'connection event',
    'client close hadError=false',
    'after close listening=false',
    'close event',
    'close event',
    'second close: ERR_SERVER_NOT_RUNNING',
  ]);
});

test("'close' passes hadError=true after a reset, as net.Socket's", async (t) => {
  const { a, b, close } = await pair();
  t.teardown(close);
  // The server resets the connection once the client's first bytes arrive.
  a.tcp.listen(8081, (c) => c.on('error', () => {}).once('data', () => c.destroy(new Error('reset it'))));
  const conn = await b.tcp.connect('10.0.0.2', 8081);
  const errored = once(conn, 'error');
  const closed = new Promise<[boolean]>((resolve) => conn.once('close', (hadError: boolean) => resolve([hadError])));
  conn.resume();
  conn.write('x');
  t.is(((await errored) as [NodeJS.ErrnoException])[0].code, 'ECONNRESET');
  const [hadError] = (await closed) as [boolean];
  t.is(hadError, true);
  await close();
});

/** Runs a script from a project depending on this checkout; resolves with its exit code and output. */
async function script(source: string, timeoutMs = 20_000) {
  const dir = tempDir();
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'morgana'), 'dir');
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  writeFileSync(join(dir, 'main.js'), source);
  return run(process.execPath, [join(dir, 'main.js')], { cwd: dir, timeoutMs });
}

test('a listening server keeps the process alive, as net.Server does; unref() lets it exit', async (t) => {
  // Both kinds of server: still running after 1.5 s means it kept the process alive (the
  // script then closes it itself, so a working keep-alive exits 0 with 'closed by timer').
  for (const kind of ['node', 'morgana'] as const) {
    const listen =
      kind === 'node'
        ? `import net from 'node:net'; const server = net.createServer().listen(0, '127.0.0.1');`
        : `import { VirtualSwitch, createStack } from 'morgana';
const stack = await createStack({ net: new VirtualSwitch().connect(), ipv4: '10.0.0.2/24' });
const server = stack.tcp.listen(80, () => {});`;
    const held = await script(`${listen}
const timer = setTimeout(() => { console.log('closed by timer'); server.close(); ${kind === 'morgana' ? 'stack.close();' : ''} }, 1500);
timer.unref();
`);
    t.is(held.code, 0, `${kind}: ${held.stderr}`);
    t.regex(held.stdout, /closed by timer/, `${kind}: the server kept the process alive`);
    const unrefd = await script(`${listen}
server.unref();
setTimeout(() => console.log('still alive'), 1500).unref();
`);
    t.is(unrefd.code, 0, `${kind}: ${unrefd.stderr}`);
    t.notRegex(unrefd.stdout, /still alive/, `${kind}: unref() let the process exit`);
  }
});

test('an open connection keeps the process alive until it closes, as net.Socket does', async (t) => {
  const r = await script(`import { VirtualSwitch, createStack } from 'morgana';
const sw = new VirtualSwitch();
const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.3/24' });
const server = a.tcp.listen(80, (c) => c.resume());
server.unref();
const conn = await b.tcp.connect('10.0.0.2', 80);
setTimeout(() => { console.log('connection kept us alive'); conn.destroy(); }, 1500).unref();
conn.on('close', () => Promise.all([a.close(), b.close()]));
`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /connection kept us alive/);
});

test('connect timeout: an unreachable host rejects with ETIMEDOUT and a clear message; a reachable one is unaffected', async (t) => {
  const { a, b, close } = await pair();
  t.teardown(close);
  const error = await t.throwsAsync(b.tcp.connect('10.0.0.99', 80, { timeout: 300 }), { code: 'ETIMEDOUT' });
  t.regex(error!.message, /connect to 10\.0\.0\.99:80 timed out after 300 ms/);
  await t.throwsAsync(b.tcp.connect('10.0.0.2', 80, { timeout: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  let served = 0;
  a.tcp.listen(80, (c) => (served++, c.pipe(c)));
  // Generous for a loaded machine (ARP and the handshake must fit), then waited out in full.
  const conn = await b.tcp.connect('10.0.0.2', 80, { timeout: 2000 });
  await new Promise((r) => setTimeout(r, 2500));
  t.false(conn.destroyed, 'the timer of an established connection does not fire');
  conn.write('ping');
  const [echo] = (await once(conn, 'data')) as [Buffer];
  t.is(echo.toString(), 'ping');
  t.is(served, 1);
  conn.destroy();
});

test('a second UDP bind to a port fails with EADDRINUSE, as dgram (and Morgana TCP) do', async (t) => {
  const dgram = await import('node:dgram');
  const first = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => first.bind(0, '127.0.0.1', resolve));
  const second = dgram.createSocket('udp4');
  const nodeError = await new Promise<NodeJS.ErrnoException>((resolve) => {
    second.once('error', resolve);
    second.bind(first.address().port, '127.0.0.1');
  });
  first.close();
  second.close();
  const { a, close } = await pair();
  t.teardown(close);
  a.udp.bind(5353, () => {});
  const morganaError = t.throws(() => a.udp.bind(5353, () => {}));
  t.is((morganaError as NodeJS.ErrnoException).code, nodeError.code);
  t.is(nodeError.code, 'EADDRINUSE');
  a.tcp.listen(5353, () => {});
  t.throws(() => a.tcp.listen(5353, () => {}), { code: 'EADDRINUSE' });
});
