/**
 * `morgana daemon`: the supervisor of Solo5 and TypeScript unikernels behind a local control
 * socket (and, optionally, TLS for remote management and a metrics endpoint), with its policies,
 * block devices and event log. Part of the `morgana/solo5` entry point and the package root.
 * @module
 */
export {
  type ControlCounters,
  type ControlLimits,
  type DaemonOptions,
  type DaemonRequest,
  type DaemonTarget,
  type DaemonUnikernelInfo,
  type DaemonUserNetworkInfo,
  PROTOCOL_VERSION,
  Solo5Daemon,
  daemonRequest,
  defaultDaemonDir,
  startDaemon,
} from './supervisor.js';
export { type DaemonEvent, type DaemonEventType } from './events.js';
export { DEFAULT_FORWARD_ADDRESSES, DEFAULT_FORWARD_PORTS, DEFAULT_USER_NET_ACCESS, type ResourcePolicy } from './policy.js';
export { type BlockInfo } from './blocks.js';
export { type MetricFamily, renderMetrics } from './metrics.js';
export { type DaemonWeb, type DaemonWebOptions, type DaemonWebSnapshot, type DaemonWebUnikernel, daemonSnapshot, startDaemonWeb } from './web.js';
