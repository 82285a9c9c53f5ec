/**
 * An iperf3-protocol server and client on a Morgana stack, so that the standard `iperf3` tool can
 * measure Morgana and Morgana can measure a kernel `iperf3 -s`.
 *
 * The control protocol: the client opens a TCP control connection and sends a 37-byte cookie
 * (36 printable characters and a NUL). The server drives the test by writing one-byte states on
 * it: PARAM_EXCHANGE (the client answers with its parameters as JSON, prefixed by a 32-bit
 * big-endian length), CREATE_STREAMS (the client opens `parallel` data streams per direction:
 * TCP connections that each send the cookie first, or UDP streams opened with a connect
 * datagram, see `udp.ts`), TEST_START and TEST_RUNNING (data flows: client to server,
 * server to client in reverse mode, both ways at once in bidirectional mode, where the client
 * opens its sending streams first). The client ends the test with TEST_END when its duration
 * (plus the omitted seconds) has passed or its byte or block count has been transferred; the
 * server answers EXCHANGE_RESULTS, the client sends its per-stream results as JSON and reads the
 * server's, the server writes DISPLAY_RESULTS and the client closes with IPERF_DONE.
 *
 * Both ends count what they send and receive, report it every `interval` seconds, forget what
 * was counted during the first `omit` seconds (TCP slow start), and build a result shaped like
 * `iperf3 -J` output from their own counts and the peer's.
 * @module
 */
export { IPERF3_STATE, IPERF3_COOKIE_SIZE, IPERF3_DEFAULT_PORT, IPERF3_DEFAULT_BLOCK, IPERF3_DEFAULT_WINDOW, makeIperf3Cookie } from './protocol.js';
export { type Iperf3Protocol, type Iperf3Sum, type Iperf3TcpStreamEnd, type Iperf3UdpStreamEnd, type Iperf3IntervalStream, type Iperf3IntervalSum, type Iperf3Interval, type Iperf3TestStart, type Iperf3Result } from './reports.js';
export { type Iperf3ServerOptions, type Iperf3Server, startIperf3Server } from './server.js';
export { type Iperf3ClientOptions, runIperf3Client } from './client.js';
