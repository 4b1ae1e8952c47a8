import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { optionalsWithoutUndefined } from './consumer-types.js';

// The package as its users get it: `npm pack` in a copy of what a fresh clone has (no dist), so the
// prepack build must run, and the published files, not the sources, are what is checked.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);

interface PackageJson {
  exports: Record<string, string | Record<string, string>>;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  files: string[];
}

const dir = mkdtempSync(join(tmpdir(), 'runstate-package-'));
const pkgDir = join(dir, 'runstate');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
let packed: Set<string>;

beforeAll(async () => {
  for (const entry of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'LICENSE', 'README.md']) {
    cpSync(join(ROOT, entry), join(pkgDir, entry));
  }
  // What the package ships, but the build, which the pack must make.
  for (const folder of pkg.files.filter((folder) => folder !== 'dist')) {
    cpSync(join(ROOT, folder), join(pkgDir, folder), { recursive: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json'], { cwd: pkgDir, timeout: 120_000 });
  const [report] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  packed = new Set(report.files.map((file) => file.path));
}, 130_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every target of the exports map for `condition`, without the leading `./`. */
function exportTargets(condition: 'types' | 'default'): string[] {
  return Object.values(pkg.exports)
    .filter((target) => typeof target === 'object')
    .map((target) => target[condition]!.slice(2));
}

/** The modules `entry` imports, directly or not: relative paths from the package, and bare specifiers. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [entry];
  // `import … from '…'`, `export … from '…'`, `import '…'`, `import('…')` (also in d.ts types).
  const specifiers = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g;
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    // Without comments: TSDoc examples import the package by its name.
    const source = readFileSync(join(pkgDir, file), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '');
    for (const [, specifier] of source.matchAll(specifiers)) {
      if (!specifier!.startsWith('.')) {
        const parts = specifier!.split('/');
        packages.add(specifier!.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
        continue;
      }
      let target = join(dirname(file), specifier!);
      if (file.endsWith('.d.ts')) target = target.replace(/\.js$/, '.d.ts');
      pending.push(relative('.', target));
    }
  }
  return { files, packages };
}

describe('npm pack', () => {
  it('builds first (prepack) and ships the build, the licence and the readme', () => {
    expect(packed).toContain('LICENSE');
    expect(packed).toContain('README.md');
    expect(packed).toContain('package.json');
    for (const file of [...exportTargets('types'), ...exportTargets('default'), ...Object.values(pkg.bin)]) {
      expect(packed).toContain(file.replace(/^\.\//, ''));
    }
    expect([...packed].filter((file) => file.startsWith('dist/')).length).toBeGreaterThan(50);
    expect([...packed].filter((file) => /^(test|bench|examples)\/|\.tgz$/.test(file))).toEqual([]);
  });

  it('declares a dependency for every package the published types import', () => {
    const imported = new Set<string>();
    for (const entry of exportTargets('types')) {
      for (const name of importGraph(entry).packages) imported.add(name);
    }
    expect(imported).toContain('express'); // createApp().app is an express app
    for (const name of imported) {
      if (name.startsWith('node:')) continue; // @types/node, which every Node project has
      // Typed by DefinitelyTyped (`@types/express`), or by the package itself.
      const types = `@types/${name.replace(/^@(.*)\//, '$1__')}`;
      const typedBy = existsSync(join(ROOT, 'node_modules', types)) ? types : name;
      expect(pkg.dependencies, `the published types import '${name}'`).toHaveProperty([typedBy]);
    }
  });

  it('keeps express, busboy and cors out of `runstate`: only `runstate/server` loads them', () => {
    const server = ['express', 'busboy', 'cors'];
    const [root, serverEntry] = ['.', './server'].map((name) => {
      const target = pkg.exports[name] as Record<string, string>;
      return importGraph(target.default!.slice(2)).packages;
    });
    expect([...root!].filter((name) => server.includes(name))).toEqual([]);
    expect([...serverEntry!].filter((name) => server.includes(name)).sort()).toEqual(server.sort());
  });
});

describe('a project with exactOptionalPropertyTypes and skipLibCheck: false', () => {
  let program: ts.Program;
  const typesEntries = () => exportTargets('types').map((entry) => join(pkgDir, entry));

  beforeAll(() => {
    const project = join(dir, 'consumer');
    mkdirSync(join(project, 'node_modules/@types'), { recursive: true });
    cpSync(join(ROOT, 'test/consumer/app.ts'), join(project, 'app.ts'));
    // Installed as npm would: runstate (the packed copy, whose node_modules has its dependencies) and @types/node.
    symlinkSync(pkgDir, join(project, 'node_modules/runstate'), 'dir');
    symlinkSync(join(ROOT, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'), 'dir');
    const configFile = join(ROOT, 'test/consumer/tsconfig.consumer.json');
    const { config } = ts.readConfigFile(configFile, (path) => ts.sys.readFile(path)) as { config: unknown };
    const { options, fileNames } = ts.parseJsonConfigFileContent(config, ts.sys, project);
    // The entries nobody imports in app.ts are checked too.
    program = ts.createProgram([...fileNames, ...typesEntries()], options);
  });

  it('type-checks code written as the README shows against the published types', () => {
    const errors = ts.getPreEmitDiagnostics(program).map((diagnostic) => ({
      file: diagnostic.file && relative(dir, diagnostic.file.fileName),
      code: diagnostic.code,
      message: ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'),
    }));
    // xstate's own declarations do not compile under exactOptionalPropertyTypes with skipLibCheck
    // off (TS2344 in its setup.d.ts, xstate 5.33), in any project that imports xstate: not ours.
    const xstate = (error: { file: string | undefined; code: number }) =>
      error.code === 2344 && /node_modules\/xstate\/dist\//.test(error.file ?? '');
    expect(errors.filter((error) => !xstate(error))).toEqual([]);
  }, 60_000);

  it('accepts `undefined` for every optional property a caller writes', () => {
    expect(optionalsWithoutUndefined(program, typesEntries(), join(pkgDir, 'dist/'))).toEqual([]);
  });
});
