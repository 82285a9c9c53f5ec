/**
 * `--dashboard [ADDR]` and `--metrics ADDR` of `morgana run` and `morgana start`: taken out of
 * the command line before the common parser sees it (the dashboard's address is optional), and
 * handed to the unikernel in its environment (see ts/monitor/runtime.ts).
 * @module
 */
import { MorganaError } from '../errors.js';
import { MONITOR_ENV, type MonitorRequest, parseListenAddress } from '../monitor/runtime.js';

/** Usage lines for the two options. */
export const MONITOR_OPTIONS = `  --dashboard [ADDR]     serve a live dashboard (topology, charts, connections, captures) on
                         ADDR (default 127.0.0.1:0, printed at start; loopback unless given)
  --metrics ADDR         serve Prometheus metrics of every stack and switch at http://ADDR/metrics`;

const ADDRESS = /^(\[[0-9a-fA-F:.]+\]:|[^-\s:[\]][^\s:[\]]*:)?\d{1,5}$/;

/** Removes the monitor options from `args` (up to `--`) and returns what they ask for. */
export function takeMonitorArgs(args: readonly string[]): { args: string[]; request: MonitorRequest | undefined } {
  const rest: string[] = [];
  const request: MonitorRequest = {};
  let asked = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      rest.push(...args.slice(i));
      break;
    }
    const m = /^--(dashboard|metrics)(?:=(.*))?$/.exec(arg);
    if (!m) {
      rest.push(arg);
      continue;
    }
    const kind = m[1] as 'dashboard' | 'metrics';
    let value = m[2];
    if (value === undefined && i + 1 < args.length && ADDRESS.test(args[i + 1]!)) value = args[++i];
    if (value === undefined) {
      if (kind === 'metrics') throw new MorganaError('ERR_USAGE', '--metrics needs an address: --metrics 127.0.0.1:9464');
      value = '127.0.0.1:0';
    }
    parseListenAddress(value, `--${kind}`);
    request[kind] = value;
    asked = true;
  }
  return { args: rest, request: asked ? request : undefined };
}

/** The environment for the unikernel's process with the request in it. */
export function monitorEnv(request: MonitorRequest | undefined, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (!request) return env;
  return { ...env, [MONITOR_ENV]: JSON.stringify(request) };
}
