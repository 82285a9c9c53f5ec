/**
 * The metrics of a stack and of a virtual switch, drawn from their `stats()` so the two can
 * never disagree: every layer's counters under `morgana_<layer>_…`, one label set per stack
 * (`stack="…"`), per-interface series labelled `interface="0"`, drop reasons labelled `reason`.
 * @module
 */
import { type Labels, type MetricsFormat, MetricsWriter, type StatsShape, addStatsObject } from './exposition.js';

/**
 * What the metrics read of a stack (structurally, so the stack module can call this one without an
 * import cycle).
 */
export interface MetricsStack {
  readonly address: string;
  stats(): object;
  readonly interfaces: ReadonlyArray<{ readonly eth: { readonly mtu: number }; readonly arp: { entries(): unknown[] } }>;
  readonly ndp?: { neighbours(): unknown[] } | undefined;
}

/** What the metrics read of a virtual switch. */
export interface MetricsSwitch {
  stats(): object;
  ports(): Array<{ id: number; mac: string; stats: object }>;
}

/** What `stack.metrics()` and `sw.metrics()` take. */
export interface MetricsOptions {
  /** `'prometheus'` (text format 0.0.4, what `promtool check metrics` reads; the default) or `'openmetrics'`. */
  format?: MetricsFormat;
  /** Labels on every series (default `{ stack: <first IPv4 address> }` or `{ switch: 'switch' }`). */
  labels?: Labels;
}

/** Levels rather than running totals, whatever layer they sit in. */
const GAUGES = new Set(['connections', 'timeWait', 'halfOpen', 'bufferedBytes', 'pendingDatagrams', 'pathMtuEntries']);

const SHAPES: Record<string, StatsShape> = {
  tcp: {
    gauges: GAUGES,
    rename: { segmentsIn: 'segments_received', segmentsOut: 'segments_sent', bytesIn: 'bytes_received', bytesOut: 'bytes_sent' },
    help: {
      connections: 'TCP connections in the engine (all states)',
      halfOpen: 'TCP connections in SYN-RECEIVED',
      timeWait: 'TCP connections in TIME-WAIT',
    },
  },
  // promtool's lint reads "_us" as microseconds.
  ethernet: { gauges: GAUGES, rename: { droppedNotForUs: 'dropped_not_for_this_host' } },
  ipv4: { gauges: GAUGES, labelled: { dropped: 'reason' } },
  ipv6: { gauges: GAUGES, labelled: { dropped: 'reason' } },
  nd: { gauges: GAUGES, labelled: { invalid: 'reason' } },
  slaac: { gauges: GAUGES, labelled: { prefixesIgnored: 'reason' } },
};

const LAYER_NAMES: Record<string, string> = {
  net: 'NET device',
  ethernet: 'Ethernet',
  arp: 'ARP',
  ipv4: 'IPv4',
  icmp: 'ICMPv4',
  udp: 'UDP',
  tcp: 'TCP',
  ipv6: 'IPv6',
  icmpv6: 'ICMPv6',
  nd: 'neighbour discovery',
  mld: 'MLD',
  slaac: 'SLAAC',
};

/** Adds a stack's series to `writer`. */
export function writeStackMetrics(writer: MetricsWriter, stack: MetricsStack, labels: Labels): void {
  const stats = stack.stats();
  for (const [layer, value] of Object.entries(stats)) {
    if (value === undefined) continue;
    const shape = SHAPES[layer] ?? { gauges: GAUGES };
    const what = LAYER_NAMES[layer] ?? layer;
    if (Array.isArray(value)) {
      value.forEach((perInterface, i) => addStatsObject(writer, `morgana_${layer}`, what, perInterface as object, { ...labels, interface: String(i) }, shape));
    } else {
      addStatsObject(writer, `morgana_${layer}`, what, value as object, labels, shape);
    }
  }
  stack.interfaces.forEach((iface, i) => {
    const l = { ...labels, interface: String(i) };
    writer.gauge('morgana_arp_entries', 'ARP cache entries', iface.arp.entries().length, l);
    writer.gauge('morgana_net_mtu_bytes', 'IP MTU of the interface', iface.eth.mtu, l);
  });
  if (stack.ndp) writer.gauge('morgana_nd_neighbours', 'Neighbour cache entries (all interfaces)', stack.ndp.neighbours().length, labels);
}

/** A stack's metrics as text (see {@link MetricsOptions}). */
export function stackMetrics(stack: MetricsStack, options: MetricsOptions = {}): string {
  const writer = new MetricsWriter();
  writeStackMetrics(writer, stack, options.labels ?? { stack: stack.address });
  return writer.text(options.format);
}

/** Adds a switch's series (its counters, and each port's frame counters) to `writer`. */
export function writeSwitchMetrics(writer: MetricsWriter, sw: MetricsSwitch, labels: Labels): void {
  addStatsObject(writer, 'morgana_switch', 'virtual switch', sw.stats(), labels, { gauges: new Set(['ports']) });
  for (const port of sw.ports()) {
    addStatsObject(writer, 'morgana_switch_port', 'virtual switch port', port.stats, { ...labels, port: String(port.id), mac: port.mac }, {});
  }
}

/** A switch's metrics as text. */
export function switchMetrics(sw: MetricsSwitch, options: MetricsOptions = {}): string {
  const writer = new MetricsWriter();
  writeSwitchMetrics(writer, sw, options.labels ?? { switch: 'switch' });
  return writer.text(options.format);
}
