/**
 * Run by the user-mode network's set-up script inside the tender's namespace
 * (`node user-net-helper.js SOCKET_FD TAP…`): opens the gateway TAPs there and sends their
 * descriptors to the deploying process over the inherited socket (`SCM_RIGHTS`).
 * @module
 */
import { native } from '../native.js';

const [fd, ...names] = process.argv.slice(2);
try {
  native.tapSendFds(Number(fd), names);
} catch (error) {
  process.stderr.write(`morgana user-net helper: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
