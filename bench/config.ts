import { parseArgs } from 'node:util';
import { BenchUsageError, parseRunBodyEncoding, type RunBodyEncoding } from './run-body.js';

export { BenchUsageError };

/**
 * The clients compared. `raw` (the openai SDK called by hand) is the reference of every ratio;
 * `lean` (fetch, an SSE parser and `JSON.parse`) shows the floor a client in JavaScript can reach.
 * `inspected` is `library` with the built-in inspector on and a page open on it (the inspector on
 * and off: `library` and `inspected`).
 * `http-pg` is `http` on durable storage: two instances sharing PostgreSQL and Redis, the runs on one
 * (whose CPU is measured), cancels sent to the other (see `bench/shared-storage.ts`).
 */
export const KINDS = ['raw', 'lean', 'library', 'inspected', 'http', 'http-pg'] as const;
export type Kind = (typeof KINDS)[number];

export const KIND_LABELS: Record<Kind, string> = {
  raw: 'raw openai SDK',
  lean: 'lean client (fetch + SSE parser)',
  library: 'runstate library',
  inspected: 'runstate library, inspector on (a page open)',
  http: 'runstate over HTTP',
  'http-pg': 'runstate over HTTP, PostgreSQL + Redis, 2 instances ²',
};

export const SCENARIOS = ['burst', 'paced', 'cancel', 'mass'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** A batch of paced runs started together (or over a ramp). */
export interface Batch {
  runs: number;
  chunks: number;
  delayMs: number;
  warmupRuns: number;
  /** Runs started per second; 0 starts them all at once. */
  startPerSecond: number;
}

/** Sizes and repetitions of one benchmark run. */
export interface BenchConfig {
  /** Repetitions per scenario: a fresh process per client and repetition; figures are medians. */
  reps: Record<Scenario, number>;
  burst: { chunks: number; warmup: number; trials: number };
  paced: Batch;
  cancel: { warmup: number; trials: number };
  mass: Batch;
  scenarios: Scenario[];
  kinds: Kind[];
  /** Fresh processes per scenario, client and repetition; off in quick runs (start-up is most of them). */
  fresh: boolean;
  /**
   * The HTTP client opens each run's connection as the run starts, instead of one per run before the
   * batch (`--http-connect-in-batch`; see docs/performance.md, "How it is measured").
   */
  connectInBatch: boolean;
  /**
   * The processes run the TypeScript sources through tsx (`--tsx`), as a clone of the repository
   * does (`npm start`, scripts), instead of JavaScript transpiled once, as the published package is.
   */
  tsx: boolean;
  /**
   * How the HTTP clients send a run's fields (`--http-body`): `multipart/form-data` by default, as
   * Agno's clients and the docs' `curl -F` do. Reports written before the option sent JSON.
   */
  httpBody: RunBodyEncoding;
}

export const FULL_CONFIG: BenchConfig = {
  reps: { burst: 5, paced: 3, cancel: 5, mass: 1 },
  burst: { chunks: 10_000, warmup: 10, trials: 5 },
  paced: { runs: 1_000, chunks: 100, delayMs: 10, warmupRuns: 100, startPerSecond: 0 },
  cancel: { warmup: 5, trials: 15 },
  // 5 s streams started over 2 s: all are open at once. Started in one go, 10,000 runs would measure
  // the kernel's queues, not the runs (see the HTTP client's `connect`).
  mass: { runs: 10_000, chunks: 5, delayMs: 1_000, warmupRuns: 50, startPerSecond: 5_000 },
  scenarios: ['burst', 'paced', 'cancel'],
  kinds: [...KINDS],
  fresh: true,
  connectInBatch: false,
  tsx: false,
  httpBody: 'multipart',
};

/** A smoke run of a few seconds that goes through every path; its figures mean nothing. */
export const QUICK_CONFIG: BenchConfig = {
  reps: { burst: 2, paced: 1, cancel: 1, mass: 1 },
  burst: { chunks: 300, warmup: 1, trials: 1 },
  paced: { runs: 10, chunks: 5, delayMs: 2, warmupRuns: 2, startPerSecond: 0 },
  cancel: { warmup: 1, trials: 2 },
  mass: { runs: 20, chunks: 2, delayMs: 2, warmupRuns: 2, startPerSecond: 5_000 },
  scenarios: [...SCENARIOS],
  kinds: [...KINDS],
  fresh: false,
  connectInBatch: false,
  tsx: false,
  httpBody: 'multipart',
};

/** The words the upstream streams, one per chunk, over and over. */
export const WORDS = ['Hello', ' from', ' the', ' bench', ' upstream', ' server', '.'];

/** The content the upstream streams for `count` chunks (the parent checks that all of it arrived). */
export const streamedText = (count: number): string =>
  Array.from({ length: count }, (_, i) => WORDS[i % WORDS.length]).join('');

/** The model names the upstream serves (`bench/upstream-main.ts`), one per workload. */
export function workloadsOf(config: BenchConfig) {
  const { burst, paced, mass } = config;
  return {
    burst: `burst:${burst.chunks}`,
    paced: `paced:${paced.chunks}:${paced.delayMs}`,
    cancel: 'stall:1',
    mass: `paced:${mass.chunks}:${mass.delayMs}`,
  };
}
export type Workloads = ReturnType<typeof workloadsOf>;
export type Workload = keyof Workloads;

/** The command line, parsed. */
export interface BenchCli {
  config: BenchConfig;
  quick: boolean;
  jsonFile: string | undefined;
  compareFile: string | undefined;
  profileDir: string | undefined;
}

export const USAGE = `Usage: npm run bench -- [options]

  --quick              tiny sizes: a smoke run of a few seconds, figures mean nothing
  --only <list>        scenarios: ${SCENARIOS.join(',')} (default: all but mass)
  --kinds <list>       clients: ${KINDS.join(',')} (raw is always run: it is the reference)
  --reps <n>           repetitions of every scenario (default 5, paced 3, mass 1)
  --runs <n>           runs of the paced scenario (default 1000)
  --chunks <n>         chunks per run of the paced scenario (default 100); two sizes separate what
                       a run costs from what a chunk costs (docs/performance.md, "Per run, per chunk")
  --warmup-runs <n>    runs of the paced scenario's warm-up batch (default 100); 1000: a process
                       that served a full batch before (docs/performance.md, "Why the two earlier
                       benchmarks disagreed", 6)
  --mass-runs <n>      runs of the mass scenario (default 10000)
  --json               write the report to bench/results/latest.json
  --json-file <path>   ... or to this file
  --compare <file>     print the change against a report written earlier with --json
  --http-connect-in-batch
                       the HTTP client connects as each run of a batch starts (default: one
                       connection per run opened first, timed with the batch)
  --http-body <enc>    how the HTTP clients post a run: multipart (default: Agno's clients, curl -F),
                       urlencoded (curl -d) or json
  --tsx                every process runs the TypeScript sources through tsx, as npm start does
                       (default: JavaScript transpiled once, as the published package is)
  --cpu-prof <dir>     profile what is measured (the V8 profiler of the process holding the runs)
                       into <dir>/<scenario>-<client>/, summarised by bench/profile-summary.ts
  --help

  BENCH_TURNS=1 in the environment: each measured process prints its event-loop turns longer than
  100 ms (start+length/CPU, in ms), where the loop-delay p99 comes from
  BENCH_THREADS=1: each measured process prints the CPU of each of its threads (the main one, V8's
  compiler and collector helpers), and writes 'meter start|stop <pid>' where V8's traces go
  BENCH_NODE_FLAGS='<flags>': Node/V8 flags for every process (--single-threaded-gc, --trace-opt)`;

/**
 * `value` as a whole number ≥ 1 (`undefined` stays so); a {@link BenchUsageError} naming `name` if
 * it is not one.
 */
export function whole(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new BenchUsageError(`${name} must be a positive whole number, got '${value}'`);
  return n;
}

function list<T extends string>(name: string, value: string | undefined, all: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((item) => item.trim());
  for (const item of items) {
    if (!all.includes(item as T))
      throw new BenchUsageError(`unknown ${name} '${item}' (known: ${all.join(', ')})`);
  }
  return all.filter((item) => items.includes(item));
}

/** `parseArgs` with the bench's options; an unknown option or a missing value is a usage error. */
function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string' },
        kinds: { type: 'string' },
        reps: { type: 'string' },
        runs: { type: 'string' },
        chunks: { type: 'string' },
        'warmup-runs': { type: 'string' },
        'mass-runs': { type: 'string' },
        json: { type: 'boolean' },
        'json-file': { type: 'string' },
        compare: { type: 'string' },
        'cpu-prof': { type: 'string' },
        'http-connect-in-batch': { type: 'boolean' },
        tsx: { type: 'boolean' },
        'http-body': { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    // Node's own messages (an unknown option, a missing value) say what is wrong; the stack does not.
    throw new BenchUsageError(error instanceof Error ? error.message : String(error));
  }
}

