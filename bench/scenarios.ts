import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchResult } from './client-main.js';
import type { Outcome } from './clients.js';
import { streamedText, type BenchConfig, type Kind, type Scenario, type Workloads } from './config.js';
import { startProcess, type BenchProcess, type Usage } from './processes.js';

/** Per-repetition values of each metric, by client: `samples[metric][kind]`. */
export type Samples = Record<string, Partial<Record<Kind, number[]>>>;

/** What one scenario measured. */
export interface ScenarioResult {
  scenario: Scenario;
  samples: Samples;
  /** Clients not measured (or measured differently), and why. */
  notes: Partial<Record<Kind, string>>;
}

/** What the scenarios share. */
export interface BenchContext {
  config: BenchConfig;
  workloads: Workloads;
  upstream: BenchProcess;
  /** The JavaScript a process runs for a TypeScript entry (see `compileForWorkers`). */
  module(source: URL): URL;
  profileDir: string | undefined;
  progress(message: string): void;
  /** Processes kept across scenarios when `config.fresh` is off. */
  shared: Map<Kind, Unit>;
  /** What the `http-pg` instances share (see `bench/shared-storage.ts`); absent without that client. */
  storage?: { databaseUrl: string; redisUrl: string; redisPrefix: string } | undefined;
}

/** A client process, with the runstate server it talks to for `http`. */
interface Unit {
  kind: Kind;
  client: BenchProcess;
  server: BenchProcess | undefined;
  /** `http-pg`: the second instance, which cancels reach the runs through. */
  peer?: BenchProcess | undefined;
}

/** Stops the processes of a unit. */
export async function stopUnit(unit: Unit): Promise<void> {
  await Promise.all([unit.client.stop(), unit.server?.stop(), unit.peer?.stop()]);
}

/** The process that holds the runs, whose CPU and memory are measured: the server, over HTTP. */
const holder = (unit: Unit): BenchProcess => unit.server ?? unit.client;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const rotate = <T>(items: readonly T[], by: number): T[] => {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
};

