/**
 * The child's side of the lifeline `morgana run`/`start` give a unikernel: the read end of a pipe
 * on the fd named by `MORGANA_PARENT_FD`. The wrapper never writes to it; when the wrapper dies
 * (even by SIGKILL) the kernel closes the write end and this end reads end-of-file, so the
 * unikernel stops instead of living on as an orphan holding its ports.
 * @module
 */
import net from 'node:net';

/**
 * Calls `onParentGone` once when the wrapper that started this process goes away. Does nothing
 * (and returns a no-op) when the process was not started with a lifeline. The watch never keeps
 * the process alive. Returns a function that stops watching.
 */
export function watchParent(onParentGone: () => void): () => void {
  const text = process.env.MORGANA_PARENT_FD;
  if (text === undefined) return () => {};
  // Not inherited by whatever the unikernel itself spawns.
  delete process.env.MORGANA_PARENT_FD;
  const fd = Number(text);
  if (!Number.isInteger(fd) || fd < 3) return () => {};
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: false });
  } catch {
    return () => {};
  }
  let done = false;
  const gone = () => {
    if (done) return;
    done = true;
    onParentGone();
  };
  socket.on('data', () => {});
  socket.on('end', gone);
  socket.on('error', gone);
  socket.unref();
  return () => {
    done = true;
    socket.destroy();
  };
}
