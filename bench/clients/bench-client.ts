import type { WorkloadName, Workloads } from '../bench-config.js';

/** How one run ended, as the client saw it. */
export interface RunOutcome {
  status: 'completed' | 'cancelled' | 'failed';
  /** Content deltas received (runstate may merge deltas that arrive together into one event). */
  chunks: number;
  /** Characters of content received (a check that the content was really read). */
  length: number;
  /** Why the run failed, when it did. */
  error?: string | undefined;
}

/** Timestamps of one cancel (CLOCK_MONOTONIC nanoseconds, see `monotonicNs`). */
export interface CancelOutcome {
  status: RunOutcome['status'];
  /** Right before the cancel call (`cancelRun`, the cancel route, or the SDK's `abort()`). */
  cancelAt: bigint;
  /** When the consumer got the terminal event (raw SDK: when its loop ended). */
  terminalAt: bigint;
}

/**
 * One way of streaming a run, as a benchmark client uses it. Every kind reads the content the same
 * way (appends each delta to a string), so the figures compare the stacks, not the consumers.
 */
export interface BenchClient {
  /**
   * Streams one run of `workload` to its end. `tag` is the user message (the fake upstream reports
   * socket closes by it). `onFirstChunk` is called when the first delta arrives.
   */
  run(workload: WorkloadName, tag: string, onFirstChunk?: () => void): Promise<RunOutcome>;
  /** Streams one run, cancels it as soon as the first delta arrives, and reads to its end. */
  cancelAfterFirstChunk(workload: WorkloadName, tag: string): Promise<CancelOutcome>;
  close(): Promise<void>;
}

/** What every client is given. */
export interface BenchClientOptions {
  /** Base URL of the fake OpenAI server (`.../v1`). */
  upstreamURL: string;
  /** Base URL of the runstate server (HTTP client only). */
  serverURL?: string | undefined;
  workloads: Workloads;
  /** Name of the inspector of the library client (`bench/inspectors.ts`); none when absent. */
  inspector?: string | undefined;
}