/** Where the profiles of a scenario's processes go, with `--cpu-prof`. */
function profileDir(ctx: BenchContext, scenario: Scenario, name: string): string | undefined {
  if (!ctx.profileDir) return undefined;
  const dir = join(ctx.profileDir, `${scenario}-${name}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function startUnit(ctx: BenchContext, scenario: Scenario, kind: Kind): Promise<Unit> {
  const upstreamURL = String(ctx.upstream.ready.url);
  const options = {
    upstreamURL,
    workloads: ctx.workloads,
    httpBody: ctx.config.httpBody,
    serverURL: undefined as string | undefined,
    cancelServerURL: undefined as string | undefined,
  };
  let server: BenchProcess | undefined;
  let peer: BenchProcess | undefined;
  if (kind === 'http' || kind === 'http-pg') {
    const storage = kind === 'http-pg' ? ctx.storage : undefined;
    if (kind === 'http-pg' && !storage) throw new Error('the http-pg client needs ctx.storage');
    const args = [JSON.stringify({ ...options, storage })];
    const serverMain = ctx.module(new URL('./server-main.ts', import.meta.url));
    server = await startProcess(serverMain, 'runstate server', args, profileDir(ctx, scenario, 'server'));
    options.serverURL = String(server.ready.url);
    if (storage) {
      peer = await startProcess(serverMain, 'runstate server 2', args).catch(async (error: unknown) => {
        await server?.stop();
        throw error;
      });
      options.cancelServerURL = String(peer.ready.url);
    }
  }
  const entry = ctx.module(new URL('./client-main.ts', import.meta.url));
  const client = await startProcess(
    entry,
    `${kind} client`,
    [kind, JSON.stringify(options)],
    profileDir(ctx, scenario, kind),
  ).catch(async (error: unknown) => {
    await Promise.all([server?.stop(), peer?.stop()]);
    throw error;
  });
  return { kind, client, server, peer };
}

/** Runs `body` on a fresh unit (or the shared one when `fresh` is off), stopped after. */
async function withUnit<T>(
  ctx: BenchContext,
  scenario: Scenario,
  kind: Kind,
  body: (unit: Unit) => Promise<T>,
): Promise<T> {
  if (!ctx.config.fresh) {
    let unit = ctx.shared.get(kind);
    if (!unit) ctx.shared.set(kind, (unit = await startUnit(ctx, scenario, kind)));
    return body(unit);
  }
  const unit = await startUnit(ctx, scenario, kind);
  try {
    return await body(unit);
  } finally {
    await stopUnit(unit);
  }
}

const meterStart = (process: BenchProcess) => process.request({ type: 'meter', action: 'start' });
const meterStop = (process: BenchProcess) => process.request<Usage>({ type: 'meter', action: 'stop' });

function check(kind: Kind, outcome: Outcome, length: number): void {
  if (outcome.status !== 'completed' || outcome.length !== length) {
    throw new Error(
      `${kind}: a stream ended ${outcome.status} with ${outcome.length}/${length} characters (${outcome.error})`,
    );
  }
}

/**
 * Each repetition, each client in turn (in an order rotated every repetition) and in a fresh
 * process: `measure` pushes the repetition's figures.
 */
async function repeat(
  ctx: BenchContext,
  scenario: Scenario,
  kinds: readonly Kind[],
  measure: (unit: Unit, push: (metric: string, value: number) => void) => Promise<string>,
): Promise<Samples> {
  const samples: Samples = {};
  const reps = ctx.config.reps[scenario];
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of rotate(kinds, rep)) {
      const push = (metric: string, value: number) =>
        void ((samples[metric] ??= {})[kind] ??= []).push(value);
      const line = await withUnit(ctx, scenario, kind, (unit) => measure(unit, push));
      ctx.progress(`${scenario} ${rep + 1}/${reps} ${kind}: ${line}`);
    }
  }
  return samples;
}

/**
 * One long stream sent as fast as possible, read to its end: CPU per upstream chunk of the process
 * holding the run (the median of a few streams after a warm-up), and wall time.
 */
async function burst(ctx: BenchContext): Promise<ScenarioResult> {
  const { chunks, warmup, trials } = ctx.config.burst;
  const length = streamedText(chunks).length;
  const samples = await repeat(ctx, 'burst', ctx.config.kinds, async (unit, push) => {
    const stream = (tag: string) => unit.client.request<Outcome>({ type: 'stream', workload: 'burst', tag });
    for (let i = 0; i < warmup; i++) check(unit.kind, await stream(`warmup-${i}`), length);
    const cpu: number[] = [];
    const system: number[] = [];
    const wall: number[] = [];
    let events = 0;
    for (let i = 0; i < trials; i++) {
      await meterStart(holder(unit));
      const start = performance.now();
      const outcome = await stream(`burst-${i}`);
      wall.push(performance.now() - start);
      const usage = await meterStop(holder(unit));
      cpu.push(usage.cpuUs / chunks);
      system.push(usage.systemUs / chunks);
      check(unit.kind, outcome, length);
      events = outcome.events;
    }
    push('cpuPerChunkUs', median(cpu));
    push('systemCpuPerChunkUs', median(system));
    push('wallMs', median(wall));
    push('contentEvents', events);
    return `${median(cpu).toFixed(2)} µs/chunk (kernel ${median(system).toFixed(2)}), ${median(wall).toFixed(0)} ms, ${events} content events`;
  });
  return { scenario: 'burst', samples, notes: {} };
}

/** The hard limit of open files, which a process here cannot raise. */
function openFilesLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Many paced runs at once, after a warm-up batch: wall time, CPU per chunk, RSS per run (the
 * process's high-water mark over its baseline after a collection) and event-loop delay p99, all in
 * the process holding the runs.
 */
async function concurrent(ctx: BenchContext, scenario: 'paced' | 'mass'): Promise<ScenarioResult> {
  const { runs, chunks, warmupRuns, startPerSecond } = ctx.config[scenario];
  const notes: ScenarioResult['notes'] = {};
  const runsOf = (kind: Kind) => (kind === 'http' ? Math.min(runs, httpRuns) : runs);
  // Over HTTP the server holds two sockets per run: its client's and the upstream's.
  const fds = openFilesLimit();
  const httpRuns = Math.floor((fds - 500) / 200) * 100;
  if (2 * runs + 500 > fds) {
    notes.http =
      `${httpRuns.toLocaleString('en-US')} runs: ${runs.toLocaleString('en-US')} need ` +
      `${(2 * runs).toLocaleString('en-US')} sockets in it, and the hard limit of open files here is ${fds.toLocaleString('en-US')}`;
  }
  const samples = await repeat(ctx, scenario, ctx.config.kinds, async (unit, push) => {
    const batch = (n: number, tag: string) =>
      unit.client.request<BatchResult>({
        type: 'batch',
        workload: scenario,
        runs: n,
        startPerSecond,
        tag,
        preconnect: !ctx.config.connectInBatch,
      });
    await batch(warmupRuns, 'warmup');
    const n = runsOf(unit.kind);
    await meterStart(holder(unit));
    const result = await batch(n, 'run');
    const usage = await meterStop(holder(unit));
    const rssPerRunKb = (usage.maxRssBytes - usage.baselineRssBytes) / 1024 / n;
    push('failed', n - result.completed);
    push('wallMs', result.wallMs);
    push('cpuPerChunkUs', usage.cpuUs / (n * chunks));
    push('systemCpuPerChunkUs', usage.systemUs / (n * chunks));
    if (usage.otherThreadsUs !== undefined)
      push('otherThreadsCpuPerChunkUs', usage.otherThreadsUs / (n * chunks));
    push('rssPerRunKb', rssPerRunKb);
    push('loopDelayP99Ms', usage.loopDelayP99Ms);
    push('loopDelaySamples', usage.loopDelaySamples);
    push('peakStreaming', result.peakStreaming);
    if (usage.readCalls) push('chunksPerRead', (n * chunks) / usage.readCalls);
    // A server's writes are its SSE frames; a client's are its requests (a figure that means nothing).
    if (usage.writeCalls && unit.kind.startsWith('http'))
      push('chunksPerWrite', (n * chunks) / usage.writeCalls);
    return (
      `${result.completed}/${n} completed, ${result.wallMs.toFixed(0)} ms, ${(usage.cpuUs / (n * chunks)).toFixed(2)} µs/chunk (kernel ${(usage.systemUs / (n * chunks)).toFixed(2)}` +
      (usage.otherThreadsUs !== undefined
        ? `, other threads ${(usage.otherThreadsUs / (n * chunks)).toFixed(2)}`
        : '') +
      `), ` +
      `${rssPerRunKb.toFixed(0)} KB/run, loop delay p99 ${usage.loopDelayP99Ms.toFixed(1)} ms (of ${usage.loopDelaySamples} turns), ${result.peakStreaming} at once` +
      (usage.readCalls ? `, ${usage.readCalls} reads and ${usage.writeCalls} writes` : '') +
      (result.failures.length ? `; failures: ${result.failures.join(' | ')}` : '')
    );
  });
  return { scenario, samples, notes };
}

/** Collects the upstream's `upstream-closed` notices, each handed to whoever waits for its tag. */
function watchCloses(upstream: BenchProcess): (tag: string) => Promise<bigint> {
  const arrived = new Map<string, bigint>();
  const waiting = new Map<string, (at: bigint) => void>();
  upstream.onNotice((notice) => {
    if (notice.type !== 'upstream-closed') return;
    const tag = String(notice.tag);
    const at = notice.at as bigint;
    const waiter = waiting.get(tag);
    if (waiter) waiter(at);
    else arrived.set(tag, at);
  });
  return (tag) => {
    const at = arrived.get(tag);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the upstream never saw ${tag} close`)), 10_000);
      waiting.set(tag, (closedAt) => {
        clearTimeout(timer);
        waiting.delete(tag);
        resolve(closedAt);
      });
    });
  };
}

