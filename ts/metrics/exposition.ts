/**
 * Prometheus and OpenMetrics text exposition: one writer for every metric Morgana exports
 * (stacks, switches, the monitor's HTTP endpoint). Families are declared once, samples are
 * grouped under their family, label values are escaped, and the output ends the way each format
 * requires (`# EOF` for OpenMetrics). The two formats differ only in how a counter's family is
 * named: Prometheus 0.0.4 declares `x_total`, OpenMetrics declares `x` and samples `x_total`.
 * @module
 */

/** The exposition formats Morgana writes. */
export type MetricsFormat = 'prometheus' | 'openmetrics';

/** Content types of the two formats, for an HTTP response. */
export const METRICS_CONTENT_TYPE: Record<MetricsFormat, string> = {
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
};

/** Labels of one sample. */
export type Labels = Readonly<Record<string, string>>;

type MetricType = 'counter' | 'gauge';

interface Family {
  type: MetricType;
  help: string;
  samples: Array<{ labels: Labels; value: number }>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/**
 * Collects metric samples and writes them as text. Counter names are given without `_total`
 * (the writer adds it); a name used twice must keep its type.
 */
export class MetricsWriter {
  readonly #families = new Map<string, Family>();

  /** Adds a monotonically increasing value (`name` without `_total`). */
  counter(name: string, help: string, value: number, labels: Labels = {}): void {
    this.#add(name, 'counter', help, value, labels);
  }

  /** Adds a value that goes up and down. */
  gauge(name: string, help: string, value: number, labels: Labels = {}): void {
    this.#add(name, 'gauge', help, value, labels);
  }

  /** Names of the families collected so far (counters without `_total`). */
  names(): string[] {
    return [...this.#families.keys()];
  }

  /** The collected samples as exposition text. */
  text(format: MetricsFormat = 'prometheus'): string {
    const out: string[] = [];
    for (const [name, family] of this.#families) {
      const declared = family.type === 'counter' && format === 'prometheus' ? `${name}_total` : name;
      const sampleName = family.type === 'counter' ? `${name}_total` : name;
      out.push(`# HELP ${declared} ${escapeHelp(family.help)}`);
      out.push(`# TYPE ${declared} ${family.type}`);
      for (const { labels, value } of family.samples) {
        const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
        out.push(`${sampleName}${pairs.length ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`);
      }
    }
    if (format === 'openmetrics') out.push('# EOF');
    return `${out.join('\n')}\n`;
  }

  #add(name: string, type: MetricType, help: string, value: number, labels: Labels): void {
    if (!NAME.test(name) || name.endsWith('_total')) throw new TypeError(`bad metric name ${JSON.stringify(name)}`);
    for (const key of Object.keys(labels)) if (!LABEL.test(key)) throw new TypeError(`bad label name ${JSON.stringify(key)}`);
    let family = this.#families.get(name);
    if (!family) {
      family = { type, help, samples: [] };
      this.#families.set(name, family);
    } else if (family.type !== type) {
      throw new TypeError(`metric ${name} is a ${family.type}, not a ${type}`);
    }
    family.samples.push({ labels, value });
  }
}

/** `segmentsIn` → `segments_in`. */
export function snakeCase(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toLowerCase();
}

/** `segmentsIn` → `segments in` (a readable default for HELP). */
function words(key: string): string {
  return snakeCase(key).replace(/_/g, ' ');
}

/** How {@link addStatsObject} names and types the fields of one stats object. */
export interface StatsShape {
  /** Fields that are levels (connections open, bytes buffered), not running totals. */
  gauges?: ReadonlySet<string>;
  /** Better metric names for some fields (without prefix or `_total`). */
  rename?: Readonly<Record<string, string>>;
  /** Help text for some fields; others get "<what>: <field in words>". */
  help?: Readonly<Record<string, string>>;
  /** Nested objects whose keys are a label (`dropped: { reason: n }`), with the label's name. */
  labelled?: Readonly<Record<string, string>>;
}

/**
 * Writes every numeric field of a stats object as a metric named `prefix_field` (snake case),
 * with `labels`. Nested plain objects become `prefix_field_…` (recursively) unless `shape`
 * names them as labelled (`dropped: { 'bad-checksum': 3 }` → `prefix_dropped_total{reason=…}`).
 * Keeping this generic means a counter added to a layer's `stats()` is exported without a second
 * list to maintain, under the same name everywhere.
 */
export function addStatsObject(writer: MetricsWriter, prefix: string, what: string, stats: object, labels: Labels, shape: StatsShape = {}): void {
  for (const [key, value] of Object.entries(stats)) {
    const base = shape.rename?.[key] ?? snakeCase(key);
    const name = `${prefix}_${base}`;
    if (typeof value === 'number') {
      const help = shape.help?.[key] ?? `${what}: ${words(key)}`;
      if (shape.gauges?.has(key)) writer.gauge(name, help, value, labels);
      else writer.counter(name, help, value, labels);
    } else if (typeof value === 'bigint') {
      writer.counter(name, shape.help?.[key] ?? `${what}: ${words(key)}`, Number(value), labels);
    } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const labelName = shape.labelled?.[key];
      if (labelName !== undefined) {
        const help = shape.help?.[key] ?? `${what}: ${words(key)}, by ${labelName}`;
        for (const [k, n] of Object.entries(value as Record<string, unknown>)) {
          if (typeof n === 'number') writer.counter(name, help, n, { ...labels, [labelName]: k });
        }
      } else {
        addStatsObject(writer, name, `${what} ${words(key)}`, value, labels, shape);
      }
    }
  }
}
