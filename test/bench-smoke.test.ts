import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BenchUsageError,
  FULL_CONFIG,
  KINDS,
  parseBenchArgs,
  QUICK_CONFIG,
  SCENARIOS,
} from '../bench/config.js';
import {
  buildReport,
  formatComparison,
  formatMarkdown,
  readReport,
  type BenchReport,
} from '../bench/report.js';
import type { ScenarioResult } from '../bench/scenarios.js';
import { spawnCli } from './support/cli-process.js';
import { POSTGRES_URL } from './support/databases.js';

// `npm run bench` is never part of `npm test`; this smoke run with tiny sizes is, so that it cannot
// rot. Only the shape of what it produces is checked: figures of a smoke run mean nothing, and
// speed is never asserted in a test.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const meta = { commit: 'abc', loadAtStart: 0.5, durationS: 61, quick: true };
/** What a burst and a cancel scenario might have measured. */
const synthetic = (cpu: number[], closed: number[]): ScenarioResult[] => [
  {
    scenario: 'burst' as const,
    samples: { cpuPerChunkUs: { raw: [20, 10, 30], library: cpu, http: [25, 25] } },
    notes: {},
  },
  {
    scenario: 'cancel' as const,
    samples: { toClosedUs: { raw: [1000], library: closed } },
    notes: { http: 'why not' },
  },
];

describe('npm run bench, interrupted', () => {
  const bench: [string, ...string[]] = [process.execPath, '--import', 'tsx', 'bench/run.ts'];
  async function expectDropped(database: string): Promise<void> {
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      expect(rows).toEqual([]);
    } finally {
      await client.end();
    }
  }

  it('drops the http-pg database on Ctrl-C, on SIGTERM and on a closed terminal (SIGHUP), and exits as the signal says', async () => {
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ] as const) {
      const run = spawnCli(['--quick', '--kinds', 'raw,http-pg'], {}, bench);
      const database = (await run.waitFor(/http-pg database (\w+)/, 'stderr'))[1]!;
      run.child.kill(signal);
      expect(await run.exit, signal).toBe(code);
      await expectDropped(database);
    }
  });

  it('runs to its end, and drops its database, when the reader of its output goes away (| head)', async () => {
    const run = spawnCli(['--quick', '--only', 'cancel', '--kinds', 'raw,http-pg'], {}, bench);
    const database = (await run.waitFor(/http-pg database (\w+)/, 'stderr'))[1]!;
    run.child.stderr.destroy();
    run.child.stdout.destroy();
    expect(await run.exit).toBe(0);
    await expectDropped(database);
  });
});

