// The "unikernel" the stub tender execs for the user-mode network tests: a Morgana stack on the
// TAP descriptor the tender attached, configured from MirageOS-style boot arguments
// (--ipv4=ADDR/PREFIX --ipv4-gateway=ADDR), serving
//   TCP 80: HTTP/1.0, GET /bytes/N answers N deterministic bytes (SHA-256 checked by the test),
//           anything else "hello from the guest\n";
//   TCP 9:  a source: after the first byte from the client, 64 KiB blocks until the connection
//           closes (the forwarded-port throughput benchmark);
//   UDP 7:  echoes each datagram prefixed with "echo:";
//   with GUEST_IPERF3=1, Morgana's iperf3 server on 5201 (the peers benchmark).
// With GUEST_TCP_TO=ADDR:PORT / GUEST_UDP_TO=ADDR:PORT it also connects out once and prints what
// came back ("outbound tcp: …", "outbound udp: …").
import { createHash } from 'node:crypto';
import { adoptTap, createStack } from 'morgana';

const [fds, ...args] = process.argv.slice(2);
const arg = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const ipv4 = arg('ipv4');
const gateway = arg('ipv4-gateway');
if (!ipv4) {
  console.log('guest: no --ipv4 boot argument');
  process.exit(64);
}
const net = adoptTap(Number(fds.split(',')[0]));
const stack = await createStack({ net, ipv4, ...(gateway ? { gateway } : {}) });

/** N deterministic bytes: SHA-256 in counter mode over "morgana" (the test computes the same). */
function pattern(n) {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) {
    const h = createHash('sha256').update(`morgana ${block}`).digest();
    i += h.copy(out, i);
  }
  return out;
}

stack.tcp.listen(80, (conn) => {
  let request = '';
  conn.on('data', (d) => {
    request += d.toString('latin1');
    if (!request.includes('\r\n\r\n')) return;
    const path = /^GET (\S+)/.exec(request)?.[1] ?? '/';
    const m = /^\/bytes\/(\d+)$/.exec(path);
    const body = m ? pattern(Number(m[1])) : Buffer.from('hello from the guest\n');
    conn.end(Buffer.concat([Buffer.from(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\nContent-Type: application/octet-stream\r\n\r\n`), body]));
  });
  conn.on('error', () => {});
});
const block = Buffer.alloc(65536, 0x5a);
stack.tcp.listen(9, (conn) => {
  conn.on('error', () => {});
  conn.once('data', () => {
    const pump = () => {
      while (!conn.destroyed && conn.write(block));
    };
    conn.on('drain', pump);
    conn.resume();
    pump();
  });
});
const echo = stack.udp.bind(7, (data, from) => echo.send(from.address, from.port, Buffer.concat([Buffer.from('echo:'), data])));
if (process.env.GUEST_IPERF3) {
  const { startIperf3Server } = await import('morgana/iperf3');
  startIperf3Server(stack, { port: 5201, interval: 0 });
  console.log('iperf3: listening on 5201');
}
console.log(`guest ready on ${stack.address}`);
if (process.env.GUEST_PING && gateway) {
  try {
    const r = await stack.icmp.ping(gateway, { timeoutMs: 10_000 });
    console.log(`ping ${gateway}: reply from ${r.from}`);
  } catch (error) {
    console.log(`ping ${gateway}: ${error.message}`);
  }
}

const split = (text) => {
  const i = text.lastIndexOf(':');
  return [text.slice(0, i), Number(text.slice(i + 1))];
};
if (process.env.GUEST_TCP_TO) {
  const [host, port] = split(process.env.GUEST_TCP_TO);
  try {
    const conn = await stack.tcp.connect(host, port);
    const chunks = [];
    conn.on('data', (d) => chunks.push(d));
    conn.end('ping from the guest\n');
    await new Promise((resolve, reject) => conn.on('end', resolve).on('error', reject));
    console.log(`outbound tcp: ${Buffer.concat(chunks).toString().trim()}`);
  } catch (error) {
    console.log(`outbound tcp failed: ${error.message}`);
  }
}
if (process.env.GUEST_UDP_TO) {
  const [host, port] = split(process.env.GUEST_UDP_TO);
  let timer;
  const got = new Promise((resolve) => {
    const b = stack.udp.bind(0, (data) => resolve(data.toString()));
    b.send(host, port, Buffer.from('ping'));
    timer = setInterval(() => b.send(host, port, Buffer.from('ping')), 300);
  });
  got.then(() => clearInterval(timer));
  console.log(`outbound udp: ${await got}`);
}
