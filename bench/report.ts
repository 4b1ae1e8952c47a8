import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import { BenchUsageError, KIND_LABELS, KINDS, type BenchConfig, type Kind, type Scenario } from './config.js';
import type { RunBodyEncoding } from './run-body.js';
import { median, type ScenarioResult } from './scenarios.js';

/** A goal of issue 12, on the library's (or the server's) figure against the raw SDK's in the same run. */
export type Goal = { ratio: number } | { overRawUs: number } | 'none';

interface Metric {
  scenario: Scenario;
  metric: string;
  label: (config: BenchConfig) => string;
  unit: string;
  digits: number;
  /** No ratio to the raw SDK (counts). */
  noRatio?: boolean;
  /** Measured only where the system can (no row when no client has it). */
  optional?: boolean;
  goals?: Partial<Record<Kind, Goal>>;
}

const n = (value: number): string => value.toLocaleString('en-US');
const HTTP_BODY_LABELS: Record<RunBodyEncoding, string> = {
  multipart: 'multipart/form-data',
  urlencoded: 'application/x-www-form-urlencoded',
  json: 'JSON',
};
/** Whether an HTTP client ran, whose report says how it posted its runs. */
const postedOverHttp = (config: BenchConfig): boolean => config.kinds.some((kind) => kind.startsWith('http'));
const paced = ({ paced: p }: BenchConfig) =>
  `${n(p.runs)} runs × ${p.chunks} chunks ${p.delayMs} ms apart, after ${n(p.warmupRuns)} warm-up runs`;
const mass = ({ mass: m }: BenchConfig) => `${n(m.runs)} runs × ${m.chunks} chunks ${m.delayMs} ms apart`;

/** Every figure of the table, in order, with the goals of issue 12. */
const METRICS: Metric[] = [
  {
    scenario: 'burst',
    metric: 'cpuPerChunkUs',
    label: (c) => `burst (${n(c.burst.chunks)} chunks at once): CPU per chunk ¹`,
    unit: 'µs',
    digits: 2,
    goals: { library: { ratio: 0.8 }, http: { ratio: 1.25 } },
  },
  {
    scenario: 'burst',
    metric: 'systemCpuPerChunkUs',
    label: () => 'burst: of which in the kernel ¹',
    unit: 'µs',
    digits: 2,
  },
  { scenario: 'burst', metric: 'wallMs', label: () => 'burst: wall time', unit: 'ms', digits: 0 },
  {
    scenario: 'burst',
    metric: 'contentEvents',
    label: () => 'burst: content events read',
    unit: '',
    digits: 0,
    noRatio: true,
  },
  {
    scenario: 'paced',
    metric: 'cpuPerChunkUs',
    label: (c) => `paced (${paced(c)}): CPU per chunk ¹`,
    unit: 'µs',
    digits: 2,
    goals: { library: { ratio: 1 }, http: { ratio: 1.25 } },
  },
  {
    scenario: 'paced',
    metric: 'systemCpuPerChunkUs',
    label: () => 'paced: of which in the kernel ¹',
    unit: 'µs',
    digits: 2,
  },
  {
    scenario: 'paced',
    metric: 'otherThreadsCpuPerChunkUs',
    label: () => 'paced: of which on other threads than the main one ¹ ⁴',
    unit: 'µs',
    digits: 2,
    optional: true,
  },
  {
    scenario: 'paced',
    metric: 'wallMs',
    label: () => 'paced: wall time',
    unit: 'ms',
    digits: 0,
    goals: { library: { ratio: 1.1 } },
  },
  {
    scenario: 'paced',
    metric: 'rssPerRunKb',
    label: () => 'paced: RSS per run ¹',
    unit: 'KB',
    digits: 0,
    goals: { library: { ratio: 1 } },
  },
  {
    scenario: 'paced',
    metric: 'loopDelayP99Ms',
    label: () => 'paced: event-loop delay p99 ¹',
    unit: 'ms',
    digits: 1,
    goals: { library: { ratio: 1 } },
  },
  {
    scenario: 'paced',
    metric: 'loopDelaySamples',
    label: () => 'paced: turns of the event loop that p99 is of',
    unit: '',
    digits: 0,
    noRatio: true,
  },
  {
    scenario: 'paced',
    metric: 'chunksPerRead',
    label: () => 'paced: chunks per read system call ¹ ³',
    unit: '',
    digits: 1,
    noRatio: true,
    optional: true,
  },
  {
    scenario: 'paced',
    metric: 'chunksPerWrite',
    label: () => 'paced: chunks per write system call ¹ ³',
    unit: '',
    digits: 1,
    noRatio: true,
    optional: true,
  },
  {
    scenario: 'paced',
    metric: 'failed',
    label: () => 'paced: runs not completed',
    unit: '',
    digits: 0,
    noRatio: true,
  },
  {
    scenario: 'cancel',
    metric: 'toClosedUs',
    label: () => 'cancel → upstream sees the socket close',
    unit: 'µs',
    digits: 0,
    goals: { library: { overRawUs: 500 } },
  },
  {
    scenario: 'cancel',
    metric: 'toTerminalUs',
    label: () => 'cancel → the consumer’s loop ends',
    unit: 'µs',
    digits: 0,
  },
  {
    scenario: 'mass',
    metric: 'failed',
    label: (c) => `mass (${mass(c)}): runs not completed`,
    unit: '',
    digits: 0,
    noRatio: true,
    goals: { library: 'none', http: 'none' },
  },
  {
    scenario: 'mass',
    metric: 'peakStreaming',
    label: () => 'mass: streaming at once (peak)',
    unit: '',
    digits: 0,
    noRatio: true,
  },
  { scenario: 'mass', metric: 'wallMs', label: () => 'mass: wall time', unit: 'ms', digits: 0 },
  { scenario: 'mass', metric: 'rssPerRunKb', label: () => 'mass: RSS per run ¹', unit: 'KB', digits: 0 },
  { scenario: 'mass', metric: 'cpuPerChunkUs', label: () => 'mass: CPU per chunk ¹', unit: 'µs', digits: 2 },
];

