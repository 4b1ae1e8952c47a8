import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchConfig, ClientKind, ScenarioName, WorkloadName, Workloads } from './bench-config.js';
import type { ClientTask, ConcurrentResult, StreamResult, UsageResult } from './client-tasks.js';
import type { BenchClientOptions, CancelOutcome } from './clients/bench-client.js';
import type { UpstreamClosedNotice } from './fake-upstream-main.js';
import { fakeChunks } from '../src/testing/fake-openai-server.js';
import { median } from './report.js';
import { elapsedUs, startWorker, type Worker } from './worker-process.js';

/** Per-repetition values of each metric of a scenario, by client kind. */
export type Samples = Record<string, Partial<Record<ClientKind, number[]>>>;

/** What one scenario measured. */
export interface ScenarioResult {
  scenario: ScenarioName;
  samples: Samples;
  /** Client kinds this scenario did not measure, with the reason. */
  skipped: Partial<Record<ClientKind, string>>;
}

/** What the scenarios share. */
export interface BenchContext {
  config: BenchConfig;
  workloads: Workloads;
  /** Why the HTTP client cannot run at all (no server yet), when it cannot. */
  httpUnavailable: string | undefined;
  /** Where `--cpu-prof` profiles go, one folder per scenario and process. */
  profileDir: string | undefined;
  /** The JavaScript a worker process runs for a TypeScript entry (see `compileForWorkers`). */
  workerModule(source: URL): URL;
  progress(message: string): void;
  /** Processes kept for every scenario when `config.freshProcesses` is off (quick runs). */
  shared?: ProcessSet | undefined;
}

const CLIENT_MAIN = new URL('./client-main.ts', import.meta.url);
const UPSTREAM_MAIN = new URL('./fake-upstream-main.ts', import.meta.url);
const SERVER_MAIN = new URL('./runstate-server-main.ts', import.meta.url);

/** How long the parent waits for the upstream to report a cancelled request's socket closing. */
const CLOSE_TIMEOUT_MS = 10_000;

/** The kinds in a different order each repetition, so that none always runs first or last. */
const rotate = <T>(items: readonly T[], by: number): T[] => {
  const k = by % Math.max(1, items.length);
  return [...items.slice(k), ...items.slice(0, k)];
};

function push(samples: Samples, metric: string, kind: ClientKind, value: number): void {
  ((samples[metric] ??= {})[kind] ??= []).push(value);
}

const request = <T>(worker: Worker, task: ClientTask): Promise<T> => worker.request<T>(task);

/** A client process, and for the HTTP client the runstate server it talks to. */
interface ClientUnit {
  kind: ClientKind;
  client: Worker;
  server: Worker | undefined;
}

/** The fake upstream and the clients of one measurement. */
export interface ProcessSet {
  upstream: Worker;
  units: ClientUnit[];
  /** Stops every process of the set, clients first. */
  stop(): Promise<void>;
}

