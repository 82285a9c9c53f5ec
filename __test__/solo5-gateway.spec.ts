/**
 * The user-mode gateway on an in-process link (a VirtualSwitch instead of the tender's bridge),
 * no root needed: a Morgana stack plays the guest. On the real link the kernel's bridge and TAP
 * share the private link with the guest and may send frames of their own (IPv6 chatter from
 * another MAC); the gateway must keep sending to the guest's MAC, not to whoever spoke last.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { VirtualSwitch, createStack } from 'morgana';
import { startUserGateway } from 'morgana/solo5';

function udpAsk(port: number, text: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no UDP answer on ${port}`));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(text, port, '127.0.0.1');
  });
}

test('a frame from another MAC on the link (the kernel bridge) does not take the guest MAC: forwarded UDP still reaches the guest', async (t) => {
  const sw = new VirtualSwitch();
  const gw = await startUserGateway({ forwards: [{ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 7 }] });
  t.teardown(() => gw.close());
  gw.attach(sw.connect());
  const guest = await createStack({ net: sw.connect(), ipv4: gw.guest, gateway: gw.gateway });
  t.teardown(() => guest.close());
  const echo = guest.udp.bind(7, (data, from) => echo.send(from.address, from.port, Buffer.concat([Buffer.from('echo:'), data])));
  const port = gw.forwards[0]!.hostPort;
  t.is(await udpAsk(port, 'one'), 'echo:one');

  // The bridge's own MAC sends an IPv6 multicast listener report, as the kernel does when a link comes up.
  const bridge = sw.connect();
  const v6 = Buffer.alloc(14 + 40 + 8);
  Buffer.from([0x33, 0x33, 0, 0, 0, 0x16]).copy(v6, 0);
  Buffer.from(bridge.mac.split(':').map((h) => Number.parseInt(h, 16))).copy(v6, 6);
  v6.writeUInt16BE(0x86dd, 12);
  v6[14] = 0x60;
  v6.writeUInt16BE(8, 18);
  v6[20] = 0; // hop-by-hop header follows; its content does not matter here
  v6[21] = 1;
  bridge.write(v6.length, (out) => v6.copy(out));
  // And an IPv4 frame from an address that is not the guest's.
  const other = Buffer.alloc(14 + 20);
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).copy(other, 0);
  Buffer.from(bridge.mac.split(':').map((h) => Number.parseInt(h, 16))).copy(other, 6);
  other.writeUInt16BE(0x0800, 12);
  other[14] = 0x45;
  other.writeUInt32BE(0x0a000263, 26); // 10.0.2.99
  bridge.write(other.length, (out) => other.copy(out));
  await new Promise((r) => setImmediate(r));

  t.is(await udpAsk(port, 'two'), 'echo:two');
  t.is(gw.stats().accepted.forwardedUdp, 2);
});

test('a forwarded datagram that arrives before the guest has sent anything is delivered (the gateway ARPs for the guest)', async (t) => {
  const sw = new VirtualSwitch();
  // The guest comes up (and announces itself) before the gateway is on the link: the gateway
  // has seen nothing from it when the first datagram arrives.
  const guest = await createStack({ net: sw.connect(), ipv4: '10.0.2.15/24', gateway: '10.0.2.2' });
  t.teardown(() => guest.close());
  const echo = guest.udp.bind(7, (data, from) => echo.send(from.address, from.port, Buffer.concat([Buffer.from('echo:'), data])));
  await new Promise((r) => setTimeout(r, 50));
  const gw = await startUserGateway({ forwards: [{ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 7 }] });
  t.teardown(() => gw.close());
  gw.attach(sw.connect());
  t.is(await udpAsk(gw.forwards[0]!.hostPort, 'first'), 'echo:first');
  t.is(gw.stats().dropped.noGuestMac, 0);
  t.true(gw.stack.stats().arp[0]!.requestsSent >= 1, JSON.stringify(gw.stack.stats().arp[0]));
});
