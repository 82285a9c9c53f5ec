/**
 * Issue 16 item 9 (left over): `TcpConnection#connect()` reopens a closed connection object as
 * `net.Socket#connect` does. The same scenario runs on a real `net.Socket` over loopback and on
 * a Morgana connection between two stacks, and must log the same events and values:
 * `connect()` while connecting (EALREADY), reconnects after an error and after a clean close,
 * and a reconnect that is refused.
 */
import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import { VirtualSwitch, createStack } from 'morgana';

/** What both kinds of connection offer in this scenario. */
interface SocketLike {
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  write(data: string): boolean;
  end(data?: string): unknown;
  connect(port: number, host: string, listener?: () => void): unknown;
  readonly readyState: string;
  readonly pending: boolean;
  readonly connecting: boolean;
  readonly destroyed: boolean;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly remotePort?: number;
}

/** Resolves on the next `'close'`, with its `hadError`. */
const closed = (s: SocketLike) => new Promise<boolean>((resolve) => s.once('close', resolve));

/**
 * The scenario, written once. `open` makes a connection (as createConnection) to the server at
 * `port`, which answers each connection with `reply` and ends it; `refusedPort` has no listener.
 */
async function scenario(open: () => SocketLike, host: string, port: number, refusedPort: number): Promise<string[]> {
  const log: string[] = [];
  const state = (what: string, s: SocketLike) =>
    log.push(`${what}: ${s.readyState} pending=${s.pending} connecting=${s.connecting} destroyed=${s.destroyed} bytesRead=${s.bytesRead} bytesWritten=${s.bytesWritten}`);
  const s = open();
  s.on('data', (d: Buffer) => log.push(`data ${JSON.stringify(String(d))}`));
  s.on('error', (e: NodeJS.ErrnoException) => log.push(`error ${e.code}`));
  s.on('connect', () => log.push('connect event'));
  // connect() while connecting fails that attempt with EALREADY (its listener stays registered).
  const again = s.connect(port, host, () => log.push('listener of the connect() while connecting'));
  log.push(`connect() while connecting returns the same object: ${again === s}`);
  state('connecting', s);
  log.push(`close hadError=${await closed(s)}`);
  state('after EALREADY', s);

  // Reconnect the same object.
  const returned = s.connect(port, host, () => log.push('listener of the reconnect'));
  log.push(`reconnect returns the same object: ${returned === s}`);
  state('reconnecting', s);
  await new Promise((resolve) => s.once('connect', resolve));
  state('reconnected', s);
  log.push(`remotePort is the server's: ${s.remotePort === port}`);
  s.write('x');
  s.end('y');
  log.push(`close hadError=${await closed(s)}`);
  state('after a clean close', s);

  // Again, after a clean close.
  s.connect(port, host);
  await new Promise((resolve) => s.once('connect', resolve));
  state('reconnected again', s);
  s.end();
  log.push(`close hadError=${await closed(s)}`);

  // A reconnect that is refused: 'error' ECONNREFUSED, then 'close' with hadError.
  s.connect(refusedPort, host);
  state('reconnecting to a closed port', s);
  log.push(`close hadError=${await closed(s)}`);
  state('after the refusal', s);
  return log;
}

async function nodeScenario(): Promise<string[]> {
  const server = net.createServer((c) => {
    c.on('data', () => {});
    c.end('reply');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const refused = net.createServer();
  await new Promise<void>((resolve) => refused.listen(0, '127.0.0.1', resolve));
  const refusedPort = (refused.address() as net.AddressInfo).port;
  await new Promise((resolve) => refused.close(resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    return await scenario(() => net.createConnection(port, '127.0.0.1') as unknown as SocketLike, '127.0.0.1', port, refusedPort);
  } finally {
    server.close();
  }
}

async function morganaScenario(t: ExecutionContext): Promise<string[]> {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const port = 7007;
  b.tcp.listen(port, (c) => {
    c.on('data', () => {});
    c.end('reply');
  });
  return scenario(() => a.tcp.createConnection('10.0.0.2', port) as unknown as SocketLike, '10.0.0.2', port, 7008);
}

test('TcpConnection#connect() reopens a closed connection as net.Socket#connect does: same events and states', async (t) => {
  const expected = await nodeScenario();
  t.log(expected.join('\n'));
  t.true(expected.includes('reconnected again: open pending=false connecting=false destroyed=false bytesRead=0 bytesWritten=0'), 'the Node scenario itself reconnected');
  t.deepEqual(await morganaScenario(t), expected);
});

test('TcpConnection#connect() on an open connection throws EISCONN, and connect() with no arguments reopens to the same peer', async (t) => {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  let count = 0;
  b.tcp.listen(80, (c) => c.end(`reply ${++count}`));
  const conn = await a.tcp.connect('10.0.0.2', 80);
  t.throws(() => conn.connect(80, '10.0.0.2'), { code: 'EISCONN' });
  let text = '';
  conn.on('data', (d: Buffer) => (text += d));
  await new Promise((resolve) => conn.once('close', resolve));
  t.is(text, 'reply 1');
  const firstPort = conn.localPort;
  conn.connect();
  await new Promise((resolve) => conn.once('connect', resolve));
  t.is(conn.remoteAddress, '10.0.0.2');
  t.is(conn.remotePort, 80);
  t.not(conn.localPort, firstPort, 'a fresh ephemeral port');
  await new Promise((resolve) => conn.once('close', resolve));
  t.is(text, 'reply 1reply 2');
});