describe('npm run bench, before it measures', () => {
  const bench: [string, ...string[]] = [process.execPath, '--import', 'tsx', 'bench/run.ts'];

  it('refuses, in one line, a --json-file it cannot write, and an http-pg client whose Redis or PostgreSQL is not there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runstate-bench-usage-'));
    try {
      const file = join(dir, 'a-file');
      writeFileSync(file, '');
      for (const [args, env, shown] of [
        [
          ['--quick', '--only', 'cancel', '--kinds', 'raw', '--json-file', join(file, 'out.json')],
          {},
          /^npm run bench: --json-file .*a-file\/out\.json cannot be written: EEXIST/,
        ],
        // Port 1: nothing listens there.
        [
          ['--quick', '--only', 'cancel', '--kinds', 'http-pg'],
          { BENCH_REDIS_URL: 'redis://127.0.0.1:1' },
          /^npm run bench: the http-pg client needs Redis at 127\.0\.0\.1:1 \(BENCH_REDIS_URL\), or leave it out with --kinds: /,
        ],
        [
          ['--quick', '--only', 'cancel', '--kinds', 'http-pg'],
          { BENCH_POSTGRES_URL: 'postgres://postgres@127.0.0.1:1/postgres' },
          /^npm run bench: the http-pg client needs PostgreSQL at 127\.0\.0\.1:1 \(BENCH_POSTGRES_URL\), or leave it out with --kinds: /,
        ],
      ] as const) {
        const run = spawnCli([...args], env, bench);
        expect(await run.exit).toBe(2);
        const { stdout, stderr } = run.output();
        expect(stdout).toBe('');
        expect(stderr.split('\n').filter(Boolean)).toHaveLength(1);
        expect(stderr).toMatch(shown);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('npm run bench:inspector', () => {
  it('refuses an option that is not a whole number ≥ 1, naming it, before measuring anything', async () => {
    for (const [args, shown] of [
      [['--runs', '0'], "--runs must be a positive whole number, got '0'"],
      [['--chunks', 'abc'], "--chunks must be a positive whole number, got 'abc'"],
    ] as const) {
      const run = spawnCli([...args], {}, [process.execPath, '--import', 'tsx', 'scripts/inspector-cost.ts']);
      expect(await run.exit).toBe(2);
      expect(run.output()).toEqual({ stdout: '', stderr: `inspector-cost: ${shown}\n` });
    }
  });
});

describe('npm run bench -- --quick', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runstate-bench-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('measures every scenario with every client, and prints the rows of its JSON report as a table', async () => {
    const jsonFile = join(dir, 'report.json');
    const earlier = join(dir, 'earlier.json');
    writeFileSync(earlier, JSON.stringify(buildReport(synthetic([14, 16, 18], [1600]), QUICK_CONFIG, meta)));
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'bench/run.ts', '--quick', '--json-file', jsonFile, '--compare', earlier],
      {
        cwd: ROOT,
        timeout: 60_000,
        // Flags with a space between them: each process gets both (an empty or joined one would not start).
        env: {
          ...process.env,
          BENCH_TURNS: '1',
          BENCH_THREADS: '1',
          BENCH_NODE_FLAGS: ' --single-threaded-gc  --stack-size=984',
        },
      },
    );
    const report = JSON.parse(readFileSync(jsonFile, 'utf8')) as BenchReport;

    expect(report.meta).toMatchObject({ quick: true, node: process.version });
    expect(new Set(report.rows.map((row) => row.scenario))).toEqual(new Set(SCENARIOS));
    expect(new Set(report.rows.map((row) => row.kind))).toEqual(new Set(KINDS));
    for (const row of report.rows) {
      expect(row.samples).toHaveLength(report.config.reps[row.scenario]);
      expect(row.samples.every(Number.isFinite)).toBe(true);
      if (row.kind === 'raw' && row.ratio !== null) expect(row.ratio).toBe(1);
    }
    // Every run of the smoke run completed.
    expect(report.rows.filter((row) => row.metric === 'failed').map((row) => row.median)).toEqual(
      Array(2 * KINDS.length).fill(0),
    );
    const table = stdout.split('\n').filter((line) => line.startsWith('| '));
    const goalRows = report.rows.filter((row) => row.goal !== null).length;
    expect(table.filter((line) => / \| (met|missed) \|$/.test(line))).toHaveLength(goalRows);
    expect(stdout).toContain(`Node ${process.version}`);
    expect(stdout).toMatch(/Goals: \d+ met, \d+ missed, 0 not measured/);
    expect(stdout).toMatch(/\| measurement \| client \| before \| now \| change \|/);
    expect(stdout).toMatch(/\| runstate library \| 16 µs \| [\d.,]+ µs \| [+-][\d.]+ % \|/);
    expect(stdout).toContain(`ms apart, after ${QUICK_CONFIG.paced.warmupRuns} warm-up runs)`);
    // Linux counts every process's read and write system calls: chunks per socket read and write.
    if (process.platform === 'linux') {
      expect(report.rows.filter((row) => row.metric === 'chunksPerRead' && row.median! > 0)).toHaveLength(
        KINDS.length,
      );
      // Writes carry chunks only for a server (its SSE frames): a client writes its requests.
      const writes = report.rows.filter((row) => row.metric === 'chunksPerWrite');
      expect(writes.map((row) => row.kind).sort()).toEqual(
        KINDS.filter((kind) => kind.startsWith('http')).sort(),
      );
      expect(writes.every((row) => row.median! > 0)).toBe(true);
      expect(stdout).toContain('| paced: chunks per read system call ¹ ³ |');
      // And the CPU of each thread: what the threads besides the main one took (nothing, maybe, in a
      // batch this small) is part of the whole.
      const threads = report.rows.filter((row) => row.metric === 'otherThreadsCpuPerChunkUs');
      expect(threads.filter((row) => row.median! >= 0)).toHaveLength(KINDS.length);
      for (const row of threads) {
        const whole = report.rows.find(
          (r) => r.scenario === 'paced' && r.metric === 'cpuPerChunkUs' && r.kind === row.kind,
        )!;
        expect(row.median!).toBeLessThan(whole.median!);
      }
      expect(stdout).toContain('⁴ measured by Linux per thread');
      // BENCH_THREADS=1: every measured process prints its threads' CPU, and marks its window on stdout.
      for (const who of ['raw', 'library', 'server'])
        expect(stderr).toMatch(new RegExp(`^threads ${who}: main \\d+( \\d+ \\d+)+ \\(ms\\)$`, 'm'));
      const starts = stdout.match(/^meter start \d+$/gm) ?? [];
      expect(starts.length).toBeGreaterThan(0);
      expect((stdout.match(/^meter stop \d+$/gm) ?? []).map((line) => line.replace('stop', 'start'))).toEqual(
        starts,
      );
    }
    // Nothing failed on the way, in any process (a listener that threw on every run did once).
    expect(stderr).not.toMatch(/Error|threw|failed/);
    // BENCH_TURNS=1: every measured process says which of its turns were long.
    for (const who of ['raw', 'library', 'server'])
      expect(stderr).toMatch(new RegExp(`^turns ${who}: (none over 100 ms|(\\d+\\+\\d+\\/\\d+ ?)+)$`, 'm'));
  }, 70_000);
});

