import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { FULL_CONFIG, parseBenchArgs, QUICK_CONFIG, SCENARIOS } from '../bench/bench-config.js';
import { buildReport, formatMarkdown, type BenchReport } from '../bench/report.js';

// The benchmark is never part of `npm test`; this smoke run with tiny sizes is, so that it cannot
// rot. Only the shape of what it produces is checked: figures from a smoke run mean nothing, and
// speed is never asserted in a test.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TABLE_HEADER = '| measurement | client | median | range (min–max) | × raw SDK | budget | result |';

describe('npm run bench -- --quick', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runstate-bench-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs every scenario and prints the same rows as a markdown table and as JSON', async () => {
    const jsonFile = join(dir, 'report.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'bench/run.ts', '--quick', '--json-file', jsonFile],
      { cwd: ROOT, timeout: 170_000, maxBuffer: 16 * 2 ** 20 },
    );
    const report = JSON.parse(readFileSync(jsonFile, 'utf8')) as BenchReport;

    expect(report.meta.quick).toBe(true);
    expect(report.meta.node).toBe(process.version);
    expect(Object.keys(report.meta.packages)).toEqual(
      expect.arrayContaining(['runstate', 'openai', 'xstate']),
    );
    expect(new Set(report.rows.map((row) => row.scenario))).toEqual(new Set(SCENARIOS));
    for (const row of report.rows) {
      if (row.samples.length === 0) {
        expect(row.note).toMatch(/^not measured: /);
        continue;
      }
      expect(row.samples).toHaveLength(report.config.reps);
      expect(row.samples.every(Number.isFinite)).toBe(true);
      expect(row.median).toBeGreaterThanOrEqual(row.min!);
      expect(row.median).toBeLessThanOrEqual(row.max!);
      if (row.kind === 'raw' && row.ratio !== null) expect(row.ratio).toBe(1);
      if (row.budget !== null) expect(typeof row.pass).toBe('boolean');
    }
    // Every budget of issue 6 has a row of the library (HTTP only when the server exists).
    const budgeted = report.rows.filter((row) => row.kind === 'library' && row.budget !== null);
    expect(budgeted.map((row) => row.metric).sort()).toEqual(
      ['cancelToUpstreamClosedUs', 'completed', 'cpuPerChunkUs', 'rssPerRunKb', 'wallMs'].sort(),
    );

    const lines = stdout.split('\n');
    const table = lines.filter((line) => line.startsWith('|'));
    expect(table[0]).toBe(TABLE_HEADER);
    expect(table).toHaveLength(report.rows.length + 2);
    for (const line of table) expect(line.split('|')).toHaveLength(9); // 7 cells
    expect(stdout).toContain(`Node ${process.version}`);
    expect(stdout).toMatch(/Budget: \d+ pass, \d+ fail/);
  }, 180_000);
});

describe('the report', () => {
  const config = { ...QUICK_CONFIG, reps: 3, kinds: [...QUICK_CONFIG.kinds] };
  const report = buildReport(
    [
      {
        scenario: 'stream',
        samples: {
          cpuPerChunkUs: { raw: [20, 10, 30], library: [24, 26, 25], 'library+inspect': [40, 50, 60] },
          serverCpuPerChunkUs: { http: [50, 50, 50] },
        },
        skipped: {},
      },
      {
        scenario: 'cancel',
        samples: { cancelToUpstreamClosedUs: { raw: [1000, 1000, 1000], library: [2500, 2500, 2500] } },
        skipped: { http: 'no server' },
      },
    ],
    config,
    { durationS: 61, loadAtStart: 0.5, quick: true, inspectorLabel: 'noop' },
  );
  const row = (metric: string, kind: string) =>
    report.rows.find((r) => r.metric === metric && r.kind === kind);

  it('takes medians and ratios to the raw SDK, and checks the budgets of issue 6', () => {
    expect(row('cpuPerChunkUs', 'raw')).toMatchObject({ median: 20, min: 10, max: 30, ratio: 1 });
    expect(row('cpuPerChunkUs', 'library')).toMatchObject({
      median: 25,
      ratio: 1.25,
      budget: '≤ 1.25×',
      pass: true,
    });
    expect(row('cpuPerChunkUs', 'library+inspect')).toMatchObject({ ratio: 2.5, budget: null, pass: null });
    // The server's CPU is compared with the raw SDK client's.
    expect(row('serverCpuPerChunkUs', 'http')).toMatchObject({ ratio: 2.5, budget: '≤ 2×', pass: false });
    expect(row('cancelToUpstreamClosedUs', 'library')).toMatchObject({ budget: '≤ raw + 1 ms', pass: false });
  });

  it('lists what was not measured, and why', () => {
    expect(row('cancelToUpstreamClosedUs', 'http')).toMatchObject({
      samples: [],
      note: 'not measured: no server',
    });
    expect(formatMarkdown(report)).toContain(
      '| runstate over HTTP (not measured: no server) | not measured |',
    );
    // Both figures of the cancel scenario.
    expect(report.summary).toEqual({ pass: 1, fail: 2, notMeasured: 2 });
  });

  it('reads the command line', () => {
    expect(parseBenchArgs([])).toMatchObject({ config: FULL_CONFIG, quick: false, jsonFile: undefined });
    expect(parseBenchArgs(['--json'], { BENCH_QUICK: '1' })).toMatchObject({
      quick: true,
      jsonFile: 'bench/results/latest.json',
    });
    expect(parseBenchArgs(['--only', 'cancel', '--kinds', 'library', '--reps', '7'])).toMatchObject({
      config: { scenarios: ['cancel'], kinds: ['raw', 'library'], reps: 7 },
    });
    expect(() => parseBenchArgs(['--only', 'nope'])).toThrow(/unknown scenario 'nope'/);
  });
});