/** One figure of one client. */
export interface Row {
  scenario: Scenario;
  metric: string;
  kind: Kind;
  label: string;
  client: string;
  unit: string;
  digits: number;
  samples: number[];
  median: number | null;
  min: number | null;
  max: number | null;
  /** Median ÷ the raw SDK's median. */
  ratio: number | null;
  goal: string | null;
  met: boolean | null;
}

export interface BenchReport {
  meta: {
    date: string;
    commit: string;
    node: string;
    packages: Record<string, string>;
    machine: string;
    loadAtStart: number;
    loadAtEnd: number;
    durationS: number;
    quick: boolean;
  };
  config: BenchConfig;
  rows: Row[];
  summary: { met: number; missed: number; notMeasured: number };
}

function goalText(goal: Goal): string {
  if (goal === 'none') return 'none';
  return 'ratio' in goal ? `≤ ${goal.ratio.toFixed(2)}×` : `≤ raw + ${goal.overRawUs} µs`;
}

function isMet(goal: Goal, value: number, raw: number | null): boolean | null {
  if (goal === 'none') return value === 0;
  if (raw === null) return null;
  return 'ratio' in goal ? value <= raw * goal.ratio : value - raw <= goal.overRawUs;
}

const version = (name: string): string => {
  try {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
};

/** The rows of the table, from what the scenarios measured. */
export function buildReport(
  results: readonly ScenarioResult[],
  config: BenchConfig,
  meta: Pick<BenchReport['meta'], 'commit' | 'loadAtStart' | 'durationS' | 'quick'>,
): BenchReport {
  const rows: Row[] = [];
  for (const result of results) {
    for (const spec of METRICS.filter((m) => m.scenario === result.scenario)) {
      const byKind = result.samples[spec.metric] ?? {};
      if (spec.optional && !Object.values(byKind).some((samples) => samples?.length)) continue;
      const rawMedian = byKind.raw?.length ? median(byKind.raw) : null;
      for (const kind of KINDS.filter((k) => config.kinds.includes(k))) {
        const samples = byKind[kind] ?? [];
        // A figure only some clients have (a server's writes) has no row for the others.
        if (spec.optional && samples.length === 0) continue;
        const value = samples.length ? median(samples) : null;
        const goal = spec.goals?.[kind];
        const note = result.notes[kind];
        rows.push({
          scenario: spec.scenario,
          metric: spec.metric,
          kind,
          label: spec.label(config),
          client: note ? `${KIND_LABELS[kind]} (${note})` : KIND_LABELS[kind],
          unit: spec.unit,
          digits: spec.digits,
          samples,
          median: value,
          min: samples.length ? Math.min(...samples) : null,
          max: samples.length ? Math.max(...samples) : null,
          ratio: !spec.noRatio && value !== null && rawMedian ? value / rawMedian : null,
          goal: goal ? goalText(goal) : null,
          met: goal && value !== null ? isMet(goal, value, rawMedian) : null,
        });
      }
    }
  }
  const goals = rows.filter((row) => row.goal !== null);
  return {
    meta: {
      ...meta,
      date: new Date().toISOString(),
      node: process.version,
      packages: Object.fromEntries(
        ['openai', 'xstate', 'eventsource-parser'].map((name) => [name, version(name)]),
      ),
      machine: `${type()} ${release()}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GB`,
      loadAtEnd: loadavg()[0] ?? 0,
    },
    config,
    rows,
    summary: {
      met: goals.filter((row) => row.met === true).length,
      missed: goals.filter((row) => row.met === false).length,
      notMeasured: goals.filter((row) => row.met === null).length,
    },
  };
}

const figure = (row: Row, value: number | null): string =>
  value === null ? '—' : `${n(Number(value.toFixed(row.digits)))}${row.unit ? ` ${row.unit}` : ''}`;
const ratio = (value: number | null): string => (value === null ? '' : `${value.toFixed(2)}×`);

function table(header: string[], lines: string[][]): string {
  const out = [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`);
  return `${out.join('\n')}\n`;
}

/** The report as markdown: a header, the table, the goals met. */
export function formatMarkdown(report: BenchReport): string {
  const { meta } = report;
  const packages = Object.entries(meta.packages)
    .map(([name, v]) => `${name} ${v}`)
    .join(' · ');
  const lines = report.rows.map((row, i) => [
    i > 0 && report.rows[i - 1]!.label === row.label ? '' : row.label,
    row.client,
    figure(row, row.median),
    row.samples.length > 1 ? `${figure(row, row.min)} – ${figure(row, row.max)}` : '',
    ratio(row.ratio),
    row.goal ?? '',
    row.met === null ? '' : row.met ? 'met' : 'missed',
  ]);
  return (
    `${meta.date} · commit ${meta.commit} · Node ${meta.node} · ${packages} · ${meta.machine}\n` +
    `load average ${meta.loadAtStart.toFixed(1)} at the start, ${meta.loadAtEnd.toFixed(1)} at the end · ` +
    `took ${Math.round(meta.durationS)} s${meta.quick ? ' · QUICK: figures mean nothing' : ''}` +
    `${postedOverHttp(report.config) ? ` · HTTP runs posted as ${HTTP_BODY_LABELS[report.config.httpBody]}` : ''}` +
    `${report.config.tsx ? ' · the TypeScript sources run through tsx' : ''}` +
    `${report.config.connectInBatch ? ' · HTTP clients connect within the paced batch' : ''}\n\n` +
    table(['measurement', 'client', 'median', 'range', '× raw SDK', 'goal', 'result'], lines) +
    '\n¹ in the process that holds the runs: the client, or for runstate over HTTP the server (with PostgreSQL + Redis, the instance that owns the runs).\n' +
    (report.config.kinds.includes('http-pg')
      ? '² the runs on one instance, stored in PostgreSQL (events written in batches), cancels sent to the other instance (through Redis).\n'
      : '') +
    (report.rows.some((row) => row.metric === 'chunksPerRead' && row.median !== null)
      ? '³ counted by Linux (/proc/self/io), mostly socket reads and writes: how many chunks one read brought, and how many one write carried (the server writes one SSE chunk per upstream read). A client that falls behind finds more chunks waiting at each read.\n'
      : '') +
    (report.rows.some((row) => row.metric === 'otherThreadsCpuPerChunkUs' && row.median !== null)
      ? "⁴ measured by Linux per thread (/proc/self/task/*/schedstat): V8's optimizing compiler and the garbage collector's helper threads (and libuv's thread pool), counted in the CPU per chunk as all of a process's threads are.\n"
      : '') +
    `Goals: ${report.summary.met} met, ${report.summary.missed} missed, ${report.summary.notMeasured} not measured.\n`
  );
}

/**
 * The report in `path`, as `--json` wrote it; a {@link BenchUsageError} naming the file otherwise.
 * `npm run bench -- --compare` reads it before measuring, so that a wrong path costs no run.
 */
export function readReport(path: string): BenchReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const why =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new BenchUsageError(`--compare ${path}: ${why}`);
  }
  const report = parsed as Partial<BenchReport> | null;
  if (
    typeof report !== 'object' ||
    report === null ||
    !Array.isArray(report.rows) ||
    typeof report.meta?.date !== 'string' ||
    typeof report.config?.paced !== 'object'
  ) {
    throw new BenchUsageError(`--compare ${path}: not a report written by npm run bench -- --json`);
  }
  return report as BenchReport;
}

/** The sizes of a scenario that differ between two runs of it, e.g. `paced runs 1,000 → 20`. */
function sizeDifferences(before: BenchReport, now: BenchReport): string[] {
  const differences: string[] = [];
  if (before.meta.quick !== now.meta.quick) {
    differences.push(`--quick ${before.meta.quick ? 'on' : 'off'} → ${now.meta.quick ? 'on' : 'off'}`);
  }
  // How the processes ran and connected: each moves the figures more than a run's spread. A report
  // written before `--tsx` existed has none: it was off. One written before `--http-connect-in-batch`
  // existed may have either (its HTTP clients connected within the batch until 40d73d6, on 1
  // December): not recorded. The latter matters only to HTTP clients.
  const earlierConfig = before.config as Partial<BenchConfig>;
  const onOff = (flag: boolean | undefined) => (flag === undefined ? 'not recorded' : flag ? 'on' : 'off');
  const flags: Array<[string, boolean | undefined, boolean]> = [
    ['--tsx', earlierConfig.tsx ?? false, now.config.tsx],
  ];
  if (now.config.kinds.some((kind) => kind.startsWith('http')))
    flags.push(['--http-connect-in-batch', earlierConfig.connectInBatch, now.config.connectInBatch]);
  for (const [name, was, is] of flags) {
    if (was !== is) differences.push(`${name} ${onOff(was)} → ${onOff(is)}`);
  }
  for (const scenario of now.config.scenarios) {
    if (!before.config.scenarios?.includes(scenario)) continue;
    const sizes: Record<string, unknown> = { reps: now.config.reps[scenario], ...now.config[scenario] };
    const earlier: Record<string, unknown> = {
      reps: before.config.reps?.[scenario],
      ...before.config[scenario],
    };
    for (const [name, value] of Object.entries(sizes)) {
      if (earlier[name] !== undefined && earlier[name] !== value) {
        differences.push(`${scenario} ${name} ${JSON.stringify(earlier[name])} → ${JSON.stringify(value)}`);
      }
    }
  }
  return differences;
}

/**
 * The change of every figure against an earlier report (matched by scenario, metric and client).
 * Sizes that differ between the two (`--quick`, `--runs`, `--chunks`, `--reps`...) are named above
 * the table: such figures are not comparable.
 */
export function formatComparison(before: BenchReport, now: BenchReport): string {
  const earlier = new Map(before.rows.map((row) => [`${row.scenario}/${row.metric}/${row.kind}`, row]));
  const lines: string[][] = [];
  for (const row of now.rows) {
    const old = earlier.get(`${row.scenario}/${row.metric}/${row.kind}`);
    if (!old || old.median === null || row.median === null) continue;
    const change =
      old.median === 0
        ? ''
        : `${row.median >= old.median ? '+' : ''}${((row.median / old.median - 1) * 100).toFixed(1)} %`;
    lines.push([
      row.label,
      row.client,
      figure(row, old.median),
      figure(row, row.median),
      change,
      ratio(old.ratio),
      ratio(row.ratio),
    ]);
  }
  // A report written before `--http-body` has none in its config: its HTTP runs were posted as JSON.
  const bodies = [before, now].map(
    (report) => HTTP_BODY_LABELS[(report.config as Partial<BenchConfig>).httpBody ?? 'json'],
  );
  const differences = sizeDifferences(before, now);
  return (
    (differences.length > 0
      ? `\nNOT COMPARABLE: the earlier run had other sizes (${differences.join(', ')}).\n`
      : '') +
    `\nAgainst ${before.meta.date} (commit ${before.meta.commit})` +
    (postedOverHttp(now.config) && bodies[0] !== bodies[1]
      ? `, whose HTTP runs were posted as ${bodies[0]}, not ${bodies[1]}`
      : '') +
    ':\n\n' +
    table(['measurement', 'client', 'before', 'now', 'change', '× raw before', '× raw now'], lines)
  );
}