function profileFlags(ctx: BenchContext, scenario: ScenarioName, name: string): string[] {
  if (!ctx.profileDir) return [];
  const dir = join(ctx.profileDir, `${scenario}-${name}`);
  mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

async function startUnit(
  ctx: BenchContext,
  scenario: ScenarioName,
  kind: ClientKind,
  upstreamURL: string,
  started: Worker[],
): Promise<ClientUnit> {
  const options: BenchClientOptions = {
    upstreamURL,
    workloads: ctx.workloads,
    inspector: ctx.config.inspector,
  };
  let server: Worker | undefined;
  if (kind === 'http') {
    server = await startWorker(ctx.workerModule(SERVER_MAIN), {
      name: 'runstate server',
      args: [JSON.stringify({ upstreamURL, workloads: ctx.workloads })],
      nodeFlags: profileFlags(ctx, scenario, 'http-server'),
    });
    started.push(server);
    options.serverURL = String(server.ready.url);
  }
  const client = await startWorker(ctx.workerModule(CLIENT_MAIN), {
    name: `${kind} client`,
    args: [kind, JSON.stringify(options)],
    nodeFlags: profileFlags(ctx, scenario, kind.replace('+', '-')),
  });
  started.push(client);
  return { kind, client, server };
}

/**
 * Starts a fake upstream and one client unit per kind (in parallel: they spend their start-up
 * loading modules). With `freshProcesses` off, the first set is kept and shared by every scenario.
 */
async function startProcesses(
  ctx: BenchContext,
  scenario: ScenarioName,
  kinds: readonly ClientKind[],
): Promise<ProcessSet> {
  if (!ctx.config.freshProcesses && ctx.shared) return { ...ctx.shared, stop: () => Promise.resolve() };
  const started: Worker[] = [];
  const stop = async (): Promise<void> => {
    for (const worker of started.reverse()) await worker.stop();
  };
  try {
    const upstream = await startWorker(ctx.workerModule(UPSTREAM_MAIN), { name: 'fake upstream' });
    started.push(upstream);
    const url = String(upstream.ready.url);
    const units = await Promise.all(kinds.map((kind) => startUnit(ctx, scenario, kind, url, started)));
    const set = { upstream, units, stop };
    if (ctx.config.freshProcesses) return set;
    ctx.shared = set;
    return { ...set, stop: () => Promise.resolve() };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Runs `body` with the processes of a measurement, and stops them after. */
async function withProcesses<T>(
  ctx: BenchContext,
  scenario: ScenarioName,
  kinds: readonly ClientKind[],
  body: (set: ProcessSet) => Promise<T>,
): Promise<T> {
  const set = await startProcesses(ctx, scenario, kinds);
  try {
    return await body(set);
  } finally {
    await set.stop();
  }
}

/** The kinds a scenario runs; the others go to `skipped` with the reason. */
function kindsFor(ctx: BenchContext, skipped: ScenarioResult['skipped']): ClientKind[] {
  if (ctx.httpUnavailable && ctx.config.kinds.includes('http')) skipped.http = ctx.httpUnavailable;
  return ctx.config.kinds.filter((kind) => !skipped[kind]);
}

/**
 * A long stream with no delay, read to its end, a few times per repetition and client (the median
 * is the repetition's figure): wall time, CPU of the client process per upstream chunk, and for
 * HTTP the CPU of the server process per upstream chunk. The client processes live through the
 * whole scenario (warmed up once, JIT kept).
 */
async function streamScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const { reps, stream } = ctx.config;
  const samples: Samples = {};
  const skipped: ScenarioResult['skipped'] = {};
  const kinds = kindsFor(ctx, skipped);

  // Per upstream chunk: runstate may hand several deltas that arrive together to its consumers as one
  // RunContent event, so the content is checked by its length rather than by a count of events.
  const chunks = stream.chunks;
  const length = fakeChunks(chunks).join('').length;
  const one = async (unit: ClientUnit, tag: string) => {
    const before = unit.server && (await request<UsageResult>(unit.server, { type: 'usage' }));
    const run = await request<StreamResult>(unit.client, { type: 'stream', tag });
    const after = unit.server && (await request<UsageResult>(unit.server, { type: 'usage' }));
    if (run.status !== 'completed' || run.length !== length) {
      throw new Error(`${unit.kind}: the stream ended ${run.status} with ${run.length}/${length} characters`);
    }
    return { run, serverCpuUs: before && after ? after.cpuUs - before.cpuUs : undefined };
  };

  await withProcesses(ctx, 'stream', kinds, async ({ units }) => {
    for (const unit of units) {
      for (let i = 0; i < stream.warmup; i++) await one(unit, `warmup-${i}`);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const unit of rotate(units, rep)) {
        const runs = [];
        for (let i = 0; i < stream.trials; i++) runs.push(await one(unit, `stream-${rep}-${i}`));
        const wallMs = median(runs.map(({ run }) => run.wallMs))!;
        const cpuUs = median(runs.map(({ run }) => run.cpuUs))!;
        const serverCpuUs = unit.server ? median(runs.map((r) => r.serverCpuUs ?? 0)) : null;
        push(samples, 'wallMs', unit.kind, wallMs);
        push(samples, 'cpuPerChunkUs', unit.kind, cpuUs / chunks);
        if (serverCpuUs !== null) push(samples, 'serverCpuPerChunkUs', unit.kind, serverCpuUs / chunks);
        ctx.progress(
          `stream ${rep + 1}/${reps} ${unit.kind}: ${wallMs.toFixed(0)} ms, ${(cpuUs / chunks).toFixed(1)} µs/chunk` +
            (serverCpuUs === null ? '' : `, server ${(serverCpuUs / chunks).toFixed(1)} µs/chunk`) +
            `, ${runs[0]!.run.chunks} content events`,
        );
      }
    }
  });
  return { scenario: 'stream', samples, skipped };
}

/** Collects the upstream's `upstream-closed` notices and hands each to whoever waits for its tag. */
function watchCloses(upstream: Worker): (tag: string) => Promise<UpstreamClosedNotice> {
  const arrived = new Map<string, UpstreamClosedNotice>();
  const waiting = new Map<string, (notice: UpstreamClosedNotice) => void>();
  upstream.onNotice((notice) => {
    if (notice.type !== 'upstream-closed') return;
    const closed = notice as unknown as UpstreamClosedNotice;
    const waiter = waiting.get(closed.tag);
    if (waiter) waiter(closed);
    else arrived.set(closed.tag, closed);
  });
  return (tag) => {
    const known = arrived.get(tag);
    arrived.delete(tag);
    if (known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(tag);
        reject(new Error(`the upstream never saw the socket of ${tag} close`));
      }, CLOSE_TIMEOUT_MS);
      waiting.set(tag, (notice) => {
        clearTimeout(timer);
        waiting.delete(tag);
        resolve(notice);
      });
    });
  };
}

