/**
 * Typed configuration keys, after functoria's keys: each has a name (its `--name` option), a type,
 * a default, a doc string and a stage. Configure-time keys are fixed by `morgana configure`;
 * runtime keys are parsed from the boot arguments when the unikernel starts; keys of stage
 * `'both'` (the default, as in MirageOS 3) are runtime keys whose default a configure-time value
 * replaces.
 * @module
 */
import { formatIpv4Address, formatIpv6Address, parseIpv4Address, parseIpv6Address } from '../address.js';
import { MorganaError } from '../errors.js';
import { formatMac, parseMac } from '../net/mac.js';

/** When a key's value is decided. */
export type KeyStage = 'configure' | 'runtime' | 'both';

/** The types a key can have. */
export type KeyType = 'string' | 'int' | 'bool' | 'ipv4' | 'ipv4Address' | 'ipv6' | 'ipv6Address' | 'mac' | 'duration';

/** The JavaScript value of each key type. */
export interface KeyValueTypes {
  string: string;
  int: number;
  bool: boolean;
  /** An address with its prefix, normalised (`'10.0.0.2/24'`). */
  ipv4: string;
  /** A dotted quad (`'10.0.0.1'`). */
  ipv4Address: string;
  /** An IPv6 unicast address with its prefix, in RFC 5952 form (`'2001:db8::2/64'`). */
  ipv6: string;
  /** An IPv6 unicast address in RFC 5952 form (`'fe80::1'`, `'2001:db8::1'`). */
  ipv6Address: string;
  /** Lower-case colon-separated (`'02:00:00:00:00:01'`). */
  mac: string;
  /** Milliseconds. */
  duration: number;
}

/** Options shared by every key constructor. */
export interface KeyOptions<T> {
  /** The value when none is given (a key without default is required). */
  default?: T;
  /** One line of documentation, shown by `--help` and `morgana query keys`. */
  doc?: string;
  /** When the value is decided (default `'both'`). */
  stage?: KeyStage;
  /** Placeholder of the value in help (default from the type, e.g. `INT`). */
  docv?: string;
}

/** Options of number keys (`key.int`, `key.duration`, `key.port`): bounds checked when a value is parsed, before boot. */
export interface NumberKeyOptions extends KeyOptions<number> {
  /** The smallest value allowed (inclusive). */
  min?: number;
  /** The largest value allowed (inclusive). */
  max?: number;
}

/** A configuration key whose value has type `T`. */
export interface Key<T = unknown> {
  readonly kind: 'key';
  /** The option name without dashes: `hello` for `--hello`. */
  readonly name: string;
  readonly type: KeyType;
  readonly stage: KeyStage;
  readonly doc: string;
  readonly docv: string;
  /** The default; undefined for a required key. */
  readonly default: T | undefined;
  /** Parses a command-line value; throws `ERR_INVALID_KEY_VALUE`. */
  parse(text: string): T;
  /** Formats a value back as text (what `parse` accepts). */
  format(value: T): string;
}

/** The value type of a key. */
export type KeyValue<K> = K extends Key<infer T> ? T : never;

const NAME = /^[a-z][a-z0-9-]*$/;

