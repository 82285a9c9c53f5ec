/**
 * The npm dependencies of a unikernel, as `config.ts` declares them (what opam `depends` and
 * `pin-depends` are to MirageOS), and the `package.json` that `morgana configure` writes.
 * @module
 */
import { isAbsolute, relative, resolve } from 'node:path';
import { MorganaError } from '../errors.js';

/** Where a pinned package comes from. */
export type PackagePin = { git: string } | { path: string };

/** One dependency of a unikernel. */
export interface PackageSpec {
  readonly kind: 'package';
  readonly name: string;
  /** An npm semver range (`'^1.2.0'`, `'>=1.0.0 <2.0.0'`); undefined for any version. */
  readonly range: string | undefined;
  /** A pin to a git URL or a local folder, which replaces the range. */
  readonly pin: PackagePin | undefined;
}

const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

/**
 * Declares an npm dependency: `npmPackage('lru-cache', '^10.0.0')`, pinned with
 * `npmPackage('x', { git: 'https://host/x.git#v1.2.3' })` or `npmPackage('x', { path: '../x' })`
 * (a path relative to the folder of `config.ts`).
 */
export function npmPackage(name: string, versionOrPin?: string | PackagePin): PackageSpec {
  if (typeof name !== 'string' || !PACKAGE_NAME.test(name)) throw new MorganaError('ERR_CONFIG_INVALID_PACKAGE', `invalid npm package name ${JSON.stringify(name)}`);
  if (versionOrPin === undefined || typeof versionOrPin === 'string') {
    if (versionOrPin !== undefined && !/^[\w.*^~<>=| -]+$/.test(versionOrPin)) {
      throw new MorganaError('ERR_CONFIG_INVALID_PACKAGE', `invalid version range ${JSON.stringify(versionOrPin)} for ${name}`);
    }
    return { kind: 'package', name, range: versionOrPin?.trim() || undefined, pin: undefined };
  }
  if ('git' in versionOrPin && typeof versionOrPin.git === 'string' && versionOrPin.git !== '') return { kind: 'package', name, range: undefined, pin: { git: versionOrPin.git } };
  if ('path' in versionOrPin && typeof versionOrPin.path === 'string' && versionOrPin.path !== '') return { kind: 'package', name, range: undefined, pin: { path: versionOrPin.path } };
  throw new MorganaError('ERR_CONFIG_INVALID_PACKAGE', `a pin of ${name} is { git: URL } or { path: FOLDER }`);
}

/**
 * The version range of Morgana a unikernel configured with `version` needs: at least that
 * version, and below the next breaking release (next minor for 0.x, next major after).
 */
export function morganaRange(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) throw new MorganaError('ERR_CONFIG_INVALID_PACKAGE', `cannot bound Morgana version ${version}`);
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const upper = major === 0 ? `0.${minor + 1}.0` : `${major + 1}.0.0`;
  return `>=${major}.${minor}.${patch} <${upper}`;
}

/**
 * Merges the declarations of each package: ranges intersect (npm reads space-separated ranges as
 * "and"), a pin replaces ranges, and two different pins of one package are an error.
 */
export function mergePackages(specs: readonly PackageSpec[]): PackageSpec[] {
  const byName = new Map<string, PackageSpec>();
  for (const spec of specs) {
    const old = byName.get(spec.name);
    if (!old) {
      byName.set(spec.name, spec);
      continue;
    }
    if (old.pin && spec.pin && JSON.stringify(old.pin) !== JSON.stringify(spec.pin)) {
      throw new MorganaError('ERR_CONFIG_PACKAGE_CONFLICT', `${spec.name} is pinned twice, to ${JSON.stringify(old.pin)} and ${JSON.stringify(spec.pin)}`);
    }
    const pin = old.pin ?? spec.pin;
    const ranges = [...new Set([old.range, spec.range].filter((r): r is string => r !== undefined))];
    byName.set(spec.name, { kind: 'package', name: spec.name, pin, range: pin ? undefined : ranges.join(' ') || undefined });
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The `package.json` `dependencies` value of a spec. Local folders become `file:` paths relative
 * to `buildDir` (resolved from `projectDir`), git pins `git+URL` unless they carry a scheme npm
 * knows already.
 */
export function dependencyValue(spec: PackageSpec, projectDir: string, buildDir: string): string {
  if (spec.pin && 'path' in spec.pin) {
    const abs = isAbsolute(spec.pin.path) ? spec.pin.path : resolve(projectDir, spec.pin.path);
    return `file:${relative(buildDir, abs) || '.'}`;
  }
  if (spec.pin && 'git' in spec.pin) {
    const url = spec.pin.git;
    return /^(git\+|git:|github:|gitlab:|bitbucket:)/.test(url) ? url : `git+${url}`;
  }
  return spec.range ?? '*';
}
