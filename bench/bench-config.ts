import { parseArgs } from 'node:util';

/** The clients compared. `raw` is the reference every ratio is taken to. */
export const CLIENT_KINDS = ['raw', 'library', 'library+inspect', 'http'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

/** What each kind is, in the table. */
export const CLIENT_LABELS: Record<ClientKind, string> = {
  raw: 'raw openai SDK',
  library: 'runstate library',
  'library+inspect': 'runstate library, inspect on',
  http: 'runstate over HTTP',
};

/** The measurements, in the order they run and are printed. */
export const SCENARIOS = ['stream', 'cancel', 'concurrent', 'mass'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** Streams the fake upstream serves; the model name picks the behaviour (see `parseFakeModel`). */
export interface Workloads {
  /** One long stream, no delay between chunks. */
  stream: string;
  /** A few chunks, then the stream stalls until the client goes away. */
  cancel: string;
  /** The paced streams of the concurrency measurement. */
  concurrent: string;
  /** The paced streams of the mass measurement. */
  mass: string;
}
export type WorkloadName = keyof Workloads;

/** A batch of paced runs started together. */
export interface ConcurrencyShape {
  runs: number;
  chunks: number;
  delayMs: number;
  warmupRuns: number;
  /**
   * Runs started per second; 0 starts them all at once. Opening 10,000 connections in one go
   * overflows the fake server's accept queue (SYN backlog 2,048 here): dropped SYNs are sent again
   * after 1, 3, 7 s... and fetch gives up after its 10 s connect timeout, which measures the
   * kernel, not the client.
   */
  startPerSecond: number;
}

/** Sizes and repetitions of one benchmark run. */
export interface BenchConfig {
  /** Measured repetitions of each scenario; every figure is the median of these. */
  reps: number;
  /** `trials` runs per repetition, whose median is the repetition's figure. */
  stream: { chunks: number; trials: number; warmup: number };
  /** `trials` cancels per repetition, whose median is the repetition's figure. */
  cancel: { trials: number; warmup: number; chunksBeforeStall: number };
  concurrent: ConcurrencyShape;
  mass: ConcurrencyShape;
  /** Which scenarios and clients to run. */
  scenarios: ScenarioName[];
  kinds: ClientKind[];
  /** Which inspector the `library+inspect` client hands to the orchestrator (see `bench/inspectors.ts`). */
  inspector: string;
  /**
   * Fresh processes for every repetition of the concurrency scenarios, so that each RSS
   * high-water mark is one batch's. Off in quick runs, where starting processes would be most of
   * the time.
   */
  freshProcesses: boolean;
}

/** The full benchmark (about 5 minutes on 2 cores). */
export const FULL_CONFIG: BenchConfig = {
  reps: 5,
  // Ten warm-up streams: with three, runstate's per-run code (an actor, a log) had run only three
  // times and was still getting faster through the measured repetitions. Five trials a repetition:
  // one stream takes about 150 ms and varies by ±30 % from the next.
  stream: { chunks: 10_000, trials: 5, warmup: 10 },
  cancel: { trials: 15, warmup: 5, chunksBeforeStall: 3 },
  concurrent: { runs: 1_000, chunks: 100, delayMs: 10, warmupRuns: 50, startPerSecond: 0 },
  // Streams of 5 s, started over 2 s: all 10,000 are open at once.
  mass: { runs: 10_000, chunks: 5, delayMs: 1_000, warmupRuns: 50, startPerSecond: 5_000 },
  scenarios: [...SCENARIOS],
  kinds: [...CLIENT_KINDS],
  inspector: 'noop',
  freshProcesses: true,
};

/** Tiny sizes: a smoke run of a few seconds that exercises every path (figures mean nothing). */
export const QUICK_CONFIG: BenchConfig = {
  reps: 2,
  stream: { chunks: 200, trials: 1, warmup: 1 },
  cancel: { trials: 2, warmup: 1, chunksBeforeStall: 2 },
  concurrent: { runs: 20, chunks: 5, delayMs: 2, warmupRuns: 2, startPerSecond: 0 },
  mass: { runs: 50, chunks: 3, delayMs: 5, warmupRuns: 2, startPerSecond: 5_000 },
  scenarios: [...SCENARIOS],
  kinds: [...CLIENT_KINDS],
  inspector: 'noop',
  freshProcesses: false,
};

/** The model names of a config's workloads. */
export function workloadsOf(config: BenchConfig): Workloads {
  const { stream, cancel, concurrent, mass } = config;
  return {
    stream: `fake?chunks=${stream.chunks}&delayMs=0`,
    cancel: `fake?fault=stall&chunks=${cancel.chunksBeforeStall}`,
    concurrent: `fake?chunks=${concurrent.chunks}&delayMs=${concurrent.delayMs}`,
    mass: `fake?chunks=${mass.chunks}&delayMs=${mass.delayMs}`,
  };
}

/** Command-line options of `npm run bench`, after parsing. */
export interface BenchCli {
  config: BenchConfig;
  quick: boolean;
  /** Where to write the JSON report, or `undefined` for none. */
  jsonFile: string | undefined;
  /** Folder for `--cpu-prof` profiles of the client processes, or `undefined`. */
  profileDir: string | undefined;
}

export const BENCH_USAGE = `Usage: npm run bench -- [options]

  --quick              tiny sizes, a smoke run of a few seconds (env BENCH_QUICK=1)
  --reps <n>           measured repetitions per scenario, medians are taken (env BENCH_REPS; default 5)
  --only <list>        scenarios: ${SCENARIOS.join(',')}
  --kinds <list>       clients: ${CLIENT_KINDS.join(',')} (raw is always run: it is the reference)
  --inspector <name>   inspector of the library+inspect client: noop (default), builtin, builtin-page
  --chunks <n>         chunks of the long stream (default 10000)
  --runs <n>           runs of the concurrency scenario (default 1000)
  --mass-runs <n>      runs of the mass scenario (default 10000)
  --json               also write the report as JSON to bench/results/latest.json
  --json-file <path>   ... or to this file
  --cpu-prof <dir>     profile the client processes with node --cpu-prof into <dir>
  --help`;

const positive = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a positive whole number, got '${value}'`);
  return n;
};

function pickList<T extends string>(
  name: string,
  value: string | undefined,
  all: readonly T[],
): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!all.includes(item as T)) throw new Error(`unknown ${name} '${item}' (known: ${all.join(', ')})`);
  }
  return all.filter((item) => items.includes(item));
}

/** Reads the command line and the `BENCH_*` environment variables. Throws with a message on bad input. */
export function parseBenchArgs(
  argv: string[],
  env: Record<string, string | undefined> = {},
): BenchCli | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      reps: { type: 'string' },
      only: { type: 'string' },
      kinds: { type: 'string' },
      inspector: { type: 'string' },
      chunks: { type: 'string' },
      runs: { type: 'string' },
      'mass-runs': { type: 'string' },
      json: { type: 'boolean' },
      'json-file': { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return 'help';
  const quick = values.quick === true || env.BENCH_QUICK === '1';
  const base = structuredClone(quick ? QUICK_CONFIG : FULL_CONFIG);
  const config: BenchConfig = {
    ...base,
    reps: positive('--reps', values.reps ?? env.BENCH_REPS) ?? base.reps,
    stream: { ...base.stream, chunks: positive('--chunks', values.chunks) ?? base.stream.chunks },
    concurrent: { ...base.concurrent, runs: positive('--runs', values.runs) ?? base.concurrent.runs },
    mass: { ...base.mass, runs: positive('--mass-runs', values['mass-runs']) ?? base.mass.runs },
    scenarios: pickList('scenario', values.only, SCENARIOS) ?? base.scenarios,
    kinds: pickList('client', values.kinds, CLIENT_KINDS) ?? base.kinds,
    inspector: values.inspector ?? base.inspector,
  };
  if (!config.kinds.includes('raw')) config.kinds.unshift('raw');
  const jsonFile = values['json-file'] ?? (values.json ? 'bench/results/latest.json' : undefined);
  return { config, quick, jsonFile, profileDir: values['cpu-prof'] };
}

/** The id of the agent that serves a workload on the runstate server. */
export const agentIdOf = (workload: WorkloadName): string => `bench-${workload}`;
