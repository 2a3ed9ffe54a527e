// The workspace layout (README, "Layout"): reads every source file's imports and fails on an import that
// crosses into a workspace the layout forbids, on an npm package the file's workspace does not declare,
// on an import cycle, and on a device dependency set that reaches cloud, hub or build packages.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(import.meta.dirname, '../..');

/** What each workspace may import from the others; mirrors the README's layout table. */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  common: [],
  contracts: ['common'],
  models: ['common'],
  'edge-agent': ['common', 'contracts', 'models'],
  fleet: ['common', 'contracts', 'models'],
  'local-hub': ['common', 'contracts'],
  functions: ['common', 'contracts', 'models', 'fleet'],
  // fleet: the one rollout policy (fleet/rollout-policy.ts) that the CDK app validates and hands to the rollout Lambdas.
  infra: ['common', 'contracts', 'fleet', 'functions'],
  'local-demo': ['common', 'contracts', 'models', 'fleet', 'local-hub', 'edge-agent'],
  console: ['common', 'contracts', 'fleet'],
  cli: ['common', 'contracts', 'models', 'fleet', 'local-hub', 'local-demo', 'functions', 'edge-agent', 'console'],
};

/** Folders of the root package (tests, benchmarks, build scripts, entry shims): they may import anything. */
const ROOT_FOLDERS = ['test', 'bench', 'scripts', 'bin'];

/** Files that only run from the TypeScript sources (never bundled): they may use their workspace's devDependencies. */
const SOURCE_ONLY = new Set(['models/compression/tt-row-worker.mjs']);

/** npm packages the device must never carry (cloud, local hub, operator AWS clients, datasets, build tools). */
const NOT_ON_DEVICE: readonly RegExp[] = [
  /^aws-cdk-lib$/,
  /^aws-cdk$/,
  /^cdk-nag$/,
  /^constructs$/,
  /^aedes$/,
  /^@aws-sdk\/xml-builder$/,
  /^@aws-sdk\/client-/,
  /^@aws-sdk\/s3-request-presigner$/,
  /^tsx$/,
  /^@stdlib\/datasets-/,
  /^esbuild$/,
  /^typescript$/,
  /^vitest$/,
];

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  workspaces?: string[];
}

