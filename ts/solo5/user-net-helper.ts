/**
 * Run by the user-mode network's set-up script inside the tender's namespace
 * (`node user-net-helper.js SOCKET_FD TAP…`): opens the gateway TAPs there and sends their
 * descriptors to the deploying process over the inherited socket (`SCM_RIGHTS`). They are opened
 * with the `virtio_net_hdr` and its offloads, which the gateway's adopted device keeps: it then
 * writes TCP super-frames that the kernel cuts on its way across the bridge to the tender's TAP
 * (a plain one: a Solo5 tender reads and writes whole frames), one write per 64 KiB instead of
 * one per 1,500 bytes.
 * @module
 */
import { native } from '../native.js';

const [fd, ...names] = process.argv.slice(2);
try {
  native.tapSendFds(Number(fd), names, true);
} catch (error) {
  process.stderr.write(`morgana user-net helper: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
