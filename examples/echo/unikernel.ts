import type { Start } from 'morgana/config';
import type config from './config.js';

/** Echoes every UDP datagram and every TCP byte back to its sender, until stopped. */
export const start: Start<typeof config> = async ({ stack }, { keys, signal }) => {
  const udp = stack.udp.bind(keys.port, (data, from) => udp.send(from.address, from.port, data));
  console.log(`echo: UDP ${stack.address} port ${keys.port}`);
  const ipv6 = stack.ipv6?.addresses() ?? [];
  if (ipv6.length) console.log(`echo: IPv6 ${ipv6.join(', ')} port ${keys.port}`);
  let tcp: { close(): unknown } | undefined;
  if (stack.tcp) {
    tcp = await stack.tcp.listen(keys.port, (connection) => {
      connection.on('error', () => connection.destroy());
      connection.pipe(connection);
    });
    console.log(`echo: TCP ${stack.address} port ${keys.port}`);
  } else {
    console.log('echo: this stack has no TCP; UDP only');
  }
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  udp.close();
  await tcp?.close();
};
