/**
 * Loaded into every ava worker (package.json `ava.require`). A test file whose tests are done but
 * which left a handle open (a listening server, a socket: since issue 16 a Morgana TcpServer or
 * TcpConnection keeps the process alive, as in Node's net) would keep its worker, and with it the
 * whole run, waiting forever. Once ava is done with the file, give the worker 5 s to exit by
 * itself; then name what is still open, loudly, and exit.
 */
import { registerCompletionHandler } from 'ava';

registerCompletionHandler(() => {
  const timer = setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    process.stderr.write(`\n[exit-when-done] ${process.argv[1] ?? 'worker'}: tests done but still open after 5 s: ${open.join(', ')}; exiting\n`);
    process.exit(0);
  }, 5000);
  timer.unref();
});
