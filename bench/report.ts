import { readFileSync } from 'node:fs';
import { arch, cpus, loadavg, release, totalmem, type } from 'node:os';
import { CLIENT_LABELS, type BenchConfig, type ClientKind, type ScenarioName } from './bench-config.js';
import type { ScenarioResult } from './scenarios.js';

/** A limit from issue 6, on one client's figure, relative to the raw SDK's in the same run. */
export type Budget =
  { type: 'ratio'; max: number } | { type: 'over-raw'; maxUs: number } | { type: 'all-completed' };

interface MetricSpec {
  scenario: ScenarioName;
  metric: string;
  label: (config: BenchConfig) => string;
  unit: 'ms' | 'µs' | 'MB' | 'KB' | 'runs';
  digits: number;
  /** The raw SDK's metric the ratio is taken to; `null`: no ratio. Default: the same metric. */
  reference?: string | null;
  budgets?: Partial<Record<ClientKind, Budget>>;
  /** Which process the figure is taken in, when it is not the client's. */
  where?: Partial<Record<ClientKind, string>>;
}

const thousands = (n: number): string => n.toLocaleString('en-US');

/** Every figure of the table, in order, with the budget that applies to it. */
const METRICS: MetricSpec[] = [
  {
    scenario: 'stream',
    metric: 'cpuPerChunkUs',
    label: (c) => `${thousands(c.stream.chunks)}-chunk stream: CPU per chunk (client process)`,
    unit: 'µs',
    digits: 1,
    budgets: { library: { type: 'ratio', max: 1.25 } },
  },
  {
    scenario: 'stream',
    metric: 'serverCpuPerChunkUs',
    label: (c) => `${thousands(c.stream.chunks)}-chunk stream: CPU per chunk (server process)`,
    unit: 'µs',
    digits: 1,
    reference: 'cpuPerChunkUs',
    budgets: { http: { type: 'ratio', max: 2 } },
  },
  {
    scenario: 'stream',
    metric: 'wallMs',
    label: (c) => `${thousands(c.stream.chunks)}-chunk stream: wall time`,
    unit: 'ms',
    digits: 0,
  },
  {
    scenario: 'cancel',
    metric: 'cancelToUpstreamClosedUs',
    label: () => 'cancel → upstream sees the socket close',
    unit: 'µs',
    digits: 0,
    budgets: { library: { type: 'over-raw', maxUs: 1_000 } },
  },
  {
    scenario: 'cancel',
    metric: 'cancelToTerminalUs',
    label: () => 'cancel → RunCancelled delivered (raw: abort → loop ends)',
    unit: 'µs',
    digits: 0,
  },
  {
    scenario: 'concurrent',
    metric: 'wallMs',
    label: (c) =>
      `${thousands(c.concurrent.runs)} runs × ${c.concurrent.chunks} chunks ${c.concurrent.delayMs} ms apart: wall time`,
    unit: 'ms',
    digits: 0,
    budgets: { library: { type: 'ratio', max: 1.15 } },
  },
  {
    scenario: 'concurrent',
    metric: 'completed',
    label: (c) => `${thousands(c.concurrent.runs)} concurrent runs: completed`,
    unit: 'runs',
    digits: 0,
    reference: null,
  },
  {
    scenario: 'concurrent',
    metric: 'rssPerRunKb',
    label: (c) => `${thousands(c.concurrent.runs)} concurrent runs: RSS per run`,
    unit: 'KB',
    digits: 0,
    budgets: { library: { type: 'ratio', max: 1.25 } },
    where: { http: 'server process' },
  },
  {
    scenario: 'concurrent',
    metric: 'peakRssMb',
    label: (c) => `${thousands(c.concurrent.runs)} concurrent runs: peak RSS`,
    unit: 'MB',
    digits: 0,
    where: { http: 'server process' },
  },
  {
    scenario: 'mass',
    metric: 'completed',
    label: (c) =>
      `${thousands(c.mass.runs)} concurrent runs (${c.mass.chunks} chunks ${c.mass.delayMs} ms apart): completed`,
    unit: 'runs',
    digits: 0,
    reference: null,
    budgets: { raw: { type: 'all-completed' }, library: { type: 'all-completed' } },
  },
  {
    scenario: 'mass',
    metric: 'peakStreaming',
    label: (c) => `${thousands(c.mass.runs)} concurrent runs: streaming at once (peak)`,
    unit: 'runs',
    digits: 0,
    reference: null,
  },
  {
    scenario: 'mass',
    metric: 'rssPerRunKb',
    label: (c) => `${thousands(c.mass.runs)} concurrent runs: RSS per run`,
    unit: 'KB',
    digits: 0,
    where: { http: 'server process' },
  },
  {
    scenario: 'mass',
    metric: 'wallMs',
    label: (c) => `${thousands(c.mass.runs)} concurrent runs: wall time`,
    unit: 'ms',
    digits: 0,
  },
];