/** Reads the command line (and `BENCH_QUICK=1`); throws a {@link BenchUsageError} on bad input. */
export function parseBenchArgs(argv: string[], env: NodeJS.ProcessEnv = {}): BenchCli | 'help' {
  const { values } = parseCommandLine(argv);
  if (values.help) return 'help';
  const quick = values.quick === true || env.BENCH_QUICK === '1';
  const config = structuredClone(quick ? QUICK_CONFIG : FULL_CONFIG);
  const reps = whole('--reps', values.reps);
  if (reps !== undefined) for (const scenario of SCENARIOS) config.reps[scenario] = reps;
  config.paced.runs = whole('--runs', values.runs) ?? config.paced.runs;
  config.paced.chunks = whole('--chunks', values.chunks) ?? config.paced.chunks;
  config.paced.warmupRuns = whole('--warmup-runs', values['warmup-runs']) ?? config.paced.warmupRuns;
  config.mass.runs = whole('--mass-runs', values['mass-runs']) ?? config.mass.runs;
  config.scenarios = list('scenario', values.only, SCENARIOS) ?? config.scenarios;
  config.kinds = list('client', values.kinds, KINDS) ?? config.kinds;
  if (!config.kinds.includes('raw')) config.kinds.unshift('raw');
  config.connectInBatch = values['http-connect-in-batch'] === true;
  config.tsx = values.tsx === true;
  const httpBody = values['http-body'];
  if (httpBody !== undefined) config.httpBody = parseRunBodyEncoding('--http-body', httpBody);
  return {
    config,
    quick,
    jsonFile: values['json-file'] ?? (values.json ? 'bench/results/latest.json' : undefined),
    compareFile: values.compare,
    profileDir: values['cpu-prof'],
  };
}