const readJson = <T>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;
const rootPkg = readJson<PackageJson>(path.join(REPO, 'package.json'));
const WORKSPACES = rootPkg.workspaces ?? [];
const pkgOf = new Map(WORKSPACES.map((w) => [w, readJson<PackageJson>(path.join(REPO, w, 'package.json'))]));

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name === 'cdk.out' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts|mjs|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports: static, `export from`, dynamic import() and require(). */
function importsOf(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** `@scope/name/sub` -> `@scope/name`; `name/sub` -> `name`. */
function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** The top-level folder (workspace or root folder) a repository path belongs to. */
const ownerOf = (abs: string) => path.relative(REPO, abs).split(path.sep)[0]!;

const FILES = [...WORKSPACES, ...ROOT_FOLDERS].flatMap((d) => sourceFiles(path.join(REPO, d)));

function declared(pkg: PackageJson, withDev: boolean): Set<string> {
  return new Set([
    ...Object.keys(pkg.dependencies ?? {}),
    ...Object.keys(pkg.peerDependencies ?? {}),
    ...(withDev ? Object.keys(pkg.devDependencies ?? {}) : []),
  ]);
}

/** Packages a root-package file may import: the root's own and everything a workspace declares. */
const ROOT_ALLOWED = new Set([...declared(rootPkg, true), ...[...pkgOf.values()].flatMap((p) => [...declared(p, true)])]);

describe('workspace layout', () => {
  it('lists every workspace in the layout rules, and each package.json names its @fleetlm dependencies exactly', () => {
    expect(new Set(WORKSPACES)).toEqual(new Set(Object.keys(MAY_IMPORT)));
    for (const [w, pkg] of pkgOf) {
      expect(pkg.name, `${w}/package.json name`).toBe(`@fleetlm/${w}`);
      const fleetDeps = Object.keys(pkg.dependencies ?? {}).filter((d) => d.startsWith('@fleetlm/'));
      expect(new Set(fleetDeps), `${w}/package.json @fleetlm dependencies`).toEqual(new Set(MAY_IMPORT[w]!.map((d) => `@fleetlm/${d}`)));
    }
  });

  it('has no import that crosses into a workspace the layout forbids, nor into the root folders', () => {
    const bad: string[] = [];
    for (const file of FILES) {
      const from = ownerOf(file);
      if (ROOT_FOLDERS.includes(from)) continue;
      for (const spec of importsOf(file)) {
        if (!spec.startsWith('.')) continue;
        const to = ownerOf(path.resolve(path.dirname(file), spec));
        if (to === from) continue;
        if (!MAY_IMPORT[from]!.includes(to)) bad.push(`${path.relative(REPO, file)} imports ${spec} (${from} may import ${MAY_IMPORT[from]!.join(', ') || 'no other workspace'})`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('imports only npm packages its workspace declares', () => {
    const bad: string[] = [];
    for (const file of FILES) {
      const from = ownerOf(file);
      const rel = path.relative(REPO, file).split(path.sep).join('/');
      const allowed = ROOT_FOLDERS.includes(from) ? ROOT_ALLOWED : declared(pkgOf.get(from)!, SOURCE_ONLY.has(rel));
      const types = ROOT_FOLDERS.includes(from) ? ROOT_ALLOWED : declared(pkgOf.get(from)!, true);
      for (const spec of importsOf(file)) {
        if (spec.startsWith('.') || spec.startsWith('node:') || isBuiltin(spec)) continue;
        const name = packageName(spec);
        // Type-only packages (aws-lambda) are declared as @types/<name> devDependencies.
        const typesName = `@types/${name.replace(/^@/, '').replace('/', '__')}`;
        if (!allowed.has(name) && !types.has(typesName)) bad.push(`${rel} imports ${spec}, which ${ROOT_FOLDERS.includes(from) ? 'no package.json declares' : `${from}/package.json does not declare`}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('has no import cycle between files', () => {
    const graph = new Map<string, string[]>();
    for (const file of FILES) {
      const deps = importsOf(file)
        .filter((s) => s.startsWith('.'))
        .map((s) => path.resolve(path.dirname(file), s))
        .filter((p) => existsSync(p));
      graph.set(file, deps);
    }
    // Tarjan's strongly connected components: any component of two or more files (or a self-import) is a cycle.
    let index = 0;
    const idx = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const cycles: string[][] = [];
    const visit = (v: string) => {
      idx.set(v, index);
      low.set(v, index++);
      stack.push(v);
      onStack.add(v);
      for (const w of graph.get(v) ?? []) {
        if (!idx.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
      if (low.get(v) === idx.get(v)) {
        const scc: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          scc.push(path.relative(REPO, w));
        } while (w !== v);
        if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(scc);
      }
    };
    for (const f of graph.keys()) if (!idx.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it("keeps cloud, hub, operator and build packages out of the device agent's production dependency set", () => {
    // Walks package-lock.json the way Node resolves: workspaces by link, npm packages from the nearest node_modules.
    const lock = readJson<{ packages: Record<string, { version?: string; link?: boolean; resolved?: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }> }> }>(
      path.join(REPO, 'package-lock.json'),
    );
    const resolve = (fromKey: string, name: string): string | undefined => {
      for (let base = fromKey; ; ) {
        const key = `${base ? `${base}/` : ''}node_modules/${name}`;
        if (lock.packages[key]) return lock.packages[key]!.link ? lock.packages[key]!.resolved : key;
        if (!base) return undefined;
        const cut = base.lastIndexOf('/node_modules/');
        base = cut >= 0 ? base.slice(0, cut) : '';
      }
    };
    const seen = new Map<string, string>();
    const todo: Array<[string, string]> = [['edge-agent', '@fleetlm/edge-agent']];
    while (todo.length > 0) {
      const [key, name] = todo.pop()!;
      if (seen.has(key)) continue;
      seen.set(key, name);
      const entry = lock.packages[key];
      expect(entry, `package-lock.json entry ${key}`).toBeDefined();
      // npm installs required peers too; optional ones (models' datasets) only when something else asks.
      const peers = Object.keys(entry!.peerDependencies ?? {}).filter((d) => !entry!.peerDependenciesMeta?.[d]?.optional);
      for (const dep of [...Object.keys({ ...entry!.dependencies, ...entry!.optionalDependencies }), ...peers]) {
        const target = resolve(key, dep);
        if (target) todo.push([target, dep]);
        else expect(entry!.optionalDependencies?.[dep], `${key} needs ${dep}, which package-lock.json lacks`).toBeDefined();
      }
    }
    const names = [...new Set(seen.values())];
    expect(names).toContain('onnxruntime-node');
    expect(names).toContain('mqtt');
    expect(names).not.toContain('aws-crt');
    expect(names.filter((n) => NOT_ON_DEVICE.some((re) => re.test(n)))).toEqual([]);
  });
});