/**
 * Cancel latency: each trial starts a stream that stalls after a few chunks, cancels it when the
 * first chunk arrives, and takes (1) cancel → the consumer gets the terminal event and (2) cancel →
 * the fake upstream sees the request's socket close (timestamped in the upstream process on the
 * shared monotonic clock). A repetition's figure is the median of its trials.
 */
async function cancelScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const { reps, cancel } = ctx.config;
  const samples: Samples = {};
  const skipped: ScenarioResult['skipped'] = {};
  const kinds = kindsFor(ctx, skipped);

  await withProcesses(ctx, 'cancel', kinds, async ({ upstream, units }) => {
    const closeOf = watchCloses(upstream);
    const trial = async (unit: ClientUnit, tag: string) => {
      const outcome = await request<CancelOutcome>(unit.client, { type: 'cancel', tag });
      const closed = await closeOf(tag);
      if (outcome.status !== 'cancelled' || !closed.clientAborted) {
        throw new Error(
          `${unit.kind}: ${tag} ended ${outcome.status}; the client aborted the upstream request: ${closed.clientAborted}`,
        );
      }
      return {
        toTerminalUs: elapsedUs(outcome.cancelAt, outcome.terminalAt),
        toClosedUs: elapsedUs(outcome.cancelAt, closed.closedAt),
      };
    };
    for (const unit of units) {
      for (let i = 0; i < cancel.warmup; i++) await trial(unit, `cancel-warmup-${unit.kind}-${i}`);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const unit of rotate(units, rep)) {
        const toTerminal: number[] = [];
        const toClosed: number[] = [];
        for (let i = 0; i < cancel.trials; i++) {
          const result = await trial(unit, `cancel-${unit.kind}-${rep}-${i}`);
          toTerminal.push(result.toTerminalUs);
          toClosed.push(result.toClosedUs);
        }
        push(samples, 'cancelToTerminalUs', unit.kind, median(toTerminal)!);
        push(samples, 'cancelToUpstreamClosedUs', unit.kind, median(toClosed)!);
        ctx.progress(
          `cancel ${rep + 1}/${reps} ${unit.kind}: RunCancelled after ${median(toTerminal)!.toFixed(0)} µs, ` +
            `upstream closed after ${median(toClosed)!.toFixed(0)} µs`,
        );
      }
    }
  });
  return { scenario: 'cancel', samples, skipped };
}