describe('the report', () => {
  const config = { ...QUICK_CONFIG, kinds: [...KINDS] };
  const report = buildReport(synthetic([14, 16, 18], [1600]), config, meta);
  const row = (metric: string, kind: string) =>
    report.rows.find((r) => r.metric === metric && r.kind === kind);

  it('takes medians and ratios to the raw SDK of the same run, and checks the goals of issue 12', () => {
    expect(row('cpuPerChunkUs', 'raw')).toMatchObject({ median: 20, min: 10, max: 30, ratio: 1 });
    expect(row('cpuPerChunkUs', 'library')).toMatchObject({
      median: 16,
      ratio: 0.8,
      goal: '≤ 0.80×',
      met: true,
    });
    expect(row('cpuPerChunkUs', 'http')).toMatchObject({ ratio: 1.25, goal: '≤ 1.25×', met: true });
    expect(row('cpuPerChunkUs', 'lean')).toMatchObject({ samples: [], median: null, ratio: null });
    expect(row('toClosedUs', 'library')).toMatchObject({ goal: '≤ raw + 500 µs', met: false });
    expect(row('toClosedUs', 'http')?.client).toBe('runstate over HTTP (why not)');
    expect(report.summary).toEqual({ met: 2, missed: 1, notMeasured: 0 });
    expect(formatMarkdown(report)).toContain(
      '| runstate library | 16 µs | 14 µs – 18 µs | 0.80× | ≤ 0.80× | met |',
    );
  });

  it('prints the system-call rows only where they were counted', () => {
    const paced = (samples: ScenarioResult['samples']): ScenarioResult[] => [
      { scenario: 'paced', samples: { cpuPerChunkUs: { raw: [20] }, ...samples }, notes: {} },
    ];
    const without = buildReport(paced({}), config, meta);
    expect(without.rows.filter((r) => r.metric === 'chunksPerRead')).toEqual([]);
    expect(formatMarkdown(without)).not.toContain('/proc/self/io');
    const counted = buildReport(paced({ chunksPerRead: { raw: [12.5], http: [5] } }), config, meta);
    expect(counted.rows.find((r) => r.metric === 'chunksPerRead' && r.kind === 'http')).toMatchObject({
      median: 5,
      ratio: null,
    });
    expect(formatMarkdown(counted)).toContain(
      '| paced: chunks per read system call ¹ ³ | raw openai SDK | 12.5 |',
    );
    expect(formatMarkdown(counted)).toContain('³ counted by Linux (/proc/self/io)');
    expect(formatMarkdown(without)).not.toContain('other threads');
    const threads = buildReport(paced({ otherThreadsCpuPerChunkUs: { raw: [8], http: [6] } }), config, meta);
    expect(formatMarkdown(threads)).toContain(
      '| paced: of which on other threads than the main one ¹ ⁴ | raw openai SDK | 8 µs |',
    );
    expect(formatMarkdown(threads)).toContain('⁴ measured by Linux per thread');
  });

  it('says when the processes ran the TypeScript sources through tsx', () => {
    expect(formatMarkdown(report)).not.toContain('through tsx');
    const throughTsx = buildReport(synthetic([14, 16, 18], [1600]), { ...config, tsx: true }, meta);
    expect(formatMarkdown(throughTsx)).toContain(' · the TypeScript sources run through tsx\n');
  });

  it('says how the HTTP clients posted their runs, when there were HTTP clients', () => {
    expect(formatMarkdown(report)).toContain(' · HTTP runs posted as multipart/form-data');
    const json = buildReport(synthetic([14, 16, 18], [1600]), { ...config, httpBody: 'json' }, meta);
    expect(formatMarkdown(json)).toContain(' · HTTP runs posted as JSON');
    const libraryOnly = buildReport(
      synthetic([14, 16, 18], [1600]),
      { ...config, kinds: ['raw', 'library'] },
      meta,
    );
    expect(formatMarkdown(libraryOnly)).not.toContain('HTTP runs posted');
  });

  it('says when the earlier report posted its HTTP runs otherwise (before --http-body: JSON)', () => {
    const { httpBody: _, ...withoutBody } = config;
    const older = buildReport(synthetic([14, 16, 18], [1600]), withoutBody as typeof config, meta);
    expect(formatComparison(older, report)).toContain(
      ', whose HTTP runs were posted as JSON, not multipart/form-data:',
    );
    expect(formatComparison(report, report)).not.toContain('posted as');
  });

  it('names the sizes that differ from the earlier report, whose figures are then not comparable', () => {
    expect(formatComparison(report, report)).not.toContain('NOT COMPARABLE');
    const full = buildReport(synthetic([14, 16, 18], [1600]), config, { ...meta, quick: false });
    const bigger = {
      ...config,
      burst: { ...config.burst, chunks: 10_000 },
      reps: { ...config.reps, cancel: 9 },
    };
    const text = formatComparison(full, buildReport(synthetic([14, 16, 18], [1600]), bigger, meta));
    expect(text).toContain('NOT COMPARABLE: the earlier run had other sizes (--quick off → on, ');
    expect(text).toContain(`burst chunks ${config.burst.chunks} → 10000`);
    expect(text).toContain(`cancel reps ${config.reps.cancel} → 9`);
    // How the processes ran and connected, too; and the header says it.
    const connected = { ...config, tsx: true, connectInBatch: true };
    const other = buildReport(synthetic([14, 16, 18], [1600]), connected, meta);
    expect(formatComparison(report, other)).toContain(
      'NOT COMPARABLE: the earlier run had other sizes (--tsx off → on, --http-connect-in-batch off → on).',
    );
    expect(formatMarkdown(other)).toContain(
      ' · the TypeScript sources run through tsx · HTTP clients connect within the paced batch\n',
    );
    // A report from before --http-connect-in-batch existed: how its HTTP clients connected is unknown.
    const { connectInBatch: _unrecorded, ...olderConfig } = config;
    const unrecorded = buildReport(synthetic([14, 16, 18], [1600]), olderConfig as typeof config, meta);
    expect(formatComparison(unrecorded, report)).toContain(
      'NOT COMPARABLE: the earlier run had other sizes (--http-connect-in-batch not recorded → off).',
    );
  });

  it('reads an earlier report, or says why it cannot, before anything is measured', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runstate-bench-compare-'));
    try {
      const file = join(dir, 'report.json');
      writeFileSync(file, JSON.stringify(report));
      expect(readReport(file)).toEqual(report);
      writeFileSync(file, '{"name":"runstate"}');
      expect(() => readReport(file)).toThrow(
        new BenchUsageError(`--compare ${file}: not a report written by npm run bench -- --json`),
      );
      writeFileSync(file, '{');
      expect(() => readReport(file)).toThrow(BenchUsageError);
      expect(() => readReport(join(dir, 'none.json'))).toThrow(/: no such file$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints the change of each figure against an earlier report', () => {
    const later = buildReport(synthetic([10, 12, 12], [1200]), config, meta);
    const text = formatComparison(report, later);
    expect(text).toContain('| runstate library | 16 µs | 12 µs | -25.0 % | 0.80× | 0.60× |');
    expect(text).toContain('| runstate library | 1,600 µs | 1,200 µs | -25.0 % | 1.60× | 1.20× |');
  });

  it('reads the command line', () => {
    expect(parseBenchArgs([])).toMatchObject({ config: FULL_CONFIG, quick: false, jsonFile: undefined });
    expect(parseBenchArgs(['--json', '--compare', 'old.json'], { BENCH_QUICK: '1' })).toMatchObject({
      quick: true,
      jsonFile: 'bench/results/latest.json',
      compareFile: 'old.json',
    });
    expect(parseBenchArgs(['--only', 'cancel', '--kinds', 'library', '--reps', '7'])).toMatchObject({
      config: { scenarios: ['cancel'], kinds: ['raw', 'library'], reps: { burst: 7, cancel: 7 } },
    });
    expect(() => parseBenchArgs(['--only', 'nope'])).toThrow(/unknown scenario 'nope'/);
    // Usage errors, which the bench prints without a stack.
    expect(() => parseBenchArgs(['--bogus'])).toThrow(BenchUsageError);
    expect(() => parseBenchArgs(['--bogus'])).toThrow(/Unknown option '--bogus'/);
    expect(() => parseBenchArgs(['--reps', 'abc'])).toThrow(BenchUsageError);
    expect(parseBenchArgs(['--http-connect-in-batch'])).toMatchObject({ config: { connectInBatch: true } });
    expect(parseBenchArgs(['--tsx'])).toMatchObject({ config: { tsx: true } });
    expect(parseBenchArgs([])).toMatchObject({ config: { httpBody: 'multipart' } });
    expect(parseBenchArgs(['--http-body', 'json'])).toMatchObject({ config: { httpBody: 'json' } });
    expect(() => parseBenchArgs(['--http-body', 'xml'])).toThrow(/unknown --http-body 'xml'/);
    expect(parseBenchArgs(['--chunks', '10'])).toMatchObject({
      config: { paced: { chunks: 10, runs: 1_000 } },
    });
    expect(() => parseBenchArgs(['--chunks', '0'])).toThrow(/--chunks must be a positive whole number/);
    expect(parseBenchArgs(['--warmup-runs', '1000'])).toMatchObject({
      config: { paced: { warmupRuns: 1_000, runs: 1_000 } },
    });
    expect(() => parseBenchArgs(['--warmup-runs', 'x'])).toThrow(
      /--warmup-runs must be a positive whole number/,
    );
  });
});
