/**
 * `npm run bench`: runstate against the openai SDK called by hand, as a user would compare them.
 * Each client runs in a fresh process of its own for every repetition (warmed up first), the
 * clients take turns in an order that rotates, and every figure is a median; the upstream, a local
 * OpenAI-compatible server, runs in another process. Prints a markdown table with the ratios to the
 * raw SDK measured in the same run; `--json` keeps it, `--compare FILE` prints the change against
 * a kept one. `--help` lists the options; `--quick` is the smoke run of `npm test`.
 *
 * @packageDocumentation
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { compileForWorkers } from './compile-for-workers.js';
import { BenchUsageError, parseBenchArgs, USAGE, workloadsOf } from './config.js';
import { killAll, startProcess } from './processes.js';
import { buildReport, formatComparison, formatMarkdown, readReport } from './report.js';
import { runScenario, stopUnit, type BenchContext, type ScenarioResult } from './scenarios.js';
import { createSharedStorage, type SharedStorage } from './shared-storage.js';

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    // (Not the reports: this run's own, made at its start, is one.)
    const paths = ['src', 'machines', 'bench', ':!bench/results'];
    const dirty = execFileSync('git', ['status', '--porcelain', '--', ...paths], { encoding: 'utf8' });
    return dirty.trim() ? `${head}+changes` : head;
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const cli = parseBenchArgs(process.argv.slice(2), process.env);
  if (cli === 'help') return void process.stdout.write(`${USAGE}\n`);
  // Read first, and the output's place made: a wrong path must not cost the minutes of a run.
  const before = cli.compareFile === undefined ? undefined : readReport(cli.compareFile);
  if (cli.jsonFile) checkWritable(cli.jsonFile);
  if (cli.profileDir) checkDirectory(cli.profileDir);
  const started = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  const progress = (message: string) =>
    process.stderr.write(
      `[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`,
    );
  // `--tsx`: each process runs its TypeScript entry (see `startProcess`).
  const module = cli.config.tsx ? (source: URL) => source : await compileForWorkers();
  const upstream = await startProcess(module(new URL('./upstream-main.ts', import.meta.url)), 'upstream');
  // The database and Redis prefix of the http-pg client's instances, dropped at the end.
  const storage = cli.config.kinds.includes('http-pg')
    ? await createSharedStorage().catch(async (error: unknown) => {
        await upstream.stop();
        throw error;
      })
    : undefined;
  interrupted.storage = storage;
  if (storage) progress(`http-pg database ${storage.database}`);
  const ctx: BenchContext = {
    config: cli.config,
    workloads: workloadsOf(cli.config),
    upstream,
    module,
    profileDir: cli.profileDir,
    progress,
    shared: new Map(),
    storage: storage?.options,
  };
  const results: ScenarioResult[] = [];
  try {
    for (const scenario of cli.config.scenarios) results.push(await runScenario(ctx, scenario));
  } finally {
    for (const unit of ctx.shared.values()) await stopUnit(unit);
    await upstream.stop();
    await storage?.drop();
  }
  const report = buildReport(results, cli.config, {
    commit: commit(),
    loadAtStart,
    durationS: (performance.now() - started) / 1000,
    quick: cli.quick,
  });
  process.stdout.write(formatMarkdown(report));
  if (before) process.stdout.write(formatComparison(before, report));
  if (cli.jsonFile) {
    writeFileSync(cli.jsonFile, `${JSON.stringify(report, null, 2)}\n`);
    progress(`wrote ${cli.jsonFile}`);
  }
}

/**
 * Makes `file`'s directory and checks that the file can be written, or says in one line why not.
 * A new file is not left behind: an empty one, after a run that failed, is no report to compare to.
 */
function checkWritable(file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    const isNew = !existsSync(file);
    writeFileSync(file, '', { flag: 'a' });
    if (isNew) rmSync(file);
  } catch (error) {
    throw new BenchUsageError(`--json-file ${file} cannot be written: ${(error as Error).message}`);
  }
}

/** Makes the `--cpu-prof` directory, or says in one line why it cannot. */
function checkDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new BenchUsageError(`--cpu-prof ${dir} cannot be made: ${(error as Error).message}`);
  }
}

/** What a Ctrl-C, a SIGTERM or a closed terminal leaves to clean up: the http-pg client's database. */
const interrupted: { storage?: SharedStorage | undefined } = {};
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  process.once(signal, () => {
    killAll();
    // The killed processes held its connections; the drop forces them closed anyway.
    void Promise.resolve(interrupted.storage?.drop())
      .catch((error: unknown) =>
        process.stderr.write(`bench: could not drop its database: ${String(error)}\n`),
      )
      .finally(() => process.exit(code));
  });
}
// A reader that went away (`| head`: EPIPE) ends nobody's run: the bench goes on to its end (and its
// `--json-file`), and cleans up after it, where an unhandled write error would have ended it at once.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
main().then(killAll, (error: unknown) => {
  killAll();
  if (error instanceof BenchUsageError) {
    process.stderr.write(`npm run bench: ${error.message} (--help lists the options)\n`);
    process.exitCode = 2;
    return;
  }
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
