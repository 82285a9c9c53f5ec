/**
 * The monitor: live dashboard, JSON API and metrics endpoint of running stacks (issue 19).
 * `morgana run --dashboard [ADDR]` / `--metrics ADDR` start it inside the unikernel; a program
 * starts it with {@link startMonitor}.
 * @module
 */
export { type Monitor, type MonitorOptions, startMonitor } from './server.js';
export { type MonitorSource, type MonitoredForward, type MonitoredStack, type Snapshot, takeSnapshot } from './snapshot.js';
export { type OutputRing, captureOutput } from './output-ring.js';