/** One figure: a metric of one client, over the repetitions. */
export interface ReportRow {
  scenario: ScenarioName;
  metric: string;
  measurement: string;
  kind: ClientKind;
  client: string;
  unit: MetricSpec['unit'];
  /** One value per repetition, in the order they ran. */
  samples: number[];
  median: number | null;
  min: number | null;
  max: number | null;
  /** The median over the raw SDK's median of the reference metric. */
  ratio: number | null;
  budget: string | null;
  pass: boolean | null;
  /** Why there is no figure, or what it is. */
  note: string | null;
}

/** The benchmark's report: what `--json` writes and the table is printed from. */
export interface BenchReport {
  meta: {
    date: string;
    node: string;
    packages: Record<string, string>;
    platform: string;
    cpus: string;
    memoryGb: number;
    durationS: number;
    /** The 1-minute load average at the start and at the end: other work on the machine skews figures. */
    loadAverage: { start: number; end: number };
    quick: boolean;
    inspector: string;
    method: string;
  };
  config: BenchConfig;
  rows: ReportRow[];
  summary: { pass: number; fail: number; notMeasured: number };
}

export const median = (values: readonly number[]): number | null => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function budgetText(budget: Budget, config: BenchConfig): string {
  switch (budget.type) {
    case 'ratio':
      return `≤ ${budget.max}×`;
    case 'over-raw':
      return `≤ raw + ${budget.maxUs / 1000} ms`;
    case 'all-completed':
      return `all ${thousands(config.mass.runs)}`;
  }
}

function meets(
  budget: Budget,
  row: ReportRow,
  rawMedian: number | null,
  config: BenchConfig,
): boolean | null {
  switch (budget.type) {
    case 'ratio':
      return row.ratio === null ? null : row.ratio <= budget.max;
    case 'over-raw':
      return row.median === null || rawMedian === null ? null : row.median - rawMedian <= budget.maxUs;
    case 'all-completed':
      return row.min === null ? null : row.min === config.mass.runs;
  }
}