/** The soft limit of open files of the processes this one starts. */
function openFilesLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()) || Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Many paced runs at once. With `freshProcesses`, each repetition of each client runs in new
 * processes (client, server, upstream), so that the RSS high-water mark is this batch's: a warm-up
 * batch, a garbage collection, the RSS baseline, then all runs at once. RSS per run =
 * (peak − baseline) / runs, in the process that holds the runs (the server, for HTTP).
 */
async function concurrencyScenario(
  ctx: BenchContext,
  scenario: 'concurrent' | 'mass',
): Promise<ScenarioResult> {
  const { reps } = ctx.config;
  const { runs, warmupRuns, startPerSecond } = ctx.config[scenario];
  const workload: WorkloadName = scenario;
  const samples: Samples = {};
  const skipped: ScenarioResult['skipped'] = {};
  // The HTTP server holds two sockets per run (its client's and the upstream's).
  const fds = openFilesLimit();
  if (2 * runs + 1_000 > fds) {
    skipped.http = `needs ${(2 * runs).toLocaleString('en-US')} sockets in the server process; the open-files limit here is ${fds.toLocaleString('en-US')}`;
  }
  if (scenario === 'mass' && ctx.config.freshProcesses) {
    // Inspection is measured by the other scenarios; this one is long enough without it.
    skipped['library+inspect'] = 'inspection is measured in the other scenarios';
  }
  const kinds = kindsFor(ctx, skipped);

  const measure = async ({ kind, client, server }: ClientUnit, rep: number): Promise<void> => {
    await request(client, {
      type: 'concurrent',
      workload,
      runs: warmupRuns,
      startPerSecond,
      tagPrefix: 'warmup',
    });
    const serverBefore = server && (await request<UsageResult>(server, { type: 'usage', gc: true }));
    const result = await request<ConcurrentResult>(client, {
      type: 'concurrent',
      workload,
      runs,
      startPerSecond,
      tagPrefix: 'run',
    });
    const serverAfter = server && (await request<UsageResult>(server, { type: 'usage' }));
    const [baseline, peak] =
      serverBefore && serverAfter
        ? [serverBefore.rssBytes, serverAfter.maxRssBytes]
        : [result.baselineRssBytes, result.peakRssBytes];
    push(samples, 'wallMs', kind, result.wallMs);
    push(samples, 'peakRssMb', kind, peak / 2 ** 20);
    push(samples, 'rssPerRunKb', kind, (peak - baseline) / 1024 / runs);
    push(samples, 'completed', kind, result.completed);
    push(samples, 'peakStreaming', kind, result.peakStreaming);
    ctx.progress(
      `${scenario} ${rep + 1}/${reps} ${kind}: ${result.wallMs.toFixed(0)} ms, ` +
        `${result.completed}/${runs} completed, peak RSS ${(peak / 2 ** 20).toFixed(0)} MB, ` +
        `${((peak - baseline) / 1024 / runs).toFixed(0)} KB/run, ${result.peakStreaming} streaming at once` +
        (result.failures.length ? `; failures: ${result.failures.join(' | ')}` : ''),
    );
  };

  for (let rep = 0; rep < reps; rep++) {
    if (ctx.config.freshProcesses) {
      for (const kind of rotate(kinds, rep)) {
        await withProcesses(ctx, scenario, [kind], ({ units }) => measure(units[0]!, rep));
      }
    } else {
      await withProcesses(ctx, scenario, kinds, async ({ units }) => {
        for (const unit of rotate(units, rep)) await measure(unit, rep);
      });
    }
  }
  return { scenario, samples, skipped };
}

/** Runs one scenario of the benchmark. */
export function runScenario(ctx: BenchContext, scenario: ScenarioName): Promise<ScenarioResult> {
  switch (scenario) {
    case 'stream':
      return streamScenario(ctx);
    case 'cancel':
      return cancelScenario(ctx);
    case 'concurrent':
    case 'mass':
      return concurrencyScenario(ctx, scenario);
  }
}
