import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The worker processes run plain JavaScript: through tsx, a process needs about 1.3 s more to start
 * (its loader hooks see every module of openai and xstate), and the benchmark starts dozens of
 * processes. So the parent transpiles `src/`, `machines/` and `bench/` once, file by file with the
 * TypeScript compiler (no type check: `tsc --noEmit` does that), into
 * `node_modules/.cache/runstate-bench-<hash of the checkout's path>/`, keeping the layout: the relative `.js` imports resolve as
 * they are, `node_modules` is found by walking up, and CPU profiles still name `src/...` files.
 * Only files changed since the last run are transpiled again.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const FOLDERS = ['src', 'machines', 'bench'];

/** Where the transpiled tree goes; one per checkout (a copy of the repository may share `node_modules`). */
export const WORKER_BUILD_DIR = join(
  ROOT,
  'node_modules',
  '.cache',
  `runstate-bench-${createHash('sha256').update(ROOT).digest('hex').slice(0, 8)}`,
);

function* typeScriptFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* typeScriptFiles(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

const isStale = (source: string, output: string): boolean =>
  !existsSync(output) || statSync(output).mtimeMs < statSync(source).mtimeMs;

/** Transpiles the sources into {@link WORKER_BUILD_DIR} and returns the URL of a module's output. */
export async function compileForWorkers(): Promise<(sourceUrl: URL) => URL> {
  const outputOf = (source: string): string =>
    join(WORKER_BUILD_DIR, relative(ROOT, source)).replace(/\.ts$/, '.js');
  const stale = FOLDERS.flatMap((folder) => [...typeScriptFiles(join(ROOT, folder))]).filter((source) =>
    isStale(source, outputOf(source)),
  );
  if (stale.length > 0) {
    // Loaded only when needed: the compiler takes most of a second to load.
    const { default: ts } = await import('typescript');
    const compilerOptions = {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true,
    };
    for (const source of stale) {
      const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), {
        compilerOptions,
        fileName: source,
      });
      const output = outputOf(source);
      mkdirSync(dirname(output), { recursive: true });
      // Written aside then renamed: another benchmark run may be loading the same file right now.
      const temporary = `${output}.${process.pid}.tmp`;
      writeFileSync(temporary, outputText);
      renameSync(temporary, output);
    }
  }
  mkdirSync(WORKER_BUILD_DIR, { recursive: true });
  // The package's name, version and exports, as the published package has them: the code refers to
  // itself by name (`runstate/package.json`, for its version), which resolves within this tree.
  const { name, version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  writeFileSync(
    join(WORKER_BUILD_DIR, 'package.json'),
    `${JSON.stringify({ name, version, type: 'module', exports: { './package.json': './package.json' } }, null, 2)}\n`,
  );
  return (sourceUrl) => new URL(`file://${outputOf(fileURLToPath(sourceUrl))}`);
}
