/**
 * `npm run bench`: runstate against the raw openai SDK it uses, each client in its own process,
 * all streaming from the fake OpenAI server in another process. Prints a markdown table (figures,
 * ratios to the raw SDK, the budget of issue 6), and with `--json` writes the same as JSON.
 * `--help` lists the options; `--quick` is a smoke run of a few seconds.
 *
 * @packageDocumentation
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { compileForWorkers } from './compile-for-workers.js';
import { BENCH_USAGE, parseBenchArgs, workloadsOf, type BenchCli } from './bench-config.js';
import { loadInspector } from './inspectors.js';
import { buildReport, formatMarkdown, type BenchReport } from './report.js';
import { runScenario, type BenchContext, type ScenarioResult } from './scenarios.js';
import { stopAllWorkers } from './worker-process.js';

/** Why the HTTP client cannot run, or `undefined` when the runstate server exists. */
function httpUnavailable(): string | undefined {
  return existsSync(new URL('../src/server/index.ts', import.meta.url))
    ? undefined
    : 'src/server/index.ts (createApp) does not exist yet';
}

/** Runs the benchmark and returns its report. */
export async function runBench(cli: BenchCli, progress: (message: string) => void): Promise<BenchReport> {
  const started = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  const { config } = cli;
  const inspector = await loadInspector(config.inspector);
  const ctx: BenchContext = {
    config,
    workloads: workloadsOf(config),
    httpUnavailable: httpUnavailable(),
    profileDir: cli.profileDir,
    workerModule: await compileForWorkers(),
    progress,
  };
  const results: ScenarioResult[] = [];
  try {
    for (const scenario of config.scenarios) results.push(await runScenario(ctx, scenario));
  } finally {
    await ctx.shared?.stop();
  }
  return buildReport(results, config, {
    durationS: (performance.now() - started) / 1000,
    loadAtStart,
    quick: cli.quick,
    inspectorLabel: inspector.label,
  });
}

async function main(): Promise<void> {
  const cli = parseBenchArgs(process.argv.slice(2), process.env);
  if (cli === 'help') {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return;
  }
  const started = performance.now();
  const report = await runBench(cli, (message) => {
    const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[bench ${seconds} s] ${message}\n`);
  });
  process.stdout.write(formatMarkdown(report));
  if (cli.jsonFile) {
    mkdirSync(dirname(cli.jsonFile), { recursive: true });
    writeFileSync(cli.jsonFile, `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`[bench] wrote ${cli.jsonFile}\n`);
  }
}

process.once('SIGINT', () => {
  stopAllWorkers();
  process.exit(130);
});
main().then(
  () => stopAllWorkers(),
  (error: unknown) => {
    stopAllWorkers();
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
