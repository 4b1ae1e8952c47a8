/**
 * One benchmark client in a process of its own: `tsx bench/client-main.ts <kind> <options JSON>`.
 * The parent (`bench/run.ts`) sends it tasks over IPC and gets one answer per task; nothing else
 * runs in this process, so its CPU time and memory are the client's own.
 *
 * @packageDocumentation
 */
import { CLIENT_KINDS, type ClientKind } from './bench-config.js';
import { processUsage, type ClientTask, type ConcurrentResult, type StreamResult } from './client-tasks.js';
import type { BenchClient, BenchClientOptions, RunOutcome } from './clients/bench-client.js';
import { createHttpClient } from './clients/http-client.js';
import { createLibraryClient } from './clients/library-client.js';
import { createRawSdkClient } from './clients/raw-sdk-client.js';
import { loadInspector } from './inspectors.js';
import { monotonicNs, notifyParent, serveTasks, type WorkerTask } from './worker-process.js';

const cpuUs = (since: NodeJS.CpuUsage): number => {
  const { user, system } = process.cpuUsage(since);
  return user + system;
};

async function createClient(kind: ClientKind, options: BenchClientOptions): Promise<BenchClient> {
  switch (kind) {
    case 'raw':
      return createRawSdkClient(options);
    case 'library':
      return createLibraryClient(options);
    case 'library+inspect':
      return createLibraryClient(options, await loadInspector(options.inspector ?? 'noop'));
    case 'http':
      return createHttpClient(options);
  }
}

async function concurrent(
  client: BenchClient,
  { workload, runs, startPerSecond, tagPrefix }: Extract<ClientTask, { type: 'concurrent' }>,
): Promise<ConcurrentResult> {
  globalThis.gc?.();
  const baselineRssBytes = process.memoryUsage.rss();
  let streaming = 0;
  let peakStreaming = 0;
  const failures = new Set<string>();
  const cpu = process.cpuUsage();
  const start = performance.now();
  const outcomes = await Promise.all(
    Array.from({ length: runs }, async (_, i): Promise<RunOutcome> => {
      let started = false;
      // Ramp: run i starts at i / startPerSecond seconds, in 10 ms steps.
      const startMs = startPerSecond > 0 ? Math.floor((i * 1000) / startPerSecond / 10) * 10 : 0;
      if (startMs > 0) await new Promise((resolve) => setTimeout(resolve, startMs));
      try {
        const outcome = await client.run(workload, `${tagPrefix}-${i}`, () => {
          started = true;
          peakStreaming = Math.max(peakStreaming, ++streaming);
        });
        if (outcome.error && failures.size < 3) failures.add(outcome.error);
        return outcome;
      } catch (error) {
        if (failures.size < 3) failures.add(error instanceof Error ? error.message : String(error));
        return { status: 'failed', chunks: 0, length: 0 };
      } finally {
        if (started) streaming--;
      }
    }),
  );
  const wallMs = performance.now() - start;
  return {
    wallMs,
    cpuUs: cpuUs(cpu),
    completed: outcomes.filter((outcome) => outcome.status === 'completed').length,
    failed: outcomes.filter((outcome) => outcome.status !== 'completed').length,
    chunks: outcomes.reduce((sum, outcome) => sum + outcome.chunks, 0),
    baselineRssBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    peakStreaming,
    failures: [...failures],
  };
}

const [kindArg, optionsArg] = process.argv.slice(2);
if (!CLIENT_KINDS.includes(kindArg as ClientKind) || optionsArg === undefined) {
  throw new Error(`usage: client-main.ts <${CLIENT_KINDS.join('|')}> <options JSON>`);
}
const client = await createClient(kindArg as ClientKind, JSON.parse(optionsArg) as BenchClientOptions);

serveTasks(
  async (raw: WorkerTask) => {
    const task = raw as ClientTask;
    switch (task.type) {
      case 'stream': {
        const cpu = process.cpuUsage();
        const start = performance.now();
        const outcome = await client.run('stream', task.tag);
        return { ...outcome, wallMs: performance.now() - start, cpuUs: cpuUs(cpu) } satisfies StreamResult;
      }
      case 'cancel':
        return client.cancelAfterFirstChunk('cancel', task.tag);
      case 'concurrent':
        return concurrent(client, task);
      case 'usage':
        return processUsage(task.gc);
    }
  },
  () => client.close(),
);
notifyParent({ type: 'ready', at: monotonicNs() });