function packageVersion(name: string): string {
  try {
    const path = new URL(
      `../${name === 'runstate' ? '' : `node_modules/${name}/`}package.json`,
      import.meta.url,
    );
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Builds the report from the scenarios' samples. */
export function buildReport(
  results: ScenarioResult[],
  config: BenchConfig,
  options: { durationS: number; loadAtStart: number; quick: boolean; inspectorLabel: string },
): BenchReport {
  const rows: ReportRow[] = [];
  for (const spec of METRICS) {
    const result = results.find((r) => r.scenario === spec.scenario);
    if (!result) continue;
    const kinds = config.kinds.filter(
      (kind) => result.samples[spec.metric]?.[kind] || result.skipped[kind] || spec.budgets?.[kind],
    );
    const rawReference = median(result.samples[spec.reference ?? spec.metric]?.raw ?? []);
    for (const kind of kinds) {
      const samples = result.samples[spec.metric]?.[kind] ?? [];
      if (samples.length === 0 && !result.skipped[kind]) continue;
      const value = median(samples);
      const budget = spec.budgets?.[kind];
      const row: ReportRow = {
        scenario: spec.scenario,
        metric: spec.metric,
        measurement: spec.label(config),
        kind,
        client: CLIENT_LABELS[kind],
        unit: spec.unit,
        samples,
        median: value,
        min: samples.length ? Math.min(...samples) : null,
        max: samples.length ? Math.max(...samples) : null,
        ratio:
          spec.reference === null || value === null || rawReference === null || rawReference === 0
            ? null
            : value / rawReference,
        budget: budget ? budgetText(budget, config) : null,
        pass: null,
        note: result.skipped[kind] ? `not measured: ${result.skipped[kind]}` : (spec.where?.[kind] ?? null),
      };
      if (budget && samples.length > 0) row.pass = meets(budget, row, rawReference, config);
      rows.push(row);
    }
  }
  const budgeted = rows.filter((row) => row.budget !== null);
  return {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      packages: Object.fromEntries(
        ['runstate', 'openai', 'xstate', 'tsx'].map((name) => [name, packageVersion(name)]),
      ),
      platform: `${type()} ${release()} ${arch()}`,
      cpus: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown'}`,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      durationS: Math.round(options.durationS),
      loadAverage: { start: options.loadAtStart, end: loadavg()[0] ?? 0 },
      quick: options.quick,
      inspector: options.inspectorLabel,
      method:
        `each client, the fake upstream and the runstate server in processes of their own; ` +
        `${config.reps} repetitions alternating the clients, medians`,
    },
    config,
    rows,
    summary: {
      pass: budgeted.filter((row) => row.pass === true).length,
      fail: budgeted.filter((row) => row.pass === false).length,
      notMeasured: rows.filter((row) => row.samples.length === 0).length,
    },
  };
}

function formatValue(value: number | null, unit: MetricSpec['unit'], digits: number): string {
  if (value === null) return '—';
  const text = value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return unit === 'runs' ? text : `${text} ${unit}`;
}

const digitsOf = (row: ReportRow): number =>
  METRICS.find((spec) => spec.scenario === row.scenario && spec.metric === row.metric)?.digits ?? 1;

/** The report as a markdown table, with the versions and the method above it. */
export function formatMarkdown(report: BenchReport): string {
  const { meta } = report;
  const versions = Object.entries(meta.packages)
    .map(([name, version]) => `${name} ${version}`)
    .join(' · ');
  const minutes = Math.floor(meta.durationS / 60);
  const lines = [
    `Node ${meta.node} · ${versions} · ${meta.platform} · ${meta.cpus} · ${meta.memoryGb} GB`,
    `${meta.date} · ${meta.method} · inspect on: ${meta.inspector} · took ${minutes} min ${meta.durationS % 60} s` +
      ` · load average ${meta.loadAverage.start.toFixed(1)} at the start, ${meta.loadAverage.end.toFixed(1)} at the end` +
      (meta.quick ? ' · QUICK SIZES: smoke run, figures are not meaningful' : ''),
    '',
    '| measurement | client | median | range (min–max) | × raw SDK | budget | result |',
    '|---|---|--:|--:|--:|---|---|',
  ];
  let previous = '';
  for (const row of report.rows) {
    const digits = digitsOf(row);
    const range =
      row.min === null || row.max === null
        ? '—'
        : `${formatValue(row.min, row.unit, digits)} – ${formatValue(row.max, row.unit, digits)}`;
    const result = row.pass === null ? (row.budget ? '—' : '') : row.pass ? 'pass' : '**FAIL**';
    const client = row.note ? `${row.client} (${row.note})` : row.client;
    lines.push(
      `| ${row.measurement === previous ? '' : row.measurement} | ${client} | ` +
        `${row.samples.length ? formatValue(row.median, row.unit, digits) : 'not measured'} | ${range} | ` +
        `${row.ratio === null ? '' : `${row.ratio.toFixed(2)}×`} | ${row.budget ?? ''} | ${result} |`,
    );
    previous = row.measurement;
  }
  const { pass, fail, notMeasured } = report.summary;
  lines.push(
    '',
    `Budget: ${pass} pass, ${fail} fail${notMeasured ? `, ${notMeasured} figures not measured` : ''}.`,
  );
  return `${lines.join('\n')}\n`;
}
