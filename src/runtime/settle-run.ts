import {
  isTerminalEvent,
  pauseRequirements,
  type PausedRunOutput,
  type RunEvent,
  type RunOutput,
} from './run-events.js';
import type { Orchestrator } from './create-orchestrator.js';

/**
 * A run's output at its next stop: its pause (the paused record, with the calls that wait) or its
 * end (the final output). What a non-streamed run or continue resolves with, as Agno's non-streamed
 * `run` returns a paused `RunOutput`. `events` are the run's events from where the caller stands; a
 * run continued (or ended) between its `RunPaused` and the read of its record is followed on.
 */
export async function settleRun(
  orchestrator: Pick<Orchestrator, 'events' | 'getRun' | 'result'>,
  runId: string,
  events: AsyncIterable<RunEvent>,
): Promise<RunOutput | PausedRunOutput> {
  for (;;) {
    let last: RunEvent | undefined;
    for await (const event of events) last = event;
    if (last && isTerminalEvent(last)) return orchestrator.result(runId);
    const record = await orchestrator.getRun(runId);
    if (record?.status === 'paused') {
      return { ...record, requirements: pauseRequirements(record.tools) } as PausedRunOutput;
    }
    if (!record || record.finished_at !== null) return orchestrator.result(runId);
    events = await orchestrator.events(runId, last?.seq);
  }
}