/**
 * Cancel at the first content of a stream that then stalls: cancel → the consumer's loop ends
 * (RunCancelled), and cancel → the upstream sees the request's socket close (taken in the upstream
 * process on the shared monotonic clock). A repetition's figure is the median of its trials.
 */
async function cancel(ctx: BenchContext): Promise<ScenarioResult> {
  const { warmup, trials } = ctx.config.cancel;
  const closeOf = watchCloses(ctx.upstream);
  let nextTag = 0;
  const samples = await repeat(ctx, 'cancel', ctx.config.kinds, async (unit, push) => {
    const trial = async () => {
      const tag = `cancel-${nextTag++}`;
      const result = await unit.client.request<{ status: string; cancelAt: bigint; terminalAt: bigint }>({
        type: 'cancel',
        workload: 'cancel',
        tag,
      });
      if (result.status !== 'cancelled') throw new Error(`${unit.kind}: ${tag} ended ${result.status}`);
      const closedAt = await closeOf(tag);
      return {
        closed: Number(closedAt - result.cancelAt) / 1e3,
        terminal: Number(result.terminalAt - result.cancelAt) / 1e3,
      };
    };
    for (let i = 0; i < warmup; i++) await trial();
    const results = [];
    for (let i = 0; i < trials; i++) results.push(await trial());
    const closed = median(results.map((r) => r.closed));
    const terminal = median(results.map((r) => r.terminal));
    push('toClosedUs', closed);
    push('toTerminalUs', terminal);
    return `upstream closed after ${closed.toFixed(0)} µs, loop ended after ${terminal.toFixed(0)} µs`;
  });
  return { scenario: 'cancel', samples, notes: {} };
}

/** Runs one scenario. */
export function runScenario(ctx: BenchContext, scenario: Scenario): Promise<ScenarioResult> {
  if (scenario === 'burst') return burst(ctx);
  if (scenario === 'cancel') return cancel(ctx);
  return concurrent(ctx, scenario);
}