function invalid(name: string, type: string, text: string, expected: string): MorganaError {
  return new MorganaError('ERR_INVALID_KEY_VALUE', `invalid value ${JSON.stringify(text)} for --${name} (${type}): expected ${expected}`);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `'1500ms'`, `'2s'`, `'1m30s'`, `'1.5h'` or `'0'` into milliseconds; throws on anything else. */
export function parseDuration(text: string): number {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let at = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  if (at === 0 || at !== text.length) throw new Error('bad duration');
  return total;
}

/** Formats milliseconds as a duration `parseDuration` accepts. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** RFC 5952 text of a unicast IPv6 address; throws for anything else (multicast, `::`, zones, brackets). */
function unicastIpv6(text: string): string {
  const bytes = parseIpv6Address(text);
  if (bytes[0] === 0xff || bytes.every((b) => b === 0)) throw new Error('not unicast');
  return formatIpv6Address(bytes);
}

const CODECS: { [T in KeyType]: { docv: string; parse(text: string, name: string): KeyValueTypes[T]; format?(v: KeyValueTypes[T]): string } } = {
  string: { docv: 'STRING', parse: (text) => text },
  int: {
    docv: 'INT',
    parse(text, name) {
      if (!/^[-+]?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw invalid(name, 'int', text, 'an integer');
      return Number(text);
    },
  },
  bool: {
    docv: 'BOOL',
    parse(text, name) {
      const t = text.toLowerCase();
      if (['true', 'yes', 'on', '1'].includes(t)) return true;
      if (['false', 'no', 'off', '0'].includes(t)) return false;
      throw invalid(name, 'bool', text, 'true or false');
    },
  },
  ipv4: {
    docv: 'ADDRESS/PREFIX',
    parse(text, name) {
      const slash = text.indexOf('/');
      const prefixText = text.slice(slash + 1);
      try {
        if (slash < 0 || !/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) throw new Error();
        return `${formatIpv4Address(parseIpv4Address(text.slice(0, slash)))}/${Number(prefixText)}`;
      } catch {
        throw invalid(name, 'ipv4', text, 'an IPv4 address with its prefix such as 10.0.0.2/24');
      }
    },
  },
  ipv4Address: {
    docv: 'ADDRESS',
    parse(text, name) {
      try {
        return formatIpv4Address(parseIpv4Address(text));
      } catch {
        throw invalid(name, 'ipv4Address', text, 'an IPv4 address such as 10.0.0.1');
      }
    },
  },
  ipv6: {
    docv: 'ADDRESS/PREFIX',
    parse(text, name) {
      const slash = text.indexOf('/');
      const prefixText = text.slice(slash + 1);
      try {
        if (slash < 0 || !/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > 128) throw new Error();
        return `${unicastIpv6(text.slice(0, slash))}/${Number(prefixText)}`;
      } catch {
        throw invalid(name, 'ipv6', text, 'an IPv6 unicast address with its prefix such as 2001:db8::2/64');
      }
    },
  },
  ipv6Address: {
    docv: 'ADDRESS',
    parse(text, name) {
      try {
        return unicastIpv6(text);
      } catch {
        throw invalid(name, 'ipv6Address', text, 'an IPv6 unicast address such as fe80::1 or 2001:db8::1');
      }
    },
  },
  mac: {
    docv: 'MAC',
    parse(text, name) {
      try {
        return formatMac(parseMac(text));
      } catch {
        throw invalid(name, 'mac', text, 'a MAC address such as 02:00:00:00:00:01');
      }
    },
  },
  duration: {
    docv: 'DURATION',
    parse(text, name) {
      try {
        return parseDuration(text);
      } catch {
        throw invalid(name, 'duration', text, 'a duration such as 500ms, 2s, 1m30s or 1h');
      }
    },
    format: formatDuration,
  },
};

function create<T extends KeyType>(type: T, name: string, options: KeyOptions<KeyValueTypes[T]> = {}): Key<KeyValueTypes[T]> {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new MorganaError('ERR_CONFIG_INVALID_KEY', `key names are lower-case letters, digits and dashes starting with a letter, got ${JSON.stringify(name)}`);
  }
  const stage = options.stage ?? 'both';
  if (!['configure', 'runtime', 'both'].includes(stage)) throw new MorganaError('ERR_CONFIG_INVALID_KEY', `key --${name}: stage must be configure, runtime or both`);
  const codec = CODECS[type];
  const { min, max } = options as NumberKeyOptions;
  const parse = (text: string): KeyValueTypes[T] => {
    const value = codec.parse(text, name);
    if (typeof value === 'number' && ((min !== undefined && value < min) || (max !== undefined && value > max))) {
      const shown = (n: number) => (codec.format ? (codec.format as (v: number) => string)(n) : String(n));
      const range = min !== undefined && max !== undefined ? `from ${shown(min)} to ${shown(max)}` : min !== undefined ? `of at least ${shown(min)}` : `of at most ${shown(max!)}`;
      throw invalid(name, type, text, `a value ${range}`);
    }
    return value;
  };
  const format = (value: KeyValueTypes[T]) => (codec.format ? codec.format(value) : String(value));
  // Normalise the default through the parser, so a bad default fails when config.ts loads.
  const fallback = options.default === undefined ? undefined : parse(format(options.default));
  return Object.freeze({ kind: 'key' as const, name, type, stage, doc: options.doc ?? '', docv: options.docv ?? codec.docv, default: fallback, parse, format });
}

/**
 * Key constructors: `key.string('hello', { default: 'Hello World!', doc: 'How to say hello.' })`.
 * Pass the keys to `main(…, { keys: { hello } })`; the unikernel receives their values.
 */
export const key = {
  /** A string key. */
  string: (name: string, options?: KeyOptions<string>) => create('string', name, options),
  /** An integer key; `min`/`max` bound it (checked by configure and before boot). */
  int: (name: string, options?: NumberKeyOptions) => create('int', name, options),
  /** A TCP/UDP port: an integer key from 0 to 65535 (or the `min`/`max` given). */
  port: (name: string, options?: NumberKeyOptions) => create('int', name, { min: 0, max: 65_535, docv: 'PORT', ...options }),
  /** A boolean key: `--name` alone means true, or `--name=true|false|yes|no|1|0`. */
  bool: (name: string, options?: KeyOptions<boolean>) => create('bool', name, options),
  /** An IPv4 address with prefix, `10.0.0.2/24`. */
  ipv4: (name: string, options?: KeyOptions<string>) => create('ipv4', name, options),
  /** An IPv4 address, `10.0.0.1`. */
  ipv4Address: (name: string, options?: KeyOptions<string>) => create('ipv4Address', name, options),
  /** An IPv6 unicast address with prefix, `2001:db8::2/64` (normalised to RFC 5952 text). */
  ipv6: (name: string, options?: KeyOptions<string>) => create('ipv6', name, options),
  /** An IPv6 unicast address, `fe80::1` or `2001:db8::1` (normalised to RFC 5952 text). */
  ipv6Address: (name: string, options?: KeyOptions<string>) => create('ipv6Address', name, options),
  /** A MAC address. */
  mac: (name: string, options?: KeyOptions<string>) => create('mac', name, options),
  /** A duration (`500ms`, `2s`, `1m30s`, `1h`), as milliseconds. */
  duration: (name: string, options?: NumberKeyOptions) => create('duration', name, options),
};

/** True for a {@link Key}. */
export function isKey(value: unknown): value is Key<unknown> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'key';
}

