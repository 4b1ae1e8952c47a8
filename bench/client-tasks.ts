import type { WorkloadName } from './bench-config.js';
import type { RunOutcome } from './clients/bench-client.js';

/** Tasks a client process (`bench/client-main.ts`) takes. */
export type ClientTask =
  | { type: 'stream'; tag: string }
  | { type: 'cancel'; tag: string }
  | { type: 'concurrent'; workload: WorkloadName; runs: number; startPerSecond: number; tagPrefix: string }
  | { type: 'usage'; gc?: boolean };

/** Answer to a `stream` task: one run of the `stream` workload. */
export interface StreamResult extends RunOutcome {
  wallMs: number;
  /** CPU time (user + system) of the client process during the run. */
  cpuUs: number;
}

/** Answer to a `concurrent` task. */
export interface ConcurrentResult {
  wallMs: number;
  cpuUs: number;
  completed: number;
  failed: number;
  chunks: number;
  /** RSS after a garbage collection, right before the runs started. */
  baselineRssBytes: number;
  /** The process's RSS high-water mark (getrusage `maxrss`), read after the runs. */
  peakRssBytes: number;
  /** Most runs that were streaming (first chunk received, not finished) at the same time. */
  peakStreaming: number;
  /** Why runs failed: a few distinct reasons, for the log. */
  failures: string[];
}

/** Answer to a `usage` task (client and server processes). */
export interface UsageResult {
  /** User + system CPU time since the process started. */
  cpuUs: number;
  rssBytes: number;
  /** The RSS high-water mark since the process started. */
  maxRssBytes: number;
}

/** The usage of this process; collects garbage first when asked (`--expose-gc`). */
export function processUsage(gc = false): UsageResult {
  if (gc) globalThis.gc?.();
  const { userCPUTime, systemCPUTime, maxRSS } = process.resourceUsage();
  return {
    cpuUs: userCPUTime + systemCPUTime,
    rssBytes: process.memoryUsage.rss(),
    maxRssBytes: maxRSS * 1024,
  };
}
