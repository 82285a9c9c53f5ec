/**
 * The iperf3 server and client (`morgana/iperf3`): the code lives in `ts/apps/iperf3/`, split by
 * role (protocol, session, UDP, server, client, reports); this path re-exports its public API.
 * @module
 */
export * from './iperf3/index.js';