/** A value given literally or through a key. */
export type Param<T> = T | Key<T>;

/** The result of {@link parseKeyArguments}. */
export interface ParsedKeyArguments {
  /** Values by key name (only keys that were given). */
  values: Map<string, unknown>;
  /** Arguments that are not options, and everything after `--`. */
  positional: string[];
  /** `--help` was given. */
  help: boolean;
}

/**
 * Parses `--name=value`, `--name value` and (for bool keys) `--name` against `keys`. Unknown
 * options throw `ERR_UNKNOWN_KEY`; bad values `ERR_INVALID_KEY_VALUE`; a missing value
 * `ERR_MISSING_KEY_VALUE`.
 */
export function parseKeyArguments(args: readonly string[], keys: ReadonlyMap<string, Key<unknown>>): ParsedKeyArguments {
  const values = new Map<string, unknown>();
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (arg === '--help' || arg === '-h' || arg.startsWith('--help=')) {
      help = true;
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const k = keys.get(name);
    if (!k) {
      const known = [...keys.keys()].map((n) => `--${n}`).join(', ');
      throw new MorganaError('ERR_UNKNOWN_KEY', `unknown option --${name}${known ? ` (known: ${known})` : ' (this unikernel takes no options)'}`);
    }
    let text: string;
    if (eq >= 0) text = arg.slice(eq + 1);
    else if (k.type === 'bool' && (i + 1 >= args.length || !/^(true|false|yes|no|on|off|1|0)$/i.test(args[i + 1]!))) text = 'true';
    else if (i + 1 < args.length) text = args[++i]!;
    else throw new MorganaError('ERR_MISSING_KEY_VALUE', `option --${name} needs a value (${k.docv})`);
    values.set(name, k.parse(text));
  }
  return { values, positional, help };
}

/** Help text listing `keys` with their docs and defaults. */
export function keysHelp(keys: Iterable<Key<unknown>>, extra: Array<{ left: string; right: string }> = []): string {
  const rows = [...keys].map((k) => {
    const left = `  --${k.name}=${k.docv}`;
    const def = k.default === undefined ? ' (no default)' : ` (default ${k.format(k.default)})`;
    return { left, right: `${k.doc || `${k.type} key`}${def}` };
  });
  rows.push(...extra);
  const width = Math.max(0, ...rows.map((r) => r.left.length));
  return rows.map((r) => `${r.left.padEnd(width)}  ${r.right}`).join('\n');
}
