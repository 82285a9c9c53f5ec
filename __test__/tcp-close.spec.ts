/**
 * Closing a stack settles what TCP had pending (issue 20 item 5): a connect in progress
 * rejects, a write waiting for window fails, and later connect/listen calls refuse, all with
 * `ERR_STACK_CLOSED`.
 */
import test from 'ava';
import { once } from 'node:events';
import { type TcpConnection, VirtualSwitch, createStack } from 'morgana';

/** `promise`, or 'pending' if it has not settled within `ms` (a liveness deadline). */
function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

test('a pending connect rejects with ERR_STACK_CLOSED when the stack closes', async (t) => {
  const sw = new VirtualSwitch();
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  // B drops every frame: the SYN is never answered (B's stack closed, its port left open).
  await b.close();
  const connecting = a.tcp.connect('10.0.0.2', 80);
  const outcome = connecting.then(
    () => 'connected',
    (error: NodeJS.ErrnoException) => error,
  );
  await new Promise((r) => setTimeout(r, 50));
  await a.close();
  const result = await settledWithin(outcome, 5_000);
  t.not(result, 'pending', 'the connect settled');
  t.is((result as NodeJS.ErrnoException).code, 'ERR_STACK_CLOSED');
  t.regex((result as Error).message, /10\.0\.0\.2:80/);
  // Later calls refuse at once.
  await t.throwsAsync(a.tcp.connect('10.0.0.2', 80), { code: 'ERR_STACK_CLOSED' });
  t.throws(() => a.tcp.listen(80, () => {}), { code: 'ERR_STACK_CLOSED' });
});

test('a write waiting for window fails with ERR_STACK_CLOSED when the stack closes', async (t) => {
  const sw = new VirtualSwitch();
  const small = { recvBuffer: 16 * 1024, sendBuffer: 16 * 1024 };
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', tcp: small });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', tcp: small });
  t.teardown(() => b.close());
  const accepted = new Promise<TcpConnection>((resolve) => b.tcp.listen(80, resolve));
  const client = await a.tcp.connect('10.0.0.2', 80);
  const server = await accepted;
  server.pause();
  const closed = once(client, 'close');
  // Far more than both buffers hold: the write stays pending.
  const written = new Promise<Error | null | undefined>((resolve) => client.write(Buffer.alloc(1 << 20), resolve));
  await new Promise((r) => setTimeout(r, 200));
  await a.close();
  const error = await settledWithin(written, 5_000);
  t.not(error, 'pending', 'the write settled');
  t.is((error as NodeJS.ErrnoException | null)?.code, 'ERR_STACK_CLOSED');
  await closed;
  t.true(client.destroyed);
});
