/**
 * Issue 16 item 2: `slaac.settled()` means what its name says. It resolves once router
 * discovery is over (an advertisement's prefixes formed their addresses, or the solicitations
 * went unanswered) and no address is in DAD; `{ dadOnly: true }` waits for DAD only. And a
 * pending settled() keeps the process alive, so a script awaiting it does not exit silently.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VirtualClock, VirtualSwitch, createStack, seededRandom } from 'morgana';
import { ROOT, run as runCommand, tempDir } from './helpers/unikernel.js';

const tick = () => new Promise((r) => setImmediate(r));

/** Drives the virtual clock until `promise` settles; resolves with the virtual time it took. */
async function timed(clock: VirtualClock, promise: Promise<unknown>, limitMs = 60_000): Promise<number> {
  let done = false;
  const watched = promise.finally(() => (done = true));
  watched.catch(() => {});
  const start = clock.now();
  for (let spent = 0; !done && spent < limitMs; spent += 10) {
    await tick();
    await tick();
    if (!done) clock.advance(10);
  }
  await watched;
  return clock.now() - start;
}

test('with a router: settled() resolves with the SLAAC address formed from its prefix', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const router = await createStack({
    net: sw.connect(),
    ipv6: { address: '2001:db8::1/64', routerAdvertisements: { prefixes: ['2001:db8::/64'] } },
    clock,
    random: seededRandom(1),
  });
  const host = await createStack({ net: sw.connect(), ipv6: 'auto', clock, random: seededRandom(2) });
  await timed(clock, host.slaac!.settled());
  const addresses = host.ipv6!.addresses();
  t.true(addresses.some((a) => a.startsWith('fe80:')), addresses.join());
  t.true(addresses.some((a) => a.startsWith('2001:db8::')), `a global address: ${addresses.join()}`);
  const reply = await timed(clock, host.icmpv6!.ping('2001:db8::1'));
  t.true(reply >= 0);
  await Promise.all([host.close(), router.close()]);
});

test('without a router: settled() resolves once the solicitations went unanswered; dadOnly resolves after DAD', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const host = await createStack({ net: sw.connect(), ipv6: 'auto', clock, random: seededRandom(3) });
  const dad = await timed(clock, host.slaac!.settled({ dadOnly: true }));
  t.true(dad <= 3_000, `DAD took ${dad} ms`);
  const clock2 = new VirtualClock();
  const sw2 = new VirtualSwitch({ clock: clock2 });
  const host2 = await createStack({ net: sw2.connect(), ipv6: 'auto', clock: clock2, random: seededRandom(3) });
  const full = await timed(clock2, host2.slaac!.settled());
  // RFC 4861 §6.3.7: up to 1 s delay, 3 solicitations 4 s apart, then 4 s without an answer.
  t.true(full >= 12_000 && full <= 14_000, `router discovery gave up after ${full} ms`);
  t.deepEqual(host2.ipv6!.addresses().filter((a) => !a.startsWith('fe80:')), [], 'definitively no SLAAC address');
  await Promise.all([host.close(), host2.close()]);
});

test('a script awaiting settled() is kept alive until it resolves (exit 0, not 13)', async (t) => {
  const dir = tempDir();
  const { mkdirSync, symlinkSync } = await import('node:fs');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'morgana'), 'dir');
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  writeFileSync(
    join(dir, 'main.js'),
    `import { VirtualSwitch, createStack } from 'morgana';
const sw = new VirtualSwitch();
const host = await createStack({ net: sw.connect(), ipv6: 'auto' });
await host.slaac.settled({ dadOnly: true });
console.log('settled', host.ipv6.addresses().length);
await host.close();
`,
  );
  const r = await runCommand(process.execPath, [join(dir, 'main.js')], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /settled 1/);
});
