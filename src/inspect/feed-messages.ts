import type { StateValue } from 'xstate';
import type { CancelReason, ErrorCode, RunStatus } from '../../machines/run-types.js';

/** One run as the inspector page lists it. Wire object: snake_case. */
export interface RunSummary {
  run_id: string;
  /** From the attached orchestrator; `null` until it is known (no orchestrator attached). */
  agent_id: string | null;
  agent_name: string | null;
  session_id: string | null;
  /** The user's input, cut to 200 characters. */
  run_input: string | null;
  model: string | null;
  /** The machine's top-level state. */
  status: RunStatus;
  /** The full state value (`{ streaming: { attempt: 'receiving' } }`), to light the chart. */
  value: StateValue;
  /** Chunks the machine accepted so far. */
  chunks: number;
  /** Length of the content so far, in UTF-16 code units. */
  content_length: number;
  /** Model requests made (retries included). */
  attempt: number;
  /** When the inspector first saw the run, in milliseconds since the epoch. */
  created_at: number;
  /** When it reached a final state, in milliseconds since the epoch; `null` while active. */
  finished_at: number | null;
  cancel_reason: CancelReason | null;
  error: { code: ErrorCode; message: string } | null;
}

/** How far a streaming run got: what the feed sends for chunks, instead of a full summary. */
export type RunProgress = Pick<RunSummary, 'run_id' | 'chunks' | 'content_length'>;

/** One line of a run's event log on the page. */
export interface InspectorLogEntry {
  /** Milliseconds since the epoch. */
  at: number;
  /**
   * `event`: an event the machine received (chunks excepted); `chunks`: the chunks accepted since
   * the previous line, counted; `state`: the machine moved to a new state value; `end`: final.
   */
  kind: 'event' | 'chunks' | 'state' | 'end';
  text: string;
  /** The event's other fields, as short JSON, when it has any. */
  detail?: string;
}

/** What the feed sends. `snapshot` comes first on every subscription; the rest are changes. */
export type FeedMessage =
  | {
      type: 'snapshot';
      runs: RunSummary[];
      /**
       * How the page cancels a run: a URL template (`{agent_id}`, `{run_id}`), an absolute path or
       * one relative to the page.
       */
      cancel_url: string;
    }
  /** Runs that changed state (sent at once), or that the feed had not described yet. */
  | { type: 'runs'; runs: RunSummary[] }
  /** Runs that only took chunks since the last flush: counts, at most every `flushIntervalMs`. */
  | { type: 'progress'; runs: RunProgress[] }
  /** Runs the inspector no longer keeps (older finished runs beyond `maxFinishedRuns`). */
  | { type: 'removed'; run_ids: string[] }
  /** Sent to a subscription that follows one run: its content and log so far (`found: false` if unknown yet). */
  | { type: 'detail'; run_id: string; found: boolean; content: string; log: InspectorLogEntry[] }
  /** What the followed run added since the last message: content from `offset`, new log lines. */
  | { type: 'append'; run_id: string; offset: number; content: string; log: InspectorLogEntry[] };
